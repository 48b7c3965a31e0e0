//! The debugger core on a real script host: breakpoints bind to lines with
//! code, stop only the requests they should (conditions naming `req`, hit
//! counts), logpoints print; steps cross stages; a set variable changes
//! the answer; exception and function breakpoints; a pause reaches a
//! request busy in a loop; and the hook policy: which coroutines carry
//! which hook.

mod common;

use common::{Fixture, ask, outcome, request, start, submit};
use spindle_scripting::{
    DebugCommand, DebugEvent, EvaluateContext, ExceptionFilter, FunctionBreakpoint, OutputCategory,
    Page, RunOutcome, ScopeKind, SourceBreakpoint, StepKind, Stop, StopReason,
};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }

local function shout(text)
  return text:upper()
end

local function unused(x)
  return x + 1
end

s.pipeline "ingest" {
  s.stage("clean", function(req)
    local text = req.text:gsub("%s+", " ")

    req.text = text
    return req
  end),
  s.stage("embed", s.embed "embedder"),
  s.stage("tag", function(req)
    local loud = shout(req.text)
    req.loud = loud
    req.dims = #req.vector
    return req
  end),
}

s.pipeline "fragile" {
  s.stage("boom", function(req)
    local why = "no " .. req.text
    error(why)
  end),
}

s.pipeline "cushioned" {
  s.stage("boom", function(req)
    error("soft " .. req.text)
  end),
  fallback = function(req, err) req.text = "fallback" return req end,
}

s.pipeline "spin" {
  s.stage("loop", function(req)
    local n = 0
    while req.text ~= "stop" do
      n = n + 1
    end
    return req
  end),
}
"#;

/// Line numbers of SCRIPT.
const CLEAN_FIRST: u32 = 14;
const CLEAN_BLANK: u32 = 15;
const TAG_FIRST: u32 = 21;
const SHOUT_BODY: u32 = 5;
const UNUSED_BODY: u32 = 9;

fn debug<T: Send + 'static>(
    fixture: &Fixture,
    command: impl FnOnce(spindle_scripting::DebugReply<T>) -> DebugCommand,
) -> T {
    ask(|reply| fixture.host.debug(command(reply))).expect("the debugger answers")
}

fn breakpoints(
    fixture: &Fixture,
    list: Vec<SourceBreakpoint>,
) -> Vec<spindle_scripting::BreakpointStatus> {
    let file = fixture.file.display().to_string();
    debug(fixture, |reply| DebugCommand::SetBreakpoints {
        file,
        breakpoints: list,
        reply,
    })
}

fn at(line: u32) -> SourceBreakpoint {
    SourceBreakpoint {
        line,
        ..SourceBreakpoint::default()
    }
}

fn next_stop(fixture: &Fixture) -> Stop {
    loop {
        match fixture
            .debug_events
            .recv_timeout(common::PATIENCE)
            .expect("a debug event")
        {
            DebugEvent::Stopped(stop) => return stop,
            DebugEvent::Continued { .. } | DebugEvent::Output(_) => {}
        }
    }
}

fn answered(receiver: &std::sync::mpsc::Receiver<RunOutcome>) -> spindle_scripting::PipelineAnswer {
    match outcome(receiver) {
        RunOutcome::Answered(answer) => answer,
        other => panic!("not answered: {other:?}"),
    }
}

fn resume(fixture: &Fixture, id: u64) {
    debug(fixture, |reply| DebugCommand::Continue {
        request_id: Some(id),
        reply,
    });
}

fn logpoints(fixture: &Fixture) -> Vec<String> {
    let mut logged = Vec::new();
    while let Ok(event) = fixture.debug_events.try_recv() {
        if let DebugEvent::Output(output) = event
            && output.category == OutputCategory::Logpoint
        {
            logged.push(output.text);
        }
    }
    logged
}

#[test]
fn breakpoints_bind_to_lines_with_code_and_say_why_not() {
    let fixture = start(SCRIPT);
    let statuses = breakpoints(
        &fixture,
        vec![
            at(CLEAN_FIRST),
            at(CLEAN_BLANK),
            at(1),
            at(400),
            SourceBreakpoint {
                line: TAG_FIRST,
                hit_condition: Some("~ 3".to_owned()),
                ..SourceBreakpoint::default()
            },
        ],
    );
    let shown: Vec<(bool, Option<u32>, Option<&str>)> = statuses
        .iter()
        .map(|status| (status.verified, status.line, status.message.as_deref()))
        .collect();
    insta::assert_debug_snapshot!(shown);
}

