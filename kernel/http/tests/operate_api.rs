//! The orchestrator API over real HTTP, with real processes: services
//! listed and in detail (pid, uptime, probes' last results, recent output),
//! restart with its dependents following in order (watched as server-sent
//! events), stop (graceful or at once) and start, recover, startup and
//! shutdown of a set, the graph and its waves, health, reload (an invalid
//! edit changes nothing), the bearer token, the lagged marker, and 409 for
//! every change once a shutdown is in progress.

#[path = "../../tests/common/mod.rs"]
mod common;
mod http;

use bytes::Bytes;
use http::{HttpKernel, serve, start};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::Value;
use spindle_http::HttpConfig;
use spindle_kernel::{Kernel, KernelConfig, KernelSource, RequestPathConfig};

const GRAPH: &str = r#"local s = require("spindle")
s.service "db" {
  command = { "sh", "-c", "echo db says hello; exec sleep 600" },
  ready = s.exec_probe { command = { "true" }, period = "100ms" },
}
s.service "api" { command = { "sleep", "601" }, depends_on = { db = "healthy" } }
s.service "cron" { command = { "sleep", "602" } }
s.service "stubborn" {
  command = { "sh", "-c", "trap '' TERM; while :; do sleep 1; done" },
  stop = { grace = "60s" },
}
"#;

/// A server-sent event stream read with a real HTTP client.
struct Events {
    body: Incoming,
    buffer: String,
}

impl Events {
    async fn open(kernel: &HttpKernel, path: &str) -> Events {
        let request = Request::builder()
            .uri(format!("{}{path}", kernel.base))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = kernel.client.request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Events {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event's name and data; `None` when the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
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
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("JSON data");
                return Some((name, data));
            }
            let frame = self.body.frame().await?.expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.buffer
                    .push_str(std::str::from_utf8(&data).expect("utf-8"));
            }
        }
    }

    /// Reads until a `service` event for `service` going `to`.
    async fn until(&mut self, service: &str, to: &str) -> Value {
        loop {
            let (name, data) = self.next().await.expect("the stream goes on");
            if name == "service" && data["service"] == service && data["to"] == to {
                return data;
            }
        }
    }
}

