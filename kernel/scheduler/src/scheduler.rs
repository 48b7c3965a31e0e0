//! The scheduler: admission into bounded per-priority queues, weighted-fair
//! dispatch to a worker under a concurrency limit, deadlines (with pause and
//! resume), cancellation, shutdown, and exactly one [`Outcome`] per request.
//!
//! One task owns all of it. Handles send it a closed set of `Command`s,
//! each carrying a `oneshot` for its reply (a submission: a oneshot, or a
//! function the answer is handed to on this task); worker futures run
//! inside the same task (a `FuturesUnordered` it polls), so results,
//! deadlines and commands are handled in one place and a request is
//! answered by removing its reply — it cannot be answered twice. The one thing handles touch
//! without the task is a queue's free places: a semaphore per priority
//! whose permits travel with queued requests, so `submit` answers "busy"
//! at once, without a round trip (the task still counts every refusal).
//!
//! The scheduler knows nothing of Lua, HTTP or embeddings: the worker is a
//! [`Worker`] the kernel provides, and payloads and results are type
//! parameters.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catch::{CatchPanic, catch_panic};
use crate::deadline::{DeadlineState, DeadlineWatch};
use crate::failure::{Failure, Gate};
use crate::handle::{
    Admission, Command, Counters, Reply, RequestEvent, RequestEventKind, RequestState,
    RequestSummary, SchedulerHandle, Stats, Submission,
};
use crate::id_map::IdMap;
use crate::queue::WeightedQueues;
use crate::request::{
    Answer, CancelReason, Outcome, OutcomeKind, PerPriority, Priority, RejectReason, Request,
    RequestId, Source,
};

/// Scheduler settings. `Default` gives 1,024 queued requests per priority,
/// weights 8:4:1, 64 in flight of which 16 are reserved for high priority,
/// timeouts of 5 s / 15 s / 60 s, and 5 s of
/// grace for in-flight work at shutdown.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Queue capacity per priority; a full queue rejects at once.
    pub capacity: PerPriority<usize>,
    /// Weighted-fair shares; 0 counts as 1.
    pub weights: PerPriority<u32>,
    /// Requests handed to the worker at once; at least 1.
    pub max_in_flight: usize,
    /// Of `max_in_flight`, slots only high priority may take, so a high
    /// request does not wait for a low one to finish under a flood. Low and
    /// medium use at most `max_in_flight - reserved_for_high`.
    pub reserved_for_high: usize,
    /// Default timeout per priority, from admission.
    pub timeouts: PerPriority<Duration>,
    /// Per-pipeline overrides; `None` keeps the default for that priority.
    pub pipeline_timeouts: HashMap<String, PerPriority<Option<Duration>>>,
    /// How long in-flight requests may keep running after shutdown is
    /// asked before they are cancelled.
    pub shutdown_grace: Duration,
    /// Pipelines that start with a closed (or failed) gate; every other
    /// pipeline's gate is open. See [`SchedulerHandle::set_gate`].
    pub gates: HashMap<String, Gate>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            capacity: PerPriority {
                high: 1024,
                medium: 1024,
                low: 1024,
            },
            weights: PerPriority {
                high: 8,
                medium: 4,
                low: 1,
            },
            max_in_flight: 64,
            reserved_for_high: 16,
            timeouts: PerPriority {
                high: Duration::from_secs(5),
                medium: Duration::from_secs(15),
                low: Duration::from_secs(60),
            },
            pipeline_timeouts: HashMap::new(),
            shutdown_grace: Duration::from_secs(5),
            gates: HashMap::new(),
        }
    }
}

impl SchedulerConfig {
    /// The timeout for `pipeline` at `priority`: the pipeline's override,
    /// else the default.
    pub fn timeout(&self, pipeline: &str, priority: Priority) -> Duration {
        self.pipeline_timeouts
            .get(pipeline)
            .and_then(|overrides| *overrides.get(priority))
            .unwrap_or(*self.timeouts.get(priority))
    }
}

/// What the worker gets for one request.
#[derive(Debug)]
pub struct Job<P> {
    pub request: Request<P>,
    /// Cancelled when the request is cancelled, times out or is shut
    /// down. The scheduler also drops the worker's future then; the token
    /// is for work the future handed elsewhere (a thread, a batch).
    pub cancel: CancellationToken,
    pub deadline: DeadlineWatch,
}

