//! What the script host's debug seam and budgets cost, measured in one run.
//!
//! Armed and disabled budgets are compared on one host (one Lua thread, one
//! Lua state) whose default budget is off (`HostConfig::default_stage_budget
//! = None`): the same Lua function is the stage of a pipeline declaring
//! `budget = "1s"` (the watchdog armed on every resume) and of pipelines
//! declaring none (disabled). Comparing two hosts instead would compare two
//! threads, which an unpinned, shared machine places on cores unlike each
//! other.
//!
//! 1. Budget watchdog: a Lua-heavy stage (about a million VM instructions),
//!    armed against disabled, and disabled against a second disabled
//!    pipeline (an A/A comparison: the run's noise floor). Requests take
//!    turns, so noise from other processes hits all alike; the ratio is the
//!    median of per-round ratios.
//! 2. Per-request cost of a no-op pipeline through the host, one request at
//!    a time (submit → reply on the caller's thread), budget armed and
//!    disabled, against an anchor: the same job channel and reply callback
//!    to a thread that runs no Lua. And pipelined: 10,000 submitted at once.
//! 3. `req.vector`: a pipeline of an embed stage (answered at once with 384
//!    numbers) and a stage that does not read the vector, against one whose
//!    stage sums it; and the table copy that the embed stage no longer makes,
//!    timed on its own.
//!
//! Prints a table and writes `target/bench/lua_host.json`. Threads are not
//! pinned; the load average before and after is printed and written, since
//! the machine may be shared.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use futures::StreamExt;
use spindle_scripting::{
    Effects, EmbedAnswer, EmbedCall, EmbedReply, HostConfig, PipelineRequest, RunOutcome,
    ScriptHost,
};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
local function work(req)
  local acc = 0
  for i = 1, 250000 do acc = (acc + i * 3) % 1000003 end
  req.acc = acc
  return req
end
local function noop(req) return req end
s.pipeline "heavy_armed" { budget = "1s", s.stage("work", work) }
s.pipeline "heavy_disabled" { s.stage("work", work) }
s.pipeline "heavy_control" { s.stage("work", work) }
s.pipeline "noop_armed" { budget = "1s", s.stage("noop", noop) }
s.pipeline "noop_disabled" { s.stage("noop", noop) }
s.pipeline "embed_unread" {
  s.stage("embed", s.embed "embedder"),
  s.stage("tag", function(req) req.tagged = true return req end),
}
s.pipeline "embed_summed" {
  s.stage("embed", s.embed "embedder"),
  s.stage("sum", function(req)
    local sum = 0
    for _, x in ipairs(req.vector) do sum = sum + x end
    req.sum = sum
    return req
  end),
}
"#;

const HEAVY_ROUNDS: usize = 400;
const NOOP_ROUNDS: usize = 20_000;
const PIPELINED: usize = 10_000;
const VECTOR_ROUNDS: usize = 10_000;
const DIMENSIONS: usize = 384;

struct InstantEmbeddings {
    vector: Vec<f32>,
}

impl Effects for InstantEmbeddings {
    fn embed(&self, _call: EmbedCall, reply: EmbedReply) {
        reply(Ok(EmbedAnswer {
            vector: self.vector.clone(),
            from_fallback: false,
        }));
    }
}

