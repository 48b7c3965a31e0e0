//! What the kernel knows of its services and pipelines right now: each
//! service's latest state, each embedding service's availability, and each
//! pipeline's readiness ("ready before served"), all derived from the
//! supervisor's events by [`ServiceBoard::apply`].
//!
//! A pipeline needs the embedding services of its embed stages (an embed
//! stage whose primary is not ready is served when its fallback is). Its
//! [`Gate`] is open when every need is ready, closed while one is starting
//! or restarting (its requests wait in their queue), failed when one will
//! not come back (a service gave up): its requests are answered at once.
//!
//! Plain data behind one mutex, written only by the kernel's event hub;
//! readers take snapshots. It knows no protocol.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use spindle_scheduler::Gate;
use spindle_scripting::{
    GraphSpec, PipelineSpec, RestartPolicy, ServiceKind, ServiceSpec, SourceSpec, StageKind,
};
use tokio::sync::watch;

use crate::supervisor::{Event, ServiceState};

/// One service as the kernel sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    /// `process` or `embedding`.
    pub kind: &'static str,
    pub state: ServiceState,
    /// Why it is in this state, in words a person can act on.
    pub reason: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// When it entered this state.
    pub since: SystemTime,
    /// Whether pipelines may send it work: open when ready.
    pub availability: Gate,
}

/// One pipeline and whether it can be served now.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStatus {
    pub name: String,
    pub sources: Vec<SourceSpec>,
    /// The embedding services its stages use, primaries first.
    pub needs: Vec<String>,
    pub gate: Gate,
}

/// Services and pipelines at one point of the event sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSnapshot {
    /// The sequence number of the last event this snapshot includes.
    pub as_of: u64,
    pub services: Vec<ServiceStatus>,
    pub pipelines: Vec<PipelineStatus>,
}

impl KernelSnapshot {
    /// Whether every pipeline can be served, and if not, why each cannot.
    pub fn readiness(&self) -> Readiness {
        let waiting: Vec<(String, String)> = self
            .pipelines
            .iter()
            .filter_map(|pipeline| match &pipeline.gate {
                Gate::Open => None,
                Gate::Closed { reason } | Gate::Failed { reason } => {
                    Some((pipeline.name.clone(), reason.clone()))
                }
            })
            .collect();
        Readiness {
            ready: waiting.is_empty(),
            not_ready: waiting,
        }
    }
}

/// The answer to "can every declared pipeline be served now?".
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    /// Pipelines that cannot, with the reason (what they wait for).
    pub not_ready: Vec<(String, String)>,
}

/// The board; see the module documentation.
#[derive(Debug)]
pub(crate) struct ServiceBoard {
    state: Mutex<BoardState>,
}

#[derive(Debug)]
struct BoardState {
    /// Each embedding service's availability, for its batcher.
    availability: HashMap<String, watch::Sender<Gate>>,
    as_of: u64,
    services: Vec<ServiceStatus>,
    restart_policies: Vec<RestartPolicy>,
    pipelines: Vec<PipelineStatus>,
    /// Per pipeline: per embed stage, (primary, fallback).
    embed_stages: Vec<Vec<(String, Option<String>)>>,
}

/// A pipeline whose gate changed when an event was applied.
pub(crate) type GateChange = (String, Gate);

impl ServiceBoard {
    pub(crate) fn new(graph: &GraphSpec) -> ServiceBoard {
        let board = ServiceBoard {
            state: Mutex::new(BoardState {
                availability: HashMap::new(),
                as_of: 0,
                services: Vec::new(),
                restart_policies: Vec::new(),
                pipelines: Vec::new(),
                embed_stages: Vec::new(),
            }),
        };
        board.apply_graph(graph);
        board
    }

