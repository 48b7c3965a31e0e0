//! A real kernel served by the real HTTP front end on a loopback port, and
//! a hyper client to call it.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spindle_http::HttpConfig;
use spindle_kernel::RequestPathConfig;
use tokio_util::sync::CancellationToken;

use crate::common::{TestKernel, start_kernel};

pub struct HttpKernel {
    pub base: String,
    pub client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    pub test: TestKernel,
    stop: CancellationToken,
}

impl Drop for HttpKernel {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a kernel on `script` and serves it on `127.0.0.1:0`; returns at
/// once (services start in the background, requests wait for them).
pub async fn start(script: &str, requests: RequestPathConfig) -> HttpKernel {
    serve(
        start_kernel(script, requests),
        HttpConfig {
            max_body_bytes: 4096,
            ..HttpConfig::default()
        },
    )
    .await
}

/// Serves a kernel already started with `config` on `127.0.0.1:0`.
pub async fn serve(test: TestKernel, config: HttpConfig) -> HttpKernel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let stop = CancellationToken::new();
    tokio::spawn(spindle_http::serve(
        listener,
        test.kernel.clone(),
        config,
        stop.clone(),
    ));
    HttpKernel {
        base,
        client: Client::builder(TokioExecutor::new()).build_http(),
        test,
        stop,
    }
}

/// A response: status, headers, body text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub text: String,
}

impl HttpKernel {
    pub async fn send(&self, method: Method, path: &str, body: &str) -> Reply {
        self.send_with(method, path, body, None).await
    }

    /// [`HttpKernel::send`] with `Authorization: Bearer TOKEN` when given.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = self.client.request(request).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8(body.to_vec()).expect("utf-8"),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let reply = self.send(method, path, body).await;
        (reply.status, reply.text)
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let (status, text) = self.call(method, path, body).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }
}
