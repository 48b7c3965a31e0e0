//! The engine: ONNX Runtime sessions of one model (one by default, more run
//! side by side when [`EngineConfig::sessions`] asks), each owned by a
//! thread of its own and all fed by one command channel whose messages
//! carry their reply (the TEI backend pattern, with std channels: this
//! crate has no async runtime).
//!
//! `Engine::start` loads the model (`load.rs`), runs a warm-up batch,
//! measures its batch costs when asked ([`crate::calibrate`]) and only then
//! returns. `embed` blocks; `submit` returns at once and calls the reply
//! closure on the engine thread when the batch is done, exactly once, with
//! a result or an error (also when the engine has stopped or the batch
//! panicked). Running a batch is [`crate::run`]; this file is the thread,
//! its commands and the handle.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use ort::session::RunOptions;

use crate::calibrate::{BatchCosts, Calibration, MEASURE_BUDGET, cpu_name, measure};
use crate::error::EmbedError;
use crate::load::load;
use crate::registry::Registry;
use crate::run::{Input, Loaded};
use crate::runtime::Provider;
use crate::session::SessionTuning;
use crate::tokenize::{Encoded, TextTokenizer};

/// What to load and how to run it.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Registry name of the model; empty means the registry's default.
    pub model: String,
    /// Execution providers in order of preference, e.g. `[Cuda, Cpu]`.
    pub providers: Vec<Provider>,
    /// ONNX Runtime intra-op threads of each session; `None` shares the
    /// cores out among the sessions.
    pub intra_threads: Option<usize>,
    /// Sessions run side by side, each on a thread of its own, each batch
    /// on whichever is free. On a CPU, two sessions of one thread each do
    /// more sentences per second than one of two threads (less waiting
    /// between the threads of one small matrix product), while one batch
    /// alone takes longer: more than one suits throughput, one suits the
    /// latency of a lone request. Each session holds its own copy of the
    /// model.
    pub sessions: usize,
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
    /// Session options (optimisation level, memory patterns, affinity);
    /// `allow_spinning: false` overrides their spinning.
    pub tuning: SessionTuning,
    /// Whether to measure batch costs at start-up ([`Engine::batch_costs`]).
    pub calibration: Calibration,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            model: String::new(),
            providers: vec![Provider::Cpu],
            intra_threads: None,
            sessions: 1,
            allow_spinning: true,
            cache: None,
            registry: None,
            library: None,
            warm_up: true,
            tuning: SessionTuning::default(),
            calibration: Calibration::Off,
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
    /// Intra-op threads of each session.
    pub intra_threads: usize,
    /// Sessions running side by side ([`EngineConfig::sessions`]).
    pub sessions: usize,
    /// The session options in effect.
    pub tuning: SessionTuning,
    pub library: PathBuf,
    pub model_path: PathBuf,
    /// The cache the files came from.
    pub cache: PathBuf,
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
    /// Inputs the engine tokenized itself (texts that came unencoded).
    pub tokenized: usize,
}

/// A reply closure for [`Engine::submit`]; called exactly once.
pub type Reply = Box<dyn FnOnce(Result<EmbedBatch, EmbedError>) + Send>;

