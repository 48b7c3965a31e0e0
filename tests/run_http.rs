//! `spindle run --http`: the binary serves a script's pipeline through the
//! embedding service the supervisor started, to a client nobody here wrote
//! (Python's urllib), and shuts down cleanly on SIGTERM. Children's pipes
//! are read with a bound (`support`), so a wedged child fails the test
//! instead of hanging it.

mod support;

use std::process::{Command, Stdio};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "ingest" {
  s.stage("clean", function(req) req.text = req.text:upper() return req end),
  s.stage("embed", s.embed "embedder"),
}
"#;

fn post(url: &str, body: &str) -> (u16, serde_json::Value) {
    support::post_json(url, body)
}

#[test]
fn pipelines_are_served_over_http_through_the_supervised_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("graph.lua");
    std::fs::write(&script, SCRIPT).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .arg("run")
        .arg(&script)
        .args(["--events", "jsonl", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spindle starts");
    let mut stderr = support::LineReader::new(child.stderr.take().expect("stderr"), "stderr");
    let base = support::served_base(&mut stderr);
    let mut events = support::LineReader::new(child.stdout.take().expect("stdout"), "events");
    loop {
        let line = events.next_line().expect("events until ready");
        let event: serde_json::Value = serde_json::from_str(&line).expect("jsonl");
        assert_ne!(event["to"], "failed", "{line}");
        if event["service"] == "embedder" && event["to"] == "ready" {
            break;
        }
    }

    let (status, answer) = post(
        &format!("{base}/v1/pipelines/ingest"),
        r#"{"text": "hello world", "priority": "high"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ok");
    assert_eq!(answer["text"], "HELLO WORLD");
    assert_eq!(answer["vector"].as_array().expect("vector").len(), 384);
    let (status, answer) = post(&format!("{base}/v1/pipelines/nope"), r#"{"text": "x"}"#);
    assert_eq!(status, 404, "{answer}");
    assert!(answer["hint"].as_str().expect("hint").contains("ingest"));

    // SAFETY: kill(2) on the child's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = support::wait(child, support::GUARD);
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = events.collect();
    assert!(
        rest.iter()
            .any(|line| line.contains("\"service\":\"embedder\"")
                && line.contains("\"to\":\"stopped\"")),
        "{rest:?}"
    );
}
