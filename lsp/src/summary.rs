//! What the server keeps of an evaluation: per service the few facts hover,
//! inlay hints, symbols and the graph view show, and the error count. The
//! full `GraphSpec` (probes, environments, locations) is dropped, so that
//! fifty large open scripts stay small; a service's name is one text shared
//! by its summary and its dependents', and equal command lines are one
//! text.

use std::collections::HashMap;
use std::sync::Arc;

use spindle_scripting::{Evaluation, ServiceKind, Severity};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary {
    pub name: Arc<str>,
    /// `process` or `embedding`.
    pub kind: &'static str,
    /// The command line, or the model and its providers.
    pub runs: Arc<str>,
    /// Dependencies with their conditions, in source order.
    pub depends_on: Box<[(Arc<str>, &'static str)]>,
    pub wave: usize,
    pub restart: &'static str,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSummary {
    pub name: String,
    pub stages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSummary {
    /// In declaration order.
    pub services: Vec<ServiceSummary>,
    pub pipelines: Vec<PipelineSummary>,
    pub wave_count: usize,
}

impl GraphSummary {
    pub fn service(&self, name: &str) -> Option<&ServiceSummary> {
        self.services.iter().find(|service| &*service.name == name)
    }

    pub fn pipeline(&self, name: &str) -> Option<&PipelineSummary> {
        self.pipelines.iter().find(|pipeline| pipeline.name == name)
    }

    /// Services by wave, each wave in declaration order.
    pub fn waves(&self) -> Vec<Vec<&ServiceSummary>> {
        let mut waves = vec![Vec::new(); self.wave_count];
        for service in &self.services {
            waves[service.wave].push(service);
        }
        waves
    }
}

/// An evaluation as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationSummary {
    /// `None` when the evaluation had errors.
    pub graph: Option<GraphSummary>,
    pub errors: usize,
}

pub fn summarize(evaluation: &Evaluation) -> EvaluationSummary {
    let errors = evaluation
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let graph = evaluation.graph.as_ref().map(|graph| {
        let waves = graph.waves();
        // The first wave that holds each name (one pass, not one per service).
        let mut waves_by_name: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::new();
        for (wave, services) in waves.iter().enumerate() {
            for service in services {
                waves_by_name.entry(service.name.as_str()).or_insert(wave);
            }
        }
        let wave_of = |name: &str| waves_by_name.get(name).copied().unwrap_or(0);
        let mut texts: HashMap<String, Arc<str>> = HashMap::new();
        let mut shared = |text: &str| -> Arc<str> {
            if let Some(found) = texts.get(text) {
                return found.clone();
            }
            let made: Arc<str> = Arc::from(text);
            texts.insert(text.to_owned(), made.clone());
            made
        };
        GraphSummary {
            services: graph
                .services
                .iter()
                .map(|service| ServiceSummary {
                    name: shared(&service.name),
                    kind: service.kind.name(),
                    runs: shared(&match &service.kind {
                        ServiceKind::Process(process) => process.command.join(" "),
                        ServiceKind::Embedding(embedding) => {
                            format!("{} on {}", embedding.model, embedding.providers.join(", "))
                        }
                        _ => String::new(),
                    }),
                    depends_on: service
                        .depends_on
                        .iter()
                        .map(|d| (shared(&d.service), d.condition.name()))
                        .collect(),
                    wave: wave_of(&service.name),
                    restart: service.restart.policy.name(),
                    line: service.location.line,
                })
                .collect(),
            pipelines: graph
                .pipelines
                .iter()
                .map(|pipeline| PipelineSummary {
                    name: pipeline.name.clone(),
                    stages: pipeline.stages.iter().map(|s| s.name.clone()).collect(),
                })
                .collect(),
            wave_count: waves.len(),
        }
    });
    EvaluationSummary { graph, errors }
}
