//! `cargo bench --bench embed`: the embedding engine against Python
//! onnxruntime at its best, and the optimised models against the fp32 one,
//! on the same files and corpus, in the same run.
//!
//! - Corpus: a fixed, deterministic mix of sentences of 5–60 words (2,000
//!   by default; `SPINDLE_BENCH_SENTENCES` changes it for a quick trial),
//!   written to `target/bench/embed_corpus.txt` so the anchor reads the same
//!   text.
//! - Anchor: `benches/embed_anchor.py --serve` under `.cache/venv/bin/python`
//!   (pinned onnxruntime 1.31.1), one process for the run, at its best: each
//!   segment tokenized once, ordered by length, cut into batches; batch sizes
//!   1, 4, 8, 16, 32 and 64 are swept and the best is reported. The engine
//!   runs the same sweep the same way (tokenized once with
//!   `Engine::encode`, ordered, batched). At each batch size the corpus is
//!   cut into 4 segments and the two alternate segment by segment (and which
//!   goes first), so load from other processes hits both alike.
//! - Models: the fp32 reference (`SPINDLE_BENCH_MODEL` to change it) for the
//!   sweep; then the optimised variants of the registry against it at batch
//!   8, interleaved the same way (the registry's `measured.sentences_per_s`).
//! - Session options: each of spinning off, optimisation level `Basic` and
//!   `Extended`, memory patterns off and pinned threads against the default,
//!   interleaved, at batch 8.
//! - Peak: a 2-thread AVX-512 (else AVX2) FMA loop measures the machine's
//!   fp32 peak once; every row reports its real-token efficiency: real
//!   tokens/s × MFLOP/token ÷ peak.
//!
//! Prints a progress line per phase and the tables, writes
//! `target/bench/embed.json`, and exits non-zero when the anchor could not
//! run (no Rust-only figures are printed as if they were comparisons).

#[path = "common/anchor.rs"]
mod anchor;
#[path = "common/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anchor::{Anchor, Measurement, Segment, fp32_peak_gflops, load_average};

use serde_json::json;
use spindle_embed::{
    Encoded, Engine, EngineConfig, Input, Optimization, Provider, Registry, SessionTuning,
};

