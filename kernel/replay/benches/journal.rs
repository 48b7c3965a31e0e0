//! The journal's cost and the replay's speed, each beside its anchor in the
//! same run:
//!
//! 1. **Throughput**: the fixed mixed-length corpus through a pipeline with
//!    an embed stage (all-MiniLM-L6-v2, two intra-op threads, 64 requests
//!    in flight, submitted through the `Kernel` handle), journal off (the
//!    anchor) against journal on, in `SPINDLE_BENCH_ROUNDS` (default 5)
//!    pairs of runs back to back; the loss is the median of the pairs'.
//!    Target: at most 5% fewer sentences/s.
//! 2. **Overhead**: sequential requests through one no-op Lua stage,
//!    journal off against on: the journal's worst case (the request itself
//!    costs almost nothing).
//! 3. **Replay**: a journal of 100,000 no-op requests (recorded in 2.)
//!    replayed as fast as possible on a fresh kernel, every answer compared.
//! 4. **State**: requests whose one Lua stage does `s.state().incr` on a
//!    durable store (redb, committed to disk before the answer), 64 in
//!    flight, against the same requests with a no-op stage: state
//!    operations per second from Lua.
//!
//! Nothing is pinned; other work on the machine disturbs the figures (say
//! so next to them). Prints a table and writes `target/bench/journal.json`.
//!
//!     cargo bench -p spindle-replay --bench journal
//!     SPINDLE_BENCH_SENTENCES=500 SPINDLE_BENCH_REQUESTS=20000 cargo bench -p spindle-replay --bench journal

#[path = "../../../benches/common/corpus.rs"]
mod corpus;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_journal::{JournalConfig, JournalReader};
use spindle_kernel::{Kernel, KernelConfig, KernelEvent, KernelSource, Submission};
use spindle_replay::{ReplayConfig, Timeline, Timing};
use spindle_scheduler::{Gate, Priority, Source};
use tokio::sync::Semaphore;

const IN_FLIGHT: usize = 64;

const EMBED_SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2", threads = 2 } }
s.pipeline "ingest" { s.stage("embed", s.embed "embedder") }
"#;

