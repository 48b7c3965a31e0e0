//! The kernel's values as [`Data`] for cells: a request's answer, the
//! services and pipelines, the status, the metrics, the service graph with
//! its startup waves. One small function per value.

use std::collections::HashMap;

use spindle_kernel::{
    Kernel, LiveRequest, MetricsSnapshot, PipelineStatus, RequestAnswer, ServiceStatus,
};
use spindle_scheduler::{Gate, Outcome};
use spindle_scripting::{Data, GraphSpec};

fn ms(duration: std::time::Duration) -> Data {
    Data::Number(duration.as_secs_f64() * 1000.0)
}

/// What applying a graph changed, of kind `spindle.apply`.
pub fn apply_report(report: &spindle_kernel::supervisor::ApplyReport) -> Data {
    let names = |names: &[String]| Data::list(names.iter().map(Data::text).collect());
    Data::record(
        Some("spindle.apply"),
        vec![
            ("added", names(&report.added)),
            ("changed", names(&report.changed)),
            ("removed", names(&report.removed)),
            ("unchanged", names(&report.unchanged)),
        ],
    )
}

/// A request's one answer, of kind `spindle.answer`.
pub fn answer(answer: &RequestAnswer) -> Data {
    let mut fields = vec![
        ("outcome", Data::text(answer.outcome.kind().as_str())),
        ("id", Data::Integer(answer.id.0 as i64)),
        ("correlation_id", Data::text(answer.correlation_id.clone())),
        ("pipeline", Data::text(answer.pipeline.clone())),
        ("priority", Data::text(answer.priority.as_str())),
        ("latency_ms", ms(answer.latency())),
        ("queue_ms", ms(answer.queue_wait())),
    ];
    match &answer.outcome {
        Outcome::Ok(result) => {
            fields.push(("text", Data::text(result.text.clone())));
            if let Some(vector) = &result.vector {
                fields.push(("vector", Data::Vector(vector.clone())));
            }
            fields.push((
                "fields",
                Data::record(
                    None,
                    result
                        .fields
                        .iter()
                        .map(|(key, value)| (key.as_str(), Data::text(value.clone())))
                        .collect(),
                ),
            ));
            fields.push((
                "stages",
                Data::list(
                    result
                        .stages
                        .iter()
                        .map(|(name, duration)| {
                            Data::record(
                                None,
                                vec![("name", Data::text(name.clone())), ("ms", ms(*duration))],
                            )
                        })
                        .collect(),
                ),
            ));
            fields.push(("degraded", Data::Boolean(result.degraded)));
        }
        Outcome::Error(failure) => fields.push(("error", Data::text(failure.to_string()))),
        Outcome::Timeout => fields.push(("error", Data::text("the request ran past its deadline"))),
        Outcome::Rejected(reason) => fields.push(("error", Data::text(reason.to_string()))),
        Outcome::Cancelled(reason) => {
            fields.push(("error", Data::text(format!("cancelled {reason}"))));
        }
    }
    Data::record(Some("spindle.answer"), fields)
}