/// Runs one request. The kernel's implementation drives the pipeline's
/// stages. A panic while polling the future answers that request with an
/// error; the scheduler lives on.
pub trait Worker<P, T>: Send + Sync + 'static {
    fn run(&self, job: Job<P>) -> impl Future<Output = Result<T, Failure>> + Send + 'static;
}

impl<P, T, F, Fut> Worker<P, T> for F
where
    F: Fn(Job<P>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, Failure>> + Send + 'static,
{
    fn run(&self, job: Job<P>) -> impl Future<Output = Result<T, Failure>> + Send + 'static {
        self(job)
    }
}

/// Starts schedulers; see [`Scheduler::start`].
#[derive(Debug)]
pub struct Scheduler;

impl Scheduler {
    /// Spawns the scheduler task on the current tokio runtime. It stops
    /// admitting when `shutdown` is cancelled (or every handle is dropped),
    /// answers queued requests `Cancelled(Shutdown)`, gives in-flight ones
    /// `shutdown_grace` to finish, cancels the rest, and then
    /// [`SchedulerHandle::stopped`] resolves with the final counters.
    pub fn start<P, T, W>(
        config: SchedulerConfig,
        worker: W,
        shutdown: CancellationToken,
    ) -> SchedulerHandle<P, T>
    where
        P: Send + 'static,
        T: Send + 'static,
        W: Worker<P, T>,
    {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let (stopped_tx, stopped) = watch::channel(None);
        let admission = Arc::new(Admission {
            next_id: AtomicU64::new(1),
            slots: Priority::ALL
                .map(|priority| Arc::new(Semaphore::new(*config.capacity.get(priority)))),
        });
        let actor = Actor {
            queue: WeightedQueues::new(config.capacity, config.weights),
            gates: config.gates.clone(),
            parked: HashMap::new(),
            config,
            worker: Arc::new(worker),
            admission: Arc::clone(&admission),
            entries: IdMap::default(),
            deadlines: BTreeSet::new(),
            tasks: FuturesUnordered::new(),
            counters: Counters::default(),
            events: events.clone(),
            admitting: true,
            grace_end: None,
        };
        tokio::spawn(actor.run(commands_rx, shutdown, stopped_tx));
        SchedulerHandle {
            commands: commands_tx,
            admission,
            events,
            stopped,
        }
    }
}

/// What a job reports: the request and, unless it was cancelled, the
/// worker's result or the panic message.
type TaskResult<T> = (RequestId, Option<Result<Result<T, Failure>, String>>);

/// One running job: the worker's future raced against the request's
/// cancellation, inside `catch_panic`, inside the request's span.
///
/// Jobs are polled by the scheduler's own task rather than spawned: a
/// job's future only hands the request to its worker (the script host's
/// thread, a batcher) and waits, so a task of its own bought no
/// parallelism, and cost a spawn, a join and a wake-up of the scheduler
/// for every request. A job that finishes is answered in the same poll.
struct JobTask<T> {
    id: RequestId,
    work: tracing::instrument::Instrumented<CatchPanic<Option<Result<T, Failure>>>>,
}

impl<T> Future for JobTask<T> {
    type Output = TaskResult<T>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<TaskResult<T>> {
        let id = self.id;
        Pin::new(&mut self.work).poll(cx).map(|result| {
            // A panic is reported as the worker's; a cancelled job as `None`.
            let result = match result {
                Ok(None) => None,
                Ok(Some(result)) => Some(Ok(result)),
                Err(panic) => Some(Err(panic)),
            };
            (id, result)
        })
    }
}

struct Entry<P, T> {
    correlation_id: String,
    pipeline: String,
    priority: Priority,
    source: Source,
    admitted_at: Instant,
    started_at: Option<Instant>,
    /// `Some` while queued.
    request: Option<Request<P>>,
    /// Queued, but set aside until its pipeline's gate opens.
    parked: bool,
    /// The request's place in its queue; `Some` while queued.
    permit: Option<OwnedSemaphorePermit>,
    /// The worker runs inside it.
    span: tracing::Span,
    /// `None` once answered; the entry then only waits for its task.
    reply: Option<Reply<T>>,
    deadline: Instant,
    paused_at: Option<Instant>,
    deadline_tx: watch::Sender<DeadlineState>,
    cancel: CancellationToken,
}

