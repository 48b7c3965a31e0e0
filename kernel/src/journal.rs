//! The kernel's side of the session journal: kernel values turned into
//! [`spindle_journal::Record`]s at the places they happen.
//!
//! - Requests: [`RequestJournal`] is called by the request path around each
//!   submission: the admission when the scheduler has taken the request
//!   (before its answer, so a crash keeps what was in flight), then each
//!   stage it ran (timing, and `req` after it or its error; the runner
//!   keeps them in the request's `StageLog`) and the one answer. These
//!   sends wait when the writer is behind (back-pressure); a request is
//!   never left out.
//! - Services and pipelines: [`follow_events`] is a subscriber of the event
//!   hub like any front end. The hub never waits for it; when it falls
//!   behind it gets `Lagged` with a snapshot, written as a gap record with
//!   the count it missed.
//! - Operations: faults, cancels and service commands through the
//!   `Kernel` handle, so that a replay can apply them again.
//!
//! Knows the journal crate's records and the kernel's types; no file
//! format (that is `spindle-journal`) and no JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant as StdInstant;

use spindle_journal::{
    Admitted, Answered, GapRecord, JournalHandle, OperationRecord, OutcomeRecord, PipelineRecord,
    Record, ServiceRecord, StageRecord,
};
use spindle_scheduler::{Gate, Outcome, RequestId};
use spindle_scripting::{PipelineAnswer, StageTrace};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::{KernelEvent, KernelSubscription};
use crate::faults::Fault;
use crate::requests::{RequestAnswer, Submission};

/// Records requests for the request path; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct RequestJournal {
    handle: JournalHandle,
    /// Records being made by tasks of their own (answers, operations),
    /// which [`RequestJournal::finish`] waits for.
    pending: PendingWrites,
}

impl RequestJournal {
    pub(crate) fn new(handle: JournalHandle) -> RequestJournal {
        RequestJournal {
            handle,
            pending: PendingWrites::default(),
        }
    }

    /// Marks records about to be made by a task of its own; hold the
    /// guard until they are sent. Taken before the request's answer can
    /// exist, so that a kernel whose requests are all answered has counted
    /// every answer still to be journaled.
    pub(crate) fn writing(&self) -> PendingGuard {
        self.pending.enter()
    }

    /// Waits until every record counted by [`RequestJournal::writing`] is
    /// sent, then until the writer has written everything sent before.
    /// `Kernel::wait` calls it once the request path has stopped; the
    /// event follower ending is not enough (a graph without services ends
    /// its event stream at once, long before its last request).
    pub(crate) async fn finish(&self) {
        self.pending.idle().await;
        self.handle.flush().await;
    }

    pub(crate) fn handle(&self) -> &JournalHandle {
        &self.handle
    }

    /// The journal's clock now; taken just before a request is submitted,
    /// so that its admission is never later than its first stage (which
    /// may start on another thread before `admitted` is called).
    pub(crate) fn now_us(&self) -> u64 {
        self.handle.now_us()
    }

    /// The request `id` was taken by the scheduler; `at_us` from
    /// [`RequestJournal::now_us`] just before it was submitted.
    pub(crate) async fn admitted(&self, id: RequestId, submission: &Submission, at_us: u64) {
        let record = admitted_record(id.0, submission, at_us);
        self.handle.record(record).await;
    }

    /// The request's stages (those it finished, or failed in, before its
    /// answer) and its answer; a rejected request (which never had an
    /// admission) gets its admission record here first.
    pub(crate) async fn answered(
        &self,
        submission: &Submission,
        answer: &RequestAnswer,
        stages: Vec<StageTrace>,
    ) {
        let handle = &self.handle;
        if matches!(answer.outcome, Outcome::Rejected(_)) {
            let admitted_us = us_at(handle, answer.admitted_at.into_std());
            let record = admitted_record(answer.id.0, submission, admitted_us);
            handle.record(record).await;
        }
        for trace in stages {
            let record = stage_record(handle, answer.id.0, trace);
            handle.record(record).await;
        }
        let outcome = outcome_record(&answer.outcome);
        let answered_us = us_at(handle, answer.answered_at.into_std());
        handle
            .record(Record::Answered(Answered {
                id: answer.id.0,
                at_us: answered_us,
                queue_us: answer.queue_wait().as_micros() as u64,
                latency_us: answer.latency().as_micros() as u64,
                outcome,
            }))
            .await;
    }
}

/// A request's outcome as the journal records it (also what `spindle
/// replay` compares with a recorded one).
pub fn outcome_record(outcome: &Outcome<PipelineAnswer>) -> OutcomeRecord {
    match outcome {
        Outcome::Ok(pipeline_answer) => OutcomeRecord::Ok {
            text: pipeline_answer.text.clone(),
            vector: pipeline_answer.vector.clone(),
            fields: pipeline_answer
                .fields
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            degraded: pipeline_answer.degraded,
            embed_fallback: pipeline_answer.embed_fallback,
        },
        Outcome::Error(failure) => {
            let site = failure.site.as_deref();
            OutcomeRecord::Error {
                message: failure.message.clone(),
                class: failure.class.as_str().to_owned(),
                stage: site.map(|site| site.stage.clone()).unwrap_or_default(),
                file: site.map(|site| site.file.clone()).unwrap_or_default(),
                line: site.map_or(0, |site| site.line),
            }
        }
        Outcome::Timeout => OutcomeRecord::Timeout,
        Outcome::Rejected(reason) => OutcomeRecord::Rejected {
            reason: reason.to_string(),
        },
        Outcome::Cancelled(reason) => OutcomeRecord::Cancelled {
            reason: reason.to_string(),
        },
    }
}

