//! Ready before served: requests for a pipeline whose gate is closed wait
//! in their queue (other pipelines flow), are released in order when it
//! opens, time out by their own deadline, and are answered at once when it
//! fails. The batcher holds items while its service is unavailable and
//! never counts "not running" against its breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use spindle_scheduler::{
    Batcher, BatcherConfig, BatcherHandle, BreakerConfig, BreakerState, EmbedBackend, EmbedInput,
    Error, Failure, FailureClass, Gate, Job, NewRequest, Outcome, Priority, RequestState,
    RetryPolicy, Scheduler, SchedulerConfig, SchedulerHandle, Source,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A scheduler whose worker answers each request with its payload.
fn start_echo(gates: &[(&str, Gate)]) -> SchedulerHandle<u32, u32> {
    Scheduler::start(
        SchedulerConfig {
            gates: gates
                .iter()
                .map(|(pipeline, gate)| ((*pipeline).to_owned(), gate.clone()))
                .collect::<HashMap<_, _>>(),
            ..SchedulerConfig::default()
        },
        |job: Job<u32>| async move { Ok::<_, Failure>(job.request.payload) },
        CancellationToken::new(),
    )
}

fn closed(reason: &str) -> Gate {
    Gate::Closed {
        reason: reason.to_owned(),
    }
}

fn request(pipeline: &str, payload: u32) -> NewRequest<u32> {
    NewRequest::new(pipeline, Priority::Medium, Source::Http, payload)
}

