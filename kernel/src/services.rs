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
//! For the status views it also keeps, per service, when its current
//! instance started, the last result of each of its probes and a small
//! ring of its recent output lines.
//!
//! Plain data behind one mutex, written only by the kernel's event hub;
//! readers take snapshots. It knows no protocol.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use spindle_scheduler::Gate;
use spindle_scripting::{
    GraphSpec, PipelineSpec, RestartPolicy, ServiceKind, ServiceSpec, SourceSpec, StageKind,
};
use tokio::sync::watch;

use crate::supervisor::{Event, LogLine, ProbeResult, ServiceState};

/// Output lines kept per service for the status views.
pub const RECENT_LOG_LINES: usize = 200;
/// Longer lines are cut (with `…`) in the ring; the log files keep them.
const RECENT_LINE_BYTES: usize = 4096;

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
    /// When its current instance started (it has one); uptime counts
    /// from here.
    pub running_since: Option<SystemTime>,
    /// Whether pipelines may send it work: open when ready.
    pub availability: Gate,
}

/// One service in detail: its status, the last result of each of its
/// probes, and its recent output lines (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDetail {
    pub status: ServiceStatus,
    pub probes: Vec<ProbeResult>,
    pub recent_logs: Vec<LogLine>,
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
    /// Per pipeline: per embed stage, (the services sharing it, fallback).
    embed_stages: Vec<Vec<EmbedStage>>,
    /// Per service: recent output lines and the last probe results.
    recent: HashMap<String, Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    logs: VecDeque<LogLine>,
    probes: Vec<ProbeResult>,
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
                recent: HashMap::new(),
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
                        running_since: None,
                        availability: service_gate(
                            spec.restart.policy,
                            &spec.name,
                            ServiceState::Pending,
                            "",
                        ),
                    })
            })
            .collect();
        let declared: Vec<&str> = graph
            .services
            .iter()
            .map(|spec| spec.name.as_str())
            .collect();
        state
            .recent
            .retain(|name, _| declared.contains(&name.as_str()));
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
        if matches!(event.to, ServiceState::Starting | ServiceState::Restarting)
            && let Some(recent) = state.recent.get_mut(&event.service)
        {
            // A new instance: the old one's probe results no longer apply.
            recent.probes.clear();
        }
        let service = &mut state.services[index];
        service.state = event.to;
        service.reason = event.reason.clone();
        service.pid = event.pid;
        service.restarts = event.restarts;
        service.since = event.at;
        if !event.to.is_active() {
            service.running_since = None;
        } else if !event.from.is_active() {
            service.running_since = Some(event.at);
        }

        if service.availability != availability {
            service.availability = availability.clone();
            if let Some(sender) = state.availability.get(&event.service) {
                sender.send_replace(availability);
            }
        }
        state.recompute_pipelines()
    }

    /// Keeps one output line in its service's ring, then calls `publish`
    /// under the same lock, so that [`ServiceBoard::recent_logs_then`]
    /// sees each line either in the ring or in its subscription, never in
    /// both or neither.
    pub(crate) fn record_log(&self, line: &LogLine, publish: impl FnOnce()) {
        let mut state = self.lock();
        let recent = state.recent.entry(line.service.clone()).or_default();
        if recent.logs.len() == RECENT_LOG_LINES {
            recent.logs.pop_front();
        }
        let mut line = line.clone();
        if line.line.len() > RECENT_LINE_BYTES {
            let mut cut = RECENT_LINE_BYTES;
            while !line.line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.line.truncate(cut);
            line.line.push('…');
        }
        recent.logs.push_back(line);
        publish();
    }

    /// A service's recent output lines and what `subscribe` returns, taken
    /// at one point of the line stream; `None` for an unknown service.
    pub(crate) fn recent_logs_then<T>(
        &self,
        service: &str,
        subscribe: impl FnOnce() -> T,
    ) -> Option<(Vec<LogLine>, T)> {
        let state = self.lock();
        if !state.services.iter().any(|status| status.name == service) {
            return None;
        }
        let recent = state
            .recent
            .get(service)
            .map(|recent| recent.logs.iter().cloned().collect())
            .unwrap_or_default();
        Some((recent, subscribe()))
    }

    /// Keeps a probe's latest result (one per probe of the service).
    pub(crate) fn record_probe(&self, result: ProbeResult) {
        let mut state = self.lock();
        let recent = state.recent.entry(result.service.clone()).or_default();
        match recent
            .probes
            .iter_mut()
            .find(|known| known.probe == result.probe)
        {
            Some(known) => *known = result,
            None => recent.probes.push(result),
        }
    }

    /// One service's status, probes and recent output.
    pub(crate) fn detail(&self, service: &str) -> Option<ServiceDetail> {
        let state = self.lock();
        let status = state
            .services
            .iter()
            .find(|status| status.name == service)?
            .clone();
        let (probes, recent_logs) = match state.recent.get(service) {
            Some(recent) => (recent.probes.clone(), recent.logs.iter().cloned().collect()),
            None => (Vec::new(), Vec::new()),
        };
        Some(ServiceDetail {
            status,
            probes,
            recent_logs,
        })
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

    fn pipeline_gate(&self, stages: &[EmbedStage]) -> Gate {
        let mut waiting = Vec::new();
        for (pool, fallback) in stages {
            // Open when any service of the pool (or the fallback) is; else
            // waiting when one will come back; else failed.
            let gates: Vec<Gate> = pool.iter().map(|service| self.gate_of(service)).collect();
            let fallback_open = fallback
                .as_ref()
                .is_some_and(|fallback| self.gate_of(fallback).is_open());
            let gate = if fallback_open || gates.iter().any(Gate::is_open) {
                Gate::Open
            } else {
                gates
                    .iter()
                    .find(|gate| matches!(gate, Gate::Closed { .. }))
                    .or(gates.first())
                    .cloned()
                    .unwrap_or(Gate::Open)
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

/// An embed stage: the services that share its work, and its fallback.
type EmbedStage = (Vec<String>, Option<String>);

fn embed_stages_of(pipeline: &PipelineSpec) -> Vec<EmbedStage> {
    pipeline
        .stages
        .iter()
        .filter_map(|stage| match &stage.kind {
            StageKind::Embed {
                service,
                fallback,
                shared_with,
            } => Some((
                std::iter::once(service.clone())
                    .chain(shared_with.iter().cloned())
                    .collect(),
                fallback.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn needs_of(stages: &[EmbedStage]) -> Vec<String> {
    let mut needs: Vec<String> = Vec::new();
    for name in stages
        .iter()
        .flat_map(|(pool, _)| pool)
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