#[test]
fn a_condition_on_req_stops_only_the_matching_request_and_hit_counts_and_logpoints_work() {
    let fixture = start(SCRIPT);
    debug(&fixture, |reply| DebugCommand::Attach { reply });
    breakpoints(
        &fixture,
        vec![
            SourceBreakpoint {
                line: CLEAN_FIRST,
                condition: Some(r#"req.text:find("cat")"#.to_owned()),
                ..SourceBreakpoint::default()
            },
            SourceBreakpoint {
                line: TAG_FIRST,
                log_message: Some("tagging {req.text} ({#req.text} chars)".to_owned()),
                ..SourceBreakpoint::default()
            },
        ],
    );
    // A dog passes; a cat stops at the condition's line.
    let dog = submit(&fixture.host, request(1, "ingest", "a  dog"));
    assert_eq!(answered(&dog).fields["loud"], "A DOG");
    let mut logged = logpoints(&fixture);
    let cat = submit(&fixture.host, request(2, "ingest", "a  cat"));
    let stop = next_stop(&fixture);
    assert_eq!(
        (stop.request_id, stop.reason, stop.line, stop.stage.as_str()),
        (2, StopReason::Breakpoint, CLEAN_FIRST, "clean")
    );
    // Others flow while it is stopped.
    let other = submit(&fixture.host, request(3, "ingest", "a  bird"));
    assert_eq!(answered(&other).fields["loud"], "A BIRD");
    resume(&fixture, 2);
    assert_eq!(answered(&cat).fields["loud"], "A CAT");

    // The logpoint printed for every request and stopped none.
    logged.extend(logpoints(&fixture));
    assert_eq!(
        logged,
        [
            "tagging a dog (5 chars)\n",
            "tagging a bird (6 chars)\n",
            "tagging a cat (5 chars)\n"
        ]
    );

    // A hit count: stops at the third request only.
    breakpoints(
        &fixture,
        vec![SourceBreakpoint {
            line: TAG_FIRST,
            hit_condition: Some("3".to_owned()),
            ..SourceBreakpoint::default()
        }],
    );
    for id in 10..12 {
        answered(&submit(&fixture.host, request(id, "ingest", "x")));
    }
    let third = submit(&fixture.host, request(12, "ingest", "third"));
    assert_eq!(next_stop(&fixture).request_id, 12);
    resume(&fixture, 12);
    answered(&third);
}

#[test]
fn steps_cross_stages_and_a_set_variable_changes_the_answer() {
    let fixture = start(SCRIPT);
    debug(&fixture, |reply| DebugCommand::Attach { reply });
    breakpoints(&fixture, vec![at(CLEAN_FIRST + 2)]);
    let run = submit(&fixture.host, request(7, "ingest", "quiet  please"));
    let stop = next_stop(&fixture);
    assert_eq!(stop.line, CLEAN_FIRST + 2);

    // Scopes: Locals holds `text`; Request holds the request's fields.
    let scopes = debug(&fixture, |reply| DebugCommand::Scopes {
        request_id: 7,
        frame: 0,
        reply,
    });
    let kinds: Vec<ScopeKind> = scopes.iter().map(|scope| scope.kind).collect();
    assert_eq!(
        kinds,
        [
            ScopeKind::Locals,
            ScopeKind::Upvalues,
            ScopeKind::Request,
            ScopeKind::Globals
        ]
    );
    let locals = debug(&fixture, |reply| DebugCommand::Variables {
        request_id: 7,
        reference: scopes[0].variables,
        page: Page::default(),
        reply,
    });
    assert!(
        locals
            .iter()
            .any(|v| v.name == "text" && v.value == "\"quiet please\""),
        "{locals:?}"
    );
    let evaluated = debug(&fixture, |reply| DebugCommand::Evaluate {
        request_id: Some(7),
        frame: 0,
        expression: "#text .. ' ' .. req.priority".to_owned(),
        context: EvaluateContext::Watch,
        reply,
    });
    assert_eq!(evaluated.value, "\"12 medium\"");
    // Paging through the request's fields.
    let page = debug(&fixture, |reply| DebugCommand::Variables {
        request_id: 7,
        reference: scopes[2].variables,
        page: Page {
            start: 1,
            count: Some(2),
        },
        reply,
    });
    assert_eq!(page.len(), 2);

    // Change req.text: the answer follows.
    let set = debug(&fixture, |reply| DebugCommand::SetVariable {
        request_id: 7,
        reference: scopes[2].variables,
        name: "text".to_owned(),
        value: r#""changed by the debugger""#.to_owned(),
        reply,
    });
    assert_eq!(set.value, "\"changed by the debugger\"");
    // The local `text` is assigned to req.text on the next line: set it too.
    debug(&fixture, |reply| DebugCommand::SetVariable {
        request_id: 7,
        reference: scopes[0].variables,
        name: "text".to_owned(),
        value: "req.text".to_owned(),
        reply,
    });

    // Step over to `return req`, then out of the stage: the next stop is
    // the first line of the next Lua stage (past the embed stage).
    debug(&fixture, |reply| DebugCommand::Step {
        request_id: 7,
        kind: StepKind::Over,
        reply,
    });
    let stop = next_stop(&fixture);
    assert_eq!(
        (stop.reason, stop.line),
        (StopReason::Step, CLEAN_FIRST + 3)
    );
    debug(&fixture, |reply| DebugCommand::Step {
        request_id: 7,
        kind: StepKind::Out,
        reply,
    });
    let stop = next_stop(&fixture);
    assert_eq!(
        (stop.reason, stop.stage.as_str(), stop.line),
        (StopReason::Step, "tag", TAG_FIRST)
    );
    // Step in: into `shout`.
    debug(&fixture, |reply| DebugCommand::Step {
        request_id: 7,
        kind: StepKind::In,
        reply,
    });
    let stop = next_stop(&fixture);
    assert_eq!((stop.reason, stop.line), (StopReason::Step, SHOUT_BODY));
    resume(&fixture, 7);
    let answer = answered(&run);
    assert_eq!(answer.text, "changed by the debugger");
    assert_eq!(answer.fields["loud"], "CHANGED BY THE DEBUGGER");
}

#[test]
fn exception_breakpoints_stop_on_errors_all_or_only_unhandled() {
    let fixture = start(SCRIPT);
    debug(&fixture, |reply| DebugCommand::SetExceptionBreakpoints {
        filters: vec![ExceptionFilter::Unhandled],
        reply,
    });
    // The fallback handles this one: no stop.
    let soft = answered(&submit(&fixture.host, request(1, "cushioned", "x")));
    assert_eq!(soft.text, "fallback");
    let hard = submit(&fixture.host, request(2, "fragile", "luck"));
    let stop = next_stop(&fixture);
    assert_eq!(stop.reason, StopReason::Exception);
    assert_eq!(stop.line, 31);
    assert!(
        stop.text.as_deref().unwrap_or("").contains("no luck"),
        "{stop:?}"
    );
    let why = debug(&fixture, |reply| DebugCommand::Evaluate {
        request_id: Some(2),
        frame: 1,
        expression: "why".to_owned(),
        context: EvaluateContext::Hover,
        reply,
    });
    assert_eq!(why.value, "\"no luck\"");
    resume(&fixture, 2);
    assert!(matches!(outcome(&hard), RunOutcome::Failed(_)));

    debug(&fixture, |reply| DebugCommand::SetExceptionBreakpoints {
        filters: vec![ExceptionFilter::All],
        reply,
    });
    let soft = submit(&fixture.host, request(3, "cushioned", "x"));
    assert_eq!(next_stop(&fixture).reason, StopReason::Exception);
    resume(&fixture, 3);
    assert_eq!(answered(&soft).text, "fallback");
}

#[test]
fn function_breakpoints_stop_at_a_stage_or_before_a_service_call() {
    let fixture = start(SCRIPT);
    let statuses = debug(&fixture, |reply| DebugCommand::SetFunctionBreakpoints {
        breakpoints: vec![
            FunctionBreakpoint {
                name: "ingest/tag".to_owned(),
                ..FunctionBreakpoint::default()
            },
            FunctionBreakpoint {
                name: "embedder".to_owned(),
                ..FunctionBreakpoint::default()
            },
            FunctionBreakpoint {
                name: "nope".to_owned(),
                ..FunctionBreakpoint::default()
            },
        ],
        reply,
    });
    assert_eq!(
        statuses
            .iter()
            .map(|status| status.verified)
            .collect::<Vec<_>>(),
        [true, true, false]
    );
    let run = submit(&fixture.host, request(4, "ingest", "x"));
    let stop = next_stop(&fixture);
    assert_eq!(
        (stop.reason, stop.stage.as_str(), stop.breakpoints.clone()),
        (
            StopReason::FunctionBreakpoint,
            "embed",
            vec![statuses[1].id]
        )
    );
    resume(&fixture, 4);
    let stop = next_stop(&fixture);
    assert_eq!(
        (stop.reason, stop.stage.as_str(), stop.line),
        (StopReason::FunctionBreakpoint, "tag", TAG_FIRST)
    );
    resume(&fixture, 4);
    answered(&run);
}

#[test]
fn a_request_busy_in_a_loop_can_be_paused_and_changed() {
    let fixture = start(SCRIPT);
    let spinning = submit(&fixture.host, request(9, "spin", "go"));
    // Pause until the hook has landed (the request may not have started).
    let stop = loop {
        ask(|reply| fixture.host.pause(9, reply)).expect("armed");
        if let Ok(DebugEvent::Stopped(stop)) = fixture
            .debug_events
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            break stop;
        }
    };
    assert_eq!((stop.request_id, stop.reason), (9, StopReason::Pause));
    let scopes = debug(&fixture, |reply| DebugCommand::Scopes {
        request_id: 9,
        frame: 0,
        reply,
    });
    debug(&fixture, |reply| DebugCommand::SetVariable {
        request_id: 9,
        reference: scopes[2].variables,
        name: "text".to_owned(),
        value: "'stop'".to_owned(),
        reply,
    });
    resume(&fixture, 9);
    assert_eq!(answered(&spinning).text, "stop");
}

