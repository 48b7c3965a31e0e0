//! The journal as the kernel writes it, read back with the journal's own
//! reader: each stage of a request with `req` after it (or its error) and
//! its timing, for answered, failed and degraded requests (a snapshot);
//! and the script's `s.settings { journal = ... }`, which the kernel's
//! config overrides. A real kernel on a real script, no model needed.
//! These graphs have no service, so their event stream ends at once:
//! `Kernel::wait` must still return only after every request's records are
//! written (it did not, and about two runs in five lost the last records).

use std::path::Path;
use std::time::Duration;

use spindle_journal::{JournalConfig, JournalReader, Record};
use spindle_kernel::{Kernel, KernelConfig, KernelSource, Submission};
use spindle_scheduler::{Priority, Source};

const SCRIPT: &str = r#"local s = require("spindle")
s.pipeline "clean" {
  s.stage("upper", function(req)
    req.text = req.text:upper()
    req.length = #req.text
    return req
  end),
  s.stage("check", function(req)
    if req.text:find("BAD") then error("bad input") end
    req.checked = true
    return req
  end),
}
s.pipeline "degraded" {
  fallback = function(req, err) req.text = "from the fallback" return req end,
  s.stage("mark", function(req) req.mark = "x" return req end),
  s.stage("fail", function(req) error("always") end),
}
"#;

fn start(dir: &Path, script: &str, config: KernelConfig) -> Kernel {
    let file = dir.join("graph.lua");
    std::fs::write(&file, script).expect("write script");
    Kernel::start(KernelSource::Script(file), config).expect("the kernel starts")
}

/// SCRIPT's kernel journaling into DIR/journal, and that directory.
fn start_journaled(dir: &Path) -> (Kernel, std::path::PathBuf) {
    let journal_dir = dir.join("journal");
    let kernel = start(
        dir,
        SCRIPT,
        KernelConfig {
            journal: Some(JournalConfig::new(&journal_dir)),
            ..KernelConfig::default()
        },
    );
    (kernel, journal_dir)
}

fn submission(pipeline: &str, text: &str) -> Submission {
    Submission {
        pipeline: pipeline.to_owned(),
        text: text.to_owned(),
        priority: Priority::Medium,
        deadline: Some(Duration::from_secs(30)),
        correlation_id: None,
        source: Source::Scenario,
    }
}