async fn get(kernel: &HttpKernel, path: &str) -> Value {
    let (status, body) = kernel.json(Method::GET, path, "").await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn wait_ready(kernel: &HttpKernel, names: &[&str]) {
    let mut events = Events::open(kernel, "/v1/events").await;
    loop {
        let services = get(kernel, "/v1/services").await;
        let ready = names.iter().all(|name| {
            services["services"]
                .as_array()
                .expect("services")
                .iter()
                .any(|service| service["name"] == *name && service["state"] == "ready")
        });
        if ready {
            return;
        }
        events.next().await.expect("the stream goes on");
    }
}

fn service<'a>(services: &'a Value, name: &str) -> &'a Value {
    services["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|service| service["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {services}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_listed_shown_and_operated_in_dependency_order() {
    let kernel = start(GRAPH, RequestPathConfig::default()).await;
    wait_ready(&kernel, &["db", "api", "cron", "stubborn"]).await;

    let services = get(&kernel, "/v1/services").await;
    let db = service(&services, "db");
    assert_eq!(db["kind"], "process");
    assert!(db["pid"].as_u64().is_some(), "{db}");
    assert!(db["uptime_s"].as_f64().is_some(), "{db}");
    let (before_db, before_api, before_cron) = (
        db["pid"].clone(),
        service(&services, "api")["pid"].clone(),
        service(&services, "cron")["pid"].clone(),
    );

    // In detail: the declaration, the probe's last result, recent output.
    let detail = loop {
        let detail = get(&kernel, "/v1/services/db").await;
        if !detail["recent_logs"].as_array().expect("logs").is_empty() {
            break detail;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(detail["recent_logs"][0]["line"], "db says hello");
    assert_eq!(detail["recent_logs"][0]["stream"], "stdout");
    assert_eq!(detail["probes"][0]["probe"], "readiness");
    assert_eq!(detail["probes"][0]["ok"], true);
    assert_eq!(detail["probes"][0]["passing"], true);
    assert_eq!(detail["command"][0], "sh");
    let api = get(&kernel, "/v1/services/api").await;
    assert_eq!(api["depends_on"][0]["service"], "db");
    assert_eq!(api["depends_on"][0]["condition"], "healthy");
    let (status, logs) = kernel.json(Method::GET, "/v1/services/db/logs", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(logs["lines"][0]["line"], "db says hello");

    // Restart db: api stops before db does and starts after db is ready.
    let mut events = Events::open(&kernel, "/v1/events").await;
    let (hello, _) = events.next().await.expect("hello");
    assert_eq!(hello, "hello");
    let (status, body) = kernel
        .json(Method::POST, "/v1/services/db/restart", "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut order = Vec::new();
    while order.len() < 4 {
        let (name, data) = events.next().await.expect("events");
        if name != "service" {
            continue;
        }
        match (data["service"].as_str(), data["to"].as_str()) {
            (Some("api"), Some("stopped")) => order.push("api stopped"),
            (Some("db"), Some("stopped")) => order.push("db stopped"),
            (Some("db"), Some("ready")) => order.push("db ready"),
            (Some("api"), Some("ready")) => order.push("api ready"),
            _ => {}
        }
    }
    assert_eq!(
        order,
        ["api stopped", "db stopped", "db ready", "api ready"]
    );
    let services = get(&kernel, "/v1/services").await;
    assert_ne!(service(&services, "db")["pid"], before_db);
    assert_ne!(service(&services, "api")["pid"], before_api);
    assert_eq!(service(&services, "cron")["pid"], before_cron);

    // Stop at once: the service that ignores SIGTERM (60 s of grace) is
    // killed without waiting.
    let (status, _) = kernel
        .json(
            Method::POST,
            "/v1/services/stubborn/stop?graceful=false",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let stopped = events.until("stubborn", "stopped").await;
    assert!(
        stopped["reason"]
            .as_str()
            .expect("reason")
            .contains("SIGKILL")
            || stopped["reason"]
                .as_str()
                .expect("reason")
                .contains("signal 9"),
        "{stopped}"
    );
    let (status, _) = kernel
        .json(Method::POST, "/v1/services/stubborn/start", "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    events.until("stubborn", "ready").await;

    // A set, gracefully: db and cron; api (bound to db) goes down first.
    let (status, body) = kernel
        .json(
            Method::POST,
            "/v1/shutdown",
            r#"{"services": ["db", "cron"], "graceful": true}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    events.until("db", "stopped").await;
    let health = kernel.json(Method::GET, "/v1/health", "").await;
    assert_eq!(health.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.1["status"], "degraded", "{}", health.1);
    let (status, body) = kernel
        .json(Method::POST, "/v1/startup", r#"{"services": ["db"]}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    events.until("api", "ready").await;
    // Startup of all: cron too.
    let (status, body) = kernel.json(Method::POST, "/v1/startup", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["services"], serde_json::json!(["cron"]));
    events.until("cron", "ready").await;
    let (status, health) = kernel.json(Method::GET, "/v1/health", "").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");

    // Mistakes are 404 with the names that exist.
    let (status, body) = kernel
        .json(Method::POST, "/v1/services/nope/restart", "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["hint"]
            .as_str()
            .expect("hint")
            .contains("db, api, cron")
    );
    let (status, _) = kernel
        .json(Method::POST, "/v1/services/db/explode", "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = kernel
        .json(Method::POST, "/v1/shutdown", r#"{"services": ["nope"]}"#)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Shutdown of all; every change is refused from then on (409).
    let (status, _) = kernel.json(Method::POST, "/v1/shutdown", "").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for (path, body) in [
        ("/v1/services/db/restart", ""),
        ("/v1/services/db/stop", ""),
        ("/v1/services/db/start", ""),
        ("/v1/services/db/recover", ""),
        ("/v1/startup", ""),
        ("/v1/shutdown", r#"{"services": ["db"]}"#),
        ("/v1/reload", ""),
    ] {
        let (status, answer) = kernel.json(Method::POST, path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {answer}");
    }
    // The event stream carries the stops and ends with the kernel.
    while events.next().await.is_some() {}
    kernel.test.kernel.wait().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_its_waves_and_a_reload_that_changes_only_what_changed() {
    let kernel = start(GRAPH, RequestPathConfig::default()).await;
    wait_ready(&kernel, &["db", "api", "cron"]).await;
    let graph = get(&kernel, "/v1/graph").await;
    assert_eq!(
        graph["waves"],
        serde_json::json!([["db", "cron", "stubborn"], ["api"]])
    );
    let db = graph["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|service| service["name"] == "db")
        .expect("db");
    assert_eq!(db["dependents"], serde_json::json!(["api"]));

    let file = kernel.test.dir.path().join("kernel.lua");
    std::fs::write(
        &file,
        GRAPH.replace("\"sleep\", \"602\"", "\"sleep\", 602 602"),
    )
    .expect("write");
    let (status, body) = kernel.json(Method::POST, "/v1/reload", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["reloaded"], false);
    let diagnostic = &body["diagnostics"][0];
    assert_eq!(diagnostic["severity"], "error");
    assert_eq!(diagnostic["line"], 7, "{diagnostic}");

    std::fs::write(
        &file,
        GRAPH.replace("\"sleep\", \"602\"", "\"sleep\", \"603\""),
    )
    .expect("write");
    let (status, body) = kernel.json(Method::POST, "/v1/reload", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["services"]["changed"], serde_json::json!(["cron"]));
    assert_eq!(
        body["services"]["unchanged"],
        serde_json::json!(["db", "api", "stubborn"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_only_the_health_probes_answer_without_it() {
    let test = common::start_kernel(GRAPH, RequestPathConfig::default());
    let kernel = serve(
        test,
        HttpConfig {
            token: Some("correct-horse".to_owned()),
            ..HttpConfig::default()
        },
    )
    .await;
    for path in [
        "/v1/services",
        "/v1/graph",
        "/v1/health",
        "/v1/status",
        "/metrics",
    ] {
        let reply = kernel.send(Method::GET, path, "").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        let reply = kernel.send_with(Method::GET, path, "", Some("wrong")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let reply = kernel
        .send(Method::POST, "/v1/services/db/restart", "")
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = kernel
        .send_with(Method::GET, "/v1/services", "", Some("correct-horse"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    for path in ["/v1/health/live", "/v1/health/ready"] {
        let reply = kernel.send(Method::GET, path, "").await;
        assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

/// Twenty services bound to one, and an event buffer of four: restarting
/// the one emits some forty events at once, far more than a subscriber
/// that has not read yet may miss. (Single-threaded runtime: the kernel's
/// event hub publishes the burst before the stream's task reads.)
#[tokio::test]
async fn a_stream_that_falls_behind_gets_the_lagged_event_with_a_snapshot() {
    let mut script = String::from(
        "local s = require(\"spindle\")\ns.service \"root\" { command = { \"sleep\", \"600\" } }\n",
    );
    for idx in 0..20 {
        script.push_str(&format!(
            "s.service \"leaf{idx:02}\" {{ command = {{ \"sleep\", \"600\" }}, depends_on = {{ \"root\" }} }}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kernel.lua");
    std::fs::write(&file, &script).expect("write");
    let kernel = Kernel::start(
        KernelSource::Script(file),
        KernelConfig {
            event_buffer: 4,
            ..KernelConfig::default()
        },
    )
    .expect("starts");
    let test = common::TestKernel { kernel, dir };
    let kernel = serve(test, HttpConfig::default()).await;
    let mut events = Events::open(&kernel, "/v1/events").await;
    let names: Vec<String> = std::iter::once("root".to_owned())
        .chain((0..20).map(|idx| format!("leaf{idx:02}")))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_ready(&kernel, &names).await;
    let (status, _) = kernel
        .json(Method::POST, "/v1/services/root/restart", "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let lagged = loop {
        let (name, data) = events.next().await.expect("the stream goes on");
        if name == "lagged" {
            break data;
        }
    };
    assert!(lagged["missed"].as_u64().expect("missed") > 0, "{lagged}");
    let snapshot = &lagged["snapshot"]["services"];
    assert_eq!(snapshot.as_array().expect("services").len(), 21);
}
