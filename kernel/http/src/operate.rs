//! The orchestrator API: services listed and in detail, one service
//! restarted, stopped, started or recovered, a set of services (or all)
//! started or shut down in dependency order, the script reloaded, the graph
//! and its health. Every action is a method of the `Kernel` handle; this
//! file parses, calls and answers.
//!
//! Actions answer `202 Accepted` once the kernel has taken them (the
//! service's new states follow as events); every mutating route answers
//! `409 Conflict` once a shutdown is in progress.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use spindle_kernel::supervisor::{ControlError, ServiceState, StopMode};
use spindle_kernel::{Kernel, KernelError};

use crate::Shared;
use crate::operate_json;
use crate::respond::{HttpResponse, error, json};
use crate::stream;

/// Answers the orchestrator routes; any other request is handed back.
pub(crate) async fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, Request<Incoming>> {
    let kernel = &shared.kernel;
    let response = match (method, path) {
        (&Method::GET, "/v1/services") => json(
            StatusCode::OK,
            json!({
                "services": kernel
                    .services()
                    .iter()
                    .map(operate_json::service)
                    .collect::<Vec<_>>(),
            }),
        ),
        (&Method::GET, "/v1/graph") => json(StatusCode::OK, operate_json::graph(&kernel.graph())),
        (&Method::GET, "/v1/health") => health(kernel),
        (&Method::GET, "/v1/events") => stream::events(kernel, flag(query, "requests")),
        (&Method::POST, "/v1/reload") => reload(kernel).await,
        (&Method::POST, "/v1/startup") => {
            let body = match read_body::<SetBody>(shared, request).await {
                Ok(body) => body,
                Err(response) => return Ok(response),
            };
            startup(kernel, body).await
        }
        (&Method::POST, "/v1/shutdown") => {
            let body = match read_body::<SetBody>(shared, request).await {
                Ok(body) => body,
                Err(response) => return Ok(response),
            };
            shutdown(kernel, body).await
        }
        (method, path) if path.starts_with("/v1/services/") => {
            let rest = &path["/v1/services/".len()..];
            match (method, rest.split_once('/')) {
                (&Method::GET, None) => detail(kernel, rest),
                (&Method::GET, Some((name, "logs"))) => {
                    stream::logs(kernel, name, flag(query, "follow"))
                }
                (&Method::POST, Some((name, action))) => {
                    let graceful = !matches!(query_value(query, "graceful"), Some("false" | "0"));
                    act(kernel, name, action, graceful).await
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    format!("nothing at {method} {path}"),
                    "GET /v1/services/NAME, GET /v1/services/NAME/logs, POST /v1/services/NAME/restart|stop|start|recover",
                ),
            }
        }
        _ => return Err(request),
    };
    Ok(response)
}

/// The body of `POST /v1/startup` and `POST /v1/shutdown`: the services
/// to act on (none or absent: all), and for a shutdown whether grace
/// periods apply.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    #[serde(default)]
    services: Option<Vec<String>>,
    #[serde(default)]
    graceful: Option<bool>,
}

fn detail(kernel: &Kernel, name: &str) -> HttpResponse {
    match kernel.service(name) {
        Some(detail) => json(
            StatusCode::OK,
            operate_json::service_detail(&detail, &kernel.graph()),
        ),
        None => unknown_service(kernel, name),
    }
}

fn unknown_service(kernel: &Kernel, name: &str) -> HttpResponse {
    let known: Vec<String> = kernel
        .services()
        .into_iter()
        .map(|service| service.name)
        .collect();
    error(
        StatusCode::NOT_FOUND,
        format!("no service named `{name}`"),
        &format!("the services are: {}", known.join(", ")),
    )
}

async fn act(kernel: &Kernel, name: &str, action: &str, graceful: bool) -> HttpResponse {
    if kernel.is_shutting_down() {
        return shutting_down();
    }
    let result = match action {
        "restart" => kernel.restart_service(name).await,
        "stop" => kernel.stop_service_with(name, stop_mode(graceful)).await,
        "start" => kernel.start_service(name).await,
        "recover" => kernel.recover_service(name).await,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no action `{other}` on a service"),
                "POST /v1/services/NAME/restart, /stop, /start or /recover",
            );
        }
    };
    match result {
        Ok(()) => json(
            StatusCode::ACCEPTED,
            json!({ "service": name, "action": action, "accepted": true }),
        ),
        Err(error) => kernel_error(kernel, &error),
    }
}

fn stop_mode(graceful: bool) -> StopMode {
    if graceful {
        StopMode::Graceful
    } else {
        StopMode::Immediate
    }
}

async fn startup(kernel: &Kernel, body: SetBody) -> HttpResponse {
    if kernel.is_shutting_down() {
        return shutting_down();
    }
    let names = match body.services {
        Some(names) if !names.is_empty() => names,
        // All: every service that is at rest and not by its own success.
        _ => kernel
            .services()
            .into_iter()
            .filter(|service| {
                matches!(
                    service.state,
                    ServiceState::Stopped | ServiceState::Failed | ServiceState::GaveUp
                )
            })
            .map(|service| service.name)
            .collect(),
    };
    if let Some(response) = check_names(kernel, &names) {
        return response;
    }
    for name in &names {
        if let Err(error) = kernel.start_service(name).await {
            return kernel_error(kernel, &error);
        }
    }
    json(
        StatusCode::ACCEPTED,
        json!({ "action": "startup", "services": names, "accepted": true }),
    )
}

