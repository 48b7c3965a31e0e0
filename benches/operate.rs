//! `cargo bench --bench operate`: operating a running graph of 200
//! services, `spindle run` (release build) beside supervisord (PyPI
//! `supervisor` 4.3.0, `benches/operate_anchor.py`) in the same run:
//! - status: `GET /v1/services` on a kept-alive connection (supervisord:
//!   XML-RPC `getAllProcessInfo`), and the CLI (`spindle ctl status` /
//!   `supervisorctl status`, a process each time);
//! - restart one service among 200, until it runs again with a new pid
//!   (spindle: `POST .../restart` until its `ready` event; supervisord:
//!   `stopProcess` + `startProcess`, and `supervisorctl restart`);
//! - reload with one service's command changed, until it runs again (the
//!   other 199 keep their pids; checked): spindle `POST /v1/reload`,
//!   supervisord `supervisorctl update`.
//!
//! Both are measured from outside, one after the other, on a machine shared
//! with other work: the table gives p50 and p90 of each, the ratio of the
//! p50s, and the load average before and after as a noise marker.
//! `SPINDLE_BENCH_REPEATS` sets the repetitions (default 20). Writes
//! `target/bench/operate.json`. supervisord comes from `.cache/venv`
//! (`make setup` pins it); when it is missing or fails, the benchmark
//! exits non-zero without a table.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SERVICES: usize = 200;

