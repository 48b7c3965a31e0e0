//! Circuit breaker through the batcher (opens, fails fast, half-opens,
//! closes, reopens), retries in the batcher with backoff inside the
//! deadline (a failed batch counted once), and fallback answers marked as
//! such.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use spindle_scheduler::{
    Batcher, BatcherConfig, BatcherHandle, BreakerConfig, BreakerState, EmbedBackend, EmbedClient,
    EmbedInput, Error, Failure, FailureClass, RetryPolicy, ServedBy,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A backend whose health the test switches; it counts its calls and
/// answers `[value]` for every text.
#[derive(Clone)]
struct Switchable {
    healthy: Arc<AtomicBool>,
    transient: bool,
    /// Calls that fail before health is consulted (for retry tests).
    fail_first: Arc<AtomicU32>,
    /// Calls never answer.
    hang: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
    /// Sizes of the batches that succeeded.
    batch_sizes: Arc<std::sync::Mutex<Vec<usize>>>,
    value: f32,
}

impl Switchable {
    fn new(healthy: bool, value: f32) -> Self {
        Switchable {
            healthy: Arc::new(AtomicBool::new(healthy)),
            transient: false,
            fail_first: Arc::new(AtomicU32::new(0)),
            hang: Arc::new(AtomicBool::new(false)),
            calls: Arc::new(AtomicU32::new(0)),
            batch_sizes: Arc::default(),
            value,
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl EmbedBackend for Switchable {
    type Prepared = ();

    async fn embed(&self, texts: Vec<EmbedInput>) -> Result<Vec<Vec<f32>>, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let failing_first = self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing_first || !self.healthy.load(Ordering::SeqCst) {
            let class = if self.transient {
                FailureClass::Transient
            } else {
                FailureClass::Permanent
            };
            return Err(Failure::new("model failed", class));
        }
        self.batch_sizes.lock().unwrap().push(texts.len());
        Ok(texts.iter().map(|_| vec![self.value]).collect())
    }
}

fn start(service: &str, backend: Switchable) -> BatcherHandle {
    start_with(service, backend, RetryPolicy::none())
}

fn start_with(service: &str, backend: Switchable, retry: RetryPolicy) -> BatcherHandle {
    Batcher::start(
        BatcherConfig {
            service: service.to_owned(),
            max_wait: Duration::from_millis(1),
            retry,
            breaker: BreakerConfig {
                failure_threshold: 3,
                failure_ratio: None,
                open_for: BREAKER_OPEN_FOR,
                half_open_probes: 1,
                ..BreakerConfig::default()
            },
            ..BatcherConfig::default()
        },
        backend,
        CancellationToken::new(),
    )
}

const BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

fn text() -> EmbedInput {
    EmbedInput::text("text", 4)
}

async fn embed_once(batcher: &BatcherHandle) -> Result<Vec<f32>, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    batcher
        .embed("text".to_owned(), 4, deadline, &CancellationToken::new())
        .await
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_fails_fast_half_opens_and_closes() {
    let backend = Switchable::new(false, 1.0);
    let batcher = start("embedder", backend.clone());
    let mut transitions = batcher.breaker_transitions();
    let state = batcher.breaker_state();

    for _ in 0..3 {
        assert!(matches!(
            embed_once(&batcher).await,
            Err(Error::Backend { .. })
        ));
    }
    assert_eq!(*state.borrow(), BreakerState::Open);
    // Open: answered at once, the backend is not called.
    let before = Instant::now();
    let fast = embed_once(&batcher).await;
    assert_eq!(
        fast,
        Err(Error::BreakerOpen {
            service: "embedder".to_owned(),
            retry_after: BREAKER_OPEN_FOR,
        })
    );
    assert_eq!(Instant::now(), before);
    assert_eq!(backend.calls(), 3);

    // After open_for, one probe goes through; it fails: open again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(matches!(
        embed_once(&batcher).await,
        Err(Error::Backend { .. })
    ));
    assert_eq!(backend.calls(), 4);
    assert_eq!(*state.borrow(), BreakerState::Open);
    assert!(matches!(
        embed_once(&batcher).await,
        Err(Error::BreakerOpen { .. })
    ));