#[test]
fn hook_policy_only_the_coroutines_that_can_reach_a_breakpoint_pay() {
    let fixture = start(SCRIPT);
    let counters = || debug(&fixture, |reply| DebugCommand::Hooks { reply }).1;
    // Nobody debugs: no stage coroutine carries a hook.
    for id in 1..=3 {
        answered(&submit(&fixture.host, request(id, "ingest", "x")));
    }
    let none = counters();
    assert_eq!(
        (none.bare, none.call_only, none.line, none.line_on),
        (6, 0, 0, 0)
    );

    // A breakpoint inside the `clean` stage: `clean` coroutines carry the
    // call hook (the line hook inside `clean` only: turned on entering it;
    // a C function it calls, `gsub`, leaves it on); `tag` carries none.
    breakpoints(
        &fixture,
        vec![SourceBreakpoint {
            line: CLEAN_FIRST,
            condition: Some("false".to_owned()),
            ..SourceBreakpoint::default()
        }],
    );
    for id in 4..=6 {
        answered(&submit(&fixture.host, request(id, "ingest", "x")));
    }
    let inside = counters();
    assert_eq!(
        (
            inside.bare - none.bare,
            inside.call_only - none.call_only,
            inside.line_on - none.line_on
        ),
        (3, 3, 3)
    );

    // A breakpoint in a helper no stage calls: nothing a request can reach
    // holds it, so no stage coroutine carries a hook.
    breakpoints(&fixture, vec![at(UNUSED_BODY)]);
    for id in 7..=9 {
        answered(&submit(&fixture.host, request(id, "ingest", "x")));
    }
    let helper = counters();
    assert_eq!(
        (
            helper.bare - inside.bare,
            helper.call_only - inside.call_only,
            helper.line_on - inside.line_on
        ),
        (6, 0, 0)
    );

    // A breakpoint in a helper a stage calls (`shout`, from `tag`): every
    // stage that can reach a helper carries the call hook (which stage
    // calls which helper is known only when it does), and the line hook
    // is on inside `shout` only (its condition never holds: checked in
    // the hook, no request stops).
    breakpoints(
        &fixture,
        vec![SourceBreakpoint {
            line: SHOUT_BODY,
            condition: Some("req.text == 'never'".to_owned()),
            ..SourceBreakpoint::default()
        }],
    );
    for id in 20..=22 {
        answered(&submit(&fixture.host, request(id, "ingest", "x")));
    }
    let called = counters();
    assert_eq!(
        (
            called.bare - helper.bare,
            called.call_only - helper.call_only,
            called.line_on - helper.line_on
        ),
        (0, 6, 3)
    );
    breakpoints(&fixture, Vec::new());

    // Stopped at a breakpoint, the coroutine carries call, return and line
    // hooks; once every breakpoint is gone, nobody pays again.
    debug(&fixture, |reply| DebugCommand::Attach { reply });
    breakpoints(&fixture, vec![at(TAG_FIRST)]);
    let run = submit(&fixture.host, request(10, "ingest", "x"));
    next_stop(&fixture);
    let (reports, _) = debug(&fixture, |reply| DebugCommand::Hooks { reply });
    let report = reports
        .iter()
        .find(|report| report.request_id == 10)
        .expect("listed");
    assert!(report.call && report.line, "{report:?}");
    breakpoints(&fixture, Vec::new());
    resume(&fixture, 10);
    answered(&run);
    let before = counters();
    answered(&submit(&fixture.host, request(11, "ingest", "x")));
    let after = counters();
    assert_eq!(
        (after.bare - before.bare, after.call_only - before.call_only),
        (2, 0)
    );
}

