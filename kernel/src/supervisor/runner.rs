//! The supervisor's central loop: the one owner of every service's state.
//!
//! Process instances, probes and backoff timers are tasks that report here
//! through [`Message`]; every state change goes through
//! [`Runner::transition`], which emits the event. Messages carry the
//! instance generation they belong to, so news from an instance that has
//! been replaced is ignored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spindle_scripting::{DependencyCondition, GraphSpec, RestartPolicy, ServiceKind, ServiceSpec};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::control::{ApplyReport, Control, ControlError, StopMode};
use super::event::{Event, ServiceState};
use super::guard::sweep_run;
use super::probe::{self, ProbeContext, ProbeKind};
use super::process::{self, Exit, InstanceContext, LogTarget, ProcessHandle, Spawner, StopRequest};
use super::reaper;
use super::seams::InProcessService;
use super::{RunOutcome, SupervisorConfig, os};

/// What tasks tell the loop.
pub(crate) enum Message {
    /// A process was spawned (or could not be).
    Spawned {
        service: usize,
        generation: u64,
        result: Result<ProcessHandle, String>,
    },
    /// An instance ended (by itself or because it was stopped).
    Exited {
        service: usize,
        generation: u64,
        exit: Exit,
    },
    /// A probe's verdict flipped.
    Probe {
        service: usize,
        generation: u64,
        kind: ProbeKind,
        passing: bool,
        detail: String,
    },
    /// A backoff delay is over.
    BackoffElapsed { service: usize, generation: u64 },
    /// An in-process service finished starting.
    InProcessStarted {
        service: usize,
        generation: u64,
        result: Result<Box<dyn InProcessService>, String>,
    },
}

/// Why the supervisor is stopping an instance; decides what follows its exit.
enum StopIntent {
    Shutdown,
    /// A dependency failed; start again when it recovers.
    Dependency(String),
    /// The liveness probe failed; restart by the policy.
    Liveness(String),
    /// Stopped by request; stays stopped until started.
    Requested,
    /// Restarted by request or because its declaration changed (then with
    /// `Service::next_spec`).
    Restart,
    /// No longer declared: stopped and retired.
    Retire,
}

enum Instance {
    /// Queued on a spawner thread.
    Spawning,
    Process {
        stop: Option<tokio::sync::oneshot::Sender<StopRequest>>,
    },
    InProcessStarting,
    InProcess {
        service: Option<Box<dyn InProcessService>>,
    },
}

struct Service {
    spec: ServiceSpec,
    name: Arc<str>,
    dependencies: Vec<(usize, DependencyCondition)>,
    dependents: Vec<usize>,
    env: Arc<Vec<(String, String)>>,
    state: ServiceState,
    generation: u64,
    pid: Option<u32>,
    instance: Option<Instance>,
    probes: Option<CancellationToken>,
    stop_intent: Option<StopIntent>,
    restarts: u32,
    restart_times: VecDeque<Instant>,
    backoff_streak: u32,
    completed: bool,
    /// A stop asked for while services bound to it still run: it begins
    /// once they have stopped (dependency order).
    queued_stop: Option<StopIntent>,
    /// The declaration it restarts with (a changed graph was applied).
    next_spec: Option<ServiceSpec>,
    /// Stopped by request: not started again until asked.
    held: bool,
    /// Its next stop skips the grace period (SIGKILL at once).
    kill_on_stop: bool,
    /// No longer part of the graph; kept only so that indices stay stable.
    retired: bool,
}

enum Readiness {
    Met(String),
    Waiting,
    Unreachable(String),
}

pub(crate) struct Runner {
    services: Vec<Service>,
    config: SupervisorConfig,
    messages: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Message>,
    /// Someone operates the graph (a control command arrived): it runs
    /// until shutdown, even when every service is at rest.
    controlled: bool,
    shutting_down: bool,
    timers: CancellationToken,
    critical_failures: Vec<(String, String)>,
    spawner: Spawner,
}

/// Threads spawning services at once; see [`Spawner`].
const SPAWNER_THREADS: usize = 4;