fn main() {
    let repeats: usize = std::env::var("SPINDLE_BENCH_REPEATS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bench_dir = target.join("bench");
    let work = bench_dir.join("operate-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    println!(
        "operate benchmark: {SERVICES} services of `sleep`, {repeats} repetitions; {} CPUs, unpinned, shared machine",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // The anchor is checked first and must run: without it the benchmark
    // fails rather than print spindle's figures alone.
    let python = anchor_python(root).unwrap_or_else(|why| anchor_failed(&why));
    let load_before = load_average();
    let spindle = measure_spindle(&work, repeats);
    let load_between = load_average();
    let anchor = Some(
        measure_supervisord(&python, root, &work, repeats)
            .unwrap_or_else(|why| anchor_failed(&why)),
    );
    let load_after = load_average();

    let mut rows = Vec::new();
    let mut ratios = serde_json::Map::new();
    for (name, ours, theirs) in [
        (
            "status (API)",
            &spindle.status_api,
            anchor.as_ref().map(|a| &a.status_rpc),
        ),
        (
            "status (CLI)",
            &spindle.status_cli,
            anchor.as_ref().map(|a| &a.status_cli),
        ),
        (
            "restart 1 of 200 (API)",
            &spindle.restart_api,
            anchor.as_ref().map(|a| &a.restart_rpc),
        ),
        (
            "restart 1 of 200 (CLI)",
            &spindle.restart_cli,
            anchor.as_ref().map(|a| &a.restart_cli),
        ),
        (
            "reload, 1 of 200 changed",
            &spindle.reload,
            anchor.as_ref().map(|a| &a.update),
        ),
    ] {
        let ours_p50 = percentile(ours, 0.5);
        let theirs_p50 = theirs.map(|theirs| percentile(theirs, 0.5));
        let ratio = theirs_p50.map(|theirs| ours_p50 / theirs);
        println!(
            "{name:<26} spindle p50 {:>8.3} ms p90 {:>8.3} ms | supervisord p50 {} p90 {} | ratio {}",
            ours_p50,
            percentile(ours, 0.9),
            theirs_p50.map_or("-".to_owned(), |value| format!("{value:>8.3} ms")),
            theirs.map_or("-".to_owned(), |theirs| format!(
                "{:>8.3} ms",
                percentile(theirs, 0.9)
            )),
            ratio.map_or("-".to_owned(), |ratio| format!("{ratio:.3}")),
        );
        ratios.insert(name.to_owned(), serde_json::json!(ratio));
        rows.push(serde_json::json!({
            "what": name,
            "spindle_ms": summary(ours),
            "supervisord_ms": theirs.map(|theirs| summary(theirs)),
            "ratio_p50": ratio,
        }));
    }
    println!(
        "others untouched by the reload: spindle {}, supervisord {}",
        spindle.others_untouched,
        anchor
            .as_ref()
            .map_or("-".to_owned(), |anchor| anchor.others_untouched.to_string())
    );
    println!(
        "load average (1 min) before {load_before:.2}, between {load_between:.2}, after {load_after:.2}: other work shares these cores"
    );
    let json = serde_json::json!({
        "services": SERVICES,
        "repeats": repeats,
        "rows": rows,
        "ratios_p50": ratios,
        "others_untouched": {
            "spindle": spindle.others_untouched,
            "supervisord": anchor.as_ref().map(|anchor| anchor.others_untouched),
        },
        "load_average": { "before": load_before, "between": load_between, "after": load_after },
        "anchor": "supervisor==4.3.0",
    });
    let path = bench_dir.join("operate.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write");
    println!("wrote {}", path.display());
}

struct SpindleFigures {
    status_api: Vec<f64>,
    status_cli: Vec<f64>,
    restart_api: Vec<f64>,
    restart_cli: Vec<f64>,
    reload: Vec<f64>,
    others_untouched: bool,
}

fn script(changed_seconds: u32) -> String {
    let mut script = String::from("local s = require(\"spindle\")\n");
    for idx in 0..SERVICES {
        let seconds = if idx == SERVICES / 2 {
            changed_seconds
        } else {
            3600
        };
        script.push_str(&format!(
            "s.service \"s{idx:03}\" {{ command = {{ \"sleep\", \"{seconds}\" }} }}\n"
        ));
    }
    script
}

fn measure_spindle(work: &Path, repeats: usize) -> SpindleFigures {
    let dir = work.join("spindle");
    let runtime = dir.join("runtime");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    std::fs::set_permissions(
        &runtime,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
    )
    .expect("chmod");
    let file = dir.join("graph.lua");
    std::fs::write(&file, script(3600)).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args(["run", "--events", "jsonl", "--data-dir"])
        .arg(dir.join("data"))
        .arg(&file)
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spindle starts");
    let events = read_events(&mut child);
    let target = format!("s{:03}", SERVICES / 2);
    let mut ready = 0;
    while ready < SERVICES {
        let event = events.recv().expect("events");
        if event["to"] == "ready" {
            ready += 1;
        }
    }
    let connection: serde_json::Value = loop {
        let file = std::fs::read_dir(runtime.join("spindle"))
            .expect("runtime folder")
            .flatten()
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|ext| ext == "json"));
        if let Some(file) = file {
            break serde_json::from_str(&std::fs::read_to_string(file).expect("read"))
                .expect("connection file");
        }
    };
    let mut api = Api::connect(
        connection["http"].as_str().expect("address"),
        connection["token"].as_str().expect("token"),
    );

    let mut status_api = Vec::new();
    for _ in 0..repeats * 10 {
        let started = Instant::now();
        let (status, body) = api.call("GET", "/v1/services");
        status_api.push(ms(started.elapsed()));
        assert_eq!(status, 200);
        assert!(body.len() > SERVICES * 50);
    }
    let ctl = |args: &[&str]| {
        let status = Command::new(env!("CARGO_BIN_EXE_spindle"))
            .arg("ctl")
            .args(args)
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spindle ctl");
        assert!(status.success());
    };
    let mut status_cli = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        ctl(&["status"]);
        status_cli.push(ms(started.elapsed()));
    }
    let wait_ready = |events: &mpsc::Receiver<serde_json::Value>| loop {
        let event = events.recv().expect("events");
        if event["service"] == target.as_str() && event["to"] == "ready" {
            return;
        }
    };
    let mut restart_api = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let (status, _) = api.call("POST", &format!("/v1/services/{target}/restart"));
        assert_eq!(status, 202);
        wait_ready(&events);
        restart_api.push(ms(started.elapsed()));
    }
    let mut restart_cli = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        ctl(&["restart", &target]);
        wait_ready(&events);
        restart_cli.push(ms(started.elapsed()));
    }
    let pids = |api: &mut Api| -> Vec<(String, u64)> {
        let (_, body) = api.call("GET", "/v1/services");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        value["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|service| {
                (
                    service["name"].as_str().expect("name").to_owned(),
                    service["pid"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let mut reload = Vec::new();
    let mut others_untouched = true;
    for rep in 0..repeats {
        let before = pids(&mut api);
        std::fs::write(&file, script(if rep % 2 == 0 { 3601 } else { 3600 })).expect("write");
        let started = Instant::now();
        let (status, body) = api.call("POST", "/v1/reload");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        wait_ready(&events);
        reload.push(ms(started.elapsed()));
        let after = pids(&mut api);
        others_untouched &= before
            .iter()
            .zip(&after)
            .filter(|(old, _)| old.0 != target)
            .all(|(old, new)| old == new);
    }
    let (status, _) = api.call("POST", "/v1/shutdown");
    assert_eq!(status, 202);
    while events.recv().is_ok() {}
    let _ = child.wait();
    SpindleFigures {
        status_api,
        status_cli,
        restart_api,
        restart_cli,
        reload,
        others_untouched,
    }
}

struct AnchorFigures {
    status_rpc: Vec<f64>,
    status_cli: Vec<f64>,
    restart_rpc: Vec<f64>,
    restart_cli: Vec<f64>,
    update: Vec<f64>,
    others_untouched: bool,
}

/// The Python of `.cache/venv` (made by `make setup`), with supervisor
/// 4.3.0 in it.
fn anchor_python(root: &Path) -> Result<PathBuf, String> {
    let python = root.join(".cache/venv/bin/python");
    let output = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('supervisor'))",
        ])
        .stderr(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {}: {error}; run `make setup`", python.display()))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || version != "4.3.0" {
        return Err(format!(
            "supervisor 4.3.0 is not in {} (found {version:?}); run `make setup`",
            python.display()
        ));
    }
    Ok(python)
}

