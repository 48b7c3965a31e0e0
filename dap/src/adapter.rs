//! `spindle dap`: the adapter a DAP client starts. `launch` runs
//! `spindle run PROGRAM --debug-port 0 --http ADDR` (with the client's
//! args, env and cwd), connects to its debug port with the token it wrote,
//! and from then on relays messages both ways; `attach` connects to a
//! running `spindle run --debug-port`. The graph's output comes back as
//! `output` events. `restart` relaunches and replays the breakpoints;
//! `disconnect` stops a launched graph unless `terminateDebuggee` is false
//! (an attached one always keeps serving).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};
use spindle_dap_session::protocol::{self, Request};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::transport::{Frame, FrameReader, FrameWriter};

/// Seq numbers of the requests the adapter sends the graph itself; their
/// responses are not relayed.
const OWN_SEQ: i64 = 1 << 40;

enum Event {
    Client(Frame),
    ClientClosed,
    Graph(u64, Value),
    GraphClosed(u64),
    GraphOutput(u64, &'static str, String),
    Signal,
}

struct Graph {
    generation: u64,
    child: Option<Child>,
    writer: Option<FrameWriter<OwnedWriteHalf>>,
    /// Requests from the client waiting for the connection.
    queued: Vec<Value>,
    /// The client's requests handed to the graph (sent or queued) and not
    /// answered yet, by seq: if the graph goes first, the adapter answers
    /// them, so that every request gets its one answer.
    unanswered: Vec<(i64, String)>,
    /// The launch or attach request and whether its answer is relayed.
    opening: Option<(Value, bool)>,
    /// Started by `restart`: the client already had its `initialized`.
    restarted: bool,
    token: Option<String>,
}

struct Adapter<W> {
    client: FrameWriter<W>,
    spindle: PathBuf,
    events: mpsc::UnboundedSender<Event>,
    graph: Option<Graph>,
    generation: u64,
    launched: bool,
    launch_request: Option<Value>,
    /// The last configuration requests, replayed after a restart.
    configuration: HashMap<String, Value>,
    own_seq: i64,
    pending_restart: Option<Request>,
    /// A `restart` answered once the new graph has answered the last
    /// replayed configuration request (its own seq): a request sent after
    /// the answer meets the replayed breakpoints.
    restart_answer: Option<(i64, Request)>,
    /// Whether the `disconnect` in flight ends a launched graph.
    stop_on_disconnect: bool,
    /// The client was told `terminated` for the current graph.
    terminated: bool,
    done: bool,
}

/// Runs the adapter on a client's stream until it disconnects.
pub async fn run_adapter<R, W>(reader: R, writer: W, spindle: PathBuf)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (events, mut receiver) = mpsc::unbounded_channel();
    let client_events = events.clone();
    tokio::spawn(async move {
        let mut reader = FrameReader::new(reader);
        loop {
            match reader.read().await {
                Ok(Some(frame)) => {
                    let _ = client_events.send(Event::Client(frame));
                }
                Ok(None) | Err(_) => {
                    let _ = client_events.send(Event::ClientClosed);
                    break;
                }
            }
        }
    });
    let signal_events = events.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            terminate.recv().await;
            let _ = signal_events.send(Event::Signal);
        }
    });
    let mut adapter = Adapter {
        client: FrameWriter::new(writer),
        spindle,
        events,
        graph: None,
        generation: 0,
        launched: false,
        launch_request: None,
        configuration: HashMap::new(),
        own_seq: OWN_SEQ,
        pending_restart: None,
        restart_answer: None,
        stop_on_disconnect: false,
        terminated: false,
        done: false,
    };
    while let Some(event) = receiver.recv().await {
        adapter.handle(event).await;
        if adapter.done {
            break;
        }
    }
    adapter.stop_graph(adapter.launched).await;
}

impl<W: AsyncWrite + Unpin> Adapter<W> {
    async fn send(&mut self, message: Value) {
        let _ = self.client.write(message).await;
    }

