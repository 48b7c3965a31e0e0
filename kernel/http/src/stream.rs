//! Streams: `GET /v1/events` (the kernel's events as server-sent events,
//! the lagged marker included) and `GET /v1/services/{name}/logs` (recent
//! lines as JSON, or with `?follow` as server-sent events that go on with
//! new lines).
//!
//! Each stream is a task that reads its kernel subscription and writes
//! whole events into a small channel the response body drains; it ends
//! when the kernel's stream ends (the kernel stopped) or the client is
//! gone. A comment line every 15 s keeps proxies from closing a quiet
//! stream and finds a client that left.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;
use spindle_kernel::Kernel;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::operate_json;
use crate::respond::{HttpResponse, error, event_stream, json, sse_event};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events`: `service`, `pipeline`, `lagged` (with a snapshot to
/// start again from) and, with `?requests`, `request` and
/// `requests_lagged` events. The first event, `hello`, carries the
/// snapshot the stream continues from.
pub(crate) fn events(kernel: &Kernel, with_requests: bool) -> HttpResponse {
    let mut subscription = kernel.subscribe(with_requests);
    let snapshot = kernel.snapshot();
    let (chunks, body) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let hello = json!({
            "as_of": snapshot.as_of,
            "services": snapshot.services.iter().map(operate_json::service).collect::<Vec<_>>(),
        });
        if chunks.send(sse_event("hello", &hello)).await.is_err() {
            return;
        }
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        loop {
            let chunk = tokio::select! {
                event = subscription.recv() => match event {
                    Some(event) => {
                        let (name, data) = operate_json::kernel_event(&event);
                        sse_event(name, &data)
                    }
                    None => break,
                },
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            if chunks.send(chunk).await.is_err() {
                break;
            }
        }
    });
    event_stream(body)
}

/// `GET /v1/services/{name}/logs`: the recent lines; with `?follow`, a
/// stream of `line` events (the recent ones first) and `skipped` events
/// when this reader fell behind.
pub(crate) fn logs(kernel: &Kernel, service: &str, follow: bool) -> HttpResponse {
    let Some((recent, mut lines)) = kernel.follow_logs(service) else {
        let known: Vec<String> = kernel
            .services()
            .into_iter()
            .map(|service| service.name)
            .collect();
        return error(
            StatusCode::NOT_FOUND,
            format!("no service named `{service}`"),
            &format!("the services are: {}", known.join(", ")),
        );
    };
    let recent: Vec<serde_json::Value> = recent.iter().map(operate_json::log_line).collect();
    if !follow {
        return json(
            StatusCode::OK,
            json!({ "service": service, "lines": recent }),
        );
    }
    let service = service.to_owned();
    let (chunks, body) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for line in &recent {
            if chunks.send(sse_event("line", line)).await.is_err() {
                return;
            }
        }
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        loop {
            let chunk = tokio::select! {
                line = lines.recv() => match line {
                    Ok(line) if line.service == service => {
                        sse_event("line", &operate_json::log_line(&line))
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        sse_event("skipped", &json!({ "missed": missed }))
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            if chunks.send(chunk).await.is_err() {
                break;
            }
        }
    });
    event_stream(body)
}