fn main() {
    let load_before = load_average();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bench.lua");
    std::fs::write(&file, SCRIPT).expect("write script");
    let effects: Arc<dyn Effects> = Arc::new(InstantEmbeddings {
        vector: (0..DIMENSIONS).map(|idx| idx as f32 / 1000.0).collect(),
    });
    let start = |config: HostConfig| {
        let (host, evaluation) =
            ScriptHost::start_with_config(&file, effects.clone(), config).expect("host");
        assert!(!evaluation.has_errors(), "{:?}", evaluation.diagnostics);
        host
    };
    let host = start(HostConfig {
        default_stage_budget: None,
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut json = String::from("{\n");
    let _ = writeln!(json, "  \"cores\": {cores},\n  \"pinned\": false,");

    // 1. The watchdog on a Lua-heavy stage.
    eprintln!("phase 1/3: Lua-heavy stage, {HEAVY_ROUNDS} rounds, three pipelines taking turns");
    for _ in 0..20 {
        for pipeline in ["heavy_armed", "heavy_disabled", "heavy_control"] {
            run(&host, pipeline);
        }
    }
    let (mut heavy_armed, mut heavy_disabled, mut heavy_control) =
        (Vec::new(), Vec::new(), Vec::new());
    for round in 0..HEAVY_ROUNDS {
        let mut turn = [
            ("heavy_armed", &mut heavy_armed),
            ("heavy_disabled", &mut heavy_disabled),
            ("heavy_control", &mut heavy_control),
        ];
        turn.rotate_left(round % 3);
        for (pipeline, samples) in turn {
            samples.push(timed(&host, pipeline));
        }
    }

    // 2. No-op pipeline, one at a time and pipelined.
    eprintln!("phase 2/3: no-op pipeline, {NOOP_ROUNDS} sequential requests per path");
    let anchor = AnchorHost::start();
    for _ in 0..2_000 {
        run(&host, "noop_armed");
        run(&host, "noop_disabled");
        anchor.round_trip();
    }
    let (mut noop_armed, mut noop_disabled, mut noop_anchor) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..NOOP_ROUNDS {
        let mut turn = [Path::Armed, Path::Disabled, Path::Anchor];
        turn.rotate_left(round % 3);
        for path in turn {
            match path {
                Path::Armed => noop_armed.push(timed(&host, "noop_armed")),
                Path::Disabled => noop_disabled.push(timed(&host, "noop_disabled")),
                Path::Anchor => {
                    let started = Instant::now();
                    anchor.round_trip();
                    noop_anchor.push(started.elapsed());
                }
            }
        }
    }
    let pipelined_armed = pipelined(&host, "noop_armed");
    let pipelined_disabled = pipelined(&host, "noop_disabled");

    // 3. req.vector.
    eprintln!("phase 3/3: req.vector, {VECTOR_ROUNDS} requests per pipeline");
    let (mut unread, mut summed) = (Vec::new(), Vec::new());
    for round in 0..VECTOR_ROUNDS {
        if round % 2 == 0 {
            unread.push(timed(&host, "embed_unread"));
            summed.push(timed(&host, "embed_summed"));
        } else {
            summed.push(timed(&host, "embed_summed"));
            unread.push(timed(&host, "embed_unread"));
        }
    }
    let table_copy = table_copy_cost();
    let load_after = load_average();

    println!(
        "script host, {cores} cores, unpinned; load average before {load_before}, after {load_after}"
    );
    println!("{:<58} {:>9} {:>9}", "path", "p50 µs", "p99 µs");
    let rows: [(&str, &Vec<Duration>); 8] = [
        ("heavy stage, budget armed (budget = \"1s\")", &heavy_armed),
        ("heavy stage, no budget", &heavy_disabled),
        (
            "heavy stage, no budget (second pipeline, A/A)",
            &heavy_control,
        ),
        ("no-op pipeline, budget armed", &noop_armed),
        ("no-op pipeline, no budget", &noop_disabled),
        ("anchor: job channel + reply callback, no Lua", &noop_anchor),
        ("embed + stage not reading req.vector (384)", &unread),
        ("embed + stage summing req.vector (384)", &summed),
    ];
    for (name, samples) in rows {
        println!(
            "{:<58} {:>9.2} {:>9.2}",
            name,
            micros(samples, 0.50),
            micros(samples, 0.99)
        );
    }
    let heavy_ratio = paired_ratio(&heavy_armed, &heavy_disabled);
    let control_ratio = paired_ratio(&heavy_control, &heavy_disabled);
    let heavy_mean_ratio = mean(&heavy_armed) / mean(&heavy_disabled);
    let noop_ratio = paired_ratio(&noop_armed, &noop_disabled);
    println!(
        "ratio heavy stage armed / disabled: median of paired rounds {heavy_ratio:.3}×, of means {heavy_mean_ratio:.3}×; \
         noise floor (disabled / disabled, A/A) {control_ratio:.3}× (target: no difference beyond the A/A)"
    );
    println!(
        "ratio no-op pipeline armed / disabled: median of paired rounds {noop_ratio:.3}×; host cost over the anchor: {:.2} µs (p50)",
        micros(&noop_disabled, 0.50) - micros(&noop_anchor, 0.50)
    );
    println!(
        "pipelined, {PIPELINED} no-op requests submitted at once: {:.2} µs/request armed, {:.2} µs/request disabled",
        pipelined_armed, pipelined_disabled
    );
    println!(
        "the 384-number table copy the embed stage no longer makes: {:.2} µs per request (p50, measured alone)",
        table_copy
    );
    let _ = writeln!(
        json,
        "  \"load_average_before\": \"{load_before}\",\n  \"load_average_after\": \"{load_after}\","
    );
    let _ = writeln!(
        json,
        "  \"heavy_stage\": {{\"armed_p50_us\": {:.2}, \"armed_p99_us\": {:.2}, \"disabled_p50_us\": {:.2}, \"disabled_p99_us\": {:.2}, \"control_p50_us\": {:.2}, \"paired_ratio_median\": {heavy_ratio:.4}, \"ratio_mean\": {heavy_mean_ratio:.4}, \"control_paired_ratio_median\": {control_ratio:.4}, \"rounds\": {HEAVY_ROUNDS}}},",
        micros(&heavy_armed, 0.50),
        micros(&heavy_armed, 0.99),
        micros(&heavy_disabled, 0.50),
        micros(&heavy_disabled, 0.99),
        micros(&heavy_control, 0.50),
    );
    let _ = writeln!(
        json,
        "  \"noop_pipeline\": {{\"armed_p50_us\": {:.3}, \"armed_p99_us\": {:.3}, \"disabled_p50_us\": {:.3}, \"disabled_p99_us\": {:.3}, \"anchor_p50_us\": {:.3}, \"anchor_p99_us\": {:.3}, \"paired_ratio_median\": {noop_ratio:.4}, \"pipelined_armed_us_per_request\": {pipelined_armed:.3}, \"pipelined_disabled_us_per_request\": {pipelined_disabled:.3}}},",
        micros(&noop_armed, 0.50),
        micros(&noop_armed, 0.99),
        micros(&noop_disabled, 0.50),
        micros(&noop_disabled, 0.99),
        micros(&noop_anchor, 0.50),
        micros(&noop_anchor, 0.99),
    );
    let _ = writeln!(
        json,
        "  \"vector\": {{\"unread_p50_us\": {:.3}, \"summed_p50_us\": {:.3}, \"table_copy_p50_us\": {table_copy:.3}, \"dimensions\": {DIMENSIONS}}}",
        micros(&unread, 0.50),
        micros(&summed, 0.50),
    );
    json.push_str("}\n");
    let path = bench_dir().join("lua_host.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create target/bench");
    std::fs::write(&path, json).expect("write json");
    println!("\nwrote {}", path.display());
}

/// The three ways one no-op round trip is made.
#[derive(Clone, Copy)]
enum Path {
    Armed,
    Disabled,
    Anchor,
}

fn request(pipeline: &str) -> PipelineRequest {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    PipelineRequest {
        id,
        correlation_id: String::new(),
        pipeline: pipeline.to_owned(),
        priority: "medium".to_owned(),
        text: "a short text".to_owned(),
        scope: Default::default(),
        stage_log: None,
    }
}

fn run(host: &ScriptHost, pipeline: &str) {
    let (sender, receiver) = mpsc::sync_channel(1);
    host.run_pipeline(
        request(pipeline),
        Box::new(move |outcome| {
            let _ = sender.send(outcome);
        }),
    );
    match receiver.recv().expect("an outcome") {
        RunOutcome::Answered(_) => {}
        other => panic!("{pipeline} failed: {other:?}"),
    }
}

fn timed(host: &ScriptHost, pipeline: &str) -> Duration {
    let started = Instant::now();
    run(host, pipeline);
    started.elapsed()
}

/// Microseconds per request with `PIPELINED` requests in flight at once.
fn pipelined(host: &ScriptHost, pipeline: &str) -> f64 {
    let (sender, receiver) = mpsc::channel();
    let started = Instant::now();
    for _ in 0..PIPELINED {
        let sender = sender.clone();
        host.run_pipeline(
            request(pipeline),
            Box::new(move |outcome| {
                let _ = sender.send(matches!(outcome, RunOutcome::Answered(_)));
            }),
        );
    }
    for _ in 0..PIPELINED {
        assert!(receiver.recv().expect("an outcome"), "a request failed");
    }
    started.elapsed().as_secs_f64() * 1e6 / PIPELINED as f64
}

/// The anchor: the host's own transport (an unbounded futures channel into
/// a thread running a `LocalPool`, replies through a boxed callback) with
/// no Lua behind it.
struct AnchorHost {
    jobs: futures::channel::mpsc::UnboundedSender<Box<dyn FnOnce() + Send>>,
}

impl AnchorHost {
    fn start() -> AnchorHost {
        let (jobs, mut receiver) = futures::channel::mpsc::unbounded::<Box<dyn FnOnce() + Send>>();
        std::thread::spawn(move || {
            let mut pool = futures::executor::LocalPool::new();
            pool.run_until(async {
                while let Some(job) = receiver.next().await {
                    job();
                }
            });
        });
        AnchorHost { jobs }
    }

    fn round_trip(&self) {
        let (sender, receiver) = mpsc::sync_channel(1);
        let _ = self.jobs.unbounded_send(Box::new(move || {
            let _ = sender.send(());
        }));
        receiver.recv().expect("the anchor answers");
    }
}

/// What copying an embedding into a Lua table costs (what the embed stage
/// did before `req.vector` became a userdata), p50 in microseconds.
fn table_copy_cost() -> f64 {
    let lua = mlua::Lua::new();
    let vector: Vec<f32> = (0..DIMENSIONS).map(|idx| idx as f32 / 1000.0).collect();
    let mut samples = Vec::with_capacity(VECTOR_ROUNDS);
    for _ in 0..VECTOR_ROUNDS {
        // The embed stage owned the answer's vector; only the copy counts.
        let owned = vector.clone();
        let started = Instant::now();
        let table = lua.create_sequence_from(owned).expect("table");
        samples.push(started.elapsed());
        drop(table);
    }
    micros(&samples, 0.50)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench")
}

fn micros(samples: &[Duration], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// The median over rounds of `a[i] / b[i]`: each round's two samples ran
/// back to back, so slow drifts of the machine's load cancel out.
fn paired_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn mean(samples: &[Duration]) -> f64 {
    samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64
}
