//! What the kernel offers debuggers (the DAP server, Jupyter's debugger)
//! on top of the script host's debug seam: live requests with the Lua stage
//! they are in, pausing one request at its next line while every other one
//! flows on, its stack and variables, and resuming it. A paused request's
//! deadline clock is stopped with it (the scheduler's pause), so it is not
//! timed out while a person looks at it.
//!
//! After a reload, a request may still run on a host the reload replaced
//! (it finishes on the version it started with): every command is tried
//! on the current host first, then on the replaced ones.
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
    hosts: &[ScriptHost],
) -> Vec<LiveRequest> {
    let mut runs = Vec::new();
    for host in hosts {
        runs.extend(ask(|reply| host.runs(reply)).await.unwrap_or_default());
    }
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

pub(crate) async fn pause(hosts: &[ScriptHost], id: RequestId) -> Result<(), KernelError> {
    on_host_of(hosts, |host, reply| host.pause(id.0, reply)).await
}

pub(crate) async fn resume(hosts: &[ScriptHost], id: RequestId) -> Result<(), KernelError> {
    on_host_of(hosts, |host, reply| host.resume(id.0, reply)).await
}

pub(crate) async fn stack(hosts: &[ScriptHost], id: RequestId) -> Result<RunStack, KernelError> {
    on_host_of(hosts, |host, reply| host.stack(id.0, reply)).await
}

pub(crate) async fn variables(
    hosts: &[ScriptHost],
    id: RequestId,
    reference: VariablesRef,
) -> Result<Vec<Variable>, KernelError> {
    on_host_of(hosts, |host, reply| host.variables(id.0, reference, reply)).await
}

/// Runs a debug command on the host that knows the request: each host in
/// turn until one does not answer "unknown request".
async fn on_host_of<T: Send + 'static>(
    hosts: &[ScriptHost],
    send: impl Fn(&ScriptHost, Box<dyn FnOnce(Result<T, ScriptError>) + Send>),
) -> Result<T, KernelError> {
    let mut last = Err(KernelError::NoScript);
    for host in hosts {
        last = ask_debug(|reply| send(host, reply)).await;
        if !matches!(last, Err(KernelError::UnknownRequest { .. })) {
            return last;
        }
    }
    last
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
