//! The protocol's messages as Rust values, one struct per command and
//! direction. The codec turns them into bytes and back; nothing here knows
//! sockets or the kernel's handle.

use std::collections::BTreeMap;

use crate::protocol::{priority, status};

/// Which way a message travels; the same command carries different
/// attributes each way (REGISTER asks, REGISTER answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the daemon (the bridge) to the kernel module or its stand-in.
    ToKernel,
    /// From the kernel module (or the peer playing it) to the daemon.
    ToDaemon,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Register(Register),
    Registered(Registered),
    Request(Request),
    Reply(Reply),
    Cancel(Cancel),
    Heartbeat(Heartbeat),
    Error(ErrorReport),
    Unregister(Unregister),
    StatsQuery,
    Stats(Stats),
    Event(Event),
}

impl Message {
    /// The genl command this message is sent as.
    pub fn command(&self) -> u8 {
        use crate::protocol::command;
        match self {
            Message::Register(_) | Message::Registered(_) => command::REGISTER,
            Message::Request(_) => command::REQUEST,
            Message::Reply(_) => command::REPLY,
            Message::Cancel(_) => command::CANCEL,
            Message::Heartbeat(_) => command::HEARTBEAT,
            Message::Error(_) => command::ERROR,
            Message::Unregister(_) => command::UNREGISTER,
            Message::StatsQuery | Message::Stats(_) => command::STATS,
            Message::Event(_) => command::EVENT,
        }
    }

    /// The direction this message travels in.
    pub fn direction(&self) -> Direction {
        match self {
            Message::Register(_)
            | Message::Reply(_)
            | Message::Unregister(_)
            | Message::StatsQuery => Direction::ToKernel,
            Message::Registered(_)
            | Message::Request(_)
            | Message::Cancel(_)
            | Message::Stats(_)
            | Message::Event(_) => Direction::ToDaemon,
            // Both ways; the codec is told the direction when decoding.
            Message::Heartbeat(_) | Message::Error(_) => Direction::ToKernel,
        }
    }
}

/// A daemon announces an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub version: u32,
    pub features: u64,
    /// Chosen by the daemon (random per process); names it in events.
    pub instance_id: u64,
    /// Requests the instance takes at once; the kernel never sends more.
    pub max_inflight: u32,
    pub serves: Vec<Serve>,
}

/// One pipeline an instance serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Serve {
    pub pipeline: String,
    /// The embedding model behind it, when it has one.
    pub model: Option<String>,
    /// The vector's dimensions; 0 when unknown or none.
    pub dims: u32,
}

/// The kernel's answer to a register: what was agreed.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub version: u32,
    /// The features both sides use (the daemon's, masked by the kernel's).
    pub features: u64,
    pub instance_id: u64,
    /// The window the kernel will respect (the daemon's, capped).
    pub max_inflight: u32,
}

/// Priority on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WirePriority {
    High,
    Medium,
    Low,
}

impl WirePriority {
    pub fn from_wire(value: u8) -> Option<WirePriority> {
        match value {
            priority::HIGH => Some(WirePriority::High),
            priority::MEDIUM => Some(WirePriority::Medium),
            priority::LOW => Some(WirePriority::Low),
            _ => None,
        }
    }

    pub fn to_wire(self) -> u8 {
        match self {
            WirePriority::High => priority::HIGH,
            WirePriority::Medium => priority::MEDIUM,
            WirePriority::Low => priority::LOW,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WirePriority::High => "high",
            WirePriority::Medium => "medium",
            WirePriority::Low => "low",
        }
    }
}

/// One embedding request from the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Allocated by the kernel; the reply carries it back.
    pub request_id: u64,
    pub priority: WirePriority,
    /// The budget left when the kernel sent it, in milliseconds.
    pub deadline_ms: u32,
    pub pipeline: String,
    /// The text, UTF-8.
    pub payload: String,
}

/// How a request ended, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyStatus {
    Ok,
    Error,
    Timeout,
    Busy,
    Cancelled,
}

impl ReplyStatus {
    pub fn from_wire(value: u8) -> Option<ReplyStatus> {
        match value {
            status::OK => Some(ReplyStatus::Ok),
            status::ERROR => Some(ReplyStatus::Error),
            status::TIMEOUT => Some(ReplyStatus::Timeout),
            status::BUSY => Some(ReplyStatus::Busy),
            status::CANCELLED => Some(ReplyStatus::Cancelled),
            _ => None,
        }
    }

    pub fn to_wire(self) -> u8 {
        match self {
            ReplyStatus::Ok => status::OK,
            ReplyStatus::Error => status::ERROR,
            ReplyStatus::Timeout => status::TIMEOUT,
            ReplyStatus::Busy => status::BUSY,
            ReplyStatus::Cancelled => status::CANCELLED,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReplyStatus::Ok => "ok",
            ReplyStatus::Error => "error",
            ReplyStatus::Timeout => "timeout",
            ReplyStatus::Busy => "busy",
            ReplyStatus::Cancelled => "cancelled",
        }
    }
}

/// The one answer to a request. `Ok` carries the vector (empty when the
/// pipeline produced none); every other status carries an errno and a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub request_id: u64,
    pub status: ReplyStatus,
    pub vector: Vec<f32>,
    pub error: Option<WireError>,
}

/// An errno (positive) and a human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: u32,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancel {
    pub request_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub seq: u64,
    /// The sender's requests in flight, when it reports them.
    pub inflight: Option<u32>,
}

/// A message the sender could not act on, or a protocol-level failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    pub error: WireError,
    /// The request it concerns, when known.
    pub request_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unregister {
    pub instance_id: u64,
}

/// Counters by their `stat::*` number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub counters: BTreeMap<u16, u64>,
}

impl Stats {
    pub fn get(&self, counter: u16) -> u64 {
        self.counters.get(&counter).copied().unwrap_or(0)
    }
}

/// What happened, for monitoring tools on the `events` group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    DaemonUp,
    DaemonDown,
    BreakerOpen,
    BreakerClosed,
    Overload,
}

impl EventKind {
    pub fn from_wire(value: u8) -> Option<EventKind> {
        use crate::protocol::event;
        match value {
            event::DAEMON_UP => Some(EventKind::DaemonUp),
            event::DAEMON_DOWN => Some(EventKind::DaemonDown),
            event::BREAKER_OPEN => Some(EventKind::BreakerOpen),
            event::BREAKER_CLOSED => Some(EventKind::BreakerClosed),
            event::OVERLOAD => Some(EventKind::Overload),
            _ => None,
        }
    }

    pub fn to_wire(self) -> u8 {
        use crate::protocol::event;
        match self {
            EventKind::DaemonUp => event::DAEMON_UP,
            EventKind::DaemonDown => event::DAEMON_DOWN,
            EventKind::BreakerOpen => event::BREAKER_OPEN,
            EventKind::BreakerClosed => event::BREAKER_CLOSED,
            EventKind::Overload => event::OVERLOAD,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub instance_id: Option<u64>,
    /// The instance's netlink port.
    pub port: Option<u32>,
}
