//! The request path: admission and priorities (the scheduler), the script
//! host's Lua pipelines (one coroutine per request), and embed stages that
//! go through a batcher per embedding service to its engine.
//!
//! Request state has one owner, the scheduler. What a stage needs of it
//! (the deadline, the cancel token) travels with the request as its
//! [`RequestScope`] into every embed call; nothing is looked up by id.
//! Front ends reach this through [`crate::Kernel`]; nothing here knows a
//! wire format.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use spindle_scheduler::{
    Answer, Batcher, BatcherConfig, BatcherHandle, BatcherStats, BreakerConfig, DeadlineWatch,
    EmbedClient, EmbedInput, Failure, Gate, Job, NewRequest, Outcome, Priority, RequestId,
    RetryPolicy, Scheduler, SchedulerConfig, SchedulerHandle, Source, Stats,
};
use spindle_scripting::spin::{PURE_SPIN_WHILE_ASKING, Pause, Spin};
use spindle_scripting::{
    DebugEvent, Effects, EmbedAnswer, EmbedCall, EmbedFailure, EmbedReply, GraphSpec,
    PipelineAnswer, PipelineRequest, RequestScope, RunEvent, RunEventKind, RunOutcome, ScriptHost,
    ServiceKind, SourceSpec, StageLog,
};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::embedding::{EngineBackend, EngineDirectory, Prepared};
use crate::failure;
use crate::faults::Faults;
use crate::journal::RequestJournal;
use crate::metrics::Metrics;
use crate::services::ServiceBoard;

/// Settings of the request path.
#[derive(Debug, Clone)]
pub struct RequestPathConfig {
    pub scheduler: SchedulerConfig,
    /// How long a batch may wait to fill.
    pub max_batch_wait: Duration,
    /// How long a batch may run before it counts as a failure of its
    /// service (a hung engine) and is stopped.
    pub batch_timeout: Duration,
    pub breaker: BreakerConfig,
    /// Retries of a batch that failed transiently, made by the batcher
    /// inside each item's deadline.
    pub retry: RetryPolicy,
}

