//! `cargo bench --bench supervisor`: the supervisor at scale, with
//! supervisord 4.3.0 as the anchor in the same run.
//!
//! Everything is measured on the real `spindle run` binary (release build)
//! from outside, as a user would see it, and supervisord the same way:
//! - time from spawn to every service ready (flat 200, and 10 waves of 20
//!   where each wave waits for the whole previous wave to be healthy);
//! - time from SIGTERM until every service is stopped and the process exited;
//! - RSS with 200 services up (spindle's own process plus its guard
//!   process, `spindle __guard`; supervisord's one process);
//! - CPU of the supervising processes over a steady window (spindle plus
//!   its guard): 200 idle services (both), and 100 services probed every
//!   second by tcp and by exec (spindle; supervisord has no health probes);
//! - processes still alive after the supervisor exited.
//!
//! Fairness: the flat scenario runs `SPINDLE_BENCH_ROUNDS` times (default
//! 3) on each side, spindle and supervisord alternating (and which goes
//! first), with the spindle-only scenarios between rounds, so load from
//! other processes on a shared machine hits both alike; figures are medians
//! of the rounds. Readiness is observed without loading either side:
//! spindle's `--events jsonl` on a pipe, supervisord's own event listener
//! protocol (`benches/supervisor_anchor.py`); nothing polls. supervisord is
//! the version `make setup` pins into `.cache/venv` (the bench fails if it
//! is missing or another version).
//!
//! `SPINDLE_BENCH_STEADY_SECS` sets each steady window (default 20);
//! `SPINDLE_BENCH_SCENARIOS=exec,tcp` runs only the scenarios whose names
//! contain one of the words; `SPINDLE_BENCH_BIN` measures another `spindle`
//! binary (an older build, to compare in one session). Every wait on a
//! child process is bounded and fails with a message. Prints a progress
//! line per phase, one table at the end, and writes
//! `target/bench/supervisor.json` (`benches/common/report.rs`). When
//! supervisord could not run it exits 1 without a table (the JSON then
//! says why). Targets are reported, not asserted.

#[path = "common/process.rs"]
mod process;
#[path = "common/report.rs"]
mod report;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use report::{Better, Report, Target, median};

const SERVICES: usize = 200;
const PROBED: usize = 100;
const SUPERVISOR_VERSION: &str = "4.3.0";
const READY_LIMIT: Duration = Duration::from_secs(120);
const STOP_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    let settings = Settings::from_env();
    let mut report = Report::start(
        "supervisor",
        &format!("supervisord {SUPERVISOR_VERSION} (PyPI supervisor, .cache/venv)"),
    );
    let root = report::repository_root();
    let work = report::bench_dir().join("supervisor-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)
        .unwrap_or_else(|error| fail(&format!("cannot create {}: {error}", work.display())));
    report.phase(&format!(
        "{SERVICES} services of `sleep 3600`; {} rounds of the flat pair; steady windows of {:?}",
        settings.rounds, settings.steady
    ));

    // The anchor is found before anything is measured; without it the
    // benchmark fails at once (no figures of spindle's alone).
    let anchor = if settings.selected("supervisord-flat") {
        match Supervisord::find(&root) {
            Ok(anchor) => Some(anchor),
            Err(why) => report.anchor_failed(&why),
        }
    } else {
        None
    };
    let mut flat: Vec<Run> = Vec::new();
    let mut theirs: Vec<Run> = Vec::new();
    let mut only_ours: Vec<Run> = Vec::new();
    let scenarios_between_rounds = spindle_only_scenarios();
    for round in 0..settings.rounds {
        let spindle_first = round % 2 == 0;
        for side in 0..2 {
            let spindle_turn = (side == 0) == spindle_first;
            let label = format!("round {}/{}", round + 1, settings.rounds);
            if spindle_turn && settings.selected("spindle-flat") {
                let scenario = Scenario::flat("spindle-flat", SERVICES, "");
                flat.push(run_spindle(&report, &label, &settings, &work, &scenario));
            }
            if !spindle_turn && let Some(supervisord) = &anchor {
                report.phase(&format!(
                    "{label}: supervisord-flat: starting {SERVICES} programs"
                ));
                match supervisord.run(&work.join("supervisord"), settings.steady) {
                    Ok(run) => {
                        report.phase(&format!("{label}: supervisord-flat: {}", run.summary()));
                        theirs.push(run);
                    }
                    Err(why) => report.anchor_failed(&why),
                }
            }
        }
        // One spindle-only scenario after each round; any left run at the end.
        let last_round = round + 1 == settings.rounds;
        for (idx, name) in scenarios_between_rounds.iter().enumerate() {
            if (idx == round || (last_round && idx > round)) && settings.selected(name) {
                let scenario = Scenario::named(name);
                let label = format!("after round {}", round + 1);
                only_ours.push(run_spindle(&report, &label, &settings, &work, &scenario));
            }
        }
    }

    add_rows(&mut report, &flat, &theirs, &only_ours);
    report.detail(
        "settings",
        serde_json::json!({
            "rounds": settings.rounds,
            "steady_window_s": settings.steady.as_secs_f64(),
            "pinning": "none",
            "binary": settings.binary,
            "supervisord_readiness": "its event listener protocol (PROCESS_STATE_RUNNING), no polling",
            "spindle_readiness": "`spindle run --events jsonl` on a pipe",
            "spindle_counts": "spindle plus its guard process (RSS and CPU)",
        }),
    );
    report.detail(
        "runs",
        serde_json::json!(
            flat.iter()
                .chain(&theirs)
                .chain(&only_ours)
                .map(Run::json)
                .collect::<Vec<_>>()
        ),
    );
    report.finish();
}

