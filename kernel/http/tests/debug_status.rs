//! A request held by the debugger, as `GET /v1/status` and the kernel's
//! live-request view show it: paused, with the real reason (entry,
//! breakpoint, step, exception; a pause asked for by hand reads "pause"),
//! where, and its deadline clock stopped.
//! The debugger is driven through the `Kernel` handle, as a front end
//! would; the status is read over real HTTP.

#[path = "../../tests/common/mod.rs"]
mod common;
mod http;

use std::time::Duration;

use http::start;
use hyper::{Method, StatusCode};
use spindle_kernel::{Kernel, RequestPathConfig, Submission};
use spindle_scheduler::{Outcome, Priority, RequestId, Source};
use spindle_scripting::{
    DebugEvent, ExceptionFilter, PauseReason, RunState, SourceBreakpoint, StepKind, Stop,
};
use tokio::sync::broadcast;

const SCRIPT: &str = r#"local s = require("spindle")
s.pipeline "work" {
  s.stage("first", function(req)
    local text = req.text
    req.text = text .. "!"
    return req
  end),
  s.stage("second", function(req)
    if req.text == "boom!" then error("boom") end
    return req
  end),
}
"#;
const FIRST_BODY: u32 = 4;
const FIRST_ASSIGN: u32 = 5;
const SECOND_BODY: u32 = 9;

fn submission(text: &str) -> Submission {
    Submission {
        pipeline: "work".to_owned(),
        text: text.to_owned(),
        priority: Priority::Medium,
        deadline: Some(Duration::from_secs(120)),
        correlation_id: None,
        source: Source::Scenario,
    }
}

async fn next_stop(events: &mut broadcast::Receiver<DebugEvent>) -> Stop {
    loop {
        match events.recv().await.expect("debug events") {
            DebugEvent::Stopped(stop) => return stop,
            _ => continue,
        }
    }
}

/// The kernel's view and the status API's of request `id`, checked
/// against `reason` and `line`.
async fn shows_paused(
    kernel: &Kernel,
    http: &http::HttpKernel,
    id: u64,
    reason: PauseReason,
    spelled: &str,
    line: u32,
) {
    let live = kernel.requests().await;
    let request = live
        .iter()
        .find(|live| live.summary.id == RequestId(id))
        .expect("live");
    let Some(RunState::Paused(point)) = request.run.as_ref().map(|run| &run.state) else {
        panic!("paused: {request:?}");
    };
    assert_eq!((point.reason, point.line), (reason, line));

    let (status, body) = http.json(Method::GET, "/v1/status", "").await;
    assert_eq!(status, StatusCode::OK);
    let listed = body["requests"]
        .as_array()
        .expect("live requests")
        .iter()
        .find(|request| request["id"] == id)
        .unwrap_or_else(|| panic!("request {id} listed: {body}"))
        .clone();
    assert_eq!(listed["lua"]["state"], "paused", "{listed}");
    assert_eq!(listed["lua"]["reason"], spelled, "{listed}");
    assert_eq!(listed["lua"]["line"], line, "{listed}");
    assert_eq!(listed["deadline"]["paused"], true, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_api_shows_why_a_request_is_paused() {
    let http = start(SCRIPT, RequestPathConfig::default()).await;
    let kernel = http.test.kernel.clone();
    let file = http.test.dir.path().join("kernel.lua");
    let file = file.display().to_string();
    let mut events = kernel.debug_events().expect("a script has a debugger");
    kernel.debug_attach().await.expect("attach");

    // Entry: the first request stops at the first line of its first stage.
    kernel.stop_on_entry().await.expect("stop on entry");
    let first = {
        let kernel = kernel.clone();
        tokio::spawn(async move { kernel.submit(submission("hello")).await })
    };
    let stop = next_stop(&mut events).await;
    let id = stop.request_id;
    shows_paused(&kernel, &http, id, PauseReason::Entry, "entry", FIRST_BODY).await;

    // Breakpoint, then a step.
    kernel
        .set_breakpoints(
            &file,
            vec![SourceBreakpoint {
                line: FIRST_ASSIGN,
                ..SourceBreakpoint::default()
            }],
        )
        .await
        .expect("breakpoints");
    kernel
        .continue_requests(Some(RequestId(id)))
        .await
        .expect("continue");
    next_stop(&mut events).await;
    shows_paused(
        &kernel,
        &http,
        id,
        PauseReason::Breakpoint,
        "breakpoint",
        FIRST_ASSIGN,
    )
    .await;
    kernel
        .step(RequestId(id), StepKind::Out)
        .await
        .expect("step out");
    next_stop(&mut events).await;
    shows_paused(&kernel, &http, id, PauseReason::Step, "step", SECOND_BODY).await;

    kernel
        .set_breakpoints(&file, Vec::new())
        .await
        .expect("clear");
    kernel
        .continue_requests(Some(RequestId(id)))
        .await
        .expect("continue");
    let answer = first.await.expect("task");
    assert!(
        matches!(answer.outcome, Outcome::Ok(_)),
        "{:?}",
        answer.outcome
    );

    // An error that escapes a stage.
    kernel
        .set_exception_breakpoints(vec![ExceptionFilter::All])
        .await
        .expect("exception breakpoints");
    let failing = {
        let kernel = kernel.clone();
        tokio::spawn(async move { kernel.submit(submission("boom")).await })
    };
    let stop = next_stop(&mut events).await;
    shows_paused(
        &kernel,
        &http,
        stop.request_id,
        PauseReason::Exception,
        "exception",
        SECOND_BODY,
    )
    .await;
    kernel.debug_detach().await.expect("detach");
    let answer = failing.await.expect("task");
    assert!(
        matches!(answer.outcome, Outcome::Error(_)),
        "{:?}",
        answer.outcome
    );
}
