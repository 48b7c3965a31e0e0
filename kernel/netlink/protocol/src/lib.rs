//! spindle-netlink-protocol: the wire protocol between the kernel module
//! and the daemon (`docs/netlink-protocol.md`).
//!
//! - [`protocol`]: the numbers (commands, attributes, codes, limits), the
//!   same as `kmod/spindle_netlink.h`;
//! - [`message`]: one Rust struct per command and direction;
//! - [`codec`]: netlink framing and strict attribute validation.
//!
//! It depends on no other workspace crate, no async runtime and no socket;
//! the fuzz target (`kernel/netlink/fuzz/`) builds it alone.

pub mod codec;
pub mod message;
pub mod protocol;
