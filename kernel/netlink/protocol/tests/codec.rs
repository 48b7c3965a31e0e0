//! The codec, data-driven: every message round-trips, and every hostile
//! message is rejected with its reason (one snapshot lists them all). The
//! numbers agree with the kernel module's header.

use std::collections::BTreeMap;
use std::fmt::Write;

use spindle_netlink_protocol::codec::{self, DecodeError, Frame, Header, NLM_F_REQUEST};
use spindle_netlink_protocol::message::*;
use spindle_netlink_protocol::protocol::{self, USERSOCK_FAMILY_ID, attr, command};

const FAMILY: u16 = USERSOCK_FAMILY_ID;

fn header(seq: u32) -> Header {
    Header {
        kind: FAMILY,
        flags: NLM_F_REQUEST,
        seq,
        port: 4242,
    }
}

fn all_messages() -> Vec<(Direction, Message)> {
    let mut counters = BTreeMap::new();
    counters.insert(protocol::stat::SUBMITTED, 10);
    counters.insert(protocol::stat::OK, 9);
    vec![
        (
            Direction::ToKernel,
            Message::Register(Register {
                version: 1,
                features: protocol::feature::ALL,
                instance_id: 0xdead_beef,
                max_inflight: 64,
                serves: vec![
                    Serve {
                        pipeline: "ingest".into(),
                        model: Some("all-MiniLM-L6-v2".into()),
                        dims: 384,
                    },
                    Serve {
                        pipeline: "noop".into(),
                        model: None,
                        dims: 0,
                    },
                ],
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Registered(Registered {
                version: 1,
                features: 3,
                instance_id: 7,
                max_inflight: 32,
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Request(Request {
                request_id: 99,
                priority: WirePriority::Low,
                deadline_ms: 1500,
                pipeline: "ingest".into(),
                payload: "héllo wörld".into(),
            }),
        ),
        (
            Direction::ToKernel,
            Message::Reply(Reply {
                request_id: 99,
                status: ReplyStatus::Ok,
                vector: vec![0.6, 0.8, 0.0],
                error: None,
            }),
        ),
        (
            Direction::ToKernel,
            Message::Reply(Reply {
                request_id: 100,
                status: ReplyStatus::Busy,
                vector: vec![],
                error: Some(WireError {
                    code: 16,
                    text: "busy".into(),
                }),
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Cancel(Cancel { request_id: 5 }),
        ),
        (
            Direction::ToKernel,
            Message::Heartbeat(Heartbeat {
                seq: 3,
                inflight: Some(2),
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Heartbeat(Heartbeat {
                seq: 4,
                inflight: None,
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Error(ErrorReport {
                error: WireError {
                    code: 22,
                    text: "bad".into(),
                },
                request_id: Some(1),
            }),
        ),
        (
            Direction::ToKernel,
            Message::Unregister(Unregister { instance_id: 7 }),
        ),
        (Direction::ToKernel, Message::StatsQuery),
        (Direction::ToDaemon, Message::Stats(Stats { counters })),
        (
            Direction::ToDaemon,
            Message::Event(Event {
                kind: EventKind::BreakerOpen,
                instance_id: Some(7),
                port: Some(1234),
            }),
        ),
    ]
}

#[test]
fn every_message_round_trips() {
    for (direction, message) in all_messages() {
        let bytes = codec::encode(&message, header(11));
        let frames = codec::decode(&bytes, FAMILY, direction);
        assert_eq!(frames.len(), 1, "{message:?}");
        match &frames[0] {
            Ok(Frame::Genl {
                header: got,
                message: decoded,
            }) => {
                assert_eq!(decoded, &message);
                assert_eq!(got.seq, 11);
                assert_eq!(got.port, 4242);
            }
            other => panic!("{message:?} decoded as {other:?}"),
        }
    }
}

#[test]
fn several_messages_share_a_datagram() {
    let mut datagram = Vec::new();
    for seq in 0..3 {
        codec::encode_into(
            &mut datagram,
            &Message::Cancel(Cancel { request_id: seq }),
            header(seq as u32),
        );
    }
    let frames = codec::decode(&datagram, FAMILY, Direction::ToDaemon);
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(Result::is_ok));
}

#[test]
fn acks_carry_the_error_and_the_text() {
    let mut datagram = Vec::new();
    codec::encode_ack(&mut datagram, header(5), 77, -71, "version 2 refused");
    let frames = codec::decode(&datagram, FAMILY, Direction::ToDaemon);
    match &frames[0] {
        Ok(Frame::Ack {
            acked_seq,
            error,
            text,
            ..
        }) => {
            assert_eq!((*acked_seq, *error), (5, -71));
            assert_eq!(text.as_deref(), Some("version 2 refused"));
        }
        other => panic!("{other:?}"),
    }
}

/// A raw message: the genl header's command, then attributes given as
/// (type, bytes) with each padded to four bytes.
fn raw(command: u8, version: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![command, version, 0, 0];
    for (kind, value) in attrs {
        body.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(value);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut message = Vec::new();
    message.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&FAMILY.to_ne_bytes());
    message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message.extend_from_slice(&9u32.to_ne_bytes());
    message.extend_from_slice(&4242u32.to_ne_bytes());
    message.extend_from_slice(&body);
    message
}

fn cstr(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn good_request_attrs() -> Vec<(u16, Vec<u8>)> {
    vec![
        (attr::REQUEST_ID, 42u64.to_ne_bytes().to_vec()),
        (attr::PRIORITY, vec![0]),
        (attr::DEADLINE_MS, 1000u32.to_ne_bytes().to_vec()),
        (attr::PIPELINE, cstr("ingest")),
        (attr::PAYLOAD, b"hello".to_vec()),
    ]
}

fn with(attrs: &[(u16, Vec<u8>)], kind: u16, value: Vec<u8>) -> Vec<(u16, Vec<u8>)> {
    let mut attrs: Vec<(u16, Vec<u8>)> =
        attrs.iter().filter(|(k, _)| *k != kind).cloned().collect();
    attrs.push((kind, value));
    attrs
}

fn without(attrs: &[(u16, Vec<u8>)], kind: u16) -> Vec<(u16, Vec<u8>)> {
    attrs.iter().filter(|(k, _)| *k != kind).cloned().collect()
}

fn describe(frames: &[Result<Frame, DecodeError>]) -> String {
    frames
        .iter()
        .map(|frame| match frame {
            Ok(Frame::Genl { message, .. }) => format!("ok {}", message_name(message)),
            Ok(other) => format!("ok {other:?}"),
            Err(error) => format!(
                "rejected: {} [request_id {:?}]",
                error.reason, error.request_id
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::Request(_) => "REQUEST",
        Message::Reply(_) => "REPLY",
        _ => "other",
    }
}

#[test]
fn hostile_messages_are_rejected_with_their_reason() {
    let request = good_request_attrs();
    let reply_ok = vec![
        (attr::REQUEST_ID, 42u64.to_ne_bytes().to_vec()),
        (attr::STATUS, vec![0]),
        (attr::VECTOR, 1.0f32.to_le_bytes().to_vec()),
    ];
    let mut long_payload = vec![b'a'; protocol::limit::PAYLOAD + 1];
    long_payload[0] = b'b';
    let mut cases: Vec<(&str, Vec<u8>, Direction)> = vec![
        (
            "a good request",
            raw(command::REQUEST, 1, &request),
            Direction::ToDaemon,
        ),
        ("empty datagram", vec![], Direction::ToDaemon),
        ("15 bytes", vec![0; 15], Direction::ToDaemon),
        (
            "genl header cut",
            raw(command::REQUEST, 1, &request)[..18].to_vec(),
            Direction::ToDaemon,
        ),
        (
            "genl version 2",
            raw(command::REQUEST, 2, &request),
            Direction::ToDaemon,
        ),
        ("unknown command", raw(77, 1, &request), Direction::ToDaemon),
        (
            "request sent to the kernel",
            raw(command::REQUEST, 1, &request),
            Direction::ToKernel,
        ),
        (
            "reply sent to the daemon",
            raw(command::REPLY, 1, &reply_ok),
            Direction::ToDaemon,
        ),
        (
            "unknown attribute",
            raw(command::REQUEST, 1, &with(&request, 99, vec![1])),
            Direction::ToDaemon,
        ),
        (
            "attribute of another command",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::VECTOR, vec![0; 4]),
            ),
            Direction::ToDaemon,
        ),
        (
            "duplicate attribute",
            raw(
                command::REQUEST,
                1,
                &[request.clone(), vec![(attr::PRIORITY, vec![1])]].concat(),
            ),
            Direction::ToDaemon,
        ),
        (
            "missing pipeline",
            raw(command::REQUEST, 1, &without(&request, attr::PIPELINE)),
            Direction::ToDaemon,
        ),
        (
            "short request id",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::REQUEST_ID, vec![1, 2, 3, 4]),
            ),
            Direction::ToDaemon,
        ),
        (
            "priority 7",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::PRIORITY, vec![7]),
            ),
            Direction::ToDaemon,
        ),
        (
            "pipeline without NUL",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::PIPELINE, b"ingest".to_vec()),
            ),
            Direction::ToDaemon,
        ),
        (
            "pipeline with inner NUL",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::PIPELINE, b"in\0gest\0".to_vec()),
            ),
            Direction::ToDaemon,
        ),
        (
            "empty pipeline",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::PIPELINE, vec![0]),
            ),
            Direction::ToDaemon,
        ),
        (
            "pipeline too long",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::PIPELINE, cstr(&"p".repeat(64))),
            ),
            Direction::ToDaemon,
        ),
        (
            "payload too long",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::PAYLOAD, long_payload),
            ),
            Direction::ToDaemon,
        ),
        (
            "payload not UTF-8",
            raw(
                command::REQUEST,
                1,
                &with(&request, attr::PAYLOAD, vec![0xff, 0xfe]),
            ),
            Direction::ToDaemon,
        ),
        (
            "vector of 5 bytes",
            raw(
                command::REPLY,
                1,
                &with(&reply_ok, attr::VECTOR, vec![0; 5]),
            ),
            Direction::ToKernel,
        ),
        (
            "vector with NaN",
            raw(
                command::REPLY,
                1,
                &with(&reply_ok, attr::VECTOR, f32::NAN.to_le_bytes().to_vec()),
            ),
            Direction::ToKernel,
        ),
        (
            "ok reply without vector",
            raw(command::REPLY, 1, &without(&reply_ok, attr::VECTOR)),
            Direction::ToKernel,
        ),
        (
            "failed reply without error",
            raw(
                command::REPLY,
                1,
                &with(&without(&reply_ok, attr::VECTOR), attr::STATUS, vec![1]),
            ),
            Direction::ToKernel,
        ),
        (
            "status 9",
            raw(command::REPLY, 1, &with(&reply_ok, attr::STATUS, vec![9])),
            Direction::ToKernel,
        ),
        (
            "register with window 0",
            raw(
                command::REGISTER,
                1,
                &[
                    (attr::VERSION, 1u32.to_ne_bytes().to_vec()),
                    (attr::FEATURES, 1u64.to_ne_bytes().to_vec()),
                    (attr::INSTANCE_ID, 1u64.to_ne_bytes().to_vec()),
                    (attr::MAX_INFLIGHT, 0u32.to_ne_bytes().to_vec()),
                ],
            ),
            Direction::ToKernel,
        ),
    ];
    // Flags and structure that the attribute list above cannot express.
    let mut byteorder = raw(command::REQUEST, 1, &request);
    byteorder[20 + 2 + 1] |= 0x40; // first attribute's type gets NLA_F_NET_BYTEORDER
    cases.push(("network byte order flag", byteorder, Direction::ToDaemon));
    let mut nested = raw(command::REQUEST, 1, &request);
    nested[20 + 2 + 1] |= 0x80;
    cases.push((
        "nested flag on a plain attribute",
        nested,
        Direction::ToDaemon,
    ));
    let mut short_attr = raw(command::REQUEST, 1, &request);
    short_attr[20] = 2;
    short_attr[21] = 0;
    cases.push(("attribute length 2", short_attr, Direction::ToDaemon));
    let mut long_attr = raw(command::REQUEST, 1, &request);
    long_attr[20] = 0xff;
    long_attr[21] = 0x0f;
    cases.push(("attribute past the end", long_attr, Direction::ToDaemon));
    let mut trailing = raw(command::REQUEST, 1, &request);
    trailing.extend_from_slice(&[1, 2]);
    let len = trailing.len() as u32;
    trailing[..4].copy_from_slice(&len.to_ne_bytes());
    cases.push(("junk after the attributes", trailing, Direction::ToDaemon));
    let mut padding = raw(
        command::REQUEST,
        1,
        &with(&request, attr::PRIORITY, vec![0]),
    );
    let priority_padding = padding.len() - 3; // PRIORITY was pushed last: 1 byte + 3 padding
    padding[priority_padding] = 0xaa;
    cases.push(("non-zero padding", padding, Direction::ToDaemon));
    let mut too_long = raw(command::REQUEST, 1, &request);
    too_long[..4].copy_from_slice(&4096u32.to_ne_bytes());
    cases.push(("length past the datagram", too_long, Direction::ToDaemon));
    let mut too_short = raw(command::REQUEST, 1, &request);
    too_short[..4].copy_from_slice(&8u32.to_ne_bytes());
    cases.push((
        "length shorter than a header",
        too_short,
        Direction::ToDaemon,
    ));

    let mut table = String::new();
    for (name, bytes, direction) in cases {
        let frames = codec::decode(&bytes, FAMILY, direction);
        writeln!(table, "{name}: {}", describe(&frames)).unwrap();
    }
    insta::assert_snapshot!(table);
}

