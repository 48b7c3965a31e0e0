//! Timeouts per priority and per pipeline, cancellation of queued and
//! in-flight work, debugger pause and resume of the deadline clock, and
//! the lifecycle event stream.

use std::collections::HashMap;
use std::time::Duration;

use spindle_scheduler::{
    CancelReason, DeadlineState, Failure, Job, NewRequest, Outcome, OutcomeKind, PerPriority,
    Priority, RequestEventKind, RequestState, Scheduler, SchedulerConfig, SchedulerHandle, Source,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Reports on `dropped` when a worker's future is dropped (cancelled).
struct DropSignal {
    id: u64,
    dropped: mpsc::UnboundedSender<u64>,
}

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.dropped.send(self.id);
    }
}

fn timeouts_config() -> SchedulerConfig {
    SchedulerConfig {
        timeouts: PerPriority {
            high: Duration::from_millis(100),
            medium: Duration::from_millis(200),
            low: Duration::from_millis(300),
        },
        pipeline_timeouts: HashMap::from([(
            "slow".to_owned(),
            PerPriority {
                high: Some(Duration::from_millis(1_000)),
                medium: None,
                low: None,
            },
        )]),
        ..SchedulerConfig::default()
    }
}

/// A worker that never finishes on its own and reports when dropped.
fn start_hanging(
    config: SchedulerConfig,
) -> (SchedulerHandle<(), ()>, mpsc::UnboundedReceiver<u64>) {
    let (dropped_tx, dropped_rx) = mpsc::unbounded_channel();
    let scheduler = Scheduler::start(
        config,
        move |job: Job<()>| {
            let signal = DropSignal {
                id: job.request.id.0,
                dropped: dropped_tx.clone(),
            };
            async move {
                let _signal = signal;
                std::future::pending::<Result<(), Failure>>().await
            }
        },
        CancellationToken::new(),
    );
    (scheduler, dropped_rx)
}

