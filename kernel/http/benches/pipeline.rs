//! The request path's benchmark, each part beside its anchor in the same run:
//!
//! 1. **Overhead**: sequential requests through a pipeline with one no-op
//!    Lua stage (admission, the scheduler, a coroutine on the script host,
//!    the answer), against the bare cost of one round trip to another thread
//!    and back (a std channel there, a tokio oneshot back). Target: p50 under
//!    20 µs per request.
//! 2. **Throughput**: the fixed mixed-length corpus (`benches/common/corpus.rs`)
//!    through an HTTP pipeline with an embed stage, 64 requests in flight from
//!    a hyper client in the same process, dynamic batching by token budget
//!    with length grouping; against a naive fixed-batch loop in Python
//!    onnxruntime (`benches/embed_anchor.py`, batches of 32 in corpus order,
//!    padded to the longest of each batch) on the same model files and corpus.
//!    Target: Spindle at least 1.2× the Python loop's sentences per second.
//!    The two are interleaved: the corpus runs in `SEGMENTS` segments, each
//!    through Spindle and through the anchor (`embed_anchor.py --serve`, one
//!    Python process for the run), alternating which goes first, so other
//!    load on a shared machine hits both alike.
//!
//! Two intra-op threads on both sides; nothing is pinned (the client, the
//! server and ONNX Runtime share the machine's cores, as they would in use).
//! The Python anchor starts first; when it cannot (no `.cache/venv`, no
//! model), the benchmark exits non-zero before measuring anything. Prints a
//! progress line per phase, a table and writes `target/bench/pipeline.json`.
//!
//!     cargo bench -p spindle-http --bench pipeline
//!     SPINDLE_BENCH_SENTENCES=500 cargo bench -p spindle-http --bench pipeline   # a quick trial

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../../benches/common/corpus.rs"]
mod corpus;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestKernel, start_kernel};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spindle_http::HttpConfig;
use spindle_kernel::{RequestPathConfig, Submission};
use spindle_scheduler::{Priority, Source};

const MODEL: &str = "all-MiniLM-L6-v2";
const THREADS: usize = 2;
const IN_FLIGHT: usize = 64;
const ANCHOR_BATCH: usize = 32;
const OVERHEAD_REQUESTS: usize = 20_000;
const SEGMENTS: usize = 4;

