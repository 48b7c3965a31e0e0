//! The orchestrator API's JSON: services in detail, the graph and its
//! waves, health, events and log lines, what a reload changed, and a
//! script's diagnostics (see `docs/http.md`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use spindle_kernel::supervisor::{ApplyReport, Event, LogLine, LogStream, ProbeResult};
use spindle_kernel::{KernelEvent, KernelSnapshot, ServiceDetail, ServiceStatus};
use spindle_scheduler::{Gate, RequestEvent, RequestEventKind};
use spindle_scripting::{Diagnostic, GraphSpec, ServiceKind, StageKind};

fn unix_seconds(at: SystemTime) -> f64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_micros() as f64) / 1e6
}

fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e3).round() / 1e3
}

pub(crate) fn gate(gate: &Gate) -> Value {
    match gate {
        Gate::Open => json!({ "state": "ready" }),
        Gate::Closed { reason } => json!({ "state": "waiting", "reason": reason }),
        Gate::Failed { reason } => json!({ "state": "failed", "reason": reason }),
    }
}

/// One service as `GET /v1/services` lists it.
pub(crate) fn service(status: &ServiceStatus) -> Value {
    let uptime = status
        .running_since
        .map(|since| seconds(SystemTime::now().duration_since(since).unwrap_or_default()));
    json!({
        "name": status.name,
        "kind": status.kind,
        "state": status.state.name(),
        "reason": status.reason,
        "pid": status.pid,
        "restarts": status.restarts,
        "since": unix_seconds(status.since),
        "running_since": status.running_since.map(unix_seconds),
        "uptime_s": uptime,
        "availability": gate(&status.availability),
    })
}

pub(crate) fn probe(result: &ProbeResult) -> Value {
    json!({
        "probe": result.probe,
        "ok": result.ok,
        "passing": result.passing,
        "detail": result.detail,
        "at": unix_seconds(result.at),
        "took_ms": (result.took.as_secs_f64() * 1e6).round() / 1e3,
    })
}

pub(crate) fn log_line(line: &LogLine) -> Value {
    let stream = match line.stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    };
    json!({ "service": line.service, "stream": stream, "line": line.line })
}

/// `GET /v1/services/{name}`: the listing's fields, the declaration's
/// essentials, probes' last results and recent output lines.
pub(crate) fn service_detail(detail: &ServiceDetail, graph: &GraphSpec) -> Value {
    let mut value = service(&detail.status);
    let object = value.as_object_mut().expect("an object");
    if let Some(spec) = graph.service(&detail.status.name) {
        object.insert(
            "depends_on".into(),
            json!(
                spec.depends_on
                    .iter()
                    .map(|dependency| json!({
                        "service": dependency.service,
                        "condition": dependency.condition.name(),
                    }))
                    .collect::<Vec<_>>()
            ),
        );
        object.insert("restart_policy".into(), json!(spec.restart.policy.name()));
        object.insert("critical".into(), json!(spec.critical));
        if let ServiceKind::Process(process) = &spec.kind {
            object.insert("command".into(), json!(process.command));
        }
        object.insert(
            "declared_at".into(),
            json!({
                "file": spec.location.file,
                "line": spec.location.line,
            }),
        );
    }
    object.insert(
        "probes".into(),
        json!(detail.probes.iter().map(probe).collect::<Vec<_>>()),
    );
    object.insert(
        "recent_logs".into(),
        json!(detail.recent_logs.iter().map(log_line).collect::<Vec<_>>()),
    );
    value
}

