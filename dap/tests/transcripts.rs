//! DAP transcripts of whole debug sessions, snapshot-tested: a client
//! script drives a session served over the in-memory transport
//! (`tokio::io::duplex`, real Content-Length framing both ways) on a real
//! kernel running a real graph, while the script submits requests to that
//! kernel. Each transcript prints what the client sent and what it got.
//!
//! The client script, one step a line:
//! - `-> COMMAND [JSON]`: send a request, wait for its response (events
//!   that come meanwhile wait in a queue);
//! - `<- EVENT`: take the first queued event of that name (waiting for it);
//! - `submit PIPELINE PRIORITY TEXT`: submit a request to the kernel;
//!   `answer N`: wait for the N-th submission's answer;
//! - `raw BYTES`: write bytes that are not a DAP message (`\r\n` escapes);
//! - `drop`: the client closes its stream.
//!
//! In the JSON, `$SCRIPT` is the graph's path, `$T1`.. the threads in the
//! order they first appeared, `$frame` the top frame of the last
//! `stackTrace`, `$Locals` (any scope's name) a scope of the last `scopes`,
//! `$var.NAME` the reference of a variable of the last `variables`.
//!
//! Normalised in the output: `seq` dropped, thread ids as `T1`.., frame
//! ids, variables references and breakpoint ids numbered in order of
//! appearance, the temporary folder as `$DIR`; answers without timings.
//! Every event is claimed by the script; one left over is printed, and so
//! are the events of a session that ends, after the stream closes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use spindle_dap::{Frame, FrameReader, FrameWriter, serve_session};
use spindle_dap_session::SessionConfig;
use spindle_kernel::{Kernel, KernelConfig, KernelSource, RequestAnswer, Submission};
use spindle_scheduler::{Outcome, Priority, Source};
use tokio::io::{AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const GRAPH: &str = r#"local s = require("spindle")

local function shout(text)
  return text:upper()
end

s.pipeline "ingest" {
  s.stage("clean", function(req)
    local text = req.text:gsub("%s+", " ")
    req.text = text
    return req
  end),
  s.stage("tag", function(req)
    local loud = shout(req.text)
    req.loud = loud
    return req
  end),
}

s.pipeline "fragile" {
  s.stage("boom", function(req)
    local why = "no " .. req.text
    error(why)
  end),
}

s.pipeline "spin" {
  s.stage("loop", function(req)
    local n = 0
    print("spinning on " .. req.text)
    while req.text ~= "stop" do n = n + 1 end
    return req
  end),
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakpoint_inspect_evaluate_set_variable_step_across_stages() {
    check(
        "breakpoint_inspect_evaluate_set_variable_step_across_stages",
        None,
        r#"
-> initialize {"adapterID": "transcript", "linesStartAt1": true}
-> attach {}
<- initialized
-> setBreakpoints {"source": {"path": "$SCRIPT"}, "breakpoints": [{"line": 10, "condition": "req.text:find(\"cat\")"}, {"line": 1}]}
-> configurationDone
submit ingest medium a  cat  sat
<- thread
<- stopped
-> threads
-> stackTrace {"threadId": $T1}
-> scopes {"frameId": $frame}
-> variables {"variablesReference": $Request}
-> evaluate {"expression": "text .. \"!\"", "frameId": $frame, "context": "watch"}
submit ingest high b
<- thread
answer 2
<- thread
-> scopes {"frameId": $frame}
-> setVariable {"variablesReference": $Locals, "name": "text", "value": "\"a dog\""}
-> next {"threadId": $T1}
<- continued
<- stopped
-> stepOut {"threadId": $T1}
<- continued
<- stopped
-> stackTrace {"threadId": $T1}
-> stepIn {"threadId": $T1}
<- continued
<- stopped
-> stackTrace {"threadId": $T1, "levels": 1}
-> continue {"threadId": $T1}
<- continued
answer 1
<- thread
-> disconnect {}
"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_hit_count_and_log_breakpoints() {
    check(
        "conditional_hit_count_and_log_breakpoints",
        None,
        r#"
-> initialize {"adapterID": "transcript"}
-> attach {}
<- initialized
-> setBreakpoints {"source": {"path": "$SCRIPT"}, "breakpoints": [{"line": 9, "condition": "req.priority == \"high\""}, {"line": 14, "logMessage": "tagging {req.text} at {#req.text}"}]}
-> configurationDone
submit ingest low low one
<- thread
<- output
answer 1
<- thread
submit ingest high high one
<- thread
<- stopped
-> continue {"threadId": $T2}
<- continued
<- output
answer 2
<- thread
-> setBreakpoints {"source": {"path": "$SCRIPT"}, "breakpoints": [{"line": 14, "hitCondition": "2"}]}
submit ingest medium one
<- thread
answer 3
<- thread
submit ingest medium two
<- thread
<- stopped
-> stackTrace {"threadId": $T4}
-> evaluate {"expression": "req.text", "frameId": $frame}
-> continue {"threadId": $T4}
<- continued
answer 4
<- thread
-> setBreakpoints {"source": {"path": "$SCRIPT"}, "breakpoints": [{"line": 14, "hitCondition": "every other"}, {"line": 15, "condition": "req.text +"}]}
-> disconnect {}
"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_and_exception_breakpoints() {
    check(
        "function_and_exception_breakpoints",
        None,
        r#"
-> initialize {"adapterID": "transcript"}
-> attach {}
<- initialized
-> setFunctionBreakpoints {"breakpoints": [{"name": "ingest/tag"}, {"name": "nowhere"}]}
-> setExceptionBreakpoints {"filters": ["unhandled"]}
-> configurationDone
submit ingest medium x
<- thread
<- stopped
-> stackTrace {"threadId": $T1}
-> continue {"threadId": $T1}
<- continued
answer 1
<- thread
submit fragile medium luck
<- thread
<- stopped
-> stackTrace {"threadId": $T2}
-> continue {"threadId": $T2}
<- continued
answer 2
<- thread
-> setExceptionBreakpoints {"filters": ["sometimes"]}
-> disconnect {}
"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_a_busy_loop_unknown_commands_and_malformed_frames() {
    check(
        "pause_a_busy_loop_unknown_commands_and_malformed_frames",
        None,
        r#"
-> threads
-> initialize {"adapterID": "transcript"}
-> attach {}
<- initialized
-> configurationDone
submit spin medium go
<- thread
<- output
-> pause {"threadId": $T1}
<- stopped
-> stackTrace {"threadId": $T1}
-> scopes {"frameId": $frame}
-> variables {"variablesReference": $Request}
-> setVariable {"variablesReference": $Request, "name": "text", "value": "\"stop\""}
-> continue {"threadId": $T1}
<- continued
answer 1
<- thread
-> stackTrace {"threadId": $T1}
-> fly {"to": "the moon"}
raw Content-Length: 5\r\n\r\nhello
raw Content-Length: many\r\n\r\n
-> loadedSources
-> restart {}
-> disconnect {}
"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_port_session_needs_the_token_and_disconnect_releases_a_stopped_request() {
    check(
        "a_debug_port_session_needs_the_token_and_disconnect_releases_a_stopped_request",
        Some("s3cret"),
        r#"
-> initialize {"adapterID": "transcript"}
-> attach {"token": "guess"}
-> setBreakpoints {"source": {"path": "$SCRIPT"}, "breakpoints": [{"line": 10}]}
-> attach {"token": "s3cret"}
<- initialized
-> setBreakpoints {"source": {"path": "$SCRIPT"}, "breakpoints": [{"line": 10}]}
-> configurationDone
submit ingest medium held
<- thread
<- stopped
-> disconnect {}
answer 1
"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_the_kernel_and_ends_the_session() {
    check(
        "terminate_stops_the_kernel_and_ends_the_session",
        None,
        r#"
-> initialize {"adapterID": "transcript"}
-> attach {"stopOnEntry": true}
<- initialized
-> configurationDone
submit ingest medium first
<- thread
<- stopped
-> continue {"threadId": $T1}
<- continued
answer 1
<- thread
-> terminate {}
<- terminated
"#,
    )
    .await;
}

/// Runs `transcript` against a fresh kernel on [`GRAPH`] and snapshots
/// what happened as `name`.
async fn check(name: &str, token: Option<&str>, transcript: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("graph.lua");
    std::fs::write(&script, GRAPH).expect("write the graph");
    let kernel = Kernel::start(
        KernelSource::Script(script.clone()),
        KernelConfig {
            // A request held at a breakpoint or pause must not run out of
            // stage time on a slow machine.
            stage_budget: Some(Duration::from_secs(120)),
            ..KernelConfig::default()
        },
    )
    .expect("the kernel starts");
    let (client, server) = tokio::io::duplex(1 << 20);
    let (server_reader, server_writer) = tokio::io::split(server);
    let config = SessionConfig {
        token: token.map(str::to_owned),
    };
    let serving = tokio::spawn(serve_session(
        kernel.clone(),
        config,
        server_reader,
        server_writer,
    ));
    let (client_reader, client_writer) = tokio::io::split(client);
    let (messages, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = FrameReader::new(client_reader);
        while let Ok(Some(frame)) = reader.read().await {
            let Frame::Message(message) = frame else {
                panic!("the server wrote a malformed frame: {frame:?}");
            };
            if messages.send(message).is_err() {
                break;
            }
        }
    });
    let mut client = Client {
        kernel: kernel.clone(),
        dir: dir.path().to_path_buf(),
        script,
        writer: Some(FrameWriter::new(client_writer)),
        receiver,
        events: VecDeque::new(),
        seq: 0,
        labels: Labels::default(),
        last: HashMap::new(),
        submissions: Vec::new(),
        out: String::new(),
    };
    for line in transcript
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        client.step(line).await;
    }
    client.finish().await;
    serving.await.expect("the session's task");
    kernel.kill_now();
    insta::assert_snapshot!(name, client.out);
}

/// How long a transcript waits for one message or answer before it fails
/// with what it saw (a safety net: steps synchronise on messages).
const WAIT: Duration = Duration::from_secs(60);

struct Client {
    kernel: Kernel,
    dir: PathBuf,
    script: PathBuf,
    writer: Option<FrameWriter<WriteHalf<DuplexStream>>>,
    receiver: mpsc::UnboundedReceiver<Value>,
    /// Events not claimed yet, in arrival order.
    events: VecDeque<Value>,
    seq: i64,
    labels: Labels,
    /// The last successful response body of each command.
    last: HashMap<String, Value>,
    submissions: Vec<JoinHandle<RequestAnswer>>,
    out: String,
}

impl Client {
    async fn step(&mut self, line: &str) {
        if let Some(request) = line.strip_prefix("-> ") {
            let (command, arguments) = request.split_once(' ').unwrap_or((request, ""));
            self.request(command, arguments).await;
        } else if let Some(event) = line.strip_prefix("<- ") {
            let message = self.event(event).await;
            let shown = self.show(&message["body"]);
            self.print(format!("<- {event} {shown}"));
        } else if let Some(submission) = line.strip_prefix("submit ") {
            self.submit(submission);
        } else if let Some(number) = line.strip_prefix("answer ") {
            self.answer(number.parse().expect("answer N")).await;
        } else if let Some(bytes) = line.strip_prefix("raw ") {
            self.raw(bytes).await;
        } else if line == "drop" {
            self.close().await;
            self.print("drop".to_owned());
        } else {
            panic!("not a transcript step: {line}");
        }
    }

    async fn request(&mut self, command: &str, arguments: &str) {
        self.print(format!("-> {command} {arguments}").trim_end().to_owned());
        let arguments: Value = if arguments.is_empty() {
            Value::Null
        } else {
            let substituted = self.substitute(arguments);
            serde_json::from_str(&substituted)
                .unwrap_or_else(|error| panic!("bad JSON `{substituted}`: {error}"))
        };
        self.seq += 1;
        let mut message = json!({ "seq": self.seq, "type": "request", "command": command });
        if !arguments.is_null() {
            message["arguments"] = arguments;
        }
        let writer = self.writer.as_mut().expect("the client's stream is open");
        writer.write_raw(&message).await.expect("write a request");
        let response = self.response(self.seq).await;
        self.answered(command, &response);
    }

    async fn raw(&mut self, bytes: &str) {
        self.print(format!("raw {bytes}"));
        let bytes = bytes.replace("\\r\\n", "\r\n");
        let writer = self.writer.as_mut().expect("the client's stream is open");
        writer
            .get_mut()
            .write_all(bytes.as_bytes())
            .await
            .expect("write raw bytes");
        let response = self.response(0).await;
        self.answered("", &response);
    }

    fn answered(&mut self, command: &str, response: &Value) {
        if response["success"] == true {
            let body = response.get("body").cloned().unwrap_or(Value::Null);
            self.labels.learn_threads(command, &body);
            let shown = self.show(&body);
            self.print(format!("<- ok {shown}").trim_end().to_owned());
            self.last.insert(command.to_owned(), body);
        } else {
            let text = self.show(&response["message"]);
            self.print(format!("<- error {text}"));
        }
    }

    /// The next message that answers `request_seq`; events are queued.
    async fn response(&mut self, request_seq: i64) -> Value {
        loop {
            let message = self.next().await.expect("the session answers");
            match message["type"].as_str() {
                Some("event") => self.events.push_back(message),
                Some("response") if message["request_seq"] == request_seq => return message,
                _ => panic!("unexpected message: {message}"),
            }
        }
    }

    async fn event(&mut self, name: &str) -> Value {
        loop {
            if let Some(index) = self.events.iter().position(|event| event["event"] == name) {
                let event = self.events.remove(index).expect("queued");
                self.labels.learn(&event);
                return event;
            }
            let message = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the session ended before a `{name}` event"));
            match message["type"].as_str() {
                Some("event") => self.events.push_back(message),
                _ => panic!("unexpected message: {message}"),
            }
        }
    }

    async fn next(&mut self) -> Option<Value> {
        match tokio::time::timeout(WAIT, self.receiver.recv()).await {
            Ok(message) => message,
            Err(_) => panic!(
                "no message for a minute: the transcript waits for something that never \
                 comes; so far:\n{}",
                self.out
            ),
        }
    }

    fn submit(&mut self, submission: &str) {
        self.print(format!("submit {submission}"));
        let mut words = submission.splitn(3, ' ');
        let pipeline = words.next().expect("pipeline").to_owned();
        let priority = match words.next().expect("priority") {
            "high" => Priority::High,
            "low" => Priority::Low,
            _ => Priority::Medium,
        };
        let text = words.next().unwrap_or("").to_owned();
        let kernel = self.kernel.clone();
        self.submissions.push(tokio::spawn(async move {
            kernel
                .submit(Submission {
                    pipeline,
                    text,
                    priority,
                    deadline: Some(Duration::from_secs(120)),
                    correlation_id: None,
                    source: Source::Scenario,
                })
                .await
        }));
    }

    async fn answer(&mut self, number: usize) {
        let answer = match tokio::time::timeout(WAIT, &mut self.submissions[number - 1]).await {
            Ok(answer) => answer.expect("the submission's task"),
            Err(_) => panic!("no answer for a minute; so far:\n{}", self.out),
        };
        let shown = match answer.outcome {
            Outcome::Ok(answer) => format!(
                "ok text={:?} fields={:?}{}",
                answer.text,
                answer.fields,
                if answer.degraded { " degraded" } else { "" }
            ),
            Outcome::Error(failure) => format!("error {:?}", failure.message),
            other => format!("{:?}", other.kind()),
        };
        let shown = shown.replace(&self.dir.display().to_string(), "$DIR");
        self.print(format!("answer {number}: {shown}"));
    }

    /// The client closes its stream (unless the session ended first);
    /// every message still to come is printed.
    async fn finish(&mut self) {
        self.close().await;
        let mut left: Vec<Value> = self.events.drain(..).collect();
        while let Some(message) = self.next().await {
            left.push(message);
        }
        for message in left {
            self.labels.learn(&message);
            let shown = self.show(&message);
            self.print(format!("left over: {shown}"));
        }
    }

    /// Shuts the client's side down: the server reads the end of its
    /// stream.
    async fn close(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.get_mut().shutdown().await;
        }
    }

    fn substitute(&self, text: &str) -> String {
        let mut result = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('$') {
            result.push_str(&rest[..start]);
            let token: String = rest[start + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            result.push_str(&self.resolve(&token));
            rest = &rest[start + 1 + token.len()..];
        }
        result.push_str(rest);
        result
    }

    fn resolve(&self, token: &str) -> String {
        if token == "SCRIPT" {
            return self.script.display().to_string();
        }
        if token == "frame" {
            return self.last["stackTrace"]["stackFrames"][0]["id"].to_string();
        }
        if let Some(label) = token.strip_prefix('T')
            && let Ok(index) = label.parse::<usize>()
        {
            return self.labels.threads[index - 1].to_string();
        }
        if let Some(name) = token.strip_prefix("var.") {
            let variables = self.last["variables"]["variables"]
                .as_array()
                .expect("a variables response");
            let variable = variables
                .iter()
                .find(|variable| variable["name"] == name)
                .unwrap_or_else(|| panic!("no variable {name}"));
            return variable["variablesReference"].to_string();
        }
        let scopes = self.last["scopes"]["scopes"]
            .as_array()
            .unwrap_or_else(|| panic!("`${token}` needs a scopes response"));
        let scope = scopes
            .iter()
            .find(|scope| scope["name"] == token)
            .unwrap_or_else(|| panic!("no scope {token}"));
        scope["variablesReference"].to_string()
    }

    /// `value` as canonical JSON (keys sorted), normalised.
    fn show(&mut self, value: &Value) -> String {
        if value.is_null() {
            return String::new();
        }
        let normal = self.labels.normalise(None, value);
        let text = serde_json::to_string(&canonical(&normal)).expect("JSON");
        text.replace(&self.dir.display().to_string(), "$DIR")
    }

    fn print(&mut self, line: String) {
        self.out.push_str(&line);
        self.out.push('\n');
    }
}

/// Stable names for the ids a session hands out.
#[derive(Default)]
struct Labels {
    /// Thread ids in the order they first appeared: `T1`, `T2`..
    threads: Vec<u64>,
    frames: Vec<i64>,
    references: Vec<i64>,
    breakpoints: Vec<i64>,
}

impl Labels {
    fn thread(&mut self, id: u64) -> String {
        let index = match self.threads.iter().position(|known| *known == id) {
            Some(index) => index,
            None => {
                self.threads.push(id);
                self.threads.len() - 1
            }
        };
        format!("T{}", index + 1)
    }

    fn numbered(list: &mut Vec<i64>, prefix: &str, id: i64) -> String {
        let index = match list.iter().position(|known| *known == id) {
            Some(index) => index,
            None => {
                list.push(id);
                list.len() - 1
            }
        };
        format!("{prefix}{}", index + 1)
    }

    /// Thread ids of events and `threads` responses are learnt as they come.
    fn learn(&mut self, message: &Value) {
        if let Some(id) = message["body"]["threadId"].as_u64() {
            self.thread(id);
        }
    }

    fn learn_threads(&mut self, command: &str, body: &Value) {
        if command == "threads"
            && let Some(threads) = body["threads"].as_array()
        {
            for thread in threads {
                if let Some(id) = thread["id"].as_u64() {
                    self.thread(id);
                }
            }
        }
    }

    fn normalise(&mut self, key: Option<&str>, value: &Value) -> Value {
        match value {
            Value::Object(object) => {
                let mut normal = serde_json::Map::new();
                for (name, field) in object {
                    if name == "seq" {
                        continue;
                    }
                    let field = match (key, name.as_str(), field) {
                        (_, "threadId", Value::Number(id)) => {
                            json!(self.thread(id.as_u64().expect("a thread id")))
                        }
                        (Some("threads"), "id", Value::Number(id)) => {
                            json!(self.thread(id.as_u64().expect("a thread id")))
                        }
                        (Some("threads"), "name", Value::String(text)) => {
                            json!(self.thread_name(text))
                        }
                        (Some("stackFrames"), "id", Value::Number(id)) => json!(Labels::numbered(
                            &mut self.frames,
                            "frame-",
                            id.as_i64().expect("a frame id")
                        )),
                        (Some("breakpoints"), "id", Value::Number(id)) => json!(Labels::numbered(
                            &mut self.breakpoints,
                            "bp-",
                            id.as_i64().expect("a breakpoint id")
                        )),
                        (_, "variablesReference", Value::Number(id)) if id.as_i64() != Some(0) => {
                            json!(Labels::numbered(
                                &mut self.references,
                                "ref-",
                                id.as_i64().expect("a reference")
                            ))
                        }
                        (_, "hitBreakpointIds", Value::Array(ids)) => Value::Array(
                            ids.iter()
                                .map(|id| {
                                    json!(Labels::numbered(
                                        &mut self.breakpoints,
                                        "bp-",
                                        id.as_i64().expect("a breakpoint id")
                                    ))
                                })
                                .collect(),
                        ),
                        _ => self.normalise(Some(name), field),
                    };
                    normal.insert(name.clone(), field);
                }
                Value::Object(normal)
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.normalise(key, item)).collect())
            }
            other => other.clone(),
        }
    }

    /// `ingest #7 (medium)` as `ingest #T1 (medium)`.
    fn thread_name(&mut self, name: &str) -> String {
        let Some((pipeline, rest)) = name.split_once(" #") else {
            return name.to_owned();
        };
        let Some((id, priority)) = rest.split_once(' ') else {
            return name.to_owned();
        };
        match id.parse::<u64>() {
            Ok(id) => format!("{pipeline} #{} {priority}", self.thread(id)),
            Err(_) => name.to_owned(),
        }
    }
}

/// Keys sorted at every level, whatever map serde_json was built with.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            let sorted: BTreeMap<&String, Value> = object
                .iter()
                .map(|(name, field)| (name, canonical(field)))
                .collect();
            let mut normal = serde_json::Map::new();
            for (name, field) in sorted {
                normal.insert(name.clone(), field);
            }
            Value::Object(normal)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}
