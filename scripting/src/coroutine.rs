//! Driving one Lua function of a request (a stage, or the pipeline's
//! fallback) as a coroutine.
//!
//! The coroutine is polled as an mlua `AsyncThread` stream, one resume per
//! poll. Each resume runs under the budget watchdog (only Lua time counts:
//! a coroutine waiting on Rust or paused is not running). An item with no
//! values from a debug hook's yield is a pause point: the run waits for
//! the debugger's resume without spinning while the host runs other
//! requests, then polls again and the coroutine continues at the line it
//! stopped on. A plain `coroutine.yield()` from the stage is ignored, as an
//! awaited coroutine would.

use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::Stream;
use futures::future::poll_fn;
use mlua::thread::ThreadStatus;
use mlua::{Function, IntoLuaMulti, Table, Thread, Value};

use crate::budget::{Stopped, Verdict};
use crate::pipeline_run::RunContext;
use crate::run_registry::{RunEvent, RunEventKind, RunState};

/// Which request and stage a coroutine belongs to, and its budget.
pub(crate) struct CoroutineCall<'a> {
    pub request_id: u64,
    pub stage: &'a str,
    /// Lua time the call may use; `None` for no limit.
    pub budget: Option<Duration>,
    /// `req` as the call sees it, for the debugger's "Request" scope.
    pub req: Option<&'a Table>,
}

/// How a coroutine call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Lua raised an error (or the coroutine could not be created).
    Lua(mlua::Error),
    /// The host stopped it; `error` is what Lua raised at the stop, if it
    /// reached the call (a `pcall` in the stage may have caught it).
    Stopped {
        stopped: Stopped,
        error: Option<mlua::Error>,
    },
}

/// Runs `function(args)` as a coroutine of the request; its first return
/// value is the result.
pub(crate) async fn call(
    context: &RunContext,
    call: CoroutineCall<'_>,
    function: &Function,
    args: impl IntoLuaMulti,
) -> Result<Value, CallError> {
    let thread = context
        .lua
        .create_thread(function.clone())
        .map_err(CallError::Lua)?;
    context
        .registry
        .borrow_mut()
        .attach(call.request_id, &thread, call.req);
    let result = drive(context, &call, &thread, args).await;
    context.registry.borrow_mut().detach(call.request_id);
    if matches!(result, Err(CallError::Stopped { .. })) {
        // The stop hook stays on a coroutine until someone removes it.
        thread.remove_hook();
    }
    result
}

async fn drive(
    context: &RunContext,
    call: &CoroutineCall<'_>,
    thread: &Thread,
    args: impl IntoLuaMulti,
) -> Result<Value, CallError> {
    let mut stream = thread
        .clone()
        .into_async::<Value>(args)
        .map_err(CallError::Lua)?;
    let mut remaining = call.budget;
    loop {
        let (item, verdict) = poll_fn(|cx| {
            let started = remaining.map(|_| Instant::now());
            let deadline = started.zip(remaining).map(|(now, left)| now + left);
            let guard = context.watchdog.enter(thread, deadline);
            let poll = Pin::new(&mut stream).poll_next(cx);
            let verdict = guard.leave();
            if let (Some(left), Some(started)) = (&mut remaining, started) {
                *left = left.saturating_sub(started.elapsed());
            }
            match (poll, verdict) {
                (Poll::Ready(item), verdict) => Poll::Ready((item, verdict)),
                // Stopped just as it yielded to wait: it ran past its
                // budget all the same.
                (Poll::Pending, Some(verdict)) => Poll::Ready((None, Some(verdict))),
                (Poll::Pending, None) => Poll::Pending,
            }
        })
        .await;
        if let Some(verdict) = verdict {
            let stopped = match verdict {
                Verdict::Budget => Stopped::Budget(call.budget.unwrap_or_default()),
                Verdict::Interrupted => Stopped::Interrupted,
            };
            return Err(CallError::Stopped {
                stopped,
                error: item.and_then(Result::err),
            });
        }
        // The first value of a yield or return (`Nil` for none).
        let value = match item {
            Some(Ok(value)) => value,
            Some(Err(error)) => return Err(CallError::Lua(error)),
            None => return Err(CallError::Lua(mlua::Error::CoroutineUnresumable)),
        };
        if thread.status() != ThreadStatus::Resumable {
            return Ok(value);
        }
        let pause = context.registry.borrow_mut().take_pause(call.request_id);
        if let Some((point, resumed)) = pause {
            report(context, call, RunEventKind::Paused(point));
            // Resolves on resume, or with an error when the run is
            // forgotten; either way the coroutine goes on.
            let _ = resumed.await;
            context
                .registry
                .borrow_mut()
                .set_stage(call.request_id, call.stage, RunState::Running);
            report(context, call, RunEventKind::Resumed);
        }
    }
}

fn report(context: &RunContext, call: &CoroutineCall<'_>, kind: RunEventKind) {
    let event = {
        let registry = context.registry.borrow();
        let Ok(entry) = registry.get(call.request_id) else {
            return;
        };
        RunEvent {
            request_id: call.request_id,
            scope: entry.request.scope.clone(),
            pipeline: entry.request.pipeline.clone(),
            stage: call.stage.to_owned(),
            kind,
        }
    };
    context.effects.run_event(event);
}
