//! A scenario applied to a kernel: its steps in timeline order, every
//! answer and every event collected, then its expectations checked
//! (`scenario_expect`).
//!
//! Time is virtual. The kernel cannot run on a paused clock (its services
//! are processes, its Lua runs on a thread of its own and its embeddings on
//! ONNX Runtime's threads: a paused tokio clock would jump ahead while they
//! work and fire every deadline), so a step's `at` only orders the steps:
//! each step is applied as soon as the one before it is in the kernel (a
//! request admitted, an operation answered), and a scenario that needs
//! something to have happened says so with a `wait` on an event (a
//! service's state, a pipeline's gate, an answer). Only `wait { at_least }`
//! touches the real clock, and only to let a timer of the kernel itself
//! run out (a breaker's `open_for`): it waits at least that long, so what
//! follows is the same however loaded the machine is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spindle_journal::OutcomeRecord;
use spindle_kernel::{
    Fault, Kernel, KernelEvent, KernelSubscription, RequestAnswer, RequestPathConfig, Submission,
    outcome_record,
};
use spindle_scheduler::{Gate, Outcome, Priority, RejectReason, RequestEventKind, Source};
use spindle_scripting::scenario::{Action, ExpectKind, ScenarioSettings, ScenarioSpec};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admit::{Admission, admit};
use crate::scenario_expect::{ExpectationResult, check_expectations};

/// The request path's settings for `settings`, on top of `base`.
pub fn request_path_config(
    settings: &ScenarioSettings,
    base: RequestPathConfig,
) -> RequestPathConfig {
    let mut config = base;
    let scheduler = &mut config.scheduler;
    if let Some(in_flight) = settings.in_flight {
        scheduler.max_in_flight = in_flight.max(1);
        scheduler.reserved_for_high = scheduler.reserved_for_high.min(in_flight.saturating_sub(1));
    }
    if let Some(reserved) = settings.reserved_for_high {
        scheduler.reserved_for_high = reserved.min(scheduler.max_in_flight.saturating_sub(1));
    }
    let [high, medium, low] = settings.queue;
    if let Some(high) = high {
        scheduler.capacity.high = high;
    }
    if let Some(medium) = medium {
        scheduler.capacity.medium = medium;
    }
    if let Some(low) = low {
        scheduler.capacity.low = low;
    }
    if let Some(failures) = settings.breaker_failures {
        config.breaker.failure_threshold = failures.max(1);
        // Consecutive failures only: the ratio rule would open it on its own.
        config.breaker.failure_ratio = None;
    }
    if let Some(open_for) = settings.breaker_open_for {
        config.breaker.open_for = open_for;
    }
    if let Some(attempts) = settings.attempts {
        config.retry.max_attempts = attempts.max(1);
    }
    config
}

/// One thing that happened, as a scenario names it.
#[derive(Debug, Clone, PartialEq)]
pub enum LoggedEvent {
    Service {
        service: String,
        state: String,
        restarts: u32,
    },
    Pipeline {
        pipeline: String,
        gate: String,
    },
    /// `name` is the request's correlation id (its name in the scenario).
    Request {
        name: String,
        event: &'static str,
    },
    /// The collector fell behind and missed events (a flood of more
    /// requests than the event buffer holds).
    Missed(u64),
}

