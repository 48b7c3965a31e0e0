//! `cargo bench --bench soak`: a million requests through a real kernel
//! (in this process, started with `Kernel::start` as `spindle run` starts
//! it) with faults injected all along, to show that every request gets
//! exactly one terminal answer, that the kernel's counters balance, and
//! that memory stays flat once warmed up.
//!
//! The graph: a no-op Lua pipeline `noop` (99% of the requests) and a
//! pipeline `embed` with one embed stage on `embedder`
//! (paraphrase-MiniLM-L3-v2, one thread; 1%), plus a process service
//! `worker` (`sleep 3600`). Faults, by request index:
//! - stage errors: 1 in 100 `noop` requests raise a Lua error;
//! - runaway stages: 1 in 100,000 loop forever and are stopped by their
//!   20 ms stage budget;
//! - cancels: 1 in 50 are cancelled by correlation id right after submit;
//! - timeouts: 1 in 200 carry a 1 µs deadline;
//! - full queues: every 100,000 requests a burst of 1,024 is submitted at
//!   once onto queues of 256 per priority (the rest: 64 clients at a time);
//! - services restarting: every 100,000 requests `embedder` is restarted
//!   (its pipeline's requests wait behind the closed gate meanwhile) and so
//!   is `worker`.
//!
//! Checked, and the benchmark exits non-zero when one fails: every
//! submission's future completed exactly once; the client's count of each
//! outcome equals the kernel's counter of it; `submitted == answered`;
//! nothing queued or in flight at the end; RSS of this process after
//! warm-up (the first 20% of requests) stays within 5% of its value at the
//! end of warm-up. There is no anchor: the figures are held against these
//! invariants (targets in the table). Not a CI test (about a minute of two
//! cores when the machine is quiet).
//!
//! `SPINDLE_SOAK_REQUESTS` sets the count (default 1,000,000);
//! `SPINDLE_SOAK_RESTART=worker` restarts only the services named
//! (comma-separated; empty: none), to tell apart what a restart of each
//! costs. The RSS samples (every 10,000 requests) are in the JSON. Prints a
//! progress line per 100,000 requests, one table at the end, and writes
//! `target/bench/soak.json` (`benches/common/report.rs`). The runtime has
//! two worker threads; nothing is pinned.

#[path = "../kernel/tests/common/mod.rs"]
mod common;
#[path = "common/process.rs"]
mod process;
#[path = "common/report.rs"]
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use report::{Better, Report, Target};
use spindle_kernel::{Kernel, RequestPathConfig, Submission};
use spindle_scheduler::{OutcomeKind, PerPriority, Priority, Source};
use tokio::sync::Semaphore;

const DEFAULT_REQUESTS: usize = 1_000_000;
const CLIENTS: usize = 64;
const QUEUE_CAPACITY: usize = 256;
const BURST: usize = 1_024;
const EVERY: usize = 100_000;
const RSS_SAMPLE_EVERY: usize = 10_000;
const WARM_UP_SHARE: f64 = 0.2;
const RSS_GROWTH_LIMIT_PERCENT: f64 = 5.0;

const SCRIPT: &str = r#"local s = require("spindle")
s.service "worker" { command = { "sleep", "3600" } }
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "noop" {
  s.stage("pass", { budget = "20ms" }, function(req)
    local kind = req.text:sub(1, 4)
    if kind == "fail" then error("injected stage error") end
    if kind == "spin" then while true do end end
    return req
  end),
}
s.pipeline "embed" { s.stage("embed", s.embed "embedder") }
"#;