/// The scenarios that have no anchor, one after each round of the pair.
fn spindle_only_scenarios() -> [&'static str; 3] {
    [
        "spindle-10-waves",
        "spindle-100-tcp-probed",
        "spindle-100-exec-probed",
    ]
}

fn add_rows(report: &mut Report, flat: &[Run], theirs: &[Run], only_ours: &[Run]) {
    let med = |runs: &[Run], figure: fn(&Run) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(figure).collect();
        (!values.is_empty()).then(|| median(&values))
    };
    let per_service = |run: &Run| Some(run.ready_s * 1000.0 / run.services as f64);
    let stop_ms = |run: &Run| Some(run.stopped_s * 1000.0);
    let rss_mib = |run: &Run| Some(run.rss_kib as f64 / 1024.0);
    let cpu = |run: &Run| run.steady_cpu_percent;
    let left = |run: &Run| Some(run.left_behind as f64);
    if !flat.is_empty() || !theirs.is_empty() {
        let pair = format!("{SERVICES} flat");
        for (what, unit, figure, better, target) in [
            (
                format!("ready, {pair}"),
                "ms/svc",
                per_service as fn(&Run) -> Option<f64>,
                Better::Lower,
                Some(Target::AtMost(2.5)),
            ),
            (
                format!("stop, {pair}"),
                "ms",
                stop_ms,
                Better::Lower,
                Some(Target::AtMost(1000.0)),
            ),
            (format!("RSS, {pair}"), "MiB", rss_mib, Better::Lower, None),
            (
                format!("CPU idle, {pair}"),
                "% core",
                cpu,
                Better::Lower,
                Some(Target::AtMost(1.0)),
            ),
            (
                format!("left behind, {pair}"),
                "procs",
                left,
                Better::Lower,
                Some(Target::AtMost(0.0)),
            ),
        ] {
            report.row(
                &what,
                unit,
                med(flat, figure),
                med(theirs, figure),
                better,
                target,
            );
        }
    }
    for run in only_ours {
        report.row(
            &format!("ready, {}", run.name),
            "ms/svc",
            per_service(run),
            None,
            Better::Lower,
            Some(Target::AtMost(2.5)),
        );
        report.row(
            &format!("stop, {}", run.name),
            "ms",
            stop_ms(run),
            None,
            Better::Lower,
            Some(Target::AtMost(1000.0)),
        );
        if run.steady_cpu_percent.is_some() {
            report.row(
                &format!("CPU, {}", run.name),
                "% core",
                cpu(run),
                None,
                Better::Lower,
                Some(Target::AtMost(1.0)),
            );
        }
        report.row(
            &format!("left behind, {}", run.name),
            "procs",
            left(run),
            None,
            Better::Lower,
            Some(Target::AtMost(0.0)),
        );
    }
}

