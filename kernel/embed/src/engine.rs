//! The engine: one ONNX Runtime session per model, owned by a thread of its
//! own and fed by a command channel whose messages carry their reply (the
//! TEI backend pattern, with std channels: this crate has no async runtime).
//!
//! `Engine::start` verifies the files, loads the library, builds the session
//! on the first usable execution provider of the preference list, runs a
//! warm-up batch and only then returns. `embed` blocks; `submit` returns at
//! once and calls the reply closure on the engine thread when the batch is
//! done, exactly once, with a result or an error (also when the engine has
//! stopped or the batch panicked).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session, SessionInputValue};
use ort::value::Tensor;

use crate::cache::{Cache, fetch_model_command, fetch_runtime_command};
use crate::error::EmbedError;
use crate::pool::{l2_normalize, mean_pool};
use crate::registry::{ModelSpec, Normalization, Registry};
use crate::runtime::{Provider, RuntimeFlavour, runtime};
use crate::tokenize::{TextTokenizer, TokenBatch};

/// What to load and how to run it.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Registry name of the model; empty means the registry's default.
    pub model: String,
    /// Execution providers in order of preference, e.g. `[Cuda, Cpu]`.
    pub providers: Vec<Provider>,
    /// ONNX Runtime intra-op threads; `None` means one per core.
    pub intra_threads: Option<usize>,
    /// Whether idle intra-op threads spin (ONNX Runtime's default). Several
    /// spinning sessions in one process slow each other down about 5×: turn
    /// it off when more than one engine shares the cores.
    pub allow_spinning: bool,
    /// Cache directory; `None` resolves it as the fetch script does.
    pub cache: Option<PathBuf>,
    /// Registry; `None` means the one compiled in.
    pub registry: Option<Registry>,
    /// An explicit library file instead of the cache's (no checksum check).
    pub library: Option<PathBuf>,
    /// Run one small batch before `start` returns.
    pub warm_up: bool,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            model: String::new(),
            providers: vec![Provider::Cpu],
            intra_threads: None,
            allow_spinning: true,
            cache: None,
            registry: None,
            library: None,
            warm_up: true,
        }
    }
}

impl EngineConfig {
    /// Defaults for `model`.
    pub fn new(model: impl Into<String>) -> EngineConfig {
        EngineConfig {
            model: model.into(),
            ..EngineConfig::default()
        }
    }
}

/// What a started engine runs on.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub model: String,
    /// The provider the session really uses.
    pub provider: Provider,
    /// Why a preferred provider was skipped, when one was.
    pub fallback: Option<String>,
    pub dimensions: usize,
    pub max_seq_length: usize,
    pub intra_threads: usize,
    pub library: PathBuf,
    pub model_path: PathBuf,
}

/// One input's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Unit-length vector (for `normalization = "l2"` models).
    pub vector: Vec<f32>,
    /// Tokens the model saw, `[CLS]` and `[SEP]` included.
    pub tokens: usize,
    /// Whether the input was cut at the model's maximum sequence length.
    pub truncated: bool,
}

/// The answer to one batch, with the metadata a caller reports.
#[derive(Debug, Clone)]
pub struct EmbedBatch {
    pub embeddings: Vec<Embedding>,
    pub model: String,
    pub provider: Provider,
    /// Length every input was padded to (the longest in the batch).
    pub padded_len: usize,
    /// Sum of real tokens over the batch.
    pub real_tokens: usize,
    /// Tokens computed, padding included (`batch × padded_len`).
    pub padded_tokens: usize,
    /// Tokenizing, running and pooling, measured on the engine thread.
    pub elapsed: Duration,
}

/// A reply closure for [`Engine::submit`]; called exactly once.
pub type Reply = Box<dyn FnOnce(Result<EmbedBatch, EmbedError>) + Send>;

