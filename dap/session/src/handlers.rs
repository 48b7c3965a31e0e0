//! One function per DAP request, on the session's state. Each returns the
//! response body, or the text of an error response (with its hint).

use serde_json::{Value, json};
use spindle_scheduler::RequestId;
use spindle_scripting::{
    EvaluateContext, ExceptionFilter, FunctionBreakpoint, Page, SourceBreakpoint, StepKind,
    VariablesRef,
};

use crate::protocol::{self, Request};
use crate::session::State;
use crate::to_dap;

pub(crate) async fn handle(state: &mut State, request: &Request) -> Result<Value, String> {
    let command = request.command.as_str();
    if !state.attached && !matches!(command, "initialize" | "launch" | "attach" | "disconnect") {
        return Err(format!(
            "`{command}` before `launch` or `attach`: start the session with one of them first"
        ));
    }
    match command {
        "initialize" => Ok(protocol::capabilities()),
        "launch" | "attach" => attach(state, request).await,
        "configurationDone" => Ok(Value::Null),
        "setBreakpoints" => set_breakpoints(state, request).await,
        "setFunctionBreakpoints" => set_function_breakpoints(state, request).await,
        "setExceptionBreakpoints" => set_exception_breakpoints(state, request).await,
        "threads" => threads(state).await,
        "stackTrace" => stack_trace(state, request).await,
        "scopes" => scopes(state, request).await,
        "variables" => variables(state, request).await,
        "evaluate" => evaluate(state, request).await,
        "setVariable" => set_variable(state, request).await,
        "continue" => continue_request(state, request).await,
        "next" => step(state, request, StepKind::Over).await,
        "stepIn" => step(state, request, StepKind::In).await,
        "stepOut" => step(state, request, StepKind::Out).await,
        "pause" => pause(state, request).await,
        "loadedSources" => loaded_sources(state).await,
        "terminate" => {
            state.kernel.shutdown();
            Ok(Value::Null)
        }
        "disconnect" => disconnect(state, request).await,
        "restart" => Err(
            "restart is done by `spindle dap`, which launched the graph; this session is attached \
             to a running kernel"
                .to_owned(),
        ),
        other => Err(format!(
            "unknown command `{other}`; this debugger supports: initialize, launch, attach, \
             setBreakpoints, setFunctionBreakpoints, setExceptionBreakpoints, configurationDone, \
             threads, stackTrace, scopes, variables, evaluate, setVariable, continue, next, \
             stepIn, stepOut, pause, loadedSources, terminate, disconnect, restart"
        )),
    }
}

fn kernel_error(error: spindle_kernel::KernelError) -> String {
    error.to_string()
}

async fn attach(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::LaunchArguments = request.arguments()?;
    if let Some(token) = &state.config.token
        && arguments.token.as_deref() != Some(token.as_str())
    {
        return Err(
            "wrong or missing `token`: a debug port (spindle run --debug-port) needs the token \
             that `spindle run` wrote next to its logs"
                .to_owned(),
        );
    }
    state.kernel.debug_attach().await.map_err(kernel_error)?;
    state.attached = true;
    if arguments.stop_on_entry {
        state.kernel.stop_on_entry().await.map_err(kernel_error)?;
    }
    state
        .after_response
        .push(protocol::event("initialized", Value::Null));
    for live in state.kernel.requests().await {
        if live.run.is_some() {
            state.announce(live.summary.id.0);
        }
    }
    Ok(Value::Null)
}

async fn set_breakpoints(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::SetBreakpointsArguments = request.arguments()?;
    let Some(path) = arguments.source.path else {
        return Err("setBreakpoints needs `source.path` (the script's absolute path)".to_owned());
    };
    let breakpoints: Vec<SourceBreakpoint> = match (arguments.breakpoints, arguments.lines) {
        (Some(list), _) => list
            .into_iter()
            .map(|breakpoint| SourceBreakpoint {
                line: breakpoint.line,
                condition: breakpoint.condition,
                hit_condition: breakpoint.hit_condition,
                log_message: breakpoint.log_message,
            })
            .collect(),
        (None, Some(lines)) => lines
            .into_iter()
            .map(|line| SourceBreakpoint {
                line,
                ..SourceBreakpoint::default()
            })
            .collect(),
        (None, None) => Vec::new(),
    };
    let statuses = state
        .kernel
        .set_breakpoints(&path, breakpoints)
        .await
        .map_err(kernel_error)?;
    Ok(json!({ "breakpoints": statuses.iter().map(to_dap::breakpoint).collect::<Vec<_>>() }))
}

