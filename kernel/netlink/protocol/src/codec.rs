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

use std::collections::BTreeMap;

use crate::message::{
    Cancel, Direction, ErrorReport, Event, EventKind, Heartbeat, Message, Register, Registered,
    Reply, ReplyStatus, Request, Serve, Stats, Unregister, WireError, WirePriority,
};
use crate::protocol::{FAMILY_VERSION, attr, command, limit, serve_attr, stat};

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

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("message length {len} is invalid ({why})")]
    BadLength { len: usize, why: &'static str },
    #[error("message type {0} is not the family's")]
    WrongFamily(u16),
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    #[error("command {command} may not travel {direction}")]
    WrongDirection {
        command: u8,
        direction: &'static str,
    },
    #[error("genl version {0}, expected {FAMILY_VERSION}")]
    GenlVersion(u8),
    #[error("genl header's reserved field is {0}, expected 0")]
    Reserved(u16),
    #[error("attribute {attr} has length {len}, the header alone is 4")]
    AttrHeader { attr: u16, len: usize },
    #[error("attribute {name} has {len} bytes, expected {expected}")]
    AttrSize {
        name: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("unknown attribute {attr}{within}")]
    UnknownAttr { attr: u16, within: &'static str },
    #[error("attribute {name} is not allowed in {command}")]
    AttrNotAllowed {
        name: &'static str,
        command: &'static str,
    },
    #[error("attribute {name} appears twice")]
    Duplicate { name: &'static str },
    #[error("attribute {name} is missing")]
    Missing { name: &'static str },
    #[error("attribute {name} has the network byte order flag")]
    ByteOrderFlag { name: &'static str },
    #[error("attribute {name}: nested flag {why}")]
    NestedFlag {
        name: &'static str,
        why: &'static str,
    },
    #[error("string {name} is not NUL-terminated")]
    NotTerminated { name: &'static str },
    #[error("string {name} has a NUL inside")]
    InnerNul { name: &'static str },
    #[error("{name} is not UTF-8")]
    NotUtf8 { name: &'static str },
    #[error("{name} is {len} bytes, at most {max} allowed")]
    TooLong {
        name: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{name} is empty")]
    Empty { name: &'static str },
    #[error("{name} has the invalid value {value}")]
    BadValue { name: &'static str, value: u64 },
    #[error("{len} bytes trail the last attribute")]
    Trailing { len: usize },
    #[error("the vector's {len} bytes are not a whole number of f32")]
    VectorSize { len: usize },
    #[error("the vector holds a value that is not finite")]
    VectorNotFinite,
}

/// A rejected message with what could still be read of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink message (seq {seq}, port {port}): {reason}")]
pub struct DecodeError {
    pub reason: Malformed,
    pub seq: u32,
    pub port: u32,
    /// The genl command, when the header got that far.
    pub command: Option<u8>,
    /// The request it carried, when that attribute could be read: the
    /// receiver answers it rather than letting it wait for its deadline.
    pub request_id: Option<u64>,
}

/// Encodes `message` as one netlink message with `header` (its `kind` is
/// the family id; the length is filled in).
pub fn encode(message: &Message, header: Header) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(64);
    encode_into(&mut buffer, message, header);
    buffer
}

/// Like [`encode`], appending to `buffer` (several messages may share one
/// datagram).
pub fn encode_into(buffer: &mut Vec<u8>, message: &Message, header: Header) {
    let start = begin_message(buffer, header);
    buffer.extend_from_slice(&[message.command(), FAMILY_VERSION, 0, 0]);
    let mut writer = AttrWriter { buffer };
    match message {
        Message::Register(register) => {
            writer.u32(attr::VERSION, register.version);
            writer.u64(attr::FEATURES, register.features);
            writer.u64(attr::INSTANCE_ID, register.instance_id);
            writer.u32(attr::MAX_INFLIGHT, register.max_inflight);
            for serve in &register.serves {
                let nest = writer.begin_nest(attr::SERVE);
                writer.string(serve_attr::PIPELINE, &serve.pipeline);
                if let Some(model) = &serve.model {
                    writer.string(serve_attr::MODEL, model);
                }
                writer.u32(serve_attr::DIMS, serve.dims);
                writer.end_nest(nest);
            }
        }
        Message::Registered(registered) => {
            writer.u32(attr::VERSION, registered.version);
            writer.u64(attr::FEATURES, registered.features);
            writer.u64(attr::INSTANCE_ID, registered.instance_id);
            writer.u32(attr::MAX_INFLIGHT, registered.max_inflight);
        }
        Message::Request(request) => {
            writer.u64(attr::REQUEST_ID, request.request_id);
            writer.u8(attr::PRIORITY, request.priority.to_wire());
            writer.u32(attr::DEADLINE_MS, request.deadline_ms);
            writer.string(attr::PIPELINE, &request.pipeline);
            writer.bytes(attr::PAYLOAD, request.payload.as_bytes());
        }
        Message::Reply(reply) => {
            writer.u64(attr::REQUEST_ID, reply.request_id);
            writer.u8(attr::STATUS, reply.status.to_wire());
            if reply.status == ReplyStatus::Ok {
                writer.vector(attr::VECTOR, &reply.vector);
            }
            if let Some(error) = &reply.error {
                writer.u32(attr::ERROR_CODE, error.code);
                writer.string(attr::ERROR_TEXT, &error.text);
            }
        }
        Message::Cancel(cancel) => writer.u64(attr::REQUEST_ID, cancel.request_id),
        Message::Heartbeat(heartbeat) => {
            writer.u64(attr::HEARTBEAT_SEQ, heartbeat.seq);
            if let Some(inflight) = heartbeat.inflight {
                writer.u32(attr::INFLIGHT, inflight);
            }
        }
        Message::Error(report) => {
            writer.u32(attr::ERROR_CODE, report.error.code);
            writer.string(attr::ERROR_TEXT, &report.error.text);
            if let Some(request_id) = report.request_id {
                writer.u64(attr::REQUEST_ID, request_id);
            }
        }
        Message::Unregister(unregister) => writer.u64(attr::INSTANCE_ID, unregister.instance_id),
        Message::StatsQuery => {}
        Message::Stats(stats) => {
            let nest = writer.begin_nest(attr::STATS);
            for (&counter, &value) in &stats.counters {
                writer.u64(counter, value);
            }
            writer.end_nest(nest);
        }
        Message::Event(event) => {
            writer.u8(attr::EVENT_KIND, event.kind.to_wire());
            if let Some(instance_id) = event.instance_id {
                writer.u64(attr::INSTANCE_ID, instance_id);
            }
            if let Some(port) = event.port {
                writer.u32(attr::PORT, port);
            }
        }
    }
    finish_message(buffer, start);
}

/// Encodes an `NLMSG_ERROR` answering `acked` (what a kernel sends as an
/// ack or a failure). `error` is 0 or a negative errno; `text` goes into
/// the extended ack. Only the acknowledged message's header is echoed.
pub fn encode_ack(buffer: &mut Vec<u8>, acked: Header, to_port: u32, error: i32, text: &str) {
    let flags = NLM_F_CAPPED | if text.is_empty() { 0 } else { NLM_F_ACK_TLVS };
    let start = begin_message(
        buffer,
        Header {
            kind: NLMSG_ERROR,
            flags,
            seq: acked.seq,
            port: to_port,
        },
    );
    buffer.extend_from_slice(&error.to_ne_bytes());
    buffer.extend_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
    buffer.extend_from_slice(&acked.kind.to_ne_bytes());
    buffer.extend_from_slice(&acked.flags.to_ne_bytes());
    buffer.extend_from_slice(&acked.seq.to_ne_bytes());
    buffer.extend_from_slice(&acked.port.to_ne_bytes());
    if !text.is_empty() {
        let mut writer = AttrWriter { buffer };
        writer.string(NLMSGERR_ATTR_MSG, text);
    }
    finish_message(buffer, start);
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
    decode_message(command, attrs, direction)
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

/// Attribute sets per command and direction, as bit masks of `attr::*`.
const fn mask(attrs: &[u16]) -> u32 {
    let mut bits = 1 << attr::PAD;
    let mut index = 0;
    while index < attrs.len() {
        bits |= 1 << attrs[index];
        index += 1;
    }
    bits
}

fn decode_message(command: u8, attrs: &[u8], direction: Direction) -> Result<Message, Malformed> {
    use Direction::{ToDaemon, ToKernel};
    let (name, allowed) = match (command, direction) {
        (command::REGISTER, ToKernel) => (
            "REGISTER",
            mask(&[
                attr::VERSION,
                attr::FEATURES,
                attr::INSTANCE_ID,
                attr::MAX_INFLIGHT,
                attr::SERVE,
            ]),
        ),
        (command::REGISTER, ToDaemon) => (
            "REGISTER",
            mask(&[
                attr::VERSION,
                attr::FEATURES,
                attr::INSTANCE_ID,
                attr::MAX_INFLIGHT,
            ]),
        ),
        (command::REQUEST, ToDaemon) => (
            "REQUEST",
            mask(&[
                attr::REQUEST_ID,
                attr::PRIORITY,
                attr::DEADLINE_MS,
                attr::PIPELINE,
                attr::PAYLOAD,
            ]),
        ),
        (command::REPLY, ToKernel) => (
            "REPLY",
            mask(&[
                attr::REQUEST_ID,
                attr::STATUS,
                attr::VECTOR,
                attr::ERROR_CODE,
                attr::ERROR_TEXT,
            ]),
        ),
        (command::CANCEL, ToDaemon) => ("CANCEL", mask(&[attr::REQUEST_ID])),
        (command::HEARTBEAT, _) => ("HEARTBEAT", mask(&[attr::HEARTBEAT_SEQ, attr::INFLIGHT])),
        (command::ERROR, _) => (
            "ERROR",
            mask(&[attr::ERROR_CODE, attr::ERROR_TEXT, attr::REQUEST_ID]),
        ),
        (command::UNREGISTER, ToKernel) => ("UNREGISTER", mask(&[attr::INSTANCE_ID])),
        (command::STATS, ToKernel) => ("STATS", mask(&[])),
        (command::STATS, ToDaemon) => ("STATS", mask(&[attr::STATS])),
        (command::EVENT, ToDaemon) => (
            "EVENT",
            mask(&[attr::EVENT_KIND, attr::INSTANCE_ID, attr::PORT]),
        ),
        (command::REQUEST | command::CANCEL | command::EVENT, ToKernel)
        | (command::REPLY | command::UNREGISTER, ToDaemon) => {
            return Err(Malformed::WrongDirection {
                command,
                direction: match direction {
                    ToKernel => "to the kernel",
                    ToDaemon => "to the daemon",
                },
            });
        }
        _ => return Err(Malformed::UnknownCommand(command)),
    };
    let table = AttrTable::parse(attrs, allowed, name)?;
    Ok(match (command, direction) {
        (command::REGISTER, ToKernel) => {
            let mut serves = Vec::new();
            for nest in &table.serves {
                serves.push(decode_serve(nest)?);
            }
            if serves.len() > limit::SERVES {
                return Err(Malformed::TooLong {
                    name: "SERVE list",
                    len: serves.len(),
                    max: limit::SERVES,
                });
            }
            Message::Register(Register {
                version: table.u32(attr::VERSION)?,
                features: table.u64(attr::FEATURES)?,
                instance_id: table.u64(attr::INSTANCE_ID)?,
                max_inflight: window(table.u32(attr::MAX_INFLIGHT)?)?,
                serves,
            })
        }
        (command::REGISTER, ToDaemon) => Message::Registered(Registered {
            version: table.u32(attr::VERSION)?,
            features: table.u64(attr::FEATURES)?,
            instance_id: table.u64(attr::INSTANCE_ID)?,
            max_inflight: window(table.u32(attr::MAX_INFLIGHT)?)?,
        }),
        (command::REQUEST, _) => {
            let priority = table.u8(attr::PRIORITY)?;
            let payload = table.bytes(attr::PAYLOAD)?;
            if payload.len() > limit::PAYLOAD {
                return Err(Malformed::TooLong {
                    name: "PAYLOAD",
                    len: payload.len(),
                    max: limit::PAYLOAD,
                });
            }
            Message::Request(Request {
                request_id: table.u64(attr::REQUEST_ID)?,
                priority: WirePriority::from_wire(priority).ok_or(Malformed::BadValue {
                    name: "PRIORITY",
                    value: priority.into(),
                })?,
                deadline_ms: table.u32(attr::DEADLINE_MS)?,
                pipeline: table.string(attr::PIPELINE, limit::PIPELINE_NAME)?,
                payload: std::str::from_utf8(payload)
                    .map_err(|_| Malformed::NotUtf8 { name: "PAYLOAD" })?
                    .to_owned(),
            })
        }
        (command::REPLY, _) => {
            let status_value = table.u8(attr::STATUS)?;
            let status = ReplyStatus::from_wire(status_value).ok_or(Malformed::BadValue {
                name: "STATUS",
                value: status_value.into(),
            })?;
            let error = table.optional_error()?;
            let vector = match table.get(attr::VECTOR) {
                Some(bytes) => decode_vector(bytes)?,
                None => Vec::new(),
            };
            match status {
                ReplyStatus::Ok => {
                    if table.get(attr::VECTOR).is_none() {
                        return Err(Malformed::Missing { name: "VECTOR" });
                    }
                    if error.is_some() {
                        return Err(Malformed::AttrNotAllowed {
                            name: "ERROR_CODE",
                            command: "REPLY with status ok",
                        });
                    }
                }
                _ => {
                    if table.get(attr::VECTOR).is_some() {
                        return Err(Malformed::AttrNotAllowed {
                            name: "VECTOR",
                            command: "REPLY with a failed status",
                        });
                    }
                    if error.is_none() {
                        return Err(Malformed::Missing { name: "ERROR_CODE" });
                    }
                }
            }
            Message::Reply(Reply {
                request_id: table.u64(attr::REQUEST_ID)?,
                status,
                vector,
                error,
            })
        }
        (command::CANCEL, _) => Message::Cancel(Cancel {
            request_id: table.u64(attr::REQUEST_ID)?,
        }),
        (command::HEARTBEAT, _) => Message::Heartbeat(Heartbeat {
            seq: table.u64(attr::HEARTBEAT_SEQ)?,
            inflight: table.optional(attr::INFLIGHT, |table| table.u32(attr::INFLIGHT))?,
        }),
        (command::ERROR, _) => Message::Error(ErrorReport {
            error: table
                .optional_error()?
                .ok_or(Malformed::Missing { name: "ERROR_CODE" })?,
            request_id: table.optional(attr::REQUEST_ID, |table| table.u64(attr::REQUEST_ID))?,
        }),
        (command::UNREGISTER, _) => Message::Unregister(Unregister {
            instance_id: table.u64(attr::INSTANCE_ID)?,
        }),
        (command::STATS, ToKernel) => Message::StatsQuery,
        (command::STATS, ToDaemon) => {
            let nest = table
                .get(attr::STATS)
                .ok_or(Malformed::Missing { name: "STATS" })?;
            Message::Stats(decode_stats(nest)?)
        }
        (command::EVENT, _) => {
            let kind = table.u8(attr::EVENT_KIND)?;
            Message::Event(Event {
                kind: EventKind::from_wire(kind).ok_or(Malformed::BadValue {
                    name: "EVENT_KIND",
                    value: kind.into(),
                })?,
                instance_id: table
                    .optional(attr::INSTANCE_ID, |table| table.u64(attr::INSTANCE_ID))?,
                port: table.optional(attr::PORT, |table| table.u32(attr::PORT))?,
            })
        }
        _ => return Err(Malformed::UnknownCommand(command)),
    })
}

fn window(max_inflight: u32) -> Result<u32, Malformed> {
    if max_inflight == 0 || max_inflight > limit::MAX_INFLIGHT {
        return Err(Malformed::BadValue {
            name: "MAX_INFLIGHT",
            value: max_inflight.into(),
        });
    }
    Ok(max_inflight)
}

fn decode_serve(nest: &[u8]) -> Result<Serve, Malformed> {
    let mut pipeline = None;
    let mut model = None;
    let mut dims = None;
    for item in checked_attrs(nest) {
        let (kind, value, flags) = item?;
        let name = match kind {
            serve_attr::PIPELINE => "SERVE.PIPELINE",
            serve_attr::MODEL => "SERVE.MODEL",
            serve_attr::DIMS => "SERVE.DIMS",
            other => {
                return Err(Malformed::UnknownAttr {
                    attr: other,
                    within: " within SERVE",
                });
            }
        };
        check_flags(name, flags, false)?;
        let slot_taken = match kind {
            serve_attr::PIPELINE => pipeline
                .replace(string(name, value, limit::PIPELINE_NAME)?)
                .is_some(),
            serve_attr::MODEL => model
                .replace(string(name, value, limit::MODEL_NAME)?)
                .is_some(),
            _ => dims
                .replace(fixed::<4>(name, value).map(u32::from_ne_bytes)?)
                .is_some(),
        };
        if slot_taken {
            return Err(Malformed::Duplicate { name });
        }
    }
    let dims = dims.unwrap_or(0);
    if dims as usize > limit::DIMS {
        return Err(Malformed::BadValue {
            name: "SERVE.DIMS",
            value: dims.into(),
        });
    }
    Ok(Serve {
        pipeline: pipeline.ok_or(Malformed::Missing {
            name: "SERVE.PIPELINE",
        })?,
        model,
        dims,
    })
}

fn decode_stats(nest: &[u8]) -> Result<Stats, Malformed> {
    let mut counters = BTreeMap::new();
    for item in checked_attrs(nest) {
        let (kind, value, flags) = item?;
        if kind == stat::PAD && value.is_empty() {
            continue;
        }
        if kind == stat::PAD || kind > stat::MAX {
            return Err(Malformed::UnknownAttr {
                attr: kind,
                within: " within STATS",
            });
        }
        check_flags("STATS counter", flags, false)?;
        let count = fixed::<8>("STATS counter", value).map(u64::from_ne_bytes)?;
        if counters.insert(kind, count).is_some() {
            return Err(Malformed::Duplicate {
                name: "STATS counter",
            });
        }
    }
    Ok(Stats { counters })
}

fn decode_vector(bytes: &[u8]) -> Result<Vec<f32>, Malformed> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Malformed::VectorSize { len: bytes.len() });
    }
    if bytes.len() / 4 > limit::DIMS {
        return Err(Malformed::TooLong {
            name: "VECTOR",
            len: bytes.len() / 4,
            max: limit::DIMS,
        });
    }
    let vector: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect();
    if vector.iter().any(|value| !value.is_finite()) {
        return Err(Malformed::VectorNotFinite);
    }
    Ok(vector)
}

/// The top-level attributes of one message, each at most once.
struct AttrTable<'a> {
    slots: [Option<&'a [u8]>; attr::MAX as usize + 1],
    serves: Vec<&'a [u8]>,
}

impl<'a> AttrTable<'a> {
    fn parse(attrs: &'a [u8], allowed: u32, command: &'static str) -> Result<Self, Malformed> {
        let mut table = AttrTable {
            slots: [None; attr::MAX as usize + 1],
            serves: Vec::new(),
        };
        for item in checked_attrs(attrs) {
            let (kind, value, flags) = item?;
            if kind == 0 || kind > attr::MAX {
                return Err(Malformed::UnknownAttr {
                    attr: kind,
                    within: "",
                });
            }
            let name = attr_name(kind);
            if allowed & (1 << kind) == 0 {
                return Err(Malformed::AttrNotAllowed { name, command });
            }
            let nested = kind == attr::SERVE || kind == attr::STATS;
            check_flags(name, flags, nested)?;
            if kind == attr::PAD {
                continue;
            }
            if kind == attr::SERVE {
                table.serves.push(value);
                continue;
            }
            let slot = &mut table.slots[kind as usize];
            if slot.is_some() {
                return Err(Malformed::Duplicate { name });
            }
            *slot = Some(value);
        }
        Ok(table)
    }

    fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.slots[kind as usize]
    }

    fn required(&self, kind: u16) -> Result<&'a [u8], Malformed> {
        self.get(kind).ok_or(Malformed::Missing {
            name: attr_name(kind),
        })
    }

    fn optional<T>(
        &self,
        kind: u16,
        read: impl FnOnce(&Self) -> Result<T, Malformed>,
    ) -> Result<Option<T>, Malformed> {
        match self.get(kind) {
            Some(_) => read(self).map(Some),
            None => Ok(None),
        }
    }

    fn u8(&self, kind: u16) -> Result<u8, Malformed> {
        fixed::<1>(attr_name(kind), self.required(kind)?).map(|bytes| bytes[0])
    }

    fn u32(&self, kind: u16) -> Result<u32, Malformed> {
        fixed::<4>(attr_name(kind), self.required(kind)?).map(u32::from_ne_bytes)
    }

    fn u64(&self, kind: u16) -> Result<u64, Malformed> {
        fixed::<8>(attr_name(kind), self.required(kind)?).map(u64::from_ne_bytes)
    }

    fn bytes(&self, kind: u16) -> Result<&'a [u8], Malformed> {
        self.required(kind)
    }

    fn string(&self, kind: u16, max: usize) -> Result<String, Malformed> {
        string(attr_name(kind), self.required(kind)?, max)
    }

    /// ERROR_CODE and ERROR_TEXT travel together.
    fn optional_error(&self) -> Result<Option<WireError>, Malformed> {
        match (self.get(attr::ERROR_CODE), self.get(attr::ERROR_TEXT)) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(Malformed::Missing { name: "ERROR_TEXT" }),
            (None, Some(_)) => Err(Malformed::Missing { name: "ERROR_CODE" }),
            (Some(_), Some(_)) => {
                let code = self.u32(attr::ERROR_CODE)?;
                if code == 0 || code > 4095 {
                    return Err(Malformed::BadValue {
                        name: "ERROR_CODE",
                        value: code.into(),
                    });
                }
                Ok(Some(WireError {
                    code,
                    text: self.string(attr::ERROR_TEXT, limit::ERROR_TEXT)?,
                }))
            }
        }
    }
}

fn check_flags(name: &'static str, flags: u16, nested: bool) -> Result<(), Malformed> {
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

fn fixed<const N: usize>(name: &'static str, value: &[u8]) -> Result<[u8; N], Malformed> {
    value.try_into().map_err(|_| Malformed::AttrSize {
        name,
        len: value.len(),
        expected: N,
    })
}

fn string(name: &'static str, value: &[u8], max: usize) -> Result<String, Malformed> {
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
fn checked_attrs(mut rest: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8], u16), Malformed>> {
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
fn scan_request_id(attrs: &[u8]) -> Option<u64> {
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

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Starts a netlink message; returns where it starts.
pub fn begin_message(buffer: &mut Vec<u8>, header: Header) -> usize {
    let padding = align4(buffer.len()) - buffer.len();
    buffer.extend(std::iter::repeat_n(0, padding));
    let start = buffer.len();
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    buffer.extend_from_slice(&header.kind.to_ne_bytes());
    buffer.extend_from_slice(&header.flags.to_ne_bytes());
    buffer.extend_from_slice(&header.seq.to_ne_bytes());
    buffer.extend_from_slice(&header.port.to_ne_bytes());
    start
}

/// Fills in the length of the message that starts at `start`.
pub fn finish_message(buffer: &mut [u8], start: usize) {
    let len = (buffer.len() - start) as u32;
    buffer[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends attributes, each padded to four bytes.
pub struct AttrWriter<'a> {
    pub buffer: &'a mut Vec<u8>,
}

impl AttrWriter<'_> {
    pub fn raw(&mut self, kind: u16, value: &[u8]) {
        let len = (NLA_HDRLEN + value.len()) as u16;
        self.buffer.extend_from_slice(&len.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.buffer.extend_from_slice(value);
        let padding = align4(self.buffer.len()) - self.buffer.len();
        self.buffer.extend(std::iter::repeat_n(0, padding));
    }

    pub fn u8(&mut self, kind: u16, value: u8) {
        self.raw(kind, &[value]);
    }

    pub fn u32(&mut self, kind: u16, value: u32) {
        self.raw(kind, &value.to_ne_bytes());
    }

    pub fn u64(&mut self, kind: u16, value: u64) {
        self.raw(kind, &value.to_ne_bytes());
    }

    pub fn bytes(&mut self, kind: u16, value: &[u8]) {
        self.raw(kind, value);
    }

    pub fn string(&mut self, kind: u16, value: &str) {
        let len = (NLA_HDRLEN + value.len() + 1) as u16;
        self.buffer.extend_from_slice(&len.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.buffer.extend_from_slice(value.as_bytes());
        self.buffer.push(0);
        let padding = align4(self.buffer.len()) - self.buffer.len();
        self.buffer.extend(std::iter::repeat_n(0, padding));
    }

    fn vector(&mut self, kind: u16, vector: &[f32]) {
        let len = (NLA_HDRLEN + vector.len() * 4) as u16;
        self.buffer.extend_from_slice(&len.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.buffer.reserve(vector.len() * 4);
        for value in vector {
            self.buffer.extend_from_slice(&value.to_le_bytes());
        }
    }

    pub fn begin_nest(&mut self, kind: u16) -> usize {
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&0u16.to_ne_bytes());
        self.buffer
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    pub fn end_nest(&mut self, start: usize) {
        let len = (self.buffer.len() - start) as u16;
        self.buffer[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}
