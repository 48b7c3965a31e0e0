//! The debugger's seam on the script host, driven directly: pause one
//! request at its next line while the others are answered, read its stack,
//! locals, upvalues and request fields, resume it; and the errors for
//! requests that cannot be paused.

mod common;

use common::{ask, outcome, request, runs, start, submit};
use spindle_scripting::{
    PausePoint, PauseReason, RunEventKind, RunOutcome, RunState, ScriptError, Variable,
};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
local greeting = "hello"
s.pipeline "greet" {
  s.stage("embed", s.embed "embedder"),
  s.stage("shape", function(req)
    local words = select(2, req.text:gsub("%S+", ""))
    req.words = words
    req.greeting = greeting .. ", " .. req.text
    req.dims = #req.vector
    return req
  end),
}
s.pipeline "peek" {
  s.stage("embed", s.embed "embedder"),
  s.stage("look", function(req)
    req.debug_visible = debug ~= nil or package.loaded.debug ~= nil
    local sum, count = 0, 0
    for i, x in ipairs(req.vector) do sum = sum + x; count = i end
    req.sum, req.count = sum, count
    req.joined = table.concat(req.vector, ",")
    req.vector[4] = 4
    return req
  end),
}
"#;

fn find<'a>(variables: &'a [Variable], name: &str) -> &'a Variable {
    variables
        .iter()
        .find(|variable| variable.name == name)
        .unwrap_or_else(|| panic!("no `{name}` in {variables:#?}"))
}

#[test]
fn a_paused_request_stays_paused_while_200_others_are_answered_then_resumes_correctly() {
    let fixture = start(SCRIPT);
    let host = &fixture.host;
    let file = fixture.file.display().to_string();

    // Request 1 waits in the embed stage; the pause applies when its next
    // Lua stage starts.
    let paused = submit(host, request(1, "greet", "hold me"));
    assert_eq!(fixture.embed_calls.recv().expect("embed call"), 1);
    ask(|reply| host.pause(1, reply)).expect("pause armed");
    let live = runs(host);
    assert_eq!(live.len(), 1);
    assert_eq!(
        (live[0].stage.as_str(), &live[0].state),
        ("embed", &RunState::Waiting)
    );
    fixture.effects.release();

    let event = fixture.events.recv().expect("paused event");
    let point = PausePoint {
        reason: PauseReason::Requested,
        file: file.clone(),
        line: 7,
    };
    assert_eq!(event.request_id, 1);
    assert_eq!(
        (event.pipeline.as_str(), event.stage.as_str()),
        ("greet", "shape")
    );
    assert_eq!(event.kind, RunEventKind::Paused(point.clone()));

    // 200 others pass the same lines of the same stage and are answered.
    let others: Vec<_> = (100..300u64)
        .map(|id| submit(host, request(id, "greet", &format!("request {id}"))))
        .collect();
    for (idx, receiver) in others.iter().enumerate() {
        let RunOutcome::Answered(answer) = outcome(receiver) else {
            panic!("request {} failed", idx + 100);
        };
        assert_eq!(
            answer.fields.get("greeting").map(String::as_str),
            Some(format!("hello, request {}", idx + 100).as_str())
        );
    }
    assert!(paused.try_recv().is_err(), "request 1 is still paused");
    let live = runs(host);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].state, RunState::Paused(point));
    assert_eq!(live[0].stage, "shape");

    // Its stack: the real script path and line, locals, upvalues, request.
    let stack = ask(|reply| host.stack(1, reply)).expect("stack");
    let top = &stack.frames[0];
    assert_eq!(
        (top.function.as_str(), top.file.as_str(), top.line),
        ("stage shape", file.as_str(), 7)
    );
    let req = find(&top.locals, "req");
    assert_eq!(req.type_name, "table");
    assert!(req.value.contains("text = \"hold me\""), "{}", req.value);
    assert!(req.value.contains("id = 1"), "{}", req.value);
    let greeting = find(&top.upvalues, "greeting");
    assert_eq!(greeting.value, "\"hello\"");
    assert_eq!(find(&stack.request, "correlation_id").value, "\"c-1\"");
    assert_eq!(find(&stack.request, "priority").value, "\"medium\"");
    let vector = find(&stack.request, "vector");
    assert_eq!(vector.type_name, "vector");
    assert_eq!(vector.value, "vector(3) [1.0, 2.0, 3.0]");

    // Tables and vectors expand while the request stays paused.
    let fields = ask(|reply| {
        host.variables(1, req.children.expect("req expands"), reply);
    })
    .expect("req's fields");
    assert_eq!(find(&fields, "text").value, "\"hold me\"");
    let numbers = ask(|reply| {
        host.variables(1, vector.children.expect("vector expands"), reply);
    })
    .expect("the vector's numbers");
    let shown: Vec<(&str, &str)> = numbers
        .iter()
        .map(|number| (number.name.as_str(), number.value.as_str()))
        .collect();
    assert_eq!(shown, [("[1]", "1.0"), ("[2]", "2.0"), ("[3]", "3.0")]);

    ask(|reply| host.resume(1, reply)).expect("resumed");
    let RunOutcome::Answered(answer) = outcome(&paused) else {
        panic!("request 1 failed after resuming");
    };
    assert_eq!(answer.text, "hold me");
    assert_eq!(answer.vector, Some(vec![1.0, 2.0, 3.0]));
    assert_eq!(
        answer.fields.get("greeting").map(String::as_str),
        Some("hello, hold me")
    );
    assert_eq!(answer.fields.get("words").map(String::as_str), Some("2"));
    assert_eq!(answer.fields.get("dims").map(String::as_str), Some("3"));
    let resumed = fixture.events.recv().expect("resumed event");
    assert_eq!(
        (resumed.request_id, resumed.kind),
        (1, RunEventKind::Resumed)
    );
    assert!(runs(host).is_empty());
}

