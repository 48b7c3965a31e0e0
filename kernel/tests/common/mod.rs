//! A real kernel in the test's process: a script written to a temporary
//! folder, started with [`Kernel::start`] exactly as `spindle run` starts
//! it (every service of the script runs), plus ways to wait for its
//! pipelines on events rather than on time.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use spindle_kernel::{Kernel, KernelConfig, KernelEvent, KernelSource, RequestPathConfig};
use spindle_scheduler::Gate;

/// A running kernel; dropping it asks it to stop at once.
pub struct TestKernel {
    pub kernel: Kernel,
    pub dir: tempfile::TempDir,
}

impl Drop for TestKernel {
    fn drop(&mut self) {
        self.kernel.kill_now();
    }
}

/// Starts a kernel on `script` (saved as `kernel.lua`). Call inside a
/// tokio runtime.
pub fn start_kernel(script: &str, requests: RequestPathConfig) -> TestKernel {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kernel.lua");
    std::fs::write(&file, script).expect("write script");
    let kernel = Kernel::start(
        KernelSource::Script(file),
        KernelConfig {
            requests,
            ..KernelConfig::default()
        },
    )
    .unwrap_or_else(|error| match error {
        spindle_kernel::KernelError::Script { diagnostics, .. } => {
            panic!("the test's script has errors: {diagnostics:#?}")
        }
        other => panic!("the kernel starts: {other}"),
    });
    TestKernel { kernel, dir }
}

impl TestKernel {
    /// Waits until no pipeline waits for its services any more: each is
    /// served or failed. Synchronises on the kernel's events.
    pub async fn settled(&self) {
        self.wait_for(|pipelines| {
            pipelines
                .iter()
                .all(|(_, gate)| !matches!(gate, Gate::Closed { .. }))
        })
        .await;
    }

    /// [`TestKernel::settled`] for every pipeline but `except`, which is
    /// known to wait for good.
    pub async fn settled_except(&self, except: &str) {
        self.wait_for(|pipelines| {
            pipelines
                .iter()
                .all(|(name, gate)| name == except || !matches!(gate, Gate::Closed { .. }))
        })
        .await;
    }

    /// Waits until `pipeline` can be served (`make setup` fetches models).
    pub async fn ready(&self, pipeline: &str) {
        self.wait_for(|pipelines| {
            pipelines
                .iter()
                .any(|(name, gate)| name == pipeline && gate.is_open())
        })
        .await;
    }

    async fn wait_for(&self, done: impl Fn(&[(String, Gate)]) -> bool) {
        let mut events = self.kernel.subscribe(false);
        let gates = |kernel: &Kernel| -> Vec<(String, Gate)> {
            kernel
                .pipelines()
                .into_iter()
                .map(|pipeline| (pipeline.name, pipeline.gate))
                .collect()
        };
        let mut pipelines = gates(&self.kernel);
        while !done(&pipelines) {
            match events.recv().await {
                Some(KernelEvent::Pipeline { name, gate }) => {
                    if let Some(entry) = pipelines.iter_mut().find(|(known, _)| *known == name) {
                        entry.1 = gate;
                    }
                }
                Some(KernelEvent::Lagged { snapshot, .. }) => {
                    pipelines = snapshot
                        .pipelines
                        .into_iter()
                        .map(|pipeline| (pipeline.name, pipeline.gate))
                        .collect();
                }
                Some(_) => {}
                None => panic!(
                    "the kernel stopped before its pipelines settled: {:?}",
                    self.kernel.services()
                ),
            }
        }
    }
}
