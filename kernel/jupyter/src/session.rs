//! The shell session: one task that owns the execution count, the history
//! and the names of cells, and handles shell requests one at a time in
//! the order they arrive (Jupyter's execution model), each between a
//! `busy` and an `idle` status on iopub, its reply sent to the client that
//! asked. A cell runs on the kernel's script host; while it runs, the
//! session forwards its output (streams in batches, displays, input
//! requests) and flushes its streams every 50 ms.

use std::sync::Arc;
use std::time::Duration;

use jupyter_zmq_client::Connection;
use serde_json::Value;
use spindle_scripting::{
    CellAnswer, CellEvent, CellRequest, CellStreams, NotebookJob, cell_completeness,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::cell_path;
use crate::effects::NotebookEffects;
use crate::history::History;
use crate::shared::{PendingInput, Shared, ShutdownAsked, lock};
use crate::to_proto::{self, CellNames};
use crate::wire::{self, Incoming};

/// How often a running cell's buffered output is sent.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub shell: Connection<zeromq::RouterSocket>,
    pub stdin: mpsc::UnboundedSender<jupyter_protocol::JupyterMessage>,
    pub effects: Arc<NotebookEffects>,
    pub history: History,
    pub execution_count: u32,
    pub names: CellNames,
}

impl Session {
    /// Serves shell requests until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let multipart = tokio::select! {
                _ = stop.cancelled() => return,
                received = zeromq::SocketRecv::recv(&mut self.shell.socket) => received,
            };
            let multipart = match multipart {
                Ok(multipart) => multipart,
                Err(error) => {
                    tracing::warn!("shell: cannot receive: {error}");
                    continue;
                }
            };
            match wire::parse(multipart, &self.shell.mac) {
                Ok(request) => self.handle(request).await,
                Err(refused) => {
                    tracing::warn!("shell: refused a message ({refused}); it was not executed");
                }
            }
        }
    }

    async fn handle(&mut self, request: Incoming) {
        self.shared.status(&request, "busy");
        let reply = match request.msg_type() {
            "kernel_info_request" => Some(to_proto::kernel_info_reply(&self.shared.banner)),
            "execute_request" => Some(self.execute(&request).await),
            "complete_request" => Some(self.complete(&request).await),
            "inspect_request" => Some(self.inspect(&request).await),
            "is_complete_request" => Some(to_proto::is_complete_reply(cell_completeness(
                request.str_field("code"),
            ))),
            "history_request" => Some(to_proto::history_reply(
                self.history.answer(&request.content),
            )),
            "comm_info_request" => Some(to_proto::comm_info_reply()),
            "shutdown_request" => {
                let restart = request.bool_field("restart", false);
                let _ = self.shared.shutdown.send(Some(ShutdownAsked { restart }));
                Some(to_proto::shutdown_reply(restart))
            }
            // Spindle opens no comms; messages on them are dropped.
            "comm_open" | "comm_msg" | "comm_close" => None,
            other if other.ends_with("_request") => Some(to_proto::unsupported_reply(
                other,
                "see docs/jupyter.md for what the kernel serves",
            )),
            other => {
                tracing::debug!("shell: ignored a `{other}` message");
                None
            }
        };
        if let Some(content) = reply {
            let reply_type = request.msg_type().replace("_request", "_reply");
            let message = wire::child(&request, &reply_type, content);
            if let Err(error) = self.shell.send(message).await {
                // The client went away; the kernel goes on.
                tracing::debug!("shell: cannot send the {reply_type}: {error}");
            }
        }
        self.shared.status(&request, "idle");
    }

    async fn execute(&mut self, request: &Incoming) -> Value {
        let code = request.str_field("code").to_owned();
        let silent = request.bool_field("silent", false);
        let store_history = request.bool_field("store_history", true) && !silent;
        let allow_stdin = request.bool_field("allow_stdin", true);
        let user_expressions: Vec<(String, String)> = request
            .content
            .get("user_expressions")
            .and_then(Value::as_object)
            .map(|expressions| {
                expressions
                    .iter()
                    .filter_map(|(name, code)| Some((name.clone(), code.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        if store_history {
            self.execution_count += 1;
        }
        let count = self.execution_count;
        if !silent {
            self.shared.publish(
                request,
                "execute_input",
                to_proto::execute_input(&code, count),
            );
        }
        let path = cell_path::cell_path(&self.shared.cell_dir, &code);
        cell_path::write_cell(&path, &code);
        self.names.insert(path.clone(), count);

        let (event_sender, mut events) = mpsc::unbounded_channel::<CellEvent>();
        let streams = CellStreams::new(Arc::new(move |event| {
            let _ = event_sender.send(event);
        }));
        let (answer_sender, mut answer) = oneshot::channel::<CellAnswer>();
        *lock(&self.shared.executing) = Some(streams.clone());
        self.shared.kernel.notebook(NotebookJob::Execute {
            cell: CellRequest {
                code: code.clone(),
                path,
                allow_stdin,
                user_expressions,
            },
            effects: self.effects.clone(),
            streams: streams.clone(),
            reply: Box::new(move |cell_answer| {
                let _ = answer_sender.send(cell_answer);
            }),
        });
        let mut flush =
            tokio::time::interval_at(tokio::time::Instant::now() + FLUSH_EVERY, FLUSH_EVERY);
        // `s.help`'s texts, for the reply's pager payload.
        let mut pages = Vec::new();
        let answer = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => self.forward(request, event, allow_stdin, &mut pages),
                answer = &mut answer => break answer,
                _ = flush.tick() => streams.flush(),
            }
        };
        // Everything the cell sent before its answer.
        while let Ok(event) = events.try_recv() {
            self.forward(request, event, allow_stdin, &mut pages);
        }
        lock(&self.shared.executing).take();
        lock(&self.shared.pending_input).take();
        let answer = answer.unwrap_or_else(|_| CellAnswer {
            outcome: Err(spindle_scripting::CellError {
                kind: spindle_scripting::CellErrorKind::Runtime,
                message: "the script host stopped while the cell ran".to_owned(),
                file: None,
                line: 0,
                traceback: Vec::new(),
            }),
            user_expressions: Vec::new(),
        });
        match &answer.outcome {
            Ok(values) => {
                let shown: Vec<_> = values.to_vec();
                let output = (!shown.is_empty()
                    && !shown.iter().all(|v| *v == spindle_scripting::Data::Nil))
                .then(|| {
                    shown
                        .iter()
                        .map(crate::render::plain)
                        .collect::<Vec<_>>()
                        .join("\t")
                });
                if !silent && output.is_some() {
                    self.shared.publish(
                        request,
                        "execute_result",
                        to_proto::execute_result(&shown, count),
                    );
                }
                if store_history {
                    self.history.record(i64::from(count), &code, output);
                }
                to_proto::execute_reply_ok(count, &answer.user_expressions, &self.names, &pages)
            }
            Err(error) => {
                let fields = to_proto::error_fields(error, &self.names);
                self.shared
                    .publish(request, "error", Value::Object(fields.clone()));
                if store_history {
                    self.history.record(i64::from(count), &code, None);
                }
                to_proto::execute_reply_error(count, &fields, &pages)
            }
        }
    }

    /// Sends a cell's event to the clients; a page waits in `pages` for the
    /// execute reply.
    fn forward(
        &mut self,
        request: &Incoming,
        event: CellEvent,
        allow_stdin: bool,
        pages: &mut Vec<String>,
    ) {
        match event {
            CellEvent::Stream { name, text } => {
                self.shared
                    .publish(request, "stream", to_proto::stream(name, &text));
            }
            CellEvent::Display {
                value,
                display_id,
                update,
            } => {
                let msg_type = if update {
                    "update_display_data"
                } else {
                    "display_data"
                };
                self.shared.publish(
                    request,
                    msg_type,
                    to_proto::display_data(&value, display_id.as_deref()),
                );
            }
            CellEvent::ClearOutput { wait } => {
                self.shared
                    .publish(request, "clear_output", to_proto::clear_output(wait));
            }
            CellEvent::Page { text } => pages.push(text),
            CellEvent::Input {
                prompt,
                password,
                reply,
            } => {
                if !allow_stdin {
                    reply(Err("this front end does not take input".to_owned()));
                    return;
                }
                *lock(&self.shared.pending_input) = Some(PendingInput {
                    asker: request.identities.first().cloned(),
                    reply,
                });
                let message = wire::child(
                    request,
                    "input_request",
                    to_proto::input_request(&prompt, password),
                );
                let _ = self.stdin.send(message);
            }
        }
    }

    async fn complete(&self, request: &Incoming) -> Value {
        let code = request.str_field("code").to_owned();
        let cursor = request
            .int_field("cursor_pos")
            .map_or(code.chars().count(), |cursor| cursor.max(0) as usize);
        let (sender, receiver) = oneshot::channel();
        self.shared.kernel.notebook(NotebookJob::Complete {
            code,
            cursor,
            reply: Box::new(move |completion| {
                let _ = sender.send(completion);
            }),
        });
        let completion = receiver.await.unwrap_or_default();
        to_proto::complete_reply(&completion)
    }

    async fn inspect(&self, request: &Incoming) -> Value {
        let code = request.str_field("code").to_owned();
        let cursor = request
            .int_field("cursor_pos")
            .map_or(code.chars().count(), |cursor| cursor.max(0) as usize);
        let (sender, receiver) = oneshot::channel();
        self.shared.kernel.notebook(NotebookJob::Inspect {
            code,
            cursor,
            reply: Box::new(move |found| {
                let _ = sender.send(found);
            }),
        });
        let found = receiver.await.ok().flatten();
        to_proto::inspect_reply(found.as_ref())
    }
}