/// A snapshot of the engine's state.
#[derive(Debug, Clone)]
pub struct Health {
    /// Whether the engine thread is running.
    pub alive: bool,
    pub provider: Provider,
    /// Batches submitted but not started.
    pub queued: u64,
    pub batches: u64,
    pub texts: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// A running model. Dropping it stops the thread after the queued batches.
pub struct Engine {
    commands: Option<mpsc::Sender<Command>>,
    info: Arc<EngineInfo>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
    /// A copy of the session's tokenizer, for [`Engine::count_tokens`].
    counter: TextTokenizer,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the model and returns once a warm-up batch has run.
    pub fn start(config: EngineConfig) -> Result<Engine, EmbedError> {
        let (ready_sender, ready) = mpsc::sync_channel(1);
        let (commands, receiver) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let thread_stats = stats.clone();
        let name = if config.model.is_empty() {
            "default".to_string()
        } else {
            config.model.clone()
        };
        let thread = std::thread::Builder::new()
            .name(format!("embed-{name}"))
            .spawn(move || engine_thread(config, ready_sender, receiver, thread_stats))
            .map_err(|error| {
                EmbedError::Inference(format!("cannot spawn the engine thread: {error}"))
            })?;
        match ready.recv() {
            Ok(Ok((info, counter))) => Ok(Engine {
                commands: Some(commands),
                info: Arc::new(info),
                counter,
                stats,
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(EmbedError::EngineStopped)
            }
        }
    }

    /// Tokens the model would see for `text` (special tokens included,
    /// truncated at the model's maximum), counted on the caller's thread so
    /// that a batcher can group texts by length before they reach the
    /// session. Text the tokenizer rejects counts as one token; the batch
    /// itself reports the error.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.counter.count(text).unwrap_or(1)
    }

    /// The execution provider the session runs on.
    pub fn provider(&self) -> Provider {
        self.info.provider
    }

    /// Model, provider, dimensions and the rest.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Embeds `texts` as one batch and waits for the answer.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<EmbedBatch, EmbedError> {
        let (sender, receiver) = mpsc::sync_channel(1);
        let texts = texts.iter().map(|text| text.as_ref().to_string()).collect();
        self.submit(
            texts,
            Box::new(move |result| {
                let _ = sender.send(result);
            }),
        );
        receiver.recv().unwrap_or(Err(EmbedError::EngineStopped))
    }

