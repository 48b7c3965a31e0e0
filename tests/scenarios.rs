//! Snapshot-tested sessions: every scenario under `tests/scenarios/` (a
//! graph, a timeline and expectations in Lua) is run by the real
//! `spindle replay --transcript` binary; each must pass its expectations
//! and give the transcript in its insta snapshot
//! (`tests/snapshots/scenarios__<name>.snap`). One scenario replayed twenty
//! times gives twenty identical transcripts (time in a scenario is virtual:
//! steps are ordered by the timeline and synchronised on events). A bad
//! scenario is reported with file, line and hint. Re-bless with
//! `INSTA_UPDATE=always cargo test --test scenarios` and review the diff.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// `spindle replay FILE --transcript` in a fresh data directory: exit
/// code, stdout, stderr.
fn replay(file: &Path) -> (i32, String, String) {
    let data = tempfile::tempdir().expect("temp dir");
    let output = support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle"))
            .arg("replay")
            .arg(file)
            .arg("--transcript")
            .arg("--data-dir")
            .arg(data.path()),
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

#[test]
fn every_scenario_passes_and_matches_its_snapshot() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .expect("tests/scenarios")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "lua"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let name = file
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let (code, transcript, stderr) = replay(&file);
        assert_eq!(code, 0, "{name}:\n{transcript}\n{stderr}");
        insta::assert_snapshot!(name.as_str(), transcript);
    }
}

#[test]
fn a_scenario_replayed_twenty_times_gives_the_same_transcript() {
    let file = scenarios_dir().join("priority_flood.lua");
    let (code, first, stderr) = replay(&file);
    assert_eq!(code, 0, "{first}\n{stderr}");
    for run in 1..20 {
        let (code, again, stderr) = replay(&file);
        assert_eq!(code, 0, "run {run}: {again}\n{stderr}");
        assert_eq!(first, again, "run {run}");
    }
}

#[test]
fn a_failing_expectation_exits_1_and_a_bad_scenario_names_file_line_and_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let failing = dir.path().join("failing.lua");
    std::fs::write(
        &failing,
        r#"local s = require("spindle")
local sc = require("spindle.scenario")
s.pipeline "echo" { s.stage("upper", function(req) req.text = req.text:upper() return req end) }
sc.request "one" { pipeline = "echo", text = "hi" }
sc.request "two" { pipeline = "nope", text = "hi" }
sc.expect "one" { text = "hi" }
sc.expect "two" { outcome = "ok" }
sc.expect_order { "request one answered", "request one admitted" }
"#,
    )
    .expect("write");
    let (code, transcript, stderr) = replay(&failing);
    assert_eq!(code, 1, "{transcript}\n{stderr}");
    insta::assert_snapshot!("failing", transcript);

    let bad = dir.path().join("bad.lua");
    std::fs::write(
        &bad,
        r#"local s = require("spindle")
local sc = require("spindle.scenario")
s.pipeline "echo" { s.stage("upper", function(req) return req end) }
sc.request "one" { pipeline = "echo", text = "hi", priorty = "high" }
sc.wait { service = "db", state = "redy" }
sc.cancel "too"
sc.expect "one" { outcome = "fine" }
sc.expect_order { "db up", "request one answered" }
sc.expect "one" { outcome = "ok" }
"#,
    )
    .expect("write");
    let (code, transcript, stderr) = replay(&bad);
    assert_eq!(code, 2, "{transcript}\n{stderr}");
    assert!(transcript.is_empty(), "{transcript}");
    let stderr = stderr.replace(&dir.path().display().to_string(), "DIR");
    // `one` was declared, with a mistake: naming it again is no second error.
    assert!(!stderr.contains("no request named `one`"), "{stderr}");
    insta::assert_snapshot!("bad_scenario", stderr);
}
