//! The one codec for every transport: netlink message headers, the generic
//! netlink header and the family's attributes, both ways.
//!
//! Decoding is strict. A message is rejected when a length is short, long
//! or misaligned, when an attribute is unknown, repeated, of the wrong size
//! or not allowed for its command and direction, when a string lacks its
//! NUL, is not UTF-8 or is too long, when a value is out of range, or when
//! bytes trail the last attribute. A rejected message is a [`DecodeError`]
//! that keeps what could be read (sequence number, sender, request id), so
//! the caller can still answer the request instead of losing it. Decoding
//! never panics, whatever the bytes (the fuzz target checks that).
//!
//! This module knows no sockets and no kernel handle.

mod attrs;
mod encode;
mod error;
mod messages;

pub use attrs::{align4, attr_name, raw_attrs};
pub use encode::{AttrWriter, begin_message, encode, encode_ack, encode_into, finish_message};
pub use error::{DecodeError, Malformed};

use crate::message::{Direction, Message};
use crate::protocol::FAMILY_VERSION;
use attrs::{read_u16, read_u32, scan_request_id};

/// Netlink message header length (`struct nlmsghdr`).
pub const NLMSG_HDRLEN: usize = 16;
/// Generic netlink header length (`struct genlmsghdr`).
pub const GENL_HDRLEN: usize = 4;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
const NLA_HDRLEN: usize = 4;
/// `NLMSGERR_ATTR_MSG`: the extended ack's text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The netlink header fields a caller sets or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// `nlmsg_type`: the family id for the family's messages.
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// `nlmsg_pid`: the sender's port (0 from the kernel).
    pub port: u32,
}

/// One decoded netlink message.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A message of the family.
    Genl { header: Header, message: Message },
    /// `NLMSG_ERROR`: an ack (`error` 0) or a failure (`-errno`), with the
    /// extended ack's text when the sender gave one.
    Ack {
        header: Header,
        /// The sequence number of the message acknowledged.
        acked_seq: u32,
        error: i32,
        text: Option<String>,
    },
    /// `NLMSG_DONE`, `NLMSG_NOOP`, or a message of another family (the
    /// controller's answers, read by `genl_ctrl`).
    Other { header: Header, payload: Vec<u8> },
}

/// Decodes every netlink message in one datagram. Messages of `family_id`
/// are decoded as the family's, travelling `direction`; acks and other
/// types are returned as such. A message with a bad netlink header ends
/// the datagram (its length cannot be trusted); a message with bad
/// content is one `Err` and decoding goes on with the next.
pub fn decode(
    datagram: &[u8],
    family_id: u16,
    direction: Direction,
) -> Vec<Result<Frame, DecodeError>> {
    let mut frames = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let header_error = |reason: Malformed| DecodeError {
            reason,
            seq: 0,
            port: 0,
            command: None,
            request_id: None,
        };
        if rest.len() < NLMSG_HDRLEN {
            frames.push(Err(header_error(Malformed::Truncated {
                what: "netlink header",
                need: NLMSG_HDRLEN,
                have: rest.len(),
            })));
            break;
        }
        let len = read_u32(rest, 0) as usize;
        let header = Header {
            kind: read_u16(rest, 4),
            flags: read_u16(rest, 6),
            seq: read_u32(rest, 8),
            port: read_u32(rest, 12),
        };
        if len < NLMSG_HDRLEN || len > rest.len() {
            let why = if len < NLMSG_HDRLEN {
                "shorter than its header"
            } else {
                "longer than the datagram"
            };
            frames.push(Err(DecodeError {
                seq: header.seq,
                port: header.port,
                ..header_error(Malformed::BadLength { len, why })
            }));
            break;
        }
        let body = &rest[NLMSG_HDRLEN..len];
        frames.push(decode_one(header, body, family_id, direction));
        let advance = align4(len).min(rest.len());
        rest = &rest[advance..];
    }
    frames
}

fn decode_one(
    header: Header,
    body: &[u8],
    family_id: u16,
    direction: Direction,
) -> Result<Frame, DecodeError> {
    let fail = |reason: Malformed, command: Option<u8>, request_id: Option<u64>| DecodeError {
        reason,
        seq: header.seq,
        port: header.port,
        command,
        request_id,
    };
    if header.kind == NLMSG_ERROR {
        return decode_ack(header, body).map_err(|reason| fail(reason, None, None));
    }
    if header.kind != family_id {
        return Ok(Frame::Other {
            header,
            payload: body.to_vec(),
        });
    }
    if body.len() < GENL_HDRLEN {
        return Err(fail(
            Malformed::Truncated {
                what: "genl header",
                need: GENL_HDRLEN,
                have: body.len(),
            },
            None,
            None,
        ));
    }
    let command = body[0];
    let attrs = &body[GENL_HDRLEN..];
    // The request id, read leniently, so that a rejected request can still
    // be answered.
    let request_id = scan_request_id(attrs);
    if body[1] != FAMILY_VERSION {
        return Err(fail(
            Malformed::GenlVersion(body[1]),
            Some(command),
            request_id,
        ));
    }
    let reserved = read_u16(body, 2);
    if reserved != 0 {
        return Err(fail(
            Malformed::Reserved(reserved),
            Some(command),
            request_id,
        ));
    }
    messages::decode_message(command, attrs, direction)
        .map(|message| Frame::Genl { header, message })
        .map_err(|reason| fail(reason, Some(command), request_id))
}

fn decode_ack(header: Header, body: &[u8]) -> Result<Frame, Malformed> {
    if body.len() < 4 + NLMSG_HDRLEN {
        return Err(Malformed::Truncated {
            what: "nlmsgerr",
            need: 4 + NLMSG_HDRLEN,
            have: body.len(),
        });
    }
    let error = read_u32(body, 0) as i32;
    let acked_seq = read_u32(body, 4 + 8);
    let mut text = None;
    if header.flags & NLM_F_ACK_TLVS != 0 {
        // The echoed message is whole unless capped.
        let echoed = if header.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4((read_u32(body, 4) as usize).max(NLMSG_HDRLEN))
        };
        if let Some(tlvs) = body.get(4 + echoed..) {
            for (kind, value) in raw_attrs(tlvs) {
                if kind == NLMSGERR_ATTR_MSG {
                    let value = value.strip_suffix(&[0]).unwrap_or(value);
                    text = Some(String::from_utf8_lossy(value).into_owned());
                }
            }
        }
    }
    Ok(Frame::Ack {
        header,
        acked_seq,
        error,
        text,
    })
}
