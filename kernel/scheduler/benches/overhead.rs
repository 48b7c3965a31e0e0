//! Scheduler overhead and priority isolation.
//!
//! 1. Overhead: one request at a time through submit → no-op worker →
//!    answer, against a bare tokio round trip (a command over `mpsc` to a
//!    task that replies on a `oneshot`: what one actor call costs) and a
//!    spawn + `oneshot` (what running one worker task costs), in the same
//!    run. Also 64 concurrent clients for throughput.
//! 2. Priority: high-priority p99 latency with a 10× low-priority flood
//!    against the same high-priority load alone. The worker awaits a 1 ms
//!    timer (an embedding it waits for); 8 in flight, 2 of them
//!    reserved for high priority (the default's proportion), and once more
//!    with none reserved to show what the reservation buys.
//!
//! Prints a table and writes `target/bench/scheduler.json`. Threads are
//! not pinned; the runtime is tokio's multi-threaded one with a worker per
//! core.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use spindle_scheduler::{
    Failure, Job, NewRequest, PerPriority, Priority, Scheduler, SchedulerConfig, Source,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const WARMUP: usize = 2_000;
const ROUNDS: usize = 20_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut json = String::from("{\n");
    let _ = writeln!(json, "  \"cores\": {cores},\n  \"pinned\": false,");

    let (anchor, spawn_anchor, scheduler) = runtime.block_on(interleaved_round_trips());
    let throughput = runtime.block_on(scheduler_throughput());

    println!(
        "scheduler overhead, {ROUNDS} sequential requests per path after {WARMUP} warm-up, paths interleaved, {cores} cores, unpinned"
    );
    println!("{:<44} {:>9} {:>9}", "path", "p50 µs", "p99 µs");
    for (name, samples) in [
        ("anchor: mpsc command + oneshot reply", &anchor),
        ("anchor: tokio::spawn + oneshot", &spawn_anchor),
        ("scheduler: submit → no-op worker → answer", &scheduler),
    ] {
        println!(
            "{:<44} {:>9.2} {:>9.2}",
            name,
            micros(samples, 0.50),
            micros(samples, 0.99)
        );
    }
    let ratio_p50 = micros(&scheduler, 0.50) / micros(&anchor, 0.50);
    let ratio_p99 = micros(&scheduler, 0.99) / micros(&anchor, 0.99);
    println!("ratio scheduler / mpsc+oneshot anchor: p50 {ratio_p50:.1}×, p99 {ratio_p99:.1}×");
    println!("throughput, 64 concurrent clients: {throughput:.0} requests/s");
    let _ = writeln!(
        json,
        "  \"overhead\": {{\"anchor_p50_us\": {:.3}, \"anchor_p99_us\": {:.3}, \"spawn_anchor_p50_us\": {:.3}, \"spawn_anchor_p99_us\": {:.3}, \"scheduler_p50_us\": {:.3}, \"scheduler_p99_us\": {:.3}, \"ratio_p50\": {ratio_p50:.3}, \"ratio_p99\": {ratio_p99:.3}, \"throughput_64_clients_per_s\": {throughput:.0}}},",
        micros(&anchor, 0.50),
        micros(&anchor, 0.99),
        micros(&spawn_anchor, 0.50),
        micros(&spawn_anchor, 0.99),
        micros(&scheduler, 0.50),
        micros(&scheduler, 0.99),
    );

    let alone = runtime.block_on(priority_run(false, 2));
    let flooded = runtime.block_on(priority_run(true, 2));
    let unreserved = runtime.block_on(priority_run(true, 0));
    println!();
    println!(
        "priority isolation: high every 1 ms for 2 s, worker awaits 1 ms, 8 in flight (2 reserved for high)"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>10} {:>10}",
        "run", "p50 µs", "p99 µs", "low ok", "low busy"
    );
    for (name, run) in [
        ("high alone", &alone),
        ("high + 10× low flood", &flooded),
        ("same, no reserved slots", &unreserved),
    ] {
        println!(
            "{:<34} {:>9.0} {:>9.0} {:>10} {:>10}",
            name,
            micros(&run.high, 0.50),
            micros(&run.high, 0.99),
            run.low_ok,
            run.low_rejected
        );
    }
    let flood_ratio = micros(&flooded.high, 0.99) / micros(&alone.high, 0.99);
    let unreserved_ratio = micros(&unreserved.high, 0.99) / micros(&alone.high, 0.99);
    println!(
        "high p99 with flood / without: {flood_ratio:.2}× (target ≤ 2×); without reserved slots {unreserved_ratio:.2}×"
    );
    let _ = writeln!(
        json,
        "  \"priority\": {{\"high_alone_p50_us\": {:.1}, \"high_alone_p99_us\": {:.1}, \"high_flood_p50_us\": {:.1}, \"high_flood_p99_us\": {:.1}, \"p99_ratio\": {flood_ratio:.3}, \"low_ok\": {}, \"low_rejected\": {}, \"unreserved_high_flood_p99_us\": {:.1}, \"unreserved_p99_ratio\": {unreserved_ratio:.3}}}",
        micros(&alone.high, 0.50),
        micros(&alone.high, 0.99),
        micros(&flooded.high, 0.50),
        micros(&flooded.high, 0.99),
        flooded.low_ok,
        flooded.low_rejected,
        micros(&unreserved.high, 0.99),
    );
    json.push_str("}\n");
    let path = bench_dir().join("scheduler.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create target/bench");
    std::fs::write(&path, json).expect("write json");
    println!("\nwrote {}", path.display());
}

fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("bench")
}

/// The `q` quantile of `samples`, in microseconds.
fn micros(samples: &[Duration], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// The three paths, one request each per round, in turn, so that noise
/// from other processes on the machine hits all of them alike.
async fn interleaved_round_trips() -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let (commands, mut receiver) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
    tokio::spawn(async move {
        while let Some((value, reply)) = receiver.recv().await {
            let _ = reply.send(value);
        }
    });
    let scheduler = no_op_scheduler();
    let mut anchor = Vec::with_capacity(ROUNDS);
    let mut spawn_anchor = Vec::with_capacity(ROUNDS);
    let mut through_scheduler = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        let value = round as u64;

        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        commands.send((value, reply)).expect("actor alive");
        std::hint::black_box(answer.await.expect("answer"));
        let anchor_time = started.elapsed();

        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        tokio::spawn(async move {
            let _ = reply.send(value);
        });
        std::hint::black_box(answer.await.expect("answer"));
        let spawn_time = started.elapsed();

        let started = Instant::now();
        let request = NewRequest::new("bench", Priority::High, Source::Scenario, value);
        let ticket = scheduler.submit(request).expect("admitted");
        std::hint::black_box(ticket.await);
        let scheduler_time = started.elapsed();

        if round >= WARMUP {
            anchor.push(anchor_time);
            spawn_anchor.push(spawn_time);
            through_scheduler.push(scheduler_time);
        }
    }
    let counters = scheduler.stats().await.counters;
    assert_eq!(counters.ok as usize, WARMUP + ROUNDS);
    (anchor, spawn_anchor, through_scheduler)
}

fn no_op_scheduler() -> spindle_scheduler::SchedulerHandle<u64, u64> {
    Scheduler::start(
        SchedulerConfig::default(),
        |job: Job<u64>| async move { Ok::<_, Failure>(job.request.payload) },
        CancellationToken::new(),
    )
}

async fn scheduler_throughput() -> f64 {
    let scheduler = no_op_scheduler();
    let clients = 64;
    let per_client = 1_000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let scheduler = scheduler.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..per_client {
                let request = NewRequest::new("bench", Priority::Medium, Source::Scenario, round);
                let ticket = scheduler.submit(request).expect("admitted");
                std::hint::black_box(ticket.await);
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    (clients * per_client) as f64 / started.elapsed().as_secs_f64()
}

struct PriorityRun {
    high: Vec<Duration>,
    low_ok: u64,
    low_rejected: u64,
}

async fn priority_run(flood: bool, reserved_for_high: usize) -> PriorityRun {
    let scheduler = Scheduler::start(
        SchedulerConfig {
            capacity: PerPriority {
                high: 1_024,
                medium: 1_024,
                low: 1_024,
            },
            max_in_flight: 8,
            reserved_for_high,
            ..SchedulerConfig::default()
        },
        |_job: Job<()>| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, Failure>(())
        },
        CancellationToken::new(),
    );
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high_tasks = Vec::new();
    let mut low_tasks = Vec::new();
    for _ in 0..2_000 {
        interval.tick().await;
        let submitter = scheduler.clone();
        high_tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let request = NewRequest::new("bench", Priority::High, Source::Http, ());
            let ticket = submitter.submit(request).expect("high admitted");
            ticket.await;
            started.elapsed()
        }));
        if flood {
            for _ in 0..10 {
                let submitter = scheduler.clone();
                low_tasks.push(tokio::spawn(async move {
                    let request = NewRequest::new("bench", Priority::Low, Source::Netlink, ());
                    match submitter.submit(request) {
                        Ok(ticket) => {
                            matches!(ticket.await.outcome, spindle_scheduler::Outcome::Ok(()))
                        }
                        Err(_) => false,
                    }
                }));
            }
        }
    }
    let mut high = Vec::new();
    for task in high_tasks {
        high.push(task.await.expect("high"));
    }
    let mut low_ok = 0;
    for task in low_tasks {
        low_ok += u64::from(task.await.expect("low"));
    }
    let counters = scheduler.stats().await.counters;
    PriorityRun {
        high,
        low_ok,
        low_rejected: counters.rejected,
    }
}
