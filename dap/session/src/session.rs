//! The session actor: one task owns the session's state (who is attached,
//! which threads were announced, the ids of frames and variables handed to
//! the client) and reads a closed enum of commands. Responses and events
//! leave through one channel, in order.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use spindle_kernel::{Kernel, KernelEvent};
use spindle_scheduler::{RequestEventKind, RequestId};
use spindle_scripting::{DebugEvent, Stop, VariablesRef};
use tokio::sync::{broadcast, mpsc};

use crate::protocol::{self, Request};
use crate::to_dap;

/// How a session was started: the client launched the graph (disconnect
/// ends it unless told otherwise) or attached to a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionMode {
    Launch,
    #[default]
    Attach,
}

#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// When set, `launch`/`attach` must carry this `token` (a debug port).
    pub token: Option<String>,
}

/// A message for the client (without `seq`: the transport numbers them).
pub type Outgoing = Value;

enum Command {
    /// A message from the client.
    Message(Value),
    /// Bytes from the client that are not a DAP message.
    Malformed(String),
    /// The kernel has ended (a `terminate`, a signal, its last service).
    KernelEnded,
}

/// A handle to a running session; dropping it ends the session.
#[derive(Debug, Clone)]
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
}

impl Session {
    /// Starts a session on `kernel`; its messages come out of the
    /// receiver, which ends when the session does (after `disconnect`, or
    /// when every handle is dropped).
    pub fn start(
        kernel: Kernel,
        config: SessionConfig,
    ) -> (Session, mpsc::UnboundedReceiver<Outgoing>) {
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let (outgoing, outgoing_receiver) = mpsc::unbounded_channel();
        // Tells the session when the kernel ends; a weak sender, so that
        // the session still ends when every handle is dropped.
        let ended = commands.downgrade();
        let watched = kernel.clone();
        tokio::spawn(async move {
            let _ = watched.wait().await;
            if let Some(commands) = ended.upgrade() {
                let _ = commands.send(Command::KernelEnded);
            }
        });
        let state = State {
            requests: kernel.subscribe(true),
            debug_events: kernel.debug_events(),
            kernel,
            config,
            out: outgoing,
            attached: false,
            announced: HashSet::new(),
            stops: HashMap::new(),
            frames: HashMap::new(),
            references: HashMap::new(),
            next_id: 0,
            malformed: 0,
            ended: false,
            after_response: Vec::new(),
        };
        tokio::spawn(state.run(command_receiver));
        (Session { commands }, outgoing_receiver)
    }

    /// A message from the client.
    pub fn send(&self, message: Value) {
        let _ = self.commands.send(Command::Message(message));
    }

    /// Bytes from the client that were not a DAP message: answered with an
    /// error response and counted.
    pub fn malformed(&self, problem: String) {
        let _ = self.commands.send(Command::Malformed(problem));
    }
}

pub(crate) struct State {
    pub kernel: Kernel,
    pub config: SessionConfig,
    out: mpsc::UnboundedSender<Outgoing>,
    requests: spindle_kernel::KernelSubscription,
    debug_events: Option<broadcast::Receiver<DebugEvent>>,
    pub attached: bool,
    /// Threads the client was told about.
    announced: HashSet<u64>,
    /// The last stop of each stopped request.
    pub stops: HashMap<u64, Stop>,
    /// Frame ids handed out: (request, level).
    pub frames: HashMap<i64, (RequestId, u32)>,
    /// Variables references handed out: (request, the core's reference).
    pub references: HashMap<i64, (RequestId, VariablesRef)>,
    next_id: i64,
    malformed: u64,
    pub ended: bool,
    /// Events that must follow the current response (`initialized`).
    pub after_response: Vec<Value>,
}

