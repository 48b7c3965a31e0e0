//! The bridge over NETLINK_USERSOCK against the raw netlink round trip, in
//! the same run, two processes each, unpinned (both free on every CPU). With
//! `SPINDLE_BENCH_PIN=split`, this process (the pingers, the peer and the
//! in-process kernel) runs on CPU 0 and the other (the echo, the daemon) on
//! CPU 1: every round trip then crosses CPUs, and each kernel has one CPU.
//!
//! - raw: `pingpong` (blocking sockets, one echo process), datagrams of the
//!   payload's size;
//! - raw, one CPU: the same round trip with the pinger and the echo pinned
//!   to one CPU, one at a time: two context switches and no wake-up of an
//!   idle CPU. On a VM whose idle CPUs wake slowly (tens of microseconds)
//!   the unpinned round trip pays that twice while the daemon's spinning
//!   threads do not; the p50 target is against the lower of the two raw
//!   p50s, the floor;
//! - kernel: the same no-op pipeline submitted in process, no netlink (what
//!   the request path costs by itself);
//! - bridge: the peer (this process) plays the kernel; a child process runs
//!   a real kernel (script host, scheduler, request path) with a no-op Lua
//!   pipeline behind the bridge;
//! - embeddings: a real embedding pipeline over the bridge against the same
//!   pipeline called in process, for the bridge's share of the time; both
//!   reach one kernel in this process (one engine computes every vector),
//!   each text goes both ways back to back, and the share is the median of
//!   the pairs' differences over the bridge's p50.
//!
//! Latency is one request at a time (p50/p99), timed by a pinger that
//! blocks its thread between a request and its answer on both the raw and
//! the bridge side (`pingpong::ping`, `Peer::ping`), in blocks: raw, raw on
//! one CPU and the bridge take turns, so that all three meet the machine in
//! the same state; the table pools the blocks, and a line per size gives
//! the bridge's p50 over the floor's block by block. Throughput keeps a
//! window of 32 in flight (`Peer::drive`, on a runtime, as `spindle
//! netlink-peer` runs). Prints a table, each of the bridge's targets met or
//! missed, and writes target/bench/netlink.json.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spindle_kernel::{Kernel, KernelConfig, KernelSource, Submission};
use spindle_netlink::peer::{Peer, PeerConfig, PriorityMix};
use spindle_netlink::pingpong::{self, percentile};
use spindle_netlink::{BridgeConfig, TransportConfig};
use tokio_util::sync::CancellationToken;

const ROLE: &str = "SPINDLE_NETLINK_BENCH_ROLE";
const LATENCY_ROUNDS: usize = 10_000;
const THROUGHPUT_ROUNDS: usize = 50_000;
const WINDOW: usize = 32;
/// The targets: the bridge's p50 within this many raw round trips, at least
/// this many requests a second, and under this share of an embedding
/// request's time.
const RATIO_TARGET: f64 = 2.0;
const RATE_TARGET: f64 = 40_000.0;
const SHARE_TARGET: f64 = 0.05;

const NOOP: &str = r#"local s = require("spindle")
s.pipeline "noop" {
  from = { s.netlink { family = "spindle" } },
  s.stage("pass", function(req) return req end),
}
"#;

const EMBED: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "ingest" {
  from = { s.netlink { family = "spindle" } },
  s.stage("embed", s.embed "embedder"),
}
"#;

/// How the two processes are placed: `None` unpinned, `Some(cpu)` this
/// process's CPU under `SPINDLE_BENCH_PIN=split`.
fn pinning() -> Option<usize> {
    match std::env::var("SPINDLE_BENCH_PIN").as_deref() {
        Ok("split") => Some(usize::from(std::env::var(ROLE).is_ok())),
        Ok(other) if !other.is_empty() => {
            panic!("SPINDLE_BENCH_PIN is `split` or unset, not `{other}`")
        }
        _ => None,
    }
}

