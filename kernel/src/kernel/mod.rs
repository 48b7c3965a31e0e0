//! The integrated kernel as one object: [`Kernel::start`] assembles the
//! supervisor, the embedding engines, the request path and the script host
//! once, and returns a cheap, cloneable handle. `spindle run`, the tests,
//! the benchmarks and every front end (HTTP, Jupyter, DAP, netlink) use
//! this handle and nothing else: a new front end is a new crate on it.
//!
//! Lifecycle: services start in waves while requests are already admitted
//! (a pipeline's requests wait in their queue until the services it needs
//! are ready). [`Kernel::shutdown`] first drains the request path (queued
//! requests are answered, in-flight ones get their grace), then stops the
//! services in reverse dependency order. [`Kernel::kill_now`] skips the
//! grace periods. A graph without pipelines ends by itself once every
//! service has come to rest; a critical service giving up ends any run.

mod operate;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use spindle_journal::{Journal, JournalConfig, JournalStats};
use spindle_scheduler::{BatcherStats, Counters, RequestId, Stats};
use spindle_scripting::{
    Diagnostic, GraphSpec, HostConfig, Interrupter, NotebookJob, RunStack, ScriptHost, Variable,
    VariablesRef,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::debug::{self, LiveRequest};
use crate::embedding::{EmbeddingRuntime, EngineDirectory, EngineStatus, RemoteEngines};
use crate::error::KernelError;
use crate::events::{EventHub, KernelSubscription, Subscriptions};
use crate::faults::{Fault, Faults};
use crate::journal::{self, RequestJournal};
use crate::metrics::LatencySeries;
use crate::requests::{
    EffectsWiring, HostCell, RequestAnswer, RequestPath, RequestPathConfig, Submission,
};
use crate::services::{
    KernelSnapshot, PipelineStatus, Readiness, ServiceBoard, ServiceDetail, ServiceStatus,
};
use crate::supervisor::{
    self, GuardLink, LogLine, LuaProbes, RunOutcome, SupervisorConfig, SupervisorControl,
};

/// What a kernel runs.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// A Lua script: its services, pipelines, Lua probes and stages.
    Script(PathBuf),
    /// A graph built in Rust: services only (Lua probes and pipelines need
    /// a script).
    Graph(GraphSpec),
}

/// How the kernel runs; `Default` suits tests (no log files, no guard).
#[derive(Clone, Default)]
pub struct KernelConfig {
    /// Unique per run; every child gets it as `SPINDLE_RUN_ID`. Default:
    /// `<unix seconds>-<pid>`.
    pub run_id: Option<String>,
    /// The run's data directory; service logs go to `DATA_DIR/logs`.
    /// `None`: no log files.
    pub data_dir: Option<PathBuf>,
    pub requests: RequestPathConfig,
    /// Where models and ONNX Runtime are cached; `None` resolves it as the
    /// fetch script does.
    pub model_cache: Option<PathBuf>,
    /// Become the child subreaper, so that orphans of services are ours to
    /// find and kill at shutdown.
    pub child_subreaper: bool,
    /// Spawn a guard process (`program args...`) that kills every service's
    /// process group if this process dies without stopping them.
    pub guard: Option<GuardCommand>,
    /// The time budget of a Lua stage that declares none (nor its
    /// pipeline); `None` keeps the script host's default (1 s).
    pub stage_budget: Option<std::time::Duration>,
    /// How many events a subscriber may fall behind before it gets
    /// `KernelEvent::Lagged` and a snapshot; 0 means the default, 4,096.
    pub event_buffer: usize,
    /// Run until [`Kernel::shutdown`] even when every service has come to
    /// rest and there is no pipeline (a notebook's kernel, an operated
    /// graph). Without it such a graph ends by itself.
    pub until_shutdown: bool,
    /// Connects embedding services with a `url` (the binary plugs in
    /// `spindle-remote`); without it they fail to start with a reason.
    pub remote_engines: Option<Arc<dyn RemoteEngines>>,
    /// Record every request, service event and operation in a journal
    /// (`spindle run --journal DIR`); its `run_id` and `script` are filled
    /// in by the kernel. Wins over the script's `journal` setting.
    pub journal: Option<JournalConfig>,
    /// Honour the script's `s.settings { journal = "DIR" }` when `journal`
    /// is `None`: this config with the script's folder as its `dir` (the
    /// rotation settings of `spindle run`). `None` ignores the setting (a
    /// replay, which must not write into the journal it reads, and tests).
    pub script_journal: Option<JournalConfig>,
}