/// A snapshot of the engine's state.
#[derive(Debug, Clone)]
pub struct Health {
    /// Whether the engine thread is running.
    pub alive: bool,
    /// Sessions serving batches now.
    pub sessions: usize,
    pub provider: Provider,
    /// Batches submitted but not started.
    pub queued: u64,
    pub batches: u64,
    pub texts: u64,
    /// Texts the engine had to tokenize itself (not encoded by the caller).
    pub tokenized: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// A running model. Dropping it stops the thread after the queued batches.
pub struct Engine {
    commands: Option<mpsc::Sender<Command>>,
    info: Arc<EngineInfo>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
    /// The session's tokenizer, shared: callers tokenize on their own
    /// threads ([`Engine::encode`]) and the engine does not again.
    tokenizer: Arc<TextTokenizer>,
    costs: Option<Arc<BatchCosts>>,
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
            .spawn(move || {
                engine_thread(
                    config,
                    ready_sender,
                    Arc::new(Mutex::new(receiver)),
                    thread_stats,
                )
            })
            .map_err(|error| {
                EmbedError::Inference(format!("cannot spawn the engine thread: {error}"))
            })?;
        match ready.recv() {
            Ok(Ok(ready)) => Ok(Engine {
                commands: Some(commands),
                info: Arc::new(ready.info),
                tokenizer: Arc::new(ready.tokenizer),
                costs: ready.costs.map(Arc::new),
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
        self.tokenizer.count(text).unwrap_or(1)
    }

    /// Tokenizes `text` on the caller's thread, for
    /// [`Engine::submit_inputs`] (`Input::Encoded`): the engine then pads it
    /// without tokenizing it again, and its length is known before the
    /// batch forms.
    pub fn encode(&self, text: &str) -> Result<Encoded, EmbedError> {
        self.tokenizer.encode(text)
    }

    /// Whether `encoded` was made by this engine's tokenizer.
    pub fn accepts(&self, encoded: &Encoded) -> bool {
        encoded.tokenizer == self.tokenizer.id()
    }

    /// What batches cost on this machine, when the engine measured it
    /// ([`EngineConfig::calibration`]).
    pub fn batch_costs(&self) -> Option<Arc<BatchCosts>> {
        self.costs.clone()
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
        self.submit_inputs(texts.into_iter().map(Input::Text).collect(), reply)
    }

    /// [`Engine::submit`] for inputs that may be encoded already.
    pub fn submit_inputs(&self, inputs: Vec<Input>, reply: Reply) -> CancelHandle {
        let cancel = CancelHandle::new();
        let command = Command::Embed {
            inputs,
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
            sessions: self.stats.sessions.load(Ordering::Relaxed),
            provider: self.info.provider,
            queued: self.stats.queued.load(Ordering::Relaxed),
            batches: self.stats.batches.load(Ordering::Relaxed),
            texts: self.stats.texts.load(Ordering::Relaxed),
            tokenized: self.stats.tokenized.load(Ordering::Relaxed),
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
            give_back_freed_memory();
        }
    }
}

/// Returns what the engine's session freed to the system (glibc's
/// `malloc_trim`). A session is tens of MiB of weights and buffers freed
/// at once; glibc keeps freed memory in its arenas unless asked, so a
/// service restarted again and again would hold the peak of every session
/// it ever had.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_freed_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes
    // no pointers from us and may be called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_freed_memory() {}

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
        inputs: Vec<Input>,
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
    sessions: AtomicUsize,
    queued: AtomicU64,
    batches: AtomicU64,
    texts: AtomicU64,
    tokenized: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What the engine thread hands back once it is ready.
struct Ready {
    info: EngineInfo,
    tokenizer: TextTokenizer,
    costs: Option<BatchCosts>,
}

/// The command channel, shared by the sessions: an idle one waits for the
/// lock, the one holding it waits for the next batch.
type Commands = Arc<Mutex<mpsc::Receiver<Command>>>;

/// The first session's thread: loads, warms up, measures batch costs, starts
/// the other sessions and reports ready once every one of them is; then
/// serves batches like the others, and joins them when the channel closes.
fn engine_thread(
    config: EngineConfig,
    ready: mpsc::SyncSender<Result<Ready, EmbedError>>,
    commands: Commands,
    stats: Arc<Stats>,
) {
    let (mut loaded, info) = match load_warm(&config) {
        Ok(loaded) => loaded,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let costs = calibrate(&config, &info, &mut loaded);
    let sessions = config.sessions.max(1);
    let mut others = Vec::with_capacity(sessions - 1);
    let (started, starts) = mpsc::channel();
    for index in 1..sessions {
        let (config, commands, stats, started) = (
            config.clone(),
            commands.clone(),
            stats.clone(),
            started.clone(),
        );
        // One tokenizer for all: what a caller encoded with the engine's
        // tokenizer ([`Engine::encode`]) is accepted by every session.
        let tokenizer = loaded.tokenizer.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("embed-{}-{index}", info.model))
            .spawn(move || match load_warm(&config) {
                Ok((mut loaded, _)) => {
                    loaded.tokenizer = tokenizer;
                    let _up = SessionUp::count(&stats);
                    let _ = started.send(Ok(()));
                    serve(&mut loaded, &commands, &stats);
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                }
            });
        match spawned {
            Ok(handle) => others.push(handle),
            Err(error) => {
                let _ = ready.send(Err(EmbedError::Inference(format!(
                    "cannot spawn session {index}'s thread: {error}"
                ))));
                return;
            }
        }
    }
    drop(started);
    // Every session is up before the engine counts as ready; one that
    // fails fails the start (the others stop when the channel closes).
    for _ in 1..sessions {
        match starts.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = ready.send(Err(error));
                return;
            }
            Err(_) => {
                let _ = ready.send(Err(EmbedError::EngineStopped));
                return;
            }
        }
    }
    stats.alive.store(true, Ordering::Relaxed);
    let up = SessionUp::count(&stats);
    tracing::info!(
        model = %info.model, provider = %info.provider, threads = info.intra_threads,
        sessions, "embedding session ready on {}", info.provider
    );
    let tokenizer = loaded.tokenizer.clone();
    if ready
        .send(Ok(Ready {
            info,
            tokenizer,
            costs,
        }))
        .is_err()
    {
        return;
    }
    serve(&mut loaded, &commands, &stats);
    drop(up);
    for other in others {
        let _ = other.join();
    }
    stats.alive.store(false, Ordering::Relaxed);
}

/// Loads a session and runs one small batch on it, as `config` asks.
fn load_warm(config: &EngineConfig) -> Result<(Loaded, EngineInfo), EmbedError> {
    let (mut loaded, info) = load(config)?;
    if config.warm_up {
        loaded.run_inputs(
            &[Input::Text(
                "Spindle warms up its embedding session.".into(),
            )],
            None,
        )?;
    }
    Ok((loaded, info))
}

/// Counts a session in [`Health::sessions`] from before it says it is up
/// until its thread ends.
struct SessionUp<'a>(&'a Stats);

