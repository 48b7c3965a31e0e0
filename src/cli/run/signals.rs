//! What signals do to a running kernel:
//! - SIGINT, SIGTERM: orderly shutdown; a second one skips the grace
//!   periods (SIGKILL to every service's process group);
//! - SIGHUP: reload the script (as `spindle ctl reload` and `--watch`);
//! - SIGUSR1: a status and statistics dump to the log;
//! - SIGUSR2: debug logging on, or off again.

use anyhow::Context;
use spindle_kernel::Kernel;
use tokio::signal::unix::{SignalKind, signal};

use super::logging::LogLevel;
use super::notify::Notifier;
use super::reload;

/// Starts the tasks that turn signals into kernel actions.
pub(super) fn watch(
    kernel: Kernel,
    mut log_level: Option<LogLevel>,
    notifier: Option<std::sync::Arc<Notifier>>,
) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut user1 = signal(SignalKind::user_defined1()).context("cannot watch SIGUSR1")?;
    let mut user2 = signal(SignalKind::user_defined2()).context("cannot watch SIGUSR2")?;
    {
        let kernel = kernel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => eprintln!("\nspindle: interrupted, stopping services"),
                _ = terminate.recv() => eprintln!("spindle: SIGTERM, stopping services"),
            }
            kernel.shutdown();
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("spindle: second signal, killing services now");
            kernel.kill_now();
        });
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = hangup.recv() => {
                    eprintln!("spindle: SIGHUP, reloading the script");
                    reload::reload(&kernel, notifier.as_deref()).await;
                }
                Some(()) = user1.recv() => {
                    eprint!("{}", dump(&kernel).await);
                }
                Some(()) = user2.recv() => match log_level.as_mut() {
                    Some(level) => {
                        let on = level.toggle();
                        eprintln!("spindle: SIGUSR2, debug logging {}", if on { "on" } else { "off" });
                    }
                    None => eprintln!("spindle: SIGUSR2: no log to switch"),
                },
                else => return,
            }
        }
    });
    Ok(())
}

/// SIGUSR1's dump: services, pipelines, requests and batching.
async fn dump(kernel: &Kernel) -> String {
    use std::fmt::Write;
    let metrics = kernel.metrics().await;
    let mut text = format!("spindle: status of run {}\n", kernel.run_id());
    for service in &metrics.services {
        let pid = service
            .pid
            .map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        let uptime = service
            .running_since
            .and_then(|since| since.elapsed().ok())
            .map_or_else(|| "-".to_owned(), |ran| format!("{}s", ran.as_secs()));
        let _ = writeln!(
            text,
            "  service {:<20} {:<11} pid {:<7} restarts {:<3} up {:<7} {}",
            service.name,
            service.state.name(),
            pid,
            service.restarts,
            uptime,
            service.reason
        );
    }
    for pipeline in kernel.pipelines() {
        let state = match &pipeline.gate {
            spindle_scheduler::Gate::Open => "ready".to_owned(),
            spindle_scheduler::Gate::Closed { reason } => format!("waiting: {reason}"),
            spindle_scheduler::Gate::Failed { reason } => format!("failed: {reason}"),
        };
        let _ = writeln!(text, "  pipeline {:<19} {state}", pipeline.name);
    }
    let stats = &metrics.scheduler;
    let counters = &stats.counters;
    let _ = writeln!(
        text,
        "  requests: submitted {} ok {} error {} timeout {} rejected {} cancelled {}; queued {}/{}/{} (high/medium/low), in flight {}",
        counters.submitted,
        counters.ok,
        counters.error,
        counters.timeout,
        counters.rejected,
        counters.cancelled,
        stats.queued.high,
        stats.queued.medium,
        stats.queued.low,
        stats.in_flight
    );
    for (service, batcher) in &metrics.batchers {
        let _ = writeln!(
            text,
            "  batcher {service}: {} batches, {} items, mean batch {:.1}, padding {:.2}, breaker {}",
            batcher.batches,
            batcher.items,
            batcher.batch_size.mean(),
            batcher.overall_padding_ratio(),
            batcher.breaker.as_str()
        );
    }
    for engine in &metrics.engines {
        let _ = writeln!(
            text,
            "  engine {}: {} on {} ({} dimensions)",
            engine.service, engine.model, engine.provider, engine.dimensions
        );
    }
    text
}