/// `GET /v1/graph`: services with their edges, startup waves, pipelines.
pub(crate) fn graph(graph: &GraphSpec) -> Value {
    let services: Vec<Value> = graph
        .services
        .iter()
        .map(|spec| {
            let dependents: Vec<&str> = graph
                .services
                .iter()
                .filter(|other| {
                    other
                        .depends_on
                        .iter()
                        .any(|dependency| dependency.service == spec.name)
                })
                .map(|other| other.name.as_str())
                .collect();
            json!({
                "name": spec.name,
                "kind": spec.kind.name(),
                "depends_on": spec.depends_on.iter().map(|dependency| json!({
                    "service": dependency.service,
                    "condition": dependency.condition.name(),
                })).collect::<Vec<_>>(),
                "dependents": dependents,
            })
        })
        .collect();
    let waves: Vec<Vec<&str>> = graph
        .waves()
        .iter()
        .map(|wave| wave.iter().map(|spec| spec.name.as_str()).collect())
        .collect();
    let pipelines: Vec<Value> = graph
        .pipelines
        .iter()
        .map(|pipeline| {
            let stages: Vec<Value> = pipeline
                .stages
                .iter()
                .map(|stage| match &stage.kind {
                    StageKind::Lua { .. } => json!({ "name": stage.name, "kind": "lua" }),
                    StageKind::Embed {
                        service,
                        fallback,
                        shared_with,
                    } => json!({
                        "name": stage.name,
                        "kind": "embed",
                        "service": service,
                        "shared_with": shared_with,
                        "fallback": fallback,
                    }),
                })
                .collect();
            json!({ "name": pipeline.name, "stages": stages })
        })
        .collect();
    json!({
        "file": graph.file,
        "services": services,
        "waves": waves,
        "pipelines": pipelines,
    })
}

/// What `POST /v1/reload` changed.
pub(crate) fn apply_report(report: &ApplyReport) -> Value {
    json!({
        "added": report.added,
        "changed": report.changed,
        "removed": report.removed,
        "unchanged": report.unchanged,
    })
}

pub(crate) fn diagnostic(diagnostic: &Diagnostic) -> Value {
    json!({
        "severity": diagnostic.severity.name(),
        "file": diagnostic.file,
        "line": diagnostic.line,
        "column": diagnostic.column,
        "message": diagnostic.message,
        "hint": diagnostic.hint,
        "text": diagnostic.to_string(),
    })
}

pub(crate) fn service_event(event: &Event) -> Value {
    json!({
        "ts": unix_seconds(event.at),
        "service": event.service,
        "from": event.from.name(),
        "to": event.to.name(),
        "reason": event.reason,
        "pid": event.pid,
        "restarts": event.restarts,
        "backoff_ms": event.backoff.map(|backoff| backoff.as_millis() as u64),
    })
}

fn snapshot(snapshot: &KernelSnapshot) -> Value {
    json!({
        "as_of": snapshot.as_of,
        "services": snapshot.services.iter().map(service).collect::<Vec<_>>(),
        "pipelines": snapshot.pipelines.iter().map(|pipeline| json!({
            "name": pipeline.name,
            "readiness": gate(&pipeline.gate),
        })).collect::<Vec<_>>(),
    })
}

fn request_event(event: &RequestEvent) -> Value {
    let (kind, details) = match &event.kind {
        RequestEventKind::Admitted {
            correlation_id,
            pipeline,
            priority,
            source,
        } => (
            "admitted",
            json!({
                "correlation_id": correlation_id,
                "pipeline": pipeline,
                "priority": priority.as_str(),
                "source": source.as_str(),
            }),
        ),
        RequestEventKind::Rejected(reason) => ("rejected", json!({ "reason": reason.to_string() })),
        RequestEventKind::Started => ("started", json!({})),
        RequestEventKind::Paused => ("paused", json!({})),
        RequestEventKind::Resumed => ("resumed", json!({})),
        RequestEventKind::Answered(outcome) => ("answered", json!({ "outcome": outcome.as_str() })),
    };
    json!({ "id": event.id.0, "kind": kind, "details": details })
}

/// A kernel event as a server-sent event's name and data.
pub(crate) fn kernel_event(event: &KernelEvent) -> (&'static str, Value) {
    match event {
        KernelEvent::Service(event) => ("service", service_event(event)),
        KernelEvent::Pipeline { name, gate: state } => (
            "pipeline",
            json!({ "pipeline": name, "readiness": gate(state) }),
        ),
        KernelEvent::Request(event) => ("request", request_event(event)),
        KernelEvent::Lagged {
            missed,
            snapshot: state,
        } => (
            "lagged",
            json!({ "missed": missed, "snapshot": snapshot(state) }),
        ),
        KernelEvent::RequestsLagged { missed } => ("requests_lagged", json!({ "missed": missed })),
    }
}
