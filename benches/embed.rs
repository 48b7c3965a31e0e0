//! `cargo bench --bench embed`: the embedding engine against Python
//! onnxruntime on the same model files, corpus and batches, in the same run.
//!
//! - Corpus: a fixed, deterministic mix of sentences of 5–60 words (2,000
//!   by default; `SPINDLE_BENCH_SENTENCES` changes it for a quick trial),
//!   written to `target/bench/embed_corpus.txt` so the anchor reads the same
//!   text. Batches are taken in corpus order, not sorted by length: this
//!   measures the engine, not the scheduler.
//! - Both sides use 2 intra-op threads, tokenize inside the timed region,
//!   pad to the longest input of each batch and pool the same way.
//! - Anchor: `benches/embed_anchor.py` under `.cache/venv/bin/python`
//!   (pinned onnxruntime 1.31.1), one process per batch size, run just
//!   before the Rust engine at that batch size. Unpinned (no CPU affinity).
//! - Peak: a 2-thread AVX-512 (else AVX2) FMA loop measures the machine's
//!   fp32 peak once; achieved GFLOP/s = MFLOP/token × tokens/s, counted over
//!   padded tokens (the work the model really does) and over real tokens
//!   (the useful part).
//!
//! Prints a table and writes `target/bench/embed.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::json;
use spindle_embed::{Engine, EngineConfig, Provider, Registry};

const BATCH_SIZES: [usize; 4] = [1, 8, 32, 128];
const THREADS: usize = 2;
const WARMUP_BATCHES: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, is ignored.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir).expect("create target/bench");

    let sentences: usize = std::env::var("SPINDLE_BENCH_SENTENCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let model =
        std::env::var("SPINDLE_BENCH_MODEL").unwrap_or_else(|_| Registry::builtin().default_model);
    let mflop_per_token = Registry::builtin()
        .model(&model)
        .map(|spec| spec.mflop_per_token)
        .unwrap_or(0.0);
    let corpus = corpus(sentences);
    let corpus_path = out_dir.join("embed_corpus.txt");
    std::fs::write(&corpus_path, corpus.join("\n") + "\n").expect("write corpus");
    let words: Vec<usize> = corpus.iter().map(|s| s.split(' ').count()).collect();
    println!(
        "corpus: {} sentences, {}–{} words (mean {:.1}), {}",
        corpus.len(),
        words.iter().min().unwrap(),
        words.iter().max().unwrap(),
        words.iter().sum::<usize>() as f64 / words.len() as f64,
        corpus_path.display()
    );

    let load_before = load_average();
    if load_before > 0.5 {
        println!(
            "warning: load average {load_before:.2} before the run: other processes share the cores, figures will be low and noisy"
        );
    }
    let peak = fp32_peak_gflops(THREADS);
    println!(
        "fp32 peak ({}, {THREADS} threads, FMA loop): {:.1} GFLOP/s",
        peak.isa, peak.gflops
    );

    let engine = Engine::start(EngineConfig {
        model: model.clone(),
        providers: vec![Provider::Cpu],
        intra_threads: Some(THREADS),
        ..EngineConfig::default()
    })
    .unwrap_or_else(|error| panic!("{error}"));
    println!(
        "model: {model} on {}, {THREADS} intra-op threads, unpinned\n",
        engine.provider()
    );

    let python = std::env::var_os("SPINDLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/venv/bin/python"));
    println!(
        "{:>5} {:>8} {:>12} {:>11} {:>11} {:>9} {:>9} {:>7} {:>9} {:>9} {:>6}",
        "batch",
        "impl",
        "sentences/s",
        "real tok/s",
        "pad tok/s",
        "p50 ms",
        "p99 ms",
        "ratio",
        "GFLOP/s",
        "useful",
        "%peak"
    );
    let mut rows = Vec::new();
    for batch in BATCH_SIZES {
        let anchor = run_anchor(&python, &root, &model, &corpus_path, batch);
        let rust = run_rust(&engine, &corpus, batch);
        let ratio = anchor
            .as_ref()
            .map(|anchor| rust.sentences_per_s / anchor.sentences_per_s);
        if let Some(anchor) = &anchor {
            print_row(batch, "python", anchor, None, mflop_per_token, peak.gflops);
        }
        print_row(batch, "rust", &rust, ratio, mflop_per_token, peak.gflops);
        rows.push(json!({
            "batch": batch,
            "rust": rust.to_json(mflop_per_token),
            "python": anchor.as_ref().map(|anchor| anchor.to_json(mflop_per_token)),
            "ratio_rust_over_python": ratio,
        }));
    }
    let report = json!({
        "model": model,
        "provider": engine.provider().as_str(),
        "intra_op_threads": THREADS,
        "pinning": "none",
        "corpus": {"sentences": corpus.len(), "words_min": 5, "words_max": 60, "path": corpus_path},
        "batch_order": "corpus order, not sorted by length",
        "mflop_per_token": mflop_per_token,
        "gflops_counts": "gflops = mflop_per_token x padded tokens/s; useful_gflops uses real tokens",
        "fp32_peak": {"isa": peak.isa, "threads": THREADS, "gflops": peak.gflops},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "results": rows,
    });
    let json_path = out_dir.join("embed.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap())
        .expect("write embed.json");
    println!(
        "\nratio = Rust sentences/s ÷ Python sentences/s (target ≥ 0.95)\nwrote {}",
        json_path.display()
    );
}

