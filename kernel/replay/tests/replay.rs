//! Operations are journaled and replayed through the `Kernel` handle: a
//! kernel with the real model records an injected slow engine, a request
//! that a cancel stops while it waits for that engine, and a request that
//! passes; the journal's timeline has both requests and both operations;
//! replayed on a fresh kernel (as fast as possible and at the recorded
//! times), every answer is the same as recorded. Synchronised on the
//! kernel's events, never on sleeps.

use std::path::Path;
use std::time::Duration;

use spindle_journal::{JournalConfig, JournalReader, OutcomeRecord};
use spindle_kernel::{Fault, Kernel, KernelConfig, KernelEvent, KernelSource, Submission};
use spindle_replay::{ReplayConfig, Step, Timeline, Timing};
use spindle_scheduler::{Gate, Priority, RequestEventKind, Source};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "ingest" {
  timeout = { high = "60s" },
  s.stage("clean", function(req) req.text = req.text:lower() return req end),
  s.stage("embed", s.embed "embedder"),
}
"#;

async fn start(script: &Path, journal: Option<&Path>) -> Kernel {
    let config = KernelConfig {
        journal: journal.map(JournalConfig::new),
        ..KernelConfig::default()
    };
    let kernel =
        Kernel::start(KernelSource::Script(script.to_path_buf()), config).expect("kernel starts");
    let mut events = kernel.subscribe(false);
    let open = |kernel: &Kernel| kernel.pipelines().iter().all(|p| p.gate == Gate::Open);
    while !open(&kernel) {
        match events
            .recv()
            .await
            .expect("events until the pipeline opens")
        {
            KernelEvent::Pipeline {
                gate: Gate::Failed { reason },
                ..
            } => panic!("the pipeline failed (is the model fetched?): {reason}"),
            _ => continue,
        }
    }
    kernel
}

fn submission(text: &str, correlation_id: &str) -> Submission {
    Submission {
        pipeline: "ingest".to_owned(),
        text: text.to_owned(),
        priority: Priority::High,
        deadline: Some(Duration::from_secs(60)),
        correlation_id: Some(correlation_id.to_owned()),
        source: Source::Http,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_fault_and_a_cancel_are_journaled_and_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("graph.lua");
    std::fs::write(&script, SCRIPT).expect("write");
    let journal = dir.path().join("journal");

    let kernel = start(&script, Some(&journal)).await;
    let mut requests = kernel.subscribe(true);
    kernel.inject(Fault::EngineSlow {
        service: "embedder".to_owned(),
        // The slow batch holds the engine this long: the request behind
        // it waits, the cancel (sent on the admission event) has this long
        // to reach the slow request first.
        delay: Duration::from_secs(2),
        batches: 1,
    });
    let slow = tokio::spawn({
        let kernel = kernel.clone();
        async move { kernel.submit(submission("Slow One", "slow-1")).await }
    });
    // Cancelled once the kernel has it (its admission event).
    loop {
        if let Some(KernelEvent::Request(event)) = requests.recv().await
            && let RequestEventKind::Admitted { correlation_id, .. } = &event.kind
            && correlation_id == "slow-1"
        {
            break;
        }
    }
    assert!(kernel.cancel("slow-1").await);
    let slow = slow.await.expect("task");
    assert_eq!(slow.outcome.kind().as_str(), "cancelled");
    let fast = kernel.submit(submission("Fast Two", "fast-2")).await;
    assert_eq!(fast.outcome.kind().as_str(), "ok");
    kernel.shutdown();
    kernel.wait().await.expect("stops");

    let reader = JournalReader::open(&journal).expect("the journal reads");
    let timeline = Timeline::from_records(reader.latest_run());
    let steps: Vec<String> = timeline
        .steps
        .iter()
        .map(|step| match step {
            Step::Request(request) => format!(
                "request {} {}",
                request.admitted.correlation_id,
                request
                    .answered
                    .as_ref()
                    .map_or("unanswered", |answered| answered.outcome.kind())
            ),
            Step::Operation(operation) => {
                format!("operation {} {}", operation.operation, operation.target)
            }
        })
        .collect();
    assert_eq!(
        steps,
        [
            "operation engine-slow embedder",
            "request slow-1 cancelled",
            "operation cancel slow-1",
            "request fast-2 ok",
        ]
    );
    assert_eq!(
        timeline.script.as_deref(),
        Some(script.canonicalize().expect("path").as_path())
    );

    for timing in [Timing::Fast, Timing::Recorded] {
        let kernel = start(&script, None).await;
        let report = spindle_replay::replay(
            &kernel,
            &timeline,
            &ReplayConfig {
                timing,
                cosine_min: 0.999,
            },
        )
        .await;
        kernel.shutdown();
        kernel.wait().await.expect("stops");
        let transcript = spindle_replay::transcript(&report);
        assert_eq!(report.differing(), 0, "{timing:?}:\n{transcript}");
        assert!(
            matches!(report.requests[0].outcome, OutcomeRecord::Cancelled { .. }),
            "{transcript}"
        );
        assert!(
            report
                .operations
                .iter()
                .all(|operation| operation.result == "applied"),
            "{transcript}"
        );
    }
}
