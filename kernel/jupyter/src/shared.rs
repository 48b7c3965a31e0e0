//! What the channel tasks share: the kernel handle, the iopub sender, the
//! cell in flight (for interrupts), the pending `io.read`, and the
//! request to shut down. One field per concern, each with one writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jupyter_protocol::JupyterMessage;
use serde_json::Value;
use spindle_kernel::Kernel;
use spindle_scripting::{CellStreams, InputReply, NotebookJob};
use tokio::sync::{mpsc, watch};

use crate::wire::{self, Incoming};

/// How a client asked the kernel to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownAsked {
    pub restart: bool,
}

pub(crate) struct Shared {
    pub kernel: Kernel,
    pub iopub: mpsc::UnboundedSender<JupyterMessage>,
    pub banner: String,
    pub cell_dir: PathBuf,
    /// The cell running now (set and cleared by the shell session).
    pub executing: Mutex<Option<Arc<CellStreams>>>,
    /// The `io.read` waiting for an `input_reply` (set by the session,
    /// taken by the stdin task, an interrupt, or the asker's disconnect).
    pub pending_input: Mutex<Option<PendingInput>>,
    pub shutdown: watch::Sender<Option<ShutdownAsked>>,
}

impl Shared {
    /// Publishes a message on iopub as a child of `parent`.
    pub fn publish(&self, parent: &Incoming, msg_type: &str, content: Value) {
        let _ = self.iopub.send(wire::child(parent, msg_type, content));
    }

    /// The `status` message around every request.
    pub fn status(&self, parent: &Incoming, state: &str) {
        self.publish(parent, "status", crate::to_proto::status(state));
    }

    /// Stops the cell in flight, keeping the Lua state: running Lua is
    /// stopped by the kernel's interrupter, a cell that waits (on a
    /// request, a query, input) is cancelled. Returns whether a cell was
    /// running.
    pub fn interrupt(&self) -> bool {
        let streams = lock(&self.executing).clone();
        let Some(streams) = streams else {
            return false;
        };
        if let Some(pending) = lock(&self.pending_input).take() {
            (pending.reply)(Err("interrupted".to_owned()));
        }
        let stopped = streams.lua_running()
            && self
                .kernel
                .interrupter()
                .is_some_and(|interrupter| interrupter.interrupt());
        if !stopped {
            self.kernel.notebook(NotebookJob::CancelCell);
        }
        true
    }
}

/// An `io.read` waiting for its answer, and who was asked.
pub(crate) struct PendingInput {
    /// The ROUTER identity of the client that ran the cell.
    pub asker: Option<bytes::Bytes>,
    pub reply: InputReply,
}

/// Locks a mutex whose data stays whole under a panic (single writes).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
