//! Runaway Lua is stopped and the host keeps serving: a stage past its
//! budget fails naming pipeline, stage, file and line; an interrupt from
//! another thread stops whatever Lua runs and the globals survive; time
//! paused by the debugger does not count against a budget.

mod common;

use std::thread;
use std::time::Duration;

use common::{ask, outcome, request, start, submit};
use spindle_scripting::{RunEventKind, RunOutcome, StageFailure, Stopped};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
calls = 0
s.pipeline "spin" {
  s.stage("count", function(req) calls = calls + 1 return req end),
  s.stage("loop", { budget = "50ms" }, function(req)
    while true do end
  end),
}
s.pipeline "stubborn" {
  budget = "30ms",
  s.stage("retry", function(req)
    while true do pcall(function() while true do end end) end
  end),
}
s.pipeline "forever" {
  budget = "1h",
  s.stage("count", function(req) calls = calls + 1 return req end),
  s.stage("embed", s.embed "embedder"),
  s.stage("loop", function(req)
    while true do end
  end),
}
s.pipeline "nested" {
  s.stage("wrapped", { budget = "30ms" }, function(req)
    local spin = coroutine.wrap(function() while true do end end)
    spin()
  end),
}
s.pipeline "resumed" {
  s.stage("inner", { budget = "30ms" }, function(req)
    local co = coroutine.create(function() coroutine.yield(1) while true do end end)
    local _, first = coroutine.resume(co)
    req.first = first
    coroutine.resume(co)
  end),
}
s.pipeline "generator" {
  s.stage("gen", function(req)
    local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
    req.sum = gen() + gen() + gen()
    local ok, err = pcall(coroutine.wrap(function() error("inner failure") end))
    req.err = err
  end),
}
s.pipeline "calls" { s.stage("read", function(req) req.calls = calls return req end) }
s.pipeline "patient" {
  s.stage("embed", s.embed "embedder"),
  s.stage("quick", { budget = "100ms" }, function(req)
    req.seen = true
    return req
  end),
}
"#;

fn failure(outcome: RunOutcome) -> StageFailure {
    match outcome {
        RunOutcome::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn calls(fixture: &common::Fixture, id: u64) -> String {
    match outcome(&submit(&fixture.host, request(id, "calls", ""))) {
        RunOutcome::Answered(answer) => answer.fields["calls"].clone(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn a_runaway_stage_is_stopped_by_its_budget_and_the_next_request_is_answered() {
    let fixture = start(SCRIPT);
    let failure = failure(outcome(&submit(&fixture.host, request(1, "spin", "x"))));
    assert_eq!(
        (failure.pipeline.as_str(), failure.stage.as_str()),
        ("spin", "loop")
    );
    assert_eq!(failure.file, fixture.file.display().to_string());
    assert_eq!(failure.line, 7);
    assert_eq!(
        failure.stopped,
        Some(Stopped::Budget(Duration::from_millis(50)))
    );
    let shown = failure.to_string();
    assert!(
        shown.starts_with(&format!(
            "pipeline `spin`, stage `loop` failed at {}:7: ran past its budget of 50ms",
            fixture.file.display()
        )),
        "{shown}"
    );
    assert_eq!(calls(&fixture, 2), "1");
}

#[test]
fn a_stage_that_catches_the_stop_with_pcall_is_stopped_all_the_same() {
    let fixture = start(SCRIPT);
    let failure = failure(outcome(&submit(&fixture.host, request(1, "stubborn", "x"))));
    assert_eq!(failure.stage, "retry");
    assert_eq!(
        failure.stopped,
        Some(Stopped::Budget(Duration::from_millis(30)))
    );
    assert_eq!(failure.line, 13);
    assert_eq!(calls(&fixture, 2), "0");
}

#[test]
fn a_runaway_inside_the_stages_own_coroutine_is_stopped_too() {
    let fixture = start(SCRIPT);
    for (id, pipeline, stage) in [(1, "nested", "wrapped"), (2, "resumed", "inner")] {
        let failure = failure(outcome(&submit(&fixture.host, request(id, pipeline, "x"))));
        assert_eq!(failure.stage, stage);
        assert_eq!(
            failure.stopped,
            Some(Stopped::Budget(Duration::from_millis(30)))
        );
    }
    // Coroutines keep their Lua semantics under the host's tracking.
    let RunOutcome::Answered(answer) =
        outcome(&submit(&fixture.host, request(3, "generator", "x")))
    else {
        panic!("generator failed");
    };
    assert_eq!(answer.fields["sum"], "6");
    let err = &answer.fields["err"];
    assert!(err.ends_with(": inner failure"), "{err}");
    assert!(err.contains("seam.lua:"), "{err}");
    assert_eq!(calls(&fixture, 4), "0");
}

#[test]
fn an_interrupt_from_another_thread_stops_a_runaway_and_the_globals_survive() {
    let fixture = start(SCRIPT);
    let interrupter = fixture.host.interrupter();
    assert!(!interrupter.interrupt(), "no Lua runs yet");
    let running = submit(&fixture.host, request(1, "forever", "x"));
    // Once the embed call arrives, the only Lua left to run is the loop.
    assert_eq!(fixture.embed_calls.recv().expect("embed call"), 1);
    let from_outside = thread::spawn(move || {
        // Interrupting needs Lua running: try until the loop has started.
        while !interrupter.interrupt() {
            thread::yield_now();
        }
    });
    let failure = failure(outcome(&running));
    from_outside.join().expect("the interrupting thread");
    assert_eq!(failure.stopped, Some(Stopped::Interrupted));
    assert_eq!(
        (failure.stage.as_str(), failure.message.as_str()),
        ("loop", "interrupted")
    );
    assert_eq!(failure.line, 21);
    // The increment of the first stage is still there: same state, same
    // globals.
    assert_eq!(calls(&fixture, 2), "1");
}

#[test]
fn the_interrupter_and_the_host_handle_cross_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<spindle_scripting::Interrupter>();
    shareable::<spindle_scripting::ScriptHost>();
}

#[test]
fn time_paused_by_the_debugger_does_not_count_against_the_budget() {
    let fixture = start(SCRIPT);
    let host = &fixture.host;
    let paused = submit(host, request(1, "patient", "hold"));
    fixture.embed_calls.recv().expect("embed call");
    ask(|reply| host.pause(1, reply)).expect("armed");
    fixture.effects.release();
    let event = fixture.events.recv().expect("paused");
    assert!(matches!(event.kind, RunEventKind::Paused(_)));
    // Not synchronisation: the paused time must exceed the 100 ms budget
    // for the test to mean anything, and sleeping longer changes nothing.
    thread::sleep(Duration::from_millis(250));
    ask(|reply| host.resume(1, reply)).expect("resumed");
    let RunOutcome::Answered(answer) = outcome(&paused) else {
        panic!("the paused stage was stopped by its budget");
    };
    assert_eq!(answer.fields["seen"], "true");
}
