//! Walking and checking attributes: headers, padding, flags, fixed sizes
//! and strings.

use super::{Malformed, NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_HDRLEN, NLA_TYPE_MASK};
use crate::protocol::attr;

pub(super) fn check_flags(name: &'static str, flags: u16, nested: bool) -> Result<(), Malformed> {
    if flags & NLA_F_NET_BYTEORDER != 0 {
        return Err(Malformed::ByteOrderFlag { name });
    }
    if flags & NLA_F_NESTED != 0 && !nested {
        return Err(Malformed::NestedFlag {
            name,
            why: "set on a plain attribute",
        });
    }
    Ok(())
}

pub(super) fn fixed<const N: usize>(
    name: &'static str,
    value: &[u8],
) -> Result<[u8; N], Malformed> {
    value.try_into().map_err(|_| Malformed::AttrSize {
        name,
        len: value.len(),
        expected: N,
    })
}

pub(super) fn string(name: &'static str, value: &[u8], max: usize) -> Result<String, Malformed> {
    let Some(text) = value.strip_suffix(&[0]) else {
        return Err(Malformed::NotTerminated { name });
    };
    if text.contains(&0) {
        return Err(Malformed::InnerNul { name });
    }
    if text.len() > max {
        return Err(Malformed::TooLong {
            name,
            len: text.len(),
            max,
        });
    }
    if text.is_empty() {
        return Err(Malformed::Empty { name });
    }
    std::str::from_utf8(text)
        .map(str::to_owned)
        .map_err(|_| Malformed::NotUtf8 { name })
}

/// Walks attributes, checking each header and the padding between them:
/// yields `(type, value, flags)` or the first structural error.
pub(super) fn checked_attrs(
    mut rest: &[u8],
) -> impl Iterator<Item = Result<(u16, &[u8], u16), Malformed>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || rest.is_empty() {
            return None;
        }
        if rest.len() < NLA_HDRLEN {
            failed = true;
            // Fewer than four bytes cannot be an attribute; zeros may be
            // the message's alignment padding, anything else is junk.
            if rest.iter().all(|&byte| byte == 0) {
                return None;
            }
            return Some(Err(Malformed::Trailing { len: rest.len() }));
        }
        let len = read_u16(rest, 0) as usize;
        let raw_kind = read_u16(rest, 2);
        let kind = raw_kind & NLA_TYPE_MASK;
        if len < NLA_HDRLEN {
            failed = true;
            return Some(Err(Malformed::AttrHeader { attr: kind, len }));
        }
        if len > rest.len() {
            failed = true;
            return Some(Err(Malformed::Truncated {
                what: "attribute",
                need: len,
                have: rest.len(),
            }));
        }
        let value = &rest[NLA_HDRLEN..len];
        let advance = align4(len).min(rest.len());
        if rest[len..advance].iter().any(|&byte| byte != 0) {
            failed = true;
            return Some(Err(Malformed::Trailing { len: advance - len }));
        }
        rest = &rest[advance..];
        Some(Ok((kind, value, raw_kind & !NLA_TYPE_MASK)))
    })
}

/// Lenient walk for reading what a peer sent us when strictness does not
/// matter (ack TLVs, the controller's answers): stops at the first bad one.
pub fn raw_attrs(rest: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    checked_attrs(rest)
        .map_while(Result::ok)
        .map(|(kind, value, _)| (kind, value))
}

/// The first top-level REQUEST_ID that is exactly eight bytes.
pub(super) fn scan_request_id(attrs: &[u8]) -> Option<u64> {
    raw_attrs(attrs)
        .find(|(kind, value)| *kind == attr::REQUEST_ID && value.len() == 8)
        .map(|(_, value)| u64::from_ne_bytes(value.try_into().unwrap_or([0; 8])))
}

/// The attribute's name as the documentation spells it.
pub fn attr_name(kind: u16) -> &'static str {
    match kind {
        attr::PAD => "PAD",
        attr::VERSION => "VERSION",
        attr::FEATURES => "FEATURES",
        attr::INSTANCE_ID => "INSTANCE_ID",
        attr::SERVE => "SERVE",
        attr::MAX_INFLIGHT => "MAX_INFLIGHT",
        attr::REQUEST_ID => "REQUEST_ID",
        attr::PRIORITY => "PRIORITY",
        attr::DEADLINE_MS => "DEADLINE_MS",
        attr::PIPELINE => "PIPELINE",
        attr::PAYLOAD => "PAYLOAD",
        attr::STATUS => "STATUS",
        attr::VECTOR => "VECTOR",
        attr::ERROR_CODE => "ERROR_CODE",
        attr::ERROR_TEXT => "ERROR_TEXT",
        attr::HEARTBEAT_SEQ => "HEARTBEAT_SEQ",
        attr::INFLIGHT => "INFLIGHT",
        attr::STATS => "STATS",
        attr::EVENT_KIND => "EVENT_KIND",
        attr::PORT => "PORT",
        _ => "UNKNOWN",
    }
}

pub fn align4(len: usize) -> usize {
    (len + 3) & !3
}

pub(super) fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

pub(super) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
