//! Operating a running kernel: restart, stop, start or recover one service,
//! apply a new graph as a diff, and reload the script from disk. Each is a
//! method of the [`Kernel`] handle, so the HTTP API, `spindle ctl`,
//! signals, file watching and notebooks all do the same thing.
//!
//! Applying a graph: the services board learns it first (new services are
//! pending, pipelines recomputed), then the request path (timeouts, routes,
//! batchers of new embedding services), then the supervisor, which starts
//! new services, restarts changed ones (their dependents after them) and
//! stops removed ones in reverse dependency order; untouched services keep
//! running with the same pid. A reloaded script gets a new script host:
//! requests in flight finish on the version they started with.

use std::path::Path;

use spindle_scripting::{Diagnostic, GraphSpec, HostConfig, ScriptHost};

use super::Kernel;
use crate::error::KernelError;
use crate::requests::EffectsWiring;
use crate::supervisor::{ApplyReport, ControlError, StopMode};

impl Kernel {
    /// Journals a service command (when the kernel has a journal), so that
    /// a replay applies it again.
    async fn journal_service(&self, command: &'static str, service: &str) {
        crate::journal::operation(
            self.inner.requests.journal.as_ref(),
            crate::journal::Operation::Service { command, service },
        )
        .await;
    }

    /// Restarts a service: the services bound to it stop first and start
    /// again after it.
    pub async fn restart_service(&self, name: &str) -> Result<(), KernelError> {
        self.refuse_while_shutting_down()?;
        self.journal_service("restart", name).await;
        self.inner.supervisor.restart(name).await.map_err(control)
    }

    /// Stops a service (the services bound to it first); it stays stopped
    /// until started.
    pub async fn stop_service(&self, name: &str) -> Result<(), KernelError> {
        self.stop_service_with(name, StopMode::Graceful).await
    }

    /// Stops a service as [`Kernel::stop_service`] does; with
    /// [`StopMode::Immediate`] it and the services bound to it get SIGKILL
    /// at once instead of their grace periods.
    pub async fn stop_service_with(&self, name: &str, mode: StopMode) -> Result<(), KernelError> {
        self.refuse_while_shutting_down()?;
        self.journal_service("stop", name).await;
        self.inner
            .supervisor
            .stop(name, mode)
            .await
            .map_err(control)
    }

    /// Starts a stopped (or failed) service, and the stopped services it
    /// needs.
    pub async fn start_service(&self, name: &str) -> Result<(), KernelError> {
        self.refuse_while_shutting_down()?;
        self.journal_service("start", name).await;
        self.inner.supervisor.start(name).await.map_err(control)
    }

    /// Forgets a service's crash loop and backoff and starts it again (a
    /// service that gave up).
    pub async fn recover_service(&self, name: &str) -> Result<(), KernelError> {
        self.refuse_while_shutting_down()?;
        self.journal_service("recover", name).await;
        self.inner.supervisor.recover(name).await.map_err(control)
    }

    /// Applies `graph` (evaluated without errors, with its Lua functions on
    /// this kernel's script host) as a diff against the running one.
    pub async fn apply(&self, graph: GraphSpec) -> Result<ApplyReport, KernelError> {
        self.refuse_while_shutting_down()?;
        for (pipeline, gate) in self.inner.board.apply_graph(&graph) {
            self.inner.requests.scheduler.set_gate(&pipeline, gate);
        }
        self.inner.requests.apply(&graph, &self.inner.board);
        let report = self
            .inner
            .supervisor
            .apply(graph.clone())
            .await
            .map_err(control)?;
        *self.inner.graph.write().unwrap_or_else(|p| p.into_inner()) = graph;
        Ok(report)
    }

    /// Evaluates the script again (and the modules it requires) and applies
    /// the result. A script with errors changes nothing: the error carries
    /// every diagnostic.
    pub async fn reload(&self) -> Result<ApplyReport, KernelError> {
        let script = self.inner.script.clone().ok_or(KernelError::NoScript)?;
        self.reload_from(&script).await
    }

    /// [`Kernel::reload`] from another script (an edited copy of the
    /// graph: a scenario's hot reload). The kernel keeps the script it was
    /// started on for later reloads.
    pub async fn reload_from(&self, script: &Path) -> Result<ApplyReport, KernelError> {
        let script = script.to_path_buf();
        crate::journal::operation(
            self.inner.requests.journal.as_ref(),
            crate::journal::Operation::Reload,
        )
        .await;
        let wiring = self.inner.wiring.clone();
        let host_config = self.inner.host_config.clone();
        let (host, graph, _) =
            tokio::task::spawn_blocking(move || evaluate(&script, &wiring, &host_config))
                .await
                .map_err(|error| {
                    KernelError::Crashed(format!("the evaluation task failed: {error}"))
                })??;
        self.inner.host.set(host);
        self.inner.host.retire_idle().await;
        self.apply(graph).await
    }
}

impl Kernel {
    /// Nothing is started, stopped or changed once a shutdown was asked for.
    fn refuse_while_shutting_down(&self) -> Result<(), KernelError> {
        if self.is_shutting_down() {
            return Err(KernelError::Control(ControlError::ShuttingDown));
        }
        Ok(())
    }
}

/// Starts a script host on `path` and evaluates it; errors are
/// [`KernelError::Script`] with every diagnostic.
pub(super) fn evaluate(
    path: &Path,
    wiring: &EffectsWiring,
    host_config: &HostConfig,
) -> Result<(ScriptHost, GraphSpec, Vec<Diagnostic>), KernelError> {
    let (host, evaluation) =
        ScriptHost::start_with_config(path, wiring.effects(), host_config.clone())?;
    let has_errors = evaluation.has_errors();
    match evaluation.graph {
        Some(graph) if !has_errors => Ok((host, graph, evaluation.diagnostics)),
        _ => Err(KernelError::Script {
            file: path.to_path_buf(),
            diagnostics: evaluation.diagnostics,
        }),
    }
}

fn control(error: ControlError) -> KernelError {
    KernelError::Control(error)
}