/// Each service's startup wave: 0 without dependencies, else one more
/// than its latest dependency.
pub fn waves(graph: &GraphSpec) -> HashMap<String, i64> {
    let mut waves: HashMap<String, i64> = HashMap::new();
    // Declaration order need not be dependency order: settle in rounds
    // (a graph with a cycle never starts, so rounds are bounded).
    for _ in 0..=graph.services.len() {
        let mut changed = false;
        for service in &graph.services {
            let wave = service
                .depends_on
                .iter()
                .map(|dependency| waves.get(&dependency.service).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            if waves.get(&service.name) != Some(&wave) {
                waves.insert(service.name.clone(), wave);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    waves
}

fn gate_fields(gate: &Gate) -> (bool, String) {
    match gate {
        Gate::Open => (true, String::new()),
        Gate::Closed { reason } => (false, reason.clone()),
        Gate::Failed { reason } => (false, format!("failed: {reason}")),
    }
}

/// Services with their kind, state, wave and dependencies.
pub fn services(kernel: &Kernel, statuses: &[ServiceStatus]) -> Data {
    let graph = kernel.graph();
    let waves = waves(&graph);
    Data::list(
        statuses
            .iter()
            .map(|status| {
                let depends_on = graph
                    .services
                    .iter()
                    .find(|service| service.name == status.name)
                    .map(|service| {
                        service
                            .depends_on
                            .iter()
                            .map(|dependency| Data::text(dependency.service.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                Data::record(
                    None,
                    vec![
                        ("name", Data::text(status.name.clone())),
                        ("kind", Data::text(status.kind)),
                        ("state", Data::text(status.state.to_string())),
                        (
                            "wave",
                            Data::Integer(waves.get(&status.name).copied().unwrap_or(0) + 1),
                        ),
                        ("restarts", Data::Integer(i64::from(status.restarts))),
                        ("reason", Data::text(status.reason.clone())),
                        ("depends_on", Data::list(depends_on)),
                    ],
                )
            })
            .collect(),
    )
}

/// Pipelines with whether they can be served and why not.
pub fn pipelines(statuses: &[PipelineStatus]) -> Data {
    Data::list(
        statuses
            .iter()
            .map(|status| {
                let (ready, reason) = gate_fields(&status.gate);
                Data::record(
                    None,
                    vec![
                        ("name", Data::text(status.name.clone())),
                        ("ready", Data::Boolean(ready)),
                        ("reason", Data::text(reason)),
                        (
                            "needs",
                            Data::list(
                                status
                                    .needs
                                    .iter()
                                    .map(|name| Data::text(name.clone()))
                                    .collect(),
                            ),
                        ),
                    ],
                )
            })
            .collect(),
    )
}

/// The service graph (kind `spindle.graph`), drawn by `s.display`.
pub fn service_graph(kernel: &Kernel) -> Data {
    let services = services(kernel, &kernel.services());
    let waves_zero_based = match services {
        Data::Table {
            kind: _,
            entries,
            truncated,
        } => Data::Table {
            kind: None,
            entries: entries
                .into_iter()
                .map(|(key, service)| (key, shift_wave(service)))
                .collect(),
            truncated,
        },
        other => other,
    };
    Data::record(
        Some("spindle.graph"),
        vec![
            ("services", waves_zero_based),
            ("pipelines", pipelines(&kernel.pipelines())),
        ],
    )
}

/// The drawing counts waves from 0.
fn shift_wave(service: Data) -> Data {
    let Data::Table {
        kind,
        entries,
        truncated,
    } = service
    else {
        return service;
    };
    let entries = entries
        .into_iter()
        .map(|(key, value)| match (&key, &value) {
            (Data::String(name), Data::Integer(wave)) if name == "wave" => {
                (key, Data::Integer(wave - 1))
            }
            _ => (key, value),
        })
        .collect();
    Data::Table {
        kind,
        entries,
        truncated,
    }
}

fn live_requests(requests: &[LiveRequest]) -> Data {
    Data::list(
        requests
            .iter()
            .map(|request| {
                let mut fields = vec![
                    ("id", Data::Integer(request.summary.id.0 as i64)),
                    ("pipeline", Data::text(request.summary.pipeline.clone())),
                    ("priority", Data::text(request.summary.priority.as_str())),
                    (
                        "state",
                        Data::text(format!("{:?}", request.summary.state).to_lowercase()),
                    ),
                ];
                if let Some(run) = &request.run {
                    fields.push(("stage", Data::text(run.stage.clone())));
                }
                Data::record(None, fields)
            })
            .collect(),
    )
}

/// Run id, readiness, services, pipelines and live requests.
pub async fn status(kernel: &Kernel) -> Data {
    let readiness = kernel.readiness();
    let requests = kernel.requests().await;
    Data::record(
        None,
        vec![
            ("run_id", Data::text(kernel.run_id())),
            ("ready", Data::Boolean(readiness.ready)),
            (
                "reasons",
                Data::list(
                    readiness
                        .not_ready
                        .iter()
                        .map(|(pipeline, reason)| Data::text(format!("{pipeline}: {reason}")))
                        .collect(),
                ),
            ),
            ("services", services(kernel, &kernel.services())),
            ("pipelines", pipelines(&kernel.pipelines())),
            ("requests", live_requests(&requests)),
        ],
    )
}

/// Counters and latency quantiles by pipeline, priority and outcome.
pub fn metrics(snapshot: &MetricsSnapshot) -> Data {
    let counters = &snapshot.scheduler.counters;
    let latency = snapshot
        .latency
        .iter()
        .map(|series| {
            let quantile = |q: f64| Data::Number(series.histogram.quantile_upper_bound(q) * 1000.0);
            Data::record(
                None,
                vec![
                    ("pipeline", Data::text(series.key.pipeline.clone())),
                    ("priority", Data::text(series.key.priority)),
                    ("outcome", Data::text(series.key.outcome)),
                    ("count", Data::Integer(series.histogram.count() as i64)),
                    ("mean_ms", Data::Number(series.histogram.mean() * 1000.0)),
                    ("p50_ms", quantile(0.5)),
                    ("p90_ms", quantile(0.9)),
                    ("p99_ms", quantile(0.99)),
                ],
            )
        })
        .collect();
    Data::record(
        None,
        vec![
            ("submitted", Data::Integer(counters.submitted as i64)),
            ("ok", Data::Integer(counters.ok as i64)),
            ("errors", Data::Integer(counters.error as i64)),
            ("timeouts", Data::Integer(counters.timeout as i64)),
            ("rejected", Data::Integer(counters.rejected as i64)),
            ("cancelled", Data::Integer(counters.cancelled as i64)),
            (
                "in_flight",
                Data::Integer(snapshot.scheduler.in_flight as i64),
            ),
            ("latency", Data::list(latency)),
        ],
    )
}
