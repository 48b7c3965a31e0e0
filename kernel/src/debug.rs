//! What the kernel offers debuggers (the DAP server, Jupyter's debugger)
//! on top of the script host's debug seam: live requests with the Lua stage
//! they are in, pausing one request at its next line while every other one
//! flows on, its stack and variables, and resuming it. A paused request's
//! deadline clock is stopped with it (the scheduler's pause), so it is not
//! timed out while a person looks at it.
//!
//! Beyond that, the whole debugger core as methods of [`Kernel`]: line,
//! function and exception breakpoints, stepping, pause and continue of one
//! request or all, scopes, paged variables, evaluation, setVariable, and
//! the core's events (`Kernel::debug_events`).
//!
//! After a reload, a request may still run on a host the reload replaced
//! (it finishes on the version it started with): every command is tried
//! on the current host first, then on the replaced ones.
//!
//! Host callbacks are bridged to async here; no protocol is spoken.

use spindle_scheduler::{RequestId, RequestSummary};
use spindle_scripting::{
    BreakpointStatus, DebugCommand, DebugEvent, EvaluateContext, ExceptionFilter,
    FunctionBreakpoint, HookCounters, HookReport, LiveRun, Page, RunStack, Scope, ScriptError,
    ScriptHost, SourceBreakpoint, StepKind, Variable, VariablesRef,
};
use tokio::sync::{broadcast, oneshot};

use crate::Kernel;
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

/// The debugger core on the `Kernel` handle: what a debugger front end
/// (the DAP server, Jupyter's debugger) needs beyond pause, resume, stack
/// and variables. Each method sends one [`DebugCommand`] to the script host
/// and awaits its reply; events come from [`Kernel::debug_events`].
impl Kernel {
    /// The debugger core's events from now on: stops (with why and
    /// where), continues, printed lines and logpoints. A receiver that
    /// falls 1,024 events behind is told how many it missed.
    pub fn debug_events(&self) -> Option<broadcast::Receiver<DebugEvent>> {
        self.debug_event_sender().map(broadcast::Sender::subscribe)
    }

    /// A debugger is attached: `print` goes to [`Kernel::debug_events`].
    pub async fn debug_attach(&self) -> Result<(), KernelError> {
        self.debug_command(|reply| DebugCommand::Attach { reply })
            .await
    }

    /// The debugger left: every breakpoint, step and filter is cleared and
    /// every stopped request goes on. The kernel keeps running.
    pub async fn debug_detach(&self) -> Result<(), KernelError> {
        self.debug_command(|reply| DebugCommand::Detach { reply })
            .await
    }

    /// Replaces the line breakpoints of `file` (an absolute path); each
    /// answer says where it bound, or why it did not.
    pub async fn set_breakpoints(
        &self,
        file: &str,
        breakpoints: Vec<SourceBreakpoint>,
    ) -> Result<Vec<BreakpointStatus>, KernelError> {
        let file = file.to_owned();
        self.debug_command(|reply| DebugCommand::SetBreakpoints {
            file,
            breakpoints,
            reply,
        })
        .await
    }

    /// Replaces the function breakpoints (`pipeline/stage`, a stage, or
    /// an embedding service).
    pub async fn set_function_breakpoints(
        &self,
        breakpoints: Vec<FunctionBreakpoint>,
    ) -> Result<Vec<BreakpointStatus>, KernelError> {
        self.debug_command(|reply| DebugCommand::SetFunctionBreakpoints { breakpoints, reply })
            .await
    }

    pub async fn set_exception_breakpoints(
        &self,
        filters: Vec<ExceptionFilter>,
    ) -> Result<(), KernelError> {
        self.debug_command(|reply| DebugCommand::SetExceptionBreakpoints { filters, reply })
            .await
    }

    /// The next request to start a Lua stage stops at its first line.
    pub async fn stop_on_entry(&self) -> Result<(), KernelError> {
        self.debug_command(|reply| DebugCommand::StopOnEntry { reply })
            .await
    }

    /// Pauses every request running on the script host at its next Lua
    /// line; returns their ids.
    pub async fn pause_all(&self) -> Result<Vec<RequestId>, KernelError> {
        let ids = self
            .debug_command(|reply| DebugCommand::Pause {
                request_id: None,
                reply,
            })
            .await?;
        Ok(ids.into_iter().map(RequestId).collect())
    }

