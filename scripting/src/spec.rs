//! The plain Rust model of a service graph: what a script declares, with
//! every default filled in and every reference checked.
//!
//! Nothing here knows Lua, tokio or any wire format. The kernel runs these
//! specs; `spindle graph` prints them.

use std::path::PathBuf;
use std::time::Duration;

/// A whole script's graph: services in declaration order.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSpec {
    /// The script the graph was read from (absolute).
    pub file: PathBuf,
    pub services: Vec<ServiceSpec>,
    /// Pipelines in declaration order.
    pub pipelines: Vec<PipelineSpec>,
    /// The run's settings (`s.settings { ... }`).
    pub settings: SettingsSpec,
}

/// What `s.settings { ... }` declares for the whole run. The command line
/// wins over each of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsSpec {
    /// `journal = "DIR"`: record the session in DIR (absolute; a relative
    /// path starts at the script's folder), as `spindle run --journal DIR`.
    pub journal: Option<PathBuf>,
}

/// Where in a script something was declared (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

/// One service of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub location: Location,
    pub kind: ServiceKind,
    pub depends_on: Vec<Dependency>,
    /// Decides when the service counts as ready (healthy); none means ready
    /// as soon as it runs.
    pub readiness: Option<ProbeSpec>,
    /// Decides when a running service is restarted; none means only its exit
    /// counts as a failure.
    pub liveness: Option<ProbeSpec>,
    pub restart: RestartSpec,
    pub shutdown: ShutdownSpec,
    /// When a critical service gives up, the whole run ends with an error.
    pub critical: bool,
}

/// What a service is. More kinds (`lua`, `http`) come later; match with a
/// wildcard arm outside this crate.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServiceKind {
    /// A supervised child process in its own process group.
    Process(ProcessSpec),
    /// An in-process embedding engine.
    Embedding(EmbeddingSpec),
}

impl ServiceKind {
    /// The kind's name as scripts and tools spell it.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceKind::Process(_) => "process",
            ServiceKind::Embedding(_) => "embedding",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// Program and arguments; never empty.
    pub command: Vec<String>,
    /// Working directory, resolved against the script's folder.
    pub cwd: PathBuf,
    /// Extra environment, env files first, then `env` entries (later wins).
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSpec {
    /// A model name from the registry.
    pub model: String,
    /// Execution providers in order of preference, e.g. `["cuda", "cpu"]`.
    pub providers: Vec<String>,
    pub max_batch_tokens: u32,
    /// Intra-op threads of each session; `None` shares the cores out
    /// among the sessions.
    pub intra_threads: Option<u32>,
    /// Sessions run side by side, each batch on whichever is free; `None`
    /// means one.
    pub sessions: Option<u32>,
    /// A server elsewhere computes the vectors (`url = ...`); `model` is
    /// then the name that server knows the model by.
    pub remote: Option<RemoteEmbeddingSpec>,
}

/// An embedding server reached over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEmbeddingSpec {
    /// `http://host:port`, without a path.
    pub url: String,
    pub api: RemoteApi,
    /// How long one batch may take on the server.
    pub timeout: Duration,
    /// The vectors' dimension, if declared; checked at start either way.
    pub dimensions: Option<u32>,
    /// The server's health route (a readiness probe on it is implied).
    pub health: String,
}

/// Which HTTP API an embedding server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteApi {
    /// `POST /v1/embeddings` with `{"model", "input"}`, as OpenAI's API
    /// (and infinity, vLLM, LiteLLM, ...).
    OpenAi,
    /// `POST /embed` with `{"inputs"}`, as Text Embeddings Inference.
    Tei,
}

