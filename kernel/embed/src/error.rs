//! The crate's one error type. Each variant says what is wrong and, where a
//! command fixes it, the exact command.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running an embedding model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// `libonnxruntime.so` is not in the cache.
    #[error(
        "ONNX Runtime library not found at {}\n  hint: fetch it with `{fetch_command}`",
        path.display()
    )]
    LibraryMissing {
        path: PathBuf,
        fetch_command: String,
    },

    /// The library is there but could not be loaded (wrong file, wrong version).
    #[error(
        "ONNX Runtime library at {} could not be loaded: {reason}\n  hint: fetch it again with `{fetch_command}`",
        path.display()
    )]
    LibraryLoad {
        path: PathBuf,
        reason: String,
        fetch_command: String,
    },

    /// A file of the model is not in the cache.
    #[error(
        "model `{model}` is not fetched: {} is missing\n  hint: fetch it with `{fetch_command}`",
        path.display()
    )]
    ModelMissing {
        model: String,
        path: PathBuf,
        fetch_command: String,
    },

    /// A cached file differs from the registry's checksum.
    #[error(
        "model `{model}`: {} has sha256 {actual}, but the registry records {expected}\n  hint: delete it and fetch it again with `{fetch_command}`",
        path.display()
    )]
    ChecksumMismatch {
        model: String,
        path: PathBuf,
        expected: String,
        actual: String,
        fetch_command: String,
    },

    /// The name is not in the registry.
    #[error("unknown model `{name}`\n  hint: known models are {known} (see `spindle models list`)")]
    UnknownModel { name: String, known: String },

    /// The file passed its checksum but ONNX Runtime or the tokenizer rejected it.
    #[error(
        "model `{model}`: {} could not be loaded: {reason}\n  hint: check the registry entry, or fetch it again with `{fetch_command}`",
        path.display()
    )]
    CorruptModel {
        model: String,
        path: PathBuf,
        reason: String,
        fetch_command: String,
    },

    /// The registry file itself is malformed.
    #[error("model registry {origin}: {reason}")]
    Registry { origin: String, reason: String },

    /// No execution provider of the requested list could be used.
    #[error(
        "no requested execution provider is usable ({requested}): {reason}\n  hint: add `cpu` to the provider list to fall back to the CPU"
    )]
    ProviderUnavailable { requested: String, reason: String },

    /// A provider name that is not `cuda` or `cpu`.
    #[error("unknown execution provider `{name}`\n  hint: known providers are cuda, cpu")]
    UnknownProvider { name: String },

    /// No cache directory can be determined (no $SPINDLE_CACHE, $XDG_CACHE_HOME or $HOME).
    #[error("no cache directory: set $SPINDLE_CACHE (or $XDG_CACHE_HOME or $HOME)")]
    NoCacheDir,

    /// Reading a cached file failed.
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },

    /// Tokenizing a batch failed.
    #[error("tokenizer: {0}")]
    Tokenize(String),

    /// ONNX Runtime failed while running a batch.
    #[error("inference failed: {0}")]
    Inference(String),

    /// The batch was cancelled through its [`CancelHandle`](crate::engine::CancelHandle).
    #[error("the batch was cancelled")]
    Cancelled,

    /// The engine's thread has stopped; no more batches can be run.
    #[error("the embedding engine has stopped")]
    EngineStopped,
}

impl EmbedError {
    /// Whether retrying the same request may succeed (the scheduler's
    /// transient/permanent classification).
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Inference(_))
    }
}