/// Throughput and latency of one implementation at one batch size.
struct Measurement {
    sentences_per_s: f64,
    real_tokens_per_s: f64,
    padded_tokens_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Measurement {
    fn to_json(&self, mflop_per_token: f64) -> serde_json::Value {
        json!({
            "sentences_per_s": self.sentences_per_s,
            "real_tokens_per_s": self.real_tokens_per_s,
            "padded_tokens_per_s": self.padded_tokens_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "gflops": mflop_per_token * self.padded_tokens_per_s / 1e3,
            "useful_gflops": mflop_per_token * self.real_tokens_per_s / 1e3,
        })
    }
}

fn print_row(batch: usize, name: &str, m: &Measurement, ratio: Option<f64>, mflop: f64, peak: f64) {
    let gflops = mflop * m.padded_tokens_per_s / 1e3;
    println!(
        "{batch:>5} {name:>8} {:>12.1} {:>11.0} {:>11.0} {:>9.2} {:>9.2} {:>7} {:>9.1} {:>9.1} {:>5.1}%",
        m.sentences_per_s,
        m.real_tokens_per_s,
        m.padded_tokens_per_s,
        m.p50_ms,
        m.p99_ms,
        ratio.map_or("".to_string(), |r| format!("{r:.3}")),
        gflops,
        mflop * m.real_tokens_per_s / 1e3,
        100.0 * gflops / peak,
    );
}

fn run_rust(engine: &Engine, corpus: &[String], batch: usize) -> Measurement {
    let batches: Vec<&[String]> = corpus.chunks(batch).collect();
    for texts in batches.iter().take(WARMUP_BATCHES) {
        engine.embed(texts).expect("warm-up batch");
    }
    let mut latencies = Vec::with_capacity(batches.len());
    let (mut real, mut padded) = (0usize, 0usize);
    let started = Instant::now();
    for texts in &batches {
        let t0 = Instant::now();
        let result = engine.embed(texts).expect("batch");
        latencies.push(t0.elapsed().as_secs_f64());
        real += result.real_tokens;
        padded += result.padded_tokens;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pick =
        |q: f64| latencies[((q * latencies.len() as f64) as usize).min(latencies.len() - 1)] * 1e3;
    Measurement {
        sentences_per_s: corpus.len() as f64 / seconds,
        real_tokens_per_s: real as f64 / seconds,
        padded_tokens_per_s: padded as f64 / seconds,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

fn run_anchor(
    python: &Path,
    root: &Path,
    model: &str,
    corpus: &Path,
    batch: usize,
) -> Option<Measurement> {
    if !python.exists() {
        println!(
            "(no anchor: {} is missing; run `python3 scripts/fetch_models.py --all --venv`)",
            python.display()
        );
        return None;
    }
    let output = Command::new(python)
        .current_dir(root)
        .arg("benches/embed_anchor.py")
        // Tokenize on one thread, as the engine does, so the anchor's rayon
        // pool does not compete with ONNX Runtime's threads.
        .env("TOKENIZERS_PARALLELISM", "false")
        .args([
            "--model",
            model,
            "--batch",
            &batch.to_string(),
            "--threads",
            &THREADS.to_string(),
            "--corpus",
        ])
        .arg(corpus)
        .output()
        .expect("run benches/embed_anchor.py");
    if !output.status.success() {
        println!(
            "(anchor failed: {})",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("anchor JSON");
    let number = |key: &str| value[key].as_f64().unwrap_or(0.0);
    Some(Measurement {
        sentences_per_s: number("sentences_per_s"),
        real_tokens_per_s: number("real_tokens_per_s"),
        padded_tokens_per_s: number("padded_tokens_per_s"),
        p50_ms: number("p50_ms"),
        p99_ms: number("p99_ms"),
    })
}

/// A fixed corpus: sentences of 5–60 words drawn by a seeded xorshift from
/// a small vocabulary, so every run (and the anchor) sees the same text.
fn corpus(count: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the",
        "a",
        "service",
        "graph",
        "starts",
        "in",
        "waves",
        "and",
        "each",
        "request",
        "gets",
        "one",
        "answer",
        "embedding",
        "pipeline",
        "model",
        "vector",
        "batch",
        "token",
        "queue",
        "priority",
        "deadline",
        "kernel",
        "module",
        "asks",
        "userspace",
        "for",
        "embeddings",
        "while",
        "developers",
        "look",
        "inside",
        "running",
        "system",
        "with",
        "breakpoints",
        "that",
        "pause",
        "only",
        "request",
        "others",
        "flow",
        "on",
        "quickly",
        "database",
        "stores",
        "documents",
        "search",
        "finds",
        "similar",
        "sentences",
        "across",
        "languages",
        "weather",
        "today",
        "is",
        "sunny",
        "cold",
        "rain",
        "tomorrow",
        "city",
        "river",
        "mountain",
        "people",
        "walk",
        "their",
        "dogs",
        "park",
        "morning",
        "coffee",
        "tastes",
        "better",
        "after",
        "long",
        "night",
        "reading",
        "books",
        "about",
        "history",
        "science",
        "music",
        "plays",
        "loud",
        "concert",
        "crowd",
        "cheers",
        "team",
        "wins",
        "match",
        "final",
        "minute",
        "goal",
        "scored",
        "by",
        "young",
        "player",
        "market",
        "prices",
        "rose",
        "fell",
        "sharply",
        "investors",
        "worry",
        "inflation",
        "bank",
        "rates",
        "children",
        "learn",
        "new",
        "words",
        "every",
        "day",
        "school",
        "teacher",
        "explains",
        "lesson",
        "computer",
        "program",
        "crashed",
        "because",
        "memory",
        "ran",
        "out",
        "engineer",
        "fixed",
        "bug",
        "quantisation",
        "throughput",
        "latency",
        "percentile",
        "scheduler",
        "backpressure",
        "cancellation",
        "tokenizer",
        "wordpiece",
        "normalisation",
        "attention",
        "transformer",
        "layers",
        "hidden",
        "size",
        "unbelievably",
        "extraordinary",
        "characteristics",
        "internationalisation",
        "misunderstanding",
    ];
    let mut state: u64 = 0x5EED_5EED_1234_5678;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let length = 5 + (next() % 56) as usize;
            let mut sentence: Vec<&str> = (0..length)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect();
            let capitalised = {
                let first = sentence[0];
                let mut chars = first.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
                    .unwrap_or_default()
            };
            sentence[0] = "";
            format!("{capitalised}{}.", sentence.join(" "))
        })
        .collect()
}

/// The 1-minute load average (other work on the machine skews every figure).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .next()
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// The machine's fp32 peak: independent FMA chains on `threads` threads.
struct Peak {
    isa: &'static str,
    gflops: f64,
}

fn fp32_peak_gflops(threads: usize) -> Peak {
    #[cfg(target_arch = "x86_64")]
    {
        let isa = if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            "avx2+fma"
        } else {
            return Peak {
                isa: "none",
                gflops: f64::NAN,
            };
        };
        let iterations: u64 = 20_000_000;
        let run = || -> f64 {
            let started = Instant::now();
            let flops = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| scope.spawn(move || fma_loop(isa, std::hint::black_box(iterations))))
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| handle.join().unwrap())
                    .sum::<f64>()
            });
            flops / started.elapsed().as_secs_f64() / 1e9
        };
        run(); // warm up the clocks
        let gflops = (0..3).map(|_| run()).fold(0.0, f64::max);
        Peak { isa, gflops }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        Peak {
            isa: "none",
            gflops: f64::NAN,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn fma_loop(isa: &str, iterations: u64) -> f64 {
    // SAFETY: the caller detected the instruction set at run time.
    unsafe {
        if isa == "avx512f" {
            fma512(iterations)
        } else {
            fma256(iterations)
        }
    }
}

/// 12 independent accumulators hide the FMA latency (4 cycles × 2 ports + slack).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma512(iterations: u64) -> f64 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iterations {
        for value in acc.iter_mut() {
            *value = _mm512_fmadd_ps(*value, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for value in acc {
        sum = _mm512_add_ps(sum, value);
    }
    std::hint::black_box(_mm512_reduce_add_ps(sum));
    (iterations * 12 * 16 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma256(iterations: u64) -> f64 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iterations {
        for value in acc.iter_mut() {
            *value = _mm256_fmadd_ps(*value, a, b);
        }
    }
    let mut lanes = [0f32; 8];
    let mut sum = _mm256_setzero_ps();
    for value in acc {
        sum = _mm256_add_ps(sum, value);
    }
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    std::hint::black_box(lanes);
    (iterations * 12 * 8 * 2) as f64
}
