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
//!
//! The debugger decides which hook the coroutine carries when it starts
//! (`debug::hooks`: none while nobody debugs), whether a hook's stop is a
//! real one (conditions, hit counts, logpoints), and whether an error that
//! escapes the stage stops the request (exception breakpoints).

use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::Stream;
use futures::future::poll_fn;
use mlua::thread::ThreadStatus;
use mlua::{Function, IntoLuaMulti, Table, Thread, Value};

use crate::budget::{Stopped, Verdict};
use crate::debug::debugger::{self, StopContext};
use crate::debug::hooks::{self, StopCause};
use crate::debug::{DebugEvent, StopReason};
use crate::pipeline_run::RunContext;
use crate::run_registry::{PausePoint, PauseReason, RunEvent, RunEventKind, RunState};

/// Which request and stage a coroutine belongs to, and its budget.
pub(crate) struct CoroutineCall<'a> {
    pub request_id: u64,
    pub pipeline: &'a str,
    pub stage: &'a str,
    /// An error escaping this call is handled by the pipeline's fallback
    /// (for the "unhandled only" exception filter).
    pub handled_by_fallback: bool,
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
    let (mode, reaches) = context.debugger.borrow_mut().plan_stage(
        call.request_id,
        call.pipeline,
        call.stage,
        function,
    );
    if mode.is_some() || reaches {
        let req = call
            .req
            .and_then(|req| context.lua.create_registry_value(req.clone()).ok());
        hooks::watch(&thread, reaches, mode, req);
    } else {
        hooks::count_bare();
    }
    let result = drive(context, &call, &thread, args).await;
    let leftover = hooks::unwatch(&thread);
    context
        .debugger
        .borrow_mut()
        .carry_mode(call.request_id, leftover);
    if let Err(CallError::Lua(error)) = &result
        && context
            .debugger
            .borrow()
            .stops_on_exception(call.handled_by_fallback)
    {
        let point = exception_point(context, &thread, error);
        let message = crate::debug::evaluate::lua_message(error);
        stop_here(
            context,
            &call,
            StopReason::Exception,
            point,
            Vec::new(),
            Some(message),
        )
        .await;
    }
    context.registry.borrow_mut().detach(call.request_id);
    if matches!(result, Err(CallError::Stopped { .. })) {
        // The stop hook stays on a coroutine until someone removes it.
        thread.remove_hook();
    }
    result
}

/// Where an error was raised: the innermost Lua frame of the dead
/// coroutine, else the error's own `file:line`.
fn exception_point(context: &RunContext, thread: &Thread, error: &mlua::Error) -> (String, u32) {
    let mut level = 0;
    let getinfo: Option<mlua::Function> = context.debug.get("getinfo").ok();
    while let Some(getinfo) = &getinfo {
        let Ok(Some(info)) = getinfo.call::<Option<Table>>((thread.clone(), level, "Sl")) else {
            break;
        };
        let source: Option<String> = info.get("source").ok().flatten();
        let line: i64 = info.get("currentline").unwrap_or(-1);
        if let Some(file) = source.as_deref().and_then(|name| name.strip_prefix('@'))
            && line > 0
        {
            return (file.to_owned(), line as u32);
        }
        level += 1;
    }
    let diagnostic = crate::eval::lua_error_diagnostic(error, std::path::Path::new(""));
    (diagnostic.file.display().to_string(), diagnostic.line)
}

/// Stops the request here until the debugger resumes it: the registry
/// shows it paused, the kernel stops its deadline clock, the front end
/// hears why.
pub(crate) async fn stop_here(
    context: &RunContext,
    call: &CoroutineCall<'_>,
    reason: StopReason,
    (file, line): (String, u32),
    breakpoints: Vec<u32>,
    text: Option<String>,
) {
    let point = PausePoint {
        reason: pause_reason(reason),
        file: file.clone(),
        line,
    };
    let Some(resumed) = context
        .registry
        .borrow_mut()
        .enter_pause(call.request_id, point.clone())
    else {
        return;
    };
    report(context, call, RunEventKind::Paused(point));
    context
        .effects
        .debug_event(DebugEvent::Stopped(debugger::stop_event(
            call.request_id,
            call.pipeline,
            call.stage,
            reason,
            (file, line),
            breakpoints,
            text,
        )));
    // Resolves on resume, or with an error when the run is forgotten;
    // either way the request goes on.
    let _ = resumed.await;
    context
        .registry
        .borrow_mut()
        .set_stage(call.request_id, call.stage, RunState::Running);
    report(context, call, RunEventKind::Resumed);
    context.effects.debug_event(DebugEvent::Continued {
        request_id: call.request_id,
    });
}

fn pause_reason(reason: StopReason) -> PauseReason {
    match reason {
        StopReason::Breakpoint => PauseReason::Breakpoint,
        StopReason::FunctionBreakpoint => PauseReason::FunctionBreakpoint,
        StopReason::Exception => PauseReason::Exception,
        StopReason::Step => PauseReason::Step,
        StopReason::Pause => PauseReason::Requested,
        StopReason::Entry => PauseReason::Entry,
    }
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
            let guard = context.watchdog.enter(thread, deadline, call.request_id);
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
        // A hook's stop, or a plain `coroutine.yield()` (ignored).
        after_yield(context, call, thread).await;
    }
}

/// After a yield of a watched coroutine: if its hook asked to stop, the
/// debugger decides (conditions, hit counts, logpoints) and the run stops
/// there until resumed; then the hook is set for what comes next. A plain
/// `coroutine.yield()` leaves everything as it was.
pub(crate) async fn after_yield(context: &RunContext, call: &CoroutineCall<'_>, thread: &Thread) {
    let Some(cause) = hooks::take_stop() else {
        return;
    };
    let place = debugger::current_line(&context.debug, thread);
    let decision = {
        let req = call.req;
        let emit = |event: DebugEvent| context.effects.debug_event(event);
        let stop_context = StopContext {
            lua: &context.lua,
            watchdog: &context.watchdog,
            request_id: call.request_id,
            thread,
            req,
            file: &place.0,
            line: place.1,
            emit: &emit,
        };
        context
            .debugger
            .borrow_mut()
            .decide(&stop_context, cause.clone())
    };
    match decision {
        None => {
            if matches!(cause, StopCause::Mode(_) | StopCause::CrossThreadPause) {
                hooks::rewatch(thread, None);
            }
        }
        Some((reason, breakpoints)) => {
            stop_here(context, call, reason, place, breakpoints, None).await;
            let mode = context.debugger.borrow_mut().take_mode(call.request_id);
            hooks::rewatch(thread, mode);
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