#[test]
fn scripts_cannot_reach_the_debug_library_and_read_the_vector_like_a_list() {
    let fixture = start(SCRIPT);
    let RunOutcome::Answered(answer) = outcome(&submit(&fixture.host, request(1, "peek", "x")))
    else {
        panic!("peek failed");
    };
    assert_eq!(answer.fields["debug_visible"], "false");
    assert_eq!(
        (
            answer.fields["sum"].as_str(),
            answer.fields["count"].as_str()
        ),
        ("6", "3")
    );
    assert_eq!(answer.fields["joined"], "1.0,2.0,3.0");
    assert_eq!(answer.vector, Some(vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn pausing_an_unknown_or_finished_request_is_a_clear_error() {
    let fixture = start(SCRIPT);
    let host = &fixture.host;
    let error = ask(|reply| host.pause(404, reply)).expect_err("unknown");
    assert!(
        matches!(error, ScriptError::UnknownRequest { request_id: 404 }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "no request 404 is in flight on the script host: it has finished or never started \
         (ScriptHost::runs lists the live ones)"
    );

    assert!(matches!(
        outcome(&submit(host, request(5, "greet", "done"))),
        RunOutcome::Answered(_)
    ));
    let error = ask(|reply| host.pause(5, reply)).expect_err("finished");
    assert!(
        matches!(error, ScriptError::UnknownRequest { request_id: 5 }),
        "{error:?}"
    );
    let error = ask(|reply| host.stack(5, reply)).expect_err("finished");
    assert!(
        matches!(error, ScriptError::UnknownRequest { .. }),
        "{error:?}"
    );
}

#[test]
fn a_request_that_is_not_paused_has_no_stack_and_cannot_be_resumed() {
    let fixture = start(SCRIPT);
    let host = &fixture.host;
    let waiting = submit(host, request(2, "greet", "hold on"));
    assert_eq!(fixture.embed_calls.recv().expect("embed call"), 2);
    let error = ask(|reply| host.stack(2, reply)).expect_err("not paused");
    assert!(
        matches!(error, ScriptError::NotPaused { request_id: 2 }),
        "{error:?}"
    );
    let error = ask(|reply| host.resume(2, reply)).expect_err("not paused");
    assert!(matches!(error, ScriptError::NotPaused { .. }), "{error:?}");

    // A pause asked for and withdrawn before it was reached never stops it.
    ask(|reply| host.pause(2, reply)).expect("armed");
    ask(|reply| host.resume(2, reply)).expect("withdrawn");
    fixture.effects.release();
    assert!(matches!(outcome(&waiting), RunOutcome::Answered(_)));
    assert!(fixture.events.try_recv().is_err(), "no pause happened");
}

#[test]
fn cancelling_a_paused_request_answers_cancelled_and_forgets_it() {
    let fixture = start(SCRIPT);
    let host = &fixture.host;
    let paused = submit(host, request(3, "greet", "hold it"));
    fixture.embed_calls.recv().expect("embed call");
    ask(|reply| host.pause(3, reply)).expect("armed");
    fixture.effects.release();
    let event = fixture.events.recv().expect("paused");
    assert!(matches!(event.kind, RunEventKind::Paused(_)));
    host.cancel(3);
    assert_eq!(outcome(&paused), RunOutcome::Cancelled);
    assert!(runs(host).is_empty());
    // The host goes on serving.
    assert!(matches!(
        outcome(&submit(host, request(4, "greet", "after"))),
        RunOutcome::Answered(_)
    ));
}