#[tokio::test(start_paused = true)]
async fn timeouts_follow_priority_and_pipeline_overrides() {
    let (scheduler, mut dropped) = start_hanging(timeouts_config());
    let start = Instant::now();
    let mut expected = Vec::new();
    for (pipeline, priority, millis) in [
        ("fast", Priority::High, 100),
        ("fast", Priority::Medium, 200),
        ("fast", Priority::Low, 300),
        ("slow", Priority::High, 1_000),
        ("slow", Priority::Low, 300),
    ] {
        let ticket = scheduler
            .submit(NewRequest::new(pipeline, priority, Source::Http, ()))
            .unwrap();
        expected.push((ticket, Duration::from_millis(millis)));
    }
    // A caller's own budget shortens the configured one, never lengthens it.
    let mut short = NewRequest::new("slow", Priority::High, Source::Netlink, ());
    short.timeout = Some(Duration::from_millis(20));
    expected.push((scheduler.submit(short).unwrap(), Duration::from_millis(20)));
    let mut long = NewRequest::new("fast", Priority::High, Source::Netlink, ());
    long.timeout = Some(Duration::from_secs(60));
    expected.push((scheduler.submit(long).unwrap(), Duration::from_millis(100)));

    let mut ids = Vec::new();
    for (ticket, timeout) in expected {
        let id = ticket.id;
        ids.push(id.0);
        let answer = ticket.await;
        assert_eq!(answer.outcome, Outcome::Timeout);
        assert_eq!(answer.answered_at - start, timeout, "request {id}");
    }
    // The timed-out work is cancelled: every future was dropped.
    let mut dropped_ids = Vec::new();
    for _ in 0..ids.len() {
        dropped_ids.push(dropped.recv().await.unwrap());
    }
    dropped_ids.sort_unstable();
    assert_eq!(dropped_ids, ids);
    let stats = scheduler.stats().await;
    assert_eq!(stats.counters.timeout, 7);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn requests_time_out_in_the_queue_too() {
    let (scheduler, _dropped) = start_hanging(SchedulerConfig {
        max_in_flight: 1,
        ..timeouts_config()
    });
    let running = scheduler
        .submit(NewRequest::new("fast", Priority::Low, Source::Http, ()))
        .unwrap();
    let queued = scheduler
        .submit(NewRequest::new("fast", Priority::High, Source::Http, ()))
        .unwrap();
    let answer = queued.await;
    assert_eq!(answer.outcome, Outcome::Timeout);
    assert_eq!(answer.started_at, None, "it never left the queue");
    assert_eq!(running.await.outcome, Outcome::Timeout);
}

#[tokio::test(start_paused = true)]
async fn cancel_reaches_queued_and_in_flight_work() {
    let (scheduler, mut dropped) = start_hanging(SchedulerConfig {
        max_in_flight: 1,
        ..timeouts_config()
    });
    let running = scheduler
        .submit(NewRequest::new("slow", Priority::High, Source::Http, ()))
        .unwrap();
    let queued = scheduler
        .submit(NewRequest::new("slow", Priority::High, Source::Http, ()))
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(scheduler.stats().await.queued.high, 1);
    let live: Vec<_> = scheduler
        .requests()
        .await
        .into_iter()
        .map(|request| (request.id, request.state))
        .collect();
    assert_eq!(
        live,
        [
            (running.id, RequestState::Running),
            (queued.id, RequestState::Queued)
        ]
    );

    assert!(scheduler.cancel(queued.id).await);
    let answer = queued.await;
    assert_eq!(answer.outcome, Outcome::Cancelled(CancelReason::Caller));
    assert_eq!(answer.started_at, None);

    let running_id = running.id;
    assert!(scheduler.cancel(running_id).await);
    assert_eq!(
        running.await.outcome,
        Outcome::Cancelled(CancelReason::Caller)
    );
    assert_eq!(dropped.recv().await, Some(running_id.0));
    assert!(!scheduler.cancel(running_id).await, "already answered");

    let counters = scheduler.stats().await.counters;
    assert_eq!((counters.cancelled, counters.answered()), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_paused_request_keeps_its_deadline_suspended() {
    let (deadline_tx, mut deadline_rx) = mpsc::unbounded_channel();
    let scheduler: SchedulerHandle<(), Duration> = Scheduler::start(
        timeouts_config(),
        move |mut job: Job<()>| {
            let deadline_tx = deadline_tx.clone();
            async move {
                // Report the deadline as the worker sees it at each change.
                let _ = deadline_tx.send(job.deadline.state());
                while job.deadline.changed().await {
                    let _ = deadline_tx.send(job.deadline.state());
                }
                Ok::<_, Failure>(Duration::ZERO)
            }
        },
        CancellationToken::new(),
    );
    let start = Instant::now();
    let ticket = scheduler
        .submit(NewRequest::new("fast", Priority::High, Source::Jupyter, ()))
        .unwrap();
    let id = ticket.id;
    assert_eq!(
        deadline_rx.recv().await,
        Some(DeadlineState::Running(start + Duration::from_millis(100)))
    );

    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(scheduler.pause(id).await);
    assert!(!scheduler.pause(id).await, "already paused");
    assert_eq!(
        deadline_rx.recv().await,
        Some(DeadlineState::Paused {
            remaining: Duration::from_millis(40)
        })
    );
    assert_eq!(scheduler.stats().await.paused, 1);
    let live = scheduler.requests().await;
    assert_eq!(
        live[0].deadline,
        DeadlineState::Paused {
            remaining: Duration::from_millis(40)
        }
    );

    // A person looks at it for ten seconds: no timeout meanwhile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(scheduler.stats().await.counters.timeout, 0);

    assert!(scheduler.resume(id).await);
    let resumed_at = Instant::now();
    assert_eq!(
        deadline_rx.recv().await,
        Some(DeadlineState::Running(
            resumed_at + Duration::from_millis(40)
        ))
    );
    let answer = ticket.await;
    assert_eq!(answer.outcome, Outcome::Timeout);
    assert_eq!(answer.answered_at, resumed_at + Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn lifecycle_events_tell_each_request_story() {
    let scheduler: SchedulerHandle<u32, u32> = Scheduler::start(
        SchedulerConfig {
            capacity: PerPriority {
                high: 1,
                medium: 1,
                low: 1,
            },
            max_in_flight: 1,
            ..SchedulerConfig::default()
        },
        |job: Job<u32>| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if job.request.payload == 0 {
                Err(Failure::permanent("bad input"))
            } else {
                Ok(job.request.payload)
            }
        },
        CancellationToken::new(),
    );
    let mut events = scheduler.subscribe();
    let first = scheduler
        .submit(NewRequest::new(
            "ingest",
            Priority::Low,
            Source::Scenario,
            1,
        ))
        .unwrap();
    tokio::task::yield_now().await;
    let mut second = NewRequest::new("ingest", Priority::Low, Source::Scenario, 0);
    second.correlation_id = Some("caller-7".to_owned());
    let second = scheduler.submit(second).unwrap();
    let third = scheduler.submit(NewRequest::new(
        "ingest",
        Priority::Low,
        Source::Scenario,
        2,
    ));
    assert!(third.is_err(), "queue of one is full");
    assert_eq!(first.await.outcome, Outcome::Ok(1));
    let answer = second.await;
    assert_eq!(answer.correlation_id, "caller-7");
    assert_eq!(answer.outcome.kind(), OutcomeKind::Error);

    let mut story = Vec::new();
    while let Ok(event) = events.try_recv() {
        let kind = match event.kind {
            RequestEventKind::Admitted { correlation_id, .. } => {
                format!("admitted({correlation_id})")
            }
            RequestEventKind::Rejected(reason) => format!("rejected({reason:?})"),
            RequestEventKind::Started => "started".to_owned(),
            RequestEventKind::Paused => "paused".to_owned(),
            RequestEventKind::Resumed => "resumed".to_owned(),
            RequestEventKind::Answered(kind) => format!("answered({kind})"),
        };
        story.push(format!("{} {kind}", event.id));
    }
    assert_eq!(
        story,
        [
            "1 admitted(1)",
            "1 started",
            "2 admitted(caller-7)",
            "3 rejected(QueueFull)",
            "1 answered(ok)",
            "2 started",
            "2 answered(error)",
        ]
    );
}
