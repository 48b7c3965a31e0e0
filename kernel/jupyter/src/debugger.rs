//! The Jupyter debugger: `debug_request`s from the control channel answered
//! by the same debug session the DAP server uses (`spindle-dap-session`),
//! its events published on iopub as `debug_event`s.
//!
//! Jupyter's debug protocol is DAP carried in Jupyter messages, plus a few
//! requests of its own that are answered here:
//! - `debugInfo`: whether a session runs, how cells map to files (the
//!   MurmurHash2 seed, the cells' folder and suffix), the breakpoints set so
//!   far and the stopped threads, so a reloaded page can restore its view;
//! - `dumpCell`: writes a cell's code to its file and tells the debugger
//!   core its text, so breakpoints in a cell bind before it runs;
//! - `inspectVariables`: the user's globals while nothing is stopped;
//! - `richInspectVariables`: one variable's value as a MIME bundle;
//! - `modules`: the script files Lua loaded code from (the kernel sources
//!   panel); `source`: a file's text (the graph's script, a cell).
//!
//! Everything else goes to the session unchanged. One task owns the
//! session and its bookkeeping; the control channel awaits each reply
//! (DAP answers come at once: a stopped cell or request waits elsewhere).
//! Knows no socket: messages leave through [`Shared`](crate::shared).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::{Value, json};
use spindle_dap_session::{Outgoing, Session, SessionConfig};
use spindle_kernel::Kernel;
use tokio::sync::{mpsc, oneshot};

use crate::cell_path::{self, CELL_HASH_SEED, CELL_SUFFIX};

/// A debug request from a client and where its reply goes.
pub(crate) struct DebugAsk {
    pub request: Value,
    pub reply: oneshot::Sender<Value>,
}

/// The handle the control channel holds.
#[derive(Clone)]
pub(crate) struct JupyterDebugger {
    asks: mpsc::UnboundedSender<DebugAsk>,
}

impl JupyterDebugger {
    /// Starts the debugger's task; `publish` sends a `debug_event`'s
    /// content on iopub.
    pub(crate) fn start(
        kernel: Kernel,
        cell_dir: PathBuf,
        publish: impl Fn(Value) + Send + 'static,
    ) -> JupyterDebugger {
        let (asks, receiver) = mpsc::unbounded_channel();
        let state = DebuggerState {
            kernel,
            cell_dir,
            publish: Box::new(publish),
            session: None,
            waiting: HashMap::new(),
            breakpoints: BTreeMap::new(),
            stopped: BTreeSet::new(),
            event_seq: 0,
        };
        tokio::spawn(state.run(receiver));
        JupyterDebugger { asks }
    }

    /// Answers a `debug_request`'s content with a `debug_reply`'s.
    pub(crate) async fn ask(&self, request: Value) -> Value {
        let seq = request.get("seq").and_then(Value::as_i64).unwrap_or(0);
        let command = request
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let (reply, answer) = oneshot::channel();
        if self.asks.send(DebugAsk { request, reply }).is_err() {
            return error_reply(seq, &command, "the debugger has stopped with the kernel");
        }
        answer.await.unwrap_or_else(|_| {
            error_reply(seq, &command, "the debugger has stopped with the kernel")
        })
    }
}

struct DebuggerState {
    kernel: Kernel,
    cell_dir: PathBuf,
    publish: Box<dyn Fn(Value) + Send>,
    /// The DAP session, from the first request to `disconnect`.
    session: Option<(Session, mpsc::UnboundedReceiver<Outgoing>)>,
    /// Replies awaited from the session, by the client's `seq`.
    waiting: HashMap<i64, Waiting>,
    /// The breakpoints set per file, as the client sent them.
    breakpoints: BTreeMap<String, Value>,
    stopped: BTreeSet<u64>,
    event_seq: i64,
}

/// What to do with the session's response to a request.
enum Waiting {
    /// Pass it on as it is.
    Plain(oneshot::Sender<Value>),
    /// `richInspectVariables`, asked of the session as `evaluate`.
    Rich(oneshot::Sender<Value>),
    /// `modules`, asked of the session as `loadedSources`.
    Modules(oneshot::Sender<Value>),
    /// `variables`: types named as JupyterLab shows values.
    Variables(oneshot::Sender<Value>),
}

impl DebuggerState {
    async fn run(mut self, mut asks: mpsc::UnboundedReceiver<DebugAsk>) {
        loop {
            tokio::select! {
                ask = asks.recv() => match ask {
                    Some(ask) => self.ask(ask).await,
                    None => return,
                },
                outgoing = next_outgoing(&mut self.session) => match outgoing {
                    Some(message) => self.on_session_message(message),
                    None => self.session_ended(),
                },
            }
        }
    }

