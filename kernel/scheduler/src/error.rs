//! The embed path's error type. Variants are the things a caller acts on:
//! retry (`Backend` with a transient failure), fail over (`BreakerOpen`,
//! `Overloaded`), wait (`Unavailable`), give up (`Timeout`, `Cancelled`),
//! or report busy (`Busy`). [`Error::class`] is the one place that decides
//! what each means to the request's caller.

use std::time::Duration;

use crate::failure::{Failure, FailureClass};
use crate::request::Priority;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The queue for this priority is full; the caller should answer
    /// "busy" at once.
    #[error("busy: the {priority} priority queue is full")]
    Busy { priority: Priority },
    /// The service's batch queue is full; the caller may fail over.
    #[error("service `{service}` is overloaded: its batch queue is full")]
    Overloaded { service: String },
    /// The scheduler or batcher is shutting down or has stopped.
    #[error("shutting down")]
    ShuttingDown,
    /// The deadline passed before an answer.
    #[error("deadline exceeded")]
    Timeout,
    /// The caller cancelled the work.
    #[error("cancelled")]
    Cancelled,
    /// The service's circuit breaker is open: failing fast until it probes
    /// the service again in `retry_after`.
    #[error("circuit breaker of service `{service}` is open")]
    BreakerOpen {
        service: String,
        retry_after: Duration,
    },
    /// The service is not there: it gave up, or it is stopped.
    #[error("service `{service}` is unavailable: {reason}")]
    Unavailable { service: String, reason: String },
    /// The backend failed.
    #[error("service `{service}` failed: {}", failure.message)]
    Backend { service: String, failure: Failure },
    /// Both the primary and the fallback failed.
    #[error("primary failed ({primary}); fallback failed ({fallback})")]
    FallbackFailed {
        primary: Box<Error>,
        fallback: Box<Error>,
    },
    /// A priority name that is not `high`, `medium` or `low`.
    #[error("unknown priority `{0}` (expected high, medium or low)")]
    InvalidPriority(String),
}

/// How long a caller refused for load should wait before trying again.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Error {
    /// What the failure means to the request's caller.
    pub fn class(&self) -> FailureClass {
        match self {
            Error::Busy { .. } | Error::Overloaded { .. } => FailureClass::Unavailable {
                retry_after: Some(BUSY_RETRY_AFTER),
            },
            Error::ShuttingDown => FailureClass::Unavailable { retry_after: None },
            Error::BreakerOpen { retry_after, .. } => FailureClass::Unavailable {
                retry_after: Some((*retry_after).max(Duration::from_secs(1))),
            },
            Error::Timeout => FailureClass::Transient,
            Error::Backend { failure, .. } => failure.class,
            Error::FallbackFailed { primary, fallback } => {
                match (primary.class(), fallback.class()) {
                    (FailureClass::Permanent, FailureClass::Permanent) => FailureClass::Permanent,
                    (_, FailureClass::Permanent) => primary.class(),
                    (_, other) => other,
                }
            }
            Error::Cancelled | Error::Unavailable { .. } | Error::InvalidPriority(_) => {
                FailureClass::Permanent
            }
        }
    }

    /// Whether trying the same service again within the request's deadline
    /// may succeed (the retry policy's question; an open breaker or a full
    /// queue is not retried but failed over).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend { failure, .. } if failure.class != FailureClass::Permanent
        )
    }

    /// The error as the request's [`Failure`].
    pub fn to_failure(&self) -> Failure {
        Failure::new(self.to_string(), self.class())
    }
}
