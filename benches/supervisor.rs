//! `cargo bench --bench supervisor`: the supervisor at scale, with
//! supervisord as the anchor in the same run.
//!
//! Everything is measured on the real `spindle run` binary (release build)
//! from outside, as a user would see it, and supervisord the same way:
//! - time from spawn to every service ready (flat 200, and 10 waves of 20
//!   where each wave waits for the whole previous wave to be healthy);
//! - time from SIGTERM until every service is stopped and the process exited;
//! - RSS with 200 services up;
//! - CPU of the supervising process over a steady window: 200 idle services
//!   (both), and 100 services probed every second by tcp and by exec
//!   (spindle; supervisord has no health probes).
//!
//! `SPINDLE_BENCH_STEADY_SECS` shortens the steady window (default 60) for
//! trial runs; `SPINDLE_BENCH_SCENARIOS=exec,tcp` runs only the scenarios
//! whose names contain one of the words; `SPINDLE_BENCH_BIN` measures
//! another `spindle` binary (an older build, to compare in one session). Prints a table, the ratios, and writes
//! `target/bench/supervisor.json`. Targets are reported, not asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SERVICES: usize = 200;
const PROBED: usize = 100;

fn main() {
    let steady = Duration::from_secs_f64(
        std::env::var("SPINDLE_BENCH_STEADY_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(60.0),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bench_dir = target.join("bench");
    let work = bench_dir.join("supervisor-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    println!("supervisor benchmark: {SERVICES} services of `sleep 3600`, steady window {steady:?}");
    println!(
        "machine: {} CPUs; processes unpinned",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let selected = |name: &str| {
        std::env::var("SPINDLE_BENCH_SCENARIOS").map_or(true, |wanted| {
            wanted
                .split(',')
                .any(|word| !word.trim().is_empty() && name.contains(word.trim()))
        })
    };
    let mut rows = Vec::new();
    let flat = selected("spindle-flat").then(|| {
        run_spindle(
            &work,
            "spindle-flat",
            &flat_script(SERVICES, ""),
            SERVICES,
            Some(steady),
        )
    });
    rows.extend(flat.clone());
    if selected("spindle-10-waves") {
        rows.push(run_spindle(
            &work,
            "spindle-10-waves",
            &wave_script(10, SERVICES / 10),
            SERVICES,
            None,
        ));
    }

    if selected("spindle-100-tcp-probed") {
        let listener = TcpListenerProcess::start();
        let tcp_probe = format!(
            "live = s.tcp_probe {{ address = \"127.0.0.1:{}\", period = \"1s\" }},",
            listener.port
        );
        rows.push(run_spindle(
            &work,
            "spindle-100-tcp-probed",
            &flat_script(PROBED, &tcp_probe),
            PROBED,
            Some(steady),
        ));
    }
    if selected("spindle-100-exec-probed") {
        let exec_probe = "live = s.exec_probe { command = { \"true\" }, period = \"1s\" },";
        rows.push(run_spindle(
            &work,
            "spindle-100-exec-probed",
            &flat_script(PROBED, exec_probe),
            PROBED,
            Some(steady),
        ));
    }

    let anchor = if selected("supervisord-flat") {
        run_supervisord(root, &work, steady)
    } else {
        None
    };
    if let Some(anchor) = &anchor {
        rows.push(anchor.clone());
    }
    print_table(&rows);
    let mut ratios = serde_json::Map::new();
    if let (Some(flat), Some(anchor)) = (&flat, &anchor) {
        println!("\nratios, spindle flat / supervisord flat (lower is better for spindle):");
        for (name, ours, theirs) in [
            ("ready", flat.ready_s, anchor.ready_s),
            ("stopped", flat.stopped_s, anchor.stopped_s),
            ("rss", flat.rss_kib as f64, anchor.rss_kib as f64),
            (
                "idle_cpu",
                flat.steady_cpu_percent.unwrap_or(0.0),
                anchor.steady_cpu_percent.unwrap_or(0.0),
            ),
        ] {
            let ratio = if theirs > 0.0 {
                ours / theirs
            } else {
                f64::NAN
            };
            println!("  {name:<9} {ratio:>7.3}");
            ratios.insert(name.to_owned(), serde_json::json!(ratio));
        }
    } else {
        println!("\nsupervisord anchor or flat scenario skipped (see above); no ratios");
    }
    println!("\ntargets (reported, not asserted):");
    for row in rows.iter().filter(|row| row.name.starts_with("spindle")) {
        let per_service_ms = row.ready_s * 1000.0 / row.services as f64;
        println!(
            "  {:<24} ready {:.2} ms/service (target < 2.5): {}   stop {:.0} ms (target < 1000): {}{}",
            row.name,
            per_service_ms,
            verdict(per_service_ms < 2.5),
            row.stopped_s * 1000.0,
            verdict(row.stopped_s < 1.0),
            row.steady_cpu_percent.map_or(String::new(), |cpu| format!(
                "   steady CPU {cpu:.2}% (target < 1%): {}",
                verdict(cpu < 1.0)
            )),
        );
    }
    let json = serde_json::json!({
        "benchmark": "supervisor",
        "steady_window_s": steady.as_secs_f64(),
        "pinning": "none",
        "scenarios": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "ratios_spindle_flat_over_supervisord": ratios,
    });
    let path = bench_dir.join("supervisor.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nwrote {}", path.display());
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

#[derive(Clone)]
struct Row {
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

impl Row {
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

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<26} {:>8} {:>10} {:>12} {:>14} {:>10} {:>9} {:>11}",
        "scenario",
        "services",
        "ready ms",
        "ms/service",
        "after 1st ev.",
        "stop ms",
        "RSS MiB",
        "steady CPU"
    );
    for row in rows {
        println!(
            "{:<26} {:>8} {:>10.1} {:>12.3} {:>14} {:>10.1} {:>9.1} {:>11}",
            row.name,
            row.services,
            row.ready_s * 1000.0,
            row.ready_s * 1000.0 / row.services as f64,
            row.ready_after_first_event_s
                .map_or("-".to_owned(), |secs| format!("{:.1}", secs * 1000.0)),
            row.stopped_s * 1000.0,
            row.rss_kib as f64 / 1024.0,
            row.steady_cpu_percent
                .map_or("-".to_owned(), |cpu| format!("{cpu:.2}%")),
        );
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

fn run_spindle(
    work: &Path,
    name: &str,
    script: &str,
    expected: usize,
    steady: Option<Duration>,
) -> Row {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("graph.lua");
    std::fs::write(&file, script).unwrap();
    let started = Instant::now();
    let binary = std::env::var_os("SPINDLE_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_spindle").into());
    let mut child = Command::new(binary)
        .arg("run")
        .arg(&file)
        .args(["--events", "jsonl", "--data-dir"])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn spindle");
    let pid = child.id() as i32;
    let events = read_events(&mut child);
    let mut ready = std::collections::HashSet::new();
    let mut first_event = None;
    let mut run_id = None;
    while ready.len() < expected {
        let event = events
            .recv_timeout(Duration::from_secs(120))
            .expect("spindle stopped reporting");
        first_event.get_or_insert_with(Instant::now);
        if run_id.is_none()
            && let Some(pid) = event["pid"].as_i64()
        {
            run_id = environment_value(pid as i32, "SPINDLE_RUN_ID");
        }
        if event["to"] == "ready" {
            ready.insert(event["service"].as_str().unwrap_or_default().to_owned());
        }
    }
    let all_ready = Instant::now();
    let rss_kib = rss_kib(pid);
    let steady_cpu_percent = steady.map(|window| {
        let before = cpu_seconds(pid);
        std::thread::sleep(window); // the measurement window itself
        100.0 * (cpu_seconds(pid) - before) / window.as_secs_f64()
    });
    let stop_started = Instant::now();
    // SAFETY: kill has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    child.wait().unwrap();
    let stopped_s = stop_started.elapsed().as_secs_f64();
    let left_behind = run_id.map_or(0, |run_id| live_processes_of_run(&run_id));
    Row {
        name: name.to_owned(),
        services: expected,
        ready_s: all_ready.duration_since(started).as_secs_f64(),
        ready_after_first_event_s: first_event
            .map(|first| all_ready.duration_since(first).as_secs_f64()),
        stopped_s,
        rss_kib,
        steady_cpu_percent,
        left_behind,
    }
}

/// A thread that parses the child's JSON lines into a channel, so the pipe
/// never fills while the benchmark waits.
fn read_events(child: &mut Child) -> mpsc::Receiver<serde_json::Value> {
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(value) = serde_json::from_str(&line)
                && sender.send(value).is_err()
            {
                break;
            }
        }
    });
    receiver
}

fn run_supervisord(root: &Path, work: &Path, steady: Duration) -> Option<Row> {
    let venv = root.join(".cache/bench-venv");
    let python = venv.join("bin/python");
    if !venv.join("bin/supervisord").exists() {
        println!("installing supervisor into {} ...", venv.display());
        let created = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        let installed = created.is_ok_and(|status| status.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "supervisor==4.3.0"])
                .status()
                .is_ok_and(|status| status.success());
        if !installed {
            println!("could not install supervisor with pip; skipping the anchor");
            return None;
        }
    }
    let output = Command::new(&python)
        .arg(root.join("benches/supervisor_anchor.py"))
        .arg(work.join("supervisord"))
        .arg(SERVICES.to_string())
        .arg(steady.as_secs_f64().to_string())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let value: serde_json::Value = match serde_json::from_slice(&output.stdout) {
        Ok(value) => value,
        Err(error) => {
            println!(
                "supervisord anchor failed ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            );
            return None;
        }
    };
    Some(Row {
        name: "supervisord-flat".to_owned(),
        services: SERVICES,
        ready_s: value["ready_s"].as_f64()?,
        ready_after_first_event_s: None,
        stopped_s: value["stopped_s"].as_f64()?,
        rss_kib: value["rss_kib"].as_u64()?,
        steady_cpu_percent: value["steady_cpu_percent"].as_f64(),
        left_behind: 0,
    })
}

/// A separate process accepting (and closing) connections for tcp probes,
/// so its CPU is not counted as spindle's.
struct TcpListenerProcess {
    child: Child,
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
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the tcp listener");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        TcpListenerProcess {
            child,
            port: line.trim().parse().expect("listener port"),
        }
    }
}

impl Drop for TcpListenerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |idx: usize| {
        fields
            .get(idx)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / ticks
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn environment_value(pid: i32, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    environ
        .split(|byte| *byte == 0)
        .filter_map(|var| std::str::from_utf8(var).ok())
        .find_map(|var| var.strip_prefix(&prefix).map(str::to_owned))
}

fn live_processes_of_run(run_id: &str) -> usize {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    entry
                        .file_name()
                        .to_str()
                        .and_then(|name| name.parse::<i32>().ok())
                })
                .filter(|pid| environment_value(*pid, "SPINDLE_RUN_ID").as_deref() == Some(run_id))
                .filter(|pid| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.trim_start().chars().next())
                        != Some('Z')
                })
                .count()
        })
        .unwrap_or(0)
}
