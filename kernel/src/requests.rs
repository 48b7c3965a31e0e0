//! The request path: admission and priorities (the scheduler), the script
//! host's Lua pipelines (one coroutine per request), and embed stages that
//! go through a batcher per embedding service to its engine.
//!
//! Front ends (HTTP today; netlink and Jupyter later) call [`RequestPath`]
//! with plain Rust values; nothing here knows a wire format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle_scheduler::{
    Answer, Batcher, BatcherConfig, BatcherHandle, BatcherStats, BreakerConfig, EmbedClient, Job,
    NewRequest, Outcome, Priority, RequestEvent, RequestId, RetryPolicy, Scheduler,
    SchedulerConfig, SchedulerHandle, Source, StageFailure, Stats,
};
use spindle_scripting::{
    Effects, EmbedAnswer, EmbedCall, EmbedFailure, EmbedReply, GraphSpec, PipelineAnswer,
    PipelineRequest, RunOutcome, ScriptHost, ServiceKind, SourceSpec,
};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::embedding::{EngineBackend, EngineDirectory};
use crate::metrics::Metrics;

/// Settings of the request path.
#[derive(Debug, Clone)]
pub struct RequestPathConfig {
    pub scheduler: SchedulerConfig,
    /// How long a batch may wait to fill.
    pub max_batch_wait: Duration,
    pub breaker: BreakerConfig,
    pub retry: RetryPolicy,
}