const LOOP_SCRIPT: &str = r#"local s = require("spindle")
local function double(i) return i * 2 end
s.pipeline "count" {
  s.stage("loop", function(req)
    local total = 0
    for i = 1, 10 do
      total = total + double(i)
    end
    req.total = total
    return req
  end),
}
s.pipeline "guarded" {
  s.stage("wrap", function(req)
    local ok, value = pcall(double, 21)
    req.value = value
    return req
  end),
}
"#;
const LOOP_BODY: u32 = 7;
const GUARDED_AFTER: u32 = 16;

fn conditional(line: u32, condition: &str) -> SourceBreakpoint {
    SourceBreakpoint {
        line,
        condition: Some(condition.to_owned()),
        ..SourceBreakpoint::default()
    }
}

fn evaluated(fixture: &Fixture, id: u64, expression: &str) -> String {
    debug(fixture, |reply| DebugCommand::Evaluate {
        request_id: Some(id),
        frame: 0,
        expression: expression.to_owned(),
        context: EvaluateContext::Watch,
        reply,
    })
    .value
}

/// The next console output (a condition's failure), skipping the rest.
fn next_console_line(fixture: &Fixture) -> String {
    loop {
        match fixture
            .debug_events
            .recv_timeout(common::PATIENCE)
            .expect("a debug event")
        {
            DebugEvent::Output(output) if output.category == OutputCategory::Console => {
                return output.text;
            }
            _ => {}
        }
    }
}