struct Actor<P, T, W> {
    config: SchedulerConfig,
    worker: Arc<W>,
    admission: Arc<Admission>,
    queue: WeightedQueues<RequestId>,
    /// Pipelines whose gate is not open; absent means open.
    gates: HashMap<String, Gate>,
    /// Requests set aside because their pipeline's gate is closed, per
    /// pipeline in the order the queues released them.
    parked: HashMap<String, Vec<RequestId>>,
    entries: IdMap<RequestId, Entry<P, T>>,
    /// Running deadline clocks (paused ones are absent).
    deadlines: BTreeSet<(Instant, RequestId)>,
    tasks: FuturesUnordered<JobTask<T>>,
    counters: Counters,
    events: broadcast::Sender<RequestEvent>,
    admitting: bool,
    grace_end: Option<Instant>,
}

impl<P, T, W> Actor<P, T, W>
where
    P: Send + 'static,
    T: Send + 'static,
    W: Worker<P, T>,
{
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command<P, T>>,
        shutdown: CancellationToken,
        stopped: watch::Sender<Option<Counters>>,
    ) {
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep_until(far_future));
        let mut timer_target: Option<Instant> = None;
        let mut handles_alive = true;
        loop {
            self.dispatch();
            if !self.admitting && self.entries.is_empty() && self.tasks.is_empty() {
                break;
            }
            let next = self.next_wakeup();
            if next != timer_target {
                timer.as_mut().reset(next.unwrap_or(far_future));
                timer_target = next;
            }
            // Unbiased: under load neither finished work, deadlines nor
            // commands may starve the others.
            tokio::select! {
                _ = shutdown.cancelled(), if self.admitting => self.begin_shutdown(),
                Some((id, result)) = self.tasks.next(), if !self.tasks.is_empty() => {
                    self.finish(id, result);
                }
                _ = timer.as_mut(), if timer_target.is_some() => {
                    timer_target = None;
                    self.on_timer(Instant::now());
                }
                command = commands.recv(), if handles_alive => match command {
                    Some(command) => self.handle(command),
                    None => {
                        handles_alive = false;
                        if self.admitting {
                            self.begin_shutdown();
                        }
                    }
                },
            }
        }
        // Refuse whatever arrives from now on (`submit` then answers
        // `ShuttingDown` itself), and answer and count what is already on
        // its way: submissions that won a queue place just before shutdown.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            self.handle(command);
        }
        stopped.send_replace(Some(self.counters));
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let deadline = self.deadlines.first().map(|(at, _)| *at);
        match (deadline, self.grace_end) {
            (Some(deadline), Some(grace)) => Some(deadline.min(grace)),
            (deadline, grace) => deadline.or(grace),
        }
    }

    fn handle(&mut self, command: Command<P, T>) {
        match command {
            Command::Submit(submission) => self.admit(*submission),
            Command::Rejected { id, reason } => {
                self.counters.submitted += 1;
                self.counters.count(OutcomeKind::Rejected);
                self.emit(id, RequestEventKind::Rejected(reason));
            }
            Command::Cancel { id, reply } => {
                let _ = reply.send(self.cancel(id, CancelReason::Caller));
            }
            Command::CancelByCorrelation {
                correlation_id,
                reply,
            } => {
                let id = self
                    .entries
                    .iter()
                    .find(|(_, entry)| {
                        entry.reply.is_some() && entry.correlation_id == correlation_id
                    })
                    .map(|(id, _)| *id);
                let cancelled = id.is_some_and(|id| self.cancel(id, CancelReason::Caller));
                let _ = reply.send(cancelled.then_some(id).flatten());
            }
            Command::SetGate { pipeline, gate } => self.set_gate(pipeline, gate),
            Command::SetPipelineTimeouts { pipeline, timeouts } => {
                self.config.pipeline_timeouts.insert(pipeline, timeouts);
            }
            Command::Pause { id, reply } => {
                let _ = reply.send(self.pause(id));
            }
            Command::Resume { id, reply } => {
                let _ = reply.send(self.resume(id));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::List { reply } => {
                let _ = reply.send(self.requests());
            }
        }
    }

    fn admit(&mut self, submission: Submission<P, T>) {
        let Submission {
            id,
            correlation_id,
            request: new,
            admitted_at,
            reply,
            permit,
            span: caller_span,
        } = submission;
        self.counters.submitted += 1;
        let priority = new.priority;
        let mut timeout = self.config.timeout(&new.pipeline, priority);
        if let Some(requested) = new.timeout {
            timeout = timeout.min(requested);
        }
        let deadline = admitted_at + timeout;
        if self.events.receiver_count() > 0 {
            self.emit(
                id,
                RequestEventKind::Admitted {
                    correlation_id: correlation_id.clone(),
                    pipeline: new.pipeline.clone(),
                    priority,
                    source: new.source,
                },
            );
        }
        let request = Request {
            id,
            correlation_id: correlation_id.clone(),
            pipeline: new.pipeline.clone(),
            priority,
            deadline,
            source: new.source,
            payload: new.payload,
        };
        let (deadline_tx, _) = watch::channel(DeadlineState::Running(deadline));
        let span = tracing::info_span!(
            parent: &caller_span,
            "request",
            id = id.0,
            pipeline = %new.pipeline,
            priority = %priority,
        );
        let mut entry = Entry {
            correlation_id,
            pipeline: new.pipeline,
            priority,
            source: new.source,
            admitted_at,
            started_at: None,
            request: Some(request),
            parked: false,
            permit: Some(permit),
            span,
            reply: Some(reply),
            deadline,
            paused_at: None,
            deadline_tx,
            cancel: CancellationToken::new(),
        };
        if !self.admitting {
            // Admitted just before shutdown closed the queues: drained.
            self.answer(id, &mut entry, Outcome::Cancelled(CancelReason::Shutdown));
            return;
        }
        if let Some(Gate::Failed { reason }) = self.gates.get(&entry.pipeline) {
            // Its services will not come back: no point queueing it.
            let failure = Failure::permanent(reason.clone());
            self.answer(id, &mut entry, Outcome::Error(failure));
            return;
        }
        if self.queue.try_push(priority, id).is_err() {
            // Unreachable while permits match capacity; answered, not lost.
            self.answer(id, &mut entry, Outcome::Rejected(RejectReason::QueueFull));
            return;
        }
        self.entries.insert(id, entry);
        self.deadlines.insert((deadline, id));
    }

    /// Hands queued requests to the worker while there is room.
    fn dispatch(&mut self) {
        let limit = self.config.max_in_flight.max(1);
        let shared_limit = limit.saturating_sub(self.config.reserved_for_high).max(1);
        while self.tasks.len() < limit {
            let in_flight = self.tasks.len();
            let next = self
                .queue
                .pop_where(|priority| priority == Priority::High || in_flight < shared_limit);
            let Some((_, id)) = next else {
                return;
            };
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            match self.gates.get(&entry.pipeline) {
                None | Some(Gate::Open) => {}
                Some(Gate::Closed { .. }) => {
                    entry.parked = true;
                    self.parked
                        .entry(entry.pipeline.clone())
                        .or_default()
                        .push(id);
                    continue;
                }
                Some(Gate::Failed { reason }) => {
                    let failure = Failure::permanent(reason.clone());
                    self.terminate(id, Outcome::Error(failure));
                    continue;
                }
            }
            let Some(request) = entry.request.take() else {
                continue;
            };
            // Its place in the queue is free again.
            entry.permit = None;
            entry.started_at = Some(Instant::now());
            let cancel = entry.cancel.clone();
            let job = Job {
                request,
                cancel: cancel.clone(),
                deadline: DeadlineWatch::new(entry.deadline_tx.subscribe()),
            };
            let worker = Arc::clone(&self.worker);
            let span = entry.span.clone();
            // The call itself sits inside `catch_panic` too: a worker that
            // panics before returning its future is caught as well.
            let work = catch_panic(async move {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => None,
                    result = worker.run(job) => Some(result),
                }
            });
            self.tasks.push(JobTask {
                id,
                work: Instrument::instrument(work, span),
            });
            self.emit(id, RequestEventKind::Started);
        }
    }

    fn finish(&mut self, id: RequestId, result: Option<Result<Result<T, Failure>, String>>) {
        let Some(mut entry) = self.entries.remove(&id) else {
            return;
        };
        if entry.paused_at.is_none() {
            self.deadlines.remove(&(entry.deadline, id));
        }
        if entry.reply.is_none() {
            if result.is_some() {
                self.counters.late_results += 1;
            }
            return;
        }
        // A failure that arrives once the deadline has passed (the work
        // gave up because the deadline did, before this task's timer fired)
        // is the deadline's doing: answer it as a timeout.
        let past_deadline = entry.paused_at.is_none() && Instant::now() >= entry.deadline;
        let outcome = match result {
            Some(Ok(Ok(value))) => Outcome::Ok(value),
            Some(Ok(Err(_))) if past_deadline => Outcome::Timeout,
            Some(Ok(Err(failure))) => Outcome::Error(failure),
            Some(Err(panic)) => {
                self.counters.panics += 1;
                Outcome::Error(Failure::permanent(format!("the worker panicked: {panic}")))
            }
            // Cancelled without an answer: only shutdown does that.
            None => Outcome::Cancelled(CancelReason::Shutdown),
        };
        self.answer(id, &mut entry, outcome);
    }

    /// Sends the one answer; the caller removes or keeps the entry.
    fn answer(&mut self, id: RequestId, entry: &mut Entry<P, T>, outcome: Outcome<T>) {
        let Some(reply) = entry.reply.take() else {
            return;
        };
        let kind = outcome.kind();
        self.counters.count(kind);
        let answer = Answer {
            id,
            correlation_id: std::mem::take(&mut entry.correlation_id),
            pipeline: std::mem::take(&mut entry.pipeline),
            priority: entry.priority,
            source: entry.source,
            outcome,
            admitted_at: entry.admitted_at,
            started_at: entry.started_at,
            answered_at: Instant::now(),
        };
        reply.send(answer);
        self.emit(id, RequestEventKind::Answered(kind));
    }

    /// Answers `outcome` now and stops the request's work: a queued request
    /// leaves the queue, an in-flight one is cancelled and its entry stays
    /// until its task ends (it still holds a concurrency slot).
    fn terminate(&mut self, id: RequestId, outcome: Outcome<T>) -> bool {
        let Some(mut entry) = self.entries.remove(&id) else {
            return false;
        };
        if entry.reply.is_none() {
            self.entries.insert(id, entry);
            return false;
        }
        if entry.paused_at.is_none() {
            self.deadlines.remove(&(entry.deadline, id));
        }
        if entry.parked {
            self.unpark(&entry.pipeline, id);
        }
        self.answer(id, &mut entry, outcome);
        entry.cancel.cancel();
        if entry.parked {
            // Already out of the queues.
        } else if entry.request.is_some() {
            self.queue.remove(entry.priority, |queued| *queued == id);
        } else {
            self.entries.insert(id, entry);
        }
        true
    }

    /// Opens, closes or fails a pipeline's gate. Opening puts the requests
    /// set aside back at the front of their queues, in their order; failing
    /// answers them at once.
    fn set_gate(&mut self, pipeline: String, gate: Gate) {
        let parked = match &gate {
            Gate::Closed { .. } => Vec::new(),
            Gate::Open | Gate::Failed { .. } => self.parked.remove(&pipeline).unwrap_or_default(),
        };
        match &gate {
            Gate::Open => {
                self.gates.remove(&pipeline);
                for id in parked.into_iter().rev() {
                    if let Some(entry) = self.entries.get_mut(&id) {
                        entry.parked = false;
                        self.queue.push_front(entry.priority, id);
                    }
                }
            }
            Gate::Failed { reason } => {
                let reason = reason.clone();
                self.gates.insert(pipeline, gate);
                for id in parked {
                    if let Some(entry) = self.entries.get_mut(&id) {
                        entry.parked = false;
                    }
                    self.terminate(id, Outcome::Error(Failure::permanent(reason.clone())));
                }
            }
            Gate::Closed { .. } => {
                self.gates.insert(pipeline, gate);
            }
        }
    }

    fn unpark(&mut self, pipeline: &str, id: RequestId) {
        if let Some(parked) = self.parked.get_mut(pipeline) {
            parked.retain(|parked_id| *parked_id != id);
        }
    }

    fn cancel(&mut self, id: RequestId, reason: CancelReason) -> bool {
        self.terminate(id, Outcome::Cancelled(reason))
    }

    fn pause(&mut self, id: RequestId) -> bool {
        let now = Instant::now();
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        if entry.reply.is_none() || entry.paused_at.is_some() {
            return false;
        }
        self.deadlines.remove(&(entry.deadline, id));
        entry.paused_at = Some(now);
        let remaining = entry.deadline.saturating_duration_since(now);
        entry
            .deadline_tx
            .send_replace(DeadlineState::Paused { remaining });
        self.emit(id, RequestEventKind::Paused);
        true
    }

    fn resume(&mut self, id: RequestId) -> bool {
        let now = Instant::now();
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        let Some(paused_at) = entry.paused_at.take() else {
            return false;
        };
        if entry.reply.is_none() {
            return false;
        }
        entry.deadline += now - paused_at;
        entry
            .deadline_tx
            .send_replace(DeadlineState::Running(entry.deadline));
        self.deadlines.insert((entry.deadline, id));
        self.emit(id, RequestEventKind::Resumed);
        true
    }

    fn on_timer(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.terminate(id, Outcome::Timeout);
        }
        if self.grace_end.is_some_and(|grace| grace <= now) {
            self.grace_end = None;
            let running: Vec<RequestId> = self.entries.keys().copied().collect();
            for id in running {
                self.cancel(id, CancelReason::Shutdown);
            }
        }
    }

    fn begin_shutdown(&mut self) {
        self.admitting = false;
        for slots in &self.admission.slots {
            slots.close();
        }
        for (_, id) in self.queue.drain() {
            self.cancel_queued_for_shutdown(id);
        }
        for (_, parked) in std::mem::take(&mut self.parked) {
            for id in parked {
                self.cancel_queued_for_shutdown(id);
            }
        }
        self.grace_end = Some(Instant::now() + self.config.shutdown_grace);
    }

    fn cancel_queued_for_shutdown(&mut self, id: RequestId) {
        let Some(mut entry) = self.entries.remove(&id) else {
            return;
        };
        if entry.paused_at.is_none() {
            self.deadlines.remove(&(entry.deadline, id));
        }
        self.answer(id, &mut entry, Outcome::Cancelled(CancelReason::Shutdown));
    }

    fn stats(&self) -> Stats {
        let mut queued = PerPriority::default();
        for priority in Priority::ALL {
            *queued.get_mut(priority) = self.queue.len(priority);
        }
        for entry in self.entries.values().filter(|entry| entry.parked) {
            *queued.get_mut(entry.priority) += 1;
        }
        Stats {
            queued,
            in_flight: self.tasks.len(),
            paused: self
                .entries
                .values()
                .filter(|entry| entry.paused_at.is_some())
                .count(),
            counters: self.counters,
            admitting: self.admitting,
        }
    }

    fn requests(&self) -> Vec<RequestSummary> {
        let mut requests: Vec<RequestSummary> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.reply.is_some())
            .map(|(id, entry)| RequestSummary {
                id: *id,
                correlation_id: entry.correlation_id.clone(),
                pipeline: entry.pipeline.clone(),
                priority: entry.priority,
                source: entry.source,
                state: match (&entry.request, entry.parked) {
                    (Some(_), true) => RequestState::Waiting {
                        reason: match self.gates.get(&entry.pipeline) {
                            Some(Gate::Closed { reason } | Gate::Failed { reason }) => {
                                reason.clone()
                            }
                            _ => String::new(),
                        },
                    },
                    (Some(_), false) => RequestState::Queued,
                    (None, _) => RequestState::Running,
                },
                deadline: *entry.deadline_tx.borrow(),
                admitted_at: entry.admitted_at,
            })
            .collect();
        requests.sort_by_key(|request| request.id);
        requests
    }

    fn emit(&self, id: RequestId, kind: RequestEventKind) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(RequestEvent {
                id,
                at: Instant::now(),
                kind,
            });
        }
    }
}
