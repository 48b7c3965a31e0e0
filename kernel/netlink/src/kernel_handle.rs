//! The one module that names the kernel's types: the bridge reaches the
//! kernel through [`KernelHandle`] (submit, cancel, the pipelines with
//! their sources) and nothing else.

use std::sync::Arc;

pub use spindle_kernel::{Kernel, RequestAnswer, Submission};
use spindle_scripting::{ServiceKind, SourceSpec};

/// A pipeline as the bridge announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineInfo {
    pub name: String,
    /// Families of the pipeline's `s.netlink { family = ... }` sources.
    pub netlink_families: Vec<String>,
    /// The model of its first embedding service, when it has one.
    pub model: Option<String>,
    /// The vector's dimensions when known at registration, else 0 (engines
    /// may still be loading: the kernel serves requests once they are).
    pub dims: u32,
}

/// What the bridge holds of the kernel: cheap to clone.
#[derive(Debug, Clone)]
pub struct KernelHandle {
    kernel: Kernel,
    pipelines: Arc<Vec<PipelineInfo>>,
}

impl KernelHandle {
    pub fn new(kernel: Kernel) -> KernelHandle {
        let graph = kernel.graph();
        let pipelines = kernel
            .pipelines()
            .into_iter()
            .map(|pipeline| PipelineInfo {
                netlink_families: pipeline
                    .sources
                    .iter()
                    .filter_map(|source| match source {
                        SourceSpec::Netlink { family } => Some(family.clone()),
                        _ => None,
                    })
                    .collect(),
                model: pipeline.needs.first().and_then(|service| {
                    graph.service(service).and_then(|spec| match &spec.kind {
                        ServiceKind::Embedding(embedding) => Some(embedding.model.clone()),
                        _ => None,
                    })
                }),
                dims: 0,
                name: pipeline.name,
            })
            .collect();
        KernelHandle {
            pipelines: Arc::new(pipelines),
            kernel,
        }
    }

    pub fn submit_then<F>(&self, submission: Submission, then: F)
    where
        F: FnOnce(RequestAnswer) + Send + 'static,
    {
        self.kernel.submit_then(submission, then);
    }

    pub async fn cancel(&self, id_or_correlation: &str) -> bool {
        self.kernel.cancel(id_or_correlation).await
    }

    pub fn pipelines(&self) -> &[PipelineInfo] {
        &self.pipelines
    }
}
