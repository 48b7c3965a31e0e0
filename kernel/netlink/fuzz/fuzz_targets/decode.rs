//! Feeds arbitrary bytes to the codec both ways. It must never panic, and
//! whatever it accepts must encode again to bytes that decode to the same
//! message (no message is changed in transit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spindle_netlink_protocol::codec::{self, Frame};
use spindle_netlink_protocol::message::Direction;
use spindle_netlink_protocol::protocol::USERSOCK_FAMILY_ID;

fuzz_target!(|data: &[u8]| {
    for direction in [Direction::ToDaemon, Direction::ToKernel] {
        for frame in codec::decode(data, USERSOCK_FAMILY_ID, direction) {
            let Ok(Frame::Genl { header, message }) = frame else {
                continue;
            };
            let again = codec::encode(&message, header);
            let frames = codec::decode(&again, USERSOCK_FAMILY_ID, direction);
            match frames.as_slice() {
                [Ok(Frame::Genl { message: decoded, .. })] => assert_eq!(decoded, &message),
                other => panic!("re-encoded {message:?} decoded as {other:?}"),
            }
        }
    }
});
