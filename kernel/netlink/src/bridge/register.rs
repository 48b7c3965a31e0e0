//! Registration: REGISTER with an ack asked for; the kernel answers with
//! what it agreed (REGISTER) and the ack, or a failure ack whose errno says
//! why (EPROTO version or features, EPERM no CAP_NET_ADMIN, EBUSY the
//! instance id is taken).

use std::time::Duration;

use crate::codec::{self, Frame, NLM_F_ACK};
use crate::error::Error;
use crate::message::{Direction, Message, Register, Registered};
use crate::protocol::feature;
use crate::transport::Link;

use super::session::Shared;

const REGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Registers; returns what was agreed and any messages that arrived with
/// the answer (requests may follow the agreement before its ack).
pub(super) async fn register(
    link: &Link,
    shared: &Shared,
) -> Result<(Registered, Vec<Frame>), Error> {
    let seq = shared.next_seq();
    let config = &shared.config;
    let message = Message::Register(Register {
        version: config.protocol_version,
        features: config.features,
        instance_id: shared.instance_id,
        max_inflight: config.max_inflight,
        serves: shared.serves.clone(),
    });
    link.send(&message, NLM_F_ACK, seq)
        .await
        .map_err(|source| Error::io("sending REGISTER", source))?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut registered = None;
    let mut early = Vec::new();
    let answer = async {
        loop {
            let received = link
                .socket
                .recv(&mut buffer)
                .await
                .map_err(|source| Error::io("reading the answer to REGISTER", source))?;
            for frame in codec::decode(&buffer[..received.len], link.family_id, Direction::ToDaemon)
            {
                match frame {
                    Ok(Frame::Genl {
                        header,
                        message: Message::Registered(answer),
                    }) if header.seq == seq => registered = Some(answer),
                    Ok(frame @ Frame::Genl { .. }) if registered.is_some() => early.push(frame),
                    Ok(Frame::Ack {
                        acked_seq,
                        error,
                        text,
                        ..
                    }) if acked_seq == seq => {
                        return match error {
                            0 => registered.clone().ok_or(Error::NoAnswer {
                                what: "REGISTER (an ack came without the agreed terms)",
                                millis: 0,
                                hint: "the kernel module and the daemon disagree on the protocol",
                            }),
                            error => Err(refusal(-error, text.unwrap_or_default(), shared)),
                        };
                    }
                    _ => {}
                }
            }
        }
    };
    let registered = match tokio::time::timeout(REGISTER_TIMEOUT, answer).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(Error::NoAnswer {
                what: "REGISTER",
                millis: REGISTER_TIMEOUT.as_millis(),
                hint: "is the module loaded, or the peer running?",
            });
        }
    };
    if registered.features & feature::REQUIRED != feature::REQUIRED {
        return Err(Error::VersionMismatch {
            version: registered.version,
            features: registered.features,
            text: "the kernel dropped a required feature".to_owned(),
        });
    }
    Ok((registered, early))
}

fn refusal(errno: i32, text: String, shared: &Shared) -> Error {
    match errno {
        libc::EPROTO => Error::VersionMismatch {
            version: shared.config.protocol_version,
            features: shared.config.features,
            text,
        },
        libc::EPERM | libc::EACCES => Error::NotPermitted { text },
        libc::ENOENT | libc::EOPNOTSUPP => Error::FamilyMissing {
            family: shared.config.family.clone(),
        },
        libc::EBUSY => Error::Refused {
            errno,
            text,
            hint: "an instance with this id is registered already; give each daemon its own instance id",
        },
        _ => Error::Refused {
            errno,
            text,
            hint: "see the kernel log (dmesg) for the module's reason",
        },
    }
}