async fn set_function_breakpoints(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::SetFunctionBreakpointsArguments = request.arguments()?;
    let breakpoints = arguments
        .breakpoints
        .into_iter()
        .map(|breakpoint| FunctionBreakpoint {
            name: breakpoint.name,
            condition: breakpoint.condition,
            hit_condition: breakpoint.hit_condition,
        })
        .collect();
    let statuses = state
        .kernel
        .set_function_breakpoints(breakpoints)
        .await
        .map_err(kernel_error)?;
    Ok(json!({ "breakpoints": statuses.iter().map(to_dap::breakpoint).collect::<Vec<_>>() }))
}

async fn set_exception_breakpoints(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::SetExceptionBreakpointsArguments = request.arguments()?;
    let mut filters = Vec::new();
    for filter in &arguments.filters {
        filters.push(match filter.as_str() {
            "all" => ExceptionFilter::All,
            "unhandled" => ExceptionFilter::Unhandled,
            other => {
                return Err(format!(
                    "unknown exception filter `{other}`; use \"all\" or \"unhandled\""
                ));
            }
        });
    }
    let count = filters.len();
    state
        .kernel
        .set_exception_breakpoints(filters)
        .await
        .map_err(kernel_error)?;
    Ok(
        json!({ "breakpoints": (0..count).map(|_| json!({ "verified": true })).collect::<Vec<_>>() }),
    )
}

async fn threads(state: &mut State) -> Result<Value, String> {
    let live = state.kernel.requests().await;
    let mut threads: Vec<Value> = live.iter().map(to_dap::thread).collect();
    // A stopped notebook cell is a thread too, though no scheduler request.
    let mut cells: Vec<_> = state
        .stops
        .values()
        .filter(|stop| !live.iter().any(|live| live.summary.id.0 == stop.request_id))
        .collect();
    cells.sort_by_key(|stop| stop.request_id);
    for stop in cells {
        threads.push(json!({
            "id": stop.request_id,
            "name": format!("{} {}", stop.pipeline, stop.stage),
        }));
    }
    Ok(json!({ "threads": threads }))
}

fn stopped_request(state: &State, thread_id: u64) -> Result<RequestId, String> {
    if state.stops.contains_key(&thread_id) {
        Ok(RequestId(thread_id))
    } else {
        Err(format!(
            "thread {thread_id} is not stopped: only a stopped request has a stack; pause it first"
        ))
    }
}

async fn stack_trace(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::StackTraceArguments = request.arguments()?;
    let id = stopped_request(state, arguments.thread_id)?;
    let frames = match state.kernel.stack(id).await {
        Ok(stack) => stack.frames,
        // Stopped outside a coroutine (before an embed call): one frame,
        // the stage's declaration.
        Err(_) => {
            let stop = &state.stops[&arguments.thread_id];
            vec![spindle_scripting::StackFrame {
                function: format!("stage {}", stop.stage),
                file: stop.file.clone(),
                line: stop.line,
                locals: Vec::new(),
                upvalues: Vec::new(),
            }]
        }
    };
    let start = arguments.start_frame.unwrap_or(0);
    let levels = arguments
        .levels
        .filter(|levels| *levels > 0)
        .unwrap_or(usize::MAX);
    let total = frames.len();
    let mut shown = Vec::new();
    for (level, frame) in frames.iter().enumerate().skip(start).take(levels) {
        let frame_id = state.next_id();
        state.frames.insert(frame_id, (id, level as u32));
        shown.push(to_dap::frame(frame_id, frame));
    }
    Ok(json!({ "stackFrames": shown, "totalFrames": total }))
}

fn frame_of(state: &State, frame_id: i64) -> Result<(RequestId, u32), String> {
    state.frames.get(&frame_id).copied().ok_or_else(|| {
        format!("no frame {frame_id}: frames last while their request stays stopped; ask for the stack again")
    })
}

async fn scopes(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::ScopesArguments = request.arguments()?;
    let (id, level) = frame_of(state, arguments.frame_id)?;
    let scopes = state.kernel.scopes(id, level).await.map_err(kernel_error)?;
    let mut shown = Vec::new();
    for scope in &scopes {
        let reference = state.next_id();
        state.references.insert(reference, (id, scope.variables));
        shown.push(to_dap::scope(reference, scope));
    }
    Ok(json!({ "scopes": shown }))
}

