//! The debugger core's Rust types as DAP bodies: small free functions,
//! one per type.

use serde_json::{Value, json};
use spindle_kernel::LiveRequest;
use spindle_scripting::{
    BreakpointStatus, OutputCategory, Scope, ScopeKind, StackFrame, Stop, StopReason, Variable,
};

/// A DAP thread's name for a live request: `pipeline #id (priority)`.
pub fn thread_name(pipeline: &str, id: u64, priority: &str) -> String {
    format!("{pipeline} #{id} ({priority})")
}

pub fn thread(request: &LiveRequest) -> Value {
    json!({
        "id": request.summary.id.0,
        "name": thread_name(
            &request.summary.pipeline,
            request.summary.id.0,
            request.summary.priority.as_str(),
        ),
    })
}

pub fn stop_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Breakpoint => "breakpoint",
        StopReason::FunctionBreakpoint => "function breakpoint",
        StopReason::Exception => "exception",
        StopReason::Step => "step",
        StopReason::Pause => "pause",
        StopReason::Entry => "entry",
    }
}

pub fn stopped(stop: &Stop) -> Value {
    let description = match stop.reason {
        StopReason::Exception => format!(
            "error in {}/{}: {}",
            stop.pipeline,
            stop.stage,
            stop.text.as_deref().unwrap_or("")
        ),
        reason => format!(
            "{} in {}/{}",
            stop_reason(reason),
            stop.pipeline,
            stop.stage
        ),
    };
    let mut body = json!({
        "reason": stop_reason(stop.reason),
        "threadId": stop.request_id,
        "description": description,
        "preserveFocusHint": false,
        "allThreadsStopped": false,
    });
    if !stop.breakpoints.is_empty() {
        body["hitBreakpointIds"] = json!(stop.breakpoints);
    }
    if let Some(text) = &stop.text {
        body["text"] = json!(text);
    }
    body
}

pub fn source(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({ "name": name, "path": path })
}

pub fn breakpoint(status: &BreakpointStatus) -> Value {
    let mut body = json!({ "id": status.id, "verified": status.verified });
    if let Some(line) = status.line {
        body["line"] = json!(line);
    }
    if let Some(file) = &status.file {
        body["source"] = source(file);
    }
    if let Some(message) = &status.message {
        body["message"] = json!(message);
    }
    body
}

pub fn frame(id: i64, frame: &StackFrame) -> Value {
    let mut body = json!({
        "id": id,
        "name": frame.function,
        "line": frame.line,
        "column": if frame.line > 0 { 1 } else { 0 },
    });
    if frame.file.is_empty() {
        body["presentationHint"] = json!("subtle");
    } else {
        body["source"] = source(&frame.file);
    }
    body
}

pub fn scope(reference: i64, scope: &Scope) -> Value {
    let hint = match scope.kind {
        ScopeKind::Locals => "locals",
        ScopeKind::Upvalues | ScopeKind::Request => "",
        ScopeKind::Globals => "",
    };
    let mut body = json!({
        "name": scope.name,
        "variablesReference": reference,
        "namedVariables": scope.count,
        "expensive": scope.kind == ScopeKind::Globals,
    });
    if !hint.is_empty() {
        body["presentationHint"] = json!(hint);
    }
    body
}

/// `reference` is the session's id for the variable's children (0: none).
pub fn variable(variable: &Variable, reference: i64) -> Value {
    json!({
        "name": variable.name,
        "value": variable.value,
        "type": variable.type_name,
        "variablesReference": reference,
    })
}

pub fn output_category(category: OutputCategory) -> &'static str {
    match category {
        OutputCategory::Stdout => "stdout",
        OutputCategory::Logpoint | OutputCategory::Console => "console",
    }
}
