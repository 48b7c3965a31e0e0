//! What the supervisor tells the world: service states, state-change events
//! and captured output lines. Plain Rust values; front ends format them.

use std::fmt;
use std::time::{Duration, SystemTime};

/// The state of one service. See `docs/supervisor.md` for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Not started yet: waiting for its dependencies (or for the run to start).
    Pending,
    /// Being started for the first time (or after its dependency recovered).
    Starting,
    /// Its process runs; readiness not (yet) confirmed.
    Running,
    /// Its readiness probe passes (or it runs and has none).
    Ready,
    /// Was ready, and its readiness probe now fails.
    Unhealthy,
    /// Asked to stop: signal sent, grace period running.
    Stopping,
    /// Stopped by the supervisor (shutdown, or a dependency failed).
    Stopped,
    /// Exited by itself with status 0 (completed).
    Exited,
    /// Exited with a failure, was killed, could not start, or failed a
    /// liveness probe.
    Failed,
    /// Being started again after a failure and its backoff.
    Restarting,
    /// Waiting out the backoff delay before a restart.
    BackingOff,
    /// Crash-loop limit reached (or a failure with restart policy `no` on a
    /// critical service): the supervisor will not start it again.
    GaveUp,
}

impl ServiceState {
    /// The state's name as events and tables spell it.
    pub fn name(self) -> &'static str {
        match self {
            ServiceState::Pending => "pending",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Ready => "ready",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
            ServiceState::Restarting => "restarting",
            ServiceState::BackingOff => "backing-off",
            ServiceState::GaveUp => "gave-up",
        }
    }

    /// Whether the service has a live instance (a process or an in-process
    /// service) in this state.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ServiceState::Starting
                | ServiceState::Running
                | ServiceState::Ready
                | ServiceState::Unhealthy
                | ServiceState::Stopping
                | ServiceState::Restarting
        )
    }

    /// Whether nothing more will happen to the service unless something else
    /// changes (a dependency recovers, or never).
    pub fn is_at_rest(self) -> bool {
        matches!(
            self,
            ServiceState::Stopped
                | ServiceState::Exited
                | ServiceState::Failed
                | ServiceState::GaveUp
        )
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One state change of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Wall-clock time of the change.
    pub at: SystemTime,
    pub service: String,
    pub from: ServiceState,
    pub to: ServiceState,
    /// Why, in words a person can act on ("exited with status 3",
    /// "readiness probe passed", "crash loop: ...").
    pub reason: String,
    /// The process id of the service's current process, if it has one.
    pub pid: Option<u32>,
    /// Restarts so far (after failures; not counting dependency restarts).
    pub restarts: u32,
    /// For `backing-off`: the delay before the restart.
    pub backoff: Option<Duration>,
}

/// Which output stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line a service printed (without its newline).
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub service: String,
    pub stream: LogStream,
    pub line: String,
}

/// The result of one check of a health probe (every check, not only the
/// ones that flip the verdict), for the status views.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub service: String,
    /// `readiness` or `liveness`.
    pub probe: &'static str,
    /// Whether this check passed.
    pub ok: bool,
    /// What the check found ("HTTP status 503", "exit status: 1"); empty
    /// when it passed.
    pub detail: String,
    /// Whether the probe counts as passing after this check (thresholds
    /// applied).
    pub passing: bool,
    pub at: SystemTime,
    /// How long the check took.
    pub took: Duration,
}
