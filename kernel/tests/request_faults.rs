//! Exactly one answer per request while things fail: Lua stage errors,
//! a pipeline whose embedding service is down for good, timeouts,
//! cancellations and full queues, thousands of requests at once; and the
//! request lifecycle of a small scenario, snapshot-tested.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{TestKernel, start_kernel};
use spindle_kernel::{KernelEvent, RequestPathConfig, Submission};
use spindle_scheduler::{OutcomeKind, PerPriority, Priority, RequestEventKind, Source};

/// `down` names a model nobody ships: its engine fails to start and, with
/// restart policy "no", the service stays failed.
const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.service "down" {
  embedding = { model = "no-such-model", threads = 1 },
  restart = { policy = "no" },
}
s.pipeline "mixed" {
  s.stage("route", function(req)
    if req.text:find("lua%-error") then error("bad record " .. req.id) end
    return req
  end),
  s.stage("embed", s.embed "embedder"),
}
s.pipeline "down" { s.stage("embed", s.embed "down") }
"#;

async fn start(config: RequestPathConfig) -> TestKernel {
    let kernel = start_kernel(SCRIPT, config);
    kernel.settled().await;
    kernel
}

fn submission(pipeline: &str, text: String, priority: Priority, deadline_ms: u64) -> Submission {
    Submission {
        pipeline: pipeline.to_owned(),
        text,
        priority,
        deadline: Some(Duration::from_millis(deadline_ms)),
        correlation_id: None,
        source: Source::Scenario,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_requests_under_faults_each_get_exactly_one_answer() {
    let mut config = RequestPathConfig::default();
    config.scheduler.capacity = PerPriority {
        high: 200,
        medium: 200,
        low: 200,
    };
    config.scheduler.max_in_flight = 32;
    let fixture = start(config).await;
    let total = 3000usize;
    let mut tasks = Vec::with_capacity(total);
    for idx in 0..total {
        let kernel = fixture.kernel.clone();
        let priority = [Priority::High, Priority::Medium, Priority::Low][idx % 3];
        let (pipeline, text, deadline_ms) = match idx % 10 {
            0 => ("mixed", format!("lua-error {idx}"), 30_000),
            1 => ("down", format!("needs the down service {idx}"), 150),
            2 => ("mixed", format!("cancel me {idx}"), 30_000),
            _ => ("mixed", format!("ordinary sentence number {idx}"), 30_000),
        };
        let correlation = format!("c-{idx}");
        tasks.push(tokio::spawn(async move {
            let mut submission = submission(pipeline, text, priority, deadline_ms);
            submission.correlation_id = Some(correlation.clone());
            let answer = kernel.submit(submission).await;
            (idx, answer.id, answer.outcome.kind())
        }));
        if idx % 10 == 2 {
            let kernel = fixture.kernel.clone();
            tokio::spawn(async move { kernel.cancel(&format!("c-{idx}")).await });
        }
    }
    let mut outcomes: HashMap<OutcomeKind, usize> = HashMap::new();
    let mut seen = HashSet::new();
    for task in tasks {
        let (idx, id, kind) = task.await.expect("every submit returns");
        assert!(seen.insert(idx), "request {idx} answered twice");
        *outcomes.entry(kind).or_default() += 1;
        if idx % 10 == 0 && kind != OutcomeKind::Rejected {
            assert_eq!(
                kind,
                OutcomeKind::Error,
                "request {idx} ({id}) ran a failing stage"
            );
        }
        if idx % 10 == 1 && kind != OutcomeKind::Rejected {
            assert_eq!(
                kind,
                OutcomeKind::Error,
                "request {idx} needs a service that is down for good"
            );
        }
    }
    assert_eq!(seen.len(), total);
    let stats = fixture.kernel.metrics().await.scheduler;
    let counters = stats.counters;
    assert_eq!(counters.submitted, total as u64, "{counters:?}");
    assert_eq!(counters.answered(), total as u64, "{counters:?}");
    assert_eq!(stats.in_flight, 0);
    assert_eq!(
        counters.ok as usize,
        outcomes.get(&OutcomeKind::Ok).copied().unwrap_or(0)
    );
    assert_eq!(
        counters.rejected as usize,
        outcomes.get(&OutcomeKind::Rejected).copied().unwrap_or(0)
    );
    for kind in [OutcomeKind::Ok, OutcomeKind::Error, OutcomeKind::Rejected] {
        assert!(
            outcomes.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind} in {outcomes:?}"
        );
    }
    assert!(
        outcomes.get(&OutcomeKind::Timeout).copied().unwrap_or(0)
            + outcomes.get(&OutcomeKind::Cancelled).copied().unwrap_or(0)
            > 0,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_scenarios_request_lifecycle() {
    let fixture = start(RequestPathConfig::default()).await;
    let mut events = fixture.kernel.subscribe(true);
    let steps = [
        ("mixed", "first sentence", Priority::High, 30_000),
        ("mixed", "lua-error here", Priority::Medium, 30_000),
        ("down", "no engine", Priority::Low, 30_000),
        ("nope", "unknown pipeline", Priority::Low, 30_000),
    ];
    for (pipeline, text, priority, deadline_ms) in steps {
        fixture
            .kernel
            .submit(submission(pipeline, text.to_owned(), priority, deadline_ms))
            .await;
    }
    // Ids are allocated in submission order; times are left out.
    let mut log = String::new();
    let mut next_request_event = async || loop {
        match events.recv().await.expect("event") {
            KernelEvent::Request(event) => break event,
            KernelEvent::RequestsLagged { missed } => panic!("missed {missed} events"),
            _ => {}
        }
    };
    let first = loop {
        let event = next_request_event().await;
        if let RequestEventKind::Admitted { .. } = event.kind {
            break event;
        }
    };
    let mut event = first.clone();
    let mut answered = 0;
    loop {
        let id = event.id.0 - first.id.0 + 1;
        let line = match &event.kind {
            RequestEventKind::Admitted {
                pipeline,
                priority,
                source,
                ..
            } => format!("#{id} admitted {pipeline} {priority} from {source}"),
            other => format!("#{id} {other:?}").to_lowercase(),
        };
        log.push_str(&line);
        log.push('\n');
        if matches!(event.kind, RequestEventKind::Answered(_)) {
            answered += 1;
            if answered == steps.len() {
                break;
            }
        }
        event = next_request_event().await;
    }
    insta::assert_snapshot!(log);
}