const NOOP_SCRIPT: &str = r#"local s = require("spindle")
s.pipeline "noop" { s.stage("noop", function(req) return req end) }
s.pipeline "state" { s.stage("incr", function(req) s.state().incr("n") return req end) }
"#;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    let env_number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let corpus = corpus::corpus(env_number("SPINDLE_BENCH_SENTENCES", 2000));
    let requests = env_number("SPINDLE_BENCH_REQUESTS", 100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let embed_script = dir.path().join("embed.lua");
    std::fs::write(&embed_script, EMBED_SCRIPT).expect("write");
    let noop_script = dir.path().join("noop.lua");
    std::fs::write(&noop_script, NOOP_SCRIPT).expect("write");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Pairs of runs, off then on back to back; the loss is the median
        // of the pairs' losses (on a shared machine one pair's halves can
        // differ by 2x either way, a median of several settles it).
        let rounds = env_number("SPINDLE_BENCH_ROUNDS", 5).max(1);
        let mut off = Vec::new();
        let mut on = Vec::new();
        let mut pair_losses = Vec::new();
        for round in 0..rounds {
            let off_rate = throughput(&embed_script, None, &corpus).await;
            let journal = dir.path().join(format!("embed-journal-{round}"));
            let on_rate = throughput(&embed_script, Some(&journal), &corpus).await;
            eprintln!(
                "pair {}/{rounds}: journal off {off_rate:.1}, on {on_rate:.1} sentences/s",
                round + 1
            );
            off.push(off_rate);
            on.push(on_rate);
            pair_losses.push(1.0 - on_rate / off_rate);
        }
        let median = |values: &[f64]| {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            let middle = sorted.len() / 2;
            if sorted.len().is_multiple_of(2) {
                (sorted[middle - 1] + sorted[middle]) / 2.0
            } else {
                sorted[middle]
            }
        };
        let (off_rate, on_rate) = (median(&off), median(&on));
        let loss = median(&pair_losses);

        let noop_journal = dir.path().join("noop-journal");
        let overhead_off = overhead(&noop_script, None, requests).await;
        let overhead_on = overhead(&noop_script, Some(&noop_journal), requests).await;

        let reader = JournalReader::open(&noop_journal).expect("the journal reads");
        let timeline = Timeline::from_records(reader.latest_run());
        let recorded = timeline.requests().count();
        let answered = timeline
            .requests()
            .filter(|request| request.answered.is_some())
            .count();
        println!(
            "journal of the overhead run: {recorded} requests, {answered} with their answer, torn tail {:?}, problems {:?}",
            reader.report.torn_tail, reader.report.problems
        );
        let kernel = start(&noop_script, None).await;
        let started = Instant::now();
        let report = spindle_replay::replay(
            &kernel,
            &timeline,
            &ReplayConfig {
                timing: Timing::Fast,
                cosine_min: 0.999,
            },
        )
        .await;
        let replay_elapsed = started.elapsed();
        kernel.shutdown();
        kernel.wait().await.expect("stops");
        let replay_rate = report.requests.len() as f64 / replay_elapsed.as_secs_f64();

        let state_requests = (requests / 5).max(1000);
        let kernel = start_with_data(&noop_script, &dir.path().join("state-data")).await;
        let noop_rate = concurrent(&kernel, "noop", state_requests).await;
        let state_rate = concurrent(&kernel, "state", state_requests).await;
        kernel.shutdown();
        kernel.wait().await.expect("stops");

        println!();
        println!(
            "throughput ({} sentences, all-MiniLM-L6-v2, 2 intra-op threads, {IN_FLIGHT} in flight; medians of {rounds} pairs):",
            corpus.len()
        );
        println!("  {:<40} {:>12}", "", "sentences/s");
        println!("  {:<40} {:>12.1}", "anchor: journal off", off_rate);
        println!("  {:<40} {:>12.1}", "journal on", on_rate);
        println!(
            "  loss {:.1}% (median of the pairs' losses: {}); target ≤ 5%: {}",
            loss * 100.0,
            pair_losses
                .iter()
                .map(|loss| format!("{:.1}%", loss * 100.0))
                .collect::<Vec<_>>()
                .join(" "),
            if loss <= 0.05 { "met" } else { "NOT met" }
        );
        println!();
        println!("overhead ({requests} sequential requests, one no-op Lua stage):");
        println!("  {:<40} {:>10} {:>10}", "", "p50 µs", "p99 µs");
        println!(
            "  {:<40} {:>10.1} {:>10.1}",
            "anchor: journal off", overhead_off.0, overhead_off.1
        );
        println!(
            "  {:<40} {:>10.1} {:>10.1}",
            "journal on", overhead_on.0, overhead_on.1
        );
        println!("  ratio {:.2}× at p50", overhead_on.0 / overhead_off.0);
        println!();
        println!(
            "replay ({} requests, --fast, every answer compared): {:.2}s, {:.0} requests/s; {} differ",
            report.requests.len(),
            replay_elapsed.as_secs_f64(),
            replay_rate,
            report.differing()
        );
        println!();
        println!("state ({state_requests} requests, {IN_FLIGHT} in flight, one Lua stage, durable store):");
        println!("  {:<40} {:>12}", "", "requests/s");
        println!("  {:<40} {:>12.0}", "anchor: no-op stage", noop_rate);
        println!("  {:<40} {:>12.0}", "s.state().incr in the stage", state_rate);
        println!("  ratio {:.2}× the anchor", state_rate / noop_rate);
        let json = format!(
            concat!(
                "{{\"machine\":{{\"cores\":{},\"pinning\":\"none\"}},",
                "\"throughput\":{{\"sentences\":{},\"off_per_s\":{:.1},\"on_per_s\":{:.1},\"loss\":{:.4},\"target_loss\":0.05}},",
                "\"overhead\":{{\"requests\":{},\"off_p50_us\":{:.1},\"off_p99_us\":{:.1},\"on_p50_us\":{:.1},\"on_p99_us\":{:.1}}},",
                "\"replay\":{{\"requests\":{},\"seconds\":{:.3},\"per_s\":{:.0},\"differ\":{}}},",
                "\"state\":{{\"requests\":{},\"noop_per_s\":{:.0},\"incr_per_s\":{:.0}}}}}\n"
            ),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            corpus.len(),
            off_rate,
            on_rate,
            loss,
            requests,
            overhead_off.0,
            overhead_off.1,
            overhead_on.0,
            overhead_on.1,
            report.requests.len(),
            replay_elapsed.as_secs_f64(),
            replay_rate,
            report.differing(),
            state_requests,
            noop_rate,
            state_rate
        );
        std::fs::write(out_dir.join("journal.json"), json).expect("write json");
    });
}