impl State {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Message(message)) => self.message(message).await,
                    Some(Command::Malformed(problem)) => {
                        self.malformed += 1;
                        let text = format!(
                            "malformed message #{} ignored: {problem}; send Content-Length framed JSON requests",
                            self.malformed
                        );
                        self.send(protocol::error_response(0, "", &text));
                    }
                    Some(Command::KernelEnded) => {
                        self.send(protocol::event("terminated", Value::Null));
                        break;
                    }
                    None => break,
                },
                event = self.requests.recv() => match event {
                    Some(event) => self.kernel_event(event),
                    None => {
                        self.send(protocol::event("terminated", Value::Null));
                        break;
                    }
                },
                event = next_debug_event(&mut self.debug_events) => self.debug_event(event),
            }
            if self.ended {
                break;
            }
        }
        if self.attached {
            let _ = self.kernel.debug_detach().await;
        }
    }

    pub(crate) fn send(&self, message: Value) {
        let _ = self.out.send(message);
    }

    pub(crate) fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    async fn message(&mut self, message: Value) {
        let request = match Request::from_json(&message) {
            Ok(request) => request,
            Err(error) => {
                self.malformed += 1;
                let seq = message.get("seq").and_then(Value::as_i64).unwrap_or(0);
                self.send(protocol::error_response(seq, "", &error.to_string()));
                return;
            }
        };
        let reply = crate::handlers::handle(self, &request).await;
        match reply {
            Ok(body) => self.send(protocol::response(&request, body)),
            Err(text) => self.send(protocol::error_response(
                request.seq,
                &request.command,
                &text,
            )),
        }
        for event in std::mem::take(&mut self.after_response) {
            self.send(event);
        }
    }

    /// Announces a thread once.
    pub(crate) fn announce(&mut self, id: u64) {
        if self.attached && self.announced.insert(id) {
            self.send(protocol::event(
                "thread",
                json!({ "reason": "started", "threadId": id }),
            ));
        }
    }

    fn kernel_event(&mut self, event: KernelEvent) {
        let KernelEvent::Request(event) = event else {
            return;
        };
        match event.kind {
            RequestEventKind::Started => self.announce(event.id.0),
            RequestEventKind::Answered(_) => {
                self.forget(event.id.0);
                if self.announced.remove(&event.id.0) {
                    self.send(protocol::event(
                        "thread",
                        json!({ "reason": "exited", "threadId": event.id.0 }),
                    ));
                }
            }
            _ => {}
        }
    }

    /// Forgets the frames and references of a request that runs again.
    pub(crate) fn forget(&mut self, id: u64) {
        self.stops.remove(&id);
        self.frames.retain(|_, (request, _)| request.0 != id);
        self.references.retain(|_, (request, _)| request.0 != id);
    }

    fn debug_event(&mut self, event: Option<DebugEvent>) {
        let Some(event) = event else { return };
        if !self.attached {
            return;
        }
        match event {
            DebugEvent::Stopped(stop) => {
                self.announce(stop.request_id);
                self.send(protocol::event("stopped", to_dap::stopped(&stop)));
                self.stops.insert(stop.request_id, stop);
            }
            DebugEvent::Continued { request_id } => {
                self.forget(request_id);
                self.send(protocol::event(
                    "continued",
                    json!({ "threadId": request_id, "allThreadsContinued": false }),
                ));
            }
            DebugEvent::Output(output) => {
                let mut body = json!({
                    "category": to_dap::output_category(output.category),
                    "output": output.text,
                });
                if !output.file.is_empty() {
                    body["source"] = to_dap::source(&output.file);
                    body["line"] = json!(output.line);
                }
                self.send(protocol::event("output", body));
            }
        }
    }
}

async fn next_debug_event(
    events: &mut Option<broadcast::Receiver<DebugEvent>>,
) -> Option<DebugEvent> {
    let Some(receiver) = events else {
        return std::future::pending().await;
    };
    loop {
        match receiver.recv().await {
            Ok(event) => return Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => {
                *events = None;
                return std::future::pending().await;
            }
        }
    }
}
