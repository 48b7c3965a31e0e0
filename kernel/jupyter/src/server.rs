//! Serving a kernel over Jupyter's five channels: [`serve`] binds the
//! sockets, writes the connection file if asked, and starts one task per
//! channel. [`JupyterServer`] says where it listens and when a client
//! asked for a shutdown; dropping it (or [`JupyterServer::stop`]) stops the
//! tasks and removes the connection file it wrote.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use spindle_kernel::Kernel;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::channels;
use crate::connection::{self, ConnectionInfo};
use crate::effects::NotebookEffects;
use crate::error::JupyterError;
use crate::history::History;
use crate::session::Session;
use crate::shared::{Shared, ShutdownAsked};
use crate::sockets;
use crate::to_proto::CellNames;

/// How to serve.
#[derive(Debug, Clone)]
pub struct JupyterConfig {
    /// Where to listen, and the key; ports of 0 are picked when bound.
    pub connection: ConnectionInfo,
    /// Writes the bound connection here (and removes it at the end).
    pub connection_file: Option<PathBuf>,
    /// The history file, kept across restarts; `None`: in memory.
    pub history_file: Option<PathBuf>,
    /// Where cells' code is written, named as the debugger expects.
    pub cell_dir: PathBuf,
    /// The banner `jupyter console` shows.
    pub banner: String,
}

impl JupyterConfig {
    /// Defaults for a kernel reached through `connection`: history in
    /// Spindle's data folder, cells under the runtime folder.
    pub fn new(connection: ConnectionInfo) -> JupyterConfig {
        JupyterConfig {
            connection,
            connection_file: None,
            history_file: Some(default_history_file()),
            cell_dir: crate::cell_path::cell_dir(&connection::runtime_dir()),
            banner: format!(
                "Spindle {} — Lua 5.4 cells on the live kernel; require(\"spindle\") for the API",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

/// `$XDG_DATA_HOME/spindle/jupyter-history.jsonl` (or under
/// `~/.local/share`).
pub fn default_history_file() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("spindle").join("jupyter-history.jsonl")
}

/// A running Jupyter front end.
pub struct JupyterServer {
    connection: ConnectionInfo,
    connection_file: Option<PathBuf>,
    shutdown: watch::Receiver<Option<ShutdownAsked>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for JupyterServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JupyterServer")
            .field("connection_file", &self.connection_file)
            .finish_non_exhaustive()
    }
}

impl JupyterServer {
    /// Where the sockets listen (ports filled in) and the key.
    pub fn connection(&self) -> &ConnectionInfo {
        &self.connection
    }

    /// The connection file this server wrote, if any.
    pub fn connection_file(&self) -> Option<&std::path::Path> {
        self.connection_file.as_deref()
    }

    /// Resolves when a client sent a `shutdown_request`.
    pub async fn shutdown_asked(&self) -> ShutdownAsked {
        let mut shutdown = self.shutdown.clone();
        match shutdown.wait_for(Option::is_some).await {
            Ok(asked) => asked.expect("waited for Some"),
            // The tasks are gone: as good as asked.
            Err(_) => ShutdownAsked { restart: false },
        }
    }

    /// Stops every channel task and removes the connection file.
    pub fn stop(&self) {
        self.stop.cancel();
        if let Some(file) = &self.connection_file {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for JupyterServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `kernel` over Jupyter as `config` says. Must run inside a tokio
/// runtime. Cells run on the kernel's script host.
pub async fn serve(kernel: Kernel, config: JupyterConfig) -> Result<JupyterServer, JupyterError> {
    connection::check(&config.connection)?;
    if kernel.interrupter().is_none() {
        return Err(JupyterError::NoScriptHost);
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let bound = sockets::bind(&config.connection, &session_id).await?;
    if let Some(file) = &config.connection_file {
        connection::write_connection_file(file, &bound.info)?;
    }
    let stop = CancellationToken::new();
    let (iopub_sender, iopub_messages) = mpsc::unbounded_channel();
    let (stdin_sender, stdin_messages) = mpsc::unbounded_channel();
    let (shutdown_sender, shutdown) = watch::channel(None);
    let shared = Arc::new(Shared {
        kernel: kernel.clone(),
        iopub: iopub_sender,
        banner: config.banner.clone(),
        cell_dir: config.cell_dir.clone(),
        executing: Mutex::new(None),
        pending_input: Mutex::new(None),
        shutdown: shutdown_sender,
    });
    let session = Session {
        shared: shared.clone(),
        shell: bound.shell,
        stdin: stdin_sender,
        effects: Arc::new(NotebookEffects {
            kernel,
            runtime: tokio::runtime::Handle::current(),
        }),
        history: History::open(config.history_file.clone()),
        execution_count: 0,
        names: CellNames::default(),
    };
    tokio::spawn(channels::iopub(bound.iopub, iopub_messages, stop.clone()));
    tokio::spawn(channels::heartbeat(bound.heartbeat, stop.clone()));
    tokio::spawn(channels::stdin(
        shared.clone(),
        bound.stdin,
        stdin_messages,
        stop.clone(),
    ));
    tokio::spawn(channels::control(shared, bound.control, stop.clone()));
    tokio::spawn(session.run(stop.clone()));
    Ok(JupyterServer {
        connection: bound.info,
        connection_file: config.connection_file,
        shutdown,
        stop,
    })
}
