//! The request path's benchmark, each part beside its anchors in the same
//! run, interleaved round by round so that other load on a shared machine
//! hits every side alike:
//!
//! 1. **Overhead**: sequential requests through a pipeline with one no-op
//!    Lua stage (admission, the scheduler, a coroutine on the script host,
//!    the answer), against the bare cost of one round trip to another thread
//!    and back (a std channel there, a tokio oneshot back), in alternating
//!    rounds. Target: p50 under 20 µs per request.
//! 2. **Throughput**: the fixed mixed-length corpus (`benches/common/corpus.rs`)
//!    through an HTTP pipeline with an embed stage, 64 requests in flight from
//!    a hyper client in the same process, dynamic batching (length buckets,
//!    batch sizes from the engine's measured costs). Anchors in the same
//!    rounds: Python onnxruntime at its best (`benches/embed_anchor.py
//!    --serve`: each segment tokenized once, ordered by length, at the batch
//!    size a sweep of 1–64 found fastest at the start of this run) and the
//!    engine at batch 1 in corpus order. Every row reports its real-token
//!    efficiency: real tokens/s × MFLOP/token ÷ the FMA loop's fp32 peak,
//!    measured in the same rounds (the median of one loop per round: this
//!    machine's speed moves by a third between minutes).
//!    The fp32 model (`all-MiniLM-L6-v2-fp32`) goes first; each gated
//!    variant of it in the registry follows, with the fp32 pipeline (in the
//!    engine shape it was fastest in) running again in the variant's
//!    rounds, for the variant's speed over it. Targets: ≥ 1.2× the best
//!    Python configuration, ≥ 1.1× the engine at batch 1, ≥ 70% real-token
//!    efficiency (fp32), and the fastest gated variant ≥ 1.8× the fp32
//!    pipeline in the same shape.
//!
//! Two intra-op threads on every side; nothing is pinned (the client, the
//! server and ONNX Runtime share the machine's cores, as they would in use).
//! Prints a progress line per phase, the tables, writes
//! `target/bench/pipeline.json`, and exits non-zero when the Python anchor
//! could not run.
//!
//!     cargo bench -p spindle-http --bench pipeline
//!     SPINDLE_BENCH_SENTENCES=500 cargo bench -p spindle-http --bench pipeline   # a quick trial
//!     SPINDLE_BENCH_ONLY=overhead cargo bench -p spindle-http --bench pipeline   # part 1 alone

#[path = "../../../benches/common/anchor.rs"]
mod anchor;
#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../../benches/common/corpus.rs"]
mod corpus;
#[path = "../../../benches/common/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchor::{Anchor, Measurement, Segment, fp32_peak_gflops, load_average};
use bytes::Bytes;
use common::{TestKernel, start_kernel};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use spindle_embed::{Engine, EngineConfig, Provider, Registry};
use spindle_http::HttpConfig;
use spindle_kernel::{RequestPathConfig, Submission};
use spindle_scheduler::{Priority, Source};

/// The reference every figure is taken with; its gated variants follow.
const REFERENCE_MODEL: &str = "all-MiniLM-L6-v2-fp32";
const THREADS: usize = 2;
/// Requests in flight against each pipeline (`SPINDLE_BENCH_IN_FLIGHT`
/// changes it for a trial).
const IN_FLIGHT: usize = 64;
const SEGMENTS: usize = 4;
const ANCHOR_SWEEP: [usize; 6] = [1, 4, 8, 16, 32, 64];
const OVERHEAD_REQUESTS: usize = 20_000;
const OVERHEAD_ROUNDS: usize = 10;

