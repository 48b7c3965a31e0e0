//! End-to-end tests of `spindle run`: the real binary, real Lua scripts,
//! real process trees, observed through `--events jsonl` and `/proc`.
//! Signals are sent to the binary the way a user or an init system would.
//! Children's pipes are read with a bound (`support`), so a wedged run fails
//! its test instead of hanging CI.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const DEADLINE: Duration = Duration::from_secs(30);

fn scratch_dir(test: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("spindle-run-{test}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One event line of `--events jsonl`.
#[derive(Debug, Clone)]
struct Event {
    service: String,
    from: String,
    to: String,
    reason: String,
    pid: Option<i32>,
}

fn parse_event(line: &str) -> Event {
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
    assert!(
        value["ts"].as_f64().unwrap() > 1.7e9,
        "ts is Unix seconds: {line}"
    );
    let text = |key: &str| {
        value[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .to_owned()
    };
    Event {
        service: text("service"),
        from: text("from"),
        to: text("to"),
        reason: text("reason"),
        pid: value["pid"].as_i64().map(|pid| pid as i32),
    }
}

/// `spindle run SCRIPT --events jsonl` and its event stream.
struct Run {
    /// `None` once [`Run::finish`] has waited for it.
    child: Option<Child>,
    pid: i32,
    lines: support::LineReader,
    events: Vec<Event>,
}

impl Drop for Run {
    /// A test that failed half-way leaves no `spindle` behind (its guard
    /// process then stops the services).
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Run {
    fn start(dir: &Path, script: &str) -> Run {
        let file = dir.join("graph.lua");
        std::fs::write(&file, script).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spindle"))
            .arg("run")
            .arg(&file)
            .args(["--events", "jsonl", "--data-dir"])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = support::LineReader::new(child.stdout.take().unwrap(), "spindle's events");
        Run {
            pid: child.id() as i32,
            child: Some(child),
            lines,
            events: Vec::new(),
        }
    }

    /// Reads events until one matches. A run that falls silent fails at the
    /// reader's guard; the deadline here bounds a run that keeps talking.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            match self.lines.next_line() {
                Some(line) => {
                    let event = parse_event(&line);
                    self.events.push(event.clone());
                    if matches(&event) {
                        return event;
                    }
                }
                _ => panic!("spindle ended before {what}: {:#?}", self.events),
            }
        }
        panic!("no {what} within {DEADLINE:?}: {:#?}", self.events)
    }

    fn wait_state(&mut self, service: &str, state: &str) -> Event {
        self.wait_for(&format!("{service} {state}"), |event| {
            event.service == service && event.to == state
        })
    }

    /// The run id, read from a child's environment.
    fn run_id(&self) -> String {
        let pid = self
            .events
            .iter()
            .find_map(|event| event.pid)
            .expect("a service with a pid");
        environment_value(pid, "SPINDLE_RUN_ID").expect("SPINDLE_RUN_ID in the child's environment")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory effects.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }

    /// Reads the remaining events and waits for the exit status.
    fn finish(mut self) -> (Option<i32>, Vec<Event>) {
        while let Some(line) = self.lines.next_line() {
            self.events.push(parse_event(&line));
        }
        let child = self.child.take().expect("finish is called once");
        let status = support::wait(child, support::GUARD);
        (status.code(), std::mem::take(&mut self.events))
    }
}

fn environment_value(pid: i32, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    environ
        .split(|byte| *byte == 0)
        .filter_map(|var| std::str::from_utf8(var).ok())
        .find_map(|var| var.strip_prefix(&prefix).map(str::to_owned))
}

/// Processes whose environment carries the run id and that are not zombies.
fn live_processes_of_run(run_id: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if environment_value(pid, "SPINDLE_RUN_ID").as_deref() != Some(run_id) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let state = stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .chars()
            .next();
        if state != Some('Z') {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Polls `/proc` until the run has no live process or the deadline passes
/// (after a SIGKILL there is nothing to wait on but the kernel).
fn wait_until_gone(run_id: &str) -> Vec<(i32, String)> {
    let started = Instant::now();
    loop {
        let alive = live_processes_of_run(run_id);
        if alive.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `/proc` until the run shows `count` live processes or the deadline
/// passes (a child between fork and exec briefly hides its environment).
fn wait_for_processes(run_id: &str, count: usize) -> Vec<(i32, String)> {
    let started = Instant::now();
    loop {
        let alive = live_processes_of_run(run_id);
        if alive.len() >= count || started.elapsed() > DEADLINE {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn position(events: &[Event], service: &str, state: &str) -> usize {
    events
        .iter()
        .position(|event| event.service == service && event.to == state)
        .unwrap_or_else(|| panic!("no {service} {state} in {events:#?}"))
}

/// A three-wave graph whose processes leave grandchildren: one in the
/// service's process group, one that escaped it with setsid.
const TREE: &str = r#"
local s = require("spindle")

s.service "db" {
  command = { "sh", "-c", "echo db up; exec sleep 300" },
  ready = s.exec_probe { command = { "true" }, period = "20ms" },
  live = s.lua_probe { check = function() return true end, period = "20ms" },
}

-- Ready once the shell has forked its grandchild (files land in the
-- script's folder, the default working directory).
s.service "worker" {
  command = "sleep 300 & touch worker-forked; sleep 300",
  depends_on = { db = "healthy" },
  ready = s.exec_probe { command = { "test", "-f", "worker-forked" }, period = "20ms" },
}

s.service "web" {
  command = "setsid sleep 300 & touch web-forked; exec sleep 300",
  depends_on = { "worker" },
  ready = s.exec_probe { command = { "test", "-f", "web-forked" }, period = "20ms" },
}
"#;

#[test]
fn sigterm_stops_in_reverse_order_exits_0_and_leaves_no_process() {
    let dir = scratch_dir("sigterm");
    let mut run = Run::start(&dir, TREE);
    let ready = run.wait_state("web", "ready");
    assert_eq!(ready.from, "running");
    let run_id = run.run_id();
    // db's sleep, worker's shell and its background sleep, web's leader and
    // the sleep that left web's process group.
    let alive = wait_for_processes(&run_id, 5);
    assert!(alive.len() >= 5, "{alive:?}");
    run.signal(libc::SIGTERM);
    let (code, events) = run.finish();
    assert_eq!(code, Some(0), "{events:#?}");
    let stopped = |service| position(&events, service, "stopped");
    let stopping = |service| position(&events, service, "stopping");
    assert!(stopped("web") < stopping("worker"), "{events:#?}");
    assert!(stopped("worker") < stopping("db"), "{events:#?}");
    assert!(position(&events, "worker", "starting") > position(&events, "db", "ready"));
    assert!(position(&events, "web", "starting") > position(&events, "worker", "running"));
    assert_eq!(
        events[stopping("db")].reason,
        "shutdown: SIGTERM to the process group, SIGKILL after 5s"
    );
    assert_eq!(live_processes_of_run(&run_id), Vec::new());
    let log = std::fs::read_to_string(dir.join("data/logs/db.log")).unwrap();
    assert!(log.contains("\ndb up\n"), "{log}");
}

#[test]
fn sigkill_of_spindle_leaves_no_process_behind() {
    let dir = scratch_dir("sigkill");
    let mut run = Run::start(&dir, TREE);
    run.wait_state("web", "ready");
    let run_id = run.run_id();
    // db's sleep, worker's shell and its background sleep, web's leader and
    // the sleep that left web's process group.
    let alive = wait_for_processes(&run_id, 5);
    assert!(alive.len() >= 5, "{alive:?}");
    run.signal(libc::SIGKILL);
    let (code, _) = run.finish();
    assert_eq!(code, None, "killed by a signal");
    assert_eq!(wait_until_gone(&run_id), Vec::new());
}

#[test]
fn a_critical_service_that_gives_up_ends_the_run_with_status_3() {
    let dir = scratch_dir("gave-up");
    let script = r#"
local s = require("spindle")
s.service "flaky" {
  command = "exit 7",
  restart = { policy = "on-failure", backoff = "10ms..40ms", jitter = 0, max = 2, window = "60s" },
  critical = true,
}
s.service "steady" { command = { "sleep", "300" } }
"#;
    let run = Run::start(&dir, script);
    let (code, events) = run.finish();
    assert_eq!(code, Some(3), "{events:#?}");
    let gave_up = &events[position(&events, "flaky", "gave-up")];
    assert_eq!(
        gave_up.reason,
        "crash loop: 2 restarts within 60s reached the limit of 2 (restart.max); last failure: exited with status 7"
    );
    let backoffs: Vec<&str> = events
        .iter()
        .filter(|event| event.to == "backing-off")
        .map(|event| event.reason.as_str())
        .collect();
    assert_eq!(
        backoffs,
        [
            "restart #1 in 10ms after: exited with status 7",
            "restart #2 in 20ms after: exited with status 7"
        ]
    );
    assert_eq!(events.last().unwrap().service, "steady");
    assert_eq!(events.last().unwrap().to, "stopped");
}

#[test]
fn a_script_with_errors_prints_diagnostics_and_exits_1() {
    let dir = scratch_dir("diagnostics");
    let file = dir.join("broken.lua");
    std::fs::write(
        &file,
        "local s = require(\"spindle\")\ns.service \"app\" {\n  command = { \"true\" },\n  depends_on = { \"nowhere\" },\n}\n",
    )
    .unwrap();
    let output = support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle"))
            .arg("run")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.join("data")),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let prefix = format!("{}:", file.display());
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with(&prefix) && line.contains(": error: ")),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn without_a_terminal_events_are_plain_lines_and_output_is_prefixed() {
    let dir = scratch_dir("plain");
    let file = dir.join("graph.lua");
    std::fs::write(
        &file,
        "local s = require(\"spindle\")\ns.service \"job\" { command = \"echo hello from job\", restart = { policy = \"no\" } }\n",
    )
    .unwrap();
    let output = support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle"))
            .arg("run")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.join("data")),
    );
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().any(|line| line == "job | hello from job"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|line| line.ends_with(" job: ready -> exited: completed (exited with status 0)")),
        "{stdout}"
    );
}

#[test]
fn help_shows_an_example() {
    let output =
        support::output(Command::new(env!("CARGO_BIN_EXE_spindle")).args(["run", "--help"]));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("spindle run examples/quickstart.lua"),
        "{help}"
    );
    assert!(help.contains("--events <FORMAT>"), "{help}");
}

#[test]
fn a_second_sigterm_skips_the_grace_period() {
    let dir = scratch_dir("second-signal");
    let script = r#"
local s = require("spindle")
s.service "stubborn" {
  command = "trap '' TERM; touch trapped; sleep 300 & wait",
  ready = s.exec_probe { command = { "test", "-f", "trapped" }, period = "10ms" },
  stop = { signal = "SIGTERM", grace = "300s" },
}
"#;
    let mut run = Run::start(&dir, script);
    run.wait_state("stubborn", "ready");
    let run_id = run.run_id();
    run.signal(libc::SIGTERM);
    run.wait_state("stubborn", "stopping");
    run.signal(libc::SIGTERM);
    let (code, events) = run.finish();
    assert_eq!(code, Some(0), "{events:#?}");
    assert_eq!(events.last().unwrap().reason, "stopped (killed by SIGKILL)");
    assert_eq!(live_processes_of_run(&run_id), Vec::new());
}

/// The parent pid and one-letter state of `pid`, from `/proc/PID/stat`.
fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((parent, state))
}

/// Zombie children of `parent`.
fn zombie_children(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent_and_state(*pid) == Some((parent, 'Z')))
        .collect()
}

/// Polls `/proc` until `done` holds or the deadline passes (processes
/// exiting and being reaped leave nothing to wait on); whether it held.
fn poll_until(mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn orphans_of_a_service_are_reaped_while_it_runs() {
    let dir = scratch_dir("orphans");
    // One orphan that lives for two seconds, noted in long-orphan, and ten
    // a second that live 50 ms: each is orphaned when its subshell exits,
    // and spindle, a child subreaper, inherits it.
    let script = r#"
local s = require("spindle")
s.service "spawner" {
  command = "(sleep 2 & echo $! > long-orphan); while true; do (sleep 0.05 & echo $! >> orphans); sleep 0.1; done",
  ready = s.exec_probe { command = { "test", "-s", "long-orphan" }, period = "20ms" },
}
"#;
    let mut run = Run::start(&dir, script);
    run.wait_state("spawner", "ready");
    let spindle = run.pid;
    let long_orphan = read_pid(&dir.join("long-orphan"));
    assert!(
        poll_until(|| parent_and_state(long_orphan).is_none_or(|(parent, _)| parent == spindle)),
        "{long_orphan} was not adopted: {:?}",
        parent_and_state(long_orphan)
    );
    // Sample spindle's zombie children until the long orphan has exited and
    // is gone (reaped, not a zombie).
    let mut zombies_seen = std::collections::BTreeSet::new();
    let mut samples = 0;
    let gone = poll_until(|| {
        zombies_seen.extend(zombie_children(spindle));
        samples += 1;
        parent_and_state(long_orphan).is_none()
    });
    assert!(
        gone,
        "the long orphan stayed: {:?}; zombies under spindle: {:?}",
        parent_and_state(long_orphan),
        zombie_children(spindle)
    );
    // A zombie caught between its exit and its reaping is gone by the
    // next look; none stays.
    for zombie in &zombies_seen {
        assert!(
            poll_until(|| parent_and_state(*zombie) != Some((spindle, 'Z'))),
            "zombie {zombie} stayed under spindle ({} zombies now)",
            zombie_children(spindle).len()
        );
    }
    let orphans = std::fs::read_to_string(dir.join("orphans")).unwrap();
    assert!(orphans.lines().count() >= 5, "{orphans}");
    assert!(samples >= 1);
    run.signal(libc::SIGTERM);
    let (code, events) = run.finish();
    assert_eq!(code, Some(0), "{events:#?}");
}

#[test]
fn an_orphan_that_ignores_sigterm_and_left_its_group_is_killed_at_shutdown() {
    let dir = scratch_dir("stubborn-orphan");
    // The orphan leaves the service's group and session (setsid), ignores
    // SIGTERM, notes its pid and sleeps; its parent subshell exits at once.
    let script = r#"
local s = require("spindle")
s.service "daemonizer" {
  command = "(setsid sh -c 'trap \"\" TERM; echo $$ > orphan.pid; exec sleep 300' &); exec sleep 300",
  ready = s.exec_probe { command = { "test", "-s", "orphan.pid" }, period = "20ms" },
}
"#;
    let mut run = Run::start(&dir, script);
    run.wait_state("daemonizer", "ready");
    let spindle = run.pid;
    let run_id = run.run_id();
    let orphan = read_pid(&dir.join("orphan.pid"));
    assert!(
        poll_until(|| parent_and_state(orphan).is_some_and(|(parent, _)| parent == spindle)),
        "{orphan} was not adopted: {:?}",
        parent_and_state(orphan)
    );
    run.signal(libc::SIGTERM);
    let (code, events) = run.finish();
    assert_eq!(code, Some(0), "{events:#?}");
    assert!(
        poll_until(|| parent_and_state(orphan).is_none()),
        "{orphan} survived: {:?}",
        parent_and_state(orphan)
    );
    assert_eq!(live_processes_of_run(&run_id), Vec::new());
}

/// Open descriptors and threads of `pid`.
fn descriptors_and_threads(pid: i32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).unwrap().count();
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

fn descriptor_targets(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|entry| {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            format!("{:?} -> {}", entry.file_name(), target.display())
        })
        .collect()
}

#[test]
fn descriptors_and_threads_stay_flat_while_a_service_restarts() {
    let dir = scratch_dir("flat");
    // Run n prints a line, waits until the test creates go-n, and fails; an
    // exec probe runs every 20 ms meanwhile.
    let script = r#"
local s = require("spindle")
s.service "flaky" {
  command = "n=$(cat runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > runs; echo run $n; while [ ! -f go-$n ]; do sleep 0.01; done; exit 1",
  ready = s.exec_probe { command = { "true" }, period = "20ms" },
  restart = { policy = "on-failure", backoff = "1ms..1ms", jitter = 0, max = 1000, window = "60s" },
}
"#;
    const WARM_UP: usize = 3;
    const RESTARTS: usize = 30;
    let mut run = Run::start(&dir, script);
    let spindle = run.pid;
    let mut baseline = (0, 0);
    for run_idx in 1..=WARM_UP + RESTARTS {
        let running = run.wait_for(&format!("flaky running #{run_idx}"), |event| {
            event.service == "flaky" && event.to == "running"
        });
        assert!(running.pid.is_some());
        if run_idx == WARM_UP {
            baseline = descriptors_and_threads(spindle);
        }
        std::fs::write(dir.join(format!("go-{run_idx}")), "").unwrap();
    }
    // The last run waits for its go file; whatever earlier runs held
    // (pipes, the log file, probe processes) is released by now, or is
    // about to be: poll until the counts are back to the baseline.
    let flat = poll_until(|| {
        let (descriptors, threads) = descriptors_and_threads(spindle);
        descriptors <= baseline.0 && threads <= baseline.1
    });
    assert!(
        flat,
        "after {RESTARTS} restarts: {:?} (descriptors, threads), baseline {baseline:?}; descriptors: {:#?}",
        descriptors_and_threads(spindle),
        descriptor_targets(spindle)
    );
    run.signal(libc::SIGTERM);
    let (code, events) = run.finish();
    assert_eq!(code, Some(0), "{events:#?}");
    let restarts = events
        .iter()
        .filter(|event| event.service == "flaky" && event.to == "restarting")
        .count();
    assert!(restarts >= WARM_UP + RESTARTS - 1, "{restarts}");
}