const BATCH_SIZES: [usize; 6] = [1, 4, 8, 16, 32, 64];
const THREADS: usize = 2;
const SEGMENTS: usize = 4;
const VARIANT_BATCH: usize = 8;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("models/registry.toml").is_file())
        .expect("repository root")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir).expect("create target/bench");

    let sentences: usize = std::env::var("SPINDLE_BENCH_SENTENCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let registry = Registry::builtin();
    let model = std::env::var("SPINDLE_BENCH_MODEL")
        .unwrap_or_else(|_| "all-MiniLM-L6-v2-fp32".to_string());
    let mflop_per_token = registry
        .model(&model)
        .map(|spec| spec.mflop_per_token)
        .unwrap_or(0.0);
    let corpus = corpus::corpus(sentences);
    let corpus_path = out_dir.join("embed_corpus.txt");
    std::fs::write(&corpus_path, corpus.join("\n") + "\n").expect("write corpus");
    println!(
        "corpus: {} sentences of 5–60 words, {}",
        corpus.len(),
        corpus_path.display()
    );
    let load_before = load_average();
    println!("load average before the run: {load_before:.2} (2 cores; other processes share them)");

    eprintln!("phase 1/4: fp32 peak (FMA loop)");
    let peak = fp32_peak_gflops(THREADS);
    println!(
        "fp32 peak ({}, {THREADS} threads, FMA loop): {:.1} GFLOP/s",
        peak.isa, peak.gflops
    );
    let efficiency =
        |real_tokens_per_s: f64| 100.0 * mflop_per_token * real_tokens_per_s / 1e3 / peak.gflops;

    let engine = start_engine(&model, SessionTuning::default());
    let provider = engine.provider();
    let python = std::env::var_os("SPINDLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/venv/bin/python"));
    let Some(mut anchor) = Anchor::start(&python, &root, &model, &corpus_path) else {
        eprintln!(
            "embed bench: the Python anchor could not run; no figures without it \
             (run `python3 scripts/fetch_models.py --all --venv`)"
        );
        return ExitCode::FAILURE;
    };
    let encoded: Vec<Arc<Encoded>> = corpus
        .iter()
        .map(|text| Arc::new(engine.encode(text).expect("tokenize")))
        .collect();

    eprintln!(
        "phase 2/4: batch sizes {BATCH_SIZES:?}, both sorted by length, {SEGMENTS} interleaved segments each"
    );
    println!(
        "\nmodel {model}, engine on {}, {THREADS} intra-op threads, unpinned; every row sorted by length",
        provider
    );
    print_header();
    let mut rows = Vec::new();
    let mut best_python: Option<(usize, Measurement)> = None;
    let mut best_rust: Option<(usize, Measurement)> = None;
    let mut rust_batch1 = None;
    for batch in BATCH_SIZES {
        let warm = (batch * 3).min(corpus.len());
        run_sorted(&engine, &corpus, &encoded, 0, warm, batch);
        anchor.run(batch, 0, warm, true);
        let (mut rust, mut py) = (Segment::default(), Segment::default());
        for (index, (start, end)) in segments(corpus.len()).into_iter().enumerate() {
            if index % 2 == 0 {
                py.add(anchor.run(batch, start, end, true));
                rust.add(run_sorted(&engine, &corpus, &encoded, start, end, batch));
            } else {
                rust.add(run_sorted(&engine, &corpus, &encoded, start, end, batch));
                py.add(anchor.run(batch, start, end, true));
            }
        }
        let (rust, py) = (rust.measurement(corpus.len()), py.measurement(corpus.len()));
        print_row(
            &format!("python b={batch}"),
            &py,
            None,
            efficiency(py.real_tokens_per_s),
        );
        print_row(
            &format!("engine b={batch}"),
            &rust,
            Some(rust.sentences_per_s / py.sentences_per_s),
            efficiency(rust.real_tokens_per_s),
        );
        rows.push(json!({
            "batch": batch,
            "python": py.to_json(mflop_per_token, peak.gflops),
            "engine": rust.to_json(mflop_per_token, peak.gflops),
            "ratio_engine_over_python": rust.sentences_per_s / py.sentences_per_s,
        }));
        if batch == 1 {
            rust_batch1 = Some(rust.clone());
        }
        if best_python
            .as_ref()
            .is_none_or(|(_, best)| py.sentences_per_s > best.sentences_per_s)
        {
            best_python = Some((batch, py));
        }
        if best_rust
            .as_ref()
            .is_none_or(|(_, best)| rust.sentences_per_s > best.sentences_per_s)
        {
            best_rust = Some((batch, rust));
        }
    }
    let (best_python_batch, best_python) = best_python.expect("swept");
    let (best_rust_batch, best_rust) = best_rust.expect("swept");
    let rust_batch1 = rust_batch1.expect("batch 1");
    println!(
        "best: python b={best_python_batch} {:.1} sentences/s; engine b={best_rust_batch} {:.1} sentences/s ({:.3}×); engine b=1 {:.1} sentences/s",
        best_python.sentences_per_s,
        best_rust.sentences_per_s,
        best_rust.sentences_per_s / best_python.sentences_per_s,
        rust_batch1.sentences_per_s
    );

    eprintln!("phase 3/4: optimised models against {model} at batch {VARIANT_BATCH}");
    let variants: Vec<String> = registry
        .models
        .iter()
        .filter(|spec| spec.measured.reference.as_deref() == Some(model.as_str()))
        .map(|spec| spec.name.clone())
        .collect();
    let mut variant_rows = Vec::new();
    if !variants.is_empty() {
        drop(engine);
        let engines: Vec<(String, Engine)> = std::iter::once(model.clone())
            .chain(variants.iter().cloned())
            .map(|name| {
                let engine = start_engine(&name, SessionTuning::default());
                (name, engine)
            })
            .collect();
        let results = interleaved(&engines, &corpus, VARIANT_BATCH);
        println!("\nmodels at batch {VARIANT_BATCH}, sorted by length, interleaved:");
        print_header();
        let reference = results[0].sentences_per_s;
        for ((name, _), result) in engines.iter().zip(&results) {
            print_row(
                name,
                result,
                Some(result.sentences_per_s / reference),
                efficiency(result.real_tokens_per_s),
            );
            variant_rows.push(json!({
                "model": name,
                "result": result.to_json(mflop_per_token, peak.gflops),
                "ratio_over_reference": result.sentences_per_s / reference,
            }));
        }
    }

    eprintln!("phase 4/4: session options at batch {VARIANT_BATCH}");
    let options: Vec<(&str, SessionTuning)> = vec![
        (
            "default (all, spinning, memory pattern)",
            SessionTuning::default(),
        ),
        (
            "spinning off",
            SessionTuning {
                spinning: false,
                ..SessionTuning::default()
            },
        ),
        (
            "optimisation basic",
            SessionTuning {
                optimization: Optimization::Basic,
                ..SessionTuning::default()
            },
        ),
        (
            "optimisation extended",
            SessionTuning {
                optimization: Optimization::Extended,
                ..SessionTuning::default()
            },
        ),
        (
            "memory pattern off",
            SessionTuning {
                memory_pattern: false,
                ..SessionTuning::default()
            },
        ),
        (
            "pinned threads",
            SessionTuning {
                pinned: true,
                ..SessionTuning::default()
            },
        ),
    ];
    let mut option_rows = Vec::new();
    println!(
        "\nsession options ({model}, batch {VARIANT_BATCH}, sorted), each against the default in the same round:"
    );
    print_header();
    for (label, tuning) in options.iter().skip(1) {
        // One engine at a time beside the default's, in turns: two idle
        // engines do not spin.
        let pair = vec![
            (options[0].0.to_string(), start_engine(&model, options[0].1)),
            (label.to_string(), start_engine(&model, *tuning)),
        ];
        let results = interleaved(&pair, &corpus[..corpus.len().min(800)], VARIANT_BATCH);
        let ratio = results[1].sentences_per_s / results[0].sentences_per_s;
        print_row(
            label,
            &results[1],
            Some(ratio),
            efficiency(results[1].real_tokens_per_s),
        );
        option_rows.push(json!({
            "option": label,
            "result": results[1].to_json(mflop_per_token, peak.gflops),
            "default": results[0].to_json(mflop_per_token, peak.gflops),
            "ratio_over_default": ratio,
        }));
    }

    let report = json!({
        "model": model,
        "engine_provider": provider.as_str(),
        "intra_op_threads": THREADS,
        "pinning": "none unless the row says so",
        "corpus": {"sentences": corpus.len(), "words_min": 5, "words_max": 60, "path": corpus_path},
        "order": "every row: tokenized once, sorted by length, then batched",
        "interleaving": format!("{SEGMENTS} segments per batch size, alternating which goes first"),
        "mflop_per_token": mflop_per_token,
        "efficiency": "real tokens/s x mflop_per_token / fp32 peak",
        "fp32_peak": {"isa": peak.isa, "threads": THREADS, "gflops": peak.gflops},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "sweep": rows,
        "best_python": {"batch": best_python_batch, "result": best_python.to_json(mflop_per_token, peak.gflops)},
        "best_engine": {"batch": best_rust_batch, "result": best_rust.to_json(mflop_per_token, peak.gflops)},
        "engine_batch_1": rust_batch1.to_json(mflop_per_token, peak.gflops),
        "variants": variant_rows,
        "session_options": option_rows,
    });
    let json_path = out_dir.join("embed.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap())
        .expect("write embed.json");
    println!(
        "\nratio = engine ÷ anchor in the same rounds; eff = real-token efficiency (% of the FMA peak)\nload average after: {:.2}\nwrote {}",
        load_average(),
        json_path.display()
    );
    ExitCode::SUCCESS
}

