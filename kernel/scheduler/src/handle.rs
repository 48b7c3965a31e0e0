//! The kernel's side of a running scheduler: [`SchedulerHandle`] (submit,
//! cancel, pause, resume, stats, events, shutdown confirmation), the
//! [`Ticket`] a submission resolves through, and what they report.
//!
//! Handles hold no scheduler state: they send `Command`s to the scheduler
//! task, each with a `oneshot` for the reply. The exception is a queue's
//! free places (see `Admission`), so that "busy" needs no round trip.
//! Like the scheduler, this knows nothing of Lua, HTTP or embeddings.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{
    OwnedSemaphorePermit, Semaphore, TryAcquireError, broadcast, mpsc, oneshot, watch,
};
use tokio::time::Instant;

use crate::deadline::DeadlineState;
use crate::error::Error;
use crate::failure::Gate;
use crate::request::{
    Answer, CancelReason, NewRequest, Outcome, OutcomeKind, PerPriority, Priority, RejectReason,
    RequestId, Source,
};

/// A request refused at admission; it counts as its terminal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub id: RequestId,
    pub priority: Priority,
    pub reason: RejectReason,
}

impl From<Rejected> for Error {
    fn from(rejected: Rejected) -> Self {
        match rejected.reason {
            RejectReason::QueueFull => Error::Busy {
                priority: rejected.priority,
            },
            RejectReason::ShuttingDown => Error::ShuttingDown,
        }
    }
}

/// Terminal answers by kind, plus what is needed to check exactly-once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub submitted: u64,
    pub ok: u64,
    pub error: u64,
    pub timeout: u64,
    pub rejected: u64,
    pub cancelled: u64,
    /// Worker panics (each also counted as an error).
    pub panics: u64,
    /// Worker results that arrived after their request had been answered
    /// (timeout, cancel) and were discarded.
    pub late_results: u64,
}

impl Counters {
    /// Every terminal answer given so far.
    pub fn answered(&self) -> u64 {
        self.ok + self.error + self.timeout + self.rejected + self.cancelled
    }

    pub(crate) fn count(&mut self, kind: OutcomeKind) {
        match kind {
            OutcomeKind::Ok => self.ok += 1,
            OutcomeKind::Error => self.error += 1,
            OutcomeKind::Timeout => self.timeout += 1,
            OutcomeKind::Rejected => self.rejected += 1,
            OutcomeKind::Cancelled => self.cancelled += 1,
        }
    }
}

/// A snapshot of the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub queued: PerPriority<usize>,
    /// Worker futures running, including ones already answered (timed out,
    /// cancelled) that are still winding down.
    pub in_flight: usize,
    /// Requests whose deadline clock is stopped.
    pub paused: usize,
    pub counters: Counters,
    pub admitting: bool,
}

/// Where a live request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestState {
    Queued,
    /// Queued behind its pipeline's closed gate (its services are not
    /// ready yet); the reason says what it waits for.
    Waiting {
        reason: String,
    },
    Running,
}

impl RequestState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestState::Queued => "queued",
            RequestState::Waiting { .. } => "waiting",
            RequestState::Running => "running",
        }
    }
}

/// A live (not yet answered) request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSummary {
    pub id: RequestId,
    pub correlation_id: String,
    pub pipeline: String,
    pub priority: Priority,
    pub source: Source,
    pub state: RequestState,
    /// The deadline clock: running, or stopped by a debugger pause.
    pub deadline: DeadlineState,
    pub admitted_at: Instant,
}

/// A request lifecycle event, for the event log and the debugger.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEvent {
    pub id: RequestId,
    pub at: Instant,
    pub kind: RequestEventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestEventKind {
    Admitted {
        correlation_id: String,
        pipeline: String,
        priority: Priority,
        source: Source,
    },
    Rejected(RejectReason),
    Started,
    Paused,
    Resumed,
    Answered(OutcomeKind),
}

/// Resolves to the request's one [`Answer`].
#[derive(Debug)]
pub struct Ticket<T> {
    pub id: RequestId,
    receiver: oneshot::Receiver<Answer<T>>,
    fallback: Option<Answer<T>>,
}

