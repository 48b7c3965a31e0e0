//! The wire protocol's numbers: the family, commands, attributes, status
//! and event codes, feature bits and limits. `kmod/spindle_netlink.h` holds
//! the same numbers for the kernel module; a test reads that header and
//! checks that both agree. `docs/netlink-protocol.md` explains them.
//!
//! This module depends on nothing.

/// The generic netlink family's name.
pub const FAMILY_NAME: &str = "spindle";
/// `genlmsghdr.version` of every message of the family.
pub const FAMILY_VERSION: u8 = 1;
/// The protocol version a daemon announces at register.
pub const PROTOCOL_VERSION: u32 = 1;
/// The multicast group for events (daemon up/down, breaker, overload).
pub const EVENTS_GROUP: &str = "events";
/// `nlmsg_type` of the family's messages over NETLINK_USERSOCK, where no
/// controller allocates one (any value from `NLMSG_MIN_TYPE` works; both
/// ends agree on this one).
pub const USERSOCK_FAMILY_ID: u16 = 0x7a;

/// Commands (`genlmsghdr.cmd`).
pub mod command {
    /// Daemon → kernel: announce an instance. Kernel → daemon: the answer.
    pub const REGISTER: u8 = 1;
    /// Kernel → daemon: one embedding request.
    pub const REQUEST: u8 = 2;
    /// Daemon → kernel: the one answer to a request.
    pub const REPLY: u8 = 3;
    /// Kernel → daemon: the caller gave up on a request (timeout, cancel).
    pub const CANCEL: u8 = 4;
    /// Both ways: liveness; the receiver echoes the sequence number.
    pub const HEARTBEAT: u8 = 5;
    /// Both ways: a message the sender could not act on.
    pub const ERROR: u8 = 6;
    /// Daemon → kernel: the instance leaves after draining.
    pub const UNREGISTER: u8 = 7;
    /// Daemon → kernel: ask for counters. Kernel → daemon: the counters.
    pub const STATS: u8 = 8;
    /// Kernel → multicast group `events`.
    pub const EVENT: u8 = 9;
}

/// Top-level attributes.
pub mod attr {
    /// Alignment padding for 64-bit values (`nla_put_u64_64bit`); ignored.
    pub const PAD: u16 = 1;
    pub const VERSION: u16 = 2;
    pub const FEATURES: u16 = 3;
    pub const INSTANCE_ID: u16 = 4;
    /// Nested, repeated: one pipeline the instance serves.
    pub const SERVE: u16 = 5;
    pub const MAX_INFLIGHT: u16 = 6;
    pub const REQUEST_ID: u16 = 7;
    pub const PRIORITY: u16 = 8;
    pub const DEADLINE_MS: u16 = 9;
    pub const PIPELINE: u16 = 10;
    pub const PAYLOAD: u16 = 11;
    pub const STATUS: u16 = 12;
    pub const VECTOR: u16 = 13;
    pub const ERROR_CODE: u16 = 14;
    pub const ERROR_TEXT: u16 = 15;
    pub const HEARTBEAT_SEQ: u16 = 16;
    pub const INFLIGHT: u16 = 17;
    /// Nested: counters, each a u64 attribute of [`super::stat`].
    pub const STATS: u16 = 18;
    pub const EVENT_KIND: u16 = 19;
    pub const PORT: u16 = 20;
    /// The highest attribute number.
    pub const MAX: u16 = 20;
}

/// Attributes inside [`attr::SERVE`].
pub mod serve_attr {
    pub const PIPELINE: u16 = 1;
    pub const MODEL: u16 = 2;
    pub const DIMS: u16 = 3;
    pub const MAX: u16 = 3;
}

/// Counters inside [`attr::STATS`] (u64 each; type 0 is padding).
pub mod stat {
    pub const PAD: u16 = 0;
    pub const SUBMITTED: u16 = 1;
    pub const OK: u16 = 2;
    pub const ERRORS: u16 = 3;
    pub const TIMEOUTS: u16 = 4;
    pub const BUSY: u16 = 5;
    pub const RATE_LIMITED: u16 = 6;
    pub const CANCELLED: u16 = 7;
    pub const RELEASED: u16 = 8;
    pub const CACHE_HITS: u16 = 9;
    pub const CACHE_MISSES: u16 = 10;
    pub const INFLIGHT: u16 = 11;
    pub const QUEUED: u16 = 12;
    pub const INSTANCES: u16 = 13;
    pub const NO_DAEMON: u16 = 14;
    pub const BREAKER_FAST_FAILS: u16 = 15;
    pub const MALFORMED: u16 = 16;
    pub const LATE_REPLIES: u16 = 17;
    pub const MAX: u16 = 17;

