//! `cargo bench --bench longrun -- --duration 30m`: a graph that runs for a
//! long time under steady load, to show that `spindle run` stays flat. Not
//! in CI (it runs for half an hour by default).
//!
//! The graph (50 services, `benches/longrun.rs` writes the script):
//! - `web`: a small threading Python HTTP server (answers 200), which the
//!   http and tcp probes target;
//! - `restarter`: exits with status 1 every 3 s (restart on-failure, the
//!   crash-loop limit out of reach);
//! - `spawner`: starts a short-lived orphan ten times a second
//!   (`(sleep 0.05 &)`), which spindle inherits as child subreaper;
//! - 47 `sleep` services probed every second: 16 by exec, 16 by http, 15 by
//!   tcp (liveness probes);
//! - a no-op Lua pipeline `echo` served with `--http`, to which a client
//!   thread sends a steady trickle of requests (5 a second).
//!
//! Every `--interval` (default 10 s) it samples the `spindle` process from
//! outside: zombie children, open file descriptors, threads, RSS, and CPU
//! (user + system over the interval, percent of one core). At the end it
//! prints each series' least-squares slope per hour and its change over the
//! run relative to the mean (the target is flat within noise, and zombies
//! 0), the slope over the run's last third (what bounded buffers add while
//! they fill levels off; a leak does not), and writes
//! `target/bench/longrun.json`.
//!
//! Zombies are counted twice. A sample can catch a child in the instant
//! between its exit and its reaping (with about 70 exits a second here,
//! a few samples in a long run do); so each zombie a sample sees is looked
//! at again 100 ms later, and one still a zombie of spindle then, the same
//! process (same start time), has *stayed*: that is a zombie nobody reaps.
//! Both counts are printed; the target is 0 zombies that stayed.
//!
//! Flags (after `--`): `--duration 30m` (s, m or h; default 30m),
//! `--interval 10s`. `SPINDLE_BENCH_BIN` measures another `spindle` binary.

#[path = "common/process.rs"]
mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EXEC_PROBED: usize = 16;
const HTTP_PROBED: usize = 16;
const TCP_PROBED: usize = 15;
const REQUESTS_PER_SECOND: u64 = 5;

