//! Request handlers: parse, call the request path, answer. Every request
//! gets a JSON answer (or the metrics text); a bad request is a 4xx with
//! `{"error": ..., "hint": ...}`, never a hang.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use spindle_scheduler::{Priority, Source};

use super::{Shared, prometheus, to_json};
use crate::requests::Submission;

pub(crate) type HttpResponse = Response<Full<Bytes>>;

pub(crate) async fn handle(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/metrics") => {
            let text = prometheus::render(&shared.path, &shared.status).await;
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(text)))
                .expect("static response parts")
        }
        (Method::GET, "/v1/status") => json(
            StatusCode::OK,
            to_json::status(&shared.path, &shared.status).await,
        ),
        (Method::DELETE, path) if path.starts_with("/v1/requests/") => {
            cancel(shared, &path["/v1/requests/".len()..]).await
        }
        (method, path) => match shared.path.pipeline_for_route(path) {
            Some(pipeline) if method == Method::POST => {
                let pipeline = pipeline.to_owned();
                submit(shared, pipeline, request).await
            }
            Some(_) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} takes POST, not {method}"),
                "send POST with a JSON body like {\"text\": \"...\"}",
            ),
            None if path.starts_with("/v1/pipelines/") => {
                let name = &path["/v1/pipelines/".len()..];
                error(
                    StatusCode::NOT_FOUND,
                    format!("no pipeline named `{name}`"),
                    &format!("pipelines: {}", shared.path.pipeline_names().join(", ")),
                )
            }
            None => error(
                StatusCode::NOT_FOUND,
                format!("nothing at {path}"),
                "POST /v1/pipelines/NAME, DELETE /v1/requests/ID, GET /v1/status, GET /metrics",
            ),
        },
    }
}

/// The body of `POST /v1/pipelines/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    text: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    deadline_ms: Option<u64>,
    #[serde(default)]
    correlation_id: Option<String>,
}

async fn submit(shared: &Shared, pipeline: String, request: Request<Incoming>) -> HttpResponse {
    let limit = shared.config.max_body_bytes;
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(problem) => {
            if problem
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {limit} bytes"),
                    "send one text per request, or raise the limit",
                );
            }
            return error(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {problem}"),
                "send a complete JSON body",
            );
        }
    };
    let body: SubmitBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a valid request: {problem}"),
                "send {\"text\": \"...\", \"priority\": \"high|medium|low\", \"deadline_ms\": 1000}",
            );
        }
    };
    let priority = match body
        .priority
        .as_deref()
        .unwrap_or("medium")
        .parse::<Priority>()
    {
        Ok(priority) => priority,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown priority `{}`", body.priority.unwrap_or_default()),
                "priority is \"high\", \"medium\" or \"low\"",
            );
        }
    };
    let answer = shared
        .path
        .submit(Submission {
            pipeline,
            text: body.text,
            priority,
            deadline: body.deadline_ms.map(std::time::Duration::from_millis),
            correlation_id: body.correlation_id,
            source: Source::Http,
        })
        .await;
    let status = match answer.outcome.kind() {
        spindle_scheduler::OutcomeKind::Ok => StatusCode::OK,
        spindle_scheduler::OutcomeKind::Error => StatusCode::INTERNAL_SERVER_ERROR,
        spindle_scheduler::OutcomeKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        spindle_scheduler::OutcomeKind::Rejected => StatusCode::SERVICE_UNAVAILABLE,
        spindle_scheduler::OutcomeKind::Cancelled => StatusCode::CONFLICT,
    };
    let mut response = json(status, to_json::answer(&answer));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

async fn cancel(shared: &Shared, id: &str) -> HttpResponse {
    if shared.path.cancel(id).await {
        json(
            StatusCode::ACCEPTED,
            serde_json::json!({ "id": id, "cancelled": true }),
        )
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("request `{id}` is not queued or running"),
            "use the \"id\" of an answer or the correlation_id you sent; it may have been answered already",
        )
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts")
}

fn error(status: StatusCode, message: String, hint: &str) -> HttpResponse {
    json(
        status,
        serde_json::json!({ "error": message, "hint": hint }),
    )
}
