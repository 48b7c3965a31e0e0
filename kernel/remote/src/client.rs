//! HTTP to embedding servers: one hyper client with a keep-alive pool,
//! `POST` of JSON with a timeout, and the errors a caller can act on.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use spindle_scheduler::Failure;

/// What went wrong talking to a server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// Nothing reached the server (refused, unreachable).
    #[error("cannot reach {url}: {reason}\n  hint: is the server running and listening there?")]
    Unreachable { url: String, reason: String },
    /// The server took longer than the service's `timeout`.
    #[error(
        "{url} did not answer within {timeout:?}\n  hint: raise the service's `timeout`, or send smaller batches (max_batch_tokens)"
    )]
    Timeout { url: String, timeout: Duration },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer: {0}\n  hint: check `api` (\"openai\" or \"tei\") and `model`")]
    Answer(String),
}

impl RemoteError {
    /// The batch's failure as the kernel's batcher classifies it.
    pub(crate) fn to_failure(&self, service: &str) -> Failure {
        let message = format!("embedding service `{service}`: {self}");
        match self {
            RemoteError::Unreachable { .. } => Failure::unavailable(message, None),
            RemoteError::Timeout { .. } => Failure::transient(message),
            RemoteError::Status { status, .. }
                if status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS =>
            {
                Failure::transient(message)
            }
            RemoteError::Status { .. } | RemoteError::Answer(_) => Failure::permanent(message),
        }
    }
}

/// A pooled client; cheap to clone (clones share the pool).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        HttpClient {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(16)
                .build(connector),
        }
    }
}

impl HttpClient {
    /// `POST url` with a JSON body; the JSON answer. A connection from the
    /// pool that the server had closed is retried once on a new one.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: Value,
        timeout: Duration,
    ) -> Result<Value, RemoteError> {
        let bytes = Bytes::from(body.to_string());
        let call = async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(url)
                    .header("content-type", "application/json")
                    .header("user-agent", "spindle")
                    .body(Full::new(bytes.clone()))
                    .map_err(|error| RemoteError::Unreachable {
                        url: url.to_owned(),
                        reason: error.to_string(),
                    })?;
                match self.client.request(request).await {
                    Ok(response) => break Ok(response),
                    Err(error) if attempt == 1 && error.is_connect() => {
                        break Err(RemoteError::Unreachable {
                            url: url.to_owned(),
                            reason: source_text(&error),
                        });
                    }
                    // A kept-alive connection the server closed meanwhile.
                    Err(_) if attempt == 1 => continue,
                    Err(error) => {
                        break Err(RemoteError::Unreachable {
                            url: url.to_owned(),
                            reason: source_text(&error),
                        });
                    }
                }
            }
        };
        let answer = async {
            let response = call.await?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| RemoteError::Unreachable {
                    url: url.to_owned(),
                    reason: format!("the answer broke off: {error}"),
                })?
                .to_bytes();
            if !status.is_success() {
                let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                return Err(RemoteError::Status {
                    url: url.to_owned(),
                    status,
                    body: text,
                });
            }
            serde_json::from_slice(&body)
                .map_err(|error| RemoteError::Answer(format!("not JSON: {error}")))
        };
        tokio::time::timeout(timeout, answer)
            .await
            .unwrap_or_else(|_| {
                Err(RemoteError::Timeout {
                    url: url.to_owned(),
                    timeout,
                })
            })
    }
}

/// The innermost cause, which says what happened ("Connection refused").
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
