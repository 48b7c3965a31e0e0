//! What the benchmarks share: the Python anchor process
//! (`benches/embed_anchor.py --serve`), segments of measurements, the load
//! average and the machine's fp32 peak (an FMA loop). Included by
//! `benches/embed.rs` and `kernel/http/benches/pipeline.rs`.

#![allow(dead_code, reason = "each benchmark uses part of this module")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde_json::json;

/// Intra-op threads of the anchor.
pub const ANCHOR_THREADS: usize = 2;

/// Throughput and latency of one implementation at one batch size.
#[derive(Clone)]
pub struct Measurement {
    pub sentences_per_s: f64,
    pub real_tokens_per_s: f64,
    pub padded_tokens_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Measurement {
    pub fn to_json(&self, mflop_per_token: f64, peak_gflops: f64) -> serde_json::Value {
        json!({
            "sentences_per_s": self.sentences_per_s,
            "real_tokens_per_s": self.real_tokens_per_s,
            "padded_tokens_per_s": self.padded_tokens_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "gflops": mflop_per_token * self.padded_tokens_per_s / 1e3,
            "useful_gflops": mflop_per_token * self.real_tokens_per_s / 1e3,
            "real_token_efficiency": mflop_per_token * self.real_tokens_per_s / 1e3 / peak_gflops,
        })
    }
}

/// Latencies and token counts of one or more segments.
#[derive(Default)]
pub struct Segment {
    pub latencies: Vec<f64>,
    pub real_tokens: usize,
    pub padded_tokens: usize,
    pub seconds: f64,
}

impl Segment {
    pub fn add(&mut self, other: Segment) {
        self.latencies.extend(other.latencies);
        self.real_tokens += other.real_tokens;
        self.padded_tokens += other.padded_tokens;
        self.seconds += other.seconds;
    }

    pub fn measurement(mut self, sentences: usize) -> Measurement {
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

/// `benches/embed_anchor.py --serve`: one Python process and session for
/// the whole run, asked for one segment at a time.
pub struct Anchor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Anchor {
    pub fn start(python: &Path, root: &Path, model: &str, corpus: &Path) -> Option<Anchor> {
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
                &ANCHOR_THREADS.to_string(),
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

    pub fn run(&mut self, batch: usize, start: usize, end: usize, sorted: bool) -> Segment {
        writeln!(
            self.stdin,
            "{}",
            json!({"batch": batch, "start": start, "end": end, "sorted": sorted})
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
pub fn load_average() -> f64 {
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
pub struct Peak {
    pub isa: &'static str,
    pub gflops: f64,
}

pub fn fp32_peak_gflops(threads: usize) -> Peak {
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
