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
//! - Anchor: `benches/embed_anchor.py --serve` under `.cache/venv/bin/python`
//!   (pinned onnxruntime 1.31.1), one process for the run. At each batch
//!   size the corpus is cut into 8 segments and the two implementations
//!   alternate segment by segment (and which goes first), so load from other
//!   processes on a shared machine hits both alike. Unpinned (no CPU affinity).
//! - Peak: a 2-thread AVX-512 (else AVX2) FMA loop measures the machine's
//!   fp32 peak once; achieved GFLOP/s = MFLOP/token × tokens/s, counted over
//!   padded tokens (the work the model really does) and over real tokens
//!   (the useful part).
//!
//! Prints a table and writes `target/bench/embed.json`.

#[path = "common/corpus.rs"]
mod corpus;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde_json::json;
use spindle_embed::{Engine, EngineConfig, Provider, Registry};

const BATCH_SIZES: [usize; 4] = [1, 8, 32, 128];
const THREADS: usize = 2;
const WARMUP_BATCHES: usize = 3;
const SEGMENTS: usize = 8;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, is ignored.
    // The repository root: the first ancestor of this package holding the registry.
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
    let model =
        std::env::var("SPINDLE_BENCH_MODEL").unwrap_or_else(|_| Registry::builtin().default_model);
    let mflop_per_token = Registry::builtin()
        .model(&model)
        .map(|spec| spec.mflop_per_token)
        .unwrap_or(0.0);
    let corpus = corpus::corpus(sentences);
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
    let mut anchor = Anchor::start(&python, &root, &model, &corpus_path);
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
        // Warm-up on both sides, then the corpus in SEGMENTS interleaved
        // segments, alternating which side goes first.
        let warm_up = (batch * WARMUP_BATCHES).min(corpus.len());
        run_rust(&engine, &corpus[..warm_up], batch);
        if let Some(anchor) = anchor.as_mut() {
            anchor.run(batch, 0, warm_up);
        }
        let (mut rust, mut python) = (
            Segment::default(),
            anchor.as_ref().map(|_| Segment::default()),
        );
        let segment = corpus.len().div_ceil(SEGMENTS);
        for (index, start) in (0..corpus.len()).step_by(segment).enumerate() {
            let end = (start + segment).min(corpus.len());
            let python_first = index % 2 == 0;
            if python_first && let (Some(anchor), Some(total)) = (anchor.as_mut(), python.as_mut())
            {
                total.add(anchor.run(batch, start, end));
            }
            rust.add(run_rust(&engine, &corpus[start..end], batch));
            if !python_first && let (Some(anchor), Some(total)) = (anchor.as_mut(), python.as_mut())
            {
                total.add(anchor.run(batch, start, end));
            }
        }
        let rust = rust.measurement(corpus.len());
        let python = python.map(|total| total.measurement(corpus.len()));
        let ratio = python
            .as_ref()
            .map(|python| rust.sentences_per_s / python.sentences_per_s);
        if let Some(python) = &python {
            print_row(batch, "python", python, None, mflop_per_token, peak.gflops);
        }
        print_row(batch, "rust", &rust, ratio, mflop_per_token, peak.gflops);
        rows.push(json!({
            "batch": batch,
            "rust": rust.to_json(mflop_per_token),
            "python": python.as_ref().map(|python| python.to_json(mflop_per_token)),
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
        "interleaving": format!("{SEGMENTS} segments per batch size, Python and Rust alternating which goes first"),
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

/// Latencies and token counts of one or more segments.
#[derive(Default)]
struct Segment {
    latencies: Vec<f64>,
    real_tokens: usize,
    padded_tokens: usize,
    seconds: f64,
}

impl Segment {
    fn add(&mut self, other: Segment) {
        self.latencies.extend(other.latencies);
        self.real_tokens += other.real_tokens;
        self.padded_tokens += other.padded_tokens;
        self.seconds += other.seconds;
    }

    fn measurement(mut self, sentences: usize) -> Measurement {
        self.latencies.sort_by(f64::total_cmp);
        let latencies = &self.latencies;
        let pick = |q: f64| {
            latencies[((q * latencies.len() as f64) as usize).min(latencies.len() - 1)] * 1e3
        };
        Measurement {
            sentences_per_s: sentences as f64 / self.seconds,
            real_tokens_per_s: self.real_tokens as f64 / self.seconds,
            padded_tokens_per_s: self.padded_tokens as f64 / self.seconds,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
        }
    }
}

fn run_rust(engine: &Engine, texts: &[String], batch: usize) -> Segment {
    let mut segment = Segment::default();
    let started = Instant::now();
    for chunk in texts.chunks(batch) {
        let t0 = Instant::now();
        let result = engine.embed(chunk).expect("batch");
        segment.latencies.push(t0.elapsed().as_secs_f64());
        segment.real_tokens += result.real_tokens;
        segment.padded_tokens += result.padded_tokens;
    }
    segment.seconds = started.elapsed().as_secs_f64();
    segment
}

/// `benches/embed_anchor.py --serve`: one Python process and session for
/// the whole run, asked for one segment at a time.
struct Anchor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Anchor {
    fn start(python: &Path, root: &Path, model: &str, corpus: &Path) -> Option<Anchor> {
        if !python.exists() {
            println!(
                "(no anchor: {} is missing; run `python3 scripts/fetch_models.py --all --venv`)",
                python.display()
            );
            return None;
        }
        let mut child = Command::new(python)
            .current_dir(root)
            .arg("benches/embed_anchor.py")
            .args([
                "--serve",
                "--model",
                model,
                "--threads",
                &THREADS.to_string(),
                "--corpus",
            ])
            .arg(corpus)
            // Tokenize on one thread, as the engine does, so the anchor's
            // rayon pool does not compete with ONNX Runtime's threads.
            .env("TOKENIZERS_PARALLELISM", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run benches/embed_anchor.py");
        let stdin = child.stdin.take().expect("anchor stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("anchor stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("anchor ready line");
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        println!(
            "anchor: {} (benches/embed_anchor.py)",
            ready["implementation"]
                .as_str()
                .unwrap_or("failed to start")
        );
        ready["ready"].as_bool().unwrap_or(false).then_some(Anchor {
            child,
            stdin,
            stdout,
        })
    }

    fn run(&mut self, batch: usize, start: usize, end: usize) -> Segment {
        writeln!(
            self.stdin,
            "{}",
            json!({"batch": batch, "start": start, "end": end})
        )
        .expect("anchor request");
        self.stdin.flush().expect("anchor request");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("anchor answer");
        let value: serde_json::Value = serde_json::from_str(&line).expect("anchor JSON");
        Segment {
            latencies: value["latencies"]
                .as_array()
                .map(|l| l.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default(),
            real_tokens: value["real_tokens"].as_u64().unwrap_or(0) as usize,
            padded_tokens: value["padded_tokens"].as_u64().unwrap_or(0) as usize,
            seconds: value["seconds"].as_f64().unwrap_or(f64::NAN),
        }
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
// The AVX-512 intrinsics are stable since Rust 1.89 (the workspace's
// rust-version); this function only runs after run-time detection.
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
