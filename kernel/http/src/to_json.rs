//! Kernel values as the JSON the HTTP API speaks (see `docs/http.md`).

use serde_json::{Map, Value, json};
use spindle_kernel::{Kernel, LiveRequest, PipelineStatus, RequestAnswer, ServiceStatus};
use spindle_scheduler::{DeadlineState, Failure, Gate, Outcome};
use spindle_scripting::{PauseReason, RunState};

fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn unix_seconds(at: std::time::SystemTime) -> f64 {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (since.as_micros() as f64) / 1e6
}

/// `{"id", "correlation_id", "pipeline", "status", ...}` of one answer.
pub(crate) fn answer(answer: &RequestAnswer) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), json!(answer.id.0));
    object.insert("correlation_id".into(), json!(answer.correlation_id));
    object.insert("pipeline".into(), json!(answer.pipeline));
    object.insert("priority".into(), json!(answer.priority.as_str()));
    object.insert("status".into(), json!(answer.outcome.kind().as_str()));
    let mut timings = Map::new();
    timings.insert("queue_ms".into(), json!(millis(answer.queue_wait())));
    timings.insert("total_ms".into(), json!(millis(answer.latency())));
    match &answer.outcome {
        Outcome::Ok(result) => {
            object.insert("text".into(), json!(result.text));
            if let Some(vector) = &result.vector {
                object.insert("vector".into(), json!(vector));
            }
            if !result.fields.is_empty() {
                object.insert("fields".into(), json!(result.fields));
            }
            object.insert("degraded".into(), json!(result.degraded));
            object.insert("embed_fallback".into(), json!(result.embed_fallback));
            let stages: Map<String, Value> = result
                .stages
                .iter()
                .map(|(name, duration)| (name.clone(), json!(millis(*duration))))
                .collect();
            timings.insert("stages".into(), Value::Object(stages));
        }
        Outcome::Error(failure) => failure_fields(&mut object, failure),
        Outcome::Timeout => {
            object.insert("error".into(), json!("the request ran past its deadline"));
            object.insert("transient".into(), json!(true));
        }
        Outcome::Rejected(reason) => {
            object.insert("error".into(), json!(reason.to_string()));
            object.insert("transient".into(), json!(true));
        }
        Outcome::Cancelled(reason) => {
            object.insert("error".into(), json!(format!("cancelled {reason}")));
            object.insert("transient".into(), json!(false));
        }
    }
    object.insert("timings".into(), Value::Object(timings));
    Value::Object(object)
}

/// A failure's fields: the message, its class, whether a retry may help,
/// and the stage and script line it happened at.
fn failure_fields(object: &mut Map<String, Value>, failure: &Failure) {
    // The whole sentence (with the stage and script line) for people; the
    // parts as fields for programs.
    object.insert("error".into(), json!(failure.to_string()));
    object.insert("message".into(), json!(failure.message));
    object.insert("error_class".into(), json!(failure.class.as_str()));
    object.insert("transient".into(), json!(failure.is_transient()));
    if let Some(after) = failure.retry_after() {
        object.insert("retry_after_ms".into(), json!(after.as_millis() as u64));
    }
    if let Some(site) = &failure.site {
        object.insert("stage".into(), json!(site.stage));
        if !site.file.is_empty() {
            object.insert("file".into(), json!(site.file));
            object.insert("line".into(), json!(site.line));
        }
    }
}

fn gate(gate: &Gate) -> Value {
    match gate {
        Gate::Open => json!({ "state": "ready" }),
        Gate::Closed { reason } => json!({ "state": "waiting", "reason": reason }),
        Gate::Failed { reason } => json!({ "state": "failed", "reason": reason }),
    }
}

fn service(status: &ServiceStatus) -> Value {
    json!({
        "name": status.name,
        "kind": status.kind,
        "state": status.state.name(),
        "reason": status.reason,
        "pid": status.pid,
        "restarts": status.restarts,
        "since": unix_seconds(status.since),
        "availability": gate(&status.availability),
    })
}

fn pipeline(status: &PipelineStatus) -> Value {
    json!({
        "name": status.name,
        "needs": status.needs,
        "readiness": gate(&status.gate),
    })
}

/// Why a request is paused, as the status API spells it (the DAP
/// `stopped` reasons).
fn pause_reason(reason: PauseReason) -> &'static str {
    match reason {
        PauseReason::Breakpoint => "breakpoint",
        PauseReason::FunctionBreakpoint => "function breakpoint",
        PauseReason::Step => "step",
        PauseReason::Exception => "exception",
        PauseReason::Entry => "entry",
        // `Requested`, and whatever a newer host may add.
        _ => "pause",
    }
}