#[tokio::test(start_paused = true)]
async fn a_closed_pipeline_waits_while_others_flow_then_goes_in_order() {
    let scheduler = start_echo(&[("ingest", closed("embedder is starting"))]);
    let waiting: Vec<_> = (0..5)
        .map(|k| scheduler.submit(request("ingest", k)).expect("admitted"))
        .collect();
    let other = scheduler.submit(request("search", 99)).expect("admitted");
    assert!(matches!(other.await.outcome, Outcome::Ok(99)));

    let live = scheduler.requests().await;
    assert_eq!(live.len(), 5);
    for summary in &live {
        assert_eq!(
            summary.state,
            RequestState::Waiting {
                reason: "embedder is starting".to_owned()
            }
        );
    }
    assert_eq!(scheduler.stats().await.queued.medium, 5);
    assert_eq!(scheduler.stats().await.in_flight, 0);

    scheduler.set_gate("ingest", Gate::Open);
    let mut order = Vec::new();
    for ticket in waiting {
        let answer = ticket.await;
        let Outcome::Ok(payload) = answer.outcome else {
            panic!("expected ok, got {:?}", answer.outcome);
        };
        order.push((answer.started_at.expect("started"), payload));
    }
    order.sort();
    let payloads: Vec<u32> = order.into_iter().map(|(_, payload)| payload).collect();
    assert_eq!(payloads, vec![0, 1, 2, 3, 4]);
    let counters = scheduler.stats().await.counters;
    assert_eq!(counters.ok, 6);
    assert_eq!(counters.error, 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_times_out_by_its_own_deadline() {
    let scheduler = start_echo(&[("ingest", closed("embedder is restarting"))]);
    let started = Instant::now();
    let mut new = request("ingest", 1);
    new.timeout = Some(Duration::from_millis(250));
    let answer = scheduler.submit(new).expect("admitted").await;
    assert_eq!(answer.outcome, Outcome::Timeout);
    assert_eq!(Instant::now() - started, Duration::from_millis(250));
    assert!(scheduler.requests().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_gate_answers_waiting_and_later_requests_at_once() {
    let scheduler = start_echo(&[("ingest", closed("embedder is starting"))]);
    let waiting = scheduler.submit(request("ingest", 1)).expect("admitted");
    scheduler.set_gate(
        "ingest",
        Gate::Failed {
            reason: "service `embedder` gave up: the model file is missing".to_owned(),
        },
    );
    let started = Instant::now();
    let Outcome::Error(failure) = waiting.await.outcome else {
        panic!("expected an error");
    };
    assert_eq!(failure.class, FailureClass::Permanent);
    assert!(failure.message.contains("gave up"), "{failure}");
    let later = scheduler.submit(request("ingest", 2)).expect("admitted");
    assert!(matches!(later.await.outcome, Outcome::Error(_)));
    assert_eq!(Instant::now(), started, "answered without waiting");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_can_be_cancelled_by_correlation_id() {
    let scheduler = start_echo(&[("ingest", closed("embedder is starting"))]);
    let mut new = request("ingest", 1);
    new.correlation_id = Some("job-7".to_owned());
    let ticket = scheduler.submit(new).expect("admitted");
    let id = ticket.id();
    assert_eq!(scheduler.cancel_by_correlation("job-7").await, Some(id));
    assert!(matches!(ticket.await.outcome, Outcome::Cancelled(_)));
    assert_eq!(scheduler.cancel_by_correlation("job-7").await, None);
    // Opening the gate later releases nothing stale.
    scheduler.set_gate("ingest", Gate::Open);
    assert!(scheduler.requests().await.is_empty());
    assert_eq!(scheduler.stats().await.counters.cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_waiting_requests() {
    let shutdown = CancellationToken::new();
    let scheduler: SchedulerHandle<u32, u32> = Scheduler::start(
        SchedulerConfig {
            gates: HashMap::from([("ingest".to_owned(), closed("starting"))]),
            ..SchedulerConfig::default()
        },
        |job: Job<u32>| async move { Ok::<_, Failure>(job.request.payload) },
        shutdown.clone(),
    );
    let ticket = scheduler.submit(request("ingest", 1)).expect("admitted");
    scheduler.requests().await;
    shutdown.cancel();
    assert!(matches!(ticket.await.outcome, Outcome::Cancelled(_)));
    let counters = scheduler.stopped().await;
    assert_eq!(counters.submitted, counters.answered());
}

/// A backend that is "not running" until `up` is set, and counts calls.
#[derive(Clone, Default)]
struct Restarting {
    calls: Arc<AtomicU32>,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl EmbedBackend for Restarting {
    type Prepared = ();

    async fn embed(&self, texts: Vec<EmbedInput>) -> Result<Vec<Vec<f32>>, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.up.load(Ordering::SeqCst) {
            return Err(Failure::unavailable("embedder is not running", None));
        }
        Ok(texts.iter().map(|_| vec![1.0]).collect())
    }
}

fn start_batcher(backend: Restarting, availability: watch::Receiver<Gate>) -> BatcherHandle {
    Batcher::start(
        BatcherConfig {
            max_wait: Duration::from_millis(1),
            breaker: BreakerConfig {
                failure_threshold: 1,
                failure_ratio: None,
                ..BreakerConfig::default()
            },
            availability: Some(availability),
            // Each call counted below is one item's only batch.
            retry: RetryPolicy::none(),
            ..BatcherConfig::default()
        },
        backend,
        CancellationToken::new(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_batcher_holds_items_while_its_service_starts() {
    let backend = Restarting::default();
    backend.up.store(true, Ordering::SeqCst);
    let (availability, receiver) = watch::channel(closed("loading the model"));
    let batcher = start_batcher(backend.clone(), receiver);
    let deadline = Instant::now() + Duration::from_secs(5);
    let cancel = CancellationToken::new();
    let waiting = {
        let batcher = batcher.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { batcher.embed("a".to_owned(), 3, deadline, &cancel).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        backend.calls.load(Ordering::SeqCst),
        0,
        "no batch while closed"
    );
    availability.send_replace(Gate::Open);
    assert_eq!(waiting.await.expect("task"), Ok(vec![1.0]));
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn not_running_never_opens_the_breaker_and_gave_up_answers_at_once() {
    let backend = Restarting::default();
    let (availability, receiver) = watch::channel(Gate::Open);
    let batcher = start_batcher(backend.clone(), receiver);
    let deadline = Instant::now() + Duration::from_secs(5);
    let cancel = CancellationToken::new();
    for _ in 0..3 {
        let error = batcher
            .embed("a".to_owned(), 3, deadline, &cancel)
            .await
            .expect_err("not running");
        assert!(
            matches!(error.class(), FailureClass::Unavailable { .. }),
            "{error}"
        );
    }
    assert_eq!(*batcher.breaker_state().borrow(), BreakerState::Closed);
    let stats = batcher.stats().await.expect("stats");
    assert_eq!(stats.unavailable_batches, 3);
    assert_eq!(stats.failed_batches, 0);

    availability.send_replace(Gate::Failed {
        reason: "gave up after 5 restarts".to_owned(),
    });
    let started = Instant::now();
    let error = batcher
        .embed("a".to_owned(), 3, deadline, &cancel)
        .await
        .expect_err("gave up");
    assert!(matches!(error, Error::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains("gave up after 5 restarts"));
    assert_eq!(Instant::now(), started);
}

#[test]
fn an_open_breaker_and_a_full_queue_are_transient_with_a_retry_time() {
    let open = Error::BreakerOpen {
        service: "embedder".to_owned(),
        retry_after: Duration::from_secs(4),
    };
    assert_eq!(
        open.class(),
        FailureClass::Unavailable {
            retry_after: Some(Duration::from_secs(4))
        }
    );
    assert!(open.to_failure().is_transient());
    let busy = Error::Busy {
        priority: Priority::Low,
    };
    assert!(busy.class().is_transient());
    let script = Failure::permanent("attempt to index a nil value");
    assert!(!script.is_transient());
}