fn main() {
    let options = Options::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bench_dir = target.join("bench");
    let work = bench_dir.join("longrun-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let web_port = free_port();
    let http_port = free_port();
    let script = graph_script(web_port);
    let file = work.join("graph.lua");
    std::fs::write(&file, &script).unwrap();
    println!(
        "longrun: 50 services for {:?}, sampled every {:?}; machine: {} CPUs, unpinned",
        options.duration,
        options.interval,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let binary = std::env::var_os("SPINDLE_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_spindle").into());
    let mut child = Command::new(binary)
        .arg("run")
        .arg(&file)
        .args(["--events", "jsonl", "--data-dir"])
        .arg(work.join("data"))
        .arg("--http")
        .arg(format!("127.0.0.1:{http_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn spindle");
    let pid = child.id() as i32;
    let restarts = count_restarts(&mut child);
    wait_for_port(http_port);
    println!("phase 1/2: spindle (pid {pid}) is up; sending requests and sampling");

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        std::thread::spawn(move || {
            let period = Duration::from_millis(1000 / REQUESTS_PER_SECOND);
            let mut next = Instant::now();
            let mut request_idx = 0u64;
            while !stop.load(Ordering::Relaxed) {
                request_idx += 1;
                if post_request(http_port, request_idx) {
                    answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                next += period;
                // Pacing the client: it sends at a fixed rate.
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };

    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut previous_cpu = process::cpu_seconds(pid);
    let mut previous_at = Instant::now();
    while started.elapsed() < options.duration {
        // The sampling interval itself.
        std::thread::sleep(options.interval);
        let now = Instant::now();
        let cpu = process::cpu_seconds(pid);
        let zombies = process::zombie_children(pid);
        let sample = Sample {
            at_s: started.elapsed().as_secs_f64(),
            zombies: zombies.len(),
            zombies_stayed: zombies_that_stay(pid, &zombies),
            fds: count_entries(&format!("/proc/{pid}/fd")),
            threads: count_entries(&format!("/proc/{pid}/task")),
            rss_kib: process::rss_kib(pid),
            rss_anon_kib: process::rss_anon_kib(pid),
            cpu_percent: 100.0 * (cpu - previous_cpu)
                / now.duration_since(previous_at).as_secs_f64(),
            restarts: restarts.load(),
            requests_answered: answered.load(Ordering::Relaxed),
        };
        previous_cpu = cpu;
        previous_at = now;
        println!(
            "  t={:>7.0}s zombies {:>3} (stayed {}) fds {:>4} threads {:>3} rss {:>7.1} MiB (anon {:>6.1}) cpu {:>5.2}% restarts {:>4} requests {:>6}",
            sample.at_s,
            sample.zombies,
            sample.zombies_stayed,
            sample.fds,
            sample.threads,
            sample.rss_kib as f64 / 1024.0,
            sample.rss_anon_kib as f64 / 1024.0,
            sample.cpu_percent,
            sample.restarts,
            sample.requests_answered,
        );
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    println!("phase 2/2: stopping spindle");
    // SAFETY: kill has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = child.wait().unwrap();

    let series: [(&str, SampleValue); 7] = [
        ("zombies", |sample| sample.zombies as f64),
        ("zombies_stayed", |sample| sample.zombies_stayed as f64),
        ("fds", |sample| sample.fds as f64),
        ("threads", |sample| sample.threads as f64),
        ("rss_kib", |sample| sample.rss_kib as f64),
        ("rss_anon_kib", |sample| sample.rss_anon_kib as f64),
        ("cpu_percent", |sample| sample.cpu_percent),
    ];
    // The first sample includes start-up; slopes are over the rest.
    let steady = if samples.len() > 2 {
        &samples[1..]
    } else {
        &samples[..]
    };
    // A series that rises while bounded buffers fill (the kernel's event
    // history keeps its last 4,096 events, each service its last 200
    // output lines) levels off; a leak does not. The last third tells them
    // apart.
    let last_third = &steady[steady.len() * 2 / 3..];
    println!(
        "\n{:<14} {:>10} {:>10} {:>10} {:>14} {:>16} {:>16}",
        "series", "min", "mean", "max", "slope per hour", "change/mean (%)", "last third /h"
    );
    let mut slopes = serde_json::Map::new();
    for (name, value) in series {
        let points: Vec<(f64, f64)> = steady
            .iter()
            .map(|sample| (sample.at_s / 3600.0, value(sample)))
            .collect();
        let values: Vec<f64> = points.iter().map(|(_, value)| *value).collect();
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let slope = least_squares_slope(&points);
        let last_points: Vec<(f64, f64)> = last_third
            .iter()
            .map(|sample| (sample.at_s / 3600.0, value(sample)))
            .collect();
        let last_slope = least_squares_slope(&last_points);
        let span_h =
            points.last().map_or(0.0, |last| last.0) - points.first().map_or(0.0, |first| first.0);
        let change_percent = if mean.abs() > f64::EPSILON {
            100.0 * slope * span_h / mean
        } else {
            0.0
        };
        println!(
            "{name:<14} {min:>10.2} {mean:>10.2} {max:>10.2} {slope:>14.3} {change_percent:>16.2} {last_slope:>16.3}"
        );
        slopes.insert(
            name.to_owned(),
            serde_json::json!({
                "min": min, "mean": mean, "max": max,
                "slope_per_hour": slope,
                "change_over_run_percent_of_mean": change_percent,
                "slope_per_hour_last_third": last_slope,
            }),
        );
    }
    let answered = answered.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    let max_zombies = samples
        .iter()
        .map(|sample| sample.zombies)
        .max()
        .unwrap_or(0);
    let max_stayed = samples
        .iter()
        .map(|sample| sample.zombies_stayed)
        .max()
        .unwrap_or(0);
    let samples_with_zombies = samples.iter().filter(|sample| sample.zombies > 0).count();
    println!(
        "\nrequests answered ok {answered}, not ok {failed}; restarts {}; zombies caught between exit and reaping in {samples_with_zombies} of {} samples (most {max_zombies}); most zombies that stayed 100 ms in one sample {max_stayed} (target 0); spindle exited with {status}",
        restarts.load(),
        samples.len()
    );
    let by_service = restarts
        .by_service
        .lock()
        .map(|by_service| by_service.clone())
        .unwrap_or_default();
    for (service, (count, last_reason)) in &by_service {
        println!("  {service}: {count} restart(s), last: {last_reason}");
    }
    let json = serde_json::json!({
        "benchmark": "longrun",
        "duration_s": options.duration.as_secs_f64(),
        "interval_s": options.interval.as_secs_f64(),
        "pinning": "none",
        "services": 50,
        "requests_per_second": REQUESTS_PER_SECOND,
        "requests_ok": answered,
        "requests_not_ok": failed,
        "restarts_by_service": by_service
            .iter()
            .map(|(service, (count, last_reason))| {
                (service.clone(), serde_json::json!({"restarts": count, "last_reason": last_reason}))
            })
            .collect::<serde_json::Map<_, _>>(),
        "max_zombies": max_zombies,
        "samples_with_zombies": samples_with_zombies,
        "max_zombies_stayed": max_stayed,
        "series": slopes,
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
    });
    let path = bench_dir.join("longrun.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("wrote {}", path.display());
}

struct Options {
    duration: Duration,
    interval: Duration,
}

impl Options {
    /// `--duration D` and `--interval D`; other arguments (cargo passes
    /// `--bench`) are ignored.
    fn from_args() -> Options {
        let mut options = Options {
            duration: Duration::from_secs(30 * 60),
            interval: Duration::from_secs(10),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.windows(2) {
            let parsed = || {
                parse_duration(&pair[1]).unwrap_or_else(|| {
                    panic!("{} takes a duration such as 30m, not {}", pair[0], pair[1])
                })
            };
            match pair[0].as_str() {
                "--duration" => options.duration = parsed(),
                "--interval" => options.interval = parsed(),
                _ => {}
            }
        }
        options
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// Reads one series' value out of a sample.
type SampleValue = fn(&Sample) -> f64;

struct Sample {
    at_s: f64,
    zombies: usize,
    zombies_stayed: usize,
    fds: usize,
    threads: usize,
    rss_kib: u64,
    rss_anon_kib: u64,
    cpu_percent: f64,
    restarts: u64,
    requests_answered: u64,
}

impl Sample {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "at_s": self.at_s,
            "zombies": self.zombies,
            "zombies_stayed": self.zombies_stayed,
            "fds": self.fds,
            "threads": self.threads,
            "rss_kib": self.rss_kib,
            "rss_anon_kib": self.rss_anon_kib,
            "cpu_percent": self.cpu_percent,
            "restarts": self.restarts,
            "requests_answered": self.requests_answered,
        })
    }
}

fn graph_script(web_port: u16) -> String {
    let mut script = String::from("local s = require(\"spindle\")\n");
    // A threading HTTP server with a deep accept queue: `python3 -m
    // http.server` keeps a queue of 5 and serves one request at a time, so
    // on a busy machine 31 probes a second overflow it and connections
    // time out, which is the stand-in's limit, not spindle's.
    let web = format!(
        "import http.server as h\n\
         class Handler(h.BaseHTTPRequestHandler):\n    \
             def do_GET(self):\n        \
                 self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()\n    \
             def log_message(self, *args): pass\n\
         class Server(h.ThreadingHTTPServer):\n    request_queue_size = 1024\n\
         Server(('127.0.0.1', {web_port}), Handler).serve_forever()\n"
    );
    script.push_str(&format!(
        "s.service \"web\" {{ command = {{ \"python3\", \"-c\", {web:?} }},\n  ready = s.tcp_probe {{ address = \"127.0.0.1:{web_port}\", period = \"200ms\" }} }}\n"
    ));
    script.push_str(
        "s.service \"restarter\" { command = \"sleep 3; exit 1\",\n  restart = { policy = \"on-failure\", backoff = \"100ms..100ms\", max = 1000000, window = \"1s\" } }\n",
    );
    script.push_str(
        "s.service \"spawner\" { command = \"while true; do (sleep 0.05 &); sleep 0.1; done\" }\n",
    );
    let probes = [
        (
            "exec",
            EXEC_PROBED,
            "s.exec_probe { command = { \"true\" }, period = \"1s\" }".to_owned(),
        ),
        (
            "http",
            HTTP_PROBED,
            format!(
                "s.http_probe {{ url = \"http://127.0.0.1:{web_port}/\", period = \"1s\", failures = 3 }}"
            ),
        ),
        (
            "tcp",
            TCP_PROBED,
            format!(
                "s.tcp_probe {{ address = \"127.0.0.1:{web_port}\", period = \"1s\", failures = 3 }}"
            ),
        ),
    ];
    for (kind, count, probe) in probes {
        for idx in 0..count {
            let depends = if kind == "exec" {
                String::new()
            } else {
                "depends_on = { web = \"healthy\" }, ".to_owned()
            };
            script.push_str(&format!(
                "s.service \"{kind}{idx:02}\" {{ command = {{ \"sleep\", \"1000000\" }}, {depends}live = {probe} }}\n"
            ));
        }
    }
    script
        .push_str("s.pipeline \"echo\" {\n  s.stage(\"noop\", function(req) return req end),\n}\n");
    script
}

/// Restarts seen on spindle's event stream: the total, and per service the
/// count and the last reason.
#[derive(Default)]
struct Restarts {
    total: AtomicU64,
    by_service: std::sync::Mutex<std::collections::BTreeMap<String, (u64, String)>>,
}

impl Restarts {
    fn load(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// A thread that counts `backing-off` events (restarts) on spindle's stdout.
fn count_restarts(child: &mut Child) -> Arc<Restarts> {
    let stdout = child.stdout.take().unwrap();
    let restarts = Arc::new(Restarts::default());
    let counter = restarts.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["to"] != "backing-off" {
                continue;
            }
            counter.total.fetch_add(1, Ordering::Relaxed);
            let service = event["service"].as_str().unwrap_or_default().to_owned();
            let reason = event["reason"].as_str().unwrap_or_default().to_owned();
            if let Ok(mut by_service) = counter.by_service.lock() {
                let entry = by_service.entry(service).or_default();
                entry.0 += 1;
                entry.1 = reason;
            }
        }
    });
    restarts
}

/// One `POST /v1/pipelines/echo`; whether it answered 200.
fn post_request(port: u16, request_idx: u64) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let body = format!("{{\"text\": \"request {request_idx}\"}}");
    let request = format!(
        "POST /v1/pipelines/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.1 200")
}

/// Polls until something listens on `port` (spindle binds it after the
/// script is evaluated; nothing to wait on but the socket).
fn wait_for_port(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "spindle never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn least_squares_slope(points: &[(f64, f64)]) -> f64 {
    let count = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / count;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / count;
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    }
}

/// How many of `seen`, zombies of `pid`, are still the same zombies
/// 100 ms later.
fn zombies_that_stay(pid: i32, seen: &[(i32, String)]) -> usize {
    if seen.is_empty() {
        return 0;
    }
    // A look again after a delay is the measurement itself: a zombie that
    // outlives it is one the reaper did not take.
    std::thread::sleep(Duration::from_millis(100));
    let later = process::zombie_children(pid);
    seen.iter().filter(|zombie| later.contains(zombie)).count()
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}