impl std::fmt::Debug for KernelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelConfig")
            .field("run_id", &self.run_id)
            .field("data_dir", &self.data_dir)
            .field("until_shutdown", &self.until_shutdown)
            .field("remote_engines", &self.remote_engines.is_some())
            .field(
                "journal",
                &self.journal.as_ref().map(|journal| &journal.dir),
            )
            .finish_non_exhaustive()
    }
}

/// The command line of the guard process (`spindle __guard`).
#[derive(Debug, Clone)]
pub struct GuardCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// How a kernel ended.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelOutcome {
    /// Each service's last state, critical failures, swept processes.
    pub services: RunOutcome,
    /// The request path's final counters (`submitted == answered()`).
    pub requests: Counters,
}

impl KernelOutcome {
    /// Whether no critical service gave up.
    pub fn is_success(&self) -> bool {
        self.services.is_success()
    }
}

/// Everything the metrics endpoint and the status views show.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub scheduler: Stats,
    pub batchers: Vec<(String, BatcherStats)>,
    /// Request latency by pipeline, priority and outcome.
    pub latency: Vec<LatencySeries>,
    pub engines: Vec<EngineStatus>,
    pub services: Vec<ServiceStatus>,
}

/// A handle to a running kernel; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("run_id", &self.inner.run_id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    run_id: String,
    data_dir: Option<PathBuf>,
    /// The script the graph came from, for `reload`.
    script: Option<PathBuf>,
    graph: RwLock<GraphSpec>,
    diagnostics: Vec<Diagnostic>,
    notices: Vec<String>,
    host: HostCell,
    host_config: HostConfig,
    wiring: EffectsWiring,
    supervisor: SupervisorControl,
    requests: RequestPath,
    board: Arc<ServiceBoard>,
    subscriptions: Subscriptions,
    directory: EngineDirectory,
    faults: Faults,
    shutdown: CancellationToken,
    kill_now: CancellationToken,
    outcome: watch::Receiver<Option<Result<KernelOutcome, KernelError>>>,
    /// Cancelled once the journal (if any) has written everything.
    journal_done: CancellationToken,
    /// Where the journal is written, if there is one.
    journal_dir: Option<PathBuf>,
    started_at: SystemTime,
}

impl Kernel {
    /// Evaluates the script (if any), starts the script host, the request
    /// path and the supervisor, and returns at once: services start in the
    /// background. Must be called inside a tokio runtime; evaluating the
    /// script blocks the caller briefly (on the Lua thread's answer).
    ///
    /// A script with errors is [`KernelError::Script`] with every
    /// diagnostic; warnings are in [`Kernel::diagnostics`].
    pub fn start(source: KernelSource, config: KernelConfig) -> Result<Kernel, KernelError> {
        Kernel::assemble(source, config, |_, _| ()).map(|(kernel, ())| kernel)
    }

    /// [`Kernel::start`] with the event and log subscriptions taken before
    /// any service starts: they see every event and line from the first (a
    /// subscription taken after `start` returns may come after the first
    /// services' events; see [`Kernel::watch`]).
    pub fn start_subscribed(
        source: KernelSource,
        config: KernelConfig,
        with_requests: bool,
    ) -> Result<(Kernel, FirstSubscriptions), KernelError> {
        Kernel::assemble(source, config, |subscriptions, scheduler| {
            FirstSubscriptions {
                events: subscriptions.subscribe(with_requests.then_some(scheduler)),
                logs: subscriptions.subscribe_logs(),
            }
        })
    }