/// Starts a kernel on `script` and waits until its pipelines are open.
async fn start(script: &Path, journal: Option<&Path>) -> Kernel {
    let config = KernelConfig {
        journal: journal.map(JournalConfig::new),
        ..KernelConfig::default()
    };
    let kernel =
        Kernel::start(KernelSource::Script(script.to_path_buf()), config).expect("kernel starts");
    let mut events = kernel.subscribe(false);
    let mut closed: usize = kernel
        .pipelines()
        .iter()
        .filter(|pipeline| pipeline.gate != Gate::Open)
        .count();
    while closed > 0 {
        match events.recv().await.expect("events until ready") {
            KernelEvent::Pipeline {
                gate: Gate::Open, ..
            } => closed -= 1,
            KernelEvent::Pipeline {
                gate: Gate::Failed { reason },
                ..
            } => panic!("the pipeline failed: {reason}"),
            _ => {}
        }
    }
    kernel
}

/// A kernel with a data directory (a durable state store).
async fn start_with_data(script: &Path, data_dir: &Path) -> Kernel {
    let config = KernelConfig {
        data_dir: Some(data_dir.to_path_buf()),
        ..KernelConfig::default()
    };
    Kernel::start(KernelSource::Script(script.to_path_buf()), config).expect("kernel starts")
}

/// Requests per second through `pipeline`, IN_FLIGHT at a time.
async fn concurrent(kernel: &Kernel, pipeline: &'static str, requests: usize) -> f64 {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for idx in 0..requests {
        let permit = permits.clone().acquire_owned().await.expect("permit");
        let kernel = kernel.clone();
        tasks.push(tokio::spawn(async move {
            let answer = kernel.submit(submission(pipeline, format!("r{idx}"))).await;
            drop(permit);
            answer.outcome.kind()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task").as_str(), "ok");
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

fn submission(pipeline: &str, text: String) -> Submission {
    Submission {
        pipeline: pipeline.to_owned(),
        text,
        priority: Priority::Medium,
        deadline: Some(Duration::from_secs(120)),
        correlation_id: None,
        source: Source::Scenario,
    }
}

/// Sentences per second through the embed pipeline.
async fn throughput(script: &Path, journal: Option<&Path>, corpus: &[String]) -> f64 {
    let kernel = start(script, journal).await;
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(corpus.len());
    for text in corpus {
        let permit = permits.clone().acquire_owned().await.expect("permit");
        let kernel = kernel.clone();
        let text = text.clone();
        tasks.push(tokio::spawn(async move {
            let answer = kernel.submit(submission("ingest", text)).await;
            drop(permit);
            answer.outcome.kind()
        }));
    }
    for task in tasks {
        let kind = task.await.expect("task");
        assert_eq!(kind.as_str(), "ok");
    }
    let rate = corpus.len() as f64 / started.elapsed().as_secs_f64();
    kernel.shutdown();
    kernel.wait().await.expect("stops");
    rate
}

/// p50 and p99 of sequential no-op requests, in µs.
async fn overhead(script: &Path, journal: Option<&Path>, requests: usize) -> (f64, f64) {
    let kernel = start(script, journal).await;
    let mut latencies = Vec::with_capacity(requests);
    for idx in 0..requests {
        let started = Instant::now();
        let answer = kernel
            .submit(submission("noop", format!("request {idx}")))
            .await;
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(answer.outcome.kind().as_str(), "ok");
    }
    kernel.shutdown();
    kernel.wait().await.expect("stops");
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}
