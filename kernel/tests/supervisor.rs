//! The supervisor against real process trees: graphs built in Rust, run by
//! `spindle_kernel::supervisor::run`, observed through their events and
//! through `/proc`. No sleep synchronises anything here: every wait is on an
//! event (with a generous deadline that only turns a hang into a failure).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use spindle_kernel::supervisor::{
    self, BoxFuture, Event, InProcessRuntime, InProcessService, LogLine, LuaProbes, RunOutcome,
    ServiceState, SupervisorConfig,
};
use spindle_scripting::{
    Dependency, DependencyCondition, EmbeddingSpec, FunctionId, GraphSpec, Location, ProbeCheck,
    ProbeSpec, ProcessSpec, RestartPolicy, RestartSpec, ServiceKind, ServiceSpec, ShutdownSpec,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

fn scratch_dir(test: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "spindle-kernel-{test}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn location() -> Location {
    Location {
        file: PathBuf::from("/test.lua"),
        line: 1,
        column: 1,
    }
}

/// A process service running `script` with `sh -c` in `dir`.
fn service(name: &str, script: &str, dir: &Path) -> ServiceSpec {
    ServiceSpec {
        name: name.to_owned(),
        location: location(),
        kind: ServiceKind::Process(ProcessSpec {
            command: vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()],
            cwd: dir.to_path_buf(),
            env: vec![("TEST_DIR".to_owned(), dir.display().to_string())],
        }),
        depends_on: Vec::new(),
        readiness: None,
        liveness: None,
        restart: RestartSpec {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            jitter: 0.0,
            ..RestartSpec::default()
        },
        shutdown: ShutdownSpec {
            grace: Duration::from_secs(5),
            ..ShutdownSpec::default()
        },
        critical: false,
    }
}

fn depends(mut spec: ServiceSpec, on: &str, condition: DependencyCondition) -> ServiceSpec {
    spec.depends_on.push(Dependency {
        service: on.to_owned(),
        condition,
    });
    spec
}

fn probe(check: ProbeCheck, period_ms: u64) -> ProbeSpec {
    ProbeSpec {
        check,
        location: location(),
        period: Duration::from_millis(period_ms),
        timeout: Duration::from_secs(5),
        failure_threshold: 1,
        success_threshold: 1,
        initial_delay: Duration::ZERO,
    }
}

fn exec(script: &str) -> ProbeCheck {
    ProbeCheck::Exec {
        command: vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()],
    }
}

fn graph(services: Vec<ServiceSpec>) -> GraphSpec {
    GraphSpec {
        file: PathBuf::from("/test.lua"),
        services,
        pipelines: Vec::new(),
        settings: Default::default(),
    }
}

/// A running graph and everything it has said so far.
struct Harness {
    events: mpsc::UnboundedReceiver<Event>,
    logs: mpsc::UnboundedReceiver<LogLine>,
    seen: Vec<Event>,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<RunOutcome>,
    run_id: String,
}

impl Harness {
    fn start(graph: GraphSpec, config: SupervisorConfig) -> Harness {
        let (event_sender, events) = mpsc::unbounded_channel();
        let (log_sender, logs) = mpsc::unbounded_channel();
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let run_id = format!(
            "kernel-test-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::SeqCst)
        );
        let config = SupervisorConfig {
            run_id: run_id.clone(),
            subscribers: vec![event_sender],
            logs: Some(log_sender),
            ..config
        };
        // Like `spindle run`: orphans below the services reparent to this
        // process, and the supervisor's reaper must reap them.
        supervisor::become_child_subreaper().unwrap();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(supervisor::run(graph, config, shutdown.clone()));
        let run = tokio::spawn(async move { run.await.unwrap().unwrap() });
        Harness {
            events,
            logs,
            seen: Vec::new(),
            shutdown,
            run,
            run_id,
        }
    }