impl Default for RequestPathConfig {
    fn default() -> Self {
        RequestPathConfig {
            scheduler: SchedulerConfig::default(),
            max_batch_wait: Duration::from_millis(2),
            batch_timeout: BatcherConfig::default().batch_timeout,
            breaker: BreakerConfig::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// What a front end submits.
#[derive(Debug, Clone)]
pub struct Submission {
    pub pipeline: String,
    pub text: String,
    pub priority: Priority,
    /// The caller's budget; the pipeline's timeout applies when shorter.
    pub deadline: Option<Duration>,
    pub correlation_id: Option<String>,
    pub source: Source,
}

/// The one answer a submission gets.
pub type RequestAnswer = Answer<PipelineAnswer>;

/// The scheduler of pipeline requests.
pub(crate) type RequestScheduler = SchedulerHandle<RequestPayload, PipelineAnswer>;

/// What a request carries through the scheduler into its pipeline run.
#[derive(Debug, Default)]
pub(crate) struct RequestPayload {
    pub(crate) text: String,
    /// Set when the journal records the request: its stages are appended
    /// here as they end, and journaled with the answer.
    pub(crate) stage_log: Option<StageLog>,
}

/// The running request path, owned by the kernel.
pub(crate) struct RequestPath {
    pub(crate) scheduler: RequestScheduler,
    /// Route to pipeline; swapped whole when a new graph is applied.
    routes: RwLock<HashMap<String, String>>,
    wiring: EffectsWiring,
    batching: BatchingSetup,
    pub(crate) metrics: Arc<Metrics>,
    /// Set when the kernel runs with a journal: each request's admission,
    /// stages and answer go there.
    pub(crate) journal: Option<RequestJournal>,
}

/// What a new embedding service's batcher is started with.
struct BatchingSetup {
    config: RequestPathConfig,
    faults: Faults,
    shutdown: CancellationToken,
}

/// The script host new requests run on. Swapped when a reloaded script
/// brings a new one; a request in flight finishes on the host it started
/// on (it holds that host). The hosts a reload replaced are kept while
/// requests may still run on them, so that a debugger finds a request
/// paused on an older version (see `debug.rs`); `retire_idle` lets go of
/// those with no run left.
#[derive(Clone, Default)]
pub(crate) struct HostCell(Arc<RwLock<Hosts>>);

#[derive(Default)]
struct Hosts {
    current: Option<ScriptHost>,
    replaced: Vec<ScriptHost>,
}

impl HostCell {
    pub(crate) fn new(host: Option<ScriptHost>) -> HostCell {
        HostCell(Arc::new(RwLock::new(Hosts {
            current: host,
            replaced: Vec::new(),
        })))
    }

    pub(crate) fn get(&self) -> Option<ScriptHost> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .clone()
    }

    /// The current host first, then the ones reloads replaced, newest
    /// first.
    pub(crate) fn all(&self) -> Vec<ScriptHost> {
        let hosts = self.0.read().unwrap_or_else(|p| p.into_inner());
        hosts
            .current
            .iter()
            .chain(hosts.replaced.iter().rev())
            .cloned()
            .collect()
    }

    pub(crate) fn set(&self, host: ScriptHost) {
        let mut hosts = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = hosts.current.replace(host) {
            hosts.replaced.push(previous);
        }
    }

    /// Forgets the replaced hosts that run no request any more.
    pub(crate) async fn retire_idle(&self) {
        let replaced =
            std::mem::take(&mut self.0.write().unwrap_or_else(|p| p.into_inner()).replaced);
        let mut busy = Vec::new();
        for host in replaced {
            let (sender, receiver) = oneshot::channel();
            host.runs(Box::new(move |runs| {
                let _ = sender.send(runs.len());
            }));
            if receiver.await.unwrap_or(0) > 0 {
                busy.push(host);
            }
        }
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replaced
            .extend(busy);
    }
}

/// What a request's stages get from the scheduler, carried in its
/// [`RequestScope`].
struct JobScope {
    id: RequestId,
    deadline: DeadlineWatch,
    cancel: CancellationToken,
}

impl RequestPath {
    /// Starts the scheduler (every pipeline's gate as the board has it), one
    /// batcher per embedding service (held while its service is not ready),
    /// and wires the script host's pipelines to them. Must run inside a
    /// tokio runtime. `host` must have been started with `wiring.effects()`.
    pub(crate) fn start(
        graph: &GraphSpec,
        host: HostCell,
        wiring: &EffectsWiring,
        board: &ServiceBoard,
        faults: &Faults,
        config: RequestPathConfig,
        shutdown: CancellationToken,
    ) -> RequestPath {
        let mut scheduler_config = config.scheduler.clone();
        for pipeline in &graph.pipelines {
            scheduler_config
                .pipeline_timeouts
                .insert(pipeline.name.clone(), timeouts_of(pipeline));
        }
        for (pipeline, gate) in board.gates() {
            if gate != Gate::Open {
                scheduler_config.gates.insert(pipeline, gate);
            }
        }
        let batching = BatchingSetup {
            config: config.clone(),
            faults: faults.clone(),
            shutdown: shutdown.clone(),
        };
        let clients = graph
            .services
            .iter()
            .filter_map(|service| batching.start(service, wiring, board))
            .collect();
        let _ = wiring.wired.set(Wired {
            clients: RwLock::new(clients),
            runtime: tokio::runtime::Handle::current(),
            in_order: in_order(wiring),
        });
        let waiting = Arc::new(AtomicUsize::new(0));
        let scheduler = Scheduler::start(
            scheduler_config,
            move |job: Job<RequestPayload>| run_job(host.get(), job, waiting.clone()),
            shutdown,
        );
        let _ = wiring.scheduler.set(scheduler.clone());
        RequestPath {
            scheduler,
            routes: RwLock::new(routes_of(graph)),
            wiring: wiring.clone(),
            batching,
            metrics: Arc::new(Metrics::default()),
            journal: None,
        }
    }

    /// Takes on a new graph's pipelines: their timeouts, routes and the
    /// batchers of new embedding services (removed ones are let go; their
    /// requests in flight finish). The board must know the new graph.
    pub(crate) fn apply(&self, graph: &GraphSpec, board: &ServiceBoard) {
        for pipeline in &graph.pipelines {
            self.scheduler
                .set_pipeline_timeouts(&pipeline.name, timeouts_of(pipeline));
        }
        if let Some(wired) = self.wiring.wired.get() {
            let mut clients = wired.clients.write().unwrap_or_else(|p| p.into_inner());
            clients.retain(|name, _| {
                graph
                    .service(name)
                    .is_some_and(|service| matches!(service.kind, ServiceKind::Embedding(_)))
            });
            for service in &graph.services {
                if clients.contains_key(&service.name) {
                    continue;
                }
                if let Some((name, batcher)) = self.batching.start(service, &self.wiring, board) {
                    clients.insert(name, batcher);
                }
            }
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes_of(graph);
    }

    /// The pipeline a `POST` to `path` reaches.
    pub(crate) fn pipeline_for_route(&self, path: &str) -> Option<String> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    /// Submits a request and waits for its one answer. A full queue answers
    /// `Rejected` at once.
    ///
    /// Without a journal this future stays small (a few hundred bytes):
    /// the bridge and the HTTP ingress move it into a task of its own for
    /// every request, and a task's future is copied whole each time it
    /// moves. The journal's path, whose awaits hold records, is boxed.
    pub(crate) async fn submit(&self, submission: Submission) -> RequestAnswer {
        if let Some(journal) = &self.journal {
            return Box::pin(self.admit_journaled(journal.clone(), submission)).await;
        }
        let (pipeline, source) = (submission.pipeline.clone(), submission.source);
        match self.scheduler.submit(new_request(submission, None)) {
            Ok(ticket) => {
                let answer = ticket.await;
                self.metrics.record(&answer);
                answer
            }
            Err(rejected) => {
                let answer = rejected_answer(rejected, pipeline, source);
                self.metrics.record(&answer);
                answer
            }
        }
    }

    /// [`Self::submit`] with the answer handed to `then` instead of
    /// awaited, so that no task per request waits for it: on the
    /// scheduler's task as the answer is made, or (with the journal on) on
    /// a task that journals it first. The request is admitted (or refused)
    /// before this returns either way, so a cancel sent after it finds it.
    /// `then` must not block.
    pub(crate) fn submit_then<F>(&self, submission: Submission, then: F)
    where
        F: FnOnce(RequestAnswer) + Send + 'static,
    {
        if let Some(journal) = &self.journal {
            let answered = self.admit_journaled(journal.clone(), submission);
            tokio::spawn(async move { then(answered.await) });
            return;
        }
        let metrics = self.metrics.clone();
        self.scheduler
            .submit_then(new_request(submission, None), move |answer| {
                metrics.record(&answer);
                then(answer);
            });
    }

    /// Admits `submission` with the journal on, now, and returns what
    /// waits for its answer: it keeps what was asked (the request moves
    /// into the scheduler) and records the admission, the stages and the
    /// answer.
    fn admit_journaled(
        &self,
        journal: RequestJournal,
        submission: Submission,
    ) -> impl Future<Output = RequestAnswer> + Send + 'static {
        let asked = submission.clone();
        let stage_log = StageLog::new();
        let submitted_us = journal.now_us();
        // Counted before the request can be answered: `Kernel::wait` waits
        // for this request's records once every request is answered.
        let writing = journal.writing();
        let admitted = self
            .scheduler
            .submit(new_request(submission, Some(stage_log.clone())));
        let metrics = self.metrics.clone();
        async move {
            match admitted {
                // The answer is journaled by a task of its own, so that a
                // caller who stops waiting (a closed HTTP connection) does
                // not leave the journal without the answer the request
                // still gets.
                Ok(ticket) => {
                    journal.admitted(ticket.id(), &asked, submitted_us).await;
                    let id = ticket.id();
                    let (pipeline, priority, source) =
                        (asked.pipeline.clone(), asked.priority, asked.source);
                    let answered = tokio::spawn(async move {
                        let answer = ticket.await;
                        metrics.record(&answer);
                        journal.answered(&asked, &answer, stage_log.take()).await;
                        drop(writing);
                        answer
                    });
                    match answered.await {
                        Ok(answer) => answer,
                        Err(error) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        // The runtime is going away under the request.
                        Err(_) => {
                            let now = Instant::now();
                            Answer {
                                id,
                                correlation_id: id.to_string(),
                                pipeline,
                                priority,
                                source,
                                outcome: Outcome::Cancelled(
                                    spindle_scheduler::CancelReason::Shutdown,
                                ),
                                admitted_at: now,
                                started_at: None,
                                answered_at: now,
                            }
                        }
                    }
                }
                Err(rejected) => {
                    let answer = rejected_answer(rejected, asked.pipeline.clone(), asked.source);
                    metrics.record(&answer);
                    journal.answered(&asked, &answer, Vec::new()).await;
                    drop(writing);
                    answer
                }
            }
        }
    }

    /// Cancels a queued or running request by the correlation id its
    /// caller gave or by its numeric id; false when it is unknown or
    /// already answered.
    pub(crate) async fn cancel(&self, id_or_correlation: &str) -> bool {
        if self
            .scheduler
            .cancel_by_correlation(id_or_correlation)
            .await
            .is_some()
        {
            return true;
        }
        match id_or_correlation.parse::<u64>() {
            Ok(id) => {
                self.scheduler
                    .cancel(spindle_scheduler::RequestId(id))
                    .await
            }
            Err(_) => false,
        }
    }

    pub(crate) async fn scheduler_stats(&self) -> Stats {
        self.scheduler.stats().await
    }

    pub(crate) async fn batcher_stats(&self) -> Vec<(String, BatcherStats)> {
        let batchers: Vec<BatcherHandle<Prepared>> = match self.wiring.wired.get() {
            Some(wired) => wired
                .clients
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let mut stats = Vec::new();
        for batcher in &batchers {
            if let Some(batcher_stats) = batcher.stats().await {
                stats.push((batcher.service().to_owned(), batcher_stats));
            }
        }
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats
    }
}

/// The scheduler's request for a submission; `stage_log` when the
/// journal records its stages.
fn new_request(submission: Submission, stage_log: Option<StageLog>) -> NewRequest<RequestPayload> {
    NewRequest {
        correlation_id: submission.correlation_id,
        pipeline: submission.pipeline,
        priority: submission.priority,
        timeout: submission.deadline,
        source: submission.source,
        payload: RequestPayload {
            text: submission.text,
            stage_log,
        },
    }
}

/// The answer of a request the scheduler refused at admission.
fn rejected_answer(
    rejected: spindle_scheduler::Rejected,
    pipeline: String,
    source: Source,
) -> RequestAnswer {
    let now = Instant::now();
    Answer {
        id: rejected.id,
        correlation_id: rejected.id.to_string(),
        pipeline,
        priority: rejected.priority,
        source,
        outcome: Outcome::Rejected(rejected.reason),
        admitted_at: now,
        started_at: None,
        answered_at: now,
    }
}

/// How long a runtime worker keeps polling for the host's reply before it
/// lets itself sleep on it: a short stage's reply then lands on a worker that
/// is awake, instead of waking one from another thread (which costs more than
/// the whole stage). Past its first moments ([`spindle_scripting::spin`])
/// the worker yields between polls, so its other tasks still run. Only the
/// one run waiting for the host polls (`waiting` counts them): with more,
/// the host is busy with the others and the runtime has their answers to
/// handle. Nobody polls from a thread on one CPU
/// ([`spindle_scripting::spinning_pays`]) or on the host's: the host could
/// not answer while it spins.
const REPLY_SPIN: Duration = Duration::from_micros(40);

async fn await_host_reply(
    mut receiver: oneshot::Receiver<RunOutcome>,
    waiting: &AtomicUsize,
    host: &ScriptHost,
) -> Result<RunOutcome, oneshot::error::RecvError> {
    struct Waiting<'a>(&'a AtomicUsize);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let alone = waiting.fetch_add(1, Ordering::AcqRel) == 0;
    let _waiting = Waiting(waiting);
    if !alone || !spindle_scripting::spinning_pays() || host.shares_this_cpu() {
        return receiver.await;
    }
    let spin = Spin::new(REPLY_SPIN, PURE_SPIN_WHILE_ASKING);
    loop {
        match receiver.try_recv() {
            Ok(outcome) => return Ok(outcome),
            Err(oneshot::error::TryRecvError::Closed) => break,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        match spin.pause() {
            Pause::Spun => {}
            Pause::Yielded | Pause::GaveWay => tokio::task::yield_now().await,
            Pause::Spent => break,
        }
    }
    receiver.await
}

/// Runs one admitted request's pipeline on the script host.
async fn run_job(
    host: Option<ScriptHost>,
    mut job: Job<RequestPayload>,
    waiting: Arc<AtomicUsize>,
) -> Result<PipelineAnswer, Failure> {
    let Some(host) = host else {
        return Err(Failure::permanent(
            "this kernel runs a graph without a script: it has no pipelines to run",
        ));
    };
    let id = job.request.id.0;
    let request = PipelineRequest {
        id,
        correlation_id: job.request.correlation_id.clone(),
        pipeline: job.request.pipeline.clone(),
        priority: job.request.priority.as_str().to_owned(),
        text: std::mem::take(&mut job.request.payload.text),
        stage_log: job.request.payload.stage_log.take(),
        scope: RequestScope::new(JobScope {
            id: job.request.id,
            deadline: job.deadline.clone(),
            cancel: job.cancel.clone(),
        }),
    };
    let (sender, receiver) = oneshot::channel();
    host.run_pipeline(
        request,
        Box::new(move |outcome| {
            let _ = sender.send(outcome);
        }),
    );
    // When the scheduler drops this future (timeout, cancel) before the
    // host answered, stop the Lua run too.
    struct RunGuard {
        id: u64,
        host: ScriptHost,
        answered: bool,
    }
    impl Drop for RunGuard {
        fn drop(&mut self) {
            if !self.answered {
                self.host.cancel(self.id);
            }
        }
    }
    let mut guard = RunGuard {
        id,
        host,
        answered: false,
    };
    let outcome = await_host_reply(receiver, &waiting, &guard.host).await;
    guard.answered = true;
    match outcome {
        Ok(RunOutcome::Answered(answer)) => Ok(answer),
        Ok(RunOutcome::Failed(stage_failure)) => Err(failure::from_stage(stage_failure)),
        Ok(RunOutcome::Cancelled) => Err(Failure::permanent("the pipeline was cancelled")),
        Ok(RunOutcome::Panicked(message)) => Err(Failure::permanent(format!(
            "the pipeline panicked: {message}"
        ))),
        Err(_) => Err(Failure::permanent("the script host stopped")),
    }
}

impl BatchingSetup {
    /// A batcher for `service` if it is an embedding service.
    fn start(
        &self,
        service: &spindle_scripting::ServiceSpec,
        wiring: &EffectsWiring,
        board: &ServiceBoard,
    ) -> Option<(String, BatcherHandle<Prepared>)> {
        let ServiceKind::Embedding(embedding) = &service.kind else {
            return None;
        };
        let batcher = Batcher::start(
            BatcherConfig {
                service: service.name.clone(),
                max_batch_tokens: embedding.max_batch_tokens as usize,
                max_wait: self.config.max_batch_wait,
                batch_timeout: embedding
                    .remote
                    .as_ref()
                    .map_or(self.config.batch_timeout, |remote| remote.timeout),
                // A server computes several batches at once; an engine one
                // per session.
                max_in_flight: match &embedding.remote {
                    Some(_) => 4,
                    None => embedding
                        .sessions
                        .map_or(1, |sessions| sessions.max(1) as usize),
                },
                breaker: self.config.breaker.clone(),
                retry: self.config.retry.clone(),
                availability: board.availability(&service.name),
                ..BatcherConfig::default()
            },
            EngineBackend {
                service: service.name.clone(),
                directory: wiring.directory.clone(),
                faults: self.faults.clone(),
            },
            self.shutdown.clone(),
        );
        Some((service.name.clone(), batcher))
    }
}

fn timeouts_of(
    pipeline: &spindle_scripting::PipelineSpec,
) -> spindle_scheduler::PerPriority<Option<Duration>> {
    let timeouts = &pipeline.timeouts;
    spindle_scheduler::PerPriority {
        high: timeouts.high,
        medium: timeouts.medium,
        low: timeouts.low,
    }
}

fn routes_of(graph: &GraphSpec) -> HashMap<String, String> {
    let mut routes = HashMap::new();
    for pipeline in &graph.pipelines {
        routes.insert(
            format!("/v1/pipelines/{}", pipeline.name),
            pipeline.name.clone(),
        );
        for source in &pipeline.sources {
            if let SourceSpec::Http { route } = source {
                routes.insert(route.clone(), pipeline.name.clone());
            }
        }
    }
    routes
}

/// The batchers embed calls use, set once when the path starts; new
/// embedding services add theirs when a graph is applied.
struct Wired {
    clients: RwLock<HashMap<String, BatcherHandle<Prepared>>>,
    runtime: tokio::runtime::Handle,
    /// The debugger's deadline changes and events, in the Lua thread's
    /// order (see [`in_order`]).
    in_order: tokio::sync::mpsc::UnboundedSender<InOrder>,
}

/// What the Lua thread hands over about a debugger's pause, kept in order.
enum InOrder {
    /// A request paused (or resumed) at a line: its deadline clock stops
    /// (or goes on).
    Deadline {
        id: RequestId,
        paused: bool,
    },
    Debug(DebugEvent),
}

/// Starts the task that applies the debugger's deadline changes and then
/// publishes its events, one at a time: a paused request's clock has
/// stopped before its `Stopped` event goes out, so a front end that
/// reacts to the stop (a status page, a test) finds the deadline paused.
fn in_order(wiring: &EffectsWiring) -> tokio::sync::mpsc::UnboundedSender<InOrder> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let scheduler = wiring.scheduler.clone();
    let events = wiring.debug_events.clone();
    tokio::spawn(async move {
        while let Some(item) = receiver.recv().await {
            match item {
                InOrder::Deadline { id, paused } => {
                    let Some(scheduler) = scheduler.get() else {
                        continue;
                    };
                    if paused {
                        scheduler.pause(id).await;
                    } else {
                        scheduler.resume(id).await;
                    }
                }
                InOrder::Debug(event) => {
                    if let Some(events) = &events {
                        let _ = events.send(event);
                    }
                }
            }
        }
    });
    sender
}

/// Connects the script host's embed stages to the request path. Create it
/// first, start the host with [`EffectsWiring::effects`], then hand it to
/// the request path.
#[derive(Clone, Default)]
pub(crate) struct EffectsWiring {
    wired: Arc<OnceLock<Wired>>,
    /// For the debugger's pauses: a paused request's deadline clock stops.
    scheduler: Arc<OnceLock<RequestScheduler>>,
    pub(crate) directory: EngineDirectory,
    /// The debugger core's events (stops, output), for every debugger
    /// front end.
    pub(crate) debug_events: Option<tokio::sync::broadcast::Sender<DebugEvent>>,
    /// The store behind `s.state`, opened by the first call (a script that
    /// never calls it leaves no file).
    state: Arc<crate::state::LazyStore>,
}

impl EffectsWiring {
    pub(crate) fn new(directory: EngineDirectory, state: crate::state::LazyStore) -> EffectsWiring {
        EffectsWiring {
            directory,
            debug_events: Some(tokio::sync::broadcast::channel(1024).0),
            state: Arc::new(state),
            ..EffectsWiring::default()
        }
    }

    pub(crate) fn effects(&self) -> Arc<dyn Effects> {
        Arc::new(KernelEffects {
            wiring: self.clone(),
        })
    }
}

struct KernelEffects {
    wiring: EffectsWiring,
}

impl Effects for KernelEffects {
    fn embed(&self, call: EmbedCall, reply: EmbedReply) {
        use spindle_scheduler::Error;
        let Some(wired) = self.wiring.wired.get() else {
            reply(Err(EmbedFailure::new(Error::ShuttingDown)));
            return;
        };
        let clients = wired.clients.read().unwrap_or_else(|p| p.into_inner());
        let Some(primary) = clients.get(&call.service) else {
            reply(Err(EmbedFailure::new(Error::Unavailable {
                service: call.service.clone(),
                reason: "no embedding service of that name is declared".to_owned(),
            })));
            return;
        };
        let Some(scope) = call.scope.get::<JobScope>() else {
            reply(Err(EmbedFailure::new(Error::Backend {
                service: call.service.clone(),
                failure: Failure::permanent("the embed call carries no request scope"),
            })));
            return;
        };
        let mut client = EmbedClient::new(primary.clone());
        if !call.shared_with.is_empty() {
            client = client.shared_with(
                call.shared_with
                    .iter()
                    .filter_map(|name| clients.get(name).cloned())
                    .collect(),
            );
        }
        if let Some(fallback) = call.fallback.as_ref().and_then(|name| clients.get(name)) {
            client = client.with_fallback(fallback.clone());
        }
        drop(clients);
        let deadline = scope.deadline.clone();
        let cancel = scope.cancel.clone();
        let directory = self.wiring.directory.clone();
        wired.runtime.spawn(async move {
            // Tokenized here, once, off the Lua thread: the batcher groups
            // by its length and the engine pads it without tokenizing again.
            let input = prepare(&directory, &call.service, call.text);
            let result = client.embed(input, deadline.deadline(), &cancel).await;
            reply(match result {
                Ok(embedded) => Ok(EmbedAnswer {
                    from_fallback: embedded.is_fallback(),
                    vector: embedded.vector,
                }),
                Err(error) => Err(EmbedFailure::new(error)),
            });
        });
    }

    fn run_event(&self, event: RunEvent) {
        self.deadline_follows(&event);
    }

    fn debug_event(&self, event: DebugEvent) {
        // Behind any deadline change handed over before it; directly when
        // the request path is not wired yet or its runtime has stopped.
        let event = match self.wiring.wired.get() {
            Some(wired) => match wired.in_order.send(InOrder::Debug(event)) {
                Ok(()) => return,
                Err(unsent) => match unsent.0 {
                    InOrder::Debug(event) => event,
                    InOrder::Deadline { .. } => return,
                },
            },
            None => event,
        };
        if let Some(sender) = &self.wiring.debug_events {
            let _ = sender.send(event);
        }
    }

    fn state(&self, call: spindle_scripting::StateCall, reply: spindle_scripting::StateReply) {
        match self.wiring.state.get() {
            Ok(store) => crate::state::call(store, call, reply),
            Err(error) => reply(Err(error)),
        }
    }
}

impl KernelEffects {
    /// A request paused at a line (a debugger holds it) stops its deadline
    /// clock; resumed, the clock goes on with the time that was left.
    /// Called on the Lua thread: it only hands the change over, ahead of
    /// the debug event that follows it.
    fn deadline_follows(&self, event: &RunEvent) {
        let (Some(wired), Some(scope)) = (self.wiring.wired.get(), event.scope.get::<JobScope>())
        else {
            return;
        };
        let _ = wired.in_order.send(InOrder::Deadline {
            id: scope.id,
            paused: matches!(event.kind, RunEventKind::Paused(_)),
        });
    }
}

/// `text` as the batcher's input for `service`: tokenized by the service's
/// engine when it is up (a text it cannot tokenize goes as text, and its
/// batch reports the error), else with an estimated length; the engine
/// then tokenizes it in the batch.
fn prepare(directory: &EngineDirectory, service: &str, text: String) -> EmbedInput<Prepared> {
    let encoded = directory
        .get(service)
        .and_then(|engine| engine.encode(&text).ok());
    match encoded {
        Some(encoded) => EmbedInput {
            tokens: encoded.len(),
            prepared: Some(Arc::new(encoded)),
            text: text.into(),
        },
        None => EmbedInput {
            tokens: estimate_tokens(&text),
            prepared: None,
            text: text.into(),
        },
    }
}

/// Tokens of a text when no engine is up to count them: words and
/// punctuation, plus the two special tokens.
fn estimate_tokens(text: &str) -> usize {
    text.split_whitespace().count() * 4 / 3 + 2
}
