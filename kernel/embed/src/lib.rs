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
//! - [`session`]: the ONNX Runtime session options, each measured;
//! - `load`: verifying, loading and checking a model on a provider;
//! - [`run`]: one batch: pad the encodings, run, pool;
//! - [`calibrate`]: what each batch shape costs on this machine;
//! - [`gpu`]: the CUDA and cuDNN libraries fetched from PyPI, preloaded;
//! - [`gate`]: the accuracy gate a model variant must pass to be offered;
//! - [`engine`]: one session per model on a thread of its own, fed by a
//!   command channel whose messages carry their reply.
//!
//! This crate depends on no other workspace crate and on no async runtime:
//! callers on tokio hand it a reply closure ([`Engine::submit`]) that
//! completes a oneshot of theirs. Nothing here downloads anything; the files
//! are fetched by `scripts/fetch_models.py`.

pub mod cache;
pub mod calibrate;
pub mod engine;
pub mod error;
pub mod gate;
pub mod gpu;
mod load;
pub mod pool;
pub mod registry;
pub mod run;
pub mod runtime;
pub mod session;
pub mod tokenize;

pub use cache::{Cache, cache_dir};
pub use calibrate::{BatchCosts, Calibration};
pub use engine::{
    CancelHandle, EmbedBatch, Embedding, Engine, EngineConfig, EngineInfo, Health, Reply,
};
pub use error::EmbedError;
pub use registry::{ModelSpec, Registry};
pub use run::Input;
pub use runtime::{Provider, RuntimeFlavour};
pub use session::{Optimization, SessionTuning};
pub use tokenize::Encoded;
