//! Faults a person (or a scenario) injects into a running kernel to see how
//! the graph copes: an embedding engine that fails its next batches, or
//! answers them late (a slow or hung engine). The engine's backend consults
//! them at each batch; everything above it (the batcher, its breaker,
//! retries, fallbacks, the answers) runs as it would for a real fault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One fault, for one embedding service.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Its next `batches` batches fail the way an ONNX Runtime error does
    /// (a transient failure, counted by the breaker).
    EngineFails { service: String, batches: u32 },
    /// Its next `batches` batches are computed, then answered `delay` late.
    EngineSlow {
        service: String,
        delay: Duration,
        batches: u32,
    },
}

impl Fault {
    fn service(&self) -> &str {
        match self {
            Fault::EngineFails { service, .. } | Fault::EngineSlow { service, .. } => service,
        }
    }
}

/// What a batch of a service meets: nothing, a failure, or a delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BatchFault {
    Fail,
    Delay(Duration),
}

/// Faults waiting for their batches, per service; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    pending: Arc<Mutex<HashMap<String, Vec<Fault>>>>,
}

impl Faults {
    pub(crate) fn inject(&self, fault: Fault) {
        self.lock()
            .entry(fault.service().to_owned())
            .or_default()
            .push(fault);
    }

    /// Takes one batch's share of the oldest fault of `service`.
    pub(crate) fn next_batch(&self, service: &str) -> Option<BatchFault> {
        let mut pending = self.lock();
        let faults = pending.get_mut(service)?;
        let first = faults.first_mut()?;
        let (fault, left) = match first {
            Fault::EngineFails { batches, .. } => (BatchFault::Fail, batches),
            Fault::EngineSlow { delay, batches, .. } => (BatchFault::Delay(*delay), batches),
        };
        *left = left.saturating_sub(1);
        if *left == 0 {
            faults.remove(0);
        }
        Some(fault)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Fault>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
