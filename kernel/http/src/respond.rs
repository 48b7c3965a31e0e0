//! The response type every handler returns, and the few ways to build one:
//! a JSON answer, an error with its hint, a stream of server-sent events.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::{Response, StatusCode, header};
use tokio::sync::mpsc;

pub(crate) type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

/// A whole body at once.
pub(crate) fn full(bytes: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    Full::new(bytes.into()).boxed()
}

pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("static response parts")
}

/// `{"error": ..., "hint": ...}` with `status`.
pub(crate) fn error(status: StatusCode, message: String, hint: &str) -> HttpResponse {
    json(
        status,
        serde_json::json!({ "error": message, "hint": hint }),
    )
}

/// A `text/event-stream` answer fed by `chunks` (each one or more whole
/// events); it ends when the sender is dropped.
pub(crate) fn event_stream(chunks: mpsc::Receiver<Bytes>) -> HttpResponse {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(BodyExt::boxed(ChannelBody(chunks)))
        .expect("static response parts")
}

/// One server-sent event: `event: NAME`, then the JSON as its `data` line.
pub(crate) fn sse_event(name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// A body whose frames come from a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}
