//! The kernel's own errors: what keeps a kernel from starting or running.
//! A request's failure is not one of these: it is the request's answer
//! (a [`spindle_scheduler::Failure`]).

use std::path::PathBuf;

use spindle_scripting::{Diagnostic, ScriptError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum KernelError {
    /// The script has errors; each diagnostic has its file, line and hint.
    #[error("{} has {} error(s)\n  hint: `spindle check {}` lists them", file.display(), errors(diagnostics), file.display())]
    Script {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    /// The Lua thread could not be started or died while evaluating.
    #[error("cannot start the script host: {0}")]
    Host(String),
    /// The run's data directory could not be created.
    #[error("cannot create {}: {reason}\n  hint: pass a writable --data-dir", path.display())]
    DataDir { path: PathBuf, reason: String },
    /// The journal could not be started (its directory, its first segment).
    #[error("cannot start the journal: {0}\n  hint: pass a writable --journal DIR")]
    Journal(String),
    /// `Kernel::start` was called outside a tokio runtime.
    #[error("the kernel must start inside a tokio runtime")]
    NoRuntime,
    /// A task of the kernel itself died (a bug); the reason says which.
    #[error("the kernel stopped abnormally: {0}")]
    Crashed(String),
    /// A debugger named a request that is not live on the script host.
    #[error(
        "request {request_id} is not running Lua now: it has been answered, or it is still queued\n  hint: list live requests first"
    )]
    UnknownRequest { request_id: u64 },
    /// A debugger asked a running request for what only a paused one has.
    #[error("request {request_id} is not paused\n  hint: pause it first")]
    NotPaused { request_id: u64 },
    /// A debugger tried to attach while another one is.
    #[error(
        "another debugger is attached to this kernel; one at a time\n  hint: disconnect the other one first"
    )]
    DebuggerAttached,
    /// A debugger's reading of a paused request failed.
    #[error("{0}")]
    Inspect(String),
    /// The kernel runs a graph without a script: there is no Lua to debug
    /// or reload.
    #[error("this kernel runs a graph without a script (no Lua to debug, nothing to reload)")]
    NoScript,
    /// A service command was refused (unknown service, shutting down).
    #[error(transparent)]
    Control(#[from] crate::supervisor::ControlError),
}

impl KernelError {
    pub(crate) fn from_debug(error: ScriptError) -> KernelError {
        match error {
            ScriptError::UnknownRequest { request_id } => {
                KernelError::UnknownRequest { request_id }
            }
            ScriptError::NotPaused { request_id } => KernelError::NotPaused { request_id },
            ScriptError::DebuggerAttached => KernelError::DebuggerAttached,
            ScriptError::Thread(_) | ScriptError::HostGone => KernelError::Host(error.to_string()),
            other => KernelError::Inspect(other.to_string()),
        }
    }
}

impl From<ScriptError> for KernelError {
    fn from(error: ScriptError) -> Self {
        KernelError::Host(error.to_string())
    }
}

fn errors(diagnostics: &[Diagnostic]) -> usize {
    diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.severity == spindle_scripting::Severity::Error)
        .count()
}
