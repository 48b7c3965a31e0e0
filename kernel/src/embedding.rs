//! Embedding services in a running graph: the `embedding` service kind for
//! the supervisor, the directory of engines that are up, and the batcher
//! backend that computes a batch on a service's engine.
//!
//! An engine is either ONNX Runtime in this process or a server elsewhere
//! (`embedding = { url = ... }`). The kernel knows no HTTP: it defines the
//! [`RemoteEngines`] seam, and the binary plugs in an implementation
//! (`spindle-remote`) through `KernelConfig::remote_engines`.
//!
//! The supervisor starts and stops engines through [`EmbeddingRuntime`]; the
//! request path finds them in the [`EngineDirectory`] at each batch, so a
//! restarted engine is picked up. Texts arrive tokenized by the service's
//! engine ([`Engine::encode`], done by the request path off the Lua thread)
//! and are not tokenized again; an input tokenized by another engine (a
//! fallback service with another vocabulary) goes as text. Each engine
//! measures its batch costs at start-up, which its batcher sizes batches
//! by. A batch that finds no engine (a restart
//! raced it) fails as "unavailable", which no breaker counts; batchers do
//! not send batches while their service is not ready at all.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use spindle_embed::{BatchCosts, Calibration, Encoded, Engine, EngineConfig, Input, Provider};
use spindle_scheduler::{BatchCost, EmbedBackend, EmbedInput, Failure};
use spindle_scripting::{EmbeddingSpec, RemoteEmbeddingSpec, ServiceKind, ServiceSpec};

use crate::failure;
use crate::faults::{BatchFault, Faults};
use crate::supervisor::{BoxFuture, InProcessRuntime, InProcessService};

/// What a running engine runs, for the status API and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStatus {
    pub service: String,
    pub model: String,
    pub provider: String,
    /// Why a preferred provider was skipped, when one was.
    pub fallback: Option<String>,
    pub dimensions: usize,
    pub max_seq_length: usize,
    /// Texts the engine embedded, and how many of them it had to tokenize
    /// itself: the request path tokenizes each text once, before batching,
    /// so this stays 0 unless a text came from a fallback or before the
    /// engine was up.
    pub texts: u64,
    pub tokenized_by_engine: u64,
}

/// Connects embedding services whose vectors a server elsewhere computes.
pub trait RemoteEngines: Send + Sync {
    /// Reaches the server `spec` names for service `service` (of `model`):
    /// it must answer and give vectors of the declared dimension (checked
    /// with one embedding). An `Err` is a start failure of the service.
    fn connect(
        &self,
        service: &str,
        model: &str,
        spec: &RemoteEmbeddingSpec,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteEngine>, String>>;
}

/// A connected remote engine.
pub trait RemoteEngine: Send + Sync {
    /// One vector per text, in order, L2-normalised. A failure that never
    /// reached the server (connection refused) is `Unavailable`; a server
    /// error or a timeout transient; a refusal of the request permanent.
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'static, Result<Vec<Vec<f32>>, Failure>>;
    /// What the status API shows.
    fn status(&self) -> RemoteStatus;
}

/// A remote engine as the status API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStatus {
    pub model: String,
    /// `remote:openai http://...` and the like.
    pub endpoint: String,
    pub dimensions: usize,
}

/// A running engine: in this process, or a server elsewhere.
#[derive(Clone)]
enum RunningEngine {
    Local(Arc<Engine>),
    Remote(Arc<dyn RemoteEngine>),
}

/// The engines of the graph's embedding services that are up, by service.
#[derive(Clone, Default)]
pub struct EngineDirectory {
    engines: Arc<RwLock<HashMap<String, RunningEngine>>>,
}

impl std::fmt::Debug for EngineDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineDirectory").finish_non_exhaustive()
    }
}

impl EngineDirectory {
    /// The engine in this process of `service`, if it has one and it is up.
    pub fn get(&self, service: &str) -> Option<Arc<Engine>> {
        match self.read().get(service) {
            Some(RunningEngine::Local(engine)) => Some(engine.clone()),
            _ => None,
        }
    }

    fn get_running(&self, service: &str) -> Option<RunningEngine> {
        self.read().get(service).cloned()
    }

    pub fn statuses(&self) -> Vec<EngineStatus> {
        let mut statuses: Vec<EngineStatus> = self
            .read()
            .iter()
            .map(|(service, engine)| match engine {
                RunningEngine::Local(engine) => {
                    let info = engine.info();
                    let health = engine.health();
                    EngineStatus {
                        texts: health.texts,
                        tokenized_by_engine: health.tokenized,
                        service: service.clone(),
                        model: info.model.clone(),
                        provider: info.provider.as_str().to_owned(),
                        fallback: info.fallback.clone(),
                        dimensions: info.dimensions,
                        max_seq_length: info.max_seq_length,
                    }
                }
                RunningEngine::Remote(remote) => {
                    let status = remote.status();
                    EngineStatus {
                        texts: 0,
                        tokenized_by_engine: 0,
                        service: service.clone(),
                        model: status.model,
                        provider: status.endpoint,
                        fallback: None,
                        dimensions: status.dimensions,
                        max_seq_length: 0,
                    }
                }
            })
            .collect();
        statuses.sort_by(|a, b| a.service.cmp(&b.service));
        statuses
    }

