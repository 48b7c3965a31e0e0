//! Over real HTTP against real engines: the health probes (live, ready and
//! what is not ready), the status API's services and pipelines, a breaker
//! that opens on an engine that keeps failing (an injected fault: 503 with
//! `Retry-After`, transient), and `s.embed { fallback }` answering when the
//! primary service really failed to start.

#[path = "../../tests/common/mod.rs"]
mod common;
mod http;

use std::time::Duration;

use http::start;
use hyper::{Method, StatusCode};
use spindle_kernel::{Fault, RequestPathConfig};
use spindle_scheduler::BreakerConfig;

/// `broken` names a model nobody ships: its engine fails to start and, with
/// restart policy "no", it stays failed. `later` waits for `never`, which
/// is never healthy.
const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.service "broken" {
  embedding = { model = "no-such-model", threads = 1 },
  restart = { policy = "no" },
}
s.service "never" {
  command = { "sleep", "600" },
  ready = s.exec_probe { command = { "false" }, period = "1s" },
}
s.service "later" {
  embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 },
  depends_on = { never = "healthy" },
}
s.pipeline "ingest" { s.stage("embed", s.embed "embedder") }
s.pipeline "rescued" { s.stage("embed", s.embed { service = "broken", fallback = "embedder" }) }
s.pipeline "doomed" { s.stage("embed", s.embed "broken") }
s.pipeline "waiting" { s.stage("embed", s.embed "later") }
"#;

#[tokio::test]
async fn health_says_what_is_not_ready_and_why() {
    let kernel = start(SCRIPT, RequestPathConfig::default()).await;
    kernel.test.ready("ingest").await;
    kernel.test.settled_except("waiting").await;

    let (status, live) = kernel.json(Method::GET, "/v1/health/live", "").await;
    assert_eq!(status, StatusCode::OK, "{live}");
    assert_eq!(live["live"], true);

    let (status, ready) = kernel.json(Method::GET, "/v1/health/ready", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["ready"], false);
    let not_ready = ready["not_ready"].as_array().expect("not_ready");
    let reason_of = |pipeline: &str| {
        not_ready
            .iter()
            .find(|entry| entry["pipeline"] == pipeline)
            .map(|entry| entry["reason"].as_str().expect("reason").to_owned())
    };
    assert_eq!(reason_of("ingest"), None);
    assert_eq!(reason_of("rescued"), None, "its fallback is ready");
    let doomed = reason_of("doomed").expect("doomed is not ready");
    assert!(doomed.contains("service `broken` failed"), "{doomed}");
    let waiting = reason_of("waiting").expect("waiting is not ready");
    assert!(
        waiting.contains("waiting for service `later` (pending"),
        "{waiting}"
    );

    let (status, body) = kernel.json(Method::GET, "/v1/status", "").await;
    assert_eq!(status, StatusCode::OK);
    let services = body["services"].as_array().expect("services");
    let state_of = |name: &str| {
        services
            .iter()
            .find(|service| service["name"] == name)
            .map(|service| service["state"].as_str().expect("state").to_owned())
    };
    assert_eq!(state_of("embedder").as_deref(), Some("ready"));
    assert_eq!(state_of("broken").as_deref(), Some("failed"));
    assert_eq!(state_of("later").as_deref(), Some("pending"));
    let pipelines = body["pipelines"].as_array().expect("pipelines");
    let ingest = pipelines
        .iter()
        .find(|pipeline| pipeline["name"] == "ingest")
        .expect("ingest");
    assert_eq!(ingest["readiness"]["state"], "ready");
    assert_eq!(ingest["needs"], serde_json::json!(["embedder"]));
}

#[tokio::test]
async fn a_failed_primary_falls_back_and_a_failed_service_answers_at_once() {
    let kernel = start(SCRIPT, RequestPathConfig::default()).await;
    kernel.test.ready("rescued").await;
    kernel.test.settled_except("waiting").await;
    let (status, answer) = kernel
        .json(
            Method::POST,
            "/v1/pipelines/rescued",
            r#"{"text": "hello"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["embed_fallback"], true);
    assert_eq!(answer["vector"].as_array().expect("vector").len(), 384);

    let (status, answer) = kernel
        .json(
            Method::POST,
            "/v1/pipelines/doomed",
            r#"{"text": "hello", "deadline_ms": 600000}"#,
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["transient"], false);
    let error = answer["error"].as_str().expect("error");
    assert!(error.contains("service `broken` failed"), "{error}");
}

#[tokio::test]
async fn an_engine_that_keeps_failing_opens_the_breaker() {
    let config = RequestPathConfig {
        breaker: BreakerConfig {
            failure_threshold: 3,
            failure_ratio: None,
            open_for: Duration::from_secs(30),
            ..BreakerConfig::default()
        },
        retry: spindle_scheduler::RetryPolicy::none(),
        ..RequestPathConfig::default()
    };
    let kernel = start(SCRIPT, config).await;
    kernel.test.ready("ingest").await;
    kernel.test.kernel.inject(Fault::EngineFails {
        service: "embedder".to_owned(),
        batches: 3,
    });
    // Three failed batches: each answered 503, transient, retry soon.
    for _ in 0..3 {
        let reply = kernel
            .send(Method::POST, "/v1/pipelines/ingest", r#"{"text": "hello"}"#)
            .await;
        let answer: serde_json::Value = serde_json::from_str(&reply.text).expect("json");
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert_eq!(answer["transient"], true, "{answer}");
        assert_eq!(answer["error_class"], "transient", "{answer}");
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(answer["stage"], "embed");
    }
    // Open: the engine is healthy again, but the breaker fails fast until
    // it probes, and says when that is.
    let reply = kernel
        .send(Method::POST, "/v1/pipelines/ingest", r#"{"text": "hello"}"#)
        .await;
    let answer: serde_json::Value = serde_json::from_str(&reply.text).expect("json");
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("circuit breaker of service `embedder` is open"),
        "{answer}"
    );
    assert_eq!(answer["transient"], true);
    assert_eq!(answer["error_class"], "unavailable");
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry_after), "{retry_after}");

    let (_, status) = kernel.json(Method::GET, "/v1/status", "").await;
    let batcher = status["batchers"]
        .as_array()
        .expect("batchers")
        .iter()
        .find(|batcher| batcher["service"] == "embedder")
        .expect("embedder's batcher")
        .clone();
    assert_eq!(batcher["breaker"], "open");
    assert_eq!(batcher["failed_batches"], 3);
    let (_, metrics) = kernel.call(Method::GET, "/metrics", "").await;
    assert!(
        metrics.contains("spindle_breaker_state{service=\"embedder\",state=\"open\"} 1"),
        "{metrics}"
    );
}
