//! A timeline applied to a kernel: each request submitted again (with its
//! recorded pipeline, text, priority, deadline, source and correlation id)
//! and each operation applied again, at the recorded times or as fast as
//! possible, and every answer compared with the recorded one.
//!
//! Order: a step is applied only after the one before it is in the kernel,
//! and a request is submitted only after every request whose recorded
//! answer came before its recorded admission has its answer in the replay
//! too: a client that waited for one answer before asking again (a
//! sequential client) is replayed as one, so that `--fast` does not turn
//! it into a flood the queues answer "busy".
//! Each request is admitted before the next step (`admit`), so that a
//! cancel that follows its request in the journal finds it queued or
//! running, in recorded and in fast timing alike.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use spindle_journal::{OperationRecord, OutcomeRecord};
use spindle_kernel::{Fault, Kernel, RequestAnswer, Submission, outcome_record};
use spindle_scheduler::{Priority, Source};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admit::{Admission, admit};
use crate::compare::{Difference, compare};
use crate::timeline::{RecordedRequest, Step, Timeline};

/// When the steps are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// At the recorded offsets from the start of the replay.
    Recorded,
    /// Each step as soon as the one before it is in the kernel.
    Fast,
}

/// How a replay runs and compares.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub timing: Timing,
    /// Vectors whose cosine to the recorded one is at least this are the
    /// same. Default 0.999.
    pub cosine_min: f32,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            timing: Timing::Recorded,
            cosine_min: 0.999,
        }
    }
}

/// One request of the timeline, replayed.
#[derive(Debug, Clone)]
pub struct ReplayedRequest {
    pub recorded: RecordedRequest,
    /// The replay's answer, as the journal would record it.
    pub outcome: OutcomeRecord,
    pub latency: Duration,
    /// Differences from the recorded answer; empty when it matched or when
    /// the journal has no recorded answer to compare with.
    pub differences: Vec<Difference>,
}

/// One operation of the timeline, applied again.
#[derive(Debug, Clone)]
pub struct OperationResult {
    pub operation: OperationRecord,
    /// What applying it said: `applied`, `skipped: ...` or the kernel's
    /// error.
    pub result: String,
}

/// Everything a replay found, in timeline order.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub requests: Vec<ReplayedRequest>,
    pub operations: Vec<OperationResult>,
}

impl ReplayReport {
    /// Requests whose answer differs from the recorded one.
    pub fn differing(&self) -> usize {
        self.requests
            .iter()
            .filter(|request| !request.differences.is_empty())
            .count()
    }

    /// Requests the journal had no answer for.
    pub fn unrecorded(&self) -> usize {
        self.requests
            .iter()
            .filter(|request| request.recorded.answered.is_none())
            .count()
    }
}