struct Settings {
    steady: Duration,
    rounds: usize,
    scenarios: Option<String>,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |key: &str, default: f64| {
            std::env::var(key)
                .ok()
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or(default)
        };
        Settings {
            steady: Duration::from_secs_f64(number("SPINDLE_BENCH_STEADY_SECS", 20.0)),
            rounds: number("SPINDLE_BENCH_ROUNDS", 3.0).max(1.0) as usize,
            scenarios: std::env::var("SPINDLE_BENCH_SCENARIOS").ok(),
            binary: std::env::var_os("SPINDLE_BENCH_BIN")
                .map_or_else(|| env!("CARGO_BIN_EXE_spindle").into(), PathBuf::from),
        }
    }

    fn selected(&self, name: &str) -> bool {
        self.scenarios.as_ref().is_none_or(|wanted| {
            wanted
                .split(',')
                .any(|word| !word.trim().is_empty() && name.contains(word.trim()))
        })
    }
}

/// What one run of one scenario measured.
#[derive(Clone)]
struct Run {
    name: String,
    services: usize,
    ready_s: f64,
    /// From the first event (the script evaluated, the runtime up) to all ready.
    ready_after_first_event_s: Option<f64>,
    stopped_s: f64,
    rss_kib: u64,
    steady_cpu_percent: Option<f64>,
    left_behind: usize,
}

impl Run {
    fn summary(&self) -> String {
        format!(
            "ready {:.1} ms, RSS {:.1} MiB{}, stopped {:.1} ms, {} left behind",
            self.ready_s * 1000.0,
            self.rss_kib as f64 / 1024.0,
            self.steady_cpu_percent
                .map_or(String::new(), |cpu| format!(", steady CPU {cpu:.2}%")),
            self.stopped_s * 1000.0,
            self.left_behind
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "services": self.services,
            "ready_s": self.ready_s,
            "ready_ms_per_service": self.ready_s * 1000.0 / self.services as f64,
            "ready_after_first_event_s": self.ready_after_first_event_s,
            "stopped_s": self.stopped_s,
            "rss_kib": self.rss_kib,
            "steady_cpu_percent": self.steady_cpu_percent,
            "processes_left_behind": self.left_behind,
        })
    }
}

/// A graph for `spindle run`: its script and what to measure.
struct Scenario {
    name: String,
    script: String,
    services: usize,
    steady: bool,
    /// Keeps the tcp probes' target running for the scenario.
    _listener: Option<TcpListenerProcess>,
}

impl Scenario {
    fn flat(name: &str, count: usize, probe: &str) -> Scenario {
        Scenario {
            name: name.to_owned(),
            script: flat_script(count, probe),
            services: count,
            steady: true,
            _listener: None,
        }
    }

    fn named(name: &str) -> Scenario {
        match name {
            "spindle-10-waves" => Scenario {
                name: name.to_owned(),
                script: wave_script(10, SERVICES / 10),
                services: SERVICES,
                steady: false,
                _listener: None,
            },
            "spindle-100-tcp-probed" => {
                let listener = TcpListenerProcess::start();
                let probe = format!(
                    "live = s.tcp_probe {{ address = \"127.0.0.1:{}\", period = \"1s\" }},",
                    listener.port
                );
                Scenario {
                    _listener: Some(listener),
                    ..Scenario::flat(name, PROBED, &probe)
                }
            }
            "spindle-100-exec-probed" => Scenario::flat(
                name,
                PROBED,
                "live = s.exec_probe { command = { \"true\" }, period = \"1s\" },",
            ),
            other => fail(&format!("no scenario named {other}")),
        }
    }
}

fn flat_script(count: usize, probe: &str) -> String {
    let mut script = String::from("local s = require(\"spindle\")\n");
    for idx in 0..count {
        script.push_str(&format!(
            "s.service \"s{idx:03}\" {{ command = {{ \"sleep\", \"3600\" }}, {probe} }}\n"
        ));
    }
    script
}