impl LoggedEvent {
    /// The event as `sc.expect_order` writes it.
    pub fn words(&self) -> String {
        match self {
            LoggedEvent::Service { service, state, .. } => format!("{service} {state}"),
            LoggedEvent::Pipeline { pipeline, gate } => format!("pipeline {pipeline} {gate}"),
            LoggedEvent::Request { name, event } => format!("request {name} {event}"),
            LoggedEvent::Missed(missed) => format!("missed {missed}"),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub line: u32,
    /// The step in words (`request first ingest high "hello"`).
    pub what: String,
    /// `done`, `submitted`, or what went wrong.
    pub result: String,
}

/// One request of the scenario and its answer.
#[derive(Debug, Clone)]
pub struct ScenarioAnswer {
    pub name: String,
    pub pipeline: String,
    pub priority: String,
    pub text: String,
    pub outcome: OutcomeRecord,
    /// Admission to answer (for latency ratios; never printed).
    pub latency: Duration,
}

/// A service at the end of the timeline (before shutdown).
#[derive(Debug, Clone)]
pub struct ServiceAtEnd {
    pub service: String,
    pub state: String,
    pub restarts: u32,
}

/// Everything a scenario run found.
#[derive(Debug, Clone, Default)]
pub struct ScenarioReport {
    pub steps: Vec<StepResult>,
    pub requests: Vec<ScenarioAnswer>,
    pub services_at_end: Vec<ServiceAtEnd>,
    /// Every event, in the order the kernel published them (shutdown
    /// included).
    pub events: Vec<LoggedEvent>,
    /// For `similar` expectations: (request, reference text) → cosine.
    pub similarities: Vec<(String, String, Option<f32>)>,
    pub expectations: Vec<ExpectationResult>,
}

impl ScenarioReport {
    pub fn failed(&self) -> usize {
        self.expectations
            .iter()
            .filter(|result| result.failure.is_some())
            .count()
    }
}

/// The events so far, shared by the collector and the steps that wait.
type EventLog = watch::Sender<Vec<LoggedEvent>>;

/// Runs `scenario` on `kernel` (started on the scenario's file with
/// [`request_path_config`]; `subscription` taken with request events right
/// after the start, before anything awaited), shuts the kernel down, waits
/// for it and checks the expectations.
pub async fn run_scenario(
    kernel: &Kernel,
    subscription: KernelSubscription,
    scenario: &ScenarioSpec,
) -> ScenarioReport {
    let (log, _) = watch::channel(Vec::new());
    let log = Arc::new(log);
    let (stop_collecting, stop_receiver) = watch::channel(false);
    let collector = tokio::spawn(collect(subscription, log.clone(), stop_receiver));
    let wait_limit = scenario
        .settings
        .wait_limit
        .unwrap_or(Duration::from_secs(60));

    let mut report = ScenarioReport::default();
    let mut answers: JoinSet<(usize, RequestAnswer, Duration)> = JoinSet::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut answered: Vec<watch::Receiver<bool>> = Vec::new();
    // Each fill: how many it queued, which queue; then their answers.
    let mut fills: Vec<(usize, String)> = Vec::new();
    let mut fill_answers: JoinSet<(usize, OutcomeRecord)> = JoinSet::new();
    let mut mark = 0;
    for step in &scenario.steps {
        let step_began = log.borrow().len();
        let (what, result) = match &step.action {
            Action::Request(request) => {
                let index = report.requests.len();
                names.insert(request.name.clone(), index);
                report.requests.push(ScenarioAnswer {
                    name: request.name.clone(),
                    pipeline: request.pipeline.clone(),
                    priority: request.priority.clone(),
                    text: request.text.clone(),
                    outcome: OutcomeRecord::Cancelled {
                        reason: "the scenario's runtime stopped".to_owned(),
                    },
                    latency: Duration::ZERO,
                });
                let (done, done_receiver) = watch::channel(false);
                answered.push(done_receiver);
                let submission = Submission {
                    pipeline: request.pipeline.clone(),
                    text: request.text.clone(),
                    priority: request.priority.parse().unwrap_or(Priority::Medium),
                    deadline: request.deadline,
                    correlation_id: Some(request.name.clone()),
                    source: Source::Scenario,
                };
                let submitted = Instant::now();
                match admit(kernel, submission).await {
                    Admission::Answered(answer) => {
                        let _ = done.send(true);
                        answers.spawn(async move { (index, answer, submitted.elapsed()) });
                    }
                    Admission::Admitted(pending) => {
                        answers.spawn(async move {
                            let answer = pending.await;
                            let _ = done.send(true);
                            (index, answer, submitted.elapsed())
                        });
                    }
                }
                (
                    format!(
                        "request {} to {} priority={} text={:?}",
                        request.name, request.pipeline, request.priority, request.text
                    ),
                    "submitted".to_owned(),
                )
            }
            Action::WaitService { service, state } => (
                format!("wait for {service} {state}"),
                wait_for_event(&log, mark, wait_limit, |event| {
                    matches!(event, LoggedEvent::Service { service: s, state: t, .. }
                        if s == service && t == state)
                })
                .await,
            ),
            Action::WaitPipeline { pipeline, gate } => (
                format!("wait for pipeline {pipeline} {gate}"),
                wait_for_event(&log, mark, wait_limit, |event| {
                    matches!(event, LoggedEvent::Pipeline { pipeline: p, gate: g }
                        if p == pipeline && g == gate)
                })
                .await,
            ),
            Action::WaitAnswer { request } => {
                let what = format!("wait for the answer to {request}");
                let result = match names.get(request) {
                    Some(&index) => {
                        let mut receiver = answered[index].clone();
                        match tokio::time::timeout(wait_limit, receiver.wait_for(|done| *done))
                            .await
                        {
                            Ok(_) => "done".to_owned(),
                            Err(_) => format!("no answer within {wait_limit:?}"),
                        }
                    }
                    None => format!("{request} comes later in the timeline: nothing to wait for"),
                };
                (what, result)
            }
            Action::WaitAtLeast(duration) => {
                tokio::time::sleep(*duration).await;
                (format!("wait at least {duration:?}"), "done".to_owned())
            }
            Action::Kill { service } => (format!("kill {service}"), kill(kernel, service).await),
            Action::EngineFails { service, batches } => {
                kernel.inject(Fault::EngineFails {
                    service: service.clone(),
                    batches: *batches,
                });
                (
                    format!("fault: {service} fails its next {batches} batch(es)"),
                    "done".to_owned(),
                )
            }
            Action::EngineSlow {
                service,
                delay,
                batches,
            } => {
                kernel.inject(Fault::EngineSlow {
                    service: service.clone(),
                    delay: *delay,
                    batches: *batches,
                });
                (
                    format!("fault: {service} answers its next {batches} batch(es) {delay:?} late"),
                    "done".to_owned(),
                )
            }
            Action::Fill {
                pipeline,
                priority,
                text,
            } => {
                let number = fills.len();
                let (queued, result) =
                    fill(kernel, pipeline, priority, text, number, &mut fill_answers).await;
                fills.push((queued, format!("{pipeline}/{priority}")));
                (format!("fill the {priority} queue of {pipeline}"), result)
            }
            Action::Cancel { request } => (
                format!("cancel {request}"),
                match kernel.cancel(request).await {
                    true => "done".to_owned(),
                    false => "no such request is live".to_owned(),
                },
            ),
            Action::Service { command, service } => {
                let result = match command.as_str() {
                    "restart" => kernel.restart_service(service).await,
                    "stop" => kernel.stop_service(service).await,
                    "start" => kernel.start_service(service).await,
                    _ => kernel.recover_service(service).await,
                };
                (
                    format!("{command} {service}"),
                    result.map_or_else(|error| error.to_string(), |()| "done".to_owned()),
                )
            }
            Action::Reload { script } => {
                let name = script
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    format!("reload to {name}"),
                    match kernel.reload_from(script).await {
                        Ok(_) => "done".to_owned(),
                        Err(error) => first_line(&error.to_string()),
                    },
                )
            }
        };
        mark = step_began;
        report.steps.push(StepResult {
            line: step.line,
            what,
            result,
        });
    }

    // Every answer, then what the expectations need from the live kernel.
    while let Some(joined) = answers.join_next().await {
        match joined {
            Ok((index, answer, latency)) => {
                report.requests[index].outcome = outcome_record(&answer.outcome);
                report.requests[index].latency = latency;
            }
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => {}
        }
    }
    let mut fill_outcomes: Vec<Vec<OutcomeRecord>> = vec![Vec::new(); fills.len()];
    while let Some(joined) = fill_answers.join_next().await {
        if let Ok((number, outcome)) = joined {
            fill_outcomes[number].push(outcome);
        }
    }
    for ((queued, queue), outcomes) in fills.iter().zip(&fill_outcomes) {
        report.steps.push(StepResult {
            line: 0,
            what: format!("the {queued} request(s) that filled {queue}"),
            result: outcome_counts(outcomes),
        });
    }
    report.services_at_end = kernel
        .services()
        .into_iter()
        .map(|status| ServiceAtEnd {
            service: status.name,
            state: status.state.name().to_owned(),
            restarts: status.restarts,
        })
        .collect();
    report.similarities = similarities(kernel, scenario, &report.requests).await;

    kernel.shutdown();
    let _ = kernel.wait().await;
    let _ = stop_collecting.send(true);
    let _ = collector.await;
    report.events = log.borrow().clone();
    report.expectations = check_expectations(scenario, &report);
    report
}

/// Reads the kernel's events into the log until told to stop; then takes
/// what is already delivered and returns.
async fn collect(
    mut subscription: KernelSubscription,
    log: Arc<EventLog>,
    mut stop: watch::Receiver<bool>,
) {
    let mut names: HashMap<u64, String> = HashMap::new();
    loop {
        let event = tokio::select! {
            biased;
            event = subscription.recv() => event,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match event {
            Some(event) => record(&log, &mut names, event),
            None => return,
        }
    }
    // The kernel has stopped: everything it published is in the
    // subscription's buffers. Take it without waiting.
    loop {
        let next = tokio::select! {
            biased;
            event = subscription.recv() => event,
            () = std::future::ready(()) => None,
        };
        match next {
            Some(event) => record(&log, &mut names, event),
            None => return,
        }
    }
}

fn record(log: &EventLog, names: &mut HashMap<u64, String>, event: KernelEvent) {
    let logged = match event {
        KernelEvent::Service(event) => LoggedEvent::Service {
            service: event.service,
            state: event.to.name().to_owned(),
            restarts: event.restarts,
        },
        KernelEvent::Pipeline { name, gate } => LoggedEvent::Pipeline {
            pipeline: name,
            gate: match gate {
                Gate::Open => "open",
                Gate::Closed { .. } => "closed",
                Gate::Failed { .. } => "failed",
            }
            .to_owned(),
        },
        KernelEvent::Request(request) => {
            let id = request.id.0;
            let event = match request.kind {
                RequestEventKind::Admitted { correlation_id, .. } => {
                    names.insert(id, correlation_id);
                    "admitted"
                }
                RequestEventKind::Rejected(_) => "rejected",
                RequestEventKind::Started => "started",
                RequestEventKind::Paused => "paused",
                RequestEventKind::Resumed => "resumed",
                RequestEventKind::Answered(_) => "answered",
            };
            let name = match event {
                "answered" | "rejected" => names.remove(&id),
                _ => names.get(&id).cloned(),
            };
            LoggedEvent::Request {
                name: name.unwrap_or_else(|| format!("#{id}")),
                event,
            }
        }
        KernelEvent::Lagged { missed, .. } | KernelEvent::RequestsLagged { missed } => {
            LoggedEvent::Missed(missed)
        }
    };
    log.send_modify(|log| log.push(logged));
}

/// Waits until an event at or after `from` matches.
async fn wait_for_event(
    log: &EventLog,
    from: usize,
    limit: Duration,
    matches: impl Fn(&LoggedEvent) -> bool,
) -> String {
    let mut receiver = log.subscribe();
    let found = tokio::time::timeout(
        limit,
        receiver.wait_for(|events| events.iter().skip(from).any(&matches)),
    )
    .await;
    match found {
        Ok(Ok(_)) => "done".to_owned(),
        Ok(Err(_)) => "the kernel stopped first".to_owned(),
        Err(_) => format!("did not happen within {limit:?}"),
    }
}

/// SIGKILL to the service's process, by the system's `kill`: a crash as
/// the supervisor sees it.
async fn kill(kernel: &Kernel, service: &str) -> String {
    let Some(detail) = kernel.service(service) else {
        return format!("no service `{service}`");
    };
    let Some(pid) = detail.status.pid else {
        return format!("{service} has no process now ({})", detail.status.state);
    };
    match tokio::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .await
    {
        Ok(status) if status.success() => "done".to_owned(),
        Ok(status) => format!("kill failed ({status})"),
        Err(error) => format!("cannot run kill: {error}"),
    }
}

/// Submits requests until the queue answers "busy" (or 100,000 were
/// taken: the queue is being served, it cannot fill).
async fn fill(
    kernel: &Kernel,
    pipeline: &str,
    priority: &str,
    text: &str,
    number: usize,
    answers: &mut JoinSet<(usize, OutcomeRecord)>,
) -> (usize, String) {
    const MOST: usize = 100_000;
    for queued in 0..MOST {
        let submission = Submission {
            pipeline: pipeline.to_owned(),
            text: text.to_owned(),
            priority: priority.parse().unwrap_or(Priority::Medium),
            deadline: None,
            correlation_id: Some(format!("fill-{}-{}", number + 1, queued + 1)),
            source: Source::Scenario,
        };
        match admit(kernel, submission).await {
            Admission::Answered(answer) => {
                return match answer.outcome {
                    Outcome::Rejected(RejectReason::QueueFull) => {
                        (queued, format!("{queued} queued, then busy"))
                    }
                    other => (
                        queued,
                        format!(
                            "{queued} queued, then {}",
                            crate::transcript::outcome_words(&outcome_record(&other))
                        ),
                    ),
                };
            }
            Admission::Admitted(pending) => {
                answers.spawn(async move { (number, outcome_record(&pending.await.outcome)) });
            }
        }
    }
    (
        MOST,
        format!("{MOST} queued and never busy: the queue is being served"),
    )
}

/// `3 ok, 1 cancelled`, in a fixed order of outcomes.
fn outcome_counts(outcomes: &[OutcomeRecord]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for kind in ["ok", "error", "timeout", "rejected", "cancelled"] {
        let count = outcomes
            .iter()
            .filter(|outcome| outcome.kind() == kind)
            .count();
        if count > 0 {
            counts.push((kind, count));
        }
    }
    match counts.is_empty() {
        true => "none".to_owned(),
        false => counts
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Each `similar` expectation's reference text through the request's
/// pipeline, and its cosine to the request's vector.
async fn similarities(
    kernel: &Kernel,
    scenario: &ScenarioSpec,
    requests: &[ScenarioAnswer],
) -> Vec<(String, String, Option<f32>)> {
    let mut found = Vec::new();
    for (number, expectation) in scenario.expectations.iter().enumerate() {
        let ExpectKind::Answer(answer) = &expectation.kind else {
            continue;
        };
        let Some(similar) = &answer.similar else {
            continue;
        };
        let Some(request) = requests.iter().find(|r| r.name == answer.request) else {
            continue;
        };
        let OutcomeRecord::Ok {
            vector: Some(vector),
            ..
        } = &request.outcome
        else {
            found.push((answer.request.clone(), similar.text.clone(), None));
            continue;
        };
        let reference = kernel
            .submit(Submission {
                pipeline: request.pipeline.clone(),
                text: similar.text.clone(),
                priority: Priority::High,
                deadline: None,
                correlation_id: Some(format!("similar-{}", number + 1)),
                source: Source::Scenario,
            })
            .await;
        let cosine = match outcome_record(&reference.outcome) {
            OutcomeRecord::Ok {
                vector: Some(reference),
                ..
            } => crate::compare::cosine(vector, &reference),
            _ => None,
        };
        found.push((answer.request.clone(), similar.text.clone(), cosine));
    }
    found
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use spindle_kernel::supervisor::ServiceState;

    /// Every state, in declaration order; the match fails to compile when
    /// the kernel gains a state the scenario language does not know.
    fn all_states() -> Vec<ServiceState> {
        use ServiceState::*;
        let states = [
            Pending, Starting, Running, Ready, Unhealthy, Stopping, Stopped, Exited, Failed,
            Restarting, BackingOff, GaveUp,
        ];
        for state in states {
            match state {
                Pending | Starting | Running | Ready | Unhealthy | Stopping | Stopped | Exited
                | Failed | Restarting | BackingOff | GaveUp => {}
            }
        }
        states.to_vec()
    }

    #[test]
    fn the_scenario_language_knows_every_service_state() {
        let names: Vec<&str> = all_states().into_iter().map(ServiceState::name).collect();
        assert_eq!(names, spindle_scripting::scenario::SERVICE_STATES);
    }
}