    async fn ask(&mut self, ask: DebugAsk) {
        let DebugAsk { request, reply } = ask;
        let seq = request.get("seq").and_then(Value::as_i64).unwrap_or(0);
        let command = request
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let arguments = request.get("arguments").cloned().unwrap_or(Value::Null);
        let answer = match command.as_str() {
            "debugInfo" => Some(ok_reply(seq, &command, self.debug_info())),
            "dumpCell" => Some(self.dump_cell(seq, &command, &arguments)),
            "inspectVariables" => Some(match self.kernel.global_variables().await {
                Ok(variables) => ok_reply(
                    seq,
                    &command,
                    json!({ "variables": variables.iter().map(|variable| json!({
                        "name": variable.name,
                        "value": variable.value,
                        "type": shown_type(&variable.type_name),
                        "evaluateName": variable.name,
                        "variablesReference": 0,
                    })).collect::<Vec<_>>() }),
                ),
                Err(error) => error_reply(seq, &command, &error.to_string()),
            }),
            "source" => Some(source(seq, &command, &arguments)),
            "copyToGlobals" => Some(error_reply(
                seq,
                &command,
                "copyToGlobals is not served: evaluate `name = value` in the debug console instead",
            )),
            _ => None,
        };
        if let Some(answer) = answer {
            let _ = reply.send(answer);
            return;
        }
        if command == "setBreakpoints"
            && let Some(path) = arguments.pointer("/source/path").and_then(Value::as_str)
        {
            let breakpoints = arguments
                .get("breakpoints")
                .cloned()
                .unwrap_or_else(|| json!([]));
            if breakpoints.as_array().is_some_and(Vec::is_empty) {
                self.breakpoints.remove(path);
            } else {
                self.breakpoints.insert(path.to_owned(), breakpoints);
            }
        }
        let (forwarded, waiting) = match command.as_str() {
            "richInspectVariables" => {
                let mut evaluate = json!({
                    "expression": arguments.get("variableName").cloned().unwrap_or(Value::Null),
                    "context": "watch",
                });
                if let Some(frame) = arguments.get("frameId").filter(|frame| !frame.is_null()) {
                    evaluate["frameId"] = frame.clone();
                }
                (
                    json!({ "type": "request", "seq": seq, "command": "evaluate", "arguments": evaluate }),
                    Waiting::Rich(reply),
                )
            }
            "modules" => (
                json!({ "type": "request", "seq": seq, "command": "loadedSources", "arguments": {} }),
                Waiting::Modules(reply),
            ),
            "variables" => (request, Waiting::Variables(reply)),
            _ => (request, Waiting::Plain(reply)),
        };
        let session = self
            .session
            .get_or_insert_with(|| Session::start(self.kernel.clone(), SessionConfig::default()));
        session.0.send(forwarded);
        self.waiting.insert(seq, waiting);
    }

    fn on_session_message(&mut self, message: Value) {
        match message.get("type").and_then(Value::as_str) {
            Some("response") => {
                let seq = message
                    .get("request_seq")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let Some(waiting) = self.waiting.remove(&seq) else {
                    tracing::debug!("debugger: a response nobody waits for: {message}");
                    return;
                };
                let numbered = |mut message: Value| {
                    message["seq"] = json!(seq);
                    message
                };
                match waiting {
                    Waiting::Plain(reply) => {
                        let _ = reply.send(numbered(message));
                    }
                    Waiting::Rich(reply) => {
                        let _ = reply.send(numbered(rich_reply(message)));
                    }
                    Waiting::Modules(reply) => {
                        let _ = reply.send(numbered(modules_reply(message)));
                    }
                    Waiting::Variables(reply) => {
                        let mut message = message;
                        if let Some(variables) = message
                            .pointer_mut("/body/variables")
                            .and_then(Value::as_array_mut)
                        {
                            for variable in variables {
                                if let Some(type_name) =
                                    variable.get("type").and_then(Value::as_str)
                                {
                                    variable["type"] = json!(shown_type(type_name));
                                }
                            }
                        }
                        let _ = reply.send(numbered(message));
                    }
                }
            }
            Some("event") => {
                let thread = message.pointer("/body/threadId").and_then(Value::as_u64);
                match message.get("event").and_then(Value::as_str) {
                    Some("stopped") => {
                        self.stopped.extend(thread);
                    }
                    Some("continued") => {
                        let all = message
                            .pointer("/body/allThreadsContinued")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        match (all, thread) {
                            (true, _) | (_, None) => self.stopped.clear(),
                            (false, Some(thread)) => {
                                self.stopped.remove(&thread);
                            }
                        }
                    }
                    Some("thread")
                        if message.pointer("/body/reason").and_then(Value::as_str)
                            == Some("exited") =>
                    {
                        if let Some(thread) = thread {
                            self.stopped.remove(&thread);
                        }
                    }
                    _ => {}
                }
                self.event_seq += 1;
                let mut message = message;
                message["seq"] = json!(self.event_seq);
                (self.publish)(message);
            }
            _ => tracing::debug!("debugger: an unexpected message from the session: {message}"),
        }
    }