/// One live request: where it is, the Lua stage it runs, and its deadline
/// clock (stopped while a debugger holds it paused).
fn live_request(request: &LiveRequest) -> Value {
    let summary = &request.summary;
    let mut object = Map::new();
    object.insert("id".into(), json!(summary.id.0));
    object.insert("correlation_id".into(), json!(summary.correlation_id));
    object.insert("pipeline".into(), json!(summary.pipeline));
    object.insert("priority".into(), json!(summary.priority.as_str()));
    object.insert("source".into(), json!(summary.source.as_str()));
    object.insert("state".into(), json!(summary.state.as_str()));
    if let spindle_scheduler::RequestState::Waiting { reason } = &summary.state {
        object.insert("waiting_for".into(), json!(reason));
    }
    let deadline = match summary.deadline {
        DeadlineState::Running(at) => json!({
            "paused": false,
            "remaining_ms": at.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64,
        }),
        DeadlineState::Paused { remaining } => json!({
            "paused": true,
            "remaining_ms": remaining.as_millis() as u64,
        }),
    };
    object.insert("deadline".into(), deadline);
    if let Some(run) = &request.run {
        object.insert("stage".into(), json!(run.stage));
        let lua = match &run.state {
            RunState::Running => json!({ "state": "running" }),
            RunState::Waiting => json!({ "state": "waiting_on_effect" }),
            RunState::Paused(point) => json!({
                "state": "paused",
                "reason": pause_reason(point.reason),
                "file": point.file,
                "line": point.line,
            }),
        };
        object.insert("lua".into(), lua);
    }
    Value::Object(object)
}

/// `GET /v1/health/ready`: whether every pipeline can be served, and what
/// each one that cannot waits for.
pub(crate) fn readiness(kernel: &Kernel) -> (bool, Value) {
    if kernel.is_shutting_down() {
        return (
            false,
            json!({ "ready": false, "reason": "the kernel is shutting down" }),
        );
    }
    let readiness = kernel.readiness();
    let not_ready: Vec<Value> = readiness
        .not_ready
        .iter()
        .map(|(pipeline, reason)| json!({ "pipeline": pipeline, "reason": reason }))
        .collect();
    (
        readiness.ready,
        json!({ "ready": readiness.ready, "not_ready": not_ready }),
    )
}

/// The status API: services, pipelines, engines, scheduler and batchers.
pub(crate) async fn status(kernel: &Kernel) -> Value {
    let metrics = kernel.metrics().await;
    let engines: Vec<Value> = metrics
        .engines
        .iter()
        .map(|engine| {
            json!({
                "service": engine.service,
                "model": engine.model,
                "provider": engine.provider,
                "provider_fallback": engine.fallback,
                "dimensions": engine.dimensions,
                "max_tokens": engine.max_seq_length,
            })
        })
        .collect();
    let stats = metrics.scheduler;
    let counters = stats.counters;
    let batchers: Vec<Value> = metrics
        .batchers
        .iter()
        .map(|(service, batcher)| {
            json!({
                "service": service,
                "breaker": batcher.breaker.as_str(),
                "batches": batcher.batches,
                "items": batcher.items,
                "mean_batch_size": batcher.batch_size.mean(),
                "padding_ratio": batcher.overall_padding_ratio(),
                "queued": batcher.queued,
                "failed_batches": batcher.failed_batches,
                "unavailable_batches": batcher.unavailable_batches,
            })
        })
        .collect();
    let requests: Vec<Value> = kernel.requests().await.iter().map(live_request).collect();
    json!({
        "run_id": kernel.run_id(),
        "requests": requests,
        "services": metrics.services.iter().map(service).collect::<Vec<_>>(),
        "pipelines": kernel.pipelines().iter().map(pipeline).collect::<Vec<_>>(),
        "engines": engines,
        "scheduler": {
            "queued": {
                "high": stats.queued.high,
                "medium": stats.queued.medium,
                "low": stats.queued.low,
            },
            "in_flight": stats.in_flight,
            "paused": stats.paused,
            "submitted": counters.submitted,
            "ok": counters.ok,
            "error": counters.error,
            "timeout": counters.timeout,
            "rejected": counters.rejected,
            "cancelled": counters.cancelled,
        },
        "batchers": batchers,
    })
}