fn main() -> ExitCode {
    // The allocator settings `spindle` starts with (the kernel runs in this
    // process, as in `spindle run`).
    spindle_kernel::memory::settle_allocator();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    let sentences: usize = std::env::var("SPINDLE_BENCH_SENTENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let corpus = corpus::corpus(sentences);
    let corpus_path = out_dir.join("pipeline_corpus.txt");
    std::fs::write(&corpus_path, corpus.join("\n") + "\n").expect("write corpus");
    let load_before = load_average();
    println!(
        "corpus: {} sentences of 5–60 words; load average before the run: {load_before:.2} \
         ({} cores; other processes share them)",
        corpus.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    if std::env::var("SPINDLE_BENCH_ONLY").as_deref() == Ok("overhead") {
        let runtime = request_runtime();
        let (overhead, hop) = runtime.block_on(overhead_rounds());
        print_overhead(&overhead, &hop);
        return ExitCode::SUCCESS;
    }

    let python = std::env::var_os("SPINDLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/venv/bin/python"));
    let Some(mut anchor) = Anchor::start(&python, &root, REFERENCE_MODEL, &corpus_path) else {
        eprintln!(
            "pipeline bench: the Python anchor could not run; no figures without it \
             (run `python3 scripts/fetch_models.py --all --venv`)"
        );
        return ExitCode::FAILURE;
    };

    eprintln!("phase 1/4: fp32 peak (FMA loop)");
    let peak = fp32_peak_gflops(THREADS);
    println!(
        "fp32 peak ({}, {THREADS} threads, FMA loop): {:.1} GFLOP/s",
        peak.isa, peak.gflops
    );

    let runtime = request_runtime();

    eprintln!("phase 2/4: request path overhead, {OVERHEAD_ROUNDS} rounds against the thread hop");
    let (overhead, hop) = runtime.block_on(overhead_rounds());
    print_overhead(&overhead, &hop);

    let registry = Registry::builtin();
    let mflop_per_token = registry
        .model(REFERENCE_MODEL)
        .map(|spec| spec.mflop_per_token)
        .unwrap_or(f64::NAN);
    // Against the peak measured in the model's own rounds.
    let efficiency = |m: &Measurement, phase: &Phase| {
        mflop_per_token * m.real_tokens_per_s / 1e3 / phase.peak_gflops
    };

    eprintln!("phase 3/4: Python onnxruntime's best batch size (sorted by length)");
    let sweep_end = corpus.len().min(400);
    anchor.run(8, 0, sweep_end.min(64), true);
    let mut sweep = Vec::new();
    for batch in ANCHOR_SWEEP {
        let measurement = anchor.run(batch, 0, sweep_end, true).measurement(sweep_end);
        sweep.push((batch, measurement.sentences_per_s));
    }
    let best_batch = sweep
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(batch, _)| *batch)
        .expect("swept");
    println!(
        "\nPython onnxruntime, sorted by length, first {sweep_end} sentences: {}; best batch {best_batch}",
        sweep
            .iter()
            .map(|(batch, rate)| format!("b={batch} {rate:.0}/s"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut models = vec![REFERENCE_MODEL.to_string()];
    models.extend(
        registry
            .models
            .iter()
            .filter(|spec| {
                spec.measured.reference.as_deref() == Some(REFERENCE_MODEL)
                    && spec.measured.passes_gate()
            })
            .map(|spec| spec.name.clone()),
    );
    eprintln!(
        "phase 4/4: HTTP pipeline of {} beside its anchors, {SEGMENTS} interleaved rounds each",
        models.join(", ")
    );
    // The fp32 model first; each variant then runs beside the fp32
    // pipeline in the shape fp32 was fastest in, in the same rounds, so
    // their ratio does not span minutes of this machine's speed swings.
    let mut phases = vec![runtime.block_on(throughput_rounds(
        REFERENCE_MODEL,
        &corpus,
        &mut anchor,
        best_batch,
        None,
    ))];
    let fp32_shape = phases[0].fastest().engine;
    for model in &models[1..] {
        phases.push(runtime.block_on(throughput_rounds(
            model,
            &corpus,
            &mut anchor,
            best_batch,
            Some(fp32_shape),
        )));
    }

    println!(
        "\nthroughput ({} sentences, unpinned; Python and the engine at batch 1 on {THREADS} \
         intra-op threads, each pipeline in the engine shape its row names; the rows of one model \
         were measured in the same {SEGMENTS} rounds):",
        corpus.len()
    );
    println!(
        "  {:<56} {:>11} {:>10} {:>8} {:>8} {:>8} {:>6}",
        "", "sentences/s", "real tok/s", "padding", "p50 ms", "p99 ms", "eff %"
    );
    let row = |label: &str, m: &Measurement, padding: f64, phase: &Phase| {
        println!(
            "  {label:<56} {:>11.1} {:>10.0} {:>8.3} {:>8.2} {:>8.2} {:>6.1}",
            m.sentences_per_s,
            m.real_tokens_per_s,
            padding,
            m.p50_ms,
            m.p99_ms,
            100.0 * efficiency(m, phase)
        );
    };
    for phase in &phases {
        println!(
            "  {}: FMA peak in these rounds {:.1} GFLOP/s (per round: {})",
            phase.model,
            phase.peak_gflops,
            phase
                .round_peaks
                .iter()
                .map(|gflops| format!("{gflops:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        row(
            &format!("{}: anchor, Python fp32 sorted b={best_batch}", phase.model),
            &phase.python,
            phase.python.real_tokens_per_s / phase.python.padded_tokens_per_s,
            phase,
        );
        if let Some(batch_1) = &phase.engine_batch_1 {
            row(
                &format!("{}: engine, batch 1", phase.model),
                batch_1,
                1.0,
                phase,
            );
        }
        for side in &phase.pipelines {
            row(
                &format!("{}: HTTP pipeline, {}", side.model, side.engine),
                &side.measurement,
                side.padding_ratio,
                phase,
            );
            println!(
                "  {:<56} mean batch {:.1} texts; {} errors; texts the engine tokenized itself: {} of {}",
                "", side.mean_batch, side.errors, side.tokenized_by_engine, side.texts
            );
        }
    }

    let fp32 = &phases[0];
    // The targets are the pipeline's at its fastest engine shape, named.
    let best = fp32.fastest();
    let over_python = best.measurement.sentences_per_s / fp32.python.sentences_per_s;
    let over_batch_1 = fp32.engine_batch_1.as_ref().map_or(f64::NAN, |b1| {
        best.measurement.sentences_per_s / b1.sentences_per_s
    });
    let fp32_efficiency = efficiency(&best.measurement, fp32);
    // Variants against the fp32 pipeline in the same engine shape (the
    // one it is fastest in), measured in the variant's rounds.
    let variant_ratio = |phase: &Phase| {
        phase
            .in_shape(&phase.model, best.engine)
            .measurement
            .sentences_per_s
            / phase
                .in_shape(REFERENCE_MODEL, best.engine)
                .measurement
                .sentences_per_s
    };
    let fastest_variant = phases[1..]
        .iter()
        .max_by(|a, b| variant_ratio(a).total_cmp(&variant_ratio(b)))
        .map(|phase| (phase.model.clone(), variant_ratio(phase)));
    println!(
        "\nratios and targets ({REFERENCE_MODEL} unless named; the pipeline at its fastest engine shape, {}):",
        best.engine
    );
    println!(
        "  HTTP pipeline ÷ best Python configuration (same rounds): {over_python:.3}× (target ≥ 1.2×: {})",
        met(over_python >= 1.2)
    );
    println!(
        "  HTTP pipeline ÷ engine at batch 1 (same rounds):          {over_batch_1:.3}× (target ≥ 1.1×: {})",
        met(over_batch_1 >= 1.1)
    );
    println!(
        "  HTTP pipeline real-token efficiency:                      {:.1}% of {:.0} GFLOP/s (target ≥ 70%: {})",
        100.0 * fp32_efficiency,
        fp32.peak_gflops,
        met(fp32_efficiency >= 0.70)
    );
    println!(
        "  HTTP pipeline padding ratio under load:                   {:.3} (target ≥ 0.95: {})",
        best.padding_ratio,
        met(best.padding_ratio >= 0.95)
    );
    match &fastest_variant {
        Some((name, ratio)) => println!(
            "  fastest gated variant ({name}) ÷ fp32 pipeline, same shape: {ratio:.3}× (target ≥ 1.8×: {})",
            met(*ratio >= 1.8)
        ),
        None => println!("  no gated variant of {REFERENCE_MODEL} in the registry"),
    }
    let load_after = load_average();
    println!("  load average after: {load_after:.2}");

    let json = json!({
        "machine": {
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "pinning": "none",
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "fp32_peak": {"isa": peak.isa, "threads": THREADS, "gflops_at_start": peak.gflops},
        "overhead": {
            "requests": OVERHEAD_REQUESTS,
            "rounds": OVERHEAD_ROUNDS,
            "anchor_thread_hop": { "p50_us": hop.p50_us, "p99_us": hop.p99_us },
            "spindle_noop_lua_stage": { "p50_us": overhead.p50_us, "p99_us": overhead.p99_us },
            "ratio_p50": overhead.p50_us / hop.p50_us,
            "target_p50_us": 20.0,
        },
        "throughput": {
            "sentences": corpus.len(),
            "intra_threads": THREADS,
            "in_flight": in_flight(),
            "rounds": SEGMENTS,
            "mflop_per_token": mflop_per_token,
            "efficiency": "real tokens/s x mflop_per_token / the median fp32 peak of the model's rounds",
            "python_sweep": sweep.iter().map(|(batch, rate)| json!({"batch": batch, "sentences_per_s": rate})).collect::<Vec<_>>(),
            "python_best_batch": best_batch,
            "models": phases.iter().map(|phase| json!({
                "model": phase.model,
                "fp32_peak_gflops": phase.peak_gflops,
                "fp32_peak_gflops_per_round": phase.round_peaks,
                "python_best": phase.python.to_json(mflop_per_token, phase.peak_gflops),
                "engine_batch_1": phase.engine_batch_1.as_ref().map(|m| m.to_json(mflop_per_token, phase.peak_gflops)),
                "pipelines": phase.pipelines.iter().map(|side| json!({
                    "model": side.model,
                    "sessions": side.engine.sessions,
                    "intra_threads_per_session": side.engine.threads,
                    "measurement": side.measurement.to_json(mflop_per_token, phase.peak_gflops),
                    "padding_ratio": side.padding_ratio,
                    "mean_batch": side.mean_batch,
                    "errors": side.errors,
                    "texts_tokenized_by_engine": side.tokenized_by_engine,
                    "texts": side.texts,
                    "ratio_over_python_best": side.measurement.sentences_per_s / phase.python.sentences_per_s,
                })).collect::<Vec<_>>(),
                "ratio_over_fp32_in_its_fastest_shape": variant_ratio(phase),
            })).collect::<Vec<_>>(),
            "targets_engine_shape": {"sessions": best.engine.sessions, "intra_threads_per_session": best.engine.threads},
            "targets": {
                "pipeline_over_python_best": {"value": over_python, "target": 1.2},
                "pipeline_over_engine_batch_1": {"value": over_batch_1, "target": 1.1},
                "real_token_efficiency": {"value": fp32_efficiency, "target": 0.70},
                "padding_ratio": {"value": best.padding_ratio, "target": 0.95},
                "fastest_variant_over_fp32": fastest_variant.as_ref().map(|(name, ratio)| json!({"model": name, "value": ratio, "target": 1.8})),
            },
        },
    });
    let json_path = out_dir.join("pipeline.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write json");
    println!("\nwrote {}", json_path.display());
    // A request that failed makes every figure of its rows meaningless
    // (a failed request is answered fast): the run fails.
    let failed: usize = phases
        .iter()
        .flat_map(|phase| &phase.pipelines)
        .map(|side| side.errors)
        .sum();
    if failed > 0 {
        eprintln!(
            "pipeline bench: {failed} pipeline requests failed; the throughput figures above do not count"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn met(condition: bool) -> &'static str {
    if condition { "met" } else { "NOT met" }
}

const NOOP_SCRIPT: &str = r#"local s = require("spindle")
s.pipeline "noop" { s.stage("noop", function(req) return req end) }
"#;

fn embed_script(model: &str, engine: EngineShape) -> String {
    let EngineShape { sessions, threads } = engine;
    format!(
        r#"local s = require("spindle")
s.service "embedder" {{ embedding = {{ model = "{model}", threads = {threads}, sessions = {sessions}, max_batch_tokens = 8192 }} }}
s.pipeline "ingest" {{ s.stage("embed", s.embed "embedder") }}
"#
    )
}

/// The runtime the kernel's request path runs on, as in `spindle run`.
fn request_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn print_overhead(overhead: &Latencies, hop: &Latencies) {
    println!(
        "\nrequest path overhead ({OVERHEAD_REQUESTS} sequential requests, one no-op Lua stage, \
         {OVERHEAD_ROUNDS} rounds alternating with the anchor):"
    );
    println!("  {:<44} {:>10} {:>10}", "", "p50 µs", "p99 µs");
    println!(
        "  {:<44} {:>10.1} {:>10.1}",
        "anchor: thread hop (std channel + oneshot)", hop.p50_us, hop.p99_us
    );
    println!(
        "  {:<44} {:>10.1} {:>10.1}",
        "spindle: submit → Lua no-op → answer", overhead.p50_us, overhead.p99_us
    );
    println!(
        "  ratio {:.2}× the anchor at p50; target p50 < 20 µs: {}",
        overhead.p50_us / hop.p50_us,
        met(overhead.p50_us < 20.0)
    );
}

/// The no-op pipeline's latency and the thread hop's, in alternating
/// rounds of `OVERHEAD_REQUESTS / OVERHEAD_ROUNDS` each.
async fn overhead_rounds() -> (Latencies, Latencies) {
    // Submitted from a task on the runtime, as every front end submits
    // (HTTP handlers, the netlink bridge, the Jupyter kernel), not from the
    // thread that blocks on the runtime.
    tokio::spawn(overhead_rounds_on_runtime())
        .await
        .expect("overhead rounds")
}

async fn overhead_rounds_on_runtime() -> (Latencies, Latencies) {
    let mut config = RequestPathConfig::default();
    config.scheduler.capacity.medium = 4096;
    let test = start_kernel(NOOP_SCRIPT, config);
    test.ready("noop").await;
    let hop = ThreadHop::start();
    let per_round = OVERHEAD_REQUESTS / OVERHEAD_ROUNDS;
    noop_requests(&test, 1000).await;
    hop.run(1000).await;
    let (mut spindle, mut anchor) = (Vec::new(), Vec::new());
    for round in 0..OVERHEAD_ROUNDS {
        if round % 2 == 0 {
            anchor.extend(hop.run(per_round).await);
            spindle.extend(noop_requests(&test, per_round).await);
        } else {
            spindle.extend(noop_requests(&test, per_round).await);
            anchor.extend(hop.run(per_round).await);
        }
    }
    (Latencies::of(spindle), Latencies::of(anchor))
}

async fn noop_requests(test: &TestKernel, count: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for idx in 0..count {
        let submission = Submission {
            pipeline: "noop".to_owned(),
            text: format!("request {idx}"),
            priority: Priority::Medium,
            deadline: None,
            correlation_id: None,
            source: Source::Scenario,
        };
        let started = Instant::now();
        let answer = test.kernel.submit(submission).await;
        samples.push(started.elapsed());
        assert!(matches!(answer.outcome, spindle_scheduler::Outcome::Ok(_)));
    }
    samples
}

/// The irreducible part of the request path's hop: a message to a
/// dedicated thread (as to the script host) and a tokio oneshot back.
struct ThreadHop {
    sender: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl ThreadHop {
    fn start() -> ThreadHop {
        let (sender, receiver) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
        std::thread::spawn(move || {
            for reply in receiver {
                let _ = reply.send(());
            }
        });
        ThreadHop { sender }
    }

    async fn run(&self, count: usize) -> Vec<Duration> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.sender.send(reply).expect("thread");
            answer.await.expect("reply");
            samples.push(started.elapsed());
        }
        samples
    }
}

/// How an embedding service's engine runs: sessions side by side, each on
/// `threads` intra-op threads.
#[derive(Clone, Copy, Debug, PartialEq)]
struct EngineShape {
    sessions: usize,
    threads: usize,
}

impl std::fmt::Display for EngineShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} session{} x {} thread{}",
            self.sessions,
            plural(self.sessions),
            self.threads,
            plural(self.threads)
        )
    }
}

/// One session on every core: the default, best for a lone request.
const ONE_SESSION: EngineShape = EngineShape {
    sessions: 1,
    threads: THREADS,
};
/// A session per core, one thread each: two batches at once.
const SESSION_PER_CORE: EngineShape = EngineShape {
    sessions: THREADS,
    threads: 1,
};

/// One model's pipeline (in one or more engine shapes) beside Python at
/// its best (and the engine at batch 1), measured in the same rounds.
struct Phase {
    model: String,
    /// The model in each engine shape, the default first; in a variant's
    /// phase, then the fp32 pipeline it is compared with.
    pipelines: Vec<PipelineRow>,
    python: Measurement,
    engine_batch_1: Option<Measurement>,
    /// The FMA loop's peak once per round, and their median.
    round_peaks: Vec<f64>,
    peak_gflops: f64,
}

impl Phase {
    /// The pipeline row of `model` in `engine`: the phase's own model runs
    /// in every shape, and a variant's phase holds the fp32 pipeline in the
    /// shape fp32 is fastest in.
    fn in_shape(&self, model: &str, engine: EngineShape) -> &PipelineRow {
        self.pipelines
            .iter()
            .find(|row| row.model == model && row.engine == engine)
            .expect("measured in this phase")
    }

    /// The phase's own model in its fastest shape.
    fn fastest(&self) -> &PipelineRow {
        self.pipelines
            .iter()
            .filter(|row| row.model == self.model)
            .max_by(|a, b| {
                a.measurement
                    .sentences_per_s
                    .total_cmp(&b.measurement.sentences_per_s)
            })
            .expect("at least one pipeline")
    }
}

struct PipelineRow {
    model: String,
    engine: EngineShape,
    measurement: Measurement,
    padding_ratio: f64,
    mean_batch: f64,
    errors: usize,
    tokenized_by_engine: u64,
    texts: u64,
}

/// A kernel behind the HTTP ingress, its embedding service in one shape.
struct PipelineSide {
    model: String,
    engine: EngineShape,
    test: TestKernel,
    url: String,
    shutdown: tokio_util::sync::CancellationToken,
    segment: Segment,
    errors: usize,
    before: Option<spindle_kernel::MetricsSnapshot>,
}

impl PipelineSide {
    async fn start(model: &str, engine: EngineShape) -> PipelineSide {
        let mut config = RequestPathConfig::default();
        config.scheduler.capacity.medium = 4096;
        let test = start_kernel(&embed_script(model, engine), config);
        test.ready("ingest").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/v1/pipelines/ingest",
            listener.local_addr().expect("address")
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(spindle_http::serve(
            listener,
            test.kernel.clone(),
            HttpConfig::default(),
            shutdown.clone(),
        ));
        PipelineSide {
            model: model.to_string(),
            engine,
            test,
            url,
            shutdown,
            segment: Segment::default(),
            errors: 0,
            before: None,
        }
    }

    async fn run(&mut self, client: &HttpClient, texts: &[String]) {
        let metrics_before = self.test.kernel.metrics().await;
        let started = Instant::now();
        let (latencies, failed) = run_pipeline(client, &self.url, texts).await;
        let seconds = started.elapsed().as_secs_f64();
        let metrics_after = self.test.kernel.metrics().await;
        let (real, padded) = token_delta(&metrics_before, &metrics_after);
        self.errors += failed;
        self.segment.add(Segment {
            latencies,
            real_tokens: real as usize,
            padded_tokens: padded as usize,
            seconds,
        });
    }

    async fn finish(self, texts: usize) -> PipelineRow {
        let before = self.before.expect("measured");
        let after = self.test.kernel.metrics().await;
        let (batches, items) = after
            .batchers
            .iter()
            .zip(&before.batchers)
            .map(|((_, a), (_, b))| (a.batches - b.batches, a.items - b.items))
            .fold((0, 0), |(x, y), (a, b)| (x + a, y + b));
        let engine_counts = |metrics: &spindle_kernel::MetricsSnapshot| {
            metrics
                .engines
                .iter()
                .fold((0, 0), |(t, k), e| (t + e.texts, k + e.tokenized_by_engine))
        };
        let (texts_before, tokenized_before) = engine_counts(&before);
        let (texts_after, tokenized_after) = engine_counts(&after);
        self.shutdown.cancel();
        let measurement = self.segment.measurement(texts);
        PipelineRow {
            model: self.model,
            engine: self.engine,
            padding_ratio: measurement.real_tokens_per_s / measurement.padded_tokens_per_s,
            measurement,
            mean_batch: items as f64 / batches.max(1) as f64,
            errors: self.errors,
            tokenized_by_engine: tokenized_after - tokenized_before,
            texts: texts_after - texts_before,
        }
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Every model's pipeline runs in both engine shapes. The reference
/// model's runs beside the engine at batch 1; a variant's beside the
/// reference model's pipeline in `fp32_alongside`.
async fn throughput_rounds(
    model: &str,
    corpus: &[String],
    anchor: &mut Anchor,
    python_batch: usize,
    fp32_alongside: Option<EngineShape>,
) -> Phase {
    let reference = fp32_alongside.is_none();
    let mut sides = Vec::new();
    for shape in [ONE_SESSION, SESSION_PER_CORE] {
        sides.push(PipelineSide::start(model, shape).await);
    }
    if let Some(shape) = fp32_alongside {
        sides.push(PipelineSide::start(REFERENCE_MODEL, shape).await);
    }
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(in_flight())
        .build_http::<Full<Bytes>>();
    let batch_1 = reference.then(|| {
        Engine::start(EngineConfig {
            model: model.to_string(),
            providers: vec![Provider::Cpu],
            intra_threads: Some(THREADS),
            ..EngineConfig::default()
        })
        .unwrap_or_else(|error| panic!("{model}: {error}"))
    });

    // Warm-up on every side.
    let warm = corpus.len().min(128);
    for side in &sides {
        run_pipeline(&client, &side.url, &corpus[..warm]).await;
    }
    anchor.run(python_batch, 0, warm, true);
    if let Some(engine) = &batch_1 {
        run_batch_1(engine, &corpus[..warm.min(16)]);
    }

    for side in &mut sides {
        side.before = Some(side.test.kernel.metrics().await);
    }
    let (mut python, mut engine_1) = (Segment::default(), Segment::default());
    let size = corpus.len().div_ceil(SEGMENTS).max(1);
    let mut round_peaks = Vec::new();
    // Each round runs every side once, and the FMA loop, the first turn
    // rotating.
    let turns = sides.len() + 3;
    for (round, start) in (0..corpus.len()).step_by(size).enumerate() {
        let end = (start + size).min(corpus.len());
        for turn in 0..turns {
            match (round + turn) % turns {
                0 => python.add(anchor.run(python_batch, start, end, true)),
                1 => {
                    if let Some(engine) = &batch_1 {
                        engine_1.add(run_batch_1(engine, &corpus[start..end]));
                    }
                }
                2 => round_peaks.push(fp32_peak_gflops(THREADS).gflops),
                index => sides[index - 3].run(&client, &corpus[start..end]).await,
            }
        }
    }
    let mut pipelines = Vec::new();
    for side in sides {
        pipelines.push(side.finish(corpus.len()).await);
    }
    let peak_gflops = report::median(&round_peaks);
    Phase {
        model: model.to_string(),
        pipelines,
        python: python.measurement(corpus.len()),
        engine_batch_1: batch_1.map(|_| engine_1.measurement(corpus.len())),
        round_peaks,
        peak_gflops,
    }
}

/// Real and padded tokens the batchers computed between two snapshots.
fn token_delta(
    before: &spindle_kernel::MetricsSnapshot,
    after: &spindle_kernel::MetricsSnapshot,
) -> (u64, u64) {
    after
        .batchers
        .iter()
        .zip(&before.batchers)
        .map(|((_, a), (_, b))| {
            (
                a.real_tokens - b.real_tokens,
                a.padded_tokens - b.padded_tokens,
            )
        })
        .fold((0, 0), |(r, p), (a, b)| (r + a, p + b))
}

/// The engine one text at a time, in corpus order, tokenizing in the timed
/// region as the pipeline does.
fn run_batch_1(engine: &Engine, texts: &[String]) -> Segment {
    let mut segment = Segment::default();
    let started = Instant::now();
    for text in texts {
        let t0 = Instant::now();
        let result = engine.embed(std::slice::from_ref(text)).expect("batch");
        segment.latencies.push(t0.elapsed().as_secs_f64());
        segment.real_tokens += result.real_tokens;
        segment.padded_tokens += result.padded_tokens;
    }
    segment.seconds = started.elapsed().as_secs_f64();
    segment
}

fn in_flight() -> usize {
    std::env::var("SPINDLE_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(IN_FLIGHT)
}

/// `texts` through the HTTP pipeline, `in_flight()` at a time: each
/// request's latency in seconds, and the number that failed.
async fn run_pipeline(client: &HttpClient, url: &str, texts: &[String]) -> (Vec<f64>, usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let texts: Arc<Vec<String>> = Arc::new(texts.to_vec());
    let mut workers = Vec::new();
    for _ in 0..in_flight() {
        let client = client.clone();
        let url = url.to_owned();
        let next = next.clone();
        let texts = texts.clone();
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            loop {
                let idx = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(text) = texts.get(idx) else {
                    return (latencies, errors);
                };
                let body = json!({ "text": text, "deadline_ms": 120_000 }).to_string();
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                let started = Instant::now();
                match client.request(request).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.into_body().collect().await;
                        errors += usize::from(!ok);
                    }
                    Err(_) => errors += 1,
                }
                latencies.push(started.elapsed().as_secs_f64());
            }
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (l, e) = worker.await.expect("worker");
        latencies.extend(l);
        errors += e;
    }
    (latencies, errors)
}

struct Latencies {
    p50_us: f64,
    p99_us: f64,
}

impl Latencies {
    fn of(mut samples: Vec<Duration>) -> Latencies {
        samples.sort();
        let pick = |q: f64| {
            samples[((q * samples.len() as f64) as usize).min(samples.len() - 1)].as_secs_f64()
                * 1e6
        };
        Latencies {
            p50_us: pick(0.50),
            p99_us: pick(0.99),
        }
    }
}
