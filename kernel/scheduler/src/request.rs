//! Requests as the scheduler sees them: identity, priority, deadline,
//! source, an opaque payload and the terminal [`Outcome`].
//!
//! This module knows nothing of where a request came from beyond the
//! [`Source`] tag, nor what its payload means: the payload is a type
//! parameter the kernel chooses (a Lua request table's Rust side, a text).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::failure::Failure;

/// A request's identity, allocated by the scheduler in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The three priority classes. The order is the order of urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    High,
    Medium,
    Low,
}

impl Priority {
    /// All priorities, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    /// A dense index (high 0, medium 1, low 2) for per-priority arrays.
    pub fn index(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Medium => 1,
            Priority::Low => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "high" => Ok(Priority::High),
            "medium" => Ok(Priority::Medium),
            "low" => Ok(Priority::Low),
            other => Err(Error::InvalidPriority(other.to_owned())),
        }
    }
}

/// One value per priority class: weights, capacities, timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerPriority<T> {
    pub high: T,
    pub medium: T,
    pub low: T,
}

impl<T> PerPriority<T> {
    pub fn get(&self, priority: Priority) -> &T {
        match priority {
            Priority::High => &self.high,
            Priority::Medium => &self.medium,
            Priority::Low => &self.low,
        }
    }

    pub fn get_mut(&mut self, priority: Priority) -> &mut T {
        match priority {
            Priority::High => &mut self.high,
            Priority::Medium => &mut self.medium,
            Priority::Low => &mut self.low,
        }
    }
}

/// Where a request entered the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Http,
    Netlink,
    Jupyter,
    Scenario,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Netlink => "netlink",
            Source::Jupyter => "jupyter",
            Source::Scenario => "scenario",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller submits. The scheduler turns it into a [`Request`] by
/// allocating the id and fixing the deadline.
#[derive(Debug, Clone)]
pub struct NewRequest<P> {
    /// The caller's correlation id; `None` uses the request id.
    pub correlation_id: Option<String>,
    pub pipeline: String,
    pub priority: Priority,
    /// A caller-imposed time budget (HTTP `deadline_ms`, a netlink
    /// request's deadline). The effective deadline is the earlier of this
    /// and the configured timeout for the pipeline and priority.
    pub timeout: Option<Duration>,
    pub source: Source,
    pub payload: P,
}

impl<P> NewRequest<P> {
    /// A request with no correlation id and the configured timeout.
    pub fn new(
        pipeline: impl Into<String>,
        priority: Priority,
        source: Source,
        payload: P,
    ) -> Self {
        NewRequest {
            correlation_id: None,
            pipeline: pipeline.into(),
            priority,
            timeout: None,
            source,
            payload,
        }
    }
}

/// An admitted request, as the worker receives it.
#[derive(Debug, Clone)]
pub struct Request<P> {
    pub id: RequestId,
    pub correlation_id: String,
    pub pipeline: String,
    pub priority: Priority,
    /// The deadline at admission. A debugger pause moves it; the worker's
    /// [`crate::DeadlineWatch`] always has the current one.
    pub deadline: Instant,
    pub source: Source,
    pub payload: P,
}

/// Why a request was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// `SchedulerHandle::cancel` (a `DELETE`, a Jupyter interrupt).
    Caller,
    /// The scheduler shut down before the request finished.
    Shutdown,
}

/// Why a request was refused at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The queue of the request's priority is at capacity ("busy").
    QueueFull,
    /// The scheduler is shutting down or gone.
    ShuttingDown,
}

/// The sentence every front end and the journal show.
impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::QueueFull => "busy: the queue for this priority is full",
            RejectReason::ShuttingDown => "the kernel is shutting down",
        })
    }
}

/// What follows "cancelled" wherever a front end or the journal shows it.
impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelReason::Caller => "by a caller",
            CancelReason::Shutdown => "because the kernel shut down",
        })
    }
}

/// The terminal answer of a request. Every submitted request gets exactly
/// one.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    Ok(T),
    Error(Failure),
    Timeout,
    Rejected(RejectReason),
    Cancelled(CancelReason),
}

impl<T> Outcome<T> {
    /// The outcome's name as the status API and metrics spell it.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Ok(_) => OutcomeKind::Ok,
            Outcome::Error { .. } => OutcomeKind::Error,
            Outcome::Timeout => OutcomeKind::Timeout,
            Outcome::Rejected(_) => OutcomeKind::Rejected,
            Outcome::Cancelled(_) => OutcomeKind::Cancelled,
        }
    }
}

/// The outcome without its value, for counters and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    Ok,
    Error,
    Timeout,
    Rejected,
    Cancelled,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Error => "error",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer a ticket resolves to: the outcome and when things happened.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub id: RequestId,
    pub correlation_id: String,
    pub pipeline: String,
    pub priority: Priority,
    pub source: Source,
    pub outcome: Outcome<T>,
    pub admitted_at: Instant,
    /// When the worker got the request; `None` if it never left the queue.
    pub started_at: Option<Instant>,
    pub answered_at: Instant,
}

impl<T> Answer<T> {
    /// Admission to answer.
    pub fn latency(&self) -> Duration {
        self.answered_at - self.admitted_at
    }

    /// Time spent queued before the worker got it (or until answered).
    pub fn queue_wait(&self) -> Duration {
        self.started_at.unwrap_or(self.answered_at) - self.admitted_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse_and_print() {
        for priority in Priority::ALL {
            assert_eq!(priority.to_string().parse::<Priority>(), Ok(priority));
        }
        assert_eq!(
            "urgent".parse::<Priority>(),
            Err(Error::InvalidPriority("urgent".to_owned()))
        );
        assert_eq!(Priority::High.index(), 0);
    }
}
