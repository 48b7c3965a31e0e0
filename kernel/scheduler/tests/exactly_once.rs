//! Every request gets exactly one terminal answer, under injected worker
//! errors, panics, timeouts, cancellations, pauses, full queues and
//! shutdown; the counters prove it.

use std::collections::HashSet;
use std::time::Duration;

use spindle_scheduler::{
    CancelReason, Failure, NewRequest, Outcome, OutcomeKind, PerPriority, Priority, RejectReason,
    Scheduler, SchedulerConfig, Source,
};
use tokio_util::sync::CancellationToken;

fn config() -> SchedulerConfig {
    SchedulerConfig {
        capacity: PerPriority {
            high: 256,
            medium: 256,
            low: 256,
        },
        max_in_flight: 32,
        timeouts: PerPriority {
            high: Duration::from_secs(1),
            medium: Duration::from_secs(1),
            low: Duration::from_secs(1),
        },
        shutdown_grace: Duration::from_millis(100),
        ..SchedulerConfig::default()
    }
}

/// What request `k` does, by `k % 10`.
async fn faulty_worker(k: u32) -> Result<u32, Failure> {
    match k % 10 {
        0 => Err(Failure::transient(format!("injected error {k}"))),
        1 => panic!("injected panic {k}"),
        2 => {
            // Far past the deadline: answered Timeout, future dropped.
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(k)
        }
        3 => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(k)
        }
        _ => {
            tokio::time::sleep(Duration::from_millis(u64::from(k % 7))).await;
            Ok(k)
        }
    }
}

/// Keeps the injected panics out of the test output; every other panic
/// (a failed assertion) is still printed.
fn quiet_injected_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|message| message.starts_with("injected panic"));
        if !injected {
            default_hook(info);
        }
    }));
}

