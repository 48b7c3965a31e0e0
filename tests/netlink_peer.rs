//! `spindle netlink-peer` end to end, two processes over real
//! NETLINK_USERSOCK sockets: the peer plays the kernel module, the bridge
//! (`--bridge SCRIPT`) serves a real kernel's pipelines, a no-op Lua one
//! and one with a real embedding engine. Every request must get exactly one
//! well-formed answer (the peer's exit status says so).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "noop" {
  from = { s.netlink { family = "spindle" } },
  s.stage("pass", function(req) return req end),
}
s.pipeline "ingest" {
  from = { s.netlink { family = "spindle" } },
  s.stage("clean", function(req) req.text = req.text:gsub("%s+", " ") return req end),
  s.stage("embed", s.embed "embedder"),
}
"#;

fn spindle() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spindle"))
}

/// Starts the peer and reads the port it bound from its first line.
fn start_peer(args: &[&str]) -> (Child, u32, BufReader<std::process::ChildStdout>) {
    let mut peer = spindle()
        .args(["netlink-peer", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the peer");
    let mut stdout = BufReader::new(peer.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the peer's first line");
    let port = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (peer, port, stdout)
}

/// How the daemon side runs: the peer command's `--bridge`, or a normal
/// `spindle run --netlink`.
#[derive(Clone, Copy)]
enum Daemon {
    PeerBridge,
    Run,
}

fn run_against_bridge(daemon: Daemon, peer_args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("kernel.lua");
    std::fs::write(&script, SCRIPT).expect("script");
    let (mut peer, port, mut stdout) = start_peer(peer_args);
    let transport = format!("usersock:{port}");
    let mut command = spindle();
    match daemon {
        Daemon::PeerBridge => command
            .args(["netlink-peer", "--bridge"])
            .arg(&script)
            .args(["--transport", &transport]),
        Daemon::Run => command
            .arg("run")
            .arg(&script)
            .args(["--netlink", &transport, "--data-dir"])
            .arg(dir.path().join("run")),
    };
    let mut bridge = command
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the bridge");
    let status = peer.wait().expect("peer");
    let mut report = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut report).expect("report");
    // SAFETY: the bridge is our child and has not been reaped.
    unsafe { libc::kill(bridge.id() as i32, libc::SIGTERM) };
    let bridge_status = bridge.wait().expect("bridge");
    assert!(status.success(), "the peer found a problem:\n{report}");
    assert!(
        bridge_status.success(),
        "the bridge did not drain cleanly: {bridge_status}"
    );
    report
}

#[test]
fn a_noop_pipeline_answers_every_request() {
    let report = run_against_bridge(
        Daemon::PeerBridge,
        &[
            "--pipeline",
            "noop",
            "--requests",
            "3000",
            "--window",
            "32",
            "--expect-dims",
            "0",
        ],
    );
    assert!(report.contains("answered 3000  missing 0"), "{report}");
    assert!(report.contains("statuses: ok 3000"), "{report}");
}

#[test]
fn spindle_run_serves_an_embedding_pipeline_with_unit_vectors() {
    let report = run_against_bridge(
        Daemon::Run,
        &[
            "--pipeline",
            "ingest",
            "--requests",
            "60",
            "--window",
            "8",
            "--mix",
            "1:1:1",
            "--expect-dims",
            "384",
            "--deadline-ms",
            "30000",
            "--text",
            "The cat sits on the mat.",
            "--text",
            "A   dog lies on the rug.",
            "--text",
            "Stock markets fell sharply today.",
        ],
    );
    assert!(report.contains("answered 60  missing 0"), "{report}");
    assert!(report.contains("statuses: ok 60"), "{report}");
}