/// Applies `timeline` to `kernel` and waits for every answer. The kernel
/// keeps running; the caller shuts it down.
pub async fn replay(kernel: &Kernel, timeline: &Timeline, config: &ReplayConfig) -> ReplayReport {
    let start = Instant::now();
    let mut answers: JoinSet<(usize, RequestAnswer, Duration)> = JoinSet::new();
    let mut recorded_requests = Vec::new();
    let mut operations = Vec::new();
    // Requests in flight in the replay, by their recorded answer time.
    let mut outstanding: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut answered: Vec<watch::Receiver<bool>> = Vec::new();
    for step in &timeline.steps {
        if config.timing == Timing::Recorded {
            tokio::time::sleep_until(start + Duration::from_micros(step.at_us())).await;
        }
        match step {
            Step::Request(recorded) => {
                while let Some(Reverse((answer_us, earlier))) = outstanding.peek().copied() {
                    if answer_us > recorded.admitted.at_us {
                        break;
                    }
                    outstanding.pop();
                    let _ = answered[earlier].wait_for(|done| *done).await;
                }
                let index = recorded_requests.len();
                recorded_requests.push(RecordedRequest::clone(recorded));
                let (done, done_receiver) = watch::channel(false);
                answered.push(done_receiver);
                if let Some(answer) = &recorded.answered {
                    outstanding.push(Reverse((answer.at_us, index)));
                }
                let submitted = Instant::now();
                // Admitted before the next step (see the module documentation).
                match admit(kernel, submission_of(recorded)).await {
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
            }
            Step::Operation(operation) => {
                let result = apply(kernel, operation, timeline).await;
                operations.push(OperationResult {
                    operation: operation.clone(),
                    result,
                });
            }
        }
    }
    let mut replayed: Vec<Option<(RequestAnswer, Duration)>> = vec![None; recorded_requests.len()];
    while let Some(joined) = answers.join_next().await {
        match joined {
            Ok((index, answer, latency)) => replayed[index] = Some((answer, latency)),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => {}
        }
    }
    let requests = recorded_requests
        .into_iter()
        .zip(replayed)
        .map(|(recorded, replayed)| {
            let (outcome, latency) = match replayed {
                Some((answer, latency)) => (outcome_record(&answer.outcome), latency),
                None => (
                    OutcomeRecord::Cancelled {
                        reason: "the replay's runtime stopped".to_owned(),
                    },
                    Duration::ZERO,
                ),
            };
            let differences = match &recorded.answered {
                Some(answered) => compare(&answered.outcome, &outcome, config.cosine_min),
                None => Vec::new(),
            };
            ReplayedRequest {
                recorded,
                outcome,
                latency,
                differences,
            }
        })
        .collect();
    ReplayReport {
        requests,
        operations,
    }
}

fn submission_of(recorded: &RecordedRequest) -> Submission {
    let admitted = &recorded.admitted;
    Submission {
        pipeline: admitted.pipeline.clone(),
        text: admitted.text.clone(),
        priority: admitted.priority.parse().unwrap_or(Priority::Medium),
        deadline: admitted.deadline_us.map(Duration::from_micros),
        // Always given, so that a recorded cancel finds it again.
        correlation_id: Some(admitted.correlation_id.clone()),
        source: source_of(&admitted.source),
    }
}

fn source_of(source: &str) -> Source {
    match source {
        "http" => Source::Http,
        "netlink" => Source::Netlink,
        "jupyter" => Source::Jupyter,
        _ => Source::Scenario,
    }
}

async fn apply(kernel: &Kernel, operation: &OperationRecord, timeline: &Timeline) -> String {
    let service = operation.target.as_str();
    let done = |result: Result<(), spindle_kernel::KernelError>| match result {
        Ok(()) => "applied".to_owned(),
        Err(error) => error.to_string(),
    };
    match operation.operation.as_str() {
        "engine-fails" => {
            kernel.inject(Fault::EngineFails {
                service: service.to_owned(),
                batches: operation.count,
            });
            "applied".to_owned()
        }
        "engine-slow" => {
            kernel.inject(Fault::EngineSlow {
                service: service.to_owned(),
                delay: Duration::from_micros(operation.delay_us),
                batches: operation.count,
            });
            "applied".to_owned()
        }
        "restart" => done(kernel.restart_service(service).await),
        "stop" => done(kernel.stop_service(service).await),
        "start" => done(kernel.start_service(service).await),
        "recover" => done(kernel.recover_service(service).await),
        "cancel" => {
            // A cancel by numeric id names the recorded request; the
            // replayed one carries its recorded correlation id.
            let target = match operation.target.parse::<u64>() {
                Ok(id) => timeline
                    .requests()
                    .find(|request| request.admitted.id == id)
                    .map_or(operation.target.clone(), |request| {
                        request.admitted.correlation_id.clone()
                    }),
                Err(_) => operation.target.clone(),
            };
            match kernel.cancel(&target).await {
                true => "applied".to_owned(),
                false => "skipped: no such request is live".to_owned(),
            }
        }
        other => {
            format!("skipped: `{other}` is not replayed (the replay runs the script as it is now)")
        }
    }
}