fn main() {
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

    let python = root.join(".cache/venv/bin/python");
    progress("starting the Python anchor (benches/embed_anchor.py --serve)");
    let mut anchor_process =
        PythonAnchor::start(&python, &root, &corpus_path).unwrap_or_else(|why| anchor_failed(&why));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    progress("overhead: the thread-hop anchor");
    let anchor_hop = thread_hop_anchor(OVERHEAD_REQUESTS);
    let (overhead, (throughput, anchor)) = runtime.block_on(async {
        let kernel = Kernel::start().await;
        progress("overhead: spindle, a no-op Lua stage");
        let overhead = kernel.overhead(OVERHEAD_REQUESTS).await;
        let interleaved = kernel.throughput(&corpus, &mut anchor_process).await;
        (overhead, interleaved)
    });
    drop(anchor_process);
    let anchor = Some(anchor);

    println!();
    println!(
        "request path overhead ({OVERHEAD_REQUESTS} sequential requests, one no-op Lua stage):"
    );
    println!("  {:<44} {:>10} {:>10}", "", "p50 µs", "p99 µs");
    println!(
        "  {:<44} {:>10.1} {:>10.1}",
        "anchor: thread hop (std channel + oneshot)", anchor_hop.p50_us, anchor_hop.p99_us
    );
    println!(
        "  {:<44} {:>10.1} {:>10.1}",
        "spindle: submit → Lua no-op → answer", overhead.p50_us, overhead.p99_us
    );
    println!(
        "  ratio {:.2}× the anchor at p50; target p50 < 20 µs: {}",
        overhead.p50_us / anchor_hop.p50_us,
        if overhead.p50_us < 20.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!();
    println!(
        "throughput ({} sentences of 5–60 words, {MODEL}, {THREADS} intra-op threads):",
        corpus.len()
    );
    println!("  {:<52} {:>12} {:>10}", "", "sentences/s", "padding");
    if let Some(anchor) = &anchor {
        println!(
            "  {:<52} {:>12.1} {:>10.3}",
            format!("anchor: Python onnxruntime, fixed batches of {ANCHOR_BATCH}"),
            anchor.sentences_per_s,
            anchor.padding_ratio
        );
    }
    println!(
        "  {:<52} {:>12.1} {:>10.3}",
        format!("spindle: HTTP pipeline, {IN_FLIGHT} in flight, dynamic batches"),
        throughput.sentences_per_s,
        throughput.padding_ratio
    );
    println!(
        "  spindle mean batch {:.1} texts; {} errors",
        throughput.mean_batch, throughput.errors
    );
    let ratio = anchor
        .as_ref()
        .map(|anchor| throughput.sentences_per_s / anchor.sentences_per_s);
    if let Some(ratio) = ratio {
        println!(
            "  ratio {ratio:.2}× the Python loop; target ≥ 1.2×: {}",
            if ratio >= 1.2 { "met" } else { "NOT met" }
        );
    }
    let json = serde_json::json!({
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "pinning": "none" },
        "overhead": {
            "requests": OVERHEAD_REQUESTS,
            "anchor_thread_hop": { "p50_us": anchor_hop.p50_us, "p99_us": anchor_hop.p99_us },
            "spindle_noop_lua_stage": { "p50_us": overhead.p50_us, "p99_us": overhead.p99_us },
            "ratio_p50": overhead.p50_us / anchor_hop.p50_us,
            "target_p50_us": 20.0,
        },
        "throughput": {
            "model": MODEL,
            "sentences": corpus.len(),
            "intra_threads": THREADS,
            "interleaving": format!("{SEGMENTS} segments, spindle and the anchor alternating which goes first"),
            "anchor": anchor.as_ref().map(|a| serde_json::json!({
                "implementation": "python onnxruntime, fixed batches in corpus order",
                "batch": ANCHOR_BATCH,
                "sentences_per_s": a.sentences_per_s,
                "padding_ratio": a.padding_ratio,
            })),
            "spindle": {
                "in_flight": IN_FLIGHT,
                "sentences_per_s": throughput.sentences_per_s,
                "padding_ratio": throughput.padding_ratio,
                "mean_batch": throughput.mean_batch,
                "errors": throughput.errors,
            },
            "ratio": ratio,
            "target_ratio": 1.2,
        },
    });
    let json_path = out_dir.join("pipeline.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write json");
    println!("\nwrote {}", json_path.display());
}

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2", threads = 2, max_batch_tokens = 4096 } }
s.pipeline "noop" { s.stage("noop", function(req) return req end) }
s.pipeline "ingest" { s.stage("embed", s.embed "embedder") }
"#;

struct Kernel {
    test: TestKernel,
    base: String,
}

impl Kernel {
    async fn start() -> Kernel {
        let mut config = RequestPathConfig::default();
        config.scheduler.capacity.medium = 4096;
        let test = start_kernel(SCRIPT, config);
        test.ready("ingest").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(spindle_http::serve(
            listener,
            test.kernel.clone(),
            HttpConfig::default(),
            tokio_util::sync::CancellationToken::new(),
        ));
        Kernel { test, base }
    }

    async fn overhead(&self, count: usize) -> Latencies {
        let submit = |text: String| Submission {
            pipeline: "noop".to_owned(),
            text,
            priority: Priority::Medium,
            deadline: None,
            correlation_id: None,
            source: Source::Scenario,
        };
        for _ in 0..1000 {
            self.test.kernel.submit(submit("warm".to_owned())).await;
        }
        let mut samples = Vec::with_capacity(count);
        for idx in 0..count {
            let started = Instant::now();
            let answer = self
                .test
                .kernel
                .submit(submit(format!("request {idx}")))
                .await;
            samples.push(started.elapsed());
            assert!(matches!(answer.outcome, spindle_scheduler::Outcome::Ok(_)));
        }
        Latencies::of(samples)
    }

