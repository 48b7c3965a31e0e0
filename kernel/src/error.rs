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
    /// `Kernel::start` was called outside a tokio runtime.
    #[error("the kernel must start inside a tokio runtime")]
    NoRuntime,
    /// A task of the kernel itself died (a bug); the reason says which.
    #[error("the kernel stopped abnormally: {0}")]
    Crashed(String),
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
