//! Weighted-fair scheduling end to end: high priority is not stuck behind
//! a low-priority flood, and low priority still progresses under a
//! high-priority flood.

use std::time::Duration;

use spindle_scheduler::{
    Failure, Job, NewRequest, Outcome, PerPriority, Priority, Scheduler, SchedulerConfig, Source,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn config(max_in_flight: usize) -> SchedulerConfig {
    SchedulerConfig {
        capacity: PerPriority {
            high: 10_000,
            medium: 10_000,
            low: 10_000,
        },
        max_in_flight,
        reserved_for_high: 1,
        timeouts: PerPriority {
            high: Duration::from_secs(600),
            medium: Duration::from_secs(600),
            low: Duration::from_secs(600),
        },
        ..SchedulerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn high_priority_completes_quickly_under_a_low_flood() {
    let service_time = Duration::from_millis(10);
    let scheduler = Scheduler::start(
        config(4),
        move |_job: Job<()>| async move {
            tokio::time::sleep(service_time).await;
            Ok::<_, Failure>(())
        },
        CancellationToken::new(),
    );
    let mut low_tickets = Vec::new();
    for _ in 0..2_000 {
        let request = NewRequest::new("ingest", Priority::Low, Source::Netlink, ());
        low_tickets.push(scheduler.submit(request).unwrap());
    }
    // Draining the flood alone takes 2,000 × 10 ms / 4 = 5 s.
    let mut worst = Duration::ZERO;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let submitted = Instant::now();
        let ticket = scheduler
            .submit(NewRequest::new("ingest", Priority::High, Source::Http, ()))
            .unwrap();
        let answer = ticket.await;
        assert_eq!(answer.outcome, Outcome::Ok(()));
        worst = worst.max(answer.answered_at - submitted);
    }
    // A slot is reserved for high priority: it never waits for a low
    // request to finish.
    assert_eq!(worst, service_time, "worst high-priority latency");

    let stats = scheduler.stats().await;
    assert!(stats.queued.low > 0, "the flood is still queued");
    assert!(stats.counters.ok > 40, "low priority progressed meanwhile");
    for ticket in low_tickets {
        assert_eq!(ticket.await.outcome, Outcome::Ok(()));
    }
}

#[tokio::test(start_paused = true)]
async fn low_priority_progresses_in_proportion_under_a_high_flood() {
    let (order_tx, mut order_rx) = mpsc::unbounded_channel();
    let scheduler = Scheduler::start(
        config(1),
        move |job: Job<()>| {
            let _ = order_tx.send(job.request.priority);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, Failure>(())
            }
        },
        CancellationToken::new(),
    );
    let mut tickets = Vec::new();
    for _ in 0..1_000 {
        for priority in [Priority::High, Priority::Medium, Priority::Low] {
            let request = NewRequest::new("ingest", priority, Source::Http, ());
            tickets.push(scheduler.submit(request).unwrap());
        }
    }
    let mut served = PerPriority::<usize>::default();
    for _ in 0..130 {
        *served.get_mut(order_rx.recv().await.unwrap()) += 1;
    }
    // Weights 8:4:1 over 130 dispatches; the first request (a high one,
    // admitted before the others) may shift the split by one.
    assert!((79..=81).contains(&served.high), "{served:?}");
    assert!((39..=41).contains(&served.medium), "{served:?}");
    assert!((9..=11).contains(&served.low), "{served:?}");
    for ticket in tickets {
        assert_eq!(ticket.await.outcome, Outcome::Ok(()));
    }
}