    /// Names as the stats command and the module's debugfs print them.
    pub const NAMES: [(u16, &str); 17] = [
        (SUBMITTED, "submitted"),
        (OK, "ok"),
        (ERRORS, "errors"),
        (TIMEOUTS, "timeouts"),
        (BUSY, "busy"),
        (RATE_LIMITED, "rate_limited"),
        (CANCELLED, "cancelled"),
        (RELEASED, "released"),
        (CACHE_HITS, "cache_hits"),
        (CACHE_MISSES, "cache_misses"),
        (INFLIGHT, "inflight"),
        (QUEUED, "queued"),
        (INSTANCES, "instances"),
        (NO_DAEMON, "no_daemon"),
        (BREAKER_FAST_FAILS, "breaker_fast_fails"),
        (MALFORMED, "malformed"),
        (LATE_REPLIES, "late_replies"),
    ];
}

/// `attr::STATUS` values of a reply.
pub mod status {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const TIMEOUT: u8 = 2;
    pub const BUSY: u8 = 3;
    pub const CANCELLED: u8 = 4;
}

/// `attr::PRIORITY` values.
pub mod priority {
    pub const HIGH: u8 = 0;
    pub const MEDIUM: u8 = 1;
    pub const LOW: u8 = 2;
}

/// `attr::EVENT_KIND` values.
pub mod event {
    pub const DAEMON_UP: u8 = 1;
    pub const DAEMON_DOWN: u8 = 2;
    pub const BREAKER_OPEN: u8 = 3;
    pub const BREAKER_CLOSED: u8 = 4;
    pub const OVERLOAD: u8 = 5;
}

/// Feature bits negotiated at register (`attr::FEATURES`).
pub mod feature {
    /// Vectors are little-endian IEEE-754 f32 (required).
    pub const VECTOR_F32: u64 = 1 << 0;
    /// The daemon acts on CANCEL.
    pub const CANCEL: u64 = 1 << 1;
    /// Heartbeats both ways.
    pub const HEARTBEAT: u64 = 1 << 2;
    /// The kernel answers STATS.
    pub const STATS: u64 = 1 << 3;
    /// Every feature this implementation knows.
    pub const ALL: u64 = VECTOR_F32 | CANCEL | HEARTBEAT | STATS;
    /// Features a peer must accept, or registration fails with EPROTO.
    pub const REQUIRED: u64 = VECTOR_F32;
}

/// Size limits both sides enforce.
pub mod limit {
    /// Bytes of a pipeline name, without the terminating NUL.
    pub const PIPELINE_NAME: usize = 63;
    /// Bytes of a model name, without the terminating NUL.
    pub const MODEL_NAME: usize = 127;
    /// Bytes of a request's payload (UTF-8 text).
    pub const PAYLOAD: usize = 16 * 1024;
    /// Dimensions of a vector.
    pub const DIMS: usize = 4096;
    /// Bytes of an error text, without the terminating NUL.
    pub const ERROR_TEXT: usize = 255;
    /// Pipelines one instance may serve.
    pub const SERVES: usize = 16;
    /// The largest in-flight window an instance may ask for.
    pub const MAX_INFLIGHT: u32 = 4096;
    /// The largest netlink message either side sends.
    pub const MESSAGE: usize = 64 * 1024;
}

/// Errno values carried in `attr::ERROR_CODE` and in netlink acks
/// (positive on the wire in `ERROR_CODE`, negative in `nlmsgerr.error`).
pub mod errno {
    pub const EPERM: u32 = 1;
    pub const ENOENT: u32 = 2;
    pub const EIO: u32 = 5;
    pub const EAGAIN: u32 = 11;
    pub const EBUSY: u32 = 16;
    pub const EINVAL: u32 = 22;
    pub const EPROTO: u32 = 71;
    pub const EMSGSIZE: u32 = 90;
    pub const ECONNRESET: u32 = 104;
    pub const ENOTCONN: u32 = 107;
    pub const ESHUTDOWN: u32 = 108;
    pub const ETIMEDOUT: u32 = 110;
    pub const EHOSTDOWN: u32 = 112;
    pub const ECANCELED: u32 = 125;
}
