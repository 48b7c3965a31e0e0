//! spindle-embed: sentence embeddings through ONNX Runtime.
//!
//! The pieces, in the order a request meets them:
//! - [`registry`]: the model registry (`models/registry.toml`, compiled in),
//!   which names each model's files, checksums, pooling and maximum length;
//! - [`cache`]: where the fetched files live and how they are verified;
//! - [`runtime`]: loading `libonnxruntime.so` once per process and the one
//!   ONNX Runtime environment;
//! - [`tokenize`]: the `tokenizers` crate, padding to the longest input of a
//!   batch and truncating at the model's maximum;
//! - [`pool`]: mean pooling over the attention mask and L2 normalisation;
//! - [`engine`]: one session per model on a thread of its own, fed by a
//!   command channel whose messages carry their reply.
//!
//! This crate depends on no other workspace crate and on no async runtime:
//! callers on tokio hand it a reply closure ([`Engine::submit`]) that
//! completes a oneshot of theirs. Nothing here downloads anything; the files
//! are fetched by `scripts/fetch_models.py`.

pub mod cache;
pub mod engine;
pub mod error;
pub mod pool;
pub mod registry;
pub mod runtime;
pub mod tokenize;

pub use cache::{Cache, cache_dir};
pub use engine::{
    CancelHandle, EmbedBatch, Embedding, Engine, EngineConfig, EngineInfo, Health, Reply,
};
pub use error::EmbedError;
pub use registry::{ModelSpec, Registry};
pub use runtime::{Provider, RuntimeFlavour};