fn reference_of(state: &State, reference: i64) -> Result<(RequestId, VariablesRef), String> {
    state.references.get(&reference).copied().ok_or_else(|| {
        format!(
            "no variables reference {reference}: references last while their request stays stopped"
        )
    })
}

fn child_reference(
    state: &mut State,
    id: RequestId,
    variable: &spindle_scripting::Variable,
) -> i64 {
    match variable.children {
        Some(children) => {
            let reference = state.next_id();
            state.references.insert(reference, (id, children));
            reference
        }
        None => 0,
    }
}

async fn variables(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::VariablesArguments = request.arguments()?;
    let (id, reference) = reference_of(state, arguments.variables_reference)?;
    let page = Page {
        start: arguments.start.unwrap_or(0),
        count: arguments.count.filter(|count| *count > 0),
    };
    let variables = state
        .kernel
        .variables_page(id, reference, page)
        .await
        .map_err(kernel_error)?;
    let mut shown = Vec::new();
    for variable in &variables {
        let child = child_reference(state, id, variable);
        shown.push(to_dap::variable(variable, child));
    }
    Ok(json!({ "variables": shown }))
}

async fn evaluate(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::EvaluateArguments = request.arguments()?;
    let frame = match arguments.frame_id {
        Some(frame_id) => Some(frame_of(state, frame_id)?),
        None => None,
    };
    let context = match arguments.context.as_deref() {
        Some("repl") => EvaluateContext::Repl,
        Some("hover") => EvaluateContext::Hover,
        _ => EvaluateContext::Watch,
    };
    let value = state
        .kernel
        .evaluate(
            frame.map(|(id, _)| id),
            frame.map_or(0, |(_, level)| level),
            &arguments.expression,
            context,
        )
        .await
        .map_err(kernel_error)?;
    let reference = match frame {
        Some((id, _)) => child_reference(state, id, &value),
        None => 0,
    };
    Ok(json!({
        "result": value.value,
        "type": value.type_name,
        "variablesReference": reference,
    }))
}

async fn set_variable(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::SetVariableArguments = request.arguments()?;
    let (id, reference) = reference_of(state, arguments.variables_reference)?;
    let value = state
        .kernel
        .set_variable(id, reference, &arguments.name, &arguments.value)
        .await
        .map_err(kernel_error)?;
    let child = child_reference(state, id, &value);
    Ok(json!({ "value": value.value, "type": value.type_name, "variablesReference": child }))
}

async fn continue_request(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::ThreadArguments = request.arguments()?;
    let single = arguments.single_thread.unwrap_or(false);
    let target = single.then_some(RequestId(arguments.thread_id));
    let resumed = state
        .kernel
        .continue_requests(target)
        .await
        .map_err(kernel_error)?;
    for id in resumed {
        state.forget(id.0);
    }
    Ok(json!({ "allThreadsContinued": !single }))
}

async fn step(state: &mut State, request: &Request, kind: StepKind) -> Result<Value, String> {
    let arguments: protocol::ThreadArguments = request.arguments()?;
    let id = stopped_request(state, arguments.thread_id)?;
    state.kernel.step(id, kind).await.map_err(kernel_error)?;
    state.forget(id.0);
    Ok(Value::Null)
}

async fn pause(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::ThreadArguments = request.arguments()?;
    if arguments.thread_id == 0 {
        state.kernel.pause_all().await.map_err(kernel_error)?;
    } else {
        state
            .kernel
            .pause(RequestId(arguments.thread_id))
            .await
            .map_err(kernel_error)?;
    }
    Ok(Value::Null)
}

async fn loaded_sources(state: &mut State) -> Result<Value, String> {
    let sources = state.kernel.loaded_sources().await.map_err(kernel_error)?;
    Ok(json!({ "sources": sources.iter().map(|path| to_dap::source(path)).collect::<Vec<_>>() }))
}

async fn disconnect(state: &mut State, request: &Request) -> Result<Value, String> {
    let arguments: protocol::DisconnectArguments = request.arguments()?;
    if state.attached {
        state.kernel.debug_detach().await.map_err(kernel_error)?;
        state.attached = false;
    }
    if arguments.terminate_debuggee == Some(true) {
        state.kernel.shutdown();
    }
    state.ended = true;
    Ok(Value::Null)
}