    /// Queues `texts` as one batch; `reply` runs on the engine thread with the
    /// answer. Never blocks on the model. The returned handle cancels the
    /// batch: still queued, it is answered [`EmbedError::Cancelled`] without
    /// running; running, ONNX Runtime is told to terminate it
    /// (`RunOptions::terminate`) and the answer is `Cancelled` as well.
    pub fn submit(&self, texts: Vec<String>, reply: Reply) -> CancelHandle {
        let cancel = CancelHandle::new();
        let command = Command::Embed {
            texts,
            reply,
            cancel: cancel.clone(),
            span: tracing::Span::current(),
        };
        let Some(commands) = self.commands.as_ref() else {
            command.refuse();
            return cancel;
        };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::SendError(command)) = commands.send(command) {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            command.refuse();
        }
        cancel
    }

    /// Whether the thread runs, and counters.
    pub fn health(&self) -> Health {
        Health {
            alive: self.stats.alive.load(Ordering::Relaxed),
            provider: self.info.provider,
            queued: self.stats.queued.load(Ordering::Relaxed),
            batches: self.stats.batches.load(Ordering::Relaxed),
            texts: self.stats.texts.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
            last_error: self
                .stats
                .last_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Cancels one submitted batch (see [`Engine::submit`]); cheap to clone.
#[derive(Clone)]
pub struct CancelHandle {
    state: Arc<CancelState>,
}

struct CancelState {
    cancelled: AtomicBool,
    /// `None` only if ONNX Runtime could not allocate run options; the batch
    /// can then still be cancelled while queued.
    run_options: Option<RunOptions>,
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelHandle {
    fn new() -> CancelHandle {
        CancelHandle {
            state: Arc::new(CancelState {
                cancelled: AtomicBool::new(false),
                run_options: RunOptions::new().ok(),
            }),
        }
    }

    /// Asks for the batch to be dropped; the reply still comes, once.
    pub fn cancel(&self) {
        self.state.cancelled.store(true, Ordering::SeqCst);
        if let Some(run_options) = &self.state.run_options {
            let _ = run_options.terminate();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::SeqCst)
    }
}

enum Command {
    Embed {
        texts: Vec<String>,
        reply: Reply,
        cancel: CancelHandle,
        span: tracing::Span,
    },
}

impl Command {
    fn refuse(self) {
        match self {
            Command::Embed { reply, .. } => reply(Err(EmbedError::EngineStopped)),
        }
    }
}

#[derive(Default)]
struct Stats {
    alive: AtomicBool,
    queued: AtomicU64,
    batches: AtomicU64,
    texts: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What the engine thread owns.
struct Loaded {
    session: Session,
    tokenizer: TextTokenizer,
    spec: ModelSpec,
    provider: Provider,
}

fn engine_thread(
    config: EngineConfig,
    ready: mpsc::SyncSender<Result<(EngineInfo, TextTokenizer), EmbedError>>,
    commands: mpsc::Receiver<Command>,
    stats: Arc<Stats>,
) {
    let (mut loaded, info) = match load(&config) {
        Ok(loaded) => loaded,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    if config.warm_up
        && let Err(error) = loaded.run_batch(&["Spindle warms up its embedding session."])
    {
        let _ = ready.send(Err(error));
        return;
    }
    stats.alive.store(true, Ordering::Relaxed);
    tracing::info!(
        model = %info.model, provider = %info.provider, threads = info.intra_threads,
        "embedding session ready on {}", info.provider
    );
    if ready.send(Ok((info, loaded.tokenizer.clone()))).is_err() {
        return;
    }
    while let Ok(Command::Embed {
        texts,
        reply,
        cancel,
        span,
    }) = commands.recv()
    {
        let _entered = span.enter();
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        if cancel.is_cancelled() {
            reply(Err(EmbedError::Cancelled));
            continue;
        }
        let run_options = cancel.state.run_options.as_ref();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            loaded.run_batch_with(&texts, run_options)
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(EmbedError::Inference(format!(
                "the batch panicked: {message}"
            )))
        });
        let result = match result {
            Err(_) if cancel.is_cancelled() => Err(EmbedError::Cancelled),
            other => other,
        };
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        // A cancelled batch is the caller's choice, not a failure.
        if let Err(error) = &result
            && !matches!(error, EmbedError::Cancelled)
        {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            *stats
                .last_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
        }
        reply(result);
    }
    stats.alive.store(false, Ordering::Relaxed);
}

fn load(config: &EngineConfig) -> Result<(Loaded, EngineInfo), EmbedError> {
    let registry = config.registry.clone().unwrap_or_else(Registry::builtin);
    let model_name = if config.model.is_empty() {
        registry.default_model.clone()
    } else {
        config.model.clone()
    };
    let spec = registry.model(&model_name)?.clone();
    if config.providers.is_empty() {
        return Err(EmbedError::ProviderUnavailable {
            requested: String::new(),
            reason: "the provider list is empty".into(),
        });
    }
    let cache = match &config.cache {
        Some(root) => Cache::at(root),
        None => Cache::resolve()?,
    };
    let paths = cache.verify_model(&spec)?;

    // The GPU build when CUDA is wanted and fetched; the CPU build otherwise.
    let wants_cuda = config.providers.contains(&Provider::Cuda);
    let (library, flavour) = match &config.library {
        Some(library) => (library.clone(), RuntimeFlavour::Cpu),
        None => {
            let gpu = cache.library_path(&registry, RuntimeFlavour::Gpu);
            if wants_cuda && gpu.as_ref().is_some_and(|path| path.is_file()) {
                (
                    cache.verify_runtime(&registry, RuntimeFlavour::Gpu)?,
                    RuntimeFlavour::Gpu,
                )
            } else {
                (
                    cache.verify_runtime(&registry, RuntimeFlavour::Cpu)?,
                    RuntimeFlavour::Cpu,
                )
            }
        }
    };
    let runtime = runtime(&library, &fetch_runtime_command(flavour))?;

    let fetch_command = fetch_model_command(&spec.name);
    let tokenizer =
        TextTokenizer::load(&paths.tokenizer, spec.max_seq_length).map_err(|reason| {
            EmbedError::CorruptModel {
                model: spec.name.clone(),
                path: paths.tokenizer.clone(),
                reason,
                fetch_command: fetch_command.clone(),
            }
        })?;

    let threads = config
        .intra_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut skipped: Vec<String> = Vec::new();
    let mut chosen = None;
    for &provider in &config.providers {
        match build_session(
            &runtime.environment,
            &paths.onnx,
            provider,
            threads,
            config.allow_spinning,
        ) {
            Ok(session) => {
                chosen = Some((session, provider));
                break;
            }
            Err(error) if provider == Provider::Cpu => {
                return Err(EmbedError::CorruptModel {
                    model: spec.name.clone(),
                    path: paths.onnx.clone(),
                    reason: error.to_string(),
                    fetch_command,
                });
            }
            Err(error) => {
                let mut reason = first_line(&error.to_string());
                if flavour == RuntimeFlavour::Cpu && config.library.is_none() {
                    reason.push_str(&format!(
                        " (the CPU build of ONNX Runtime is loaded; `{}` fetches the CUDA build)",
                        fetch_runtime_command(RuntimeFlavour::Gpu)
                    ));
                }
                skipped.push(format!("{provider}: {reason}"));
            }
        }
    }
    let requested = config
        .providers
        .iter()
        .map(|provider| provider.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let Some((session, provider)) = chosen else {
        return Err(EmbedError::ProviderUnavailable {
            requested,
            reason: skipped.join("; "),
        });
    };
    let fallback = if skipped.is_empty() {
        None
    } else {
        Some(skipped.join("; "))
    };
    if let Some(reason) = &fallback {
        tracing::warn!(model = %spec.name, "execution provider {provider} used instead of the preferred one: {reason}");
    }
    check_signature(&session, &spec).map_err(|reason| EmbedError::CorruptModel {
        model: spec.name.clone(),
        path: paths.onnx.clone(),
        reason,
        fetch_command: fetch_model_command(&spec.name),
    })?;
    let info = EngineInfo {
        model: spec.name.clone(),
        provider,
        fallback,
        dimensions: spec.dimensions,
        max_seq_length: spec.max_seq_length,
        intra_threads: threads,
        library,
        model_path: paths.onnx,
    };
    Ok((
        Loaded {
            session,
            tokenizer,
            spec,
            provider,
        },
        info,
    ))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

/// Builder errors are not `Send`, so the session is built in a function of
/// its own returning `ort::Result` and only its message leaves it.
fn build_session(
    environment: &Environment,
    model: &std::path::Path,
    provider: Provider,
    threads: usize,
    allow_spinning: bool,
) -> ort::Result<Session> {
    let execution_provider = match provider {
        Provider::Cuda => ort::ep::CUDA::default().build().error_on_failure(),
        // `ort`'s CPU provider defaults to no memory arena, unlike ONNX
        // Runtime itself; without it large batches pay for fresh allocations
        // (measured: batch 128 at 0.80× Python onnxruntime, 32 at 0.92×).
        Provider::Cpu => ort::ep::CPU::default()
            .with_arena_allocator(true)
            .build()
            .error_on_failure(),
    };
    let session = Session::builder(environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(threads)?
        .with_intra_op_spinning(allow_spinning)?
        .with_execution_providers([execution_provider])?
        .commit_from_file(model)?;
    Ok(session)
}

/// The graph must have the registry's inputs and output.
fn check_signature(session: &Session, spec: &ModelSpec) -> Result<(), String> {
    let inputs: Vec<&str> = session.inputs().iter().map(|input| input.name()).collect();
    for input in &inputs {
        if !spec.inputs.iter().any(|name| name == input) {
            return Err(format!(
                "the graph wants input `{input}`, which the registry does not list (inputs: {inputs:?})"
            ));
        }
    }
    if !session
        .outputs()
        .iter()
        .any(|output| output.name() == spec.output)
    {
        let outputs: Vec<&str> = session
            .outputs()
            .iter()
            .map(|output| output.name())
            .collect();
        return Err(format!(
            "the graph has no output `{}` (outputs: {outputs:?})",
            spec.output
        ));
    }
    Ok(())
}

impl Loaded {
    fn run_batch<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<EmbedBatch, EmbedError> {
        self.run_batch_with(texts, None)
    }

    fn run_batch_with<S: AsRef<str>>(
        &mut self,
        texts: &[S],
        run_options: Option<&RunOptions>,
    ) -> Result<EmbedBatch, EmbedError> {
        let started = Instant::now();
        let mut tokens = self.tokenizer.encode_batch(texts)?;
        let mut batch = EmbedBatch {
            embeddings: Vec::with_capacity(tokens.batch),
            model: self.spec.name.clone(),
            provider: self.provider,
            padded_len: tokens.seq,
            real_tokens: tokens.real_tokens(),
            padded_tokens: tokens.padded_tokens(),
            elapsed: Duration::ZERO,
        };
        if tokens.batch == 0 {
            return Ok(batch);
        }
        let (rows, seq, dim) = (tokens.batch, tokens.seq, self.spec.dimensions);
        let mask = tokens.attention_mask.clone();
        let inputs = self.inputs(&mut tokens)?;
        let inference = |error: ort::Error| EmbedError::Inference(error.to_string());
        let outputs = match run_options {
            Some(run_options) => self.session.run_with_options(inputs, run_options),
            None => self.session.run(inputs),
        }
        .map_err(inference)?;
        let output = outputs
            .get(&self.spec.output)
            .ok_or_else(|| EmbedError::Inference(format!("no output `{}`", self.spec.output)))?;
        let (shape, hidden) = output.try_extract_tensor::<f32>().map_err(inference)?;
        let expected = [rows as i64, seq as i64, dim as i64];
        if shape[..] != expected[..] {
            return Err(EmbedError::Inference(format!(
                "output `{}` has shape {shape:?}, expected {expected:?}",
                self.spec.output
            )));
        }
        let pooled = mean_pool(hidden, &mask, rows, seq, dim);
        for (row, mut vector) in pooled.into_iter().enumerate() {
            if self.spec.normalization == Normalization::L2 {
                l2_normalize(&mut vector);
            }
            batch.embeddings.push(Embedding {
                vector,
                tokens: tokens.lengths[row],
                truncated: tokens.truncated[row],
            });
        }
        batch.elapsed = started.elapsed();
        Ok(batch)
    }

    fn inputs(
        &self,
        tokens: &mut TokenBatch,
    ) -> Result<Vec<(Cow<'static, str>, SessionInputValue<'static>)>, EmbedError> {
        let shape = [tokens.batch, tokens.seq];
        let mut inputs = Vec::with_capacity(self.spec.inputs.len());
        for name in &self.spec.inputs {
            let data = match name.as_str() {
                "input_ids" => std::mem::take(&mut tokens.input_ids),
                "attention_mask" => std::mem::take(&mut tokens.attention_mask),
                _ => std::mem::take(&mut tokens.token_type_ids),
            };
            let tensor = Tensor::from_array((shape, data))
                .map_err(|error| EmbedError::Inference(error.to_string()))?;
            inputs.push((Cow::Owned(name.clone()), SessionInputValue::from(tensor)));
        }
        Ok(inputs)
    }
}