    /// Assembles and starts the kernel; `before_services` runs after the
    /// event hub exists and before the supervisor starts.
    fn assemble<T>(
        source: KernelSource,
        config: KernelConfig,
        before_services: impl FnOnce(&Subscriptions, &crate::requests::RequestScheduler) -> T,
    ) -> Result<(Kernel, T), KernelError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| KernelError::NoRuntime)?;
        let directory = EngineDirectory::default();
        // `s.state`: durable under the data directory, in memory without one.
        let state = crate::state::LazyStore::new(
            config.data_dir.as_ref().map(|dir| dir.join("state.redb")),
        );
        let wiring = EffectsWiring::new(directory.clone(), state);
        let mut host_config = HostConfig::default();
        if config.stage_budget.is_some() {
            host_config.default_stage_budget = config.stage_budget;
        }
        let (script, host, graph, diagnostics) = match source {
            KernelSource::Script(path) => {
                let (host, graph, diagnostics) = operate::evaluate(&path, &wiring, &host_config)?;
                (Some(path), Some(host), graph, diagnostics)
            }
            KernelSource::Graph(graph) => (None, None, graph, Vec::new()),
        };
        let host = HostCell::new(host);
        let run_id = config.run_id.clone().unwrap_or_else(new_run_id);
        let log_dir = config.data_dir.as_ref().map(|dir| dir.join("logs"));
        if let Some(log_dir) = &log_dir {
            std::fs::create_dir_all(log_dir).map_err(|error| KernelError::DataDir {
                path: log_dir.clone(),
                reason: error.to_string(),
            })?;
        }
        let mut notices = Vec::new();
        if config.child_subreaper
            && let Err(error) = supervisor::become_child_subreaper()
        {
            notices.push(format!(
                "cannot become a child subreaper ({error}); orphans of services may escape"
            ));
        }
        let guard = match &config.guard {
            Some(command) => {
                let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
                match GuardLink::spawn(&command.program, &args, &run_id) {
                    Ok(guard) => Some(Arc::new(guard)),
                    Err(error) => {
                        notices.push(format!(
                            "cannot start the guard process ({error}); a killed spindle may leave processes behind"
                        ));
                        None
                    }
                }
            }
            None => None,
        };

        let board = Arc::new(ServiceBoard::new(&graph));
        let buffer = match config.event_buffer {
            0 => 4096,
            buffer => buffer,
        };
        let (hub, subscriptions) = EventHub::new(board.clone(), buffer);
        let shutdown = CancellationToken::new();
        let kill_now = CancellationToken::new();
        let requests_shutdown = CancellationToken::new();
        let _entered = runtime.enter();
        let faults = Faults::default();
        let mut requests = RequestPath::start(
            &graph,
            host.clone(),
            &wiring,
            &board,
            &faults,
            config.requests.clone(),
            requests_shutdown.clone(),
        );

        // The command line's journal wins over the script's setting.
        let journal_config = config.journal.clone().or_else(|| {
            let dir = graph.settings.journal.clone()?;
            let mut journal_config = config.script_journal.clone()?;
            journal_config.dir = dir;
            Some(journal_config)
        });
        let journal_dir = journal_config.as_ref().map(|config| config.dir.clone());
        let journal = match journal_config {
            Some(mut journal_config) => {
                journal_config.run_id = run_id.clone();
                journal_config.script = script
                    .as_ref()
                    .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()))
                    .map(|path| path.display().to_string())
                    .unwrap_or_default();
                let handle = Journal::start(journal_config)
                    .map_err(|error| KernelError::Journal(error.to_string()))?;
                Some(RequestJournal::new(handle))
            }
            None => None,
        };
        requests.journal = journal.clone();
        // Subscribed before the supervisor starts: every service event.
        let journal_done = CancellationToken::new();
        match &journal {
            Some(journal) => {
                let subscription = subscriptions.subscribe(None);
                tokio::spawn(journal::follow_events(
                    subscription,
                    journal.clone(),
                    journal_done.clone(),
                ));
            }
            None => journal_done.cancel(),
        }

        let (supervisor, control) = SupervisorControl::new();
        let (event_sender, service_events) = mpsc::unbounded_channel();
        let (log_sender, log_lines) = mpsc::unbounded_channel();
        let (probe_sender, probe_results) = mpsc::unbounded_channel();
        let supervisor_config = SupervisorConfig {
            run_id: run_id.clone(),
            log_dir,
            subscribers: vec![event_sender],
            logs: Some(log_sender),
            probe_results: Some(probe_sender),
            lua_probes: Some(Arc::new(ScriptProbes(host.clone())) as Arc<dyn LuaProbes>),
            in_process: Some(Arc::new(EmbeddingRuntime {
                directory: directory.clone(),
                cache: config.model_cache.clone(),
                remote: config.remote_engines.clone(),
                ..EmbeddingRuntime::default()
            })),
            guard,
            kill_now: kill_now.clone(),
            control: Some(control),
            run_until_shutdown: config.until_shutdown,
        };
        let hub_done = CancellationToken::new();
        tokio::spawn(hub.run(
            service_events,
            log_lines,
            probe_results,
            requests.scheduler.clone(),
            hub_done.clone(),
        ));
        // Before the supervisor runs: nothing has been published yet.
        let first = before_services(&subscriptions, &requests.scheduler);
        let (outcome_sender, outcome) = watch::channel(None);
        let lifecycle = Lifecycle {
            shutdown: shutdown.clone(),
            kill_now: kill_now.clone(),
            requests_shutdown,
            supervisor_shutdown: CancellationToken::new(),
            hub_done,
            has_pipelines: !graph.pipelines.is_empty() || config.until_shutdown,
        };
        tokio::spawn(lifecycle.run(
            graph.clone(),
            supervisor_config,
            requests.scheduler.clone(),
            outcome_sender,
        ));
        let kernel = Kernel {
            inner: Arc::new(Inner {
                run_id,
                data_dir: config.data_dir,
                script,
                graph: RwLock::new(graph),
                diagnostics,
                notices,
                host,
                host_config,
                wiring,
                supervisor,
                requests,
                board,
                subscriptions,
                directory,
                faults,
                shutdown,
                kill_now,
                outcome,
                journal_done,
                journal_dir,
                started_at: SystemTime::now(),
            }),
        };
        Ok((kernel, first))
    }

    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.inner.data_dir.as_deref()
    }

    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }

    /// The graph the kernel runs now (it changes when a graph is applied
    /// or the script reloaded).
    pub fn graph(&self) -> GraphSpec {
        self.inner
            .graph
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The script the kernel was started on, if any.
    pub fn script(&self) -> Option<&Path> {
        self.inner.script.as_deref()
    }

    /// The script's warnings (errors keep a kernel from starting).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.inner.diagnostics
    }

    /// Things a person should know about how the kernel started (no guard
    /// process, no subreaper).
    pub fn notices(&self) -> &[String] {
        &self.inner.notices
    }

    /// Every service's state now, in declaration order.
    pub fn services(&self) -> Vec<ServiceStatus> {
        self.inner.board.snapshot().services
    }

    /// One service in detail: status, uptime, its probes' last results and
    /// its recent output lines; `None` if no service has that name.
    pub fn service(&self, name: &str) -> Option<ServiceDetail> {
        self.inner.board.detail(name)
    }

    /// Every pipeline and whether it can be served now.
    pub fn pipelines(&self) -> Vec<PipelineStatus> {
        self.inner.board.snapshot().pipelines
    }

    /// Services and pipelines at one point of the event sequence.
    pub fn snapshot(&self) -> KernelSnapshot {
        self.inner.board.snapshot()
    }

    /// Whether every pipeline can be served now, and why not.
    pub fn readiness(&self) -> Readiness {
        self.inner.board.snapshot().readiness()
    }

    /// The pipeline a `POST` to `route` reaches (`/v1/pipelines/NAME` and
    /// the routes the script declares).
    pub fn route(&self, route: &str) -> Option<String> {
        self.inner.requests.pipeline_for_route(route)
    }

    /// Submits a request and waits for its one answer: ok, error (with its
    /// class and stage), timeout, rejected (busy, shutting down) or
    /// cancelled. A request for a pipeline whose services are not ready yet
    /// waits for them within its deadline.
    pub async fn submit(&self, submission: Submission) -> RequestAnswer {
        self.inner.requests.submit(submission).await
    }

    /// [`Kernel::submit`] for a front end that answers from a callback: the
    /// request is admitted (or refused) before this returns, and `then`
    /// receives its one answer, a refusal included. No task waits for it:
    /// without a journal `then` runs on the scheduler's task the moment the
    /// answer is made, so it must not block (send without waiting, or hand
    /// the answer on). Must be called within the kernel's runtime.
    pub fn submit_then<F>(&self, submission: Submission, then: F)
    where
        F: FnOnce(RequestAnswer) + Send + 'static,
    {
        self.inner.requests.submit_then(submission, then);
    }

    /// Cancels a live request by the correlation id its caller gave or by
    /// its numeric id; `false` if none is live.
    pub async fn cancel(&self, id_or_correlation: &str) -> bool {
        journal::operation(
            self.inner.requests.journal.as_ref(),
            journal::Operation::Cancel {
                target: id_or_correlation,
            },
        )
        .await;
        self.inner.requests.cancel(id_or_correlation).await
    }

    /// Live requests (queued, waiting for their services, running), with
    /// the Lua stage each running one is in and whether it is paused.
    pub async fn requests(&self) -> Vec<LiveRequest> {
        let summaries = self.inner.requests.scheduler.requests().await;
        debug::live_requests(summaries, &self.inner.host.all()).await
    }

    /// Pauses request `id` at the next Lua line it runs (at once if it runs
    /// Lua now; when its next stage starts if it waits on an embedding).
    /// Every other request goes on; this one's deadline clock stops while
    /// it is paused. Returns once the pause is armed: the request's
    /// `Paused` state shows in [`Kernel::requests`] and its scheduler
    /// events.
    pub async fn pause(&self, id: RequestId) -> Result<(), KernelError> {
        debug::pause(&self.inner.host.all(), id).await
    }

    /// Lets a paused request go on; its deadline clock runs again with the
    /// time it had left.
    pub async fn resume(&self, id: RequestId) -> Result<(), KernelError> {
        debug::resume(&self.inner.host.all(), id).await
    }

    /// The stack of paused request `id`: frames (innermost first) with
    /// their script path, line, locals and upvalues, and the request's
    /// fields.
    pub async fn stack(&self, id: RequestId) -> Result<RunStack, KernelError> {
        debug::stack(&self.inner.host.all(), id).await
    }

    /// The children of an expandable value of paused request `id`.
    pub async fn variables(
        &self,
        id: RequestId,
        reference: VariablesRef,
    ) -> Result<Vec<Variable>, KernelError> {
        debug::variables(&self.inner.host.all(), id, reference).await
    }

    /// The script host, for the debugger's commands (`debug.rs`).
    /// The current one: a reloaded script swaps it.
    pub(crate) fn host(&self) -> Option<ScriptHost> {
        self.inner.host.get()
    }

    /// The sender of the debugger core's events (`debug.rs`).
    pub(crate) fn debug_event_sender(
        &self,
    ) -> Option<&broadcast::Sender<spindle_scripting::DebugEvent>> {
        self.inner.wiring.debug_events.as_ref()
    }

    /// Stops the Lua code running right now (a runaway stage or cell) from
    /// any thread; the Lua state and its globals stay. `None` without a
    /// script.
    pub fn interrupter(&self) -> Option<Interrupter> {
        self.inner.host.get().as_ref().map(ScriptHost::interrupter)
    }

    /// Runs a notebook job (a cell, a completion, an inspection) on the
    /// kernel's script host, in the same Lua state as the script's stages
    /// and probes. A kernel without a script answers it "host stopped".
    pub fn notebook(&self, job: NotebookJob) {
        match self.inner.host.get() {
            Some(host) => host.notebook(job),
            None => job.host_gone(),
        }
    }

    /// Service and pipeline events from now on; with `with_requests`, the
    /// request lifecycle events too. Services start as soon as the kernel
    /// does, so events may already have gone by: a front end that keeps a
    /// view of the services starts from [`Kernel::watch`] instead.
    pub fn subscribe(&self, with_requests: bool) -> KernelSubscription {
        self.inner
            .subscriptions
            .subscribe(with_requests.then_some(&self.inner.requests.scheduler))
    }

    /// A snapshot of the services and pipelines, and a subscription to the
    /// events after it: none is missed between the two and none is in
    /// both (the subscription skips the events the snapshot includes).
    pub fn watch(&self, with_requests: bool) -> (KernelSnapshot, KernelSubscription) {
        // Subscribed first: an event published before the snapshot is
        // taken was applied to the board before it, so the snapshot has it.
        let subscription = self.subscribe(with_requests);
        let snapshot = self.snapshot();
        let subscription = subscription.after(snapshot.as_of);
        (snapshot, subscription)
    }

    /// Services' output lines from now on. A reader that falls more than
    /// 8,192 lines behind is told how many it missed (`Lagged`).
    pub fn subscribe_logs(&self) -> broadcast::Receiver<LogLine> {
        self.inner.subscriptions.subscribe_logs()
    }

    /// A service's recent output lines (oldest first) and a subscription
    /// to its lines from then on (filter by `LogLine::service`): no line is
    /// in both or missing between them. `None` for an unknown service.
    pub fn follow_logs(
        &self,
        service: &str,
    ) -> Option<(Vec<LogLine>, broadcast::Receiver<LogLine>)> {
        self.inner
            .board
            .recent_logs_then(service, || self.inner.subscriptions.subscribe_logs())
    }

    /// Counters, queues, batching, latency, engines and services.
    pub async fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            scheduler: self.inner.requests.scheduler_stats().await,
            batchers: self.inner.requests.batcher_stats().await,
            latency: self.inner.requests.metrics.latency(),
            engines: self.inner.directory.statuses(),
            services: self.services(),
        }
    }

    /// The folder the journal is written to (from `--journal` or the
    /// script's `journal` setting); `None` without a journal.
    pub fn journal_dir(&self) -> Option<&Path> {
        self.inner.journal_dir.as_deref()
    }

    /// What the journal has written so far (records, bytes, segments, how
    /// often admissions waited for it, a write error); `None` without a
    /// journal.
    pub fn journal_stats(&self) -> Option<JournalStats> {
        self.inner
            .requests
            .journal
            .as_ref()
            .map(|journal| journal.handle().stats())
    }

    /// Injects a fault (an engine that fails or answers late) to see how
    /// the graph copes; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        journal::operation_now(
            self.inner.requests.journal.as_ref(),
            journal::Operation::Fault(&fault),
        );
        self.inner.faults.inject(fault);
    }

    /// Asks for an orderly shutdown: requests drained, then services
    /// stopped in reverse dependency order. Returns at once.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        // A request a debugger holds would never drain: let it go.
        crate::debug::release_stopped(self);
    }

    /// Skips what is left of every grace period: in-flight requests are
    /// cancelled and services' process groups get SIGKILL.
    pub fn kill_now(&self) {
        self.inner.shutdown.cancel();
        self.inner.kill_now.cancel();
    }

    /// Whether a shutdown has been asked for.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Resolves when a shutdown has been asked for (or the run ends).
    pub async fn shutting_down(&self) {
        self.inner.shutdown.cancelled().await;
    }

    /// Waits until the kernel has stopped: every request answered, every
    /// service stopped, every event delivered to the hub.
    pub async fn wait(&self) -> Result<KernelOutcome, KernelError> {
        let mut outcome = self.inner.outcome.clone();
        let outcome = outcome.wait_for(Option::is_some).await.map(|o| o.clone());
        // The event stream has ended with the run: the journal writes its
        // last records. Then every request's answer (journaled by a task
        // of its own) is written too.
        self.inner.journal_done.cancelled().await;
        if let Some(journal) = &self.inner.requests.journal {
            journal.finish().await;
        }
        match outcome {
            Ok(outcome) => outcome.expect("waited for Some"),
            Err(_) => Err(KernelError::Crashed(
                "the kernel's lifecycle task ended without an outcome".to_owned(),
            )),
        }
    }
}