fn main() {
    // The allocator settings `spindle` starts with (the kernel runs in this
    // process, as in `spindle run`).
    spindle_kernel::memory::settle_allocator();
    let requests: usize = std::env::var("SPINDLE_SOAK_REQUESTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_REQUESTS);
    let mut report = Report::start("soak", "none: the invariants are the targets");
    report.phase(&format!(
        "{requests} requests, {CLIENTS} clients, bursts of {BURST} onto queues of {QUEUE_CAPACITY}, restarts every {EVERY}"
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|error| fail(&format!("tokio runtime: {error}")));
    let soak = runtime.block_on(async {
        let mut config = RequestPathConfig::default();
        config.scheduler.capacity = PerPriority {
            high: QUEUE_CAPACITY,
            medium: QUEUE_CAPACITY,
            low: QUEUE_CAPACITY,
        };
        let test = common::start_kernel(SCRIPT, config);
        report.phase("kernel started; waiting for both pipelines to be served");
        let waited = tokio::time::timeout(Duration::from_secs(120), async {
            test.ready("noop").await;
            test.ready("embed").await;
        })
        .await;
        if waited.is_err() {
            fail(&format!(
                "the pipelines were not served within 120 s (run `make setup` for the model): {:?}",
                test.kernel.services()
            ));
        }
        report.phase("served; soaking");
        let soak = soak(&report, &test.kernel, requests).await;
        let end = test.kernel.metrics().await;
        let services = test.kernel.services();
        (soak, end, services)
    });
    let (soak, end, services) = soak;
    let counters = &end.scheduler.counters;

    let completed_once = soak
        .state
        .completions
        .iter()
        .all(|done| done.load(Ordering::Relaxed) == 1);
    let never = soak
        .state
        .completions
        .iter()
        .filter(|done| done.load(Ordering::Relaxed) == 0)
        .count();
    let client = &soak.state.outcomes;
    let client_count = |kind: OutcomeKind| client[kind_index(kind)].load(Ordering::Relaxed);
    let balanced = counters.submitted == counters.answered()
        && counters.ok == client_count(OutcomeKind::Ok)
        && counters.error == client_count(OutcomeKind::Error)
        && counters.timeout == client_count(OutcomeKind::Timeout)
        && counters.rejected == client_count(OutcomeKind::Rejected)
        && counters.cancelled == client_count(OutcomeKind::Cancelled)
        && counters.submitted == requests as u64;
    let left_over = end.scheduler.in_flight
        + end.scheduler.queued.high
        + end.scheduler.queued.medium
        + end.scheduler.queued.low;
    let drained = left_over == 0;
    let (warm_kib, max_after_kib, last_kib) = soak.rss_after_warm_up();
    let growth_percent = 100.0 * (max_after_kib as f64 - warm_kib as f64) / warm_kib as f64;

    report.row(
        "requests per second",
        "req/s",
        Some(requests as f64 / soak.seconds),
        None,
        Better::Higher,
        None,
    );
    report.row(
        "submissions without an answer",
        "requests",
        Some(never as f64),
        None,
        Better::Lower,
        Some(Target::AtMost(0.0)),
    );
    report.row(
        "kernel counters equal the client's",
        "bool",
        Some(f64::from(u8::from(balanced))),
        None,
        Better::Higher,
        Some(Target::AtLeast(1.0)),
    );
    report.row(
        "queued + in flight at the end",
        "requests",
        Some(left_over as f64),
        None,
        Better::Lower,
        Some(Target::AtMost(0.0)),
    );
    report.row(
        "RSS growth after warm-up (max)",
        "%",
        Some(growth_percent),
        None,
        Better::Lower,
        Some(Target::AtMost(RSS_GROWTH_LIMIT_PERCENT)),
    );
    report.row(
        "RSS at the end of warm-up",
        "MiB",
        Some(warm_kib as f64 / 1024.0),
        None,
        Better::Lower,
        None,
    );
    report.row(
        "RSS at the end",
        "MiB",
        Some(last_kib as f64 / 1024.0),
        None,
        Better::Lower,
        None,
    );
    for kind in [
        OutcomeKind::Ok,
        OutcomeKind::Error,
        OutcomeKind::Timeout,
        OutcomeKind::Rejected,
        OutcomeKind::Cancelled,
    ] {
        report.row(
            &format!("answered {}", kind.as_str()),
            "requests",
            Some(client_count(kind) as f64),
            None,
            Better::Higher,
            None,
        );
    }
    report.detail(
        "counters",
        serde_json::json!({
            "submitted": counters.submitted,
            "ok": counters.ok,
            "error": counters.error,
            "timeout": counters.timeout,
            "rejected": counters.rejected,
            "cancelled": counters.cancelled,
            "panics": counters.panics,
            "late_results": counters.late_results,
        }),
    );
    report.detail(
        "faults",
        serde_json::json!({
            "stage_errors_sent": soak.state.sent_fail.load(Ordering::Relaxed),
            "runaway_stages_sent": soak.state.sent_spin.load(Ordering::Relaxed),
            "cancels_sent": soak.state.sent_cancel.load(Ordering::Relaxed),
            "cancels_that_found_their_request": soak.state.cancel_hits.load(Ordering::Relaxed),
            "short_deadlines_sent": soak.state.sent_short_deadline.load(Ordering::Relaxed),
            "burst_requests_sent": soak.state.sent_burst.load(Ordering::Relaxed),
            "restarts_asked": soak.state.restarts_asked.load(Ordering::Relaxed),
            "restarts_refused": soak.state.restarts_refused.load(Ordering::Relaxed),
        }),
    );
    report.detail(
        "rss_kib_samples",
        serde_json::json!(
            soak.rss_samples
                .iter()
                .map(|(idx, kib)| [*idx as u64, *kib])
                .collect::<Vec<_>>()
        ),
    );
    report.detail(
        "services_at_the_end",
        serde_json::json!(
            services
                .iter()
                .map(|service| serde_json::json!({
                    "name": service.name,
                    "state": format!("{:?}", service.state),
                    "restarts": service.restarts,
                }))
                .collect::<Vec<_>>()
        ),
    );
    report.detail(
        "settings",
        serde_json::json!({
            "requests": requests,
            "clients": CLIENTS,
            "queue_capacity_per_priority": QUEUE_CAPACITY,
            "burst": BURST,
            "restart_every": EVERY,
            "restarted": std::env::var("SPINDLE_SOAK_RESTART").unwrap_or_else(|_| "embedder,worker".to_owned()),
            "warm_up_share": WARM_UP_SHARE,
            "runtime_worker_threads": 2,
            "pinning": "none",
        }),
    );
    let passed =
        completed_once && balanced && drained && growth_percent <= RSS_GROWTH_LIMIT_PERCENT;
    report.finish();
    if !passed {
        eprintln!(
            "soak: an invariant failed (answered once: {completed_once}, counters balanced: {balanced}, drained: {drained}, RSS growth {growth_percent:.2}%)"
        );
        std::process::exit(1);
    }
}

/// What the clients saw, shared by the request tasks.
struct Soak {
    /// One counter per submission: how often its answer arrived.
    completions: Vec<AtomicU8>,
    outcomes: [AtomicU64; 5],
    /// One permit per answered request.
    done: Semaphore,
    sent_fail: AtomicU64,
    sent_spin: AtomicU64,
    sent_cancel: AtomicU64,
    cancel_hits: AtomicU64,
    sent_short_deadline: AtomicU64,
    sent_burst: AtomicU64,
    restarts_asked: AtomicU64,
    restarts_refused: AtomicU64,
}

/// A finished soak: the clients' view, its time and the RSS samples.
struct SoakRun {
    state: Arc<Soak>,
    seconds: f64,
    /// (requests submitted so far, RSS in KiB).
    rss_samples: Vec<(usize, u64)>,
    warm_up_end: usize,
}

impl SoakRun {
    /// RSS at the end of warm-up, the largest after it, and the last.
    fn rss_after_warm_up(&self) -> (u64, u64, u64) {
        let warm = self
            .rss_samples
            .iter()
            .rev()
            .find(|(idx, _)| *idx <= self.warm_up_end)
            .map_or(0, |(_, kib)| *kib)
            .max(1);
        let after = self
            .rss_samples
            .iter()
            .filter(|(idx, _)| *idx > self.warm_up_end)
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(warm);
        let last = self.rss_samples.last().map_or(warm, |(_, kib)| *kib);
        (warm, after, last)
    }
}

/// What request `idx` is.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    StageError,
    Runaway,
    Cancel,
    ShortDeadline,
    Embed,
}

fn kind_of(idx: usize) -> Kind {
    if idx % 100_000 == 13 {
        Kind::Runaway
    } else if idx % 100 == 7 {
        Kind::StageError
    } else if idx % 50 == 3 {
        Kind::Cancel
    } else if idx % 200 == 11 {
        Kind::ShortDeadline
    } else if idx % 100 == 42 {
        Kind::Embed
    } else {
        Kind::Plain
    }
}

fn priority_of(idx: usize) -> Priority {
    match idx % 10 {
        0 | 1 => Priority::High,
        2..=5 => Priority::Medium,
        _ => Priority::Low,
    }
}

fn kind_index(kind: OutcomeKind) -> usize {
    match kind {
        OutcomeKind::Ok => 0,
        OutcomeKind::Error => 1,
        OutcomeKind::Timeout => 2,
        OutcomeKind::Rejected => 3,
        OutcomeKind::Cancelled => 4,
    }
}

async fn soak(report: &Report, kernel: &Kernel, requests: usize) -> SoakRun {
    let state = Arc::new(Soak {
        completions: (0..requests).map(|_| AtomicU8::new(0)).collect(),
        outcomes: Default::default(),
        done: Semaphore::new(0),
        sent_fail: AtomicU64::new(0),
        sent_spin: AtomicU64::new(0),
        sent_cancel: AtomicU64::new(0),
        cancel_hits: AtomicU64::new(0),
        sent_short_deadline: AtomicU64::new(0),
        sent_burst: AtomicU64::new(0),
        restarts_asked: AtomicU64::new(0),
        restarts_refused: AtomicU64::new(0),
    });
    let restarted: Vec<String> = std::env::var("SPINDLE_SOAK_RESTART")
        .unwrap_or_else(|_| "embedder,worker".to_owned())
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let clients = Arc::new(Semaphore::new(CLIENTS));
    let mut rss_samples = Vec::new();
    let mut restarts = Vec::new();
    let pid = std::process::id() as i32;
    let started = Instant::now();
    let mut idx = 0;
    while idx < requests {
        if idx % RSS_SAMPLE_EVERY == 0 {
            rss_samples.push((idx, process::rss_kib(pid)));
        }
        if idx > 0 && idx % EVERY == 0 {
            report.phase(&format!(
                "{idx} submitted in {:.1} s; RSS {:.1} MiB; restarting {}; a burst of {BURST}",
                started.elapsed().as_secs_f64(),
                process::rss_kib(pid) as f64 / 1024.0,
                if restarted.is_empty() {
                    "nothing".to_owned()
                } else {
                    restarted.join(" and ")
                }
            ));
            for service in &restarted {
                let service = service.clone();
                let kernel = kernel.clone();
                let state = state.clone();
                state.restarts_asked.fetch_add(1, Ordering::Relaxed);
                restarts.push(tokio::spawn(async move {
                    if kernel.restart_service(&service).await.is_err() {
                        state.restarts_refused.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            // The burst: submitted at once, no client permit.
            let burst_end = (idx + BURST).min(requests);
            for burst_idx in idx..burst_end {
                state.sent_burst.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(one_request(kernel.clone(), state.clone(), burst_idx, None));
            }
            idx = burst_end;
            continue;
        }
        let permit = clients
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| fail("the client semaphore closed"));
        tokio::spawn(one_request(
            kernel.clone(),
            state.clone(),
            idx,
            Some(permit),
        ));
        idx += 1;
    }
    // Each answered request adds one permit to `done`: all of them back
    // means every submission completed (bounded, so a lost answer ends the
    // run with the count instead of hanging it).
    let all_answered = {
        let waited = tokio::time::timeout(
            Duration::from_secs(300),
            state.done.acquire_many(requests as u32),
        )
        .await;
        // The permits go back to `done`; nothing waits on them any more.
        matches!(waited, Ok(Ok(_)))
    };
    if !all_answered {
        report.phase(&format!(
            "only {} of {requests} answered 300 s after the last submission",
            state.done.available_permits()
        ));
    }
    for restart in restarts {
        let _ = restart.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    rss_samples.push((requests, process::rss_kib(pid)));
    report.phase(&format!(
        "{requests} submitted, answers collected after {seconds:.1} s"
    ));
    SoakRun {
        state,
        seconds,
        rss_samples,
        warm_up_end: (requests as f64 * WARM_UP_SHARE) as usize,
    }
}

async fn one_request(
    kernel: Kernel,
    state: Arc<Soak>,
    idx: usize,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let kind = kind_of(idx);
    let correlation_id = format!("soak-{idx}");
    let (pipeline, text) = match kind {
        Kind::StageError => {
            state.sent_fail.fetch_add(1, Ordering::Relaxed);
            ("noop", format!("fail {idx}"))
        }
        Kind::Runaway => {
            state.sent_spin.fetch_add(1, Ordering::Relaxed);
            ("noop", format!("spin {idx}"))
        }
        Kind::Embed => ("embed", format!("a short sentence number {idx}")),
        _ => ("noop", format!("request {idx}")),
    };
    let deadline = (kind == Kind::ShortDeadline).then(|| {
        state.sent_short_deadline.fetch_add(1, Ordering::Relaxed);
        Duration::from_micros(1)
    });
    let submission = Submission {
        pipeline: pipeline.to_owned(),
        text,
        priority: priority_of(idx),
        deadline,
        correlation_id: Some(correlation_id.clone()),
        source: Source::Scenario,
    };
    let answer = if kind == Kind::Cancel {
        state.sent_cancel.fetch_add(1, Ordering::Relaxed);
        let (answer, found) = tokio::join!(kernel.submit(submission), async {
            tokio::task::yield_now().await;
            kernel.cancel(&correlation_id).await
        });
        if found {
            state.cancel_hits.fetch_add(1, Ordering::Relaxed);
        }
        answer
    } else {
        kernel.submit(submission).await
    };
    state.outcomes[kind_index(answer.outcome.kind())].fetch_add(1, Ordering::Relaxed);
    state.completions[idx].fetch_add(1, Ordering::Relaxed);
    state.done.add_permits(1);
    drop(permit);
}

fn fail(why: &str) -> ! {
    eprintln!("soak benchmark failed: {why}");
    std::process::exit(2)
}