impl<T> Ticket<T> {
    pub fn id(&self) -> RequestId {
        self.id
    }
}

// No field is structurally pinned: the receiver is `Unpin` and the
// fallback answer is only moved out by value.
impl<T> Unpin for Ticket<T> {}

impl<T> Future for Ticket<T> {
    type Output = Answer<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.receiver).poll(cx) {
            Poll::Ready(Ok(answer)) => {
                // Answered once: a poll after completion must not produce
                // the stand-in answer as a second one.
                self.fallback = None;
                Poll::Ready(answer)
            }
            // Only if the scheduler task itself died: answer as shut down.
            Poll::Ready(Err(_)) => Poll::Ready(
                self.fallback
                    .take()
                    .expect("ticket polled after completion"),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Admission state shared by handles: the id counter and one semaphore per
/// priority whose permits are the free places in that queue. A permit
/// travels with its request and is returned when the request leaves the
/// queue; the scheduler task closes the semaphores at shutdown. This makes
/// `submit` answer "busy" without a round trip to the scheduler task.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) next_id: AtomicU64,
    pub(crate) slots: [Arc<Semaphore>; 3],
}

/// The kernel's side of a running scheduler; cheap to clone.
pub struct SchedulerHandle<P, T> {
    pub(crate) commands: mpsc::UnboundedSender<Command<P, T>>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) events: broadcast::Sender<RequestEvent>,
    /// The final counters, once the scheduler task has stopped.
    pub(crate) stopped: watch::Receiver<Option<Counters>>,
}

impl<P, T> Clone for SchedulerHandle<P, T> {
    fn clone(&self) -> Self {
        SchedulerHandle {
            commands: self.commands.clone(),
            admission: Arc::clone(&self.admission),
            events: self.events.clone(),
            stopped: self.stopped.clone(),
        }
    }
}

impl<P, T> fmt::Debug for SchedulerHandle<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerHandle")
            .field("stopped", &self.stopped.borrow().is_some())
            .finish()
    }
}

impl<P: Send + 'static, T: Send + 'static> SchedulerHandle<P, T> {
    /// Admits `request` or refuses it at once (its priority's queue is
    /// full: busy; shutting down). Never waits: admission takes a free
    /// place in the queue without asking the scheduler task.
    pub fn submit(&self, mut request: NewRequest<P>) -> Result<Ticket<T>, Rejected> {
        let (id, permit) = self.take_place(request.priority)?;
        let admitted_at = Instant::now();
        let correlation_id = request
            .correlation_id
            .take()
            .unwrap_or_else(|| id.to_string());
        let (reply, receiver) = oneshot::channel();
        let fallback = Answer {
            id,
            correlation_id: correlation_id.clone(),
            pipeline: request.pipeline.clone(),
            priority: request.priority,
            source: request.source,
            outcome: Outcome::Cancelled(CancelReason::Shutdown),
            admitted_at,
            started_at: None,
            answered_at: admitted_at,
        };
        let priority = request.priority;
        self.enqueue(Submission {
            id,
            correlation_id,
            request,
            admitted_at,
            reply: Reply::Ticket(reply),
            permit,
            span: tracing::Span::current(),
        })
        .map_err(|_| Rejected {
            id,
            priority,
            reason: RejectReason::ShuttingDown,
        })?;
        Ok(Ticket {
            id,
            receiver,
            fallback: Some(fallback),
        })
    }

    /// [`SchedulerHandle::submit`], with the answer handed to `then` on the
    /// scheduler's task as soon as it is made, instead of to a ticket that
    /// a task of the caller's awaits. `then` receives exactly one answer: a
    /// refusal too, at once on the calling thread. It must not block. If
    /// the scheduler's task dies with the request in it, `then` is dropped
    /// uncalled.
    pub fn submit_then<F>(&self, mut request: NewRequest<P>, then: F) -> RequestId
    where
        F: FnOnce(Answer<T>) + Send + 'static,
    {
        let (id, permit) = match self.take_place(request.priority) {
            Ok(place) => place,
            Err(rejected) => {
                let correlation_id = request.correlation_id.take();
                then(refusal(
                    rejected.id,
                    request,
                    correlation_id,
                    rejected.reason,
                ));
                return rejected.id;
            }
        };
        let correlation_id = request
            .correlation_id
            .take()
            .unwrap_or_else(|| id.to_string());
        let submission = Submission {
            id,
            correlation_id,
            request,
            admitted_at: Instant::now(),
            reply: Reply::Call(Box::new(then)),
            permit,
            span: tracing::Span::current(),
        };
        if let Err(submission) = self.enqueue(submission) {
            // The scheduler's task is gone: refused as shutting down.
            let Submission {
                request,
                correlation_id,
                reply,
                ..
            } = *submission;
            reply.send(refusal(
                id,
                request,
                Some(correlation_id),
                RejectReason::ShuttingDown,
            ));
        }
        id
    }

