//! spindle-scripting: the Lua host and the `spindle` Lua API.
//!
//! A script is Lua 5.4 that calls `require("spindle")` and declares services.
//! [`evaluate_file`] runs it under a memory limit and turns it into a plain
//! [`GraphSpec`] plus [`Diagnostic`]s; [`ScriptHost`] does the same on a
//! thread of its own and keeps the Lua state alive so that Lua health probes
//! can be called later.
//!
//! The host is also the debugger's seam: it keeps a registry of the
//! requests in flight, pauses one at its next line while the others run on,
//! resumes it, and reads its stack; it stops a stage that runs past its
//! budget, and an [`Interrupter`] stops running Lua from any thread.
//!
//! This crate knows no async runtime, no sockets and no wire format; it
//! depends on no other workspace crate.

pub mod analysis;
mod api;
mod budget;
mod cell;
mod cell_data;
mod convert;
mod convert_pipeline;
mod convert_probe;
mod convert_service;
mod convert_settings;
mod coroutine;
pub mod debug;
mod diagnostic;
mod duration;
mod eval;
mod eval_budget;
mod host;
mod lua_raw;
mod lua_vector;
mod notebook_api;
mod notebook_graph;
mod pipeline_run;
mod run_registry;
pub mod scenario;
mod scenario_api;
mod source_map;
pub mod sources;
pub mod spec;
pub mod spin;
mod stage_log;
mod state_api;

pub use budget::{DEFAULT_STAGE_BUDGET, Interrupter, Stopped};
pub use cell::{
    CellAnswer, CellError, CellErrorKind, CellEvent, CellOutput, CellReply, CellRequest,
    CellStreams, Completeness, Completion, InputReply, Inspection, NotebookJob,
    STREAM_FLUSH_INTERVAL, StreamName, cell_completeness,
};
pub use cell_data::{DATA_DEPTH, DATA_ENTRIES, Data};
pub use debug::{
    BreakpointStatus, CELL_PIPELINE, CELL_THREAD_BASE, DebugCommand, DebugEvent, EvaluateContext,
    ExceptionFilter, FunctionBreakpoint, HookCounters, HookReport, Output, OutputCategory, Page,
    RunStack, Scope, ScopeKind, SourceBreakpoint, StackFrame, StepKind, Stop, StopReason, Variable,
    VariablesRef,
};
pub use diagnostic::{Diagnostic, Severity};
pub use duration::{parse_duration, parse_range};
pub use eval::MEMORY_LIMIT;
pub use eval_budget::INSTRUCTION_BUDGET;
pub use host::{
    CheckReply, CheckResult, DebugReply, HostConfig, RunOutcome, RunReply, RunsReply, ScriptHost,
};
pub use notebook_api::{CHART_KINDS, CellSubmission, DataReply, KernelQuery};
pub use pipeline_run::{
    Effects, EmbedAnswer, EmbedCall, EmbedFailure, EmbedReply, HostEmbedError, PipelineAnswer,
    PipelineRequest, RequestScope, StageFailure,
};
pub use run_registry::{LiveRun, PausePoint, PauseReason, RunEvent, RunEventKind, RunState};
pub use scenario::{ScenarioEvaluation, ScenarioSpec, evaluate_scenario};
pub use sources::Overlay;
pub use spec::*;
pub use spin::{CPUS_READ_EVERY, spinning_pays, spinning_pays_within};
pub use stage_log::{StageLog, StageOutput, StageTrace};
pub use state_api::{StateAnswer, StateCall, StateCallOp, StateData, StateReply, StateScopeSpec};

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
/// mistakes, which are diagnostics), and the debugger commands' refusals.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot start the Lua thread: {0}")]
    Thread(std::io::Error),
    #[error("the Lua thread stopped before it answered")]
    HostGone,
    #[error(
        "no request {request_id} is in flight on the script host: it has finished or never \
         started (ScriptHost::runs lists the live ones)"
    )]
    UnknownRequest { request_id: u64 },
    #[error("request {request_id} is not paused: pause it first, then read its stack or resume it")]
    NotPaused { request_id: u64 },
    #[error(
        "request {request_id} has no variables reference {reference}: references last only \
         while the request stays paused; read its stack again"
    )]
    UnknownVariables { request_id: u64, reference: u32 },
    #[error("cannot read the stack of request {request_id}: {message}")]
    Inspect { request_id: u64, message: String },
    #[error("{message}")]
    Evaluate { message: String },
    #[error(
        "another debugger is attached to this script host: one at a time (their breakpoints \
         would mix); detach it first"
    )]
    DebuggerAttached,
}

/// Evaluates a script file into a graph and its diagnostics. Lua probes in
/// the result cannot be called; use [`ScriptHost::start`] for a graph that
/// will run.
pub fn evaluate_file(path: &Path) -> Evaluation {
    eval::load(path).evaluation
}

/// [`evaluate_file`], reading the script and the modules it `require`s
/// through `overlay` first (texts an editor holds that are not saved yet).
/// With an empty overlay it is exactly [`evaluate_file`].
pub fn evaluate_with(path: &Path, overlay: &Overlay) -> Evaluation {
    eval::load_with(path, overlay).evaluation
}
