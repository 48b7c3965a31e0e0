//! Request handlers: parse, call the request path, answer. Every request
//! gets a JSON answer (or the metrics text); a bad request is a 4xx with
//! `{"error": ..., "hint": ...}`, never a hang.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use spindle_kernel::Submission;
use spindle_scheduler::{FailureClass, Outcome, OutcomeKind, Priority, Source};

use super::respond::{HttpResponse, error, full, json};
use super::{Shared, auth, operate, prometheus, to_json};

pub(crate) async fn handle(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let method = request.method().clone();
    if let Some(refused) = auth::check(shared.config.token.as_deref(), &path, request.headers()) {
        return refused;
    }
    let request = match operate::route(shared, &method, &path, &query, request).await {
        Ok(response) => return response,
        Err(request) => request,
    };
    match (method, path.as_str()) {
        (Method::GET, "/metrics") => {
            let text = prometheus::render(&shared.kernel).await;
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(full(text))
                .expect("static response parts")
        }
        (Method::GET, "/v1/status") => json(StatusCode::OK, to_json::status(&shared.kernel).await),
        (Method::GET, "/v1/health/live") => {
            // The scheduler's loop answering is what "alive" means here.
            let stats = shared.kernel.metrics().await.scheduler;
            json(
                StatusCode::OK,
                serde_json::json!({ "live": true, "admitting": stats.admitting }),
            )
        }
        (Method::GET, "/v1/health/ready") => {
            let (ready, body) = to_json::readiness(&shared.kernel);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, body)
        }
        (Method::DELETE, path) if path.starts_with("/v1/requests/") => {
            cancel(shared, &path["/v1/requests/".len()..]).await
        }
        (method, path) => match shared.kernel.route(path) {
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
                    &format!("pipelines: {}", pipeline_names(&shared.kernel).join(", ")),
                )
            }
            None => error(
                StatusCode::NOT_FOUND,
                format!("nothing at {path}"),
                "POST /v1/pipelines/NAME, DELETE /v1/requests/ID, GET /v1/status, GET /v1/services[/NAME], POST /v1/services/NAME/restart|stop|start|recover, POST /v1/startup, POST /v1/shutdown, POST /v1/reload, GET /v1/graph, GET /v1/health[/live|/ready], GET /v1/events, GET /metrics",
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
        .kernel
        .submit(Submission {
            pipeline,
            text: body.text,
            priority,
            deadline: body.deadline_ms.map(std::time::Duration::from_millis),
            correlation_id: body.correlation_id,
            source: Source::Http,
        })
        .await;
    let (status, retry_after) = match &answer.outcome {
        Outcome::Ok(_) => (StatusCode::OK, None),
        Outcome::Error(failure) => match failure.class {
            FailureClass::Permanent => (StatusCode::INTERNAL_SERVER_ERROR, None),
            FailureClass::Transient => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            FailureClass::Unavailable { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(retry_after.map_or(1, |after| after.as_secs_f64().ceil().max(1.0) as u64)),
            ),
        },
        Outcome::Timeout => (StatusCode::GATEWAY_TIMEOUT, None),
        Outcome::Rejected(_) => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
        Outcome::Cancelled(_) => (StatusCode::CONFLICT, None),
    };
    debug_assert_eq!(
        answer.outcome.kind() == OutcomeKind::Ok,
        status == StatusCode::OK
    );
    let mut response = json(status, to_json::answer(&answer));
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    response
}

fn pipeline_names(kernel: &spindle_kernel::Kernel) -> Vec<String> {
    kernel
        .pipelines()
        .into_iter()
        .map(|pipeline| pipeline.name)
        .collect()
}

async fn cancel(shared: &Shared, id: &str) -> HttpResponse {
    if shared.kernel.cancel(id).await {
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