/// An operation applied through the `Kernel` handle, journaled (waiting
/// for room like a request) when the kernel has a journal.
pub(crate) async fn operation(journal: Option<&RequestJournal>, operation: Operation<'_>) {
    if let Some(journal) = journal {
        let record = operation_record(&journal.handle, operation);
        journal.handle.record(record).await;
    }
}

/// The same from code that cannot wait (`Kernel::inject`): the time is
/// taken now, the record is sent by a task.
pub(crate) fn operation_now(journal: Option<&RequestJournal>, operation: Operation<'_>) {
    if let Some(journal) = journal {
        let record = operation_record(&journal.handle, operation);
        let handle = journal.handle.clone();
        let writing = journal.writing();
        tokio::spawn(async move {
            handle.record(record).await;
            drop(writing);
        });
    }
}

fn operation_record(handle: &JournalHandle, operation: Operation<'_>) -> Record {
    let (name, target, count, delay_us) = match operation {
        Operation::Fault(Fault::EngineFails { service, batches }) => {
            ("engine-fails", service.clone(), *batches, 0)
        }
        Operation::Fault(Fault::EngineSlow {
            service,
            delay,
            batches,
        }) => (
            "engine-slow",
            service.clone(),
            *batches,
            delay.as_micros() as u64,
        ),
        Operation::Service { command, service } => (command, service.to_owned(), 0, 0),
        Operation::Cancel { target } => ("cancel", target.to_owned(), 0, 0),
        Operation::Reload => ("reload", String::new(), 0, 0),
    };
    Record::Operation(OperationRecord {
        at_us: handle.now_us(),
        operation: name.to_owned(),
        target,
        count,
        delay_us,
    })
}

/// What [`operation`] records.
pub(crate) enum Operation<'a> {
    Fault(&'a Fault),
    /// `restart`, `stop`, `start` or `recover` of a service.
    Service {
        command: &'static str,
        service: &'a str,
    },
    Cancel {
        target: &'a str,
    },
    Reload,
}

/// Writes every service and pipeline event until the kernel's event stream
/// ends, then flushes the journal and cancels `done`.
pub(crate) async fn follow_events(
    mut subscription: KernelSubscription,
    journal: RequestJournal,
    done: CancellationToken,
) {
    let handle = &journal.handle;
    let mut seq = 0_u64;
    while let Some(event) = subscription.recv().await {
        seq += 1;
        let record = match event {
            KernelEvent::Service(event) => Record::Service(ServiceRecord {
                seq,
                at_us: handle.us_since_start(event.at),
                service: event.service.clone(),
                from: event.from.to_string(),
                to: event.to.to_string(),
                reason: event.reason.clone(),
                pid: event.pid,
                restarts: event.restarts,
            }),
            KernelEvent::Pipeline { name, gate } => {
                let (gate, reason) = match gate {
                    Gate::Open => ("open", String::new()),
                    Gate::Closed { reason } => ("closed", reason),
                    Gate::Failed { reason } => ("failed", reason),
                };
                Record::Pipeline(PipelineRecord {
                    seq,
                    at_us: handle.now_us(),
                    pipeline: name,
                    gate: gate.to_owned(),
                    reason,
                })
            }
            KernelEvent::Lagged { missed, snapshot } => {
                let states: Vec<String> = snapshot
                    .services
                    .iter()
                    .map(|service| format!("{} {}", service.name, service.state))
                    .collect();
                Record::Gap(GapRecord {
                    at_us: handle.now_us(),
                    source: "service-events".to_owned(),
                    missed,
                    snapshot: states.join(", "),
                })
            }
            KernelEvent::Request(_) | KernelEvent::RequestsLagged { .. } => continue,
        };
        handle.record(record).await;
    }
    handle.flush().await;
    done.cancel();
}

fn admitted_record(id: u64, submission: &Submission, at_us: u64) -> Record {
    Record::Admitted(Admitted {
        id,
        correlation_id: submission
            .correlation_id
            .clone()
            .unwrap_or_else(|| id.to_string()),
        pipeline: submission.pipeline.clone(),
        priority: submission.priority.as_str().to_owned(),
        source: submission.source.as_str().to_owned(),
        deadline_us: submission
            .deadline
            .map(|deadline| deadline.as_micros() as u64),
        text: submission.text.clone(),
        at_us,
    })
}

fn stage_record(handle: &JournalHandle, id: u64, trace: StageTrace) -> Record {
    let (text, vector, fields) = match trace.output {
        Some(output) => (output.text, output.vector, output.fields),
        None => (String::new(), None, Vec::new()),
    };
    Record::Stage(StageRecord {
        id,
        stage: trace.stage,
        at_us: us_at(handle, trace.started),
        elapsed_us: trace.elapsed.as_micros() as u64,
        text,
        vector,
        fields,
        error: trace.error,
    })
}

fn us_at(handle: &JournalHandle, at: StdInstant) -> u64 {
    at.saturating_duration_since(handle.started()).as_micros() as u64
}

/// A count of records being made by tasks of their own, and a way to wait
/// until there are none.
#[derive(Debug, Clone, Default)]
struct PendingWrites(Arc<Pending>);

#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

/// One task's records still to be sent; dropping it says they are.
#[derive(Debug)]
pub(crate) struct PendingGuard(Arc<Pending>);

impl PendingWrites {
    fn enter(&self) -> PendingGuard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        PendingGuard(self.0.clone())
    }

    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a guard dropped in
            // between wakes this waiter.
            notified.as_mut().enable();
            if self.0.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
