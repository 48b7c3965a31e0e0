//! The Debug Adapter Protocol messages of a session, as JSON.
//!
//! Incoming messages are read as raw JSON first (so that an unknown
//! command or a malformed body is answered, never dropped), then the
//! arguments of each known command as a typed struct with DAP's own
//! camelCase names.

use serde::Deserialize;
use serde_json::{Value, json};

/// A request from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub seq: i64,
    pub command: String,
    pub arguments: Value,
}

/// Why an incoming message is not a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error(
        "the message is not a JSON object with \"type\": \"request\", a \"seq\" and a \"command\""
    )]
    NotARequest,
}

impl Request {
    /// Reads a request from a client's JSON message.
    pub fn from_json(message: &Value) -> Result<Request, MessageError> {
        let object = message.as_object().ok_or(MessageError::NotARequest)?;
        if object.get("type").and_then(Value::as_str) != Some("request") {
            return Err(MessageError::NotARequest);
        }
        let seq = object
            .get("seq")
            .and_then(Value::as_i64)
            .ok_or(MessageError::NotARequest)?;
        let command = object
            .get("command")
            .and_then(Value::as_str)
            .ok_or(MessageError::NotARequest)?
            .to_owned();
        Ok(Request {
            seq,
            command,
            arguments: object.get("arguments").cloned().unwrap_or(Value::Null),
        })
    }

    /// Its arguments as `T`; a missing body reads as `{}`.
    pub fn arguments<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let arguments = match &self.arguments {
            Value::Null => json!({}),
            other => other.clone(),
        };
        serde_json::from_value(arguments)
            .map_err(|error| format!("the arguments of `{}` are not valid: {error}", self.command))
    }
}

/// A successful response (without `seq`: the transport numbers messages).
pub fn response(request: &Request, body: Value) -> Value {
    let mut message = json!({
        "type": "response",
        "request_seq": request.seq,
        "success": true,
        "command": request.command,
    });
    if !body.is_null() {
        message["body"] = body;
    }
    message
}

/// A failed response: `message` is a short key, `format` the text a
/// person reads (with the hint).
pub fn error_response(request_seq: i64, command: &str, text: &str) -> Value {
    json!({
        "type": "response",
        "request_seq": request_seq,
        "success": false,
        "command": command,
        "message": text,
        "body": { "error": { "id": 1, "format": text, "showUser": true } },
    })
}

pub fn event(name: &str, body: Value) -> Value {
    let mut message = json!({ "type": "event", "event": name });
    if !body.is_null() {
        message["body"] = body;
    }
    message
}

/// `initialize`'s answer: what this debugger supports.
pub fn capabilities() -> Value {
    json!({
        "supportsConfigurationDoneRequest": true,
        "supportsFunctionBreakpoints": true,
        "supportsConditionalBreakpoints": true,
        "supportsHitConditionalBreakpoints": true,
        "supportsLogPoints": true,
        "supportsEvaluateForHovers": true,
        "supportsSetVariable": true,
        "supportsLoadedSourcesRequest": true,
        "supportsTerminateRequest": true,
        "supportsRestartRequest": true,
        "supportsExceptionInfoRequest": false,
        "supportsSingleThreadExecutionRequests": true,
        "exceptionBreakpointFilters": [
            { "filter": "all", "label": "All errors", "description": "Every error that escapes a stage", "default": false },
            { "filter": "unhandled", "label": "Unhandled errors", "description": "Errors the pipeline's fallback does not handle", "default": false },
        ],
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub path: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceBreakpointArgument {
    pub line: u32,
    pub condition: Option<String>,
    pub hit_condition: Option<String>,
    pub log_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetBreakpointsArguments {
    pub source: Source,
    #[serde(default)]
    pub breakpoints: Option<Vec<SourceBreakpointArgument>>,
    #[serde(default)]
    pub lines: Option<Vec<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionBreakpointArgument {
    pub name: String,
    pub condition: Option<String>,
    pub hit_condition: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetFunctionBreakpointsArguments {
    pub breakpoints: Vec<FunctionBreakpointArgument>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetExceptionBreakpointsArguments {
    pub filters: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadArguments {
    pub thread_id: u64,
    #[serde(default)]
    pub single_thread: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackTraceArguments {
    pub thread_id: u64,
    #[serde(default)]
    pub start_frame: Option<usize>,
    #[serde(default)]
    pub levels: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopesArguments {
    pub frame_id: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariablesArguments {
    pub variables_reference: i64,
    #[serde(default)]
    pub start: Option<usize>,
    #[serde(default)]
    pub count: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateArguments {
    pub expression: String,
    #[serde(default)]
    pub frame_id: Option<i64>,
    #[serde(default)]
    pub context: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetVariableArguments {
    pub variables_reference: i64,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LaunchArguments {
    #[serde(default)]
    pub stop_on_entry: bool,
    /// The token of a debug port (`spindle run --debug-port`).
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectArguments {
    #[serde(default)]
    pub terminate_debuggee: Option<bool>,
}
