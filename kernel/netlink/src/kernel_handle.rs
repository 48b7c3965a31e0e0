//! The one module that names the kernel's types. The bridge talks to the
//! kernel through [`KernelHandle`] only: submit, cancel, and the pipelines
//! with their sources.
//!
//! Interim: until the kernel's one `Kernel` object exists, the handle wraps
//! the request path, and [`StandaloneKernel`] assembles a kernel from a
//! script the way the kernel's own tests do (the script host, the request
//! path, the script's embedding engines; no supervised processes). When
//! `spindle_kernel::Kernel` lands this module becomes a thin wrapper around
//! it and nothing else in the crate changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use spindle_kernel::embedding::{EmbeddingRuntime, EngineDirectory};
use spindle_kernel::requests::{EffectsWiring, RequestAnswer, RequestPath, RequestPathConfig, Submission};
use spindle_kernel::supervisor::{InProcessRuntime, InProcessService};
use spindle_scripting::{GraphSpec, ScriptHost, ServiceKind, SourceSpec, StageKind};
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// A pipeline as the bridge announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineInfo {
    pub name: String,
    /// Families of the pipeline's `s.netlink { family = ... }` sources.
    pub netlink_families: Vec<String>,
    /// The model of its embed stage, when it has one.
    pub model: Option<String>,
    /// The vector's dimensions, when known (0 otherwise).
    pub dims: u32,
}

/// What the bridge holds of the kernel: cheap to clone.
#[derive(Debug, Clone)]
pub struct KernelHandle {
    path: Arc<RequestPath>,
    pipelines: Arc<Vec<PipelineInfo>>,
}

impl KernelHandle {
    /// A handle on a running request path serving `graph`'s pipelines.
    pub fn new(path: Arc<RequestPath>, graph: &GraphSpec) -> KernelHandle {
        let directory = path.engines().clone();
        KernelHandle {
            pipelines: Arc::new(pipeline_infos(graph, &directory)),
            path,
        }
    }

    pub async fn submit(&self, submission: Submission) -> RequestAnswer {
        self.path.submit(submission).await
    }

    pub async fn cancel(&self, id_or_correlation: &str) -> bool {
        self.path.cancel(id_or_correlation).await
    }

    pub fn pipelines(&self) -> &[PipelineInfo] {
        &self.pipelines
    }
}

fn pipeline_infos(graph: &GraphSpec, directory: &EngineDirectory) -> Vec<PipelineInfo> {
    graph
        .pipelines
        .iter()
        .map(|pipeline| {
            let netlink_families = pipeline
                .sources
                .iter()
                .filter_map(|source| match source {
                    SourceSpec::Netlink { family } => Some(family.clone()),
                    _ => None,
                })
                .collect();
            let service = pipeline.stages.iter().find_map(|stage| match &stage.kind {
                StageKind::Embed { service, .. } => Some(service.clone()),
                _ => None,
            });
            let model = service.as_ref().and_then(|service| {
                graph.service(service).and_then(|spec| match &spec.kind {
                    ServiceKind::Embedding(embedding) => Some(embedding.model.clone()),
                    _ => None,
                })
            });
            let dims = service
                .and_then(|service| directory.get(&service))
                .map(|engine| engine.info().dimensions as u32)
                .unwrap_or(0);
            PipelineInfo {
                name: pipeline.name.clone(),
                netlink_families,
                model,
                dims,
            }
        })
        .collect()
}

/// A kernel assembled from a script in this process (interim, see the
/// module's documentation). Dropping it asks everything to stop.
pub struct StandaloneKernel {
    pub handle: KernelHandle,
    pub shutdown: CancellationToken,
    engines: Vec<Box<dyn InProcessService>>,
}

impl std::fmt::Debug for StandaloneKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandaloneKernel").finish_non_exhaustive()
    }
}

impl StandaloneKernel {
    /// Evaluates `script`, starts its embedding services' engines and the
    /// request path. Must run inside a tokio runtime.
    pub async fn start(script: &Path, config: RequestPathConfig) -> Result<StandaloneKernel, Error> {
        StandaloneKernel::start_engines(script, config, |_| true).await
    }

    /// Like [`StandaloneKernel::start`], starting only the embedding
    /// services `start_engine` names; requests for the others wait in their
    /// queue until their deadline (tests use that to keep requests in
    /// flight).
    pub async fn start_engines(
        script: &Path,
        config: RequestPathConfig,
        start_engine: impl Fn(&str) -> bool,
    ) -> Result<StandaloneKernel, Error> {
        let directory = EngineDirectory::default();
        let wiring = EffectsWiring::new(directory.clone());
        let (host, evaluation) = ScriptHost::start_with(script, wiring.effects()).map_err(|error| {
            Error::Kernel {
                message: error.to_string(),
                hint: format!("check the script with `spindle check {}`", script.display()),
            }
        })?;
        let Some(graph) = evaluation.graph else {
            let diagnostics: Vec<String> = evaluation.diagnostics.iter().map(ToString::to_string).collect();
            return Err(Error::Kernel {
                message: diagnostics.join("\n"),
                hint: format!("fix the script; `spindle check {}` lists the same", script.display()),
            });
        };
        let runtime = EmbeddingRuntime {
            directory,
            cache: None,
        };
        let mut engines = Vec::new();
        for service in &graph.services {
            if let ServiceKind::Embedding(_) = service.kind
                && start_engine(&service.name)
            {
                let engine = runtime.start(service).await.map_err(|message| Error::Kernel {
                    message: format!("embedding service `{}`: {message}", service.name),
                    hint: "run `make setup` to fetch ONNX Runtime and the models".to_owned(),
                })?;
                engines.push(engine);
            }
        }
        let shutdown = CancellationToken::new();
        let path = Arc::new(RequestPath::start(&graph, host, wiring, config, shutdown.clone()));
        Ok(StandaloneKernel {
            handle: KernelHandle::new(path, &graph),
            shutdown,
            engines,
        })
    }

    /// Stops the request path and the engines.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for engine in self.engines.drain(..) {
            engine.stop(Duration::from_secs(5)).await;
        }
    }
}

impl Drop for StandaloneKernel {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
