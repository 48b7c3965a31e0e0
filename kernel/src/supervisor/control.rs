//! Operating a running graph: restart, stop, start or recover one service,
//! and apply a new graph as a diff (hot reload). Each is a [`Control`]
//! command to the runner, the one owner of service state, with a `oneshot`
//! for its answer; [`SupervisorControl`] is the cheap handle that sends them.
//!
//! Order is kept as at startup and shutdown: a service stops only after
//! the services bound to it have stopped, and starts only once its
//! dependencies are met.

use spindle_scripting::GraphSpec;
use tokio::sync::{mpsc, oneshot};

/// What changed when a graph was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// New services, started in dependency order.
    pub added: Vec<String>,
    /// Services whose declaration changed: restarted with the new one
    /// (their dependents after them).
    pub changed: Vec<String>,
    /// Services no longer declared: stopped in reverse dependency order.
    pub removed: Vec<String>,
    /// Services left running as they were (same pid).
    pub unchanged: Vec<String>,
}

/// How a service is stopped by request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopMode {
    /// Its shutdown signal, then SIGKILL after its grace period.
    #[default]
    Graceful,
    /// SIGKILL to its process group at once (and to the services bound to
    /// it, which stop first).
    Immediate,
}

/// Why a control command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no service named `{name}`\n  hint: the services are: {known}")]
    UnknownService { name: String, known: String },
    #[error("the graph is shutting down: nothing can be started, stopped or changed any more")]
    ShuttingDown,
    #[error("the supervisor has stopped")]
    Stopped,
}

/// A command to the runner.
pub(crate) enum Control {
    /// Stop it (its dependents first) and start it again (them after it).
    Restart(String, Reply<()>),
    /// Stop it (its dependents first); it stays stopped until started.
    Stop(String, StopMode, Reply<()>),
    /// Start it (and the stopped dependencies it needs).
    Start(String, Reply<()>),
    /// Forget its crash loop and backoff and start it again.
    Recover(String, Reply<()>),
    Apply(Box<GraphSpec>, Reply<ApplyReport>),
}

type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

/// The handle that sends `Control` commands; cheap to clone.
#[derive(Debug, Clone)]
pub struct SupervisorControl {
    sender: mpsc::UnboundedSender<Control>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Restart(name, _) => write!(f, "Restart({name})"),
            Control::Stop(name, mode, _) => write!(f, "Stop({name}, {mode:?})"),
            Control::Start(name, _) => write!(f, "Start({name})"),
            Control::Recover(name, _) => write!(f, "Recover({name})"),
            Control::Apply(..) => f.write_str("Apply(..)"),
        }
    }
}

impl SupervisorControl {
    /// A handle and the receiver to put in `SupervisorConfig::control`.
    pub fn new() -> (SupervisorControl, ControlReceiver) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (SupervisorControl { sender }, ControlReceiver(receiver))
    }

    pub async fn restart(&self, service: &str) -> Result<(), ControlError> {
        self.ask(|reply| Control::Restart(service.to_owned(), reply))
            .await
    }

    pub async fn stop(&self, service: &str, mode: StopMode) -> Result<(), ControlError> {
        self.ask(|reply| Control::Stop(service.to_owned(), mode, reply))
            .await
    }

    pub async fn start(&self, service: &str) -> Result<(), ControlError> {
        self.ask(|reply| Control::Start(service.to_owned(), reply))
            .await
    }

    pub async fn recover(&self, service: &str) -> Result<(), ControlError> {
        self.ask(|reply| Control::Recover(service.to_owned(), reply))
            .await
    }

    /// Applies `graph` as a diff against the running one; see
    /// [`ApplyReport`]. The graph must be valid (evaluated without errors).
    pub async fn apply(&self, graph: GraphSpec) -> Result<ApplyReport, ControlError> {
        self.ask(|reply| Control::Apply(Box::new(graph), reply))
            .await
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Control) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(command(reply))
            .map_err(|_| ControlError::Stopped)?;
        answer.await.map_err(|_| ControlError::Stopped)?
    }
}

/// The runner's end of the control channel.
#[derive(Debug)]
pub struct ControlReceiver(pub(crate) mpsc::UnboundedReceiver<Control>);