/// `SPINDLE_BENCH_PROVIDERS=cuda` (a machine with a GPU, after
/// `SPINDLE_GPU=1 make setup`) runs the engine's rows on CUDA; the anchor
/// stays on the CPU.
fn bench_providers() -> Vec<Provider> {
    std::env::var("SPINDLE_BENCH_PROVIDERS").map_or(vec![Provider::Cpu], |list| {
        Provider::parse_list(&list)
            .unwrap_or_else(|error| panic!("SPINDLE_BENCH_PROVIDERS: {error}"))
    })
}

fn start_engine(model: &str, tuning: SessionTuning) -> Engine {
    Engine::start(EngineConfig {
        model: model.to_string(),
        providers: bench_providers(),
        intra_threads: Some(THREADS),
        tuning,
        ..EngineConfig::default()
    })
    .unwrap_or_else(|error| panic!("{model}: {error}"))
}

fn segments(len: usize) -> Vec<(usize, usize)> {
    let size = len.div_ceil(SEGMENTS).max(1);
    (0..len)
        .step_by(size)
        .map(|start| (start, (start + size).min(len)))
        .collect()
}

/// Each engine in turn over each segment (rotating who goes first), sorted
/// by length at `batch`; one measurement per engine.
fn interleaved(engines: &[(String, Engine)], corpus: &[String], batch: usize) -> Vec<Measurement> {
    let encoded: Vec<Vec<Arc<Encoded>>> = engines
        .iter()
        .map(|(_, engine)| {
            corpus
                .iter()
                .map(|text| Arc::new(engine.encode(text).expect("tokenize")))
                .collect()
        })
        .collect();
    for (index, (_, engine)) in engines.iter().enumerate() {
        run_sorted(
            engine,
            corpus,
            &encoded[index],
            0,
            (batch * 3).min(corpus.len()),
            batch,
        );
    }
    let mut totals: Vec<Segment> = engines.iter().map(|_| Segment::default()).collect();
    for (round, (start, end)) in segments(corpus.len()).into_iter().enumerate() {
        for turn in 0..engines.len() {
            let index = (round + turn) % engines.len();
            totals[index].add(run_sorted(
                &engines[index].1,
                corpus,
                &encoded[index],
                start,
                end,
                batch,
            ));
        }
    }
    totals
        .into_iter()
        .map(|total| total.measurement(corpus.len()))
        .collect()
}

