//! Starts from a valid message of each kind and lets the fuzzer overwrite
//! bytes of it (pairs of offset and value), which reaches the attribute
//! checks far more often than random bytes do. Same property as `decode`:
//! no panic, and whatever is accepted re-encodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spindle_netlink_protocol::codec::{self, Frame, Header};
use spindle_netlink_protocol::message::*;
use spindle_netlink_protocol::protocol::{USERSOCK_FAMILY_ID, feature};

fn templates() -> Vec<(Direction, Message)> {
    vec![
        (
            Direction::ToKernel,
            Message::Register(Register {
                version: 1,
                features: feature::ALL,
                instance_id: 9,
                max_inflight: 64,
                serves: vec![Serve {
                    pipeline: "ingest".into(),
                    model: Some("m".into()),
                    dims: 384,
                }],
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Request(Request {
                request_id: 1,
                priority: WirePriority::High,
                deadline_ms: 100,
                pipeline: "ingest".into(),
                payload: "hello world".into(),
            }),
        ),
        (
            Direction::ToKernel,
            Message::Reply(Reply {
                request_id: 1,
                status: ReplyStatus::Ok,
                vector: vec![0.5, -0.5, 0.25],
                error: None,
            }),
        ),
        (
            Direction::ToKernel,
            Message::Reply(Reply {
                request_id: 2,
                status: ReplyStatus::Error,
                vector: vec![],
                error: Some(WireError {
                    code: 5,
                    text: "boom".into(),
                }),
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Stats(Stats {
                counters: [(1, 5), (2, 4)].into_iter().collect(),
            }),
        ),
        (
            Direction::ToDaemon,
            Message::Event(Event {
                kind: EventKind::DaemonUp,
                instance_id: Some(1),
                port: Some(2),
            }),
        ),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, edits)) = data.split_first() else {
        return;
    };
    let templates = templates();
    let (direction, template) = &templates[pick as usize % templates.len()];
    let header = Header {
        kind: USERSOCK_FAMILY_ID,
        flags: 1,
        seq: 3,
        port: 4,
    };
    let mut bytes = codec::encode(template, header);
    for edit in edits.chunks_exact(2) {
        let at = edit[0] as usize % bytes.len();
        bytes[at] = edit[1];
    }
    for frame in codec::decode(&bytes, USERSOCK_FAMILY_ID, *direction) {
        let Ok(Frame::Genl { header, message }) = frame else {
            continue;
        };
        let again = codec::encode(&message, header);
        match codec::decode(&again, USERSOCK_FAMILY_ID, *direction).as_slice() {
            [Ok(Frame::Genl { message: decoded, .. })] => assert_eq!(decoded, &message),
            other => panic!("re-encoded {message:?} decoded as {other:?}"),
        }
    }
});
