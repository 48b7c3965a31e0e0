//! spindle-scripting: the Lua host and the `spindle` Lua API.
//!
//! A script is Lua 5.4 that calls `require("spindle")` and declares services.
//! [`evaluate_file`] runs it under a memory limit and turns it into a plain
//! [`GraphSpec`] plus [`Diagnostic`]s; [`ScriptHost`] does the same on a
//! thread of its own and keeps the Lua state alive so that Lua health probes
//! can be called later.
//!
//! This crate knows no async runtime, no sockets and no wire format; it
//! depends on no other workspace crate.

mod api;
mod convert;
mod convert_pipeline;
mod convert_probe;
mod convert_service;
mod diagnostic;
mod duration;
mod eval;
mod host;
mod netlink_notice;
mod pipeline_run;
mod source_map;
pub mod spec;

pub use diagnostic::{Diagnostic, Severity};
pub use duration::{parse_duration, parse_range};
pub use eval::MEMORY_LIMIT;
pub use host::{CheckReply, CheckResult, RunOutcome, RunReply, ScriptHost};
pub use pipeline_run::{
    Effects, EmbedAnswer, EmbedCall, EmbedFailure, EmbedReply, HostEmbedError, PipelineAnswer,
    PipelineRequest, RequestScope, StageFailure,
};
pub use spec::*;

use std::path::Path;

/// What evaluating a script produced. `graph` is `None` when any error was
/// found; warnings alone keep the graph.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub graph: Option<GraphSpec>,
    /// Sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
}

impl Evaluation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|diagnostic| diagnostic.severity == Severity::Error)
    }
}

/// The ways the script host itself can fail (as opposed to a script's
/// mistakes, which are diagnostics).
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot start the Lua thread: {0}")]
    Thread(std::io::Error),
    #[error("the Lua thread stopped before it answered")]
    HostGone,
}

/// Evaluates a script file into a graph and its diagnostics. Lua probes in
/// the result cannot be called; use [`ScriptHost::start`] for a graph that
/// will run.
pub fn evaluate_file(path: &Path) -> Evaluation {
    eval::load(path).evaluation
}