/// The numbers in `kmod/spindle_netlink.h` are the numbers here.
#[test]
fn the_kernel_module_header_agrees() {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../kmod/spindle_netlink.h"
    ))
    .expect("kmod/spindle_netlink.h");
    let mut defines = BTreeMap::new();
    for line in header.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define")
            && let (Some(name), Some(value)) = (words.next(), words.next())
        {
            let rest: Vec<&str> = std::iter::once(value).chain(words).collect();
            defines.insert(name.to_owned(), rest.join(" "));
        }
    }
    let number = |name: &str| -> u64 {
        let value = defines
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the header"));
        if let Some(shift) = value
            .strip_prefix("(1ULL << ")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            let shift: u32 = shift.parse().unwrap();
            return 1 << shift;
        }
        value.parse().unwrap_or_else(|_| panic!("{name} = {value}"))
    };
    let checks: Vec<(&str, u64)> = vec![
        ("SPINDLE_NL_FAMILY_VERSION", protocol::FAMILY_VERSION.into()),
        (
            "SPINDLE_NL_PROTOCOL_VERSION",
            protocol::PROTOCOL_VERSION.into(),
        ),
        ("SPINDLE_NL_CMD_REGISTER", command::REGISTER.into()),
        ("SPINDLE_NL_CMD_REQUEST", command::REQUEST.into()),
        ("SPINDLE_NL_CMD_REPLY", command::REPLY.into()),
        ("SPINDLE_NL_CMD_CANCEL", command::CANCEL.into()),
        ("SPINDLE_NL_CMD_HEARTBEAT", command::HEARTBEAT.into()),
        ("SPINDLE_NL_CMD_ERROR", command::ERROR.into()),
        ("SPINDLE_NL_CMD_UNREGISTER", command::UNREGISTER.into()),
        ("SPINDLE_NL_CMD_STATS", command::STATS.into()),
        ("SPINDLE_NL_CMD_EVENT", command::EVENT.into()),
        ("SPINDLE_NL_A_PAD", attr::PAD.into()),
        ("SPINDLE_NL_A_VERSION", attr::VERSION.into()),
        ("SPINDLE_NL_A_FEATURES", attr::FEATURES.into()),
        ("SPINDLE_NL_A_INSTANCE_ID", attr::INSTANCE_ID.into()),
        ("SPINDLE_NL_A_SERVE", attr::SERVE.into()),
        ("SPINDLE_NL_A_MAX_INFLIGHT", attr::MAX_INFLIGHT.into()),
        ("SPINDLE_NL_A_REQUEST_ID", attr::REQUEST_ID.into()),
        ("SPINDLE_NL_A_PRIORITY", attr::PRIORITY.into()),
        ("SPINDLE_NL_A_DEADLINE_MS", attr::DEADLINE_MS.into()),
        ("SPINDLE_NL_A_PIPELINE", attr::PIPELINE.into()),
        ("SPINDLE_NL_A_PAYLOAD", attr::PAYLOAD.into()),
        ("SPINDLE_NL_A_STATUS", attr::STATUS.into()),
        ("SPINDLE_NL_A_VECTOR", attr::VECTOR.into()),
        ("SPINDLE_NL_A_ERROR_CODE", attr::ERROR_CODE.into()),
        ("SPINDLE_NL_A_ERROR_TEXT", attr::ERROR_TEXT.into()),
        ("SPINDLE_NL_A_HEARTBEAT_SEQ", attr::HEARTBEAT_SEQ.into()),
        ("SPINDLE_NL_A_INFLIGHT", attr::INFLIGHT.into()),
        ("SPINDLE_NL_A_STATS", attr::STATS.into()),
        ("SPINDLE_NL_A_EVENT_KIND", attr::EVENT_KIND.into()),
        ("SPINDLE_NL_A_PORT", attr::PORT.into()),
        ("SPINDLE_NL_A_MAX", attr::MAX.into()),
        (
            "SPINDLE_NL_SERVE_A_PIPELINE",
            protocol::serve_attr::PIPELINE.into(),
        ),
        (
            "SPINDLE_NL_SERVE_A_MODEL",
            protocol::serve_attr::MODEL.into(),
        ),
        ("SPINDLE_NL_SERVE_A_DIMS", protocol::serve_attr::DIMS.into()),
        ("SPINDLE_NL_STATUS_OK", protocol::status::OK.into()),
        ("SPINDLE_NL_STATUS_ERROR", protocol::status::ERROR.into()),
        (
            "SPINDLE_NL_STATUS_TIMEOUT",
            protocol::status::TIMEOUT.into(),
        ),
        ("SPINDLE_NL_STATUS_BUSY", protocol::status::BUSY.into()),
        (
            "SPINDLE_NL_STATUS_CANCELLED",
            protocol::status::CANCELLED.into(),
        ),
        ("SPINDLE_NL_PRIO_HIGH", protocol::priority::HIGH.into()),
        ("SPINDLE_NL_PRIO_MEDIUM", protocol::priority::MEDIUM.into()),
        ("SPINDLE_NL_PRIO_LOW", protocol::priority::LOW.into()),
        (
            "SPINDLE_NL_EVENT_DAEMON_UP",
            protocol::event::DAEMON_UP.into(),
        ),
        (
            "SPINDLE_NL_EVENT_DAEMON_DOWN",
            protocol::event::DAEMON_DOWN.into(),
        ),
        (
            "SPINDLE_NL_EVENT_BREAKER_OPEN",
            protocol::event::BREAKER_OPEN.into(),
        ),
        (
            "SPINDLE_NL_EVENT_BREAKER_CLOSED",
            protocol::event::BREAKER_CLOSED.into(),
        ),
        (
            "SPINDLE_NL_EVENT_OVERLOAD",
            protocol::event::OVERLOAD.into(),
        ),
        ("SPINDLE_NL_F_VECTOR_F32", protocol::feature::VECTOR_F32),
        ("SPINDLE_NL_F_CANCEL", protocol::feature::CANCEL),
        ("SPINDLE_NL_F_HEARTBEAT", protocol::feature::HEARTBEAT),
        ("SPINDLE_NL_F_STATS", protocol::feature::STATS),
        (
            "SPINDLE_NL_LIMIT_PIPELINE_NAME",
            protocol::limit::PIPELINE_NAME as u64,
        ),
        (
            "SPINDLE_NL_LIMIT_MODEL_NAME",
            protocol::limit::MODEL_NAME as u64,
        ),
        ("SPINDLE_NL_LIMIT_PAYLOAD", protocol::limit::PAYLOAD as u64),
        ("SPINDLE_NL_LIMIT_DIMS", protocol::limit::DIMS as u64),
        (
            "SPINDLE_NL_LIMIT_ERROR_TEXT",
            protocol::limit::ERROR_TEXT as u64,
        ),
        ("SPINDLE_NL_LIMIT_SERVES", protocol::limit::SERVES as u64),
        (
            "SPINDLE_NL_LIMIT_MAX_INFLIGHT",
            protocol::limit::MAX_INFLIGHT.into(),
        ),
    ];
    for (name, value) in checks {
        assert_eq!(number(name), value, "{name}");
    }
    for (counter, name) in protocol::stat::NAMES {
        let define = format!("SPINDLE_NL_STAT_{}", name.to_uppercase());
        assert_eq!(number(&define), u64::from(counter), "{define}");
    }
    assert_eq!(
        defines["SPINDLE_NL_FAMILY_NAME"],
        format!("\"{}\"", protocol::FAMILY_NAME)
    );
    assert_eq!(
        defines["SPINDLE_NL_EVENTS_GROUP"],
        format!("\"{}\"", protocol::EVENTS_GROUP)
    );
}
