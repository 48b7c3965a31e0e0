//! spindle-http: the HTTP front end on the [`Kernel`] handle. Pipelines as
//! `POST /v1/pipelines/{name}` (and the routes scripts declare),
//! `DELETE /v1/requests/{id}`, the status API at `GET /v1/status`, the
//! health probes `GET /v1/health/live` and `/v1/health/ready`, Prometheus
//! metrics at `GET /metrics`, and the orchestrator API (`operate`,
//! `stream`): services, actions on them, startup, shutdown, reload, the
//! graph, health and events as server-sent events (see `docs/http.md`).
//!
//! The only crate that knows HTTP and JSON for requests; conversions live
//! in `to_json`, `operate_json` and `prometheus`. It depends on the kernel
//! and on no other front end. With a token configured every route but the
//! health probes needs it (`auth`).

mod auth;
mod operate;
mod operate_json;
mod prometheus;
mod respond;
mod routes;
mod stream;
mod to_json;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use spindle_kernel::Kernel;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Larger request bodies are answered 413.
    pub max_body_bytes: usize,
    /// A client that has not sent its headers by then is disconnected.
    pub header_timeout: Duration,
    /// When set, every request but the health probes must carry
    /// `Authorization: Bearer TOKEN` (else 401). Serve anything but
    /// loopback only with one.
    pub token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            token: None,
        }
    }
}

/// What the handlers read.
pub(crate) struct Shared {
    pub kernel: Kernel,
    pub config: HttpConfig,
}

/// Serves `kernel` until `shutdown` is cancelled, then stops accepting and
/// lets the connections in progress finish their requests (the kernel
/// answers every request it admitted, even while it shuts down).
pub async fn serve(
    listener: TcpListener,
    kernel: Kernel,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared { kernel, config });
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("http: accept failed: {error}");
                    continue;
                }
            },
        };
        // Small request/response pairs: do not wait to coalesce.
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        connections.spawn(serve_connection(stream, peer, shared, shutdown));
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let header_timeout = shared.config.header_timeout;
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(&shared, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!("http: connection from {peer}: {error}");
            }
        }
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
