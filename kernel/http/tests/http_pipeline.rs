//! The request path end to end over real HTTP: a Lua pipeline on the script
//! host, an embed stage batched into a real ONNX Runtime engine, answers as
//! JSON, and every kind of bad request answered with a 4xx, never a hang.
//! The client is hyper's.

#[path = "../../tests/common/mod.rs"]
mod common;
mod http;

use std::sync::Arc;

use http::{HttpKernel, start};
use hyper::{Method, StatusCode};
use spindle_kernel::RequestPathConfig;

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
-- `never` runs but its readiness probe never passes, so `missing` (which
-- needs it healthy) never starts: pipeline `stuck` keeps its requests
-- waiting until they are cancelled or time out.
s.service "never" {
  command = { "sleep", "600" },
  ready = s.exec_probe { command = { "false" }, period = "1s" },
}
s.service "missing" {
  embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 },
  depends_on = { never = "healthy" },
}
s.pipeline "ingest" {
  from = { s.http_route "/v1/ingest" },
  s.stage("clean", function(req) req.text = req.text:gsub("%s+", " ") return req end),
  s.stage("embed", s.embed "embedder"),
  s.stage("tag", function(req) req.dims = #req.vector return req end),
}
s.pipeline "broken" {
  s.stage("fail", function(req) error("no such table: docs") end),
}
s.pipeline "degraded" {
  fallback = function(req, err) req.note = "served without vectors" return req end,
  s.stage("lookup", function(req) error("index offline") end),
}
s.pipeline "stuck" { s.stage("embed", s.embed "missing") }
"#;

async fn start_ingest(config: RequestPathConfig) -> HttpKernel {
    start(SCRIPT, config).await
}

#[tokio::test]
async fn a_request_passes_lua_stages_and_the_real_engine() {
    let kernel = start_ingest(RequestPathConfig::default()).await;
    let (status, answer) = kernel
        .json(
            Method::POST,
            "/v1/pipelines/ingest",
            r#"{"text": "a  cat   sat on the mat", "priority": "high", "deadline_ms": 20000, "correlation_id": "c-1"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "ok");
    assert_eq!(answer["correlation_id"], "c-1");
    assert_eq!(answer["priority"], "high");
    assert_eq!(answer["text"], "a cat sat on the mat");
    assert_eq!(answer["fields"]["dims"], "384");
    let vector: Vec<f64> = answer["vector"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect();
    assert_eq!(vector.len(), 384);
    let norm: f64 = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    let stages = answer["timings"]["stages"]
        .as_object()
        .expect("stage timings");
    let names: Vec<&String> = stages.keys().collect();
    assert_eq!(names, ["clean", "embed", "tag"]);

    // The same text through the script's own route gives the same vector.
    let (_, again) = kernel
        .json(
            Method::POST,
            "/v1/ingest",
            r#"{"text": "a cat sat on the mat"}"#,
        )
        .await;
    assert_eq!(again["status"], "ok");
    let again: Vec<f64> = again["vector"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect();
    let cosine: f64 = vector.iter().zip(&again).map(|(a, b)| a * b).sum();
    assert!(cosine >= 0.9999, "cosine {cosine}");
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_answered_once() {
    let kernel = Arc::new(start_ingest(RequestPathConfig::default()).await);
    let mut tasks = Vec::new();
    for idx in 0..64 {
        let kernel = kernel.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!(
                r#"{{"text": "sentence number {idx} about {}"}}"#,
                "words ".repeat(idx % 7)
            );
            kernel
                .json(Method::POST, "/v1/pipelines/ingest", &body)
                .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, answer) = task.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(
            ids.insert(answer["id"].as_u64().expect("id")),
            "ids are unique"
        );
    }
    let (_, status) = kernel.json(Method::GET, "/v1/status", "").await;
    assert_eq!(status["scheduler"]["ok"], 64);
    assert_eq!(status["scheduler"]["submitted"], 64);
    let batcher = &status["batchers"].as_array().expect("batchers")[0];
    let batches = batcher["batches"].as_u64().expect("batches");
    assert!(
        batches < 64,
        "64 concurrent texts went in fewer batches, got {batches}"
    );
    assert_eq!(status["engines"][0]["provider"], "cpu");
}

#[tokio::test]
async fn stage_errors_fallbacks_and_bad_requests_get_clear_answers() {
    let kernel = start_ingest(RequestPathConfig::default()).await;

    let (status, answer) = kernel
        .json(Method::POST, "/v1/pipelines/broken", r#"{"text": "x"}"#)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer["status"], "error");
    let error = answer["error"].as_str().expect("error");
    assert!(
        error.contains("pipeline `broken`, stage `fail` failed at"),
        "{error}"
    );
    assert!(
        error.contains("kernel.lua:21: no such table: docs"),
        "{error}"
    );
    assert_eq!(answer["stage"], "fail");
    assert_eq!(answer["line"], 21);
    assert!(
        answer["file"]
            .as_str()
            .expect("file")
            .ends_with("kernel.lua")
    );
    assert_eq!(answer["message"], "no such table: docs");
    assert_eq!(answer["transient"], false);
    assert_eq!(answer["error_class"], "permanent");

    let (status, answer) = kernel
        .json(
            Method::POST,
            "/v1/pipelines/degraded",
            r#"{"text": "x", "deadline_ms": 300}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["degraded"], true);
    assert_eq!(answer["fields"]["note"], "served without vectors");

    for (method, path, body, expected, needle) in [
        (
            Method::POST,
            "/v1/pipelines/ingest",
            "{\"text\": ",
            StatusCode::BAD_REQUEST,
            "not a valid request",
        ),
        (
            Method::POST,
            "/v1/pipelines/ingest",
            r#"{"txt": "x"}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `txt`",
        ),
        (
            Method::POST,
            "/v1/pipelines/ingest",
            r#"{"text": "x", "priority": "urgent"}"#,
            StatusCode::BAD_REQUEST,
            "unknown priority",
        ),
        (
            Method::POST,
            "/v1/pipelines/nope",
            r#"{"text": "x"}"#,
            StatusCode::NOT_FOUND,
            "no pipeline named `nope`",
        ),
        (
            Method::GET,
            "/v1/pipelines/ingest",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "takes POST",
        ),
        (
            Method::DELETE,
            "/v1/requests/12345",
            "",
            StatusCode::NOT_FOUND,
            "not queued or running",
        ),
        (
            Method::DELETE,
            "/v1/requests/abc",
            "",
            StatusCode::NOT_FOUND,
            "not queued or running",
        ),
    ] {
        let (status, answer) = kernel.json(method, path, body).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        let error = answer["error"].as_str().expect("error");
        assert!(error.contains(needle), "{error}");
        assert!(answer["hint"].is_string());
    }
    let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(10_000));
    let (status, answer) = kernel
        .json(Method::POST, "/v1/pipelines/ingest", &big)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
}

#[tokio::test]
async fn a_waiting_request_is_cancelled_by_correlation_or_numeric_id() {
    let kernel = Arc::new(start_ingest(RequestPathConfig::default()).await);
    let mut events = kernel.test.kernel.subscribe(true);
    // `stuck` waits for `missing`, which never starts: each request stays
    // live (waiting in its queue) until it is cancelled.
    let submit = |correlation: &'static str| {
        let kernel = kernel.clone();
        tokio::spawn(async move {
            let body = format!(
                r#"{{"text": "x", "correlation_id": "{correlation}", "deadline_ms": 600000}}"#
            );
            kernel
                .json(Method::POST, "/v1/pipelines/stuck", &body)
                .await
        })
    };
    let by_correlation = submit("job-7");
    let by_id = submit("job-8");
    // Admission is the scheduler's; once both are admitted, cancels find them.
    let mut admitted = Vec::new();
    while admitted.len() < 2 {
        if let Some(spindle_kernel::KernelEvent::Request(event)) = events.recv().await
            && let spindle_scheduler::RequestEventKind::Admitted { correlation_id, .. } = event.kind
        {
            admitted.push((correlation_id, event.id.0));
        }
    }
    for request in kernel.test.kernel.requests().await {
        assert_eq!(request.summary.state.as_str(), "waiting", "{request:?}");
    }
    let (status, answer) = kernel.json(Method::DELETE, "/v1/requests/job-7", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let numeric = admitted
        .iter()
        .find(|(correlation, _)| correlation == "job-8")
        .map(|(_, id)| *id)
        .expect("job-8 admitted");
    let (status, answer) = kernel
        .json(Method::DELETE, &format!("/v1/requests/{numeric}"), "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    for task in [by_correlation, by_id] {
        let (status, answer) = task.await.expect("task");
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["status"], "cancelled");
    }
    let (status, _) = kernel.json(Method::DELETE, "/v1/requests/job-7", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "answered requests are gone");
}

#[tokio::test]
async fn a_request_past_its_deadline_times_out() {
    let kernel = start_ingest(RequestPathConfig::default()).await;
    let (status, answer) = kernel
        .json(
            Method::POST,
            "/v1/pipelines/ingest",
            r#"{"text": "x", "deadline_ms": 0}"#,
        )
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{answer}");
    assert_eq!(answer["status"], "timeout");
}

#[tokio::test]
async fn metrics_describe_latency_queues_batches_and_engines() {
    let kernel = start_ingest(RequestPathConfig::default()).await;
    let (status, _) = kernel
        .call(Method::POST, "/v1/pipelines/ingest", r#"{"text": "hello"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = kernel.call(Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "spindle_request_duration_seconds_count{pipeline=\"ingest\",priority=\"medium\",outcome=\"ok\"} 1",
        "spindle_requests_total{outcome=\"ok\"} 1",
        "spindle_queue_depth{priority=\"high\"} 0",
        "spindle_batch_size_count{service=\"embedder\"} 1",
        "spindle_batch_padding_ratio_count{service=\"embedder\"} 1",
        "spindle_breaker_state{service=\"embedder\",state=\"closed\"} 1",
        "spindle_engine_info{service=\"embedder\",model=\"paraphrase-MiniLM-L3-v2\",provider=\"cpu\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}