impl RemoteApi {
    pub fn name(self) -> &'static str {
        match self {
            RemoteApi::OpenAi => "openai",
            RemoteApi::Tei => "tei",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: DependencyCondition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DependencyCondition {
    /// The dependency's process has been started.
    Started,
    /// The dependency's readiness probe passes (or it runs, without one).
    Healthy,
    /// The dependency ran to completion with exit status 0.
    CompletedSuccessfully,
}

impl DependencyCondition {
    pub fn name(self) -> &'static str {
        match self {
            DependencyCondition::Started => "started",
            DependencyCondition::Healthy => "healthy",
            DependencyCondition::CompletedSuccessfully => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub check: ProbeCheck,
    pub location: Location,
    /// Time between two checks.
    pub period: Duration,
    /// A check that takes longer fails.
    pub timeout: Duration,
    /// Consecutive failures before the probe counts as failing.
    pub failure_threshold: u32,
    /// Consecutive successes before a failing probe counts as passing again.
    pub success_threshold: u32,
    /// Wait after start before the first check.
    pub initial_delay: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeCheck {
    /// Run a command; exit status 0 passes.
    Exec { command: Vec<String> },
    /// `GET` the URL; a status in 200..400 passes.
    Http { url: String },
    /// Connect to `host:port`; an accepted connection passes.
    Tcp { address: String },
    /// Call a Lua function on the script host; a truthy result passes.
    Lua { function: FunctionId },
}

/// A Lua function kept alive by the [`crate::ScriptHost`] that evaluated the
/// script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FunctionId(pub u32);

#[derive(Debug, Clone, PartialEq)]
pub struct RestartSpec {
    pub policy: RestartPolicy,
    /// First delay before a restart.
    pub backoff_initial: Duration,
    /// The delay doubles after each restart up to this cap.
    pub backoff_max: Duration,
    /// Random spread added to each delay, as a fraction of it (0.0..=1.0).
    pub jitter: f64,
    /// Crash-loop limit: more than `max_restarts` restarts within `window`
    /// and the service gives up.
    pub max_restarts: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

impl RestartPolicy {
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownSpec {
    /// Signal number sent first to the whole process group (default SIGTERM).
    pub signal: i32,
    /// The signal's name as written, e.g. `"SIGTERM"`.
    pub signal_name: String,
    /// Time allowed after the signal before SIGKILL.
    pub grace: Duration,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec {
            policy: RestartPolicy::OnFailure,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            jitter: 0.1,
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

impl Default for ShutdownSpec {
    fn default() -> Self {
        ShutdownSpec {
            signal: 15,
            signal_name: "SIGTERM".to_owned(),
            grace: Duration::from_secs(5),
        }
    }
}

impl GraphSpec {
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|service| service.name == name)
    }

    pub fn pipeline(&self, name: &str) -> Option<&PipelineSpec> {
        self.pipelines.iter().find(|pipeline| pipeline.name == name)
    }

    /// Startup waves: wave 0 holds services without dependencies, wave N
    /// those whose deepest dependency is in wave N-1. Services keep their
    /// declaration order inside a wave. The graph must be acyclic (evaluation
    /// guarantees it).
    pub fn waves(&self) -> Vec<Vec<&ServiceSpec>> {
        let mut wave_of: Vec<Option<usize>> = vec![None; self.services.len()];
        let index_of = |name: &str| self.services.iter().position(|s| s.name == name);
        // Iterate to a fixed point; graphs are small and acyclic.
        let mut changed = true;
        while changed {
            changed = false;
            for (service_idx, service) in self.services.iter().enumerate() {
                if wave_of[service_idx].is_some() {
                    continue;
                }
                let mut wave = Some(0);
                for dependency in &service.depends_on {
                    match index_of(&dependency.service).and_then(|idx| wave_of[idx]) {
                        Some(dep_wave) => wave = wave.map(|w: usize| w.max(dep_wave + 1)),
                        None => wave = None,
                    }
                }
                if wave.is_some() {
                    wave_of[service_idx] = wave;
                    changed = true;
                }
            }
        }
        let wave_count = wave_of.iter().flatten().max().map_or(0, |w| w + 1);
        let mut waves = vec![Vec::new(); wave_count];
        for (service_idx, wave) in wave_of.iter().enumerate() {
            if let Some(wave) = wave {
                waves[*wave].push(&self.services[service_idx]);
            }
        }
        waves
    }
}

/// A pipeline: the stages a request passes through, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    pub name: String,
    pub location: Location,
    /// Where requests come from; every pipeline is also reachable over HTTP
    /// at `/v1/pipelines/<name>`.
    pub sources: Vec<SourceSpec>,
    pub stages: Vec<StageSpec>,
    /// Deadlines by priority for this pipeline; `None` keeps the kernel's
    /// defaults.
    pub timeouts: PriorityTimeouts,
    /// A Lua function `(req, err) -> req` producing a degraded answer when a
    /// stage fails; its answers are marked as fallback answers.
    pub fallback: Option<FunctionId>,
    /// Lua time each Lua stage (and the fallback) may use per request,
    /// unless the stage declares its own; `None` keeps the host's default.
    pub budget: Option<Duration>,
}

impl PipelineSpec {
    /// The budget declared for `stage`: its own, else the pipeline's.
    /// `None` means the host's default applies.
    pub fn stage_budget(&self, stage: &StageSpec) -> Option<Duration> {
        stage.budget.or(self.budget)
    }
}

/// Per-priority durations; `None` means "the default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriorityTimeouts {
    pub high: Option<Duration>,
    pub medium: Option<Duration>,
    pub low: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// An extra HTTP route (`POST`), besides `/v1/pipelines/<name>`.
    Http { route: String },
    /// Requests from the kernel module over generic netlink.
    Netlink { family: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    pub location: Location,
    pub kind: StageKind,
    /// Lua time one run of this stage may use (`s.stage("name", { budget =
    /// "50ms" }, fn)`); a stage past it is stopped and fails. Time waiting
    /// on effects or paused by the debugger does not count.
    pub budget: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StageKind {
    /// A Lua function `(req) -> req`, run as a coroutine per request.
    Lua { function: FunctionId },
    /// Embeds `req.text` with an embedding service into `req.vector`.
    Embed {
        service: String,
        /// Another embedding service to use when this one fails or its
        /// breaker is open.
        fallback: Option<String>,
        /// More services that share the stage's work with `service`
        /// (`s.embed { services = { ... } }`): each text goes to the one
        /// with the fewest texts in flight, and to the next when one fails.
        /// Empty for a single service.
        shared_with: Vec<String>,
    },
}