impl Runner {
    pub(crate) fn new(graph: GraphSpec, config: SupervisorConfig) -> Runner {
        let mut services: Vec<Service> = graph
            .services
            .iter()
            .map(|spec| new_service(spec.clone(), &config.run_id))
            .collect();
        link_dependencies(&mut services);
        let (messages, inbox) = mpsc::unbounded_channel();
        let until_shutdown = config.run_until_shutdown;
        Runner {
            services,
            config,
            messages,
            inbox,
            controlled: until_shutdown,
            shutting_down: false,
            timers: CancellationToken::new(),
            critical_failures: Vec::new(),
            spawner: Spawner::new(SPAWNER_THREADS),
        }
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> RunOutcome {
        let kill_now = self.config.kill_now.clone();
        let mut controls = self.config.control.take().map(|receiver| receiver.0);
        let mut killed_now = false;
        // Reaps this run's children (and any orphan) until the run is over.
        let stop_reaping = CancellationToken::new();
        let reaping = tokio::spawn(reaper::drive(stop_reaping.clone()));
        self.advance();
        loop {
            let at_rest = self
                .services
                .iter()
                .filter(|service| !service.retired)
                .all(|service| service.state.is_at_rest());
            if at_rest && (self.shutting_down || !self.controlled) {
                if !self.shutting_down {
                    self.begin_shutdown("every service has come to rest");
                }
                break;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled(), if !self.shutting_down => self.begin_shutdown("shutdown requested"),
                () = kill_now.cancelled(), if !killed_now => {
                    killed_now = true;
                    self.kill_now();
                }
                Some(message) = self.inbox.recv() => self.handle(message),
                control = async { controls.as_mut().expect("guarded").recv().await },
                    if controls.is_some() => match control {
                    Some(control) => self.on_control(control),
                    None => controls = None,
                },
            }
        }
        self.timers.cancel();
        let run_id = self.config.run_id.clone();
        let swept = tokio::task::spawn_blocking(move || {
            if run_id.is_empty() {
                return Vec::new();
            }
            sweep_run(&run_id, Duration::from_secs(2))
        })
        .await
        .unwrap_or_default();
        if !swept.is_empty() {
            // Those that reparented here are reaped as they die; the sweep's
            // SIGKILLs may still be landing.
            let _ = tokio::time::timeout(Duration::from_secs(2), reaper::reap_swept(swept.clone()))
                .await;
        }
        stop_reaping.cancel();
        let _ = reaping.await;
        RunOutcome {
            services: self
                .services
                .iter()
                .filter(|service| !service.retired)
                .map(|service| (service.spec.name.clone(), service.state))
                .collect(),
            critical_failures: self.critical_failures,
            swept: swept.len(),
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Spawned {
                service,
                generation,
                result,
            } => self.on_spawned(service, generation, result),
            Message::Exited {
                service,
                generation,
                exit,
            } => self.on_exit(service, generation, exit),
            Message::Probe {
                service,
                generation,
                kind,
                passing,
                detail,
            } => self.on_probe(service, generation, kind, passing, detail),
            Message::BackoffElapsed {
                service,
                generation,
            } => self.on_backoff_elapsed(service, generation),
            Message::InProcessStarted {
                service,
                generation,
                result,
            } => self.on_in_process_started(service, generation, result),
        }
        self.advance();
    }

    /// Starts every pending service whose dependencies are met (repeatedly,
    /// since a start can make another service ready), fails those whose
    /// dependencies never will be; during shutdown, stops whatever no
    /// running service depends on any more.
    fn advance(&mut self) {
        if self.shutting_down {
            self.advance_shutdown();
            return;
        }
        self.advance_queued_stops();
        loop {
            let mut changed = false;
            for service_idx in 0..self.services.len() {
                let service = &self.services[service_idx];
                if service.state != ServiceState::Pending
                    || service.retired
                    || service.held
                    || service.queued_stop.is_some()
                {
                    continue;
                }
                match self.readiness_of_dependencies(service_idx) {
                    Readiness::Waiting => {}
                    Readiness::Met(reason) => {
                        self.start_instance(service_idx, ServiceState::Starting, reason);
                        changed = true;
                    }
                    Readiness::Unreachable(reason) => {
                        self.transition(service_idx, ServiceState::Failed, reason);
                        changed = true;
                    }
                }
                if self.shutting_down {
                    self.advance_shutdown();
                    return;
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn readiness_of_dependencies(&self, service_idx: usize) -> Readiness {
        let service = &self.services[service_idx];
        if service.dependencies.is_empty() {
            return Readiness::Met("no dependencies".to_owned());
        }
        let mut met = Vec::new();
        for (dependency_idx, condition) in &service.dependencies {
            let dependency = &self.services[*dependency_idx];
            if dependency.queued_stop.is_some() || dependency.held {
                // Going down, or stopped by request: wait for it to be
                // started again.
                return Readiness::Waiting;
            }
            let state = dependency.state;
            let satisfied = match condition {
                DependencyCondition::Started => {
                    matches!(
                        state,
                        ServiceState::Running | ServiceState::Ready | ServiceState::Unhealthy
                    ) || (state == ServiceState::Exited && dependency.completed)
                }
                DependencyCondition::Healthy => state == ServiceState::Ready,
                DependencyCondition::CompletedSuccessfully => {
                    state == ServiceState::Exited && dependency.completed
                }
            };
            if satisfied {
                met.push(format!("{} {}", dependency.name, condition.name()));
                continue;
            }
            if state.is_at_rest()
                && !(state == ServiceState::Exited
                    && dependency.completed
                    && *condition == DependencyCondition::Started)
            {
                return Readiness::Unreachable(format!(
                    "dependency {} is {} and will not become {}",
                    dependency.name,
                    state,
                    condition.name()
                ));
            }
            return Readiness::Waiting;
        }
        Readiness::Met(format!("dependencies met: {}", met.join(", ")))
    }

    fn start_instance(&mut self, service_idx: usize, via: ServiceState, reason: String) {
        {
            let service = &mut self.services[service_idx];
            service.generation += 1;
            service.stop_intent = None;
            service.completed = false;
            service.kill_on_stop = false;
        }
        self.transition(service_idx, via, reason);
        let service = &self.services[service_idx];
        let generation = service.generation;
        match &service.spec.kind {
            ServiceKind::Process(process_spec) => {
                let context = InstanceContext {
                    service: service_idx,
                    generation,
                    messages: self.messages.clone(),
                    guard: self.config.guard.clone(),
                    log: LogTarget {
                        service: service.name.clone(),
                        file: self
                            .config
                            .log_dir
                            .as_ref()
                            .map(|dir| dir.join(log_file_name(&service.name))),
                        sink: self.config.logs.clone(),
                    },
                };
                process::start(&self.spawner, process_spec, service.env.clone(), context);
                self.services[service_idx].instance = Some(Instance::Spawning);
            }
            kind => {
                let kind_name = kind.name();
                match self.config.in_process.clone() {
                    Some(runtime) => {
                        let starting = runtime.start(&service.spec);
                        let messages = self.messages.clone();
                        self.services[service_idx].instance = Some(Instance::InProcessStarting);
                        tokio::spawn(async move {
                            let result = starting.await;
                            let _ = messages.send(Message::InProcessStarted {
                                service: service_idx,
                                generation,
                                result,
                            });
                        });
                    }
                    None => {
                        // Restarting cannot help; this is final.
                        let reason = format!(
                            "cannot run `{kind_name}` services: this supervisor was started without an in-process runtime for them"
                        );
                        self.transition(service_idx, ServiceState::Failed, reason.clone());
                        self.stop_dependents(service_idx, &reason);
                        if self.services[service_idx].spec.critical {
                            self.give_up(service_idx, reason);
                        }
                    }
                }
            }
        }
    }

    /// The instance runs: start its probes; without a readiness probe it is
    /// ready at once.
    fn on_running(&mut self, service_idx: usize) {
        let service = &mut self.services[service_idx];
        let token = CancellationToken::new();
        let cwd = match &service.spec.kind {
            ServiceKind::Process(process_spec) => process_spec.cwd.clone(),
            _ => self
                .config
                .log_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        };
        for (kind, spec) in [
            (ProbeKind::Readiness, service.spec.readiness.clone()),
            (ProbeKind::Liveness, service.spec.liveness.clone()),
        ] {
            if let Some(spec) = spec {
                probe::spawn(
                    spec,
                    ProbeContext {
                        service: service_idx,
                        generation: service.generation,
                        kind,
                        cwd: cwd.clone(),
                        env: service.env.clone(),
                        lua: self.config.lua_probes.clone(),
                        messages: self.messages.clone(),
                        cancel: token.clone(),
                        results: self
                            .config
                            .probe_results
                            .clone()
                            .map(|results| (service.name.clone(), results)),
                    },
                );
            }
        }
        service.probes = Some(token);
        if service.spec.readiness.is_none() {
            self.transition(
                service_idx,
                ServiceState::Ready,
                "running; no readiness probe".to_owned(),
            );
        }
    }

    fn on_spawned(
        &mut self,
        service_idx: usize,
        generation: u64,
        result: Result<ProcessHandle, String>,
    ) {
        let service = &mut self.services[service_idx];
        if generation != service.generation || !matches!(service.instance, Some(Instance::Spawning))
        {
            if let Ok(handle) = result {
                let _ = handle.stop.send(StopRequest {
                    signal: os::SIGKILL,
                    grace: Duration::ZERO,
                });
            }
            return;
        }
        match result {
            Ok(handle) => {
                service.pid = Some(handle.pid);
                service.instance = Some(Instance::Process {
                    stop: Some(handle.stop),
                });
                if service.stop_intent.is_some() {
                    // Asked to stop while it was being spawned.
                    self.stop_instance(service_idx);
                    return;
                }
                self.transition(
                    service_idx,
                    ServiceState::Running,
                    format!("pid {}", handle.pid),
                );
                self.on_running(service_idx);
            }
            Err(reason) => {
                if service.stop_intent.is_some() {
                    self.on_exit(service_idx, generation, Exit::Other(reason));
                    return;
                }
                service.instance = None;
                self.transition(service_idx, ServiceState::Failed, reason.clone());
                self.after_failure(service_idx, reason);
            }
        }
    }

    fn on_exit(&mut self, service_idx: usize, generation: u64, exit: Exit) {
        let service = &mut self.services[service_idx];
        if generation != service.generation || !service.state.is_active() {
            return;
        }
        service.instance = None;
        if let Some(token) = service.probes.take() {
            token.cancel();
        }
        let intent = service.stop_intent.take();
        let policy = service.spec.restart.policy;
        match intent {
            Some(StopIntent::Shutdown) => {
                self.transition(
                    service_idx,
                    ServiceState::Stopped,
                    format!("stopped ({exit})"),
                );
            }
            Some(StopIntent::Dependency(dependency)) => {
                self.transition(
                    service_idx,
                    ServiceState::Stopped,
                    format!("stopped because dependency {dependency} failed ({exit})"),
                );
                if !self.shutting_down {
                    self.transition(
                        service_idx,
                        ServiceState::Pending,
                        format!("waiting for {dependency} to recover"),
                    );
                }
            }
            Some(StopIntent::Liveness(detail)) => {
                let reason = format!("{detail} ({exit})");
                self.transition(service_idx, ServiceState::Failed, reason.clone());
                self.restart_or_rest(service_idx, reason);
            }
            Some(StopIntent::Requested) => {
                self.services[service_idx].held = true;
                self.transition(
                    service_idx,
                    ServiceState::Stopped,
                    format!("stopped by request ({exit})"),
                );
            }
            Some(StopIntent::Restart) => {
                let changed = self.take_next_spec(service_idx);
                self.transition(
                    service_idx,
                    ServiceState::Stopped,
                    format!("stopped to restart ({exit})"),
                );
                if !self.shutting_down {
                    let reason = if changed {
                        "restarting with its new declaration"
                    } else {
                        "restarting by request"
                    };
                    self.transition(service_idx, ServiceState::Pending, reason.to_owned());
                }
            }
            Some(StopIntent::Retire) => {
                self.transition(
                    service_idx,
                    ServiceState::Stopped,
                    format!("removed from the graph ({exit})"),
                );
                self.services[service_idx].retired = true;
            }
            None if exit.success() => {
                self.services[service_idx].completed = true;
                self.transition(
                    service_idx,
                    ServiceState::Exited,
                    format!("completed ({exit})"),
                );
                if policy == RestartPolicy::Always {
                    self.schedule_restart(service_idx, format!("{exit}; restart policy is always"));
                }
            }
            None => {
                let reason = exit.to_string();
                self.transition(service_idx, ServiceState::Failed, reason.clone());
                self.after_failure(service_idx, reason);
            }
        }
    }

    /// A failure of a service's own making: dependents go down with it, and
    /// the restart policy decides what happens next.
    fn after_failure(&mut self, service_idx: usize, reason: String) {
        self.stop_dependents(service_idx, &reason);
        self.restart_or_rest(service_idx, reason);
    }

    fn restart_or_rest(&mut self, service_idx: usize, reason: String) {
        if self.shutting_down {
            return;
        }
        let service = &self.services[service_idx];
        if service.spec.restart.policy == RestartPolicy::No {
            if service.spec.critical {
                self.give_up(service_idx, format!("{reason}; restart policy is no"));
            }
            return;
        }
        self.schedule_restart(service_idx, reason);
    }

    fn schedule_restart(&mut self, service_idx: usize, reason: String) {
        if self.shutting_down {
            return;
        }
        let now = Instant::now();
        let service = &mut self.services[service_idx];
        let restart = service.spec.restart.clone();
        while let Some(oldest) = service.restart_times.front() {
            if now.duration_since(*oldest) > restart.window {
                service.restart_times.pop_front();
            } else {
                break;
            }
        }
        if service.restart_times.len() as u32 >= restart.max_restarts {
            let recent = service.restart_times.len();
            self.give_up(
                service_idx,
                format!(
                    "crash loop: {recent} restarts within {} reached the limit of {} (restart.max); last failure: {reason}",
                    format_duration(restart.window),
                    restart.max_restarts
                ),
            );
            return;
        }
        if service.restart_times.is_empty() {
            service.backoff_streak = 0;
        }
        service.backoff_streak += 1;
        service.restarts += 1;
        service.restart_times.push_back(now);
        let delay = backoff_delay(&restart, service.backoff_streak, rand::random::<f64>());
        let generation = service.generation;
        let reason = format!(
            "restart #{} in {} after: {reason}",
            service.restarts,
            format_duration(delay)
        );
        self.emit(service_idx, ServiceState::BackingOff, reason, Some(delay));
        let messages = self.messages.clone();
        let timers = self.timers.clone();
        tokio::spawn(async move {
            if timers
                .run_until_cancelled(tokio::time::sleep(delay))
                .await
                .is_some()
            {
                let _ = messages.send(Message::BackoffElapsed {
                    service: service_idx,
                    generation,
                });
            }
        });
    }

    fn on_backoff_elapsed(&mut self, service_idx: usize, generation: u64) {
        let service = &self.services[service_idx];
        if self.shutting_down
            || service.generation != generation
            || service.state != ServiceState::BackingOff
        {
            return;
        }
        match self.readiness_of_dependencies(service_idx) {
            Readiness::Met(_) => {
                let reason = format!("restart #{}", self.services[service_idx].restarts);
                self.start_instance(service_idx, ServiceState::Restarting, reason);
            }
            Readiness::Waiting | Readiness::Unreachable(_) => {
                self.transition(
                    service_idx,
                    ServiceState::Pending,
                    "waiting for dependencies before restarting".to_owned(),
                );
            }
        }
    }

    fn on_probe(
        &mut self,
        service_idx: usize,
        generation: u64,
        kind: ProbeKind,
        passing: bool,
        detail: String,
    ) {
        let service = &self.services[service_idx];
        if service.generation != generation
            || service.stop_intent.is_some()
            || !matches!(
                service.state,
                ServiceState::Running | ServiceState::Ready | ServiceState::Unhealthy
            )
        {
            return;
        }
        let state = service.state;
        match (kind, passing) {
            (ProbeKind::Readiness, true) => {
                if state != ServiceState::Ready {
                    self.transition(service_idx, ServiceState::Ready, detail);
                }
            }
            (ProbeKind::Readiness, false) => {
                if state == ServiceState::Ready {
                    self.transition(service_idx, ServiceState::Unhealthy, detail);
                }
            }
            (ProbeKind::Liveness, false) => {
                self.begin_stop(
                    service_idx,
                    StopIntent::Liveness(detail.clone()),
                    format!("{detail}; restarting"),
                );
                self.stop_dependents(service_idx, &detail);
            }
            (ProbeKind::Liveness, true) => {}
        }
    }

    fn on_in_process_started(
        &mut self,
        service_idx: usize,
        generation: u64,
        result: Result<Box<dyn InProcessService>, String>,
    ) {
        if self.services[service_idx].generation != generation {
            if let Ok(service) = result {
                tokio::spawn(service.stop(Duration::ZERO));
            }
            return;
        }
        match result {
            Ok(mut in_process) => {
                let finished = in_process.finished();
                let messages = self.messages.clone();
                tokio::spawn(async move {
                    let exit = match finished.await {
                        Ok(()) => Exit::Status(0),
                        Err(reason) => Exit::Other(reason),
                    };
                    let _ = messages.send(Message::Exited {
                        service: service_idx,
                        generation,
                        exit,
                    });
                });
                self.services[service_idx].instance = Some(Instance::InProcess {
                    service: Some(in_process),
                });
                if self.shutting_down || self.services[service_idx].stop_intent.is_some() {
                    self.stop_instance(service_idx);
                    return;
                }
                self.transition(
                    service_idx,
                    ServiceState::Running,
                    "started in process".to_owned(),
                );
                self.on_running(service_idx);
            }
            Err(error) => {
                self.services[service_idx].instance = None;
                let reason = format!("could not start: {error}");
                self.transition(service_idx, ServiceState::Failed, reason.clone());
                self.after_failure(service_idx, reason);
            }
        }
    }

    /// Stops services bound to `service_idx` by `started` or `healthy`; they
    /// start again when it is back.
    fn stop_dependents(&mut self, service_idx: usize, reason: &str) {
        if self.shutting_down {
            return;
        }
        let name = self.services[service_idx].name.clone();
        for dependent_idx in self.services[service_idx].dependents.clone() {
            let bound = self.services[dependent_idx]
                .dependencies
                .iter()
                .any(|(idx, condition)| {
                    *idx == service_idx && *condition != DependencyCondition::CompletedSuccessfully
                });
            if !bound {
                continue;
            }
            match self.services[dependent_idx].state {
                ServiceState::Running
                | ServiceState::Ready
                | ServiceState::Unhealthy
                | ServiceState::Starting => {
                    self.begin_stop(
                        dependent_idx,
                        StopIntent::Dependency(name.to_string()),
                        format!("dependency {name} failed: {reason}"),
                    );
                    self.stop_dependents(dependent_idx, &format!("dependency {name} failed"));
                }
                ServiceState::BackingOff => {
                    self.transition(
                        dependent_idx,
                        ServiceState::Pending,
                        format!("waiting for {name} to recover"),
                    );
                }
                _ => {}
            }
        }
    }

    fn begin_stop(&mut self, service_idx: usize, intent: StopIntent, reason: String) {
        let service = &mut self.services[service_idx];
        if let Some(token) = service.probes.take() {
            token.cancel();
        }
        service.stop_intent = Some(intent);
        self.transition(service_idx, ServiceState::Stopping, reason);
        self.stop_instance(service_idx);
    }

    fn stop_instance(&mut self, service_idx: usize) {
        let service = &mut self.services[service_idx];
        let kill = std::mem::take(&mut service.kill_on_stop);
        let (signal, grace) = if kill {
            (os::SIGKILL, Duration::ZERO)
        } else {
            (service.spec.shutdown.signal, service.spec.shutdown.grace)
        };
        match &mut service.instance {
            Some(Instance::Process { stop }) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(StopRequest { signal, grace });
                }
            }
            Some(Instance::InProcess {
                service: in_process,
            }) => {
                if let Some(in_process) = in_process.take() {
                    let messages = self.messages.clone();
                    let generation = service.generation;
                    tokio::spawn(async move {
                        in_process.stop(grace).await;
                        let _ = messages.send(Message::Exited {
                            service: service_idx,
                            generation,
                            exit: Exit::Status(0),
                        });
                    });
                }
            }
            // Stopped as soon as it has started (see on_spawned and
            // on_in_process_started).
            Some(Instance::Spawning | Instance::InProcessStarting) | None => {}
        }
    }

    fn give_up(&mut self, service_idx: usize, reason: String) {
        self.transition(service_idx, ServiceState::GaveUp, reason.clone());
        let service = &self.services[service_idx];
        if service.spec.critical {
            let name = service.spec.name.clone();
            self.critical_failures.push((name.clone(), reason));
            if !self.shutting_down {
                self.begin_shutdown(&format!("critical service {name} gave up"));
            }
        }
    }

    /// SIGKILLs every live process group at once; their exits arrive as
    /// usual and end in `stopped` (or `failed`).
    fn kill_now(&mut self) {
        if !self.shutting_down {
            self.begin_shutdown("kill requested");
        }
        for service_idx in 0..self.services.len() {
            let service = &self.services[service_idx];
            if let (Some(pid), Some(Instance::Process { .. })) = (service.pid, &service.instance) {
                if service.stop_intent.is_none() {
                    self.services[service_idx].stop_intent = Some(StopIntent::Shutdown);
                    self.transition(
                        service_idx,
                        ServiceState::Stopping,
                        "killed: SIGKILL to the process group".to_owned(),
                    );
                }
                os::signal_group(pid as i32, os::SIGKILL);
            }
        }
    }

    fn begin_shutdown(&mut self, reason: &str) {
        self.shutting_down = true;
        self.timers.cancel();
        for service_idx in 0..self.services.len() {
            match self.services[service_idx].state {
                ServiceState::Pending => {
                    self.transition(
                        service_idx,
                        ServiceState::Stopped,
                        format!("not started: {reason}"),
                    );
                }
                ServiceState::BackingOff => {
                    self.transition(
                        service_idx,
                        ServiceState::Stopped,
                        format!("restart cancelled: {reason}"),
                    );
                }
                _ => {}
            }
        }
        self.advance_shutdown();
    }

    /// Stops, in reverse dependency order, every running service that no
    /// active service depends on any more.
    fn advance_shutdown(&mut self) {
        for service_idx in 0..self.services.len() {
            let service = &self.services[service_idx];
            let running = matches!(
                service.state,
                ServiceState::Running | ServiceState::Ready | ServiceState::Unhealthy
            );
            if !running || service.stop_intent.is_some() {
                continue;
            }
            let dependents_active = service
                .dependents
                .iter()
                .any(|dependent_idx| self.services[*dependent_idx].state.is_active());
            if dependents_active {
                continue;
            }
            let shutdown = &service.spec.shutdown;
            let reason = format!(
                "shutdown: {} to the process group, SIGKILL after {}",
                shutdown.signal_name,
                format_duration(shutdown.grace)
            );
            self.begin_stop(service_idx, StopIntent::Shutdown, reason);
        }
    }

    /// Begins the stops that were waiting for dependents to go down.
    fn advance_queued_stops(&mut self) {
        for service_idx in 0..self.services.len() {
            if self.services[service_idx].queued_stop.is_none() {
                continue;
            }
            let dependents_active = self.services[service_idx]
                .dependents
                .iter()
                .any(|dependent_idx| self.services[*dependent_idx].state.is_active());
            if dependents_active {
                continue;
            }
            let intent = self.services[service_idx]
                .queued_stop
                .take()
                .expect("checked above");
            if self.services[service_idx].state.is_active() {
                let reason = match &intent {
                    StopIntent::Requested => "stopping by request",
                    StopIntent::Restart => "stopping to restart",
                    StopIntent::Retire => "stopping: removed from the graph",
                    _ => "stopping",
                };
                self.begin_stop(service_idx, intent, reason.to_owned());
                continue;
            }
            // Not running: the stop takes effect at once.
            match intent {
                StopIntent::Requested => {
                    self.services[service_idx].held = true;
                    if self.services[service_idx].state != ServiceState::Stopped {
                        self.transition(
                            service_idx,
                            ServiceState::Stopped,
                            "stopped by request".to_owned(),
                        );
                    }
                }
                StopIntent::Restart => {
                    let changed = self.take_next_spec(service_idx);
                    let service = &mut self.services[service_idx];
                    service.restart_times.clear();
                    service.backoff_streak = 0;
                    service.generation += 1;
                    let reason = if changed {
                        "starting with its new declaration"
                    } else {
                        "starting by request"
                    };
                    self.transition(service_idx, ServiceState::Pending, reason.to_owned());
                }
                StopIntent::Retire => {
                    if self.services[service_idx].state != ServiceState::Stopped {
                        self.transition(
                            service_idx,
                            ServiceState::Stopped,
                            "removed from the graph".to_owned(),
                        );
                    }
                    self.services[service_idx].retired = true;
                }
                _ => {}
            }
        }
    }

    /// Swaps in the declaration a changed graph gave the service; whether
    /// there was one.
    fn take_next_spec(&mut self, service_idx: usize) -> bool {
        let Some(spec) = self.services[service_idx].next_spec.take() else {
            return false;
        };
        let run_id = self.config.run_id.clone();
        let replacement = new_service(spec, &run_id);
        let service = &mut self.services[service_idx];
        service.env = replacement.env;
        service.spec = replacement.spec;
        service.restart_times.clear();
        service.backoff_streak = 0;
        service.completed = false;
        link_dependencies(&mut self.services);
        true
    }

    fn find(&self, name: &str) -> Result<usize, ControlError> {
        self.services
            .iter()
            .position(|service| !service.retired && &*service.name == name)
            .ok_or_else(|| ControlError::UnknownService {
                name: name.to_owned(),
                known: self
                    .services
                    .iter()
                    .filter(|service| !service.retired)
                    .map(|service| service.spec.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn on_control(&mut self, control: Control) {
        self.controlled = true;
        match control {
            Control::Restart(name, reply) => {
                let _ = reply.send(self.control_one(&name, |runner, idx| {
                    runner.queue_stop(idx, StopIntent::Restart, "restarting by request");
                }));
            }
            Control::Stop(name, mode, reply) => {
                let _ = reply.send(self.control_one(&name, |runner, idx| {
                    if mode == StopMode::Immediate {
                        runner.kill_on_stop_with_dependents(idx);
                    }
                    runner.queue_stop(idx, StopIntent::Requested, "stopping by request");
                }));
            }
            Control::Start(name, reply) => {
                let _ = reply.send(self.control_one(&name, |runner, idx| {
                    runner.start_by_request(idx, false);
                }));
            }
            Control::Recover(name, reply) => {
                let _ = reply.send(self.control_one(&name, |runner, idx| {
                    runner.start_by_request(idx, true);
                }));
            }
            Control::Apply(graph, reply) => {
                let result = if self.shutting_down {
                    Err(ControlError::ShuttingDown)
                } else {
                    Ok(self.apply(*graph))
                };
                let _ = reply.send(result);
            }
        }
        self.advance();
    }

    fn control_one(
        &mut self,
        name: &str,
        action: impl FnOnce(&mut Runner, usize),
    ) -> Result<(), ControlError> {
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        let service_idx = self.find(name)?;
        action(self, service_idx);
        Ok(())
    }

    /// Marks a service and every service that depends on it, directly or
    /// not, to be killed without grace when they stop next.
    fn kill_on_stop_with_dependents(&mut self, service_idx: usize) {
        let mut stack = vec![service_idx];
        while let Some(idx) = stack.pop() {
            if self.services[idx].kill_on_stop {
                continue;
            }
            self.services[idx].kill_on_stop = true;
            stack.extend(self.services[idx].dependents.iter().copied());
        }
    }

    /// Stops the services bound to it first; its own stop waits for them.
    fn queue_stop(&mut self, service_idx: usize, intent: StopIntent, reason: &str) {
        self.services[service_idx].held = false;
        self.services[service_idx].queued_stop = Some(intent);
        self.stop_dependents(service_idx, reason);
    }

    /// Starts a service that is at rest (stopped, failed, gave up,
    /// exited), and the services it needs that were stopped by request.
    /// `recover` also forgets its crash loop and backoff.
    fn start_by_request(&mut self, service_idx: usize, recover: bool) {
        let mut stack = vec![service_idx];
        while let Some(idx) = stack.pop() {
            let service = &mut self.services[idx];
            let was_held = service.held;
            service.held = false;
            if idx == service_idx && recover {
                service.restart_times.clear();
                service.backoff_streak = 0;
            }
            let restartable = matches!(
                service.state,
                ServiceState::Stopped
                    | ServiceState::Failed
                    | ServiceState::GaveUp
                    | ServiceState::Exited
                    | ServiceState::BackingOff
            );
            if restartable && (idx == service_idx || was_held) {
                if service.state == ServiceState::GaveUp {
                    service.restart_times.clear();
                    service.backoff_streak = 0;
                }
                // A pending backoff timer of the old generation is ignored.
                service.generation += 1;
                let reason = if recover {
                    "recovering by request"
                } else {
                    "starting by request"
                };
                self.transition(idx, ServiceState::Pending, reason.to_owned());
            }
            for (dependency_idx, _) in self.services[idx].dependencies.clone() {
                if self.services[dependency_idx].held {
                    stack.push(dependency_idx);
                }
            }
        }
    }

    /// Applies a new graph as a diff; see [`ApplyReport`].
    fn apply(&mut self, graph: GraphSpec) -> ApplyReport {
        let mut report = ApplyReport::default();
        let declared: Vec<String> = graph
            .services
            .iter()
            .map(|spec| spec.name.clone())
            .collect();
        for service_idx in 0..self.services.len() {
            let service = &self.services[service_idx];
            if service.retired || declared.iter().any(|name| **name == *service.name) {
                continue;
            }
            report.removed.push(service.spec.name.clone());
            self.queue_stop(service_idx, StopIntent::Retire, "removed from the graph");
        }
        let run_id = self.config.run_id.clone();
        for spec in graph.services {
            match self.find(&spec.name) {
                Ok(service_idx) => {
                    if same_declaration(&self.services[service_idx].spec, &spec) {
                        // Positions may have moved; behaviour did not.
                        self.services[service_idx].spec = spec;
                        report
                            .unchanged
                            .push(self.services[service_idx].spec.name.clone());
                        continue;
                    }
                    report.changed.push(spec.name.clone());
                    self.services[service_idx].next_spec = Some(spec);
                    self.queue_stop(service_idx, StopIntent::Restart, "its declaration changed");
                }
                Err(_) => {
                    report.added.push(spec.name.clone());
                    self.services.push(new_service(spec, &run_id));
                }
            }
        }
        link_dependencies(&mut self.services);
        report
    }

    fn transition(&mut self, service_idx: usize, to: ServiceState, reason: String) {
        self.emit(service_idx, to, reason, None);
    }

    fn emit(
        &mut self,
        service_idx: usize,
        to: ServiceState,
        reason: String,
        backoff: Option<Duration>,
    ) {
        let service = &mut self.services[service_idx];
        let from = service.state;
        service.state = to;
        if !to.is_active() {
            service.pid = None;
        }
        tracing::debug!(service = %service.name, %from, %to, %reason, "state change");
        let event = Event {
            at: SystemTime::now(),
            service: service.spec.name.clone(),
            from,
            to,
            reason,
            pid: service.pid,
            restarts: service.restarts,
            backoff,
        };
        self.config
            .subscribers
            .retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }
}

fn new_service(spec: ServiceSpec, run_id: &str) -> Service {
    let mut env = match &spec.kind {
        ServiceKind::Process(process) => process.env.clone(),
        _ => Vec::new(),
    };
    env.push(("SPINDLE_SERVICE".to_owned(), spec.name.clone()));
    env.push(("SPINDLE_RUN_ID".to_owned(), run_id.to_owned()));
    Service {
        name: Arc::from(spec.name.as_str()),
        dependencies: Vec::new(),
        dependents: Vec::new(),
        env: Arc::new(env),
        spec,
        state: ServiceState::Pending,
        generation: 0,
        pid: None,
        instance: None,
        probes: None,
        stop_intent: None,
        restarts: 0,
        restart_times: VecDeque::new(),
        backoff_streak: 0,
        completed: false,
        queued_stop: None,
        next_spec: None,
        held: false,
        kill_on_stop: false,
        retired: false,
    }
}

/// Resolves every service's dependencies by name, among the services still
/// in the graph (a service being replaced keeps its index).
fn link_dependencies(services: &mut [Service]) {
    for service in services.iter_mut() {
        service.dependents.clear();
    }
    for service_idx in 0..services.len() {
        if services[service_idx].retired {
            services[service_idx].dependencies.clear();
            continue;
        }
        let dependencies: Vec<(usize, DependencyCondition)> = services[service_idx]
            .spec
            .depends_on
            .iter()
            .filter_map(|dependency| {
                services
                    .iter()
                    .position(|other| !other.retired && *other.name == *dependency.service)
                    .map(|idx| (idx, dependency.condition))
            })
            .collect();
        for (dependency_idx, _) in &dependencies {
            services[*dependency_idx].dependents.push(service_idx);
        }
        services[service_idx].dependencies = dependencies;
    }
}

/// Whether two declarations of a service behave the same (positions in the
/// script aside), so that a reload leaves it running.
fn same_declaration(running: &ServiceSpec, declared: &ServiceSpec) -> bool {
    fn without_positions(spec: &ServiceSpec) -> ServiceSpec {
        let mut spec = spec.clone();
        let nowhere = spindle_scripting::Location {
            file: std::path::PathBuf::new(),
            line: 0,
            column: 0,
        };
        spec.location = nowhere.clone();
        for probe in [&mut spec.readiness, &mut spec.liveness]
            .into_iter()
            .flatten()
        {
            probe.location = nowhere.clone();
        }
        spec
    }
    without_positions(running) == without_positions(declared)
}

/// `min(initial · 2^(streak-1), max) · (1 + jitter · unit)`, `unit` in [0, 1).
pub(crate) fn backoff_delay(
    restart: &spindle_scripting::RestartSpec,
    streak: u32,
    unit: f64,
) -> Duration {
    let exponent = streak.saturating_sub(1).min(30);
    let base = restart
        .backoff_initial
        .checked_mul(1u32 << exponent)
        .unwrap_or(restart.backoff_max)
        .min(restart.backoff_max);
    base.mul_f64(1.0 + restart.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0))
}

/// `1.5s`, `200ms`: how durations appear in reasons.
pub(crate) fn format_duration(duration: Duration) -> String {
    if duration.as_millis() >= 1000 && duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_millis() >= 1000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn log_file_name(service: &str) -> String {
    let safe: String = service
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_initial_to_max() {
        let restart = spindle_scripting::RestartSpec {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(700),
            jitter: 0.5,
            ..Default::default()
        };
        let delays: Vec<u128> = (1..=5)
            .map(|streak| backoff_delay(&restart, streak, 0.0).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        assert_eq!(backoff_delay(&restart, 2, 0.999_999).as_millis(), 299);
        assert_eq!(backoff_delay(&restart, 60, 0.0).as_millis(), 700);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_duration(Duration::from_secs(60)), "60s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}
