//! Sessions end to end: a real `spindle run --journal` serving the real
//! model over HTTP to Python's urllib records every request, service event
//! and operation; `spindle journal` reads it back; `spindle replay` runs it
//! again on a fresh kernel, gives the same normalised transcript every
//! time (an insta snapshot), and reports what an edited script changes.
//! Children are synchronised on their output lines (`support`), never on
//! sleeps.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "ingest" {
  s.stage("clean", function(req)
    req.text = req.text:upper()
    req.words = select(2, req.text:gsub("%S+", ""))
    return req
  end),
  s.stage("check", function(req)
    if req.text:find("BAD") then error("bad input") end
    return req
  end),
  s.stage("embed", s.embed "embedder"),
}
"#;

fn post(url: &str, body: &str) -> (u16, serde_json::Value) {
    support::post_json(url, body)
}

fn spindle(args: &[&str], dir: &Path) -> (i32, String, String) {
    let output = support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle"))
            .args(args)
            .current_dir(dir),
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

/// Waits on the jsonl events until `service` reaches `state`.
fn wait_for(events: &mut support::LineReader, service: &str, state: &str) {
    loop {
        let line = events.next_line().expect("events until the state");
        let event: serde_json::Value = serde_json::from_str(&line).expect("jsonl");
        assert_ne!(event["to"], "failed", "{line}");
        if event["service"] == service && event["to"] == state {
            return;
        }
    }
}

/// Runs SCRIPT with a journal in `dir/journal`: three requests (one fails
/// in a Lua stage), a restart of the embedder through the API, one more
/// request, then SIGTERM.
fn record_a_session(dir: &Path) {
    std::fs::write(dir.join("graph.lua"), SCRIPT).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args([
            "run",
            "graph.lua",
            "--events",
            "jsonl",
            "--http",
            "127.0.0.1:0",
        ])
        .args(["--journal", "journal", "--data-dir", "data"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spindle starts");
    let mut stderr = support::LineReader::new(child.stderr.take().expect("stderr"), "stderr");
    let base = support::served_base(&mut stderr);
    let mut events = support::LineReader::new(child.stdout.take().expect("stdout"), "events");
    wait_for(&mut events, "embedder", "ready");
    let ingest = format!("{base}/v1/pipelines/ingest");
    let (status, answer) = post(&ingest, r#"{"text": "hello world", "priority": "high"}"#);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&ingest, r#"{"text": "a bad one"}"#);
    assert_eq!(answer["stage"], "check", "{status} {answer}");
    let (status, answer) = post(
        &ingest,
        r#"{"text": "third request here", "priority": "low", "correlation_id": "c-3"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(&format!("{base}/v1/services/embedder/restart"), "");
    assert!(status < 300, "{status} {answer}");
    wait_for(&mut events, "embedder", "stopped");
    wait_for(&mut events, "embedder", "ready");
    let (status, answer) = post(&ingest, r#"{"text": "after the restart"}"#);
    assert_eq!(status, 200, "{answer}");
    // SAFETY: kill(2) on the child's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = support::wait(child, support::GUARD);
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_journaled_session_reads_back_and_replays_to_the_same_transcript() {
    let dir = tempfile::tempdir().expect("temp dir");
    record_a_session(dir.path());

    // Every request is in the journal with its answer and its stages.
    let (code, export, stderr) = spindle(&["journal", "export", "journal"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let records: Vec<serde_json::Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let of_kind = |kind: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["kind"] == kind).collect()
    };
    let admitted = of_kind("admitted");
    let answered = of_kind("answered");
    assert_eq!(admitted.len(), 4);
    assert_eq!(answered.len(), 4);
    for request in &admitted {
        assert_eq!(
            answered.iter().filter(|a| a["id"] == request["id"]).count(),
            1,
            "one answer for {request}"
        );
    }
    let outcomes: Vec<&str> = answered
        .iter()
        .map(|a| a["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["ok", "error", "ok", "ok"]);
    assert_eq!(answered[0]["vector"].as_array().expect("vector").len(), 384);
    assert_eq!(answered[1]["stage"], "check");
    // Three stages for each ok request, two for the failed one (the
    // failing stage with its error), each with `req` after it.
    let stages = of_kind("stage");
    assert_eq!(stages.len(), 11);
    let stages_of = |id: &serde_json::Value| -> Vec<&serde_json::Value> {
        stages.iter().copied().filter(|s| &s["id"] == id).collect()
    };
    let first = stages_of(&admitted[0]["id"]);
    let names: Vec<&str> = first
        .iter()
        .map(|s| s["stage"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["clean", "check", "embed"]);
    assert_eq!(first[0]["text"], "HELLO WORLD");
    assert_eq!(first[0]["fields"]["words"], "2");
    assert!(first[0]["vector"].is_null());
    assert_eq!(first[2]["vector"].as_array().expect("vector").len(), 384);
    assert!(first.iter().all(|s| s["error"].is_null()));
    let failed = stages_of(&admitted[1]["id"]);
    assert_eq!(failed.len(), 2);
    let error = failed[1]["error"]
        .as_str()
        .expect("the check stage's error");
    assert!(error.contains("graph.lua:10: bad input"), "{error}");
    assert_eq!(admitted[2]["correlation_id"], "c-3");
    assert_eq!(admitted[2]["priority"], "low");
    let operations = of_kind("operation");
    assert_eq!(operations.len(), 1);
    assert_eq!(operations[0]["operation"], "restart");
    assert!(
        of_kind("service")
            .iter()
            .any(|s| s["service"] == "embedder" && s["to"] == "ready")
    );
    let (code, stats, stderr) = spindle(&["journal", "stats", "journal"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stats.contains("requests: 4 admitted, 4 answered, 0 without an answer"),
        "{stats}"
    );
    assert!(stats.contains("torn tail: none"), "{stats}");
    let (code, show, _) = spindle(&["journal", "show", "journal"], dir.path());
    assert_eq!(code, 0);
    assert_eq!(show.lines().count(), records.len());
    assert!(
        show.contains("clean took") && show.contains("-> text \"HELLO WORLD\" words=\"2\""),
        "{show}"
    );
    assert!(show.contains("vector[384]"), "{show}");
    assert!(show.contains("failed: "), "{show}");

    // Replayed five times as fast as possible, and once at the recorded times:
    // the same transcript each time, every answer the same as recorded.
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "journal", "--transcript"];
        args.extend_from_slice(extra);
        let (code, transcript, stderr) = spindle(&args, dir.path());
        assert_eq!(code, 0, "{transcript}\n{stderr}");
        transcript
    };
    let first = replay(&["--fast", "--data-dir", "replay-0"]);
    for run in 1..5 {
        let again = replay(&["--fast", "--data-dir", &format!("replay-{run}")]);
        assert_eq!(first, again, "replay {run}");
    }
    let timed = replay(&["--data-dir", "replay-timed"]);
    assert_eq!(first, timed);
    insta::assert_snapshot!(first);
}

#[test]
fn a_replay_on_an_edited_script_reports_what_changed_and_a_torn_tail_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    record_a_session(dir.path());

    // The clean stage now lower-cases: every ok answer's text differs.
    let edited = SCRIPT.replace("req.text:upper()", "req.text:lower()");
    std::fs::write(dir.path().join("edited.lua"), edited).expect("write");
    let (code, transcript, stderr) = spindle(
        &[
            "replay",
            "journal",
            "--fast",
            "--transcript",
            "--script",
            "edited.lua",
            "--data-dir",
            "replay",
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{transcript}\n{stderr}");
    insta::assert_snapshot!(transcript);

    // A crash in the middle of the last write: the journal's last record
    // is cut short. It is reported and left out; nothing before it is lost.
    let segment = dir.path().join("journal/journal-000001.spj");
    let bytes = std::fs::read(&segment).expect("segment");
    std::fs::write(&segment, &bytes[..bytes.len() - 3]).expect("truncate");
    let (code, stats, stderr) = spindle(&["journal", "stats", "journal"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stats.contains("requests: 4 admitted, 4 answered"),
        "{stats}"
    );
    assert!(stats.contains("byte(s) dropped at byte"), "{stats}");
    assert!(stderr.contains("cut short by a crash"), "{stderr}");
}

/// Posts N requests from N threads; prints each answered text (flushed).
const FLOOD: &str = r#"
import sys, json, threading, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
def post(idx):
    body = json.dumps({"text": f"r{idx}"}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            with lock:
                print(f"r{idx}", flush=True)
    except Exception:
        pass
threads = [threading.Thread(target=post, args=(idx,)) for idx in range(count)]
for thread in threads: thread.start()
for thread in threads: thread.join()
"#;

#[test]
fn a_journal_cut_by_sigkill_reads_back_whole_and_replays() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("graph.lua"),
        "local s = require(\"spindle\")\ns.pipeline \"echo\" { s.stage(\"upper\", function(req) req.text = req.text:upper() return req end) }\n",
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args(["run", "graph.lua", "--http", "127.0.0.1:0"])
        .args(["--journal", "journal", "--data-dir", "data"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spindle starts");
    let mut stderr = support::LineReader::new(child.stderr.take().expect("stderr"), "stderr");
    let base = support::served_base(&mut stderr);
    std::thread::spawn(move || while stderr.next_line().is_some() {});
    let mut flood = Command::new("python3")
        .args(["-c", FLOOD, &format!("{base}/v1/pipelines/echo"), "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python starts");
    let mut lines = std::io::BufReader::new(flood.stdout.take().expect("stdout")).lines();
    for _ in 0..20 {
        lines.next().expect("an answer").expect("utf-8");
    }
    // Killed while requests are admitted and answered.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    drop(lines);
    let _ = flood.kill();
    let _ = flood.wait();

    // Whatever the kill left reads back: whole records only, no damage
    // before the end, every answer joined to its admission.
    let (code, export, stderr) = spindle(&["journal", "export", "journal"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("corrupt"), "{stderr}");
    let records: Vec<serde_json::Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(records[0]["kind"], "header");
    let admitted: std::collections::HashSet<u64> = records
        .iter()
        .filter(|r| r["kind"] == "admitted")
        .map(|r| r["id"].as_u64().expect("id"))
        .collect();
    assert!(!admitted.is_empty());
    for answered in records.iter().filter(|r| r["kind"] == "answered") {
        assert!(
            admitted.contains(&answered["id"].as_u64().expect("id")),
            "{answered}"
        );
    }
    // And it replays: every recorded answer the same, the rest reported.
    let (code, transcript, stderr) = spindle(
        &[
            "replay",
            "journal",
            "--fast",
            "--transcript",
            "--data-dir",
            "replay",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{transcript}\n{stderr}");
    assert!(transcript.contains(" 0 differ"), "{transcript}");
}