fn main() {
    // Before any thread starts, so that all of them inherit it.
    let pinned = pinning();
    if let Some(cpu) = pinned {
        spindle_netlink::sys::pin_current_thread(cpu)
            .unwrap_or_else(|error| panic!("cannot pin to CPU {cpu}: {error}"));
    }
    match std::env::var(ROLE).ok().as_deref() {
        Some("echo") => return echo(),
        Some("echo:cpu0") => {
            spindle_netlink::sys::pin_current_thread(0).expect("pin the echo to CPU 0");
            return echo();
        }
        Some(role) if role.starts_with("bridge:") => return bridge(role),
        _ => {}
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut blocks_json = Vec::new();
    let placement = match pinned {
        None => "unpinned: both processes may run on every CPU",
        Some(_) => {
            "split: peer, pingers and the in-process kernel on CPU 0, echo and daemon on CPU 1"
        }
    };
    println!(
        "netlink bridge benchmark: two processes, {placement}; other work on this machine disturbs the figures"
    );
    println!(
        "{:<9} {:>6} {:>9} {:>9} {:>12} {:>10}",
        "what", "bytes", "p50 us", "p99 us", "requests/s", "p50/floor"
    );
    let mut block_lines = Vec::new();
    for size in [64usize, 1500] {
        let (kernel_latency, kernel_throughput) = in_process(dir.path(), size);
        let Interleaved {
            raw: raw_latency,
            one_cpu: one_cpu_latency,
            bridge: bridge_latency,
            mut block_ratios,
            raw_throughput,
            bridge_throughput,
        } = interleaved(dir.path(), size);
        block_ratios.sort_by(f64::total_cmp);
        let block_median = block_ratios[block_ratios.len() / 2];
        block_lines.push(format!(
            "  {size} B: bridge p50 over the floor's, block by block: median {block_median:.2}, \
             from {:.2} to {:.2}",
            block_ratios[0],
            block_ratios[block_ratios.len() - 1]
        ));
        blocks_json.push(serde_json::json!({
            "bytes": size, "ratios_to_floor": block_ratios,
        }));
        let raw_p50 = micros(percentile(&raw_latency, 0.5));
        let one_cpu_p50 = micros(percentile(&one_cpu_latency, 0.5));
        let bridge_p50 = micros(percentile(&bridge_latency, 0.5));
        // The floor: whichever raw round trip was faster in this run.
        let (floor_what, floor) = if one_cpu_p50 < raw_p50 {
            ("raw on one CPU", one_cpu_p50)
        } else {
            ("raw", raw_p50)
        };
        // The one-CPU round trip is timed one at a time only.
        for (what, latencies, throughput) in [
            ("raw", &raw_latency, Some(raw_throughput)),
            ("raw 1 CPU", &one_cpu_latency, None),
            ("kernel", &kernel_latency, Some(kernel_throughput)),
            ("bridge", &bridge_latency, Some(bridge_throughput)),
        ] {
            let p50 = micros(percentile(latencies, 0.5));
            let p99 = micros(percentile(latencies, 0.99));
            let ratio = p50 / floor;
            let rate = throughput.map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"));
            println!("{what:<9} {size:>6} {p50:>9.1} {p99:>9.1} {rate:>12} {ratio:>10.2}");
            rows.push(serde_json::json!({
                "what": what, "bytes": size, "p50_us": p50, "p99_us": p99,
                "requests_per_second": throughput, "p50_ratio_to_floor": ratio,
            }));
        }
        let ratio = bridge_p50 / floor;
        targets.push(Target {
            what: format!(
                "{size} B: bridge p50 within {RATIO_TARGET}× the raw floor ({floor_what}, {floor:.1} us)"
            ),
            figure: format!("{ratio:.2}×"),
            met: ratio <= RATIO_TARGET,
        });
        targets.push(Target {
            what: format!("{size} B: at least {RATE_TARGET:.0} requests/s"),
            figure: format!("{bridge_throughput:.0}"),
            met: bridge_throughput >= RATE_TARGET,
        });
    }
    println!(
        "latency: {BLOCKS} blocks of {BLOCK_ROUNDS} round trips, raw, raw on one CPU and the bridge in turn"
    );
    for line in &block_lines {
        println!("{line}");
    }
    let embedding = embeddings(dir.path());
    println!(
        "embeddings: in process p50 {:.0} us, over the bridge p50 {:.0} us, median of the pairs' \
         differences {:.0} us: the bridge's share {:.1}%",
        embedding.in_process_p50_us,
        embedding.bridge_p50_us,
        embedding.pair_difference_us,
        100.0 * embedding.share()
    );
    targets.push(Target {
        what: format!(
            "the bridge's share of an embedding request under {:.0}%",
            100.0 * SHARE_TARGET
        ),
        figure: format!("{:.1}%", 100.0 * embedding.share()),
        met: embedding.share() < SHARE_TARGET,
    });
    println!("targets:");
    for target in &targets {
        let verdict = if target.met { "met" } else { "missed" };
        println!("  {}: {}, {verdict}", target.what, target.figure);
    }
    let json = serde_json::json!({
        "pinning": placement,
        "rows": rows,
        "latency_blocks": { "blocks": BLOCKS, "round_trips_each": BLOCK_ROUNDS, "sizes": blocks_json },
        "embedding": {
            "in_process_p50_us": embedding.in_process_p50_us,
            "bridge_p50_us": embedding.bridge_p50_us,
            "pair_difference_p50_us": embedding.pair_difference_us,
            "bridge_share": embedding.share(),
        },
        "targets": targets.iter().map(|target| serde_json::json!({
            "target": target.what, "figure": target.figure, "met": target.met,
        })).collect::<Vec<_>>(),
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("netlink.json"), format!("{json:#}\n")).expect("write json");
}

/// One of the bridge's targets against this run's figure.
struct Target {
    what: String,
    figure: String,
    met: bool,
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn spawn_role(role: &str) -> (Child, u32) {
    let mut child = Command::new(std::env::current_exe().expect("self"))
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the child's port");
    (child, line.trim().parse().unwrap_or(0))
}

fn echo() {
    let echo = pingpong::Echo::bind(0).expect("bind");
    println!("{}", echo.port());
    std::io::stdout().flush().expect("flush");
    echo.run().expect("echo");
}

/// The three round trips' one-at-a-time latencies, measured in turn in
/// blocks so that all three see the machine in the same state (on a shared
/// VM it changes from one minute to the next), the bridge's p50 over the
/// floor's in each block, and the raw and bridge rates with a window.
struct Interleaved {
    raw: Vec<Duration>,
    one_cpu: Vec<Duration>,
    bridge: Vec<Duration>,
    block_ratios: Vec<f64>,
    raw_throughput: f64,
    bridge_throughput: f64,
}

/// Blocks of the latency measurement, and round trips of each kind in each.
const BLOCKS: usize = 20;
const BLOCK_ROUNDS: usize = LATENCY_ROUNDS / BLOCKS;

/// Raw round trips (an echo process, unpinned; and an echo with the pinger,
/// a thread of its own, both pinned to CPU 0) and the bridge's (a child
/// process with a kernel behind the bridge, SCRIPT's no-op pipeline), one at
/// a time in blocks, each block in another order; then each rate with a
/// window.
fn interleaved(dir: &std::path::Path, size: usize) -> Interleaved {
    let file = dir.join("noop.lua");
    std::fs::write(&file, NOOP).expect("script");
    let (mut echo, raw_port) = spawn_role("echo");
    let (mut echo_on_cpu0, one_cpu_port) = spawn_role("echo:cpu0");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let measured = runtime.block_on(async {
        let mut peer = Peer::bind(0).expect("peer");
        let (mut child, _) = spawn_role(&format!("bridge:{}:{}", file.display(), peer.port()));
        peer.accept(Duration::from_secs(120), &mut 0)
            .await
            .expect("register");
        let config = |requests, window| PeerConfig {
            requests,
            window,
            mix: PriorityMix {
                high: 0,
                medium: 1,
                low: 0,
            },
            pipeline: "noop".to_owned(),
            texts: vec![text(size)],
            deadline_ms: 30_000,
            ..PeerConfig::default()
        };
        let mut measured = Interleaved {
            raw: Vec::with_capacity(LATENCY_ROUNDS),
            one_cpu: Vec::with_capacity(LATENCY_ROUNDS),
            bridge: Vec::with_capacity(LATENCY_ROUNDS),
            block_ratios: Vec::with_capacity(BLOCKS),
            raw_throughput: 0.0,
            bridge_throughput: 0.0,
        };
        for block in 0..BLOCKS {
            let (mut raw, mut one_cpu, mut bridge) = (Vec::new(), Vec::new(), Vec::new());
            for turn in 0..3 {
                match (block + turn) % 3 {
                    0 => {
                        raw = pingpong::ping(raw_port, size, BLOCK_ROUNDS, 1)
                            .expect("ping")
                            .latencies
                    }
                    1 => one_cpu = ping_on_cpu0(one_cpu_port, size),
                    _ => {
                        // The thread blocks between a request and its answer,
                        // as the raw pinger's does: no runtime in the timed
                        // path of either.
                        let report = peer.ping(&config(BLOCK_ROUNDS as u64, 1)).expect("ping");
                        assert!(report.passed(), "{}", report.table());
                        bridge = report.latencies;
                    }
                }
            }
            let floor = percentile(&raw, 0.5).min(percentile(&one_cpu, 0.5));
            measured
                .block_ratios
                .push(micros(percentile(&bridge, 0.5)) / micros(floor));
            measured.raw.append(&mut raw);
            measured.one_cpu.append(&mut one_cpu);
            measured.bridge.append(&mut bridge);
        }
        let throughput = peer
            .drive(&config(THROUGHPUT_ROUNDS as u64, WINDOW as u32))
            .await
            .expect("drive");
        assert!(throughput.passed(), "{}", throughput.table());
        measured.bridge_throughput = throughput.throughput();
        drop(child.stdin.take());
        child.wait().expect("bridge exits");
        measured
    });
    let mut measured = measured;
    let throughput = pingpong::ping(raw_port, size, THROUGHPUT_ROUNDS, WINDOW).expect("ping");
    measured.raw_throughput = throughput.round_trips as f64 / throughput.elapsed.as_secs_f64();
    for (child, port) in [(&mut echo, raw_port), (&mut echo_on_cpu0, one_cpu_port)] {
        pingpong::stop_echo(port).expect("stop");
        child.wait().expect("echo exits");
    }
    for latencies in [
        &mut measured.raw,
        &mut measured.one_cpu,
        &mut measured.bridge,
    ] {
        latencies.sort();
    }
    measured
}

/// One block of raw round trips from a pinger thread pinned to CPU 0, to
/// the echo pinned there too.
fn ping_on_cpu0(port: u32, size: usize) -> Vec<Duration> {
    std::thread::spawn(move || {
        spindle_netlink::sys::pin_current_thread(0).expect("pin the pinger to CPU 0");
        pingpong::ping(port, size, BLOCK_ROUNDS, 1).expect("ping")
    })
    .join()
    .expect("the pinger")
    .latencies
}

/// The child: a kernel from SCRIPT behind the bridge, to the peer's port;
/// stops when its stdin closes.
fn bridge(role: &str) {
    let mut parts = role.splitn(3, ':');
    let (_, script, port) = (
        parts.next(),
        parts.next().expect("script"),
        parts.next().expect("port"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let kernel = Kernel::start(KernelSource::Script(script.into()), KernelConfig::default())
            .expect("kernel");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_line(&mut String::new());
            stop.cancel();
        });
        println!("0");
        let config = BridgeConfig {
            transport: TransportConfig::Usersock {
                peer_port: port.parse().expect("port"),
            },
            max_inflight: 256,
            ..BridgeConfig::default()
        };
        spindle_netlink::serve(kernel.clone(), config, shutdown)
            .await
            .expect("bridge");
        kernel.shutdown();
        let _ = kernel.wait().await;
    });
}

/// The same no-op pipeline submitted in process (no netlink): what the
/// kernel's request path costs by itself.
fn in_process(dir: &std::path::Path, size: usize) -> (Vec<Duration>, f64) {
    let file = dir.join("noop-in-process.lua");
    std::fs::write(&file, NOOP).expect("script");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let kernel = Kernel::start(KernelSource::Script(file.clone()), KernelConfig::default())
            .expect("kernel");
        let submission = Submission {
            pipeline: "noop".to_owned(),
            text: text(size),
            priority: spindle_scheduler::Priority::Medium,
            deadline: Some(Duration::from_secs(30)),
            correlation_id: None,
            source: spindle_scheduler::Source::Netlink,
        };
        let mut latencies = Vec::with_capacity(LATENCY_ROUNDS);
        for _ in 0..LATENCY_ROUNDS {
            let start = Instant::now();
            let answer = kernel.submit(submission.clone()).await;
            latencies.push(start.elapsed());
            assert!(matches!(answer.outcome, spindle_scheduler::Outcome::Ok(_)));
        }
        latencies.sort();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..WINDOW {
            let kernel = kernel.clone();
            let submission = submission.clone();
            tasks.spawn(async move {
                for _ in 0..THROUGHPUT_ROUNDS / WINDOW {
                    kernel.submit(submission.clone()).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let throughput =
            (THROUGHPUT_ROUNDS / WINDOW * WINDOW) as f64 / start.elapsed().as_secs_f64();
        kernel.shutdown();
        let _ = kernel.wait().await;
        (latencies, throughput)
    })
}

fn text(size: usize) -> String {
    let mut text = "lorem ipsum dolor sit amet ".repeat(size / 27 + 1);
    text.truncate(size);
    text
}

/// Rounds of the embedding comparison over the texts, after one round of
/// warm-up.
const EMBED_ROUNDS: usize = 6;

/// An embedding request in process against the same over the bridge.
struct EmbeddingShare {
    in_process_p50_us: f64,
    bridge_p50_us: f64,
    /// Median over pairs (one text in process, then over the bridge, or the
    /// other way round) of the bridge's time minus the in-process time.
    pair_difference_us: f64,
}

impl EmbeddingShare {
    /// The bridge's part of an embedding request's time over the bridge.
    fn share(&self) -> f64 {
        self.pair_difference_us / self.bridge_p50_us
    }
}

/// An embedding pipeline called in process and over the bridge, request by
/// request: each text goes both ways back to back (which goes first
/// alternates), so the machine's speed, which moves by a third from one
/// minute to the next here, is the same for both halves of a pair. Both
/// sides reach one kernel, so one engine computes every vector: the bridge
/// serves that kernel as a task of this runtime, and the peer plays the
/// kernel module from this process.
fn embeddings(dir: &std::path::Path) -> EmbeddingShare {
    let texts: Vec<String> = (0..50)
        .map(|index| format!("Sentence number {index} about netlink bridges and embeddings."))
        .collect();
    let file = dir.join("embed.lua");
    std::fs::write(&file, EMBED).expect("script");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let kernel = Kernel::start(KernelSource::Script(file.clone()), KernelConfig::default())
            .expect("kernel");
        let mut peer = Peer::bind(0).expect("peer");
        let shutdown = CancellationToken::new();
        let bridge = tokio::spawn(spindle_netlink::serve(
            kernel.clone(),
            BridgeConfig {
                transport: TransportConfig::Usersock {
                    peer_port: peer.port(),
                },
                max_inflight: 256,
                ..BridgeConfig::default()
            },
            shutdown.clone(),
        ));
        peer.accept(Duration::from_secs(120), &mut 0)
            .await
            .expect("register");
        let (mut in_process, mut over, mut differences) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..=EMBED_ROUNDS {
            for (index, text) in texts.iter().enumerate() {
                let mut pair = [Duration::ZERO; 2];
                for side in 0..2 {
                    let local = (round + index + side) % 2 == 0;
                    if local {
                        pair[0] = in_process_request(&kernel, text).await;
                    } else {
                        let report = peer
                            .drive(&PeerConfig {
                                requests: 1,
                                window: 1,
                                pipeline: "ingest".to_owned(),
                                texts: vec![text.clone()],
                                deadline_ms: 30_000,
                                expect_dims: Some(384),
                                ..PeerConfig::default()
                            })
                            .await
                            .expect("drive");
                        assert!(report.passed(), "{}", report.table());
                        pair[1] = report.latencies[0];
                    }
                }
                // Round 0 warms both up.
                if round > 0 {
                    in_process.push(pair[0]);
                    over.push(pair[1]);
                    differences.push(micros(pair[1]) - micros(pair[0]));
                }
            }
        }
        shutdown.cancel();
        bridge
            .await
            .expect("the bridge task")
            .expect("the bridge stops cleanly");
        kernel.shutdown();
        let _ = kernel.wait().await;
        in_process.sort();
        over.sort();
        differences.sort_by(f64::total_cmp);
        EmbeddingShare {
            in_process_p50_us: micros(percentile(&in_process, 0.5)),
            bridge_p50_us: micros(percentile(&over, 0.5)),
            pair_difference_us: differences[differences.len() / 2],
        }
    })
}

/// One text through the in-process kernel.
async fn in_process_request(kernel: &Kernel, text: &str) -> Duration {
    let start = Instant::now();
    let answer = kernel
        .submit(Submission {
            pipeline: "ingest".to_owned(),
            text: text.to_owned(),
            priority: spindle_scheduler::Priority::Medium,
            deadline: Some(Duration::from_secs(30)),
            correlation_id: None,
            source: spindle_scheduler::Source::Netlink,
        })
        .await;
    let elapsed = start.elapsed();
    assert!(matches!(answer.outcome, spindle_scheduler::Outcome::Ok(_)));
    elapsed
}
