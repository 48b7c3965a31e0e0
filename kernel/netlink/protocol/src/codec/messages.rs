//! The family's attributes to typed messages, per command and direction,
//! with the protocol's policy: allowed attributes, sizes, ranges, limits.

use std::collections::BTreeMap;

use super::Malformed;
use super::attrs::{attr_name, check_flags, checked_attrs, fixed, string};
use crate::message::{
    Cancel, Direction, ErrorReport, Event, EventKind, Heartbeat, Message, Register, Registered,
    Reply, ReplyStatus, Request, Serve, Stats, Unregister, WireError, WirePriority,
};
use crate::protocol::{attr, command, limit, serve_attr, stat};

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

pub(super) fn decode_message(
    command: u8,
    attrs: &[u8],
    direction: Direction,
) -> Result<Message, Malformed> {
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
