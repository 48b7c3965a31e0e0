//! What the kernel offers debuggers (the DAP server, Jupyter's debugger)
//! on top of the script host's debug seam: live requests with the Lua stage
//! they are in, pausing one request at its next line while every other one
//! flows on, its stack and variables, and resuming it. A paused request's
//! deadline clock is stopped with it (the scheduler's pause), so it is not
//! timed out while a person looks at it.
//!
//! Host callbacks are bridged to async here; no protocol is spoken.

use spindle_scheduler::{RequestId, RequestSummary};
use spindle_scripting::{LiveRun, RunStack, ScriptError, ScriptHost, Variable, VariablesRef};
use tokio::sync::oneshot;

use crate::error::KernelError;

/// A live request as a debugger lists it: the scheduler's view (queued,
/// waiting for services, running; its deadline clock) and, once it runs,
/// the script host's (the stage, running Lua, waiting on an embedding, or
/// paused at a line).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRequest {
    pub summary: RequestSummary,
    pub run: Option<LiveRun>,
}

pub(crate) async fn live_requests(
    summaries: Vec<RequestSummary>,
    host: Option<&ScriptHost>,
) -> Vec<LiveRequest> {
    let runs = match host {
        Some(host) => ask(|reply| host.runs(reply)).await.unwrap_or_default(),
        None => Vec::new(),
    };
    summaries
        .into_iter()
        .map(|summary| LiveRequest {
            run: runs
                .iter()
                .find(|run| run.request_id == summary.id.0)
                .cloned(),
            summary,
        })
        .collect()
}

pub(crate) async fn pause(host: Option<&ScriptHost>, id: RequestId) -> Result<(), KernelError> {
    let host = host.ok_or(KernelError::NoScript)?;
    ask_debug(|reply| host.pause(id.0, reply)).await
}

pub(crate) async fn resume(host: Option<&ScriptHost>, id: RequestId) -> Result<(), KernelError> {
    let host = host.ok_or(KernelError::NoScript)?;
    ask_debug(|reply| host.resume(id.0, reply)).await
}

pub(crate) async fn stack(
    host: Option<&ScriptHost>,
    id: RequestId,
) -> Result<RunStack, KernelError> {
    let host = host.ok_or(KernelError::NoScript)?;
    ask_debug(|reply| host.stack(id.0, reply)).await
}

pub(crate) async fn variables(
    host: Option<&ScriptHost>,
    id: RequestId,
    reference: VariablesRef,
) -> Result<Vec<Variable>, KernelError> {
    let host = host.ok_or(KernelError::NoScript)?;
    ask_debug(|reply| host.variables(id.0, reference, reply)).await
}

/// Sends a host command whose reply is a callback; `None` if the host is
/// gone.
async fn ask<T: Send + 'static>(send: impl FnOnce(Box<dyn FnOnce(T) + Send>)) -> Option<T> {
    let (sender, receiver) = oneshot::channel();
    send(Box::new(move |value| {
        let _ = sender.send(value);
    }));
    receiver.await.ok()
}

async fn ask_debug<T: Send + 'static>(
    send: impl FnOnce(Box<dyn FnOnce(Result<T, ScriptError>) + Send>),
) -> Result<T, KernelError> {
    match ask(send).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(KernelError::from_debug(error)),
        None => Err(KernelError::Host(
            "the script host stopped before it answered".to_owned(),
        )),
    }
}
