//! The live part of hover: the state of a service in a running graph, read
//! from `GET /v1/status` of `spindle run --http ADDR` (docs/http.md).
//!
//! A plain HTTP/1.0 `GET` over a TCP socket with a short deadline: hover
//! must answer even when nothing listens. This module knows the status
//! API's JSON and nothing of the kernel crate.

use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The state of one service as the status API reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LiveService {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub restarts: u32,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    services: Vec<LiveService>,
}

/// How long hover waits for the running graph.
pub const STATUS_DEADLINE: Duration = Duration::from_millis(500);

/// Why the live state could not be read, said in a hover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveError {
    /// Nothing answers at the address: the graph is not running.
    NotRunning(String),
    /// Something answered, but not the status API.
    BadAnswer(String),
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveError::NotRunning(address) => write!(
                f,
                "not running at {address} (start it with `spindle run FILE --http {address}`)"
            ),
            LiveError::BadAnswer(why) => write!(f, "no status: {why}"),
        }
    }
}

/// Every service of the graph running at `address` (`host:port`).
pub async fn fetch(address: &str) -> Result<Vec<LiveService>, LiveError> {
    match tokio::time::timeout(STATUS_DEADLINE, fetch_inner(address)).await {
        Ok(result) => result,
        Err(_) => Err(LiveError::BadAnswer(format!(
            "{address} did not answer within {} ms",
            STATUS_DEADLINE.as_millis()
        ))),
    }
}

async fn fetch_inner(address: &str) -> Result<Vec<LiveService>, LiveError> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|_| LiveError::NotRunning(address.to_owned()))?;
    let request =
        format!("GET /v1/status HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| LiveError::BadAnswer(error.to_string()))?;
    let mut answer = Vec::new();
    stream
        .take(8 * 1024 * 1024)
        .read_to_end(&mut answer)
        .await
        .map_err(|error| LiveError::BadAnswer(error.to_string()))?;
    parse(&answer)
}

/// The services of an HTTP answer holding the status JSON.
fn parse(answer: &[u8]) -> Result<Vec<LiveService>, LiveError> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| LiveError::BadAnswer("an incomplete HTTP answer".to_owned()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200") {
        return Err(LiveError::BadAnswer(status_line.to_owned()));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    serde_json::from_str::<Status>(&body)
        .map(|status| status.services)
        .map_err(|error| LiveError::BadAnswer(format!("not the status API: {error}")))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_services_from_plain_and_chunked_answers() {
        let body = r#"{"services":[{"name":"db","state":"running","reason":null,"pid":42,"restarts":1}],"engines":[]}"#;
        let plain = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let chunked = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        for answer in [plain, chunked] {
            let services = parse(answer.as_bytes()).expect("parsed");
            assert_eq!(services[0].pid, Some(42));
            assert_eq!(services[0].restarts, 1);
        }
        assert!(matches!(
            parse(b"HTTP/1.1 404 Not Found\r\n\r\n{}"),
            Err(LiveError::BadAnswer(_))
        ));
    }
}
