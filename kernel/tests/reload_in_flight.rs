//! Pipelines swap atomically on reload: a request in flight when the script
//! is reloaded finishes on the version it started with (it holds the old
//! script host), while the next request runs the new version. The request
//! is held in flight deterministically: paused by the debug seam at the
//! first line of its Lua stage, after its (slowed) embedding.

mod common;

use std::time::Duration;

use common::start_kernel;
use spindle_kernel::{Fault, KernelEvent, RequestPathConfig, Submission};
use spindle_scheduler::{Outcome, Priority, RequestEventKind, RequestId, Source};

const VERSION_ONE: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "work" {
  s.stage("embed", s.embed "embedder"),
  s.stage("tag", function(req)
    req.version = "one"
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

fn version(answer: spindle_kernel::RequestAnswer) -> String {
    let Outcome::Ok(result) = answer.outcome else {
        panic!("ok: {:?}", answer.outcome);
    };
    result.fields["version"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_version_it_started_with() {
    let test = start_kernel(VERSION_ONE, RequestPathConfig::default());
    test.ready("work").await;
    let kernel = test.kernel.clone();
    let mut events = kernel.subscribe(true);
    kernel.inject(Fault::EngineSlow {
        service: "embedder".to_owned(),
        delay: Duration::from_secs(2),
        batches: 1,
    });
    let in_flight = {
        let kernel = kernel.clone();
        tokio::spawn(async move { kernel.submit(submission("started before")).await })
    };
    let id: RequestId = loop {
        if let Some(KernelEvent::Request(event)) = events.recv().await
            && event.kind == RequestEventKind::Started
        {
            break event.id;
        }
    };
    while !kernel
        .requests()
        .await
        .iter()
        .any(|live| live.summary.id == id && live.run.is_some())
    {
        tokio::task::yield_now().await;
    }
    kernel.pause(id).await.expect("the pause is armed");
    loop {
        if let Some(KernelEvent::Request(event)) = events.recv().await
            && event.id == id
            && event.kind == RequestEventKind::Paused
        {
            break;
        }
    }

    std::fs::write(
        test.dir.path().join("kernel.lua"),
        VERSION_ONE.replace("\"one\"", "\"two\""),
    )
    .expect("write");
    let report = kernel.reload().await.expect("reloads");
    assert_eq!(report.unchanged, ["embedder"], "{report:?}");
    assert!(!in_flight.is_finished(), "still paused on the old version");

    let after = kernel.submit(submission("started after")).await;
    assert_eq!(version(after), "two");
    kernel.resume(id).await.expect("resumed");
    assert_eq!(version(in_flight.await.expect("task")), "one");
}
