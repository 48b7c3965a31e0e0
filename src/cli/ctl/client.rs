//! The control API's client: JSON calls and server-sent event streams to
//! one kernel, with its bearer token. hyper over a plain TCP connection
//! (the control API listens on loopback).

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::cli::discovery::Connection;

pub struct ControlClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer: its status and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl ControlClient {
    pub fn new(connection: &Connection) -> ControlClient {
        ControlClient {
            base: format!("http://{}", connection.http),
            token: connection.token.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.call(Method::GET, path, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> anyhow::Result<Answer> {
        self.call(Method::POST, path, body).await
    }

    async fn call(&self, method: Method, path: &str, body: &str) -> anyhow::Result<Answer> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("the kernel's answer broke off")?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer { status, body })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body.to_owned())))?;
        self.client
            .request(request)
            .await
            .with_context(|| format!("cannot reach the kernel at {}", self.base))
    }

    /// Opens a server-sent event stream.
    pub async fn events(&self, path: &str) -> anyhow::Result<EventStream> {
        let response = self.send(Method::GET, path, "").await?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            bail!("{status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(EventStream {
            body: response.into_body(),
            buffer: String::new(),
        })
    }
}

/// Server-sent events, parsed.
pub struct EventStream {
    body: Incoming,
    buffer: String,
}

impl EventStream {
    /// The next event's name and JSON data; `None` when the stream ended
    /// (the kernel stopped).
    pub async fn next(&mut self) -> anyhow::Result<Option<(String, Value)>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = value.to_owned();
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if name.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).context("an event's data is not JSON")?;
                return Ok(Some((name, data)));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.context("the event stream broke off")?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

/// The kernel's error answer in the CLI's words.
pub fn refusal(answer: &Answer) -> anyhow::Error {
    let message = answer.body["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.to_string());
    match answer.body["hint"].as_str() {
        Some(hint) => anyhow::anyhow!("{message} ({})\n  hint: {hint}", answer.status),
        None => anyhow::anyhow!("{message} ({})", answer.status),
    }
}