/// What [`Kernel::start_subscribed`] subscribed to before any service
/// started.
#[derive(Debug)]
pub struct FirstSubscriptions {
    pub events: KernelSubscription,
    pub logs: broadcast::Receiver<LogLine>,
}

/// The kernel's lifecycle task: runs the supervisor, waits for the end of
/// the run, drains the request path, then stops the services.
struct Lifecycle {
    shutdown: CancellationToken,
    kill_now: CancellationToken,
    requests_shutdown: CancellationToken,
    supervisor_shutdown: CancellationToken,
    hub_done: CancellationToken,
    has_pipelines: bool,
}

impl Lifecycle {
    async fn run(
        self,
        graph: GraphSpec,
        config: SupervisorConfig,
        scheduler: crate::requests::RequestScheduler,
        outcome: watch::Sender<Option<Result<KernelOutcome, KernelError>>>,
    ) {
        let mut supervisor = tokio::spawn(supervisor::run(
            graph,
            config,
            self.supervisor_shutdown.clone(),
        ));
        let mut finished = None;
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            result = &mut supervisor => {
                let ended_cleanly = matches!(&result, Ok(Ok(run)) if run.is_success());
                finished = Some(result);
                // Services came to rest: a graph with pipelines keeps
                // answering (with the reasons) until asked to stop.
                if self.has_pipelines && ended_cleanly {
                    self.shutdown.cancelled().await;
                }
                self.shutdown.cancel();
            }
        }
        self.requests_shutdown.cancel();
        let counters = tokio::select! {
            counters = scheduler.stopped() => counters,
            _ = self.kill_now.cancelled() => scheduler.stats().await.counters,
        };
        self.supervisor_shutdown.cancel();
        let result = match finished {
            Some(result) => result,
            None => supervisor.await,
        };
        // Every event reaches subscribers before the kernel reports its end.
        self.hub_done.cancelled().await;
        let result = match result {
            Ok(Ok(services)) => Ok(KernelOutcome {
                services,
                requests: counters,
            }),
            Ok(Err(error)) => Err(KernelError::Crashed(error.to_string())),
            Err(join_error) => Err(KernelError::Crashed(format!(
                "the supervisor task failed: {join_error}"
            ))),
        };
        outcome.send_replace(Some(result));
    }
}

/// Lua probes run on the current script host's thread.
struct ScriptProbes(HostCell);

impl LuaProbes for ScriptProbes {
    fn call_check(
        &self,
        function: spindle_scripting::FunctionId,
        timeout: std::time::Duration,
        reply: Box<dyn FnOnce(Result<bool, String>) + Send>,
    ) {
        match self.0.get() {
            Some(host) => host.call_check(function, timeout, reply),
            None => reply(Err(
                "this graph has no script: Lua probes cannot run".to_owned()
            )),
        }
    }
}

/// A fresh run id: `<unix seconds>-<pid>`, then `<unix seconds>-<pid>-<n>`
/// for the n-th more in the same process. Unique per kernel: the final
/// sweep kills every process carrying its run id, so two kernels of one
/// process (tests, notebooks) must never share one.
pub fn new_run_id() -> String {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    match STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => format!("{}-{}", now.as_secs(), std::process::id()),
        more => format!("{}-{}-{more}", now.as_secs(), std::process::id()),
    }
}
