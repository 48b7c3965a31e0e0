//! The supervisor: runs a [`GraphSpec`] — starts services in dependency
//! waves, probes them, restarts them by their policy, stops them in reverse
//! order — and reports every state change as an [`Event`].
//!
//! One task owns all service state ([`run`]'s loop in `runner`); process
//! instances, probes and timers are tasks that report back to it through a
//! channel of a closed `Message` enum. OS access (spawning, signals,
//! `prctl`, `waitpid`, `/proc`) is confined to `os`; `reaper` is the one
//! owner of `waitpid` in the process (services, probes, the guard and every
//! inherited orphan). This module knows no terminal, no
//! JSON and no Lua: Lua probes and in-process services come in through the
//! traits in [`seams`].

mod control;
mod event;
mod guard;
mod os;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) use os::set_malloc_parameter;
mod probe;
mod process;
mod reaper;
mod runner;
pub mod seams;

use std::path::PathBuf;
use std::sync::Arc;

pub use control::{ApplyReport, ControlError, ControlReceiver, StopMode, SupervisorControl};
pub use event::{Event, LogLine, LogStream, ProbeResult, ServiceState};
pub use guard::{GuardLink, ignore_terminal_signals, run_guard, sweep_run};
pub use os::{
    become_child_subreaper, own_cpu_seconds, own_rss_kib, process_state, processes_of_run,
};
pub use reaper::orphans_reaped;
pub use seams::{BoxFuture, InProcessRuntime, InProcessService, LuaProbes};

use spindle_scripting::GraphSpec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Everything a run needs besides the graph and the shutdown token.
#[derive(Default)]
pub struct SupervisorConfig {
    /// Set as `SPINDLE_RUN_ID` in every child; the final sweep (and the
    /// guard) find leftover processes by it. Make it unique per run.
    pub run_id: String,
    /// Where `<service>.log` files go (created if missing); none: no files.
    pub log_dir: Option<PathBuf>,
    /// Every event goes to each of these, in order.
    pub subscribers: Vec<mpsc::UnboundedSender<Event>>,
    /// Captured output lines, if someone shows them.
    pub logs: Option<mpsc::UnboundedSender<LogLine>>,
    /// Every health check's result, if someone shows them.
    pub probe_results: Option<mpsc::UnboundedSender<ProbeResult>>,
    /// Runs `lua_probe` checks; without it Lua probes fail with a reason.
    pub lua_probes: Option<Arc<dyn LuaProbes>>,
    /// Runs in-process services (embedding); without it they fail to start
    /// with a reason.
    pub in_process: Option<Arc<dyn InProcessRuntime>>,
    /// The guard process to tell about process groups, if one was spawned.
    pub guard: Option<Arc<GuardLink>>,
    /// Cancel to skip what is left of the grace periods: every running
    /// service's process group gets SIGKILL at once (and shutdown begins if
    /// it had not). `spindle run` cancels it on a second Ctrl-C.
    pub kill_now: CancellationToken,
    /// Commands from a [`SupervisorControl`] (restart, stop, start,
    /// recover, apply a new graph). With it the run goes on until
    /// shutdown, even when every service is at rest.
    pub control: Option<ControlReceiver>,
    /// Run until shutdown even when every service is at rest.
    pub run_until_shutdown: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// Each service's last state, in declaration order.
    pub services: Vec<(String, ServiceState)>,
    /// Critical services that gave up, with the reason; non-empty means the
    /// run failed.
    pub critical_failures: Vec<(String, String)>,
    /// Processes of the run still found after every service had stopped
    /// (escaped their group) and killed by the final sweep.
    pub swept: usize,
}

impl RunOutcome {
    /// Whether no critical service gave up.
    pub fn is_success(&self) -> bool {
        self.critical_failures.is_empty()
    }
}

/// Errors that keep a run from starting.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot create the log directory {path}: {source}")]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `graph` until `shutdown` is cancelled, every service has come to
/// rest, or a critical service gives up; then stops everything still running
/// in reverse dependency order and returns. Must run inside a tokio runtime
/// with the `time` and `io` drivers enabled; while it runs it also drives
/// the process's reaper (see `reaper`), so call
/// [`become_child_subreaper`] first if orphans below the services should
/// be reaped (and swept) here rather than by init.
pub async fn run(
    graph: GraphSpec,
    config: SupervisorConfig,
    shutdown: CancellationToken,
) -> Result<RunOutcome, SupervisorError> {
    if let Some(path) = &config.log_dir {
        std::fs::create_dir_all(path).map_err(|source| SupervisorError::LogDir {
            path: path.clone(),
            source,
        })?;
    }
    Ok(runner::Runner::new(graph, config).run(shutdown).await)
}