    // The service recovers: the next probe closes the breaker.
    backend.healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(embed_once(&batcher).await, Ok(vec![1.0]));
    assert_eq!(*state.borrow(), BreakerState::Closed);
    assert_eq!(embed_once(&batcher).await, Ok(vec![1.0]));

    let seen: Vec<_> = std::iter::from_fn(|| transitions.try_recv().ok())
        .map(|transition| (transition.from, transition.to))
        .collect();
    use BreakerState::{Closed, HalfOpen, Open};
    assert_eq!(
        seen,
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
    assert_eq!(batcher.stats().await.unwrap().breaker, Closed);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff() {
    let mut backend = Switchable::new(true, 2.0);
    backend.transient = true;
    backend.fail_first.store(2, Ordering::SeqCst);
    let client = EmbedClient::new(start_with(
        "embedder",
        backend.clone(),
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        },
    ));
    let start_at = Instant::now();
    let deadline = start_at + Duration::from_secs(5);
    let embedded = client
        .embed(text(), deadline, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(embedded.vector, vec![2.0]);
    assert_eq!(embedded.attempts, 3);
    assert_eq!(
        embedded.served_by,
        ServedBy::Primary {
            service: "embedder".to_owned()
        }
    );
    // Three 1 ms batch waits plus backoffs of 10 ms and 20 ms, ±20 %.
    let elapsed = Instant::now() - start_at;
    assert!(
        elapsed >= Duration::from_millis(27) && elapsed <= Duration::from_millis(39),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_deadline_leaves_no_room() {
    let mut backend = Switchable::new(false, 2.0);
    backend.transient = true;
    let client = EmbedClient::new(start_with(
        "embedder",
        backend.clone(),
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(10),
            jitter: 0.0,
            ..RetryPolicy::default()
        },
    ));
    let deadline = Instant::now() + Duration::from_millis(25);
    let error = client
        .embed(text(), deadline, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        error.is_transient(),
        "the last real error, not a timeout: {error}"
    );
    // Attempt at 1 ms, wait 10 (and the 1 ms batch wait), attempt at
    // 12 ms; a 20 ms wait would end past the deadline: give up early.
    assert_eq!(backend.calls(), 2);
    assert!(Instant::now() < deadline);
}

#[tokio::test(start_paused = true)]
async fn fallback_answers_are_marked() {
    let primary = Switchable::new(false, 1.0);
    let backup = Switchable::new(true, 9.0);
    let client = EmbedClient::new(start("primary", primary.clone()))
        .with_fallback(start("backup", backup.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let cancel = CancellationToken::new();

    // The primary fails: the backup answers, marked as a fallback.
    for _ in 0..3 {
        let embedded = client.embed(text(), deadline, &cancel).await.unwrap();
        assert_eq!(embedded.vector, vec![9.0]);
        assert!(embedded.is_fallback());
        let ServedBy::Fallback {
            service,
            primary_error,
        } = embedded.served_by
        else {
            panic!("not marked as a fallback");
        };
        assert_eq!(service, "backup");
        assert!(primary_error.contains("model failed"), "{primary_error}");
    }
    // The primary's breaker is open now: it is not even called.
    let embedded = client.embed(text(), deadline, &cancel).await.unwrap();
    assert!(embedded.is_fallback());
    assert_eq!(primary.calls(), 3);
    assert!(
        matches!(embedded.served_by, ServedBy::Fallback { primary_error, .. } if primary_error.contains("circuit breaker"))
    );

    // Both fail: the error names both causes for a degraded answer.
    backup.healthy.store(false, Ordering::SeqCst);
    let error = client.embed(text(), deadline, &cancel).await.unwrap_err();
    assert!(matches!(error, Error::FallbackFailed { .. }), "{error}");

    // A primary that works is not marked.
    let healthy = EmbedClient::new(start("healthy", Switchable::new(true, 3.0)))
        .with_fallback(start("backup", backup));
    let embedded = healthy.embed(text(), deadline, &cancel).await.unwrap();
    assert!(!embedded.is_fallback());
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_cancellation_do_not_fall_back() {
    let backup = Switchable::new(true, 9.0);
    let client = EmbedClient::new(start_with(
        "primary",
        Switchable::new(true, 1.0),
        RetryPolicy::default(),
    ))
    .with_fallback(start("backup", backup.clone()));
    // A deadline shorter than the batch wait: Timeout, no fallback.
    let deadline = Instant::now() + Duration::from_micros(500);
    let error = client
        .embed(text(), deadline, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(error, Error::Timeout);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let error = client
        .embed(text(), Instant::now() + Duration::from_secs(1), &cancel)
        .await
        .unwrap_err();
    assert_eq!(error, Error::Cancelled);
    assert_eq!(backup.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hung_backend_trips_the_breaker() {
    let backend = Switchable::new(true, 1.0);
    backend.hang.store(true, Ordering::SeqCst);
    let batcher = start("embedder", backend.clone());
    let cancel = CancellationToken::new();
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_millis(100);
        let error = batcher
            .embed("text".to_owned(), 4, deadline, &cancel)
            .await
            .unwrap_err();
        assert_eq!(error, Error::Timeout);
    }
    // Each hung batch ended at its item's deadline and counted as a
    // failure: the breaker is open and the next caller fails fast.
    tokio::task::yield_now().await;
    assert_eq!(*batcher.breaker_state().borrow(), BreakerState::Open);
    let before = Instant::now();
    let error = embed_once(&batcher).await.unwrap_err();
    assert!(matches!(error, Error::BreakerOpen { .. }), "{error}");
    assert_eq!(Instant::now(), before);
    assert_eq!(backend.calls(), 3);
    assert_eq!(batcher.stats().await.unwrap().failed_batches, 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_retried_whole_and_counted_once() {
    let mut backend = Switchable::new(true, 5.0);
    backend.transient = true;
    backend.fail_first.store(1, Ordering::SeqCst);
    let batcher = start_with(
        "embedder",
        backend.clone(),
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            jitter: 0.0,
            ..RetryPolicy::default()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let cancel = CancellationToken::new();
    // Four items queued together form one batch; it fails once.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let batcher = batcher.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { batcher.embed_input(text(), deadline, &cancel).await })
        })
        .collect();
    for call in calls {
        let batched = call.await.unwrap().unwrap();
        assert_eq!(batched.vector, vec![5.0]);
        assert_eq!(
            batched.attempts, 2,
            "sent in the failed batch and its retry"
        );
    }
    // One failed batch, one retried batch with all four items: two calls,
    // one failure for the breaker (not one per item).
    assert_eq!(backend.calls(), 2);
    assert_eq!(*backend.batch_sizes.lock().unwrap(), vec![4]);
    let stats = batcher.stats().await.unwrap();
    assert_eq!(stats.failed_batches, 1);
    assert_eq!(stats.retried_items, 4);
    assert_eq!(stats.breaker, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_in_the_queue_without_holding_up_other_items() {
    let mut backend = Switchable::new(true, 6.0);
    backend.transient = true;
    backend.fail_first.store(1, Ordering::SeqCst);
    let batcher = start_with(
        "embedder",
        backend.clone(),
        RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            jitter: 0.0,
            ..RetryPolicy::default()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let cancel = CancellationToken::new();
    let first = {
        let batcher = batcher.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { batcher.embed_input(text(), deadline, &cancel).await })
    };
    // The first item's batch fails at 1 ms; it backs off 50 ms. An item
    // that arrives meanwhile goes in its own batch after its 1 ms wait.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let started = Instant::now();
    let second = batcher
        .embed_input(text(), deadline, &cancel)
        .await
        .unwrap();
    assert_eq!(second.attempts, 1);
    assert_eq!(Instant::now() - started, Duration::from_millis(1));
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.attempts, 2);
    assert_eq!(backend.calls(), 3);
}
