//! The debugger core: breakpoints (line, conditional, hit count,
//! logpoints, function, exception), stepping, pausing, and what a paused
//! request's stack looks like to a front end (frames, scopes, variables,
//! evaluation), in plain Rust types.
//!
//! - `hooks`: the hook policy (which coroutine carries which hook), read by
//!   the hook itself on the Lua thread.
//! - `lines`: which lines of a chunk hold code (breakpoints bind there).
//! - `debugger`: the host-side state (breakpoints, hit counts, per-request
//!   steps) and the commands ([`DebugCommand`]).
//! - `evaluate`: expressions and assignments in a paused frame.
//! - `inspect`: reading a paused coroutine raw.
//! - `cell_run`: a notebook cell as a debuggable run while a front end is
//!   attached.
//!
//! No protocol: the DAP and Jupyter front ends turn these into their own
//! messages. Everything here runs on the script host's thread.

pub(crate) mod cell_run;
pub(crate) mod commands;
pub(crate) mod debugger;
pub(crate) mod evaluate;
pub(crate) mod hooks;
pub(crate) mod inspect;
pub(crate) mod lines;
pub(crate) mod output;
pub(crate) mod reach;

pub use cell_run::{CELL_PIPELINE, CELL_THREAD_BASE};
pub use debugger::DebugCommand;
pub use hooks::HookCounters;

/// A paused request's stack: innermost frame first.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStack {
    pub frames: Vec<StackFrame>,
    /// The fields of `req` as the current stage sees it (the "Request"
    /// scope).
    pub request: Vec<Variable>,
}

/// One active function of a paused coroutine.
#[derive(Debug, Clone, PartialEq)]
pub struct StackFrame {
    /// The function's name as Lua knows it from its caller; a stage's own
    /// function is named `stage <name>`, anonymous ones
    /// `function <file:line>`.
    pub function: String,
    /// The script's absolute path; empty for a function written in C or
    /// Rust, or one of the host's own.
    pub file: String,
    /// The line running now (0 for C or Rust).
    pub line: u32,
    /// Active locals in declaration order (Lua's temporaries left out).
    pub locals: Vec<Variable>,
    /// The function's upvalues (`_ENV`, the globals, left out).
    pub upvalues: Vec<Variable>,
}

/// A named value, shown as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    /// Lua's type name, or `vector` for `req.vector`.
    pub type_name: String,
    /// A one-line display: strings quoted, tables as `{ k = v, ... }` with
    /// their first entries.
    pub value: String,
    /// For tables and vectors: pass it to [`crate::ScriptHost::variables`]
    /// to list the entries. Valid while the request stays paused.
    pub children: Option<VariablesRef>,
}

/// Names an expandable value (or a scope) of a paused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VariablesRef(pub u32);

/// A line breakpoint as a front end asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceBreakpoint {
    pub line: u32,
    /// A Lua expression evaluated in the frame (locals, upvalues, `req`,
    /// globals); the breakpoint stops only when it is true.
    pub condition: Option<String>,
    /// `N`, `= N` or `== N` (the Nth hit), `>= N`, `> N`, `< N`, `<= N`,
    /// `% N` (every Nth hit).
    pub hit_condition: Option<String>,
    /// A logpoint: this text with `{expr}` interpolated is printed, and
    /// the request does not stop.
    pub log_message: Option<String>,
}

/// A function breakpoint: `pipeline/stage`, a stage name in any pipeline,
/// or an embedding service's name (stops before each embed call to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionBreakpoint {
    pub name: String,
    pub condition: Option<String>,
    pub hit_condition: Option<String>,
}

/// Where a breakpoint bound, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakpointStatus {
    pub id: u32,
    pub verified: bool,
    /// The line it binds at (for line breakpoints; may differ from the
    /// line asked for), or the stage's declaration line.
    pub line: Option<u32>,
    /// The file it binds in, for function breakpoints.
    pub file: Option<String>,
    /// Why it is not verified, or where it moved.
    pub message: Option<String>,
}

/// Which errors stop a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExceptionFilter {
    /// Every error that escapes a stage.
    All,
    /// Only errors the pipeline's fallback does not handle.
    Unhandled,
}

/// A step of a paused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// To the next line, into calls.
    In,
    /// To the next line of this function or a caller.
    Over,
    /// To the next line of a caller; out of a stage, to the start of the
    /// next Lua stage.
    Out,
}

/// Why a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Breakpoint,
    FunctionBreakpoint,
    Exception,
    Step,
    Pause,
    /// Stopped at the first line of a stage with no breakpoint (stop on
    /// entry).
    Entry,
}

/// A request stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub request_id: u64,
    pub pipeline: String,
    pub stage: String,
    pub reason: StopReason,
    pub file: String,
    pub line: u32,
    /// The breakpoints that hit.
    pub breakpoints: Vec<u32>,
    /// For an exception, its message.
    pub text: Option<String>,
}

/// Where printed text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputCategory {
    /// `print` from the script.
    Stdout,
    /// A logpoint.
    Logpoint,
    /// The debugger's own notices.
    Console,
}

/// Text for the debugger's console.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub category: OutputCategory,
    /// Ends with a newline.
    pub text: String,
    pub file: String,
    pub line: u32,
    /// The request whose code printed it, if any.
    pub request_id: Option<u64>,
}

/// What the debugger tells its front end, through
/// [`crate::Effects::debug_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum DebugEvent {
    Stopped(Stop),
    /// A stopped request runs again.
    Continued {
        request_id: u64,
    },
    Output(Output),
}

/// The scopes of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Locals,
    Upvalues,
    Request,
    Globals,
}

/// A scope of a paused frame; list it with [`DebugCommand::Variables`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub kind: ScopeKind,
    pub name: String,
    pub variables: VariablesRef,
    /// How many variables it holds.
    pub count: usize,
}

/// Where an expression is evaluated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluateContext {
    /// The debug console: statements are allowed.
    Repl,
    Watch,
    Hover,
}

/// A slice of a long list of variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    pub start: usize,
    /// `None` for all the rest.
    pub count: Option<usize>,
}

/// The hook a live request's coroutine carries now (for the hook-policy
/// tests and `debugInfo`-like views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    pub request_id: u64,
    pub stage: String,
    pub call: bool,
    pub ret: bool,
    pub line: bool,
}