    /// Waits for the first event (seen or new) that matches; returns its index.
    async fn wait_for(&mut self, what: &str, matches: impl Fn(&Event) -> bool) -> usize {
        if let Some(idx) = self.seen.iter().position(&matches) {
            return idx;
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    let hit = matches(&event);
                    self.seen.push(event);
                    if hit {
                        return self.seen.len() - 1;
                    }
                }
                Ok(None) => panic!("run ended before {what}; events:\n{}", self.transcript()),
                Err(_) => panic!(
                    "no {what} within {DEADLINE:?}; events:\n{}",
                    self.transcript()
                ),
            }
        }
    }

    /// Receives one more event into `seen`.
    async fn next_event(&mut self, what: &str) {
        match tokio::time::timeout(DEADLINE, self.events.recv()).await {
            Ok(Some(event)) => self.seen.push(event),
            Ok(None) => panic!("run ended before {what}; events:\n{}", self.transcript()),
            Err(_) => panic!(
                "no {what} within {DEADLINE:?}; events:\n{}",
                self.transcript()
            ),
        }
    }

    /// Waits until `service` has entered `state` `count` times; returns the
    /// index of the last of them.
    async fn wait_nth(&mut self, service: &str, state: ServiceState, count: usize) -> usize {
        loop {
            let seen = positions(&self.seen, service, state);
            if seen.len() >= count {
                return seen[count - 1];
            }
            self.next_event(&format!("{service} {state} #{count}"))
                .await;
        }
    }

    async fn wait_state(&mut self, service: &str, state: ServiceState) -> usize {
        self.wait_for(&format!("{service} {state}"), |event| {
            event.service == service && event.to == state
        })
        .await
    }

    /// Asks for shutdown and collects the rest of the events.
    async fn stop(self) -> (RunOutcome, Vec<Event>) {
        self.shutdown.cancel();
        self.finish().await
    }

    /// Waits for the run to end by itself.
    async fn finish(mut self) -> (RunOutcome, Vec<Event>) {
        let outcome = tokio::time::timeout(DEADLINE, &mut self.run)
            .await
            .unwrap_or_else(|_| panic!("run did not end; events:\n{}", self.transcript()))
            .unwrap();
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
        (outcome, self.seen)
    }

    fn transcript(&self) -> String {
        transcript(&self.seen)
    }
}

fn transcript(events: &[Event]) -> String {
    events
        .iter()
        .map(|event| {
            format!(
                "  {} {} -> {}: {}\n",
                event.service, event.from, event.to, event.reason
            )
        })
        .collect()
}

fn position(events: &[Event], service: &str, state: ServiceState) -> usize {
    events
        .iter()
        .position(|event| event.service == service && event.to == state)
        .unwrap_or_else(|| panic!("no {service} {state} in:\n{}", transcript(events)))
}

fn positions(events: &[Event], service: &str, state: ServiceState) -> Vec<usize> {
    (0..events.len())
        .filter(|idx| events[*idx].service == service && events[*idx].to == state)
        .collect()
}