    /// A request id and a free place in `priority`'s queue, or the refusal
    /// (counted by the scheduler task, which owns the counters).
    fn take_place(
        &self,
        priority: Priority,
    ) -> Result<(RequestId, OwnedSemaphorePermit), Rejected> {
        let id = RequestId(self.admission.next_id.fetch_add(1, Ordering::Relaxed));
        let slots = &self.admission.slots[priority.index()];
        match Arc::clone(slots).try_acquire_owned() {
            Ok(permit) => Ok((id, permit)),
            Err(error) => {
                let reason = match error {
                    TryAcquireError::NoPermits => RejectReason::QueueFull,
                    TryAcquireError::Closed => RejectReason::ShuttingDown,
                };
                let _ = self.commands.send(Command::Rejected { id, reason });
                Err(Rejected {
                    id,
                    priority,
                    reason,
                })
            }
        }
    }

    /// Hands `submission` to the scheduler task; back when it is gone.
    fn enqueue(&self, submission: Submission<P, T>) -> Result<(), Box<Submission<P, T>>> {
        self.commands
            .send(Command::Submit(Box::new(submission)))
            .map_err(|error| match error.0 {
                Command::Submit(submission) => submission,
                _ => unreachable!("the command sent was a submission"),
            })
    }

    /// Answers a queued or in-flight request `Cancelled(Caller)` and
    /// cancels its work. `false` if it was already answered or unknown.
    pub async fn cancel(&self, id: RequestId) -> bool {
        self.ask(|reply| Command::Cancel { id, reply })
            .await
            .unwrap_or(false)
    }

    /// Cancels the live request whose correlation id is `correlation_id`;
    /// its id, or `None` when no live request has it.
    pub async fn cancel_by_correlation(&self, correlation_id: &str) -> Option<RequestId> {
        let correlation_id = correlation_id.to_owned();
        self.ask(|reply| Command::CancelByCorrelation {
            correlation_id,
            reply,
        })
        .await
        .flatten()
    }

    /// Opens, closes or fails `pipeline`'s gate. While it is closed its
    /// requests wait in their queues (their deadlines run); opening it
    /// releases them first; failing it answers them with the reason at once,
    /// and every later one when it would start.
    pub fn set_gate(&self, pipeline: &str, gate: Gate) {
        let _ = self.commands.send(Command::SetGate {
            pipeline: pipeline.to_owned(),
            gate,
        });
    }

    /// Sets `pipeline`'s timeouts per priority (`None`: the default) for
    /// requests admitted from now on (a reloaded script changed them).
    pub fn set_pipeline_timeouts(
        &self,
        pipeline: &str,
        timeouts: PerPriority<Option<std::time::Duration>>,
    ) {
        let _ = self.commands.send(Command::SetPipelineTimeouts {
            pipeline: pipeline.to_owned(),
            timeouts,
        });
    }

    /// Stops the request's deadline clock (a debugger paused it). `false`
    /// if unknown, answered or already paused.
    pub async fn pause(&self, id: RequestId) -> bool {
        self.ask(|reply| Command::Pause { id, reply })
            .await
            .unwrap_or(false)
    }

    /// Restarts the deadline clock with the time that was left. `false` if
    /// it was not paused.
    pub async fn resume(&self, id: RequestId) -> bool {
        self.ask(|reply| Command::Resume { id, reply })
            .await
            .unwrap_or(false)
    }