#[tokio::test(start_paused = true)]
async fn five_thousand_requests_under_faults_each_answered_once() {
    quiet_injected_panics();
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        config(),
        |job: spindle_scheduler::Job<u32>| faulty_worker(job.request.payload),
        shutdown.clone(),
    );
    let mut tickets = Vec::new();
    let mut rejected = 0u64;
    let mut to_cancel_later = Vec::new();
    let mut to_resume = Vec::new();
    for k in 0..5_000u32 {
        let priority = Priority::ALL[(k % 3) as usize];
        let request = NewRequest::new("ingest", priority, Source::Scenario, k);
        match scheduler.submit(request) {
            Ok(ticket) => {
                if k % 20 == 3 {
                    // Cancelled while (most likely) queued.
                    assert!(scheduler.cancel(ticket.id).await);
                    assert!(
                        !scheduler.cancel(ticket.id).await,
                        "a second cancel finds nothing"
                    );
                } else if k % 20 == 13 {
                    to_cancel_later.push(ticket.id);
                } else if k % 100 == 5 {
                    assert!(scheduler.pause(ticket.id).await);
                    to_resume.push(ticket.id);
                }
                tickets.push((k, ticket));
            }
            Err(rejection) => {
                assert_eq!(rejection.reason, RejectReason::QueueFull);
                assert_eq!(rejection.priority, priority);
                rejected += 1;
            }
        }
        if k % 500 == 499 {
            // Let the scheduler work through part of the backlog.
            tokio::time::sleep(Duration::from_millis(300)).await;
            for id in to_cancel_later.drain(..) {
                scheduler.cancel(id).await;
            }
            for id in to_resume.drain(..) {
                scheduler.resume(id).await;
            }
        }
    }
    for id in to_resume.drain(..) {
        scheduler.resume(id).await;
    }

    let mut seen = HashSet::new();
    let mut kinds = std::collections::HashMap::<OutcomeKind, u64>::new();
    for (k, ticket) in tickets {
        let id = ticket.id;
        let answer = ticket.await;
        assert_eq!(answer.id, id);
        assert!(seen.insert(answer.id), "request {id} answered twice");
        match &answer.outcome {
            Outcome::Ok(value) => {
                assert_eq!(*value, k);
                assert!(!matches!(k % 10, 0..=2), "request {k} must not succeed");
            }
            Outcome::Error(Failure { message, .. }) if k % 10 == 1 => {
                assert!(
                    message.contains("panicked")
                        && message.contains(&format!("injected panic {k}")),
                    "{message}"
                );
            }
            Outcome::Error(failure) => {
                assert_eq!(k % 10, 0, "unexpected error for {k}: {failure}");
                assert!(failure.is_transient());
            }
            Outcome::Timeout => assert!(answer.latency() >= Duration::from_secs(1) || k % 100 == 5),
            Outcome::Cancelled(reason) => assert_eq!(*reason, CancelReason::Caller),
            Outcome::Rejected(_) => panic!("a ticket never resolves to Rejected"),
        }
        *kinds.entry(answer.outcome.kind()).or_default() += 1;
    }

    let stats = scheduler.stats().await;
    let counters = stats.counters;
    assert_eq!(counters.submitted, 5_000);
    assert_eq!(counters.answered(), counters.submitted, "{counters:?}");
    assert_eq!(counters.rejected, rejected);
    assert_eq!(seen.len() as u64 + rejected, 5_000);
    for (kind, count) in &kinds {
        let counted = match kind {
            OutcomeKind::Ok => counters.ok,
            OutcomeKind::Error => counters.error,
            OutcomeKind::Timeout => counters.timeout,
            OutcomeKind::Cancelled => counters.cancelled,
            OutcomeKind::Rejected => counters.rejected,
        };
        assert_eq!(counted, *count, "{kind}");
    }
    // Every fault kind actually happened.
    assert!(counters.ok > 0 && counters.error > 0 && counters.timeout > 0);
    assert!(counters.cancelled > 0 && counters.rejected > 0 && counters.panics > 0);
    assert_eq!(stats.queued, PerPriority::default());
    assert_eq!(stats.paused, 0);

    // Timed-out and cancelled workers wind down; nothing stays in flight.
    while scheduler.stats().await.in_flight > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    let final_counters = scheduler.stopped().await;
    assert_eq!(final_counters.answered(), final_counters.submitted);
    assert_eq!(final_counters.submitted, 5_000);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_and_cancels_stragglers_after_grace() {
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        SchedulerConfig {
            max_in_flight: 2,
            reserved_for_high: 0,
            shutdown_grace: Duration::from_millis(100),
            ..SchedulerConfig::default()
        },
        |job: spindle_scheduler::Job<u64>| async move {
            tokio::time::sleep(Duration::from_millis(job.request.payload)).await;
            Ok::<_, Failure>(job.request.payload)
        },
        shutdown.clone(),
    );
    // Two in flight: one finishes inside the grace, one does not; three
    // queued behind them.
    let mut tickets = Vec::new();
    for millis in [50, 10_000, 1, 1, 1] {
        let request = NewRequest::new("ingest", Priority::Medium, Source::Http, millis);
        tickets.push(scheduler.submit(request).unwrap());
    }
    tokio::task::yield_now().await;
    assert_eq!(scheduler.stats().await.in_flight, 2);
    shutdown.cancel();

    let outcomes: Vec<_> = futures_join(tickets).await;
    assert_eq!(outcomes[0], Outcome::Ok(50));
    assert_eq!(outcomes[1], Outcome::Cancelled(CancelReason::Shutdown));
    for outcome in &outcomes[2..] {
        assert_eq!(*outcome, Outcome::Cancelled(CancelReason::Shutdown));
    }
    scheduler.stopped().await;
    let late = scheduler.submit(NewRequest::new("ingest", Priority::High, Source::Http, 1));
    assert_eq!(late.unwrap_err().reason, RejectReason::ShuttingDown);
}

async fn futures_join(tickets: Vec<spindle_scheduler::Ticket<u64>>) -> Vec<Outcome<u64>> {
    let mut outcomes = Vec::new();
    for ticket in tickets {
        outcomes.push(ticket.await.outcome);
    }
    outcomes
}