impl Default for RequestPathConfig {
    fn default() -> Self {
        RequestPathConfig {
            scheduler: SchedulerConfig::default(),
            max_batch_wait: Duration::from_millis(2),
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

/// The running request path; cheap to share behind an `Arc`.
pub struct RequestPath {
    scheduler: SchedulerHandle<String, PipelineAnswer>,
    routes: HashMap<String, String>,
    batchers: Vec<BatcherHandle>,
    directory: EngineDirectory,
    metrics: Arc<Metrics>,
    /// Correlation ids of requests not yet answered, for cancelling by them.
    correlations: Mutex<HashMap<String, RequestId>>,
}

impl std::fmt::Debug for RequestPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestPath")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// A request's deadline and cancellation, looked up by embed calls.
type Inflight = Arc<Mutex<HashMap<u64, (Instant, CancellationToken)>>>;

impl RequestPath {
    /// Starts the scheduler, one batcher per embedding service, and wires the
    /// script host's pipelines to them. Must run inside a tokio runtime.
    /// `host` must have been started with [`EffectsWiring::effects`]' result.
    pub fn start(
        graph: &GraphSpec,
        host: ScriptHost,
        wiring: EffectsWiring,
        config: RequestPathConfig,
        shutdown: CancellationToken,
    ) -> RequestPath {
        let mut scheduler_config = config.scheduler.clone();
        for pipeline in &graph.pipelines {
            let timeouts = &pipeline.timeouts;
            scheduler_config.pipeline_timeouts.insert(
                pipeline.name.clone(),
                spindle_scheduler::PerPriority {
                    high: timeouts.high,
                    medium: timeouts.medium,
                    low: timeouts.low,
                },
            );
        }
        let mut handles: HashMap<String, BatcherHandle> = HashMap::new();
        for service in &graph.services {
            let ServiceKind::Embedding(embedding) = &service.kind else {
                continue;
            };
            let batcher = Batcher::start(
                BatcherConfig {
                    service: service.name.clone(),
                    max_batch_tokens: embedding.max_batch_tokens as usize,
                    max_wait: config.max_batch_wait,
                    breaker: config.breaker.clone(),
                    ..BatcherConfig::default()
                },
                EngineBackend {
                    service: service.name.clone(),
                    directory: wiring.directory.clone(),
                },
                shutdown.clone(),
            );
            handles.insert(service.name.clone(), batcher);
        }
        let mut clients = HashMap::new();
        for (name, handle) in &handles {
            clients.insert(
                name.clone(),
                ServiceClients {
                    primary: handle.clone(),
                    retry: config.retry.clone(),
                },
            );
        }
        *wiring.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(WiredState {
            clients,
            runtime: tokio::runtime::Handle::current(),
        });
        let inflight = wiring.inflight.clone();
        let worker_host = host.clone();
        let metrics = Arc::new(Metrics::default());
        let scheduler = Scheduler::start(
            scheduler_config,
            move |job: Job<String>| run_job(worker_host.clone(), inflight.clone(), job),
            shutdown,
        );
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
        RequestPath {
            scheduler,
            routes,
            batchers: handles.into_values().collect(),
            directory: wiring.directory,
            metrics,
            correlations: Mutex::default(),
        }
    }

    /// Every pipeline's name, sorted.
    pub fn pipeline_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.routes.values().cloned().collect();
        names.sort();
        names.dedup();
        names
    }

    /// The pipeline a `POST` to `path` reaches.
    pub fn pipeline_for_route(&self, path: &str) -> Option<&str> {
        self.routes.get(path).map(String::as_str)
    }

    /// Submits a request and waits for its one answer. A full queue answers
    /// `Rejected` at once.
    pub async fn submit(&self, submission: Submission) -> RequestAnswer {
        let pipeline = submission.pipeline.clone();
        let request = NewRequest {
            correlation_id: submission.correlation_id,
            pipeline: submission.pipeline,
            priority: submission.priority,
            timeout: submission.deadline,
            source: submission.source,
            payload: submission.text,
        };
        let correlation_id = request.correlation_id.clone();
        // Admit while holding the correlation map, so that a cancel by
        // correlation id that follows any sign of admission finds the entry.
        let submitted = {
            let mut correlations = self.correlations.lock().unwrap_or_else(|p| p.into_inner());
            let submitted = self.scheduler.submit(request);
            if let (Some(correlation_id), Ok(ticket)) = (&correlation_id, &submitted) {
                correlations.insert(correlation_id.clone(), ticket.id());
            }
            submitted
        };
        let answer = match submitted {
            Ok(ticket) => {
                let answer = ticket.await;
                if let Some(correlation_id) = &correlation_id {
                    let mut correlations =
                        self.correlations.lock().unwrap_or_else(|p| p.into_inner());
                    if correlations.get(correlation_id) == Some(&answer.id) {
                        correlations.remove(correlation_id);
                    }
                }
                answer
            }
            Err(rejected) => {
                let now = Instant::now();
                Answer {
                    id: rejected.id,
                    correlation_id: rejected.id.to_string(),
                    pipeline,
                    priority: rejected.priority,
                    source: submission.source,
                    outcome: Outcome::Rejected(rejected.reason),
                    admitted_at: now,
                    started_at: None,
                    answered_at: now,
                }
            }
        };
        self.metrics.record(&answer);
        answer
    }

    /// Cancels a queued or running request by its id or by the correlation
    /// id its caller gave; false when it is unknown or already answered.
    pub async fn cancel(&self, id_or_correlation: &str) -> bool {
        let by_correlation = self
            .correlations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id_or_correlation)
            .copied();
        let id = match by_correlation {
            Some(id) => id,
            None => match id_or_correlation.parse::<u64>() {
                Ok(id) => RequestId(id),
                Err(_) => return false,
            },
        };
        self.scheduler.cancel(id).await
    }

    pub async fn scheduler_stats(&self) -> Stats {
        self.scheduler.stats().await
    }

    pub async fn batcher_stats(&self) -> Vec<(String, BatcherStats)> {
        let mut stats = Vec::new();
        for batcher in &self.batchers {
            if let Some(batcher_stats) = batcher.stats().await {
                stats.push((batcher.service().to_owned(), batcher_stats));
            }
        }
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn engines(&self) -> &EngineDirectory {
        &self.directory
    }

    /// Request lifecycle events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RequestEvent> {
        self.scheduler.subscribe()
    }

    /// Resolves once the scheduler has answered everything and stopped.
    pub async fn stopped(&self) {
        self.scheduler.stopped().await;
    }
}

/// Runs one admitted request's pipeline on the script host.
async fn run_job(
    host: ScriptHost,
    inflight: Inflight,
    mut job: Job<String>,
) -> Result<PipelineAnswer, StageFailure> {
    let id = job.request.id.0;
    job.request.stamp("pipeline");
    inflight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, (job.request.deadline, job.cancel.clone()));
    let request = PipelineRequest {
        id,
        correlation_id: job.request.correlation_id.clone(),
        pipeline: job.request.pipeline.clone(),
        priority: job.request.priority.as_str().to_owned(),
        text: std::mem::take(&mut job.request.payload),
        scope: Default::default(),
    };
    let (sender, receiver) = oneshot::channel();
    host.run_pipeline(
        request,
        Box::new(move |outcome| {
            let _ = sender.send(outcome);
        }),
    );
    // Forget the request however this future ends; when the scheduler drops
    // it (timeout, cancel) before the host answered, stop the Lua run too.
    struct RunGuard {
        inflight: Inflight,
        id: u64,
        host: ScriptHost,
        answered: bool,
    }
    impl Drop for RunGuard {
        fn drop(&mut self) {
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
            if !self.answered {
                self.host.cancel(self.id);
            }
        }
    }
    let mut guard = RunGuard {
        inflight,
        id,
        host,
        answered: false,
    };
    let outcome = receiver.await;
    guard.answered = true;
    match outcome {
        Ok(RunOutcome::Answered(answer)) => Ok(answer),
        Ok(RunOutcome::Failed(failure)) => Err(StageFailure {
            transient: failure
                .cause
                .as_ref()
                .and_then(|cause| cause.get::<spindle_scheduler::Error>())
                .is_some_and(spindle_scheduler::Error::is_transient),
            message: failure.to_string(),
        }),
        Ok(RunOutcome::Cancelled) => Err(StageFailure::permanent("the pipeline was cancelled")),
        Ok(RunOutcome::Panicked(message)) => Err(StageFailure::permanent(format!(
            "the pipeline panicked: {message}"
        ))),
        Err(_) => Err(StageFailure::permanent("the script host stopped")),
    }
}