    fn insert(&self, service: &str, engine: RunningEngine) {
        self.engines
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(service.to_owned(), engine);
    }

    fn remove(&self, service: &str) -> Option<RunningEngine> {
        self.engines
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(service)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, RunningEngine>> {
        self.engines
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts `embedding` services for the supervisor: the service is running
/// (and ready) once its session is loaded and a warm-up batch passed; a
/// remote one once its server answered with vectors of the right size.
#[derive(Clone)]
pub struct EmbeddingRuntime {
    pub directory: EngineDirectory,
    /// Overrides the cache directory (tests); `None` resolves it as the
    /// fetch script does.
    pub cache: Option<std::path::PathBuf>,
    /// Whether engines measure their batch costs (default: from the cache,
    /// measured once per machine).
    pub calibration: Calibration,
    /// Connects remote embedding services; without it they fail to start.
    pub remote: Option<Arc<dyn RemoteEngines>>,
}

impl Default for EmbeddingRuntime {
    fn default() -> Self {
        EmbeddingRuntime {
            directory: EngineDirectory::default(),
            cache: None,
            calibration: Calibration::Cached,
            remote: None,
        }
    }
}

impl std::fmt::Debug for EmbeddingRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingRuntime")
            .field("cache", &self.cache)
            .field("calibration", &self.calibration)
            .field("remote", &self.remote.is_some())
            .finish_non_exhaustive()
    }
}

impl InProcessRuntime for EmbeddingRuntime {
    fn start(
        &self,
        spec: &ServiceSpec,
    ) -> BoxFuture<'static, Result<Box<dyn InProcessService>, String>> {
        let ServiceKind::Embedding(embedding) = &spec.kind else {
            let kind = spec.kind.name();
            return Box::pin(
                async move { Err(format!("a `{kind}` service cannot run in process")) },
            );
        };
        let service = spec.name.clone();
        let directory = self.directory.clone();
        if let Some(remote_spec) = &embedding.remote {
            let Some(remote) = self.remote.clone() else {
                return Box::pin(async move {
                    Err("remote embedding services need the remote backend, and this kernel was started without one".to_owned())
                });
            };
            let connecting = remote.connect(&service, &embedding.model, remote_spec);
            return Box::pin(async move {
                let engine = connecting.await?;
                let status = engine.status();
                tracing::info!(service = %service, endpoint = %status.endpoint, dimensions = status.dimensions, "remote embedding service connected");
                directory.insert(&service, RunningEngine::Remote(engine));
                Ok(Box::new(RemoteService { service, directory }) as Box<dyn InProcessService>)
            });
        }
        let config = engine_config(embedding, self.cache.clone(), self.calibration);
        Box::pin(async move {
            let config = config?;
            let engine = tokio::task::spawn_blocking(move || Engine::start(config))
                .await
                .map_err(|error| format!("the engine's loader failed: {error}"))?
                .map_err(|error| error.to_string())?;
            let info = engine.info();
            match &info.fallback {
                Some(reason) => tracing::warn!(
                    service = %service, model = %info.model, provider = info.provider.as_str(),
                    "embedding engine fell back to {}: {reason}", info.provider.as_str()
                ),
                None => tracing::info!(
                    service = %service, model = %info.model, provider = info.provider.as_str(),
                    "embedding engine ready"
                ),
            }
            let engine = Arc::new(engine);
            directory.insert(&service, RunningEngine::Local(engine.clone()));
            Ok(Box::new(EmbeddingService {
                service,
                engine,
                directory,
            }) as Box<dyn InProcessService>)
        })
    }
}

fn engine_config(
    embedding: &EmbeddingSpec,
    cache: Option<std::path::PathBuf>,
    calibration: Calibration,
) -> Result<EngineConfig, String> {
    let providers = embedding
        .providers
        .iter()
        .map(|name| Provider::parse_list(name).map_err(|error| error.to_string()))
        .collect::<Result<Vec<Vec<Provider>>, String>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(EngineConfig {
        providers,
        intra_threads: embedding.intra_threads.map(|threads| threads as usize),
        sessions: embedding
            .sessions
            .map_or(1, |sessions| sessions.max(1) as usize),
        cache,
        calibration,
        ..EngineConfig::new(embedding.model.clone())
    })
}