/// Live (non-zombie) processes of a run, found through their environment.
fn live_processes(run_id: &str) -> Vec<i32> {
    supervisor::processes_of_run(run_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_start_in_dependency_order_and_stop_in_reverse() {
    let dir = scratch_dir("waves");
    let mut b = depends(
        service("b", "exec sleep 300", &dir),
        "a",
        DependencyCondition::Healthy,
    );
    b.readiness = Some(probe(exec("true"), 20));
    let c = depends(
        service("c", "exec sleep 300", &dir),
        "a",
        DependencyCondition::Started,
    );
    let d = depends(
        depends(
            service("d", "exec sleep 300", &dir),
            "b",
            DependencyCondition::Healthy,
        ),
        "c",
        DependencyCondition::Started,
    );
    // Declared out of order on purpose: order comes from dependencies.
    let mut harness = Harness::start(
        graph(vec![d, c, b, service("a", "exec sleep 300", &dir)]),
        SupervisorConfig::default(),
    );
    harness.wait_state("d", ServiceState::Ready).await;
    let run_id = harness.run_id.clone();
    let (outcome, events) = harness.stop().await;
    assert!(outcome.is_success());

    let a_ready = position(&events, "a", ServiceState::Ready);
    let b_ready = position(&events, "b", ServiceState::Ready);
    let c_running = position(&events, "c", ServiceState::Running);
    assert!(position(&events, "b", ServiceState::Starting) > a_ready);
    assert!(
        position(&events, "c", ServiceState::Starting)
            > position(&events, "a", ServiceState::Running)
    );
    let d_starting = position(&events, "d", ServiceState::Starting);
    assert!(
        d_starting > b_ready && d_starting > c_running,
        "{}",
        transcript(&events)
    );

    let stopped = |service| position(&events, service, ServiceState::Stopped);
    let stopping = |service| position(&events, service, ServiceState::Stopping);
    assert!(
        stopping("b") > stopped("d") && stopping("c") > stopped("d"),
        "{}",
        transcript(&events)
    );
    assert!(
        stopping("a") > stopped("b") && stopping("a") > stopped("c"),
        "{}",
        transcript(&events)
    );
    for service in ["a", "b", "c", "d"] {
        let last = events
            .iter()
            .rev()
            .find(|event| event.service == service)
            .unwrap();
        assert_eq!(last.to, ServiceState::Stopped);
        assert_eq!(last.reason, "stopped (killed by SIGTERM)");
    }
    assert!(live_processes(&run_id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probe_that_fails_then_passes_makes_the_service_ready() {
    let dir = scratch_dir("readiness");
    // The probe fails on its first two runs and passes from the third on.
    let counter = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]";
    let mut web = service("web", "exec sleep 300", &dir);
    web.readiness = Some(probe(exec(counter), 20));
    let app = depends(
        service("app", "exec sleep 300", &dir),
        "web",
        DependencyCondition::Healthy,
    );
    let mut harness = Harness::start(graph(vec![web, app]), SupervisorConfig::default());
    let ready = harness.wait_state("web", ServiceState::Ready).await;
    let checks: u32 = std::fs::read_to_string(dir.join("count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(checks >= 3, "ready after {checks} checks");
    assert_eq!(harness.seen[ready].from, ServiceState::Running);
    assert_eq!(harness.seen[ready].reason, "readiness probe passed");
    // Nothing was started on top of it before it was ready.
    let app_starting = harness.wait_state("app", ServiceState::Starting).await;
    assert!(app_starting > ready);
    let (_, events) = harness.stop().await;
    assert_eq!(positions(&events, "web", ServiceState::Ready).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_failure_after_ready_marks_unhealthy_and_recovers() {
    let dir = scratch_dir("unhealthy");
    let mut web = service("web", "exec sleep 300", &dir);
    // Passes, fails twice (threshold 2 makes it unhealthy), then passes.
    let script = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -eq 2 ] || [ $n -eq 3 ] && exit 1; exit 0";
    let mut readiness = probe(exec(script), 20);
    readiness.failure_threshold = 2;
    web.readiness = Some(readiness);
    let mut harness = Harness::start(graph(vec![web]), SupervisorConfig::default());
    let unhealthy = harness.wait_state("web", ServiceState::Unhealthy).await;
    assert!(
        harness.seen[unhealthy]
            .reason
            .starts_with("readiness probe failed 2 time(s): exec sh -c")
    );
    let again = harness
        .wait_for("web ready again", |event| {
            event.service == "web" && event.from == ServiceState::Unhealthy
        })
        .await;
    assert_eq!(harness.seen[again].to, ServiceState::Ready);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_failure_restarts_with_doubling_backoff_until_the_crash_loop_limit() {
    let dir = scratch_dir("liveness");
    let mut worker = service("worker", "exec sleep 300", &dir);
    worker.liveness = Some(probe(exec("exit 1"), 10));
    worker.restart = RestartSpec {
        policy: RestartPolicy::OnFailure,
        backoff_initial: Duration::from_millis(40),
        backoff_max: Duration::from_millis(200),
        jitter: 0.0,
        max_restarts: 4,
        window: Duration::from_secs(60),
    };
    worker.shutdown.grace = Duration::from_secs(5);
    worker.critical = true;
    let harness = Harness::start(graph(vec![worker]), SupervisorConfig::default());
    let (outcome, events) = harness.finish().await;

    let backoffs: Vec<Duration> = events.iter().filter_map(|event| event.backoff).collect();
    let expected: Vec<Duration> = [40, 80, 160, 200].map(Duration::from_millis).to_vec();
    assert_eq!(backoffs, expected, "{}", transcript(&events));
    // Each restart waited at least its backoff.
    for (backing_off, restarting) in positions(&events, "worker", ServiceState::BackingOff)
        .into_iter()
        .zip(positions(&events, "worker", ServiceState::Restarting))
    {
        let waited = events[restarting]
            .at
            .duration_since(events[backing_off].at)
            .unwrap();
        assert!(
            waited >= events[backing_off].backoff.unwrap(),
            "waited only {waited:?}"
        );
    }
    let stopping = &events[position(&events, "worker", ServiceState::Stopping)];
    assert!(
        stopping
            .reason
            .starts_with("liveness probe failed 1 time(s): exec sh -c exit 1"),
        "{}",
        stopping.reason
    );
    assert!(stopping.reason.ends_with("; restarting"));
    let gave_up = events.last().unwrap();
    assert_eq!(gave_up.to, ServiceState::GaveUp);
    assert!(
        gave_up
            .reason
            .starts_with("crash loop: 4 restarts within 60s reached the limit of 4"),
        "{}",
        gave_up.reason
    );
    assert!(
        gave_up.reason.contains("liveness probe failed"),
        "{}",
        gave_up.reason
    );
    assert_eq!(outcome.critical_failures.len(), 1);
    assert!(!outcome.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_ends_in_gave_up_with_a_clear_reason() {
    let dir = scratch_dir("crashloop");
    let mut crasher = service("crasher", "echo starting; exit 3", &dir);
    crasher.restart.max_restarts = 3;
    crasher.critical = true;
    let bystander = service("bystander", "exec sleep 300", &dir);
    let harness = Harness::start(graph(vec![crasher, bystander]), SupervisorConfig::default());
    let (outcome, events) = harness.finish().await;
    assert_eq!(
        positions(&events, "crasher", ServiceState::Restarting).len(),
        3
    );
    assert_eq!(positions(&events, "crasher", ServiceState::Failed).len(), 4);
    let gave_up = &events[position(&events, "crasher", ServiceState::GaveUp)];
    assert_eq!(
        gave_up.reason,
        "crash loop: 3 restarts within 60s reached the limit of 3 (restart.max); last failure: exited with status 3"
    );
    assert_eq!(gave_up.restarts, 3);
    assert_eq!(
        outcome.critical_failures,
        vec![("crasher".to_owned(), gave_up.reason.clone())]
    );
    // A critical service giving up ends the run: the bystander is stopped.
    let stopped = &events[position(&events, "bystander", ServiceState::Stopping)];
    assert!(stopped.reason.starts_with("shutdown: SIGTERM"));
    assert!(
        position(&events, "bystander", ServiceState::Stopping)
            > position(&events, "crasher", ServiceState::GaveUp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_no_leaves_a_failed_service_failed() {
    let dir = scratch_dir("policy-no");
    let mut once = service("once", "exit 4", &dir);
    once.restart.policy = RestartPolicy::No;
    let harness = Harness::start(graph(vec![once]), SupervisorConfig::default());
    let (outcome, events) = harness.finish().await;
    assert!(outcome.is_success(), "not critical");
    assert_eq!(
        outcome.services,
        vec![("once".to_owned(), ServiceState::Failed)]
    );
    assert_eq!(events.last().unwrap().reason, "exited with status 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependent_is_stopped_and_restarted_after_its_dependency_recovers() {
    let dir = scratch_dir("recover");
    // db fails once, after app has started; its second run stays up.
    let db_script = "if [ -f crashed ]; then exec sleep 300; fi; \
                     while [ ! -f app-started ]; do sleep 0.01; done; touch crashed; exit 1";
    let mut db = service("db", db_script, &dir);
    db.readiness = Some(probe(exec("true"), 20));
    let app = depends(
        service("app", "touch app-started; exec sleep 300", &dir),
        "db",
        DependencyCondition::Healthy,
    );
    let web = depends(
        service("web", "exec sleep 300", &dir),
        "app",
        DependencyCondition::Started,
    );
    let mut harness = Harness::start(graph(vec![db, app, web]), SupervisorConfig::default());
    harness.wait_state("db", ServiceState::Failed).await;
    let second_ready = harness.wait_nth("app", ServiceState::Running, 2).await;
    // Wait until web is back too.
    harness.wait_nth("web", ServiceState::Running, 2).await;
    let (_, events) = harness.stop().await;
    let app_runs = positions(&events, "app", ServiceState::Running);
    assert_eq!(app_runs.len(), 2, "{}", transcript(&events));
    assert_eq!(app_runs[1], second_ready);
    let db_failed = position(&events, "db", ServiceState::Failed);
    let app_stopping = &events[position(&events, "app", ServiceState::Stopping)];
    assert_eq!(
        app_stopping.reason,
        "dependency db failed: exited with status 1"
    );
    assert!(position(&events, "app", ServiceState::Stopping) > db_failed);
    let app_pending = &events[position(&events, "app", ServiceState::Pending)];
    assert_eq!(app_pending.reason, "waiting for db to recover");
    let db_ready_again = positions(&events, "db", ServiceState::Ready)[1];
    assert!(app_runs[1] > db_ready_again, "{}", transcript(&events));
    // web, bound to app, went down and came back with it.
    let web_runs = positions(&events, "web", ServiceState::Running);
    assert_eq!(web_runs.len(), 2, "{}", transcript(&events));
    assert!(web_runs[1] > app_runs[1]);
    // The dependents' restarts are not failures of their own.
    assert_eq!(
        events
            .iter()
            .filter(|event| event.service == "app")
            .map(|event| event.restarts)
            .max(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_dependency_lets_its_dependent_start() {
    let dir = scratch_dir("completed");
    let mut migrate = service("migrate", "touch migrated", &dir);
    migrate.restart.policy = RestartPolicy::OnFailure;
    let app = depends(
        service("app", "test -f migrated && exec sleep 300", &dir),
        "migrate",
        DependencyCondition::CompletedSuccessfully,
    );
    let mut harness = Harness::start(graph(vec![migrate, app]), SupervisorConfig::default());
    harness.wait_state("app", ServiceState::Ready).await;
    let (_, events) = harness.stop().await;
    let exited = &events[position(&events, "migrate", ServiceState::Exited)];
    assert_eq!(exited.reason, "completed (exited with status 0)");
    assert!(
        position(&events, "app", ServiceState::Starting)
            > position(&events, "migrate", ServiceState::Exited)
    );
    assert_eq!(
        events[position(&events, "app", ServiceState::Starting)].reason,
        "dependencies met: migrate completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_process_behind_not_even_escaped_grandchildren() {
    let dir = scratch_dir("orphans");
    // A grandchild in the group, one that left the group with setsid, and
    // a leader that ignores SIGTERM so the grace period ends in SIGKILL.
    let script = "trap '' TERM; touch trapped; sleep 300 & setsid sleep 300 & echo spawned; wait";
    let mut tree = service("tree", script, &dir);
    tree.readiness = Some(probe(exec("test -f trapped"), 10));
    tree.shutdown.grace = Duration::from_millis(300);
    let mut harness = Harness::start(graph(vec![tree]), SupervisorConfig::default());
    harness.wait_state("tree", ServiceState::Ready).await;
    // The grandchildren exist once the script has printed.
    let line = tokio::time::timeout(DEADLINE, harness.logs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.line, "spawned");
    let run_id = harness.run_id.clone();
    // A child between fork and exec may briefly hide its environment: poll
    // /proc (nothing to wait on) until all three show, within the deadline.
    let polling_since = Instant::now();
    while live_processes(&run_id).len() < 3 && polling_since.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        live_processes(&run_id).len() >= 3,
        "{:?}",
        live_processes(&run_id)
    );
    let stopping_at = Instant::now();
    let (outcome, events) = harness.stop().await;
    assert!(stopping_at.elapsed() >= Duration::from_millis(300));
    let stopped = events.last().unwrap();
    assert_eq!(stopped.reason, "stopped (killed by SIGKILL)");
    assert!(
        outcome.swept >= 1,
        "the setsid grandchild is found by the sweep"
    );
    assert_eq!(live_processes(&run_id), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_goes_to_the_log_sink_and_the_log_file() {
    let dir = scratch_dir("logs");
    let logs_dir = dir.join("logs");
    let chatty = service(
        "chatty",
        "echo to-stdout; echo to-stderr >&2; exec sleep 300",
        &dir,
    );
    let mut harness = Harness::start(
        graph(vec![chatty]),
        SupervisorConfig {
            log_dir: Some(logs_dir.clone()),
            ..SupervisorConfig::default()
        },
    );
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let line = tokio::time::timeout(DEADLINE, harness.logs.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line.service, "chatty");
        lines.push(line.line);
    }
    lines.sort();
    assert_eq!(lines, ["to-stderr", "to-stdout"]);
    harness.stop().await;
    let file = std::fs::read_to_string(logs_dir.join("chatty.log")).unwrap();
    assert!(file.starts_with("--- spindle: started pid "), "{file}");
    assert!(
        file.contains("to-stdout\n") && file.contains("to-stderr\n"),
        "{file}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_probes_check_real_listeners() {
    let dir = scratch_dir("net");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Answers 503 to the first request and 200 afterwards.
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut answered = 0;
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let read = stream.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..read]).to_string();
            if !request.starts_with("GET /health HTTP/1.1\r\n") {
                continue; // the tcp probe only connects
            }
            let status = if answered == 0 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            answered += 1;
            let response =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    let mut web = service("web", "exec sleep 300", &dir);
    web.readiness = Some(probe(
        ProbeCheck::Http {
            url: format!("http://{address}/health"),
        },
        20,
    ));
    let mut tcp = service("tcp", "exec sleep 300", &dir);
    tcp.readiness = Some(probe(
        ProbeCheck::Tcp {
            address: address.to_string(),
        },
        20,
    ));
    let mut closed = service("closed", "exec sleep 300", &dir);
    // A port nobody listens on: bind one, note it, close it.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    closed.readiness = Some(probe(
        ProbeCheck::Tcp {
            address: unused.to_string(),
        },
        20,
    ));
    let mut harness = Harness::start(graph(vec![web, tcp, closed]), SupervisorConfig::default());
    harness.wait_state("web", ServiceState::Ready).await;
    harness.wait_state("tcp", ServiceState::Ready).await;
    let (_, events) = harness.stop().await;
    assert!(positions(&events, "closed", ServiceState::Ready).is_empty());
}

/// A Lua probe seam in plain Rust: fails twice, then passes.
struct CountingLua {
    calls: AtomicU32,
}

impl LuaProbes for CountingLua {
    fn call_check(
        &self,
        function: FunctionId,
        _timeout: Duration,
        reply: Box<dyn FnOnce(Result<bool, String>) + Send>,
    ) {
        assert_eq!(function, FunctionId(7));
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        // Answer from another thread, as the script host does.
        std::thread::spawn(move || match call {
            0 => reply(Err("attempt to index a nil value".to_owned())),
            1 => reply(Ok(false)),
            _ => reply(Ok(true)),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_probes_go_through_the_seam() {
    let dir = scratch_dir("lua");
    let mut app = service("app", "exec sleep 300", &dir);
    app.readiness = Some(probe(
        ProbeCheck::Lua {
            function: FunctionId(7),
        },
        10,
    ));
    let lua = Arc::new(CountingLua {
        calls: AtomicU32::new(0),
    });
    let mut harness = Harness::start(
        graph(vec![app]),
        SupervisorConfig {
            lua_probes: Some(lua.clone()),
            ..SupervisorConfig::default()
        },
    );
    harness.wait_state("app", ServiceState::Ready).await;
    assert!(lua.calls.load(Ordering::SeqCst) >= 3);
    harness.stop().await;

    // Without a script host, a Lua probe fails and says why.
    let mut app = service("app", "exec sleep 300", &dir);
    let mut liveness = probe(
        ProbeCheck::Lua {
            function: FunctionId(0),
        },
        10,
    );
    liveness.failure_threshold = 1;
    app.liveness = Some(liveness);
    app.restart.policy = RestartPolicy::No;
    let mut harness = Harness::start(graph(vec![app]), SupervisorConfig::default());
    let stopping = harness.wait_state("app", ServiceState::Stopping).await;
    assert!(
        harness.seen[stopping]
            .reason
            .ends_with("no Lua script host to run Lua probes; restarting"),
        "{}",
        harness.seen[stopping].reason
    );
    harness.stop().await;
}

fn embedding(name: &str) -> ServiceSpec {
    ServiceSpec {
        kind: ServiceKind::Embedding(EmbeddingSpec {
            model: "all-MiniLM-L6-v2".to_owned(),
            providers: vec!["cpu".to_owned()],
            max_batch_tokens: 8192,
            intra_threads: None,
            sessions: None,
            remote: None,
        }),
        ..service(name, "unused", Path::new("/"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_without_a_runtime_fails_with_a_reason_and_so_do_its_dependents() {
    let dir = scratch_dir("no-runtime");
    let app = depends(
        service("app", "exec sleep 300", &dir),
        "embedder",
        DependencyCondition::Healthy,
    );
    let harness = Harness::start(
        graph(vec![embedding("embedder"), app]),
        SupervisorConfig::default(),
    );
    let (outcome, events) = harness.finish().await;
    assert!(outcome.is_success());
    let failed = &events[position(&events, "embedder", ServiceState::Failed)];
    assert_eq!(
        failed.reason,
        "cannot run `embedding` services: this supervisor was started without an in-process runtime for them"
    );
    let app_failed = &events[position(&events, "app", ServiceState::Failed)];
    assert_eq!(
        app_failed.reason,
        "dependency embedder is failed and will not become healthy"
    );
}

/// An in-process runtime in plain Rust: the service runs until stopped.
struct FakeRuntime;

struct FakeService {
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InProcessRuntime for FakeRuntime {
    fn start(
        &self,
        spec: &ServiceSpec,
    ) -> BoxFuture<'static, Result<Box<dyn InProcessService>, String>> {
        let fails = spec.name == "broken";
        Box::pin(async move {
            if fails {
                return Err("model file not found".to_owned());
            }
            let (stop, stopped) = tokio::sync::oneshot::channel();
            Ok(Box::new(FakeService {
                stopped: Some(stopped),
                stop: Some(stop),
            }) as Box<dyn InProcessService>)
        })
    }
}

impl InProcessService for FakeService {
    fn finished(&mut self) -> BoxFuture<'static, Result<(), String>> {
        let stopped = self.stopped.take().unwrap();
        Box::pin(async move {
            let _ = stopped.await;
            Ok(())
        })
    }

    fn stop(mut self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ()> {
        let _ = self.stop.take().unwrap().send(());
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_services_run_through_the_seam() {
    let dir = scratch_dir("in-process");
    let app = depends(
        service("app", "exec sleep 300", &dir),
        "embedder",
        DependencyCondition::Healthy,
    );
    let mut broken = embedding("broken");
    broken.restart.max_restarts = 1;
    let mut harness = Harness::start(
        graph(vec![embedding("embedder"), app, broken]),
        SupervisorConfig {
            in_process: Some(Arc::new(FakeRuntime)),
            ..SupervisorConfig::default()
        },
    );
    harness.wait_state("app", ServiceState::Ready).await;
    harness.wait_state("broken", ServiceState::GaveUp).await;
    let (_, events) = harness.stop().await;
    assert_eq!(
        events[position(&events, "embedder", ServiceState::Running)].reason,
        "started in process"
    );
    assert!(
        position(&events, "embedder", ServiceState::Stopping)
            > position(&events, "app", ServiceState::Stopped)
    );
    assert_eq!(
        events[position(&events, "broken", ServiceState::Failed)].reason,
        "could not start: model file not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_fails_with_the_os_error() {
    let dir = scratch_dir("enoent");
    let mut missing = service("missing", "", &dir);
    missing.kind = ServiceKind::Process(ProcessSpec {
        command: vec!["/nonexistent/spindle-test-binary".to_owned()],
        cwd: dir.clone(),
        env: Vec::new(),
    });
    missing.restart.policy = RestartPolicy::No;
    let harness = Harness::start(graph(vec![missing]), SupervisorConfig::default());
    let (_, events) = harness.finish().await;
    let failed = events.last().unwrap();
    assert_eq!(failed.to, ServiceState::Failed);
    assert!(
        failed.reason.starts_with(
            "could not start \"/nonexistent/spindle-test-binary\": No such file or directory"
        ),
        "{}",
        failed.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_now_skips_the_rest_of_the_grace_period() {
    let dir = scratch_dir("kill-now");
    // Ready once the trap is set, so SIGTERM cannot arrive before it.
    let mut stubborn = service(
        "stubborn",
        "trap '' TERM; touch trapped; sleep 300 & wait",
        &dir,
    );
    stubborn.readiness = Some(probe(exec("test -f trapped"), 10));
    stubborn.shutdown.grace = Duration::from_secs(300);
    let kill_now = CancellationToken::new();
    let mut harness = Harness::start(
        graph(vec![stubborn]),
        SupervisorConfig {
            kill_now: kill_now.clone(),
            ..SupervisorConfig::default()
        },
    );
    harness.wait_state("stubborn", ServiceState::Ready).await;
    harness.shutdown.cancel();
    harness.wait_state("stubborn", ServiceState::Stopping).await;
    kill_now.cancel();
    let run_id = harness.run_id.clone();
    let (outcome, events) = harness.finish().await;
    assert!(outcome.is_success());
    assert_eq!(events.last().unwrap().reason, "stopped (killed by SIGKILL)");
    assert_eq!(live_processes(&run_id), Vec::<i32>::new());
}

/// Polls `/proc` until `pid` is gone (a SIGKILLed process leaves nothing
/// to wait on but the kernel); whether it went within the deadline.
fn wait_until_pid_is_gone(pid: i32) -> bool {
    let started = Instant::now();
    while supervisor::process_state(pid).is_some() {
        if started.elapsed() > DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_hangs_past_its_timeout_fails_and_its_process_is_killed() {
    let dir = scratch_dir("probe-timeout");
    let mut worker = service("worker", "exec sleep 300", &dir);
    // The probe notes its pid (sh's, which `exec` keeps) and hangs.
    let mut liveness = probe(exec("echo $$ >> probe-pids; exec sleep 299"), 20);
    liveness.timeout = Duration::from_secs(1);
    worker.liveness = Some(liveness);
    worker.restart.policy = RestartPolicy::No;
    let mut harness = Harness::start(graph(vec![worker]), SupervisorConfig::default());
    let stopping = harness.wait_state("worker", ServiceState::Stopping).await;
    assert_eq!(
        harness.seen[stopping].reason,
        "liveness probe failed 1 time(s): exec sh -c echo $$ >> probe-pids; exec sleep 299: timed out after 1s; restarting"
    );
    let failed = harness.wait_state("worker", ServiceState::Failed).await;
    assert!(
        harness.seen[failed].reason.contains("timed out after 1s"),
        "{}",
        harness.seen[failed].reason
    );
    let pids = std::fs::read_to_string(dir.join("probe-pids")).unwrap();
    let probe_pid: i32 = pids.lines().next().unwrap().parse().unwrap();
    // Killed with its group when the timeout struck, and reaped: not even a
    // zombie is left.
    assert!(
        wait_until_pid_is_gone(probe_pid),
        "probe {probe_pid} is still there: {:?}",
        supervisor::process_state(probe_pid)
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_always_restarts_a_service_that_exits_0() {
    let dir = scratch_dir("always");
    let mut job = service("job", "exit 0", &dir);
    job.restart.policy = RestartPolicy::Always;
    job.restart.max_restarts = 2;
    let harness = Harness::start(graph(vec![job]), SupervisorConfig::default());
    let (outcome, events) = harness.finish().await;
    assert!(outcome.is_success(), "not critical");
    assert_eq!(
        positions(&events, "job", ServiceState::Exited).len(),
        3,
        "{}",
        transcript(&events)
    );
    assert_eq!(positions(&events, "job", ServiceState::Restarting).len(), 2);
    assert!(positions(&events, "job", ServiceState::Failed).is_empty());
    let backing_off: Vec<&str> = positions(&events, "job", ServiceState::BackingOff)
        .into_iter()
        .map(|idx| events[idx].reason.as_str())
        .collect();
    assert_eq!(
        backing_off,
        [
            "restart #1 in 10ms after: exited with status 0; restart policy is always",
            "restart #2 in 10ms after: exited with status 0; restart policy is always"
        ]
    );
    assert_eq!(
        events.last().unwrap().reason,
        "crash loop: 2 restarts within 60s reached the limit of 2 (restart.max); last failure: exited with status 0; restart policy is always"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backoff_streak_resets_after_the_service_stays_up_for_the_window() {
    let dir = scratch_dir("backoff-reset");
    // Runs 1-3 fail at once; run 4 stays up 1.1 s (longer than the 1 s
    // window) before failing; run 5 fails at once; run 6 stays.
    let script = "n=$(cat runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > runs; \
                  case $n in 4) sleep 1.1; exit 1;; 6) exec sleep 300;; *) exit 1;; esac";
    let mut job = service("job", script, &dir);
    job.restart = RestartSpec {
        policy: RestartPolicy::OnFailure,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_secs(1),
        jitter: 0.0,
        max_restarts: 10,
        window: Duration::from_secs(1),
    };
    let mut harness = Harness::start(graph(vec![job]), SupervisorConfig::default());
    harness.wait_nth("job", ServiceState::Running, 6).await;
    let (_, events) = harness.stop().await;
    let backoffs: Vec<u128> = events
        .iter()
        .filter_map(|event| event.backoff.map(|backoff| backoff.as_millis()))
        .collect();
    // Doubling while failures come within the window; from the start again
    // after run 4 stayed up for longer than it.
    assert_eq!(backoffs, [10, 20, 40, 10, 20], "{}", transcript(&events));
    let failures = positions(&events, "job", ServiceState::Failed);
    let stayed_up = events[failures[3]]
        .at
        .duration_since(events[failures[2]].at)
        .unwrap();
    assert!(stayed_up > Duration::from_secs(1), "{stayed_up:?}");
    assert_eq!(
        events[positions(&events, "job", ServiceState::BackingOff)[3]].reason,
        "restart #4 in 10ms after: exited with status 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_never_takes_a_child_that_someone_else_waits_for() {
    let dir = scratch_dir("not-taken");
    // Orphans keep exiting below this process (a subreaper, see Harness)
    // while other code here spawns children and waits for them by pid.
    let spawner = service(
        "spawner",
        "while true; do (sleep 0.01 &); sleep 0.02; done",
        &dir,
    );
    let mut harness = Harness::start(graph(vec![spawner]), SupervisorConfig::default());
    harness.wait_state("spawner", ServiceState::Ready).await;
    let reaped_before = supervisor::orphans_reaped();
    for round in 0..30 {
        let code = round % 7 + 1;
        // In this process's group, as `std::process` and `system()` spawn.
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("exit {code}")])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code));
        // In a group of its own.
        let status = std::process::Command::new("sh")
            .args(["-c", "sleep 0.01; exit 3"])
            .process_group(0)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        // Through tokio::process, which reaps by pid on its own.
        let status = tokio::process::Command::new("sh")
            .args(["-c", "exit 5"])
            .status()
            .await
            .unwrap();
        assert_eq!(status.code(), Some(5));
    }
    // Meanwhile the orphans were reaped (a counter, nothing to wait on).
    let polling_since = Instant::now();
    while supervisor::orphans_reaped() < reaped_before + 10 && polling_since.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(supervisor::orphans_reaped() >= reaped_before + 10);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_entering_its_directory_leaves_ours_alone() {
    // Children share this process's memory, descriptors and directory until
    // they unshare them; their chdir must not move us.
    let ours = std::env::current_dir().unwrap();
    let dir = scratch_dir("directory");
    let mut web = service("web", "pwd > where; exec sleep 300", &dir);
    web.readiness = Some(probe(exec("test -s where"), 10));
    let mut harness = Harness::start(graph(vec![web]), SupervisorConfig::default());
    harness.wait_state("web", ServiceState::Ready).await;
    assert_eq!(std::env::current_dir().unwrap(), ours);
    let recorded = std::fs::read_to_string(dir.join("where")).unwrap();
    assert_eq!(
        Path::new(recorded.trim()).canonicalize().unwrap(),
        dir.canonicalize().unwrap()
    );
    harness.stop().await;
}

#[test]
fn the_guard_kills_registered_groups_when_its_input_ends() {
    // A process group of its own, as the supervisor would register it.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "sleep 300 & exec sleep 300"])
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    let input = format!("run guard-test-{pgid}\n+{pgid}\n+999999\n-999999\n");
    let killed = supervisor::run_guard(std::io::Cursor::new(input));
    assert_eq!(killed, 1);
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
}