#[test]
fn conditions_in_a_hot_loop_are_checked_in_the_hook_with_the_frames_names() {
    let fixture = start(LOOP_SCRIPT);
    // Locals (`i`), upvalues (`double`), the request and the globals, in
    // the order a paused frame's evaluation uses; only the fifth pass
    // stops.
    breakpoints(
        &fixture,
        vec![conditional(
            LOOP_BODY,
            r#"double(i) == 10 and req.text == "go" and math.max(i, 1) == 5"#,
        )],
    );
    let run = submit(&fixture.host, request(1, "count", "go"));
    let stop = next_stop(&fixture);
    assert_eq!(
        (stop.reason, stop.line),
        (StopReason::Breakpoint, LOOP_BODY)
    );
    assert_eq!(evaluated(&fixture, 1, "i"), "5");
    assert_eq!(evaluated(&fixture, 1, "total"), "20");
    resume(&fixture, 1);
    assert_eq!(
        answered(&run).fields.get("total").map(String::as_str),
        Some("110")
    );
    // Another request's text: the condition never holds, nothing stops.
    let other = answered(&submit(&fixture.host, request(2, "count", "no")));
    assert_eq!(other.fields.get("total").map(String::as_str), Some("110"));

    // A condition that raises stops at once and says why.
    breakpoints(&fixture, vec![conditional(LOOP_BODY, "nothere.field")]);
    let run = submit(&fixture.host, request(3, "count", "go"));
    let why = next_console_line(&fixture);
    assert!(
        why.starts_with("breakpoint condition `nothere.field` failed:") && why.contains("nothere"),
        "{why}"
    );
    assert_eq!(next_stop(&fixture).line, LOOP_BODY);
    assert_eq!(evaluated(&fixture, 3, "i"), "1");
    // A runaway condition is stopped by its budget, and stops the request.
    breakpoints(
        &fixture,
        vec![conditional(
            LOOP_BODY,
            "(function() while true do end end)()",
        )],
    );
    resume(&fixture, 3);
    let why = next_console_line(&fixture);
    assert!(why.contains("ran past"), "{why}");
    assert_eq!(next_stop(&fixture).line, LOOP_BODY);
    breakpoints(&fixture, Vec::new());
    resume(&fixture, 3);
    assert_eq!(
        answered(&run).fields.get("total").map(String::as_str),
        Some("110")
    );
}