fn anchor_failed(why: &str) -> ! {
    eprintln!("operate benchmark failed: the anchor (supervisord) could not run: {why}");
    std::process::exit(1)
}

fn measure_supervisord(
    python: &Path,
    root: &Path,
    work: &Path,
    repeats: usize,
) -> Result<AnchorFigures, String> {
    let output = Command::new(python)
        .arg(root.join("benches/operate_anchor.py"))
        .arg(work.join("supervisord"))
        .arg(SERVICES.to_string())
        .arg(repeats.to_string())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run benches/operate_anchor.py: {error}"))?;
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|error| {
        format!(
            "benches/operate_anchor.py printed no JSON ({error}; exit {}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    if let Some(error) = value["error"].as_str() {
        return Err(format!("benches/operate_anchor.py: {error}"));
    }
    let list = |key: &str| -> Result<Vec<f64>, String> {
        Ok(value[key]
            .as_array()
            .ok_or_else(|| format!("benches/operate_anchor.py's JSON has no {key}: {value}"))?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect())
    };
    Ok(AnchorFigures {
        status_rpc: list("status_rpc_ms")?,
        status_cli: list("status_cli_ms")?,
        restart_rpc: list("restart_rpc_ms")?,
        restart_cli: list("restart_cli_ms")?,
        update: list("update_ms")?,
        others_untouched: value["others_untouched"]
            .as_bool()
            .ok_or("benches/operate_anchor.py's JSON has no others_untouched")?,
    })
}

/// An HTTP/1.1 connection kept alive, for timing the server only.
struct Api {
    stream: BufReader<TcpStream>,
    address: String,
    token: String,
}

impl Api {
    fn connect(address: &str, token: &str) -> Api {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Api {
            stream: BufReader::new(stream),
            address: address.to_owned(),
            token: token.to_owned(),
        }
    }

    fn call(&mut self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
            self.address, self.token
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send");
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).expect("status");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status code");
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).expect("body");
        (status, body)
    }
}

fn read_events(child: &mut Child) -> mpsc::Receiver<serde_json::Value> {
    let stdout = child.stdout.take().expect("stdout");
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

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percentile(values: &[f64], quantile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * quantile).round() as usize;
    sorted[index]
}

fn summary(values: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "min": percentile(values, 0.0),
        "max": percentile(values, 1.0),
        "n": values.len(),
    })
}

fn load_average() -> f64 {
    let mut text = String::new();
    let _ =
        std::fs::File::open("/proc/loadavg").and_then(|mut file| file.read_to_string(&mut text));
    text.split_whitespace()
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::NAN)
}