    /// Takes on a (new) graph: services keep their state by name, new ones
    /// start pending, removed ones leave the board (their last events
    /// still reach subscribers); pipelines are recomputed. Returns the
    /// pipelines whose gate changed or that are new and not open.
    pub(crate) fn apply_graph(&self, graph: &GraphSpec) -> Vec<GateChange> {
        let now = SystemTime::now();
        let mut state = self.lock();
        let previous: Vec<ServiceStatus> = std::mem::take(&mut state.services);
        state.services = graph
            .services
            .iter()
            .map(|spec| {
                previous
                    .iter()
                    .find(|status| status.name == spec.name)
                    .cloned()
                    .unwrap_or_else(|| ServiceStatus {
                        name: spec.name.clone(),
                        kind: spec.kind.name(),
                        state: ServiceState::Pending,
                        reason: "not started yet".to_owned(),
                        pid: None,
                        restarts: 0,
                        since: now,
                        availability: service_gate(
                            spec.restart.policy,
                            &spec.name,
                            ServiceState::Pending,
                            "",
                        ),
                    })
            })
            .collect();
        state.restart_policies = graph
            .services
            .iter()
            .map(|spec: &ServiceSpec| spec.restart.policy)
            .collect();
        let embedding: Vec<(String, Gate)> = graph
            .services
            .iter()
            .zip(&state.services)
            .filter(|(spec, _)| matches!(spec.kind, ServiceKind::Embedding(_)))
            .map(|(spec, status)| (spec.name.clone(), status.availability.clone()))
            .collect();
        state
            .availability
            .retain(|name, _| embedding.iter().any(|(known, _)| known == name));
        for (name, gate) in embedding {
            state
                .availability
                .entry(name)
                .or_insert_with(|| watch::channel(gate).0);
        }
        let previous_pipelines = std::mem::take(&mut state.pipelines);
        state.embed_stages = graph.pipelines.iter().map(embed_stages_of).collect();
        state.pipelines = graph
            .pipelines
            .iter()
            .zip(&state.embed_stages)
            .map(|(pipeline, stages)| PipelineStatus {
                name: pipeline.name.clone(),
                sources: pipeline.sources.clone(),
                needs: needs_of(stages),
                gate: previous_pipelines
                    .iter()
                    .find(|known| known.name == pipeline.name)
                    .map_or(Gate::Open, |known| known.gate.clone()),
            })
            .collect();
        let mut changes = state.recompute_pipelines();
        for pipeline in &state.pipelines {
            let is_new = !previous_pipelines
                .iter()
                .any(|known| known.name == pipeline.name);
            if is_new
                && !pipeline.gate.is_open()
                && !changes.iter().any(|(name, _)| *name == pipeline.name)
            {
                changes.push((pipeline.name.clone(), pipeline.gate.clone()));
            }
        }
        changes
    }

    /// Applies one supervisor event as event number `seq`; returns the
    /// pipelines whose gate changed.
    pub(crate) fn apply(&self, seq: u64, event: &Event) -> Vec<GateChange> {
        let mut state = self.lock();
        state.as_of = seq;
        let Some(index) = state
            .services
            .iter()
            .position(|service| service.name == event.service)
        else {
            return Vec::new();
        };
        let policy = state.restart_policies[index];
        let availability = service_gate(policy, &event.service, event.to, &event.reason);
        let service = &mut state.services[index];
        service.state = event.to;
        service.reason = event.reason.clone();
        service.pid = event.pid;
        service.restarts = event.restarts;
        service.since = event.at;
        if service.availability != availability {
            service.availability = availability.clone();
            if let Some(sender) = state.availability.get(&event.service) {
                sender.send_replace(availability);
            }
        }
        state.recompute_pipelines()
    }

    /// Marks a sequence number that changed nothing on the board (a
    /// request event), so snapshots stay ordered with the event stream.
    pub(crate) fn advance(&self, seq: u64) {
        self.lock().as_of = seq;
    }

    pub(crate) fn snapshot(&self) -> KernelSnapshot {
        let state = self.lock();
        KernelSnapshot {
            as_of: state.as_of,
            services: state.services.clone(),
            pipelines: state.pipelines.clone(),
        }
    }

    /// Every pipeline's gate now, for the scheduler's first configuration.
    pub(crate) fn gates(&self) -> Vec<GateChange> {
        self.lock()
            .pipelines
            .iter()
            .map(|pipeline| (pipeline.name.clone(), pipeline.gate.clone()))
            .collect()
    }