    /// The corpus through the HTTP pipeline and through the Python anchor,
    /// in `SEGMENTS` segments, alternating which side goes first.
    async fn throughput(
        &self,
        corpus: &[String],
        anchor: &mut PythonAnchor,
    ) -> (Throughput, AnchorResult) {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IN_FLIGHT)
            .build_http::<Full<Bytes>>();
        let url = format!("{}/v1/pipelines/ingest", self.base);
        // Warm the connections and the engine, and the anchor's session.
        progress("throughput: warming up both sides");
        let warm_up = corpus.len().min(128);
        self.run_corpus(&client, &url, &corpus[..warm_up]).await;
        anchor
            .run(0, warm_up)
            .unwrap_or_else(|why| anchor_failed(&why));
        let before = self.test.kernel.metrics().await.batchers;
        let (mut seconds, mut errors) = (0.0, 0);
        let (mut anchor_seconds, mut anchor_real, mut anchor_padded) = (0.0, 0.0, 0.0);
        let segment = corpus.len().div_ceil(SEGMENTS);
        for (index, start) in (0..corpus.len()).step_by(segment).enumerate() {
            let end = (start + segment).min(corpus.len());
            let anchor_first = index % 2 == 1;
            for side in 0..2 {
                if (side == 0) == anchor_first {
                    progress(&format!(
                        "throughput: segment {}/{SEGMENTS}: the Python anchor",
                        index + 1
                    ));
                    let part = anchor
                        .run(start, end)
                        .unwrap_or_else(|why| anchor_failed(&why));
                    anchor_seconds += part.seconds;
                    anchor_real += part.real_tokens;
                    anchor_padded += part.padded_tokens;
                } else {
                    progress(&format!(
                        "throughput: segment {}/{SEGMENTS}: spindle",
                        index + 1
                    ));
                    let started = Instant::now();
                    errors += self.run_corpus(&client, &url, &corpus[start..end]).await;
                    seconds += started.elapsed().as_secs_f64();
                }
            }
        }
        let after = self.test.kernel.metrics().await.batchers;
        let (_, before) = &before[0];
        let (_, after) = &after[0];
        let batches = after.batches - before.batches;
        let items = after.items - before.items;
        let real = after.real_tokens - before.real_tokens;
        let padded = after.padded_tokens - before.padded_tokens;
        (
            Throughput {
                sentences_per_s: corpus.len() as f64 / seconds,
                padding_ratio: real as f64 / padded.max(1) as f64,
                mean_batch: items as f64 / batches.max(1) as f64,
                errors,
            },
            AnchorResult {
                sentences_per_s: corpus.len() as f64 / anchor_seconds,
                padding_ratio: anchor_real / anchor_padded.max(1.0),
            },
        )
    }

    async fn run_corpus(
        &self,
        client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        url: &str,
        corpus: &[String],
    ) -> usize {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let corpus: Arc<Vec<String>> = Arc::new(corpus.to_vec());
        let mut workers = Vec::new();
        for _ in 0..IN_FLIGHT {
            let client = client.clone();
            let url = url.to_owned();
            let next = next.clone();
            let corpus = corpus.clone();
            workers.push(tokio::spawn(async move {
                let mut errors = 0;
                loop {
                    let idx = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(text) = corpus.get(idx) else {
                        return errors;
                    };
                    let body =
                        serde_json::json!({ "text": text, "deadline_ms": 120_000 }).to_string();
                    let request = Request::builder()
                        .method(Method::POST)
                        .uri(&url)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .expect("request");
                    match client.request(request).await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            let _ = response.into_body().collect().await;
                            errors += usize::from(!ok);
                        }
                        Err(_) => errors += 1,
                    }
                }
            }));
        }
        let mut errors = 0;
        for worker in workers {
            errors += worker.await.expect("worker");
        }
        errors
    }
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