    async fn output(&mut self, category: &str, text: String) {
        self.send(protocol::event(
            "output",
            json!({ "category": category, "output": text }),
        ))
        .await;
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Client(Frame::Malformed(problem)) => {
                let text = format!("malformed message ignored: {problem}");
                self.send(protocol::error_response(0, "", &text)).await;
            }
            Event::Client(Frame::Message(message)) => self.on_client_message(message).await,
            Event::ClientClosed | Event::Signal => self.done = true,
            Event::Graph(generation, message) if self.is_current(generation) => {
                self.on_graph_message(message).await;
            }
            Event::GraphOutput(generation, category, line) if self.is_current(generation) => {
                if let Some(address) = line.strip_prefix("spindle: debugger listening on ") {
                    self.connect_launched(address).await;
                }
                self.output(category, format!("{line}\n")).await;
            }
            Event::GraphClosed(generation) if self.is_current(generation) => {
                if let Some(graph) = &mut self.graph
                    && let Some((request, _)) = graph.opening.take()
                {
                    let seq = request["seq"].as_i64().unwrap_or(0);
                    let command = request["command"].as_str().unwrap_or("launch").to_owned();
                    self.send(protocol::error_response(
                        seq,
                        &command,
                        "the graph ended before its debug port answered; see the output above",
                    ))
                    .await;
                }
                if let Some(graph) = self.graph.take() {
                    self.answer_for(graph).await;
                }
                if self.pending_restart.is_none() && !self.terminated {
                    self.terminated = true;
                    self.send(protocol::event("terminated", Value::Null)).await;
                }
            }
            _ => {}
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.graph
            .as_ref()
            .is_some_and(|graph| graph.generation == generation)
    }

    async fn on_client_message(&mut self, message: Value) {
        let request = match Request::from_json(&message) {
            Ok(request) => request,
            Err(error) => {
                let seq = message["seq"].as_i64().unwrap_or(0);
                self.send(protocol::error_response(seq, "", &error.to_string()))
                    .await;
                return;
            }
        };
        match request.command.as_str() {
            "initialize" => {
                self.send(protocol::response(&request, protocol::capabilities()))
                    .await;
            }
            "launch" => {
                self.launched = true;
                self.launch_request = Some(message.clone());
                if let Err(text) = self.launch(&message, true) {
                    self.send(protocol::error_response(request.seq, "launch", &text))
                        .await;
                }
            }
            "attach" => {
                if let Err(text) = self.attach(&message).await {
                    self.send(protocol::error_response(request.seq, "attach", &text))
                        .await;
                }
            }
            "restart" => self.restart(request).await,
            "disconnect" => {
                let terminate = request.arguments["terminateDebuggee"].as_bool();
                let stop = self.launched && terminate != Some(false);
                self.stop_on_disconnect = stop;
                let mut forwarded = message.clone();
                forwarded["arguments"]["terminateDebuggee"] = json!(stop);
                if self
                    .graph
                    .as_ref()
                    .is_some_and(|graph| graph.writer.is_some())
                {
                    self.send_to_graph(forwarded).await;
                } else {
                    self.send(protocol::response(&request, Value::Null)).await;
                }
                if !stop {
                    // Detached: the graph keeps serving after we exit.
                    if let Some(graph) = &mut self.graph {
                        graph.child = None;
                    }
                }
            }
            command => {
                if matches!(
                    command,
                    "setBreakpoints"
                        | "setFunctionBreakpoints"
                        | "setExceptionBreakpoints"
                        | "configurationDone"
                ) {
                    let key = match command {
                        "setBreakpoints" => format!(
                            "setBreakpoints {}",
                            request.arguments["source"]["path"].as_str().unwrap_or("")
                        ),
                        other => other.to_owned(),
                    };
                    self.configuration.insert(key, message.clone());
                }
                if self.graph.is_none() {
                    let text =
                        format!("`{command}` before `launch` or `attach`: start the session first");
                    self.send(protocol::error_response(request.seq, command, &text))
                        .await;
                } else {
                    self.send_to_graph(message).await;
                }
            }
        }
    }