struct EmbeddingService {
    service: String,
    engine: Arc<Engine>,
    directory: EngineDirectory,
}

impl InProcessService for EmbeddingService {
    /// Ends with an error when the session thread dies; checked once a
    /// second (the thread dying is a bug or a crash of ONNX Runtime). It
    /// holds the engine weakly: a watcher that outlives `stop` must not
    /// keep a stopped engine (its session and arena) alive.
    fn finished(&mut self) -> BoxFuture<'static, Result<(), String>> {
        let engine = Arc::downgrade(&self.engine);
        Box::pin(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                let Some(engine) = engine.upgrade() else {
                    return std::future::pending().await;
                };
                let health = engine.health();
                if !health.alive {
                    return Err(health
                        .last_error
                        .unwrap_or_else(|| "the engine thread stopped".to_owned()));
                }
            }
        })
    }

    fn stop(self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ()> {
        let removed = self.directory.remove(&self.service);
        Box::pin(async move {
            // The last handle joins the engine thread after its queued
            // batches; do that off the runtime's threads.
            drop(self.engine);
            if let Some(engine) = removed {
                let _ = tokio::task::spawn_blocking(move || drop(engine)).await;
            }
        })
    }
}

/// What the request path prepares for an engine: the text tokenized by
/// that engine's tokenizer.
pub(crate) type Prepared = Arc<Encoded>;

/// A connected remote service: nothing runs here; its server's health is
/// its readiness probe's business.
struct RemoteService {
    service: String,
    directory: EngineDirectory,
}

impl InProcessService for RemoteService {
    fn finished(&mut self) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(std::future::pending())
    }

    fn stop(self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ()> {
        self.directory.remove(&self.service);
        Box::pin(async {})
    }
}

/// Computes a batcher's batches on the service's current engine.
pub(crate) struct EngineBackend {
    pub(crate) service: String,
    pub(crate) directory: EngineDirectory,
    pub(crate) faults: Faults,
}

impl EmbedBackend for EngineBackend {
    type Prepared = Prepared;

    fn embed(
        &self,
        inputs: Vec<EmbedInput<Prepared>>,
    ) -> impl std::future::Future<Output = Result<Vec<Vec<f32>>, Failure>> + Send {
        let engine = self.directory.get_running(&self.service);
        let service = self.service.clone();
        let fault = self.faults.next_batch(&self.service);
        async move {
            let engine = match engine {
                None => return Err(failure::engine_not_running(&service)),
                Some(RunningEngine::Remote(remote)) => {
                    if fault == Some(BatchFault::Fail) {
                        return Err(failure::injected(&service));
                    }
                    let texts = inputs
                        .into_iter()
                        .map(|input| input.text.to_string())
                        .collect();
                    return remote.embed(texts).await;
                }
                Some(RunningEngine::Local(engine)) => engine,
            };
            if fault == Some(BatchFault::Fail) {
                return Err(failure::injected(&service));
            }
            // Tokenized once, by this engine's tokenizer; anything else
            // (another engine's encoding, no encoding) goes as text.
            let inputs = inputs
                .into_iter()
                .map(|input| match input.prepared {
                    Some(encoded) if engine.accepts(&encoded) => Input::Encoded(encoded),
                    _ => Input::Text(input.text.to_string()),
                })
                .collect();
            let (sender, receiver) = tokio::sync::oneshot::channel();
            // Held for the life of the batch: when the batcher drops this
            // future (the batch ran out of time), the engine stops the run.
            let cancel = CancelOnDrop(Some(engine.submit_inputs(
                inputs,
                Box::new(move |result| {
                    let _ = sender.send(result);
                }),
            )));
            let result = receiver.await;
            cancel.disarm();
            if let Some(BatchFault::Delay(delay)) = fault {
                tokio::time::sleep(delay).await;
            }
            match result {
                Ok(Ok(batch)) => Ok(batch
                    .embeddings
                    .into_iter()
                    .map(|embedding| embedding.vector)
                    .collect()),
                Ok(Err(error)) => Err(failure::from_engine(&service, &error)),
                Err(_) => Err(failure::engine_not_running(&service)),
            }
        }
    }

    fn batch_cost(&self) -> Option<Arc<dyn BatchCost>> {
        let costs = self.directory.get(&self.service)?.batch_costs()?;
        Some(Arc::new(MeasuredCost(costs)))
    }
}

/// An engine's measured batch costs, as the batcher's cost model.
struct MeasuredCost(Arc<BatchCosts>);

impl BatchCost for MeasuredCost {
    fn seconds(&self, batch: usize, seq: usize) -> f64 {
        self.0.seconds(batch, seq)
    }
}

/// Cancels a submitted batch unless disarmed.
struct CancelOnDrop(Option<spindle_embed::CancelHandle>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.cancel();
        }
    }
}
