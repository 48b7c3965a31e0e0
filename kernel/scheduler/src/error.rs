//! The crate's one error type. Variants are the things a caller acts on:
//! retry (`Backend` with `transient`), fail over (`BreakerOpen`), give up
//! (`Timeout`, `Cancelled`), or report busy (`Busy`).

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
    /// The service's circuit breaker is open: failing fast.
    #[error("circuit breaker of service `{service}` is open")]
    BreakerOpen { service: String },
    /// The backend failed.
    #[error("service `{service}` failed: {message}")]
    Backend {
        service: String,
        message: String,
        transient: bool,
    },
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

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                transient: true,
                ..
            }
        )
    }
}
