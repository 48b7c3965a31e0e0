//! Kernel values as the JSON the HTTP API speaks.

use serde_json::{Map, Value, json};
use spindle_scheduler::Outcome;

use crate::requests::{RequestAnswer, RequestPath};
use crate::status::StatusBoard;

fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
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
        Outcome::Error { message, transient } => {
            object.insert("error".into(), json!(message));
            object.insert("transient".into(), json!(transient));
        }
        Outcome::Timeout => {
            object.insert("error".into(), json!("the request ran past its deadline"));
        }
        Outcome::Rejected(reason) => {
            let text = match reason {
                spindle_scheduler::RejectReason::QueueFull => {
                    "busy: the queue for this priority is full"
                }
                spindle_scheduler::RejectReason::ShuttingDown => "the kernel is shutting down",
            };
            object.insert("error".into(), json!(text));
        }
        Outcome::Cancelled(reason) => {
            let text = match reason {
                spindle_scheduler::CancelReason::Caller => "cancelled by a caller",
                spindle_scheduler::CancelReason::Shutdown => "cancelled: the kernel shut down",
            };
            object.insert("error".into(), json!(text));
        }
    }
    object.insert("timings".into(), Value::Object(timings));
    Value::Object(object)
}

/// The status API: services, engines, scheduler and batchers.
pub(crate) async fn status(path: &RequestPath, board: &StatusBoard) -> Value {
    let services: Vec<Value> = board
        .snapshot()
        .iter()
        .map(|event| {
            json!({
                "name": event.service,
                "state": event.to.name(),
                "reason": event.reason,
                "pid": event.pid,
                "restarts": event.restarts,
            })
        })
        .collect();
    let engines: Vec<Value> = path
        .engines()
        .statuses()
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
    let stats = path.scheduler_stats().await;
    let counters = stats.counters;
    let batchers: Vec<Value> = path
        .batcher_stats()
        .await
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
            })
        })
        .collect();
    json!({
        "services": services,
        "engines": engines,
        "pipelines": path.pipeline_names(),
        "scheduler": {
            "queued": {
                "high": stats.queued.high,
                "medium": stats.queued.medium,
                "low": stats.queued.low,
            },
            "in_flight": stats.in_flight,
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