#[tokio::test(start_paused = true)]
async fn shutdown_under_load_still_answers_everything_once() {
    quiet_injected_panics();
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        config(),
        |job: spindle_scheduler::Job<u32>| faulty_worker(job.request.payload),
        shutdown.clone(),
    );
    let mut tickets = Vec::new();
    let mut refused = 0u64;
    for k in 0..2_000u32 {
        let priority = Priority::ALL[(k % 3) as usize];
        match scheduler.submit(NewRequest::new("ingest", priority, Source::Http, k)) {
            Ok(ticket) => tickets.push(ticket),
            Err(_) => refused += 1,
        }
        if k == 1_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            shutdown.cancel();
            tokio::task::yield_now().await;
        }
    }
    let mut ids = HashSet::new();
    let mut drained = 0;
    for ticket in tickets {
        let answer = ticket.await;
        assert!(ids.insert(answer.id));
        if answer.outcome == Outcome::Cancelled(CancelReason::Shutdown) {
            drained += 1;
        }
    }
    let counters = scheduler.stopped().await;
    assert!(drained > 0);
    assert_eq!(counters.submitted, 2_000);
    assert_eq!(counters.answered(), 2_000, "{counters:?}");
    assert_eq!(counters.rejected, refused);
    assert_eq!(ids.len() as u64 + refused, 2_000);
    // Stopped: stats answer the default.
    assert!(!scheduler.stats().await.admitting);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_panics_before_returning_its_future_is_caught() {
    quiet_injected_panics();
    let scheduler = Scheduler::start(
        SchedulerConfig::default(),
        |job: spindle_scheduler::Job<u32>| -> std::future::Ready<Result<u32, Failure>> {
            if job.request.payload == 1 {
                panic!("injected panic before the future");
            }
            std::future::ready(Ok(job.request.payload))
        },
        CancellationToken::new(),
    );
    let bad = scheduler
        .submit(NewRequest::new("ingest", Priority::Low, Source::Http, 1))
        .unwrap();
    let good = scheduler
        .submit(NewRequest::new("ingest", Priority::Low, Source::Http, 2))
        .unwrap();
    assert!(
        matches!(bad.await.outcome, Outcome::Error(Failure { message, .. }) if message.contains("before the future"))
    );
    assert_eq!(good.await.outcome, Outcome::Ok(2));
    assert_eq!(scheduler.stats().await.counters.panics, 1);
}

#[tokio::test(start_paused = true)]
async fn answers_handed_to_a_function_come_once_each_and_refusals_at_once() {
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        SchedulerConfig {
            capacity: PerPriority {
                high: 2,
                medium: 2,
                low: 2,
            },
            max_in_flight: 1,
            reserved_for_high: 0,
            ..SchedulerConfig::default()
        },
        |job: spindle_scheduler::Job<u64>| async move {
            tokio::time::sleep(Duration::from_millis(job.request.payload)).await;
            Ok::<_, Failure>(job.request.payload)
        },
        shutdown.clone(),
    );
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let submit = |payload: u64| {
        let answers = answers.clone();
        scheduler.submit_then(
            NewRequest::new("ingest", Priority::Medium, Source::Netlink, payload),
            move |answer| {
                answers
                    .send((answer.id, answer.outcome))
                    .expect("the test listens");
            },
        )
    };
    // The queue holds two: the third and fourth are refused before their
    // calls return, on this thread.
    let ids: Vec<_> = (0..4).map(|k| submit(10 + k)).collect();
    let mut refused = Vec::new();
    while let Ok((id, outcome)) = answered.try_recv() {
        refused.push((id, outcome));
    }
    assert_eq!(
        refused,
        vec![
            (ids[2], Outcome::Rejected(RejectReason::QueueFull)),
            (ids[3], Outcome::Rejected(RejectReason::QueueFull)),
        ]
    );
    // The two admitted are answered by the scheduler's task, once each.
    let mut ok = vec![
        answered.recv().await.expect("an answer"),
        answered.recv().await.expect("an answer"),
    ];
    ok.sort_by_key(|(id, _)| id.0);
    assert_eq!(
        ok,
        vec![(ids[0], Outcome::Ok(10)), (ids[1], Outcome::Ok(11))]
    );
    shutdown.cancel();
    scheduler.stopped().await;
    // Stopped: refused at once as shutting down.
    let late = submit(1);
    assert_eq!(
        answered.try_recv().expect("answered at once"),
        (late, Outcome::Rejected(RejectReason::ShuttingDown))
    );
    // No function is left to answer again.
    drop(answers);
    assert!(answered.recv().await.is_none(), "no second answers");
    let counters = scheduler.stats().await.counters;
    assert_eq!(counters.submitted, counters.answered());
}