/// The stage records as lines (no times), each checked against its
/// request's admission and answer: it starts after the admission and ends
/// before the answer.
fn stage_lines(records: &[Record], dir: &Path) -> String {
    let mut lines = String::new();
    for record in records {
        let Record::Stage(stage) = record else {
            continue;
        };
        let admitted_us = records
            .iter()
            .find_map(|r| match r {
                Record::Admitted(a) if a.id == stage.id => Some(a.at_us),
                _ => None,
            })
            .expect("the stage's request was admitted");
        let answered_us = records
            .iter()
            .find_map(|r| match r {
                Record::Answered(a) if a.id == stage.id => Some(a.at_us),
                _ => None,
            })
            .expect("the stage's request was answered");
        assert!(stage.at_us >= admitted_us, "{stage:?} before its admission");
        // Microseconds are rounded down on both sides.
        assert!(
            stage.at_us + stage.elapsed_us <= answered_us + 1,
            "{stage:?} ends after the answer at {answered_us}"
        );
        let fields: Vec<String> = stage
            .fields
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        lines.push_str(&format!(
            "#{} {}: text {:?} vector {:?} fields [{}] error {:?}\n",
            stage.id,
            stage.stage,
            stage.text,
            stage.vector,
            fields.join(" "),
            stage.error
        ));
    }
    lines.replace(&format!("{}/", dir.display()), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_is_journaled_with_its_output_or_its_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (kernel, journal_dir) = start_journaled(dir.path());
    // One after the other: the ids (and so the lines) are in this order.
    for (pipeline, text) in [
        ("clean", "hello  world"),
        ("clean", "a bad one"),
        ("degraded", "anything"),
    ] {
        kernel.submit(submission(pipeline, text)).await;
    }
    kernel.shutdown();
    kernel.wait().await.expect("the kernel stops");
    let reader = JournalReader::open(&journal_dir).expect("the journal reads back");
    assert!(reader.report.torn_tail.is_none());
    insta::assert_snapshot!(stage_lines(reader.latest_run(), dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_journal_setting_is_honoured_and_the_config_wins() {
    let script = "local s = require(\"spindle\")\ns.settings { journal = \"from-script\" }\n\
                  s.pipeline \"echo\" { s.stage(\"same\", function(req) return req end) }\n";
    // Honoured when the front end asks for it (as `spindle run` does).
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = start(
        dir.path(),
        script,
        KernelConfig {
            script_journal: Some(JournalConfig::new("")),
            ..KernelConfig::default()
        },
    );
    assert_eq!(
        kernel.journal_dir(),
        Some(dir.path().join("from-script").as_path())
    );
    kernel.submit(submission("echo", "one")).await;
    kernel.shutdown();
    kernel.wait().await.expect("the kernel stops");
    let reader = JournalReader::open(&dir.path().join("from-script")).expect("journal");
    let kinds: Vec<&str> = reader.latest_run().iter().map(Record::kind).collect();
    assert!(
        kinds.contains(&"admitted") && kinds.contains(&"stage") && kinds.contains(&"answered"),
        "{kinds:?}"
    );

    // The config's journal (`--journal DIR`) wins.
    let dir = tempfile::tempdir().expect("temp dir");
    let explicit = dir.path().join("explicit");
    let kernel = start(
        dir.path(),
        script,
        KernelConfig {
            journal: Some(JournalConfig::new(&explicit)),
            script_journal: Some(JournalConfig::new("")),
            ..KernelConfig::default()
        },
    );
    assert_eq!(kernel.journal_dir(), Some(explicit.as_path()));
    kernel.shutdown();
    kernel.wait().await.expect("the kernel stops");
    assert!(!dir.path().join("from-script").exists());

    // Ignored by a kernel that does not ask for it (a replay, a test).
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = start(dir.path(), script, KernelConfig::default());
    assert_eq!(kernel.journal_dir(), None);
    kernel.shutdown();
    kernel.wait().await.expect("the kernel stops");
    assert!(!dir.path().join("from-script").exists());
}

/// `Kernel::submit_then` (the netlink bridge's way in) with the journal on:
/// the answer still reaches the caller's function, once, after the journal
/// has its admission and answer; a refusal too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_handed_to_a_function_are_journaled_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (kernel, journal_dir) = start_journaled(dir.path());
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    for (pipeline, text) in [("clean", "hello"), ("no-such-pipeline", "x")] {
        let answers = answers.clone();
        let mut asked = submission(pipeline, text);
        asked.correlation_id = Some(format!("cb-{pipeline}"));
        kernel.submit_then(asked, move |answer| {
            answers.send(answer).expect("the test listens");
        });
    }
    drop(answers);
    let mut got = Vec::new();
    while let Some(answer) = answered.recv().await {
        got.push(answer);
    }
    got.sort_by(|a, b| a.correlation_id.cmp(&b.correlation_id));
    assert_eq!(got.len(), 2, "one answer each: {got:?}");
    match &got[0].outcome {
        spindle_scheduler::Outcome::Ok(answer) => assert_eq!(answer.text, "HELLO"),
        other => panic!("clean: {other:?}"),
    }
    assert_eq!(got[0].correlation_id, "cb-clean");
    match &got[1].outcome {
        spindle_scheduler::Outcome::Error(failure) => assert!(
            failure
                .message
                .contains("no pipeline named `no-such-pipeline`"),
            "{failure:?}"
        ),
        other => panic!("an unknown pipeline is an error: {other:?}"),
    }
    kernel.shutdown();
    kernel.wait().await.expect("the kernel stops");
    let reader = JournalReader::open(&journal_dir).expect("the journal reads back");
    let records = reader.latest_run();
    for answer in &got {
        let id = answer.id.0;
        assert!(
            records
                .iter()
                .any(|r| matches!(r, Record::Answered(a) if a.id == id)),
            "request {id} ({}) has its answer journaled",
            answer.correlation_id
        );
    }
}