async fn shutdown(kernel: &Kernel, body: SetBody) -> HttpResponse {
    let graceful = body.graceful.unwrap_or(true);
    match body.services {
        Some(names) if !names.is_empty() => {
            if kernel.is_shutting_down() {
                return shutting_down();
            }
            if let Some(response) = check_names(kernel, &names) {
                return response;
            }
            // Each stop waits for the services bound to it; the kernel
            // keeps the order whatever order the list has.
            for name in &names {
                if let Err(error) = kernel.stop_service_with(name, stop_mode(graceful)).await {
                    return kernel_error(kernel, &error);
                }
            }
            json(
                StatusCode::ACCEPTED,
                json!({ "action": "stop", "services": names, "graceful": graceful, "accepted": true }),
            )
        }
        _ => {
            // The whole kernel. A second, immediate shutdown is allowed
            // while a graceful one runs: it skips the grace periods.
            if kernel.is_shutting_down() && graceful {
                return shutting_down();
            }
            if graceful {
                kernel.shutdown();
            } else {
                kernel.kill_now();
            }
            json(
                StatusCode::ACCEPTED,
                json!({ "action": "shutdown", "services": "all", "graceful": graceful, "accepted": true }),
            )
        }
    }
}

async fn reload(kernel: &Kernel) -> HttpResponse {
    if kernel.is_shutting_down() {
        return shutting_down();
    }
    match kernel.reload().await {
        Ok(report) => json(
            StatusCode::OK,
            json!({ "reloaded": true, "services": operate_json::apply_report(&report) }),
        ),
        Err(KernelError::Script { file, diagnostics }) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "reloaded": false,
                "error": format!("{} has errors; nothing was changed", file.display()),
                "hint": "fix the script and reload again; the running graph is untouched",
                "diagnostics": diagnostics.iter().map(operate_json::diagnostic).collect::<Vec<_>>(),
            }),
        ),
        Err(error) => kernel_error(kernel, &error),
    }
}

/// `GET /v1/health`: overall and per service. `ok` (200) when every
/// service is ready (or completed) and every pipeline can be served;
/// otherwise `degraded` or, when something will not come back, `failing`
/// (503).
fn health(kernel: &Kernel) -> HttpResponse {
    let snapshot = kernel.snapshot();
    let mut failing = false;
    let mut degraded = false;
    let services: Vec<serde_json::Value> = snapshot
        .services
        .iter()
        .map(|service| {
            let completed =
                service.state == ServiceState::Exited && service.reason.starts_with("completed");
            let healthy = service.state == ServiceState::Ready || completed;
            let gone = matches!(service.availability, spindle_scheduler::Gate::Failed { .. })
                || service.state == ServiceState::GaveUp;
            failing |= gone;
            degraded |= !healthy;
            json!({
                "name": service.name,
                "state": service.state.name(),
                "healthy": healthy,
                "reason": service.reason,
            })
        })
        .collect();
    let pipelines: Vec<serde_json::Value> = snapshot
        .pipelines
        .iter()
        .map(|pipeline| {
            failing |= matches!(pipeline.gate, spindle_scheduler::Gate::Failed { .. });
            degraded |= !pipeline.gate.is_open();
            json!({ "name": pipeline.name, "readiness": operate_json::gate(&pipeline.gate) })
        })
        .collect();
    let status = if kernel.is_shutting_down() {
        "shutting_down"
    } else if failing {
        "failing"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        code,
        json!({ "status": status, "services": services, "pipelines": pipelines }),
    )
}

fn check_names(kernel: &Kernel, names: &[String]) -> Option<HttpResponse> {
    let known: Vec<String> = kernel
        .services()
        .into_iter()
        .map(|service| service.name)
        .collect();
    let unknown: Vec<&String> = names.iter().filter(|name| !known.contains(name)).collect();
    if unknown.is_empty() {
        return None;
    }
    Some(error(
        StatusCode::NOT_FOUND,
        format!(
            "no service named {}",
            unknown
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &format!("the services are: {}", known.join(", ")),
    ))
}

fn shutting_down() -> HttpResponse {
    error(
        StatusCode::CONFLICT,
        "the kernel is shutting down: nothing can be started, stopped or changed any more"
            .to_owned(),
        "wait for it to stop, then start a new run",
    )
}

fn kernel_error(kernel: &Kernel, kernel_error: &KernelError) -> HttpResponse {
    match kernel_error {
        KernelError::Control(ControlError::ShuttingDown) => shutting_down(),
        KernelError::Control(ControlError::UnknownService { name, .. }) => {
            unknown_service(kernel, name)
        }
        KernelError::NoScript => error(
            StatusCode::CONFLICT,
            kernel_error.to_string(),
            "only a kernel started on a script can reload",
        ),
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            other.to_string(),
            "see the kernel's log",
        ),
    }
}

async fn read_body<T: for<'de> Deserialize<'de> + Default>(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<T, HttpResponse> {
    let limit = shared.config.max_body_bytes;
    let bytes = match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(problem) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {problem}"),
                "send a complete JSON body, smaller than the limit",
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|problem| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid: {problem}"),
            "send {\"services\": [\"NAME\", ...], \"graceful\": true} or no body for all",
        )
    })
}

/// `name=value` of a query string.
fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A flag in the query: `?follow`, `?follow=1`, `?follow=true`.
fn flag(query: &str, name: &str) -> bool {
    matches!(query_value(query, name), Some("" | "1" | "true"))
}
