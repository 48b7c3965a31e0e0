//! `GET /metrics` in the Prometheus text format (version 0.0.4).

use std::fmt::Write;

use spindle_scheduler::{BreakerState, Histogram};

use spindle_kernel::Kernel;

pub(crate) async fn render(kernel: &Kernel) -> String {
    let metrics = kernel.metrics().await;
    let mut out = String::new();
    header(
        &mut out,
        "spindle_request_duration_seconds",
        "histogram",
        "Time from admission to answer, by pipeline, priority and outcome.",
    );
    for series in &metrics.latency {
        let key = &series.key;
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
            &series.histogram,
        );
    }

    let stats = &metrics.scheduler;
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

    let batchers = &metrics.batchers;
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
        for (service, batcher) in batchers {
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
    for (service, batcher) in batchers {
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
    for engine in &metrics.engines {
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
    for service in &metrics.services {
        let _ = writeln!(
            out,
            "spindle_service_restarts_total{{service=\"{}\"}} {}",
            escape(&service.name),
            service.restarts
        );
    }
    header(
        &mut out,
        "spindle_service_ready",
        "gauge",
        "1 while the service can take work (ready), else 0.",
    );
    for service in &metrics.services {
        let _ = writeln!(
            out,
            "spindle_service_ready{{service=\"{}\"}} {}",
            escape(&service.name),
            u8::from(service.availability.is_open())
        );
    }
    header(
        &mut out,
        "spindle_pipeline_ready",
        "gauge",
        "1 while every service the pipeline needs is ready, else 0.",
    );
    for pipeline in kernel.pipelines() {
        let _ = writeln!(
            out,
            "spindle_pipeline_ready{{pipeline=\"{}\"}} {}",
            escape(&pipeline.name),
            u8::from(pipeline.gate.is_open())
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
