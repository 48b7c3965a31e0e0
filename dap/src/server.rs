//! A debug session served over a transport, and the debug port of
//! `spindle run --debug-port` (loopback only; each session must present
//! the token written next to the run's logs).

use std::net::SocketAddr;

use spindle_dap_session::{Session, SessionConfig};
use spindle_kernel::Kernel;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::transport::{Frame, FrameReader, FrameWriter};

/// Serves one DAP session on `kernel` until the client disconnects or
/// the stream ends.
pub async fn serve_session<R, W>(kernel: Kernel, config: SessionConfig, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (session, mut outgoing) = Session::start(kernel, config);
    let mut writer = FrameWriter::new(writer);
    let mut writing = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if writer.write(message).await.is_err() {
                break;
            }
        }
    });
    let mut reader = FrameReader::new(reader);
    let reading = async {
        loop {
            match reader.read().await {
                Ok(Some(Frame::Message(message))) => session.send(message),
                Ok(Some(Frame::Malformed(problem))) => session.malformed(problem),
                Ok(None) | Err(_) => break,
            }
        }
    };
    // The session ends when the client's stream does (dropping the
    // handle ends it) or when it ended itself (`disconnect`), which closes
    // its outgoing channel and so the writer. A finished JoinHandle must
    // not be awaited again.
    let session_ended = tokio::select! {
        _ = reading => false,
        _ = &mut writing => true,
    };
    drop(session);
    if !session_ended {
        let _ = writing.await;
    }
}

/// A bound debug port and its token.
#[derive(Debug)]
pub struct DebugPort {
    pub listener: TcpListener,
    pub token: String,
}

impl DebugPort {
    /// Binds 127.0.0.1:`port` (0 picks one) with a fresh random token.
    pub async fn bind(port: u16) -> std::io::Result<DebugPort> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        Ok(DebugPort {
            listener,
            token: random_token()?,
        })
    }
}

/// Serves debug sessions on `port` until the kernel shuts down, each
/// connection on a task of its own: one that never presents the token (or
/// presents a wrong one) keeps nobody else waiting. Only one session is
/// attached at a time: the debugger core refuses a second `attach`.
pub async fn serve_debug_port(port: DebugPort, kernel: Kernel) {
    loop {
        let accepted = tokio::select! {
            _ = kernel.shutting_down() => break,
            accepted = port.listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let config = SessionConfig {
            token: Some(port.token.clone()),
        };
        tokio::spawn(serve_session(kernel.clone(), config, reader, writer));
    }
}

fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