/// The irreducible part of the request path's hop: a message to a
/// dedicated thread (as to the script host) and a tokio oneshot back.
fn thread_hop_anchor(count: usize) -> Latencies {
    let (sender, receiver) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
    let thread = std::thread::spawn(move || {
        for reply in receiver {
            let _ = reply.send(());
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let samples = runtime.block_on(async {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let (reply, answer) = tokio::sync::oneshot::channel();
            sender.send(reply).expect("thread");
            answer.await.expect("reply");
            samples.push(started.elapsed());
        }
        samples
    });
    drop(sender);
    thread.join().expect("thread");
    Latencies::of(samples)
}

struct Throughput {
    sentences_per_s: f64,
    padding_ratio: f64,
    mean_batch: f64,
    errors: usize,
}

struct AnchorResult {
    sentences_per_s: f64,
    padding_ratio: f64,
}

/// `benches/embed_anchor.py --serve`: one Python process and session for
/// the run, asked for one segment of the corpus at a time.
struct PythonAnchor {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One segment as the anchor timed it.
struct AnchorSegment {
    seconds: f64,
    real_tokens: f64,
    padded_tokens: f64,
}

impl PythonAnchor {
    fn start(python: &Path, root: &Path, corpus: &Path) -> Result<PythonAnchor, String> {
        if !python.exists() {
            return Err(format!(
                "{} is missing; run `make setup` (python3 scripts/fetch_models.py --all --venv)",
                python.display()
            ));
        }
        let mut child = Command::new(python)
            .current_dir(root)
            .arg("benches/embed_anchor.py")
            .args([
                "--serve",
                "--model",
                MODEL,
                "--batch",
                &ANCHOR_BATCH.to_string(),
                "--threads",
                &THREADS.to_string(),
                "--corpus",
            ])
            .arg(PathBuf::from(corpus))
            .env("TOKENIZERS_PARALLELISM", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run benches/embed_anchor.py: {error}"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut anchor = PythonAnchor {
            child,
            stdin,
            stdout,
        };
        // The first line says the session is loaded (or the process died
        // and the line is empty: its stderr above says why).
        let ready = anchor.read_json()?;
        if ready["ready"].as_bool() != Some(true) {
            return Err(format!(
                "benches/embed_anchor.py did not get ready: {ready}"
            ));
        }
        progress(&format!(
            "anchor: {}",
            ready["implementation"]
                .as_str()
                .unwrap_or("python onnxruntime")
        ));
        Ok(anchor)
    }

    fn run(&mut self, start: usize, end: usize) -> Result<AnchorSegment, String> {
        let request =
            serde_json::json!({ "batch": ANCHOR_BATCH, "start": start, "end": end }).to_string();
        writeln!(self.stdin, "{request}")
            .and_then(|()| self.stdin.flush())
            .map_err(|error| format!("benches/embed_anchor.py stopped reading: {error}"))?;
        let value = self.read_json()?;
        let number = |key: &str| {
            value[key]
                .as_f64()
                .ok_or_else(|| format!("benches/embed_anchor.py answered without {key}: {value}"))
        };
        Ok(AnchorSegment {
            seconds: number("seconds")?,
            real_tokens: number("real_tokens")?,
            padded_tokens: number("padded_tokens")?,
        })
    }

    fn read_json(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("benches/embed_anchor.py exited (its error is above)".to_owned()),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|error| format!("benches/embed_anchor.py printed {line:?}: {error}")),
            Err(error) => Err(format!("reading benches/embed_anchor.py: {error}")),
        }
    }
}

impl Drop for PythonAnchor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The anchor could not run: no figures are printed, the benchmark fails.
fn anchor_failed(why: &str) -> ! {
    eprintln!("pipeline benchmark failed: the Python anchor could not run: {why}");
    std::process::exit(1)
}

/// One progress line, flushed at once.
fn progress(what: &str) {
    println!("[pipeline] {what}");
    let _ = std::io::stdout().flush();
}