/// `waves` waves of `width`; every service of a wave depends on every
/// service of the previous wave being healthy.
fn wave_script(waves: usize, width: usize) -> String {
    let mut script = String::from("local s = require(\"spindle\")\n");
    for wave in 0..waves {
        for column in 0..width {
            let depends: Vec<String> = if wave == 0 {
                Vec::new()
            } else {
                (0..width)
                    .map(|dep| format!("w{}_{dep:02} = \"healthy\"", wave - 1))
                    .collect()
            };
            script.push_str(&format!(
                "s.service \"w{wave}_{column:02}\" {{ command = {{ \"sleep\", \"3600\" }}, depends_on = {{ {} }} }}\n",
                depends.join(", ")
            ));
        }
    }
    script
}

/// Runs one scenario on `spindle run` from outside; a failure of spindle
/// ends the benchmark with the reason.
fn run_spindle(
    report: &Report,
    label: &str,
    settings: &Settings,
    work: &Path,
    scenario: &Scenario,
) -> Run {
    let name = &scenario.name;
    let what = |phase: &str| format!("{label}: {name}: {phase}");
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| fail(&format!("{error}")));
    let file = dir.join("graph.lua");
    std::fs::write(&file, &scenario.script).unwrap_or_else(|error| fail(&format!("{error}")));
    report.phase(&what(&format!("starting {} services", scenario.services)));
    let started = Instant::now();
    let mut child = Command::new(&settings.binary)
        .arg("run")
        .arg(&file)
        .args(["--events", "jsonl", "--data-dir"])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            fail(&format!(
                "cannot start {}: {error}",
                settings.binary.display()
            ))
        });
    let pid = child.id() as i32;
    let events = process::stamped_lines(child.stdout.take().expect("stdout is piped"));
    let mut ready = HashSet::new();
    let mut first_event = None;
    let mut run_id = None;
    let mut all_ready = started;
    while ready.len() < scenario.services {
        let left = READY_LIMIT.saturating_sub(started.elapsed());
        let (at, line) = match events.recv_timeout(left) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => abandon(
                child,
                &what(&format!(
                    "only {} of {} services ready after {READY_LIMIT:?}",
                    ready.len(),
                    scenario.services
                )),
            ),
            Err(RecvTimeoutError::Disconnected) => abandon(
                child,
                &what(&format!(
                    "spindle closed its stdout with {} of {} services ready",
                    ready.len(),
                    scenario.services
                )),
            ),
        };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        first_event.get_or_insert(at);
        if run_id.is_none()
            && let Some(service_pid) = event["pid"].as_i64()
        {
            run_id = process::environment_value(service_pid as i32, "SPINDLE_RUN_ID");
        }
        if event["to"] == "ready" {
            ready.insert(event["service"].as_str().unwrap_or_default().to_owned());
            all_ready = at;
        }
    }
    let ready_s = all_ready.duration_since(started).as_secs_f64();
    report.phase(&what(&format!(
        "{} services ready after {:.1} ms",
        scenario.services,
        ready_s * 1000.0
    )));
    // The guard is spindle's child running `spindle __guard`.
    let supervising: Vec<i32> = std::iter::once(pid)
        .chain(
            process::children(pid)
                .into_iter()
                .filter(|child| process::cmdline(*child).contains("__guard")),
        )
        .collect();
    if supervising.len() < 2 {
        report.phase(&what("no guard process found; counting spindle alone"));
    }
    let rss_kib = supervising.iter().map(|pid| process::rss_kib(*pid)).sum();
    let cpu = || -> f64 {
        supervising
            .iter()
            .map(|pid| process::cpu_seconds(*pid))
            .sum()
    };
    let steady_cpu_percent = scenario.steady.then(|| {
        report.phase(&what(&format!("steady window {:?}", settings.steady)));
        let before = cpu();
        std::thread::sleep(settings.steady); // the measurement window itself
        100.0 * (cpu() - before) / settings.steady.as_secs_f64()
    });
    let stop_started = Instant::now();
    process::signal(pid, libc::SIGTERM);
    let (status, exited_at) = process::wait_bounded(child, STOP_LIMIT, &what("spindle run"))
        .unwrap_or_else(|why| fail(&why));
    let stopped_s = exited_at.duration_since(stop_started).as_secs_f64();
    let left_behind = run_id.map_or(0, |run_id| {
        process::live_processes_with("SPINDLE_RUN_ID", &run_id)
    });
    let run = Run {
        name: name.clone(),
        services: scenario.services,
        ready_s,
        ready_after_first_event_s: first_event
            .map(|first| all_ready.duration_since(first).as_secs_f64()),
        stopped_s,
        rss_kib,
        steady_cpu_percent,
        left_behind,
    };
    report.phase(&what(&format!("{} (exit: {status})", run.summary())));
    run
}