impl<'a> SessionUp<'a> {
    fn count(stats: &'a Stats) -> SessionUp<'a> {
        stats.sessions.fetch_add(1, Ordering::Relaxed);
        SessionUp(stats)
    }
}

impl Drop for SessionUp<'_> {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs batches on `loaded` until the channel closes.
fn serve(loaded: &mut Loaded, commands: &Commands, stats: &Stats) {
    loop {
        let command = commands
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        let Ok(Command::Embed {
            inputs,
            reply,
            cancel,
            span,
        }) = command
        else {
            return;
        };
        let _entered = span.enter();
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        if cancel.is_cancelled() {
            reply(Err(EmbedError::Cancelled));
            continue;
        }
        let run_options = cancel.state.run_options.as_ref();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            loaded.run_inputs(&inputs, run_options)
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
        stats
            .texts
            .fetch_add(inputs.len() as u64, Ordering::Relaxed);
        if let Ok(batch) = &result {
            stats
                .tokenized
                .fetch_add(batch.tokenized as u64, Ordering::Relaxed);
        }
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
}

/// Batch costs as [`EngineConfig::calibration`] asks: from the cache, or
/// measured on the loaded session (and cached).
fn calibrate(config: &EngineConfig, info: &EngineInfo, loaded: &mut Loaded) -> Option<BatchCosts> {
    if config.calibration == Calibration::Off {
        return None;
    }
    let key = format!(
        "{}-{}-{}t-{}-{}",
        info.model,
        info.provider,
        info.intra_threads,
        if info.tuning.spinning {
            "spin"
        } else {
            "nospin"
        },
        cpu_name()
    );
    if config.calibration == Calibration::Cached
        && let Some(costs) = BatchCosts::load(&info.cache, &key)
    {
        return Some(costs);
    }
    let costs = measure(key, info.max_seq_length, MEASURE_BUDGET, |batch, seq| {
        loaded.run_shape(batch, seq).is_ok()
    });
    if !costs.complete {
        return Some(costs);
    }
    if let Err(error) = costs.store(&info.cache) {
        tracing::warn!(%error, "could not keep the measured batch costs in the cache");
    }
    Some(costs)
}
