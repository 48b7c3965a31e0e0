//! The kernel's five sockets, bound as a connection file says (port 0:
//! a free port, written back into the connection), and every socket
//! option the front end sets: the only file that touches sockets below
//! the ZeroMQ crate.
//!
//! Latency: the ZeroMQ crate already turns Nagle's algorithm off
//! (`TCP_NODELAY`) on every TCP connection it makes or accepts, which is
//! what a request/reply protocol of small messages needs; see
//! `docs/jupyter.md` for the measured tail and its cause.

use jupyter_zmq_client::{Connection, ConnectionInfo, KernelHeartbeatConnection};
use zeromq::{Endpoint, Socket};

use crate::error::JupyterError;

/// The five bound sockets and the connection that reaches them.
pub(crate) struct BoundSockets {
    pub info: ConnectionInfo,
    pub shell: Connection<zeromq::RouterSocket>,
    pub control: Connection<zeromq::RouterSocket>,
    pub stdin: Connection<zeromq::RouterSocket>,
    pub iopub: Connection<zeromq::PubSocket>,
    pub heartbeat: KernelHeartbeatConnection,
}

/// Binds every socket of `info` (on its ip); ports that are 0 are picked
/// by the system and written into the returned connection.
pub(crate) async fn bind(
    info: &ConnectionInfo,
    session: &str,
) -> Result<BoundSockets, JupyterError> {
    let mut info = info.clone();
    let (shell, port) = bind_one(
        zeromq::RouterSocket::new(),
        "shell",
        &info.ip,
        info.shell_port,
    )
    .await?;
    info.shell_port = port;
    let (control, port) = bind_one(
        zeromq::RouterSocket::new(),
        "control",
        &info.ip,
        info.control_port,
    )
    .await?;
    info.control_port = port;
    let (stdin, port) = bind_one(
        zeromq::RouterSocket::new(),
        "stdin",
        &info.ip,
        info.stdin_port,
    )
    .await?;
    info.stdin_port = port;
    let (iopub, port) =
        bind_one(zeromq::PubSocket::new(), "iopub", &info.ip, info.iopub_port).await?;
    info.iopub_port = port;
    let (heartbeat, port) = bind_one(
        zeromq::RepSocket::new(),
        "heartbeat",
        &info.ip,
        info.hb_port,
    )
    .await?;
    info.hb_port = port;
    Ok(BoundSockets {
        shell: Connection::new(shell, &info.key, session),
        control: Connection::new(control, &info.key, session),
        stdin: Connection::new(stdin, &info.key, session),
        iopub: Connection::new(iopub, &info.key, session),
        heartbeat: KernelHeartbeatConnection { socket: heartbeat },
        info,
    })
}

async fn bind_one<S: Socket>(
    mut socket: S,
    channel: &'static str,
    ip: &str,
    port: u16,
) -> Result<(S, u16), JupyterError> {
    let endpoint = format!("tcp://{ip}:{port}");
    let bound = socket
        .bind(&endpoint)
        .await
        .map_err(|error| JupyterError::Bind {
            channel,
            endpoint: endpoint.clone(),
            reason: error.to_string(),
        })?;
    let port = match bound {
        Endpoint::Tcp(_, port) => port,
        other => {
            return Err(JupyterError::Bind {
                channel,
                endpoint,
                reason: format!("bound to {other}, not a TCP port"),
            });
        }
    };
    Ok((socket, port))
}