/// Kills spindle (its guard then kills the services) and ends the benchmark.
fn abandon(child: Child, why: &str) -> ! {
    process::signal(child.id() as i32, libc::SIGKILL);
    let _ = process::wait_bounded(child, STOP_LIMIT, "spindle run after SIGKILL");
    fail(why)
}

fn fail(why: &str) -> ! {
    eprintln!("supervisor benchmark failed: {why}");
    std::process::exit(2)
}

/// supervisord from the venv `make setup` made, run by
/// `benches/supervisor_anchor.py`.
struct Supervisord {
    python: PathBuf,
    script: PathBuf,
}

impl Supervisord {
    fn find(root: &Path) -> Result<Supervisord, String> {
        let python = root.join(".cache/venv/bin/python");
        let check = process::output_bounded(
            Command::new(&python).args([
                "-c",
                "import importlib.metadata as m; print(m.version('supervisor'))",
            ]),
            Duration::from_secs(60),
            "the venv's python asked for supervisor's version",
        )
        .map_err(|why| format!("{why}; run `make setup` (it makes {})", python.display()))?;
        let version = String::from_utf8_lossy(&check.stdout).trim().to_owned();
        if !check.status.success() || version != SUPERVISOR_VERSION {
            return Err(format!(
                "supervisor {SUPERVISOR_VERSION} is not in {} (found {:?}); run `make setup`",
                python.display(),
                version
            ));
        }
        Ok(Supervisord {
            python,
            script: root.join("benches/supervisor_anchor.py"),
        })
    }

    fn run(&self, work: &Path, steady: Duration) -> Result<Run, String> {
        let limit = READY_LIMIT + STOP_LIMIT + steady + Duration::from_secs(30);
        let output = process::output_bounded(
            Command::new(&self.python)
                .arg(&self.script)
                .arg("run")
                .arg(work)
                .arg(SERVICES.to_string())
                .arg(steady.as_secs_f64().to_string())
                .stderr(Stdio::inherit()),
            limit,
            "the supervisord anchor",
        )?;
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|error| {
            format!(
                "the supervisord anchor printed no JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        if let Some(error) = value["error"].as_str() {
            return Err(format!("the supervisord anchor failed: {error}"));
        }
        let number = |key: &str| {
            value[key]
                .as_f64()
                .ok_or_else(|| format!("the supervisord anchor's JSON has no {key}: {value}"))
        };
        Ok(Run {
            name: "supervisord-flat".to_owned(),
            services: SERVICES,
            ready_s: number("ready_s")?,
            ready_after_first_event_s: None,
            stopped_s: number("stopped_s")?,
            rss_kib: number("rss_kib")? as u64,
            steady_cpu_percent: Some(number("steady_cpu_percent")?),
            left_behind: number("processes_left_behind")? as usize,
        })
    }
}

/// A separate process accepting (and closing) connections for tcp probes,
/// so its CPU is not counted as spindle's.
struct TcpListenerProcess {
    child: Option<Child>,
    port: u16,
}

impl TcpListenerProcess {
    fn start() -> TcpListenerProcess {
        let program = "import socket\n\
                       s = socket.socket()\n\
                       s.bind(('127.0.0.1', 0))\n\
                       s.listen(1024)\n\
                       print(s.getsockname()[1], flush=True)\n\
                       while True:\n    c, _ = s.accept()\n    c.close()\n";
        let mut child = Command::new("python3")
            .args(["-c", program])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| fail(&format!("python3 for the tcp listener: {error}")));
        let lines = process::stamped_lines(child.stdout.take().expect("stdout is piped"));
        let port = lines
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|(_, line)| line.trim().parse().ok());
        let mut listener = TcpListenerProcess {
            child: Some(child),
            port: 0,
        };
        match port {
            Some(port) => listener.port = port,
            None => {
                drop(listener);
                fail("the tcp listener printed no port within 30 s")
            }
        }
        listener
    }
}

impl Drop for TcpListenerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = process::wait_bounded(child, STOP_LIMIT, "the tcp listener");
        }
    }
}