    /// The session ended (`disconnect`, or the kernel ended): requests
    /// still waiting get an error; the next request starts a new session.
    fn session_ended(&mut self) {
        self.session = None;
        self.stopped.clear();
        self.breakpoints.clear();
        for (seq, waiting) in self.waiting.drain() {
            let reply = match waiting {
                Waiting::Plain(reply)
                | Waiting::Rich(reply)
                | Waiting::Modules(reply)
                | Waiting::Variables(reply) => reply,
            };
            let _ = reply.send(error_reply(
                seq,
                "",
                "the debug session ended before it answered; start the debugger again",
            ));
        }
    }

    fn debug_info(&self) -> Value {
        let mut prefix = self.cell_dir.display().to_string();
        prefix.push('/');
        json!({
            "isStarted": self.session.is_some(),
            "hashMethod": "Murmur2",
            "hashSeed": CELL_HASH_SEED,
            "tmpFilePrefix": prefix,
            "tmpFileSuffix": CELL_SUFFIX,
            "breakpoints": self.breakpoints.iter().map(|(path, breakpoints)| json!({
                "source": path,
                "breakpoints": breakpoints,
            })).collect::<Vec<_>>(),
            "stoppedThreads": self.stopped.iter().collect::<Vec<_>>(),
            "richRendering": true,
            "exceptionPaths": ["Lua errors"],
            "copyToGlobals": false,
        })
    }

    fn dump_cell(&self, seq: i64, command: &str, arguments: &Value) -> Value {
        let Some(code) = arguments.get("code").and_then(Value::as_str) else {
            return error_reply(seq, command, "dumpCell needs `code`, the cell's text");
        };
        let path = cell_path::cell_path(&self.cell_dir, code);
        cell_path::write_cell(&path, code);
        let shown = path.display().to_string();
        if let Err(error) = self.kernel.register_source(&shown, code) {
            return error_reply(seq, command, &error.to_string());
        }
        ok_reply(seq, command, json!({ "sourcePath": shown }))
    }
}

async fn next_outgoing(
    session: &mut Option<(Session, mpsc::UnboundedReceiver<Outgoing>)>,
) -> Option<Outgoing> {
    match session {
        Some((_, outgoing)) => outgoing.recv().await,
        None => std::future::pending().await,
    }
}

/// `source`: the text of a file the debugger showed (the graph's script,
/// a cell's file).
fn source(seq: i64, command: &str, arguments: &Value) -> Value {
    let Some(path) = arguments.pointer("/source/path").and_then(Value::as_str) else {
        return error_reply(seq, command, "source needs `source.path`");
    };
    match std::fs::read_to_string(path) {
        Ok(content) => ok_reply(
            seq,
            command,
            json!({ "content": content, "mimeType": "text/x-lua" }),
        ),
        Err(error) => error_reply(seq, command, &format!("cannot read {path}: {error}")),
    }
}

/// A Lua type as JupyterLab's variables view names it: it shows the
/// value of an `int`, `float`, `bool` or `str` and only the type of
/// anything else (so a table reads `table` and expands).
fn shown_type(lua_type: &str) -> &str {
    match lua_type {
        "integer" => "int",
        "number" => "float",
        "boolean" => "bool",
        "string" => "str",
        other => other,
    }
}

/// An `evaluate` response as `richInspectVariables`' reply: the value as
/// `text/plain`.
fn rich_reply(mut message: Value) -> Value {
    message["command"] = json!("richInspectVariables");
    if message.get("success").and_then(Value::as_bool) == Some(true) {
        let text = message
            .pointer("/body/result")
            .cloned()
            .unwrap_or(Value::Null);
        message["body"] = json!({ "data": { "text/plain": text }, "metadata": {} });
    }
    message
}

/// A `loadedSources` response as `modules`' reply.
fn modules_reply(mut message: Value) -> Value {
    message["command"] = json!("modules");
    if message.get("success").and_then(Value::as_bool) == Some(true) {
        let sources = message
            .pointer("/body/sources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let modules: Vec<Value> = sources
            .iter()
            .enumerate()
            .map(|(index, source)| {
                json!({
                    "id": index + 1,
                    "name": source.get("name").cloned().unwrap_or(Value::Null),
                    "path": source.get("path").cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        message["body"] = json!({ "totalModules": modules.len(), "modules": modules });
    }
    message
}

fn ok_reply(seq: i64, command: &str, body: Value) -> Value {
    json!({
        "type": "response",
        "seq": seq,
        "request_seq": seq,
        "success": true,
        "command": command,
        "body": body,
    })
}

fn error_reply(seq: i64, command: &str, text: &str) -> Value {
    json!({
        "type": "response",
        "seq": seq,
        "request_seq": seq,
        "success": false,
        "command": command,
        "message": text,
        "body": { "error": { "id": 1, "format": text, "showUser": true } },
    })
}
