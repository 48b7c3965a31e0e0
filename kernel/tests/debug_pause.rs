//! The kernel's debug seam end to end, with the real engine: one request
//! paused at a Lua line stays paused (its deadline clock stopped) while 200
//! others are answered; its stack shows the real script line and its
//! fields; resumed, it is answered correctly.

mod common;

use std::time::Duration;

use common::start_kernel;
use spindle_kernel::{Fault, KernelEvent, RequestPathConfig, Submission};
use spindle_scheduler::{DeadlineState, Outcome, Priority, RequestEventKind, RequestId, Source};
use spindle_scripting::{PausePoint, RunState};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "work" {
  s.stage("embed", s.embed "embedder"),
  s.stage("tag", function(req)
    local dims = #req.vector
    req.dims = dims
    return req
  end),
}
"#;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_request_stays_paused_while_others_flow_then_resumes() {
    let test = start_kernel(SCRIPT, RequestPathConfig::default());
    test.ready("work").await;
    let kernel = test.kernel.clone();
    let mut events = kernel.subscribe(true);
    // The first request's embedding answers late, so that it is surely
    // still on the script host when the pause is armed.
    kernel.inject(Fault::EngineSlow {
        service: "embedder".to_owned(),
        delay: Duration::from_secs(3),
        batches: 1,
    });
    let paused = {
        let kernel = kernel.clone();
        tokio::spawn(async move { kernel.submit(submission("the one we stop")).await })
    };
    let id: RequestId = loop {
        if let Some(KernelEvent::Request(event)) = events.recv().await
            && event.kind == RequestEventKind::Started
        {
            break event.id;
        }
    };
    // Started is the scheduler's word; the run reaches the script host a
    // moment later. Wait for the host to list it.
    while !kernel
        .requests()
        .await
        .iter()
        .any(|live| live.summary.id == id && live.run.is_some())
    {
        tokio::task::yield_now().await;
    }
    kernel.pause(id).await.expect("the pause is armed");
    // It stops at the first line of its Lua stage, after its embedding.
    loop {
        if let Some(KernelEvent::Request(event)) = events.recv().await
            && event.id == id
            && event.kind == RequestEventKind::Paused
        {
            break;
        }
    }

    let mut others = Vec::new();
    for idx in 0..200 {
        let kernel = kernel.clone();
        others.push(tokio::spawn(async move {
            kernel
                .submit(submission(&format!("another request {idx}")))
                .await
        }));
    }
    for other in others {
        let answer = other.await.expect("task");
        assert!(
            matches!(answer.outcome, Outcome::Ok(_)),
            "{:?}",
            answer.outcome
        );
    }

    let live = kernel.requests().await;
    assert_eq!(live.len(), 1, "only the paused one is left: {live:?}");
    let request = &live[0];
    assert_eq!(request.summary.id, id);
    assert!(
        matches!(request.summary.deadline, DeadlineState::Paused { .. }),
        "its deadline clock is stopped: {request:?}"
    );
    let run = request.run.as_ref().expect("on the script host");
    assert_eq!(run.stage, "tag");
    let RunState::Paused(PausePoint { file, line, .. }) = &run.state else {
        panic!("paused: {run:?}");
    };
    assert!(file.ends_with("kernel.lua"), "{file}");
    assert_eq!(*line, 6);

    let stack = kernel.stack(id).await.expect("a paused request's stack");
    let top = &stack.frames[0];
    assert_eq!(top.line, 6);
    assert!(top.file.ends_with("kernel.lua"), "{}", top.file);
    let text = stack
        .request
        .iter()
        .find(|field| field.name == "text")
        .expect("req.text");
    assert!(text.value.contains("the one we stop"), "{text:?}");

    kernel.resume(id).await.expect("resumed");
    let answer = paused.await.expect("task");
    let Outcome::Ok(result) = answer.outcome else {
        panic!("answered ok: {:?}", answer.outcome);
    };
    assert_eq!(result.fields.get("dims").map(String::as_str), Some("384"));
    assert_eq!(result.vector.map(|vector| vector.len()), Some(384));
    assert!(kernel.requests().await.is_empty());
    let counters = kernel.metrics().await.scheduler.counters;
    assert_eq!(counters.ok, 201);
    assert_eq!(counters.timeout, 0);
}

#[tokio::test]
async fn pausing_a_request_that_is_not_live_is_a_clear_error() {
    let test = start_kernel(SCRIPT, RequestPathConfig::default());
    let error = test
        .kernel
        .pause(RequestId(4242))
        .await
        .expect_err("nothing to pause");
    let text = error.to_string();
    assert!(
        text.contains("request 4242 is not running Lua now"),
        "{text}"
    );
    assert!(text.contains("hint:"), "{text}");
}
