//! The debugger core's data: what a paused request's stack looks like to
//! a front end (frames, scopes, variables), in plain Rust types. Reading
//! them from a paused coroutine is `inspect`'s job; pausing and resuming
//! is the registry's. Breakpoints and stepping will live here too.
//!
//! No protocol: the DAP and Jupyter front ends turn these into their own
//! messages.

pub(crate) mod inspect;

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

/// Names an expandable value of a paused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VariablesRef(pub u32);
