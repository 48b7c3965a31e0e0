//! `GET /metrics` in the Prometheus text format (version 0.0.4).

use std::fmt::Write;

use spindle_scheduler::{BreakerState, Histogram};

use crate::requests::RequestPath;
use crate::status::StatusBoard;

pub(crate) async fn render(path: &RequestPath, board: &StatusBoard) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "spindle_request_duration_seconds",
        "histogram",
        "Time from admission to answer, by pipeline, priority and outcome.",
    );
    for (key, histogram) in path.metrics().latency() {
        let labels = format!(
            "pipeline=\"{}\",priority=\"{}\",outcome=\"{}\"",
            escape(&key.pipeline),
            key.priority,
            key.outcome
        );
        histogram_lines(
            &mut out,
            "spindle_request_duration_seconds",
            &labels,
            &histogram,
        );
    }

    let stats = path.scheduler_stats().await;
    header(
        &mut out,
        "spindle_requests_total",
        "counter",
        "Terminal answers by outcome (submitted counts every admission attempt).",
    );
    let counters = stats.counters;
    for (outcome, value) in [
        ("submitted", counters.submitted),
        ("ok", counters.ok),
        ("error", counters.error),
        ("timeout", counters.timeout),
        ("rejected", counters.rejected),
        ("cancelled", counters.cancelled),
    ] {
        let _ = writeln!(
            out,
            "spindle_requests_total{{outcome=\"{outcome}\"}} {value}"
        );
    }
    header(
        &mut out,
        "spindle_queue_depth",
        "gauge",
        "Requests waiting, by priority.",
    );
    for (priority, depth) in [
        ("high", stats.queued.high),
        ("medium", stats.queued.medium),
        ("low", stats.queued.low),
    ] {
        let _ = writeln!(
            out,
            "spindle_queue_depth{{priority=\"{priority}\"}} {depth}"
        );
    }
    header(
        &mut out,
        "spindle_in_flight",
        "gauge",
        "Requests running their pipeline.",
    );
    let _ = writeln!(out, "spindle_in_flight {}", stats.in_flight);

    let batchers = path.batcher_stats().await;
    for (name, kind, help) in [
        (
            "spindle_batch_size",
            "histogram",
            "Texts per embedding batch.",
        ),
        (
            "spindle_batch_padding_ratio",
            "histogram",
            "Real tokens over padded tokens per batch (1 = no padding).",
        ),
        (
            "spindle_batch_queue_wait_seconds",
            "histogram",
            "Time a text waited for its batch.",
        ),
    ] {
        header(&mut out, name, kind, help);
        for (service, batcher) in &batchers {
            let histogram = match name {
                "spindle_batch_size" => &batcher.batch_size,
                "spindle_batch_padding_ratio" => &batcher.padding_ratio,
                _ => &batcher.queue_wait,
            };
            let labels = format!("service=\"{}\"", escape(service));
            histogram_lines(&mut out, name, &labels, histogram);
        }
    }
    header(
        &mut out,
        "spindle_breaker_state",
        "gauge",
        "Circuit breaker state per embedding service (1 for the current state).",
    );
    for (service, batcher) in &batchers {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let _ = writeln!(
                out,
                "spindle_breaker_state{{service=\"{}\",state=\"{}\"}} {}",
                escape(service),
                state.as_str(),
                u8::from(batcher.breaker == state)
            );
        }
    }
    header(
        &mut out,
        "spindle_engine_info",
        "gauge",
        "Embedding engines that are up, with the provider they really run on.",
    );
    for engine in path.engines().statuses() {
        let _ = writeln!(
            out,
            "spindle_engine_info{{service=\"{}\",model=\"{}\",provider=\"{}\"}} 1",
            escape(&engine.service),
            escape(&engine.model),
            engine.provider
        );
    }
    header(
        &mut out,
        "spindle_service_restarts_total",
        "counter",
        "Restarts of each service after failures.",
    );
    for event in board.snapshot() {
        let _ = writeln!(
            out,
            "spindle_service_restarts_total{{service=\"{}\",state=\"{}\"}} {}",
            escape(&event.service),
            event.to.name(),
            event.restarts
        );
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram_lines(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    for (bound, count) in histogram.cumulative() {
        let le = if bound.is_infinite() {
            "+Inf".to_owned()
        } else {
            format!("{bound}")
        };
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum());
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count());
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
