//! How a session is built: the ONNX Runtime options the engine sets, each a
//! field of [`SessionTuning`] so that the benchmark can measure it against
//! the alternative (`cargo bench --bench embed`, its "session options"
//! table; the figures are in docs/embeddings.md).
//!
//! What the defaults are and why, measured on this project's 2-core
//! machines (see docs/embeddings.md, "Benchmarks": no undisturbed run yet):
//! - graph optimisation `All` (ONNX Runtime's default; it fuses GELU and
//!   MatMul+Add online);
//! - intra-op spinning on for a single engine (idle pool threads spin
//!   between the operators of a batch), off when several engines share the
//!   cores;
//! - memory patterns on (ONNX Runtime's default);
//! - no thread affinity: on shared virtual machines pinning costs more than
//!   it saves.

use std::fmt;
use std::path::Path;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::runtime::Provider;

/// ONNX Runtime session options the engine exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTuning {
    /// Whether idle intra-op threads spin (ONNX Runtime's default). Several
    /// spinning sessions in one process slow each other down about 5×.
    pub spinning: bool,
    pub optimization: Optimization,
    /// ONNX Runtime's memory-pattern planning for repeated shapes.
    pub memory_pattern: bool,
    /// Pins the intra-op pool's threads to cores 2, 3, ... (the calling
    /// thread, which also computes, stays unpinned).
    pub pinned: bool,
}

impl Default for SessionTuning {
    fn default() -> SessionTuning {
        SessionTuning {
            spinning: true,
            optimization: Optimization::All,
            memory_pattern: true,
            pinned: false,
        }
    }
}

/// Graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimization {
    Disabled,
    Basic,
    Extended,
    All,
}

impl Optimization {
    fn level(self) -> GraphOptimizationLevel {
        match self {
            Optimization::Disabled => GraphOptimizationLevel::Disable,
            Optimization::Basic => GraphOptimizationLevel::Level1,
            Optimization::Extended => GraphOptimizationLevel::Level2,
            Optimization::All => GraphOptimizationLevel::All,
        }
    }
}

impl fmt::Display for SessionTuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "optimisation {:?}, spinning {}, memory pattern {}, {}",
            self.optimization,
            if self.spinning { "on" } else { "off" },
            if self.memory_pattern { "on" } else { "off" },
            if self.pinned { "pinned" } else { "unpinned" }
        )
    }
}

/// Builds a session for `model` on `provider`. Builder errors are not
/// `Send`, so this returns `ort::Result` and only the message leaves it.
pub(crate) fn build_session(
    environment: &Environment,
    model: &Path,
    provider: Provider,
    threads: usize,
    tuning: SessionTuning,
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
    let mut builder = Session::builder(environment)?
        .with_optimization_level(tuning.optimization.level())?
        .with_intra_threads(threads)?
        .with_intra_op_spinning(tuning.spinning)?
        .with_memory_pattern(tuning.memory_pattern)?;
    if tuning.pinned && threads > 1 {
        // One entry per pool thread (the caller is the first worker);
        // processors are numbered from 1.
        let affinities = (2..=threads)
            .map(|processor| processor.to_string())
            .collect::<Vec<_>>()
            .join(";");
        builder = builder.with_config_entry("session.intra_op_thread_affinities", affinities)?;
    }
    builder
        .with_execution_providers([execution_provider])?
        .commit_from_file(model)
}