    /// Lets stopped request `id` go on, or every stopped request with
    /// `None`; returns those that went on.
    pub async fn continue_requests(
        &self,
        id: Option<RequestId>,
    ) -> Result<Vec<RequestId>, KernelError> {
        let ids = self
            .debug_command(|reply| DebugCommand::Continue {
                request_id: id.map(|id| id.0),
                reply,
            })
            .await?;
        Ok(ids.into_iter().map(RequestId).collect())
    }

    /// Steps stopped request `id` (in, over, out; across stages).
    pub async fn step(&self, id: RequestId, kind: StepKind) -> Result<(), KernelError> {
        self.debug_command(|reply| DebugCommand::Step {
            request_id: id.0,
            kind,
            reply,
        })
        .await
    }

    /// The scopes of frame `frame` (0 innermost) of stopped request `id`.
    pub async fn scopes(&self, id: RequestId, frame: u32) -> Result<Vec<Scope>, KernelError> {
        self.debug_command(|reply| DebugCommand::Scopes {
            request_id: id.0,
            frame,
            reply,
        })
        .await
    }

    /// One page of a scope's, table's or vector's entries.
    pub async fn variables_page(
        &self,
        id: RequestId,
        reference: VariablesRef,
        page: Page,
    ) -> Result<Vec<Variable>, KernelError> {
        self.debug_command(|reply| DebugCommand::Variables {
            request_id: id.0,
            reference,
            page,
            reply,
        })
        .await
    }

    /// Evaluates a Lua expression in a frame of stopped request `id` (its
    /// locals, upvalues, `req`, globals), or with the globals only.
    pub async fn evaluate(
        &self,
        id: Option<RequestId>,
        frame: u32,
        expression: &str,
        context: EvaluateContext,
    ) -> Result<Variable, KernelError> {
        let expression = expression.to_owned();
        self.debug_command(|reply| DebugCommand::Evaluate {
            request_id: id.map(|id| id.0),
            frame,
            expression,
            context,
            reply,
        })
        .await
    }

    /// Sets `name` in a scope or table of stopped request `id` to the
    /// value of the Lua expression `value`.
    pub async fn set_variable(
        &self,
        id: RequestId,
        reference: VariablesRef,
        name: &str,
        value: &str,
    ) -> Result<Variable, KernelError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.debug_command(|reply| DebugCommand::SetVariable {
            request_id: id.0,
            reference,
            name,
            value,
            reply,
        })
        .await
    }

    /// The script files Lua has code from.
    pub async fn loaded_sources(&self) -> Result<Vec<String>, KernelError> {
        self.debug_command(|reply| DebugCommand::LoadedSources { reply })
            .await
    }

    /// The globals a user defined in the script host's Lua state (Lua's
    /// own left out): a variables view while no request is stopped.
    pub async fn global_variables(&self) -> Result<Vec<Variable>, KernelError> {
        self.debug_command(|reply| DebugCommand::Globals { reply })
            .await
    }

    /// Source text for a chunk that is not a file (a notebook cell,
    /// named `path`), so breakpoints in it bind.
    pub fn register_source(&self, path: &str, text: &str) -> Result<(), KernelError> {
        let host = self.host().ok_or(KernelError::NoScript)?;
        host.debug(DebugCommand::RegisterSource {
            path: path.to_owned(),
            text: text.to_owned(),
        });
        Ok(())
    }

    /// The hook each live request's coroutine carries and the hook
    /// policy's counters.
    pub async fn hook_report(&self) -> Result<(Vec<HookReport>, HookCounters), KernelError> {
        self.debug_command(|reply| DebugCommand::Hooks { reply })
            .await
    }

    async fn debug_command<T: Send + 'static>(
        &self,
        command: impl FnOnce(Box<dyn FnOnce(Result<T, ScriptError>) + Send>) -> DebugCommand,
    ) -> Result<T, KernelError> {
        let host = self.host().ok_or(KernelError::NoScript)?;
        ask_debug(|reply| host.debug(command(reply))).await
    }
}

/// Lets every request a debugger holds go on (at shutdown).
pub(crate) fn release_stopped(kernel: &Kernel) {
    if let Some(host) = kernel.host() {
        host.debug(DebugCommand::Detach {
            reply: Box::new(|_| {}),
        });
    }
}