    /// A snapshot of queues, in-flight work and counters; the default
    /// (empty, not admitting) once the scheduler has stopped.
    pub async fn stats(&self) -> Stats {
        self.ask(|reply| Command::Stats { reply })
            .await
            .unwrap_or_default()
    }

    /// Every request not yet answered, queued or in flight, by id: what
    /// the debugger lists as threads and the status API as live requests.
    pub async fn requests(&self) -> Vec<RequestSummary> {
        self.ask(|reply| Command::List { reply })
            .await
            .unwrap_or_default()
    }

    /// Lifecycle events from now on. A receiver that falls 1,024 events
    /// behind loses the oldest (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<RequestEvent> {
        self.events.subscribe()
    }

    /// Resolves once the scheduler has answered everything and stopped,
    /// with its final counters (`submitted == answered()`; refusals after
    /// the task stopped are not counted).
    pub async fn stopped(&self) -> Counters {
        let mut stopped = self.stopped.clone();
        match stopped.wait_for(Option::is_some).await {
            Ok(counters) => counters.unwrap_or_default(),
            // The task died without a final word; nothing to report.
            Err(_) => Counters::default(),
        }
    }

    async fn ask<R>(&self, command: impl FnOnce(oneshot::Sender<R>) -> Command<P, T>) -> Option<R> {
        let (reply, receiver) = oneshot::channel();
        self.commands.send(command(reply)).ok()?;
        receiver.await.ok()
    }
}

/// What handles ask of the scheduler task.
pub(crate) enum Command<P, T> {
    Submit(Box<Submission<P, T>>),
    /// A refusal `submit` already answered; for the counters and events.
    Rejected {
        id: RequestId,
        reason: RejectReason,
    },
    Cancel {
        id: RequestId,
        reply: oneshot::Sender<bool>,
    },
    CancelByCorrelation {
        correlation_id: String,
        reply: oneshot::Sender<Option<RequestId>>,
    },
    SetGate {
        pipeline: String,
        gate: Gate,
    },
    SetPipelineTimeouts {
        pipeline: String,
        timeouts: PerPriority<Option<std::time::Duration>>,
    },
    Pause {
        id: RequestId,
        reply: oneshot::Sender<bool>,
    },
    Resume {
        id: RequestId,
        reply: oneshot::Sender<bool>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    List {
        reply: oneshot::Sender<Vec<RequestSummary>>,
    },
}

/// An admitted request on its way to the scheduler task.
/// Where a request's one answer goes.
pub(crate) enum Reply<T> {
    /// To the [`Ticket`] its submitter awaits.
    Ticket(oneshot::Sender<Answer<T>>),
    /// Into the submitter's function ([`SchedulerHandle::submit_then`]).
    Call(Box<dyn FnOnce(Answer<T>) + Send>),
}

impl<T> Reply<T> {
    /// Delivers the answer; a ticket already dropped loses nothing (its
    /// request still counts as answered).
    pub(crate) fn send(self, answer: Answer<T>) {
        match self {
            Reply::Ticket(sender) => {
                let _ = sender.send(answer);
            }
            Reply::Call(then) => then(answer),
        }
    }
}

/// The answer of a request refused before it reached the scheduler task.
fn refusal<P, T>(
    id: RequestId,
    request: NewRequest<P>,
    correlation_id: Option<String>,
    reason: RejectReason,
) -> Answer<T> {
    let now = Instant::now();
    Answer {
        id,
        correlation_id: correlation_id.unwrap_or_else(|| id.to_string()),
        pipeline: request.pipeline,
        priority: request.priority,
        source: request.source,
        outcome: Outcome::Rejected(reason),
        admitted_at: now,
        started_at: None,
        answered_at: now,
    }
}

pub(crate) struct Submission<P, T> {
    pub(crate) id: RequestId,
    pub(crate) correlation_id: String,
    pub(crate) request: NewRequest<P>,
    pub(crate) admitted_at: Instant,
    pub(crate) reply: Reply<T>,
    /// Its place in the queue, held until it leaves the queue.
    pub(crate) permit: OwnedSemaphorePermit,
    /// The submitter's span: the request's span is its child, so one
    /// request's log lines stay with the ingress that caused them.
    pub(crate) span: tracing::Span,
}