    /// Starts `spindle run` on the launch request's program.
    fn launch(&mut self, request: &Value, relay_answer: bool) -> Result<(), String> {
        let arguments = &request["arguments"];
        let program = arguments["program"]
            .as_str()
            .ok_or("launch needs `program`: the graph script to run")?;
        let http = arguments["http"].as_str().unwrap_or("127.0.0.1:0");
        let mut command = Command::new(&self.spindle);
        command
            .arg("run")
            .arg(program)
            .args(["--debug-port", "0", "--http", http])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(args) = arguments["args"].as_array() {
            command.args(args.iter().filter_map(Value::as_str));
        }
        if let Some(env) = arguments["env"].as_object() {
            for (name, value) in env {
                match value.as_str() {
                    Some(value) => command.env(name, value),
                    None => command.env_remove(name),
                };
            }
        }
        if let Some(cwd) = arguments["cwd"].as_str() {
            command.current_dir(cwd);
        }
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", self.spindle.display()))?;
        self.generation += 1;
        self.terminated = false;
        let generation = self.generation;
        for (pipe, category) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>),
                "stdout",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>),
                "console",
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let events = self.events.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = events.send(Event::GraphOutput(generation, category, line));
                }
                if category == "console" {
                    let _ = events.send(Event::GraphClosed(generation));
                }
            });
        }
        self.graph = Some(Graph {
            generation,
            child: Some(child),
            writer: None,
            queued: Vec::new(),
            unanswered: Vec::new(),
            opening: Some((request.clone(), relay_answer)),
            restarted: !relay_answer,
            token: None,
        });
        Ok(())
    }

    /// The launched graph printed its debug port: connect.
    async fn connect_launched(&mut self, line: &str) {
        // "127.0.0.1:PORT, token in PATH"
        let Some((address, token_file)) = line.split_once(", token in ") else {
            return;
        };
        let token = std::fs::read_to_string(token_file.trim())
            .map(|token| token.trim().to_owned())
            .ok();
        if let Some(graph) = &mut self.graph {
            graph.token = token;
        }
        if let Err(text) = self.connect(address.trim()).await {
            self.output("console", format!("spindle dap: {text}\n"))
                .await;
        }
    }

    async fn attach(&mut self, request: &Value) -> Result<(), String> {
        let arguments = &request["arguments"];
        let port = arguments["port"]
            .as_u64()
            .ok_or("attach needs `port`: the debug port `spindle run --debug-port` printed")?;
        let token = match (arguments["token"].as_str(), arguments["tokenFile"].as_str()) {
            (Some(token), _) => Some(token.to_owned()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|error| format!("cannot read the token file {file}: {error}"))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        self.generation += 1;
        self.terminated = false;
        self.graph = Some(Graph {
            generation: self.generation,
            child: None,
            writer: None,
            queued: Vec::new(),
            unanswered: Vec::new(),
            opening: Some((request.clone(), true)),
            restarted: false,
            token,
        });
        self.connect(&format!("127.0.0.1:{port}")).await
    }

    async fn connect(&mut self, address: &str) -> Result<(), String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to the debug port {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let generation = self.generation;
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(reader);
            while let Ok(Some(frame)) = reader.read().await {
                if let Frame::Message(message) = frame {
                    let _ = events.send(Event::Graph(generation, message));
                }
            }
            let _ = events.send(Event::GraphClosed(generation));
        });
        let Some(graph) = &mut self.graph else {
            return Ok(());
        };
        graph.writer = Some(FrameWriter::new(writer));
        let token = graph.token.clone();
        let opening = graph.opening.take();
        let queued = std::mem::take(&mut graph.queued);
        self.own_request("initialize", json!({ "adapterID": "spindle" }))
            .await;
        if let Some((mut request, relay)) = opening {
            request["arguments"]["token"] = json!(token);
            if !relay {
                self.own_seq += 1;
                request["seq"] = json!(self.own_seq);
            }
            self.send_to_graph(request).await;
        }
        for message in queued {
            self.send_to_graph(message).await;
        }
        if let Some(restart) = self.pending_restart.take() {
            // Breakpoints first, `configurationDone` last.
            let mut replay: Vec<Value> = self.configuration.values().cloned().collect();
            replay.sort_by_key(|message| message["command"] == "configurationDone");
            let replayed = !replay.is_empty();
            for mut message in replay {
                self.own_seq += 1;
                message["seq"] = json!(self.own_seq);
                self.send_to_graph(message).await;
            }
            if replayed {
                self.restart_answer = Some((self.own_seq, restart));
            } else {
                self.send(protocol::response(&restart, Value::Null)).await;
            }
        }
        Ok(())
    }

    async fn own_request(&mut self, command: &str, arguments: Value) {
        self.own_seq += 1;
        let message = json!({
            "seq": self.own_seq,
            "type": "request",
            "command": command,
            "arguments": arguments,
        });
        self.send_to_graph(message).await;
    }

    async fn send_to_graph(&mut self, message: Value) {
        let Some(graph) = &mut self.graph else { return };
        if message["type"] == "request"
            && let Some(seq) = message["seq"].as_i64().filter(|seq| *seq <= OWN_SEQ)
        {
            // Queued ones are handed over again once the graph connects.
            if !graph.unanswered.iter().any(|(waiting, _)| *waiting == seq) {
                let command = message["command"].as_str().unwrap_or("").to_owned();
                graph.unanswered.push((seq, command));
            }
        }
        match &mut graph.writer {
            Some(writer) => {
                let _ = writer.write_raw(&message).await;
            }
            None => graph.queued.push(message),
        }
    }

    async fn on_graph_message(&mut self, message: Value) {
        let own = message["type"] == "response"
            && message["request_seq"]
                .as_i64()
                .is_some_and(|seq| seq > OWN_SEQ);
        if own {
            let answered = message["request_seq"].as_i64();
            if let Some((seq, restart)) = self.restart_answer.take() {
                if answered == Some(seq) {
                    self.send(protocol::response(&restart, Value::Null)).await;
                } else {
                    self.restart_answer = Some((seq, restart));
                }
            }
            return;
        }
        // The graph's `initialized` after a restart is not news: the
        // adapter replays the configuration itself.
        let restarted = self.graph.as_ref().is_some_and(|graph| graph.restarted);
        if restarted && message["type"] == "event" && message["event"] == "initialized" {
            return;
        }
        if message["type"] == "event" && message["event"] == "terminated" {
            if self.terminated {
                return;
            }
            self.terminated = true;
        }
        let is_response = message["type"] == "response";
        let command = message["command"].as_str().unwrap_or("").to_owned();
        if is_response
            && let Some(graph) = &mut self.graph
            && let Some(seq) = message["request_seq"].as_i64()
        {
            graph.unanswered.retain(|(waiting, _)| *waiting != seq);
        }
        self.send(message).await;
        // Disconnected: the graph connection goes (and a launched graph
        // with it, unless told otherwise), but the adapter answers its
        // client until the client closes the stream: a client may send
        // `disconnect` again on its way out.
        if is_response && command == "disconnect" {
            self.stop_graph(self.stop_on_disconnect).await;
        }
    }

    async fn restart(&mut self, request: Request) {
        let Some(mut launch) = self.launch_request.clone().filter(|_| self.launched) else {
            self.send(protocol::error_response(
                request.seq,
                "restart",
                "restart works for a launched graph; an attached one is restarted where it runs",
            ))
            .await;
            return;
        };
        // The client may send the launch configuration as it is now.
        if request.arguments["arguments"].is_object() {
            launch["arguments"] = request.arguments["arguments"].clone();
            self.launch_request = Some(launch.clone());
        }
        self.pending_restart = Some(request.clone());
        self.stop_graph(true).await;
        if let Err(text) = self.launch(&launch, false) {
            self.pending_restart = None;
            self.send(protocol::error_response(request.seq, "restart", &text))
                .await;
        }
    }

    /// Ends the launched graph (SIGTERM, then waits) when `stop`.
    async fn stop_graph(&mut self, stop: bool) {
        if let Some((_, restart)) = self.restart_answer.take() {
            self.send(protocol::error_response(
                restart.seq,
                "restart",
                "the graph stopped before its breakpoints were set again; launch it again",
            ))
            .await;
        }
        let Some(mut graph) = self.graph.take() else {
            return;
        };
        graph.writer = None;
        if let (true, Some(child)) = (stop, graph.child.as_mut()) {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let _ = child.wait().await;
        }
        self.answer_for(graph).await;
    }

    /// Answers the client's requests that `graph`, gone, never answered: a
    /// `disconnect` as done (there is nothing left to disconnect from),
    /// anything else as failed.
    async fn answer_for(&mut self, graph: Graph) {
        for (seq, command) in graph.unanswered {
            let answer = if command == "disconnect" {
                json!({
                    "type": "response",
                    "request_seq": seq,
                    "success": true,
                    "command": command,
                })
            } else {
                protocol::error_response(
                    seq,
                    &command,
                    &format!("the graph ended before it answered `{command}`"),
                )
            };
            self.send(answer).await;
        }
    }
}