    /// The availability of embedding service `service`, for its batcher.
    pub(crate) fn availability(&self, service: &str) -> Option<watch::Receiver<Gate>> {
        self.lock()
            .availability
            .get(service)
            .map(watch::Sender::subscribe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BoardState {
    fn gate_of(&self, service: &str) -> Gate {
        self.services
            .iter()
            .find(|status| status.name == service)
            .map_or_else(
                || Gate::Failed {
                    reason: format!("no service named `{service}`"),
                },
                |status| status.availability.clone(),
            )
    }

    /// Recomputes every pipeline's gate; returns those that changed.
    fn recompute_pipelines(&mut self) -> Vec<GateChange> {
        let mut changes = Vec::new();
        for index in 0..self.pipelines.len() {
            let gate = self.pipeline_gate(&self.embed_stages[index]);
            let pipeline = &mut self.pipelines[index];
            if pipeline.gate != gate {
                pipeline.gate = gate.clone();
                changes.push((pipeline.name.clone(), gate));
            }
        }
        changes
    }

    fn pipeline_gate(&self, stages: &[(String, Option<String>)]) -> Gate {
        let mut waiting = Vec::new();
        for (primary, fallback) in stages {
            let gate = match (self.gate_of(primary), fallback) {
                (Gate::Open, _) => Gate::Open,
                (primary_gate, Some(fallback)) => match self.gate_of(fallback) {
                    Gate::Open => Gate::Open,
                    _ => primary_gate,
                },
                (primary_gate, None) => primary_gate,
            };
            match gate {
                Gate::Open => {}
                Gate::Failed { .. } => return gate,
                Gate::Closed { reason } => {
                    if !waiting.contains(&reason) {
                        waiting.push(reason);
                    }
                }
            }
        }
        if waiting.is_empty() {
            Gate::Open
        } else {
            Gate::Closed {
                reason: waiting.join("; "),
            }
        }
    }
}

/// Whether a service in `state` can take work, will again, or will not.
fn service_gate(policy: RestartPolicy, name: &str, state: ServiceState, reason: &str) -> Gate {
    let because = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match state {
        ServiceState::Ready => Gate::Open,
        ServiceState::GaveUp => Gate::Failed {
            reason: format!("service `{name}` gave up{because}"),
        },
        ServiceState::Failed if policy == RestartPolicy::No => Gate::Failed {
            reason: format!("service `{name}` failed and is not restarted{because}"),
        },
        ServiceState::Exited if policy != RestartPolicy::Always => Gate::Failed {
            reason: format!("service `{name}` exited{because}"),
        },
        other => Gate::Closed {
            reason: format!("waiting for service `{name}` ({}{because})", other.name()),
        },
    }
}

fn embed_stages_of(pipeline: &PipelineSpec) -> Vec<(String, Option<String>)> {
    pipeline
        .stages
        .iter()
        .filter_map(|stage| match &stage.kind {
            StageKind::Embed { service, fallback } => Some((service.clone(), fallback.clone())),
            _ => None,
        })
        .collect()
}

fn needs_of(stages: &[(String, Option<String>)]) -> Vec<String> {
    let mut needs: Vec<String> = Vec::new();
    for name in stages
        .iter()
        .map(|(primary, _)| primary)
        .chain(stages.iter().filter_map(|(_, fallback)| fallback.as_ref()))
    {
        if !needs.contains(name) {
            needs.push(name.clone());
        }
    }
    needs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_follow_the_service_lifecycle() {
        let gate = |policy, state| service_gate(policy, "embedder", state, "why");
        assert_eq!(
            gate(RestartPolicy::OnFailure, ServiceState::Ready),
            Gate::Open
        );
        assert!(matches!(
            gate(RestartPolicy::OnFailure, ServiceState::Restarting),
            Gate::Closed { .. }
        ));
        assert!(matches!(
            gate(RestartPolicy::OnFailure, ServiceState::Failed),
            Gate::Closed { .. }
        ));
        assert!(matches!(
            gate(RestartPolicy::No, ServiceState::Failed),
            Gate::Failed { .. }
        ));
        assert!(matches!(
            gate(RestartPolicy::Always, ServiceState::GaveUp),
            Gate::Failed { .. }
        ));
        assert_eq!(
            gate(RestartPolicy::OnFailure, ServiceState::Starting),
            Gate::Closed {
                reason: "waiting for service `embedder` (starting: why)".to_owned()
            }
        );
    }
}
