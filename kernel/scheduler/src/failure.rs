//! Why a request failed, in one vocabulary for every layer: what happened,
//! where (the pipeline stage and its script line, when a stage failed), and
//! what the caller may do about it ([`FailureClass`]).
//!
//! The scheduler, the batcher and the kernel all answer with a [`Failure`];
//! front ends render it (an HTTP status and `Retry-After`, a Jupyter error,
//! a netlink error code). Whether an [`Error`](crate::Error) of the embed
//! path is transient is decided in one place, [`crate::Error::class`].

use std::fmt;
use std::time::Duration;

/// What a caller may do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Trying again will fail the same way: a script error, a bad input, a
    /// model that cannot load, a service that gave up.
    Permanent,
    /// Trying again may succeed: a batch that failed, a backend that died
    /// mid-call.
    Transient,
    /// Refused for now without trying: a breaker is open, a queue is full,
    /// a service is starting or restarting. Try again after `retry_after`
    /// (when known). Never counts against a circuit breaker.
    Unavailable { retry_after: Option<Duration> },
}

impl FailureClass {
    /// Whether a later attempt may succeed.
    pub fn is_transient(self) -> bool {
        !matches!(self, FailureClass::Permanent)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Permanent => "permanent",
            FailureClass::Transient => "transient",
            FailureClass::Unavailable { .. } => "unavailable",
        }
    }
}

/// Where in a pipeline a failure happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureSite {
    pub pipeline: String,
    /// The stage's name; empty when the failure is not a stage's.
    pub stage: String,
    /// The script file and line of the stage (or of the Lua error inside
    /// it); empty and 0 when unknown.
    pub file: String,
    pub line: u32,
}

/// A failed request, backend call or batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub class: FailureClass,
    /// Boxed: most failures have none, and errors stay small.
    pub site: Option<Box<FailureSite>>,
}

impl Failure {
    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure::new(message, FailureClass::Permanent)
    }

    pub fn transient(message: impl Into<String>) -> Failure {
        Failure::new(message, FailureClass::Transient)
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Option<Duration>) -> Failure {
        Failure::new(message, FailureClass::Unavailable { retry_after })
    }

    pub fn new(message: impl Into<String>, class: FailureClass) -> Failure {
        Failure {
            message: message.into(),
            class,
            site: None,
        }
    }

    /// The same failure, located at `site`.
    pub fn at(mut self, site: FailureSite) -> Failure {
        self.site = Some(Box::new(site));
        self
    }

    pub fn is_transient(&self) -> bool {
        self.class.is_transient()
    }

    /// How long the caller should wait before trying again, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.class {
            FailureClass::Unavailable { retry_after } => retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.site {
            Some(site) if !site.stage.is_empty() && !site.file.is_empty() => write!(
                f,
                "pipeline `{}`, stage `{}` failed at {}:{}: {}",
                site.pipeline, site.stage, site.file, site.line, self.message
            ),
            Some(site) if !site.stage.is_empty() => write!(
                f,
                "pipeline `{}`, stage `{}` failed: {}",
                site.pipeline, site.stage, self.message
            ),
            _ => f.write_str(&self.message),
        }
    }
}

/// Whether the work behind a pipeline (or an embedding service) can run:
/// requests for a closed gate wait in their queue, within their deadline;
/// a failed gate answers them at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Not ready yet (starting, restarting): wait. The reason says for what.
    Closed {
        reason: String,
    },
    /// Will not become ready (a service gave up): fail with the reason.
    Failed {
        reason: String,
    },
}

impl Gate {
    pub fn is_open(&self) -> bool {
        matches!(self, Gate::Open)
    }
}
