//! spindle-netlink: the netlink bridge, a front end of the kernel.
//!
//! - [`protocol`], [`message`], [`codec`]: the wire protocol, re-exported
//!   from `spindle-netlink-protocol`; `docs/netlink-protocol.md`.
//! - [`sys`] (the only `unsafe`), [`socket`], [`genl_ctrl`], [`transport`]:
//!   netlink sockets on tokio, generic netlink to the kernel module and
//!   NETLINK_USERSOCK to a userspace peer.
//! - [`bridge`]: registers and answers each request exactly once through
//!   the kernel's handle ([`kernel_handle`], the only module naming kernel
//!   types).
//! - [`peer`]: a userspace peer that plays the kernel module over
//!   NETLINK_USERSOCK (`spindle netlink-peer`, tests, the benchmark).
//! - [`pingpong`]: the raw netlink round trip the benchmark compares with.
//!
//! The kernel does not depend on this crate; this crate depends on no other
//! front end.

pub mod bridge;
pub mod error;
pub mod genl_ctrl;
pub mod kernel_handle;
pub mod peer;
pub mod pingpong;
pub mod socket;
pub mod sys;
pub mod transport;

pub use spindle_netlink_protocol::{codec, message, protocol};

pub use bridge::{BridgeConfig, BridgeCounters, serve};
pub use error::Error;
pub use kernel_handle::KernelHandle;
pub use transport::TransportConfig;
