//! The tasks of the four channels besides shell: iopub (publishes what
//! the session and control send it), heartbeat (echoes, whatever a cell
//! does), stdin (sends `input_request`s, routes `input_reply`s to the
//! waiting `io.read`), and control.
//!
//! Control is served apart from shell so that an interrupt or a shutdown
//! reaches the kernel while a cell runs. Its dispatch
//! ([`control_reply`]) is the seam for the debugger: `debug_request`
//! is answered there, and the debugger's `debug_event`s go out through
//! [`Shared::iopub`](crate::shared::Shared) as messages of that type.

use std::sync::Arc;

use jupyter_protocol::JupyterMessage;
use jupyter_zmq_client::{Connection, KernelHeartbeatConnection};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::shared::{Shared, ShutdownAsked, lock};
use crate::to_proto;
use crate::wire::{self, Incoming};

pub(crate) async fn iopub(
    mut socket: Connection<zeromq::PubSocket>,
    mut messages: mpsc::UnboundedReceiver<JupyterMessage>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            // Whatever was published before the stop still goes out.
            biased;
            message = messages.recv() => match message {
                Some(message) => message,
                None => return,
            },
            _ = stop.cancelled() => return,
        };
        if let Err(error) = socket.send(message).await {
            tracing::debug!("iopub: cannot publish: {error}");
        }
    }
}

pub(crate) async fn heartbeat(mut socket: KernelHeartbeatConnection, stop: CancellationToken) {
    use zeromq::{SocketRecv, SocketSend};
    loop {
        let ping = tokio::select! {
            _ = stop.cancelled() => return,
            ping = socket.socket.recv() => ping,
        };
        match ping {
            Ok(ping) => {
                if let Err(error) = socket.socket.send(ping).await {
                    tracing::debug!("heartbeat: cannot answer: {error}");
                }
            }
            Err(error) => tracing::debug!("heartbeat: {error}"),
        }
    }
}

pub(crate) async fn stdin(
    shared: Arc<Shared>,
    mut socket: Connection<zeromq::RouterSocket>,
    mut outgoing: mpsc::UnboundedReceiver<JupyterMessage>,
    stop: CancellationToken,
) {
    use futures_util::StreamExt;
    use zeromq::{Socket, SocketRecv};
    // Peers that go away: a cell waiting for input from one fails at once.
    let mut monitor = socket.socket.monitor();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(event) = monitor.next() => {
                if let zeromq::SocketEvent::Disconnected(peer) = event {
                    let peer = bytes::Bytes::from(peer);
                    let mut pending = lock(&shared.pending_input);
                    if pending.as_ref().is_some_and(|waiting| waiting.asker.as_ref() == Some(&peer)) {
                        let waiting = pending.take().expect("checked");
                        drop(pending);
                        (waiting.reply)(Err("the front end that was asked for input disconnected".to_owned()));
                    }
                }
            }
            message = outgoing.recv() => {
                let Some(message) = message else { return };
                if let Err(error) = socket.send(message).await {
                    // The asker is gone: its io.read fails at once.
                    tracing::debug!("stdin: cannot send an input request: {error}");
                    if let Some(waiting) = lock(&shared.pending_input).take() {
                        (waiting.reply)(Err(format!("the front end is gone ({error})")));
                    }
                }
            }
            received = socket.socket.recv() => {
                let multipart = match received {
                    Ok(multipart) => multipart,
                    Err(error) => {
                        tracing::debug!("stdin: {error}");
                        continue;
                    }
                };
                match wire::parse(multipart, &socket.mac) {
                    Ok(reply) if reply.msg_type() == "input_reply" => {
                        if let Some(waiting) = lock(&shared.pending_input).take() {
                            (waiting.reply)(Ok(reply.str_field("value").to_owned()));
                        }
                    }
                    Ok(other) => tracing::debug!("stdin: ignored a `{}`", other.msg_type()),
                    Err(refused) => tracing::warn!("stdin: refused a message ({refused})"),
                }
            }
        }
    }
}

pub(crate) async fn control(
    shared: Arc<Shared>,
    mut socket: Connection<zeromq::RouterSocket>,
    stop: CancellationToken,
) {
    use zeromq::SocketRecv;
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = socket.socket.recv() => received,
        };
        let multipart = match received {
            Ok(multipart) => multipart,
            Err(error) => {
                tracing::debug!("control: {error}");
                continue;
            }
        };
        let request = match wire::parse(multipart, &socket.mac) {
            Ok(request) => request,
            Err(refused) => {
                tracing::warn!("control: refused a message ({refused}); it was not acted on");
                continue;
            }
        };
        shared.status(&request, "busy");
        if let Some(content) = control_reply(&shared, &request) {
            let reply_type = request.msg_type().replace("_request", "_reply");
            if let Err(error) = socket
                .send(wire::child(&request, &reply_type, content))
                .await
            {
                tracing::debug!("control: cannot send the {reply_type}: {error}");
            }
        }
        shared.status(&request, "idle");
    }
}

/// The control channel's dispatch. The debugger (`debug_request`) plugs
/// in here.
fn control_reply(shared: &Shared, request: &Incoming) -> Option<Value> {
    match request.msg_type() {
        "kernel_info_request" => Some(to_proto::kernel_info_reply(&shared.banner)),
        "interrupt_request" => {
            shared.interrupt();
            Some(to_proto::interrupt_reply())
        }
        "shutdown_request" => {
            let restart = request.bool_field("restart", false);
            let _ = shared.shutdown.send(Some(ShutdownAsked { restart }));
            Some(to_proto::shutdown_reply(restart))
        }
        "debug_request" => Some(serde_json::json!({
            "type": "response",
            "request_seq": request.content.get("seq").cloned().unwrap_or(Value::from(0)),
            "success": false,
            "command": request.content.get("command").cloned().unwrap_or(Value::Null),
            "message": "the Jupyter debugger is not served yet (kernel_info says debugger: false)",
        })),
        other if other.ends_with("_request") => Some(to_proto::unsupported_reply(
            other,
            "the control channel serves kernel_info, interrupt and shutdown",
        )),
        _ => None,
    }
}