fn print_header() {
    println!(
        "{:<42} {:>11} {:>10} {:>10} {:>8} {:>8} {:>7} {:>6}",
        "", "sentences/s", "real tok/s", "pad tok/s", "p50 ms", "p99 ms", "ratio", "eff %"
    );
}

fn print_row(label: &str, m: &Measurement, ratio: Option<f64>, efficiency: f64) {
    println!(
        "{label:<42} {:>11.1} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>7} {:>6.1}",
        m.sentences_per_s,
        m.real_tokens_per_s,
        m.padded_tokens_per_s,
        m.p50_ms,
        m.p99_ms,
        ratio.map_or(String::new(), |r| format!("{r:.3}")),
        efficiency,
    );
}

/// The engine over `corpus[start..end]` as the anchor's sorted mode does
/// it: tokenized once (the encodings are made up front, outside the timed
/// region, as the kernel makes them before batching), ordered by length,
/// cut into batches of `batch`.
fn run_sorted(
    engine: &Engine,
    corpus: &[String],
    encoded: &[Arc<Encoded>],
    start: usize,
    end: usize,
    batch: usize,
) -> Segment {
    let _ = corpus;
    let mut segment = Segment::default();
    let started = Instant::now();
    let mut order: Vec<usize> = (start..end).collect();
    order.sort_by_key(|&index| encoded[index].len());
    for chunk in order.chunks(batch) {
        let t0 = Instant::now();
        let inputs = chunk
            .iter()
            .map(|&index| Input::Encoded(encoded[index].clone()))
            .collect();
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        engine.submit_inputs(
            inputs,
            Box::new(move |result| {
                let _ = sender.send(result);
            }),
        );
        let result = receiver.recv().expect("reply").expect("batch");
        segment.latencies.push(t0.elapsed().as_secs_f64());
        segment.real_tokens += result.real_tokens;
        segment.padded_tokens += result.padded_tokens;
    }
    segment.seconds = started.elapsed().as_secs_f64();
    segment
}
