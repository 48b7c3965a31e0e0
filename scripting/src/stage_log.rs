//! What each stage of one request did, kept while the request runs when the
//! kernel asks for it (its journal is on): the stage's name, when it
//! started and how long it took, and `req` after it (its text, vector and
//! scalar fields) or the stage's error.
//!
//! A [`StageLog`] travels with the request ([`crate::PipelineRequest`]); the
//! runner appends one [`StageTrace`] per stage as the stage ends, so that a
//! request that times out or is cancelled keeps the stages it finished.
//! Without a log nothing is copied. Knows no runtime, file or wire format.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `req` as a stage left it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageOutput {
    pub text: String,
    pub vector: Option<Vec<f32>>,
    /// The other scalar fields of `req` (as text), in key order.
    pub fields: Vec<(String, String)>,
}

/// One stage of a request, finished or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTrace {
    /// The stage's name; `fallback` for the pipeline's fallback function.
    pub stage: String,
    pub started: Instant,
    /// Waits included (an embedding, `s.state`, a debugger pause).
    pub elapsed: Duration,
    /// `req` after the stage; `None` when it failed.
    pub output: Option<StageOutput>,
    /// The stage's error, when it failed.
    pub error: Option<String>,
}

/// The stages of one request, appended by the runner on the host thread and
/// taken by the kernel with the answer; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct StageLog(Arc<Mutex<Vec<StageTrace>>>);

impl StageLog {
    pub fn new() -> StageLog {
        StageLog::default()
    }

    pub(crate) fn push(&self, trace: StageTrace) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(trace);
    }

    /// The stages recorded so far, leaving the log empty.
    pub fn take(&self) -> Vec<StageTrace> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl fmt::Debug for StageLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.lock().map_or(0, |traces| traces.len());
        write!(f, "StageLog({count} stage(s))")
    }
}

impl PartialEq for StageLog {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