#[test]
fn a_breakpoint_after_a_lua_callback_from_c_still_stops() {
    // `wrap` holds the breakpoint; `pcall` (C) calls `double` (Lua) back:
    // on `double`'s return the line hook is turned on again for `wrap`,
    // found below the C function.
    let fixture = start(LOOP_SCRIPT);
    breakpoints(&fixture, vec![at(GUARDED_AFTER)]);
    let run = submit(&fixture.host, request(1, "guarded", "x"));
    let stop = next_stop(&fixture);
    assert_eq!(
        (stop.reason, stop.line),
        (StopReason::Breakpoint, GUARDED_AFTER)
    );
    assert_eq!(evaluated(&fixture, 1, "value"), "42");
    breakpoints(&fixture, Vec::new());
    resume(&fixture, 1);
    assert_eq!(
        answered(&run).fields.get("value").map(String::as_str),
        Some("42")
    );
}

#[test]
fn a_breakpoint_in_a_cell_stops_the_cell_while_requests_are_answered() {
    use spindle_scripting::{
        CELL_PIPELINE, CELL_THREAD_BASE, CellAnswer, CellRequest, CellStreams,
    };

    let fixture = start(SCRIPT);
    debug(&fixture, |reply| DebugCommand::Attach { reply });
    let cell = fixture.file.with_file_name("cell-7.lua");
    let path = cell.display().to_string();
    let code = "local base = 40\n\nlocal answer = base + 2\nanswer";
    // What a notebook's `dumpCell` does: the cell's text is known before
    // it runs, so its breakpoints bind.
    fixture.host.debug(DebugCommand::RegisterSource {
        path: path.clone(),
        text: code.to_owned(),
    });
    let statuses = debug(&fixture, |reply| DebugCommand::SetBreakpoints {
        file: path.clone(),
        breakpoints: vec![at(2)],
        reply,
    });
    assert!(statuses[0].verified, "{statuses:?}");
    assert_eq!(
        statuses[0].line,
        Some(3),
        "moved to the next line with code"
    );
    // The script's own top-level lines still refuse a breakpoint.
    assert!(!breakpoints(&fixture, vec![at(1)])[0].verified);

    let (answer_sender, answers) = std::sync::mpsc::channel::<CellAnswer>();
    fixture
        .host
        .notebook(spindle_scripting::NotebookJob::Execute {
            cell: CellRequest {
                code: code.to_owned(),
                path: cell.clone(),
                allow_stdin: false,
                user_expressions: Vec::new(),
            },
            effects: fixture.effects.clone(),
            streams: CellStreams::new(std::sync::Arc::new(|_| {})),
            reply: Box::new(move |answer| {
                let _ = answer_sender.send(answer);
            }),
        });
    let stop = next_stop(&fixture);
    assert!(stop.request_id > CELL_THREAD_BASE);
    assert_eq!(
        (
            stop.pipeline.as_str(),
            stop.file.as_str(),
            stop.line,
            stop.reason
        ),
        (CELL_PIPELINE, path.as_str(), 3, StopReason::Breakpoint)
    );
    assert_eq!(evaluated(&fixture, stop.request_id, "base * 2"), "80");

    // Stopped, the cell holds nothing up: a request runs to its answer.
    let flowing = submit(&fixture.host, request(5, "spin", "stop"));
    assert_eq!(answered(&flowing).text, "stop");
    assert!(answers.try_recv().is_err(), "the cell is still stopped");

    resume(&fixture, stop.request_id);
    let answer = answers
        .recv_timeout(common::PATIENCE)
        .expect("the cell ends");
    assert_eq!(
        answer.outcome.expect("the cell succeeds").to_vec(),
        vec![spindle_scripting::Data::Integer(42)]
    );
}