/// The batchers an embed call can use, set once the path starts.
struct ServiceClients {
    primary: BatcherHandle,
    retry: RetryPolicy,
}

struct WiredState {
    clients: HashMap<String, ServiceClients>,
    runtime: tokio::runtime::Handle,
}

/// Connects the script host's embed stages to the request path. Create it
/// first, start the host with [`EffectsWiring::effects`], then hand it to
/// [`RequestPath::start`].
#[derive(Clone, Default)]
pub struct EffectsWiring {
    state: Arc<Mutex<Option<WiredState>>>,
    inflight: Inflight,
    pub directory: EngineDirectory,
}

impl EffectsWiring {
    pub fn new(directory: EngineDirectory) -> EffectsWiring {
        EffectsWiring {
            directory,
            ..EffectsWiring::default()
        }
    }

    pub fn effects(&self) -> Arc<dyn Effects> {
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
        let state = self.wiring.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(state) = state.as_ref() else {
            reply(Err(EmbedFailure::new(
                spindle_scheduler::Error::ShuttingDown,
            )));
            return;
        };
        let Some(primary) = state.clients.get(&call.service) else {
            reply(Err(EmbedFailure::new(spindle_scheduler::Error::Backend {
                service: call.service.clone(),
                message: "no such embedding service".to_owned(),
                transient: false,
            })));
            return;
        };
        let mut client = EmbedClient::new(primary.primary.clone(), primary.retry.clone());
        if let Some(fallback) = call
            .fallback
            .as_ref()
            .and_then(|name| state.clients.get(name))
        {
            client = client.with_fallback(fallback.primary.clone());
        }
        let (deadline, cancel) = self
            .wiring
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&call.request_id)
            .cloned()
            .unwrap_or_else(|| {
                (
                    Instant::now() + Duration::from_secs(30),
                    CancellationToken::new(),
                )
            });
        let tokens = match self.wiring.directory.get(&call.service) {
            Some(engine) => engine.count_tokens(&call.text),
            None => estimate_tokens(&call.text),
        };
        state.runtime.spawn(async move {
            let result = client.embed(&call.text, tokens, deadline, &cancel).await;
            reply(match result {
                Ok(embedded) => Ok(EmbedAnswer {
                    from_fallback: embedded.is_fallback(),
                    vector: embedded.vector,
                }),
                Err(error) => Err(EmbedFailure::new(error)),
            });
        });
    }
}

/// Tokens of a text when no engine is up to count them: words and
/// punctuation, plus the two special tokens.
fn estimate_tokens(text: &str) -> usize {
    text.split_whitespace().count() * 4 / 3 + 2
}
