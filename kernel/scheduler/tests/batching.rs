//! Dynamic batching: maximum wait, token budget, grouping by length,
//! results mapped back to their callers, cancelled and expired items left
//! out, backend failures answered to every item of the batch.

use std::sync::Arc;
use std::time::Duration;

use spindle_scheduler::{
    Batcher, BatcherConfig, BatcherHandle, EmbedBackend, EmbedInput, Error, Failure, RetryPolicy,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A batch as the backend saw it.
#[derive(Debug, Clone)]
struct Seen {
    texts: Vec<String>,
    at: Instant,
}

/// Answers `"item-K"` with `[K]`; waits for a permit from `gate` per
/// batch; fails batches holding a text starting with "fail", panics on
/// "panic".
struct FakeBackend {
    seen: mpsc::UnboundedSender<Seen>,
    gate: Arc<Semaphore>,
}

impl EmbedBackend for FakeBackend {
    type Prepared = ();

    async fn embed(&self, inputs: Vec<EmbedInput>) -> Result<Vec<Vec<f32>>, Failure> {
        let texts: Vec<String> = inputs.iter().map(|input| input.text.to_string()).collect();
        let _ = self.seen.send(Seen {
            texts: texts.clone(),
            at: Instant::now(),
        });
        self.gate.acquire().await.expect("gate open").forget();
        if texts.iter().any(|text| text.starts_with("panic")) {
            panic!("backend exploded");
        }
        if texts.iter().any(|text| text.starts_with("fail")) {
            return Err(Failure::transient("engine busy"));
        }
        Ok(texts
            .iter()
            .map(|text| {
                vec![
                    text.trim_start_matches("item-")
                        .parse::<f32>()
                        .unwrap_or(-1.0),
                ]
            })
            .collect())
    }
}

fn start(
    config: BatcherConfig,
    permits: usize,
) -> (BatcherHandle, mpsc::UnboundedReceiver<Seen>, Arc<Semaphore>) {
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(permits));
    let backend = FakeBackend {
        seen: seen_tx,
        gate: Arc::clone(&gate),
    };
    (
        Batcher::start(config, backend, CancellationToken::new()),
        seen_rx,
        gate,
    )
}

fn config(max_batch_tokens: usize) -> BatcherConfig {
    BatcherConfig {
        service: "embedder".to_owned(),
        max_batch_tokens,
        max_wait: Duration::from_millis(2),
        // These tests check grouping by the token budget, not padding.
        min_padding_ratio: 0.75,
        retry: RetryPolicy::none(),
        ..BatcherConfig::default()
    }
}

fn spawn_embed(
    batcher: &BatcherHandle,
    text: String,
    tokens: usize,
    deadline: Instant,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<Result<Vec<f32>, Error>> {
    let batcher = batcher.clone();
    tokio::spawn(async move { batcher.embed(text, tokens, deadline, &cancel).await })
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test(start_paused = true)]
async fn a_lone_item_waits_max_wait_then_goes() {
    let (batcher, mut seen, _gate) = start(config(1000), 1000);
    let start = Instant::now();
    let vector = batcher
        .embed("item-7".to_owned(), 5, far(), &CancellationToken::new())
        .await;
    assert_eq!(vector, Ok(vec![7.0]));
    let batch = seen.recv().await.unwrap();
    assert_eq!(batch.texts, ["item-7"]);
    assert_eq!(batch.at - start, Duration::from_millis(2));
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_without_waiting() {
    let (batcher, mut seen, _gate) = start(config(40), 1000);
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|k| {
            spawn_embed(
                &batcher,
                format!("item-{k}"),
                10,
                far(),
                CancellationToken::new(),
            )
        })
        .collect();
    for (k, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Ok(vec![k as f32]));
    }
    let batch = seen.recv().await.unwrap();
    assert_eq!(batch.texts.len(), 4, "4 × 10 tokens fill a 40-token budget");
    assert_eq!(batch.at, start, "a full batch does not wait");
}

#[tokio::test(start_paused = true)]
async fn batches_respect_the_budget_group_lengths_and_map_results_back() {
    let (batcher, mut seen, _gate) = start(config(512), 10_000);
    // Interleaved short (8) and long (64) texts.
    let tokens_of = |k: usize| if k.is_multiple_of(2) { 8 } else { 64 };
    let tasks: Vec<_> = (0..64)
        .map(|k| {
            spawn_embed(
                &batcher,
                format!("item-{k}"),
                tokens_of(k),
                far(),
                CancellationToken::new(),
            )
        })
        .collect();
    for (k, task) in tasks.into_iter().enumerate() {
        assert_eq!(
            task.await.unwrap(),
            Ok(vec![k as f32]),
            "caller {k} got its own vector"
        );
    }
    let mut batches = Vec::new();
    while let Ok(batch) = seen.try_recv() {
        batches.push(batch);
    }
    let mut items = 0;
    for batch in &batches {
        let lengths: Vec<usize> = batch
            .texts
            .iter()
            .map(|text| tokens_of(text.trim_start_matches("item-").parse().unwrap()))
            .collect();
        let padded = lengths.iter().max().unwrap() * lengths.len();
        assert!(
            padded <= 512,
            "padded cost {padded} over budget: {lengths:?}"
        );
        assert!(
            lengths.iter().all(|length| *length == lengths[0]),
            "mixed lengths: {lengths:?}"
        );
        items += lengths.len();
    }
    assert_eq!(items, 64);
    // 32 short texts in one batch, 32 long ones in four of eight.
    assert_eq!(
        batches.len(),
        5,
        "{:?}",
        batches.iter().map(|b| b.texts.len()).collect::<Vec<_>>()
    );

    let stats = batcher.stats().await.unwrap();
    assert_eq!(stats.batches, 5);
    assert_eq!(stats.items, 64);
    assert_eq!(stats.overall_padding_ratio(), 1.0, "no padding at all");
    assert_eq!(stats.batch_size.count(), 5);
    assert_eq!(stats.queue_wait.count(), 64);
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_expired_items_never_reach_the_backend() {
    let (batcher, mut seen, gate) = start(config(1000), 0);
    // The first batch holds the backend.
    let first = spawn_embed(
        &batcher,
        "item-1".to_owned(),
        4,
        far(),
        CancellationToken::new(),
    );
    assert_eq!(seen.recv().await.unwrap().texts, ["item-1"]);

    let expiring = spawn_embed(
        &batcher,
        "item-2".to_owned(),
        4,
        Instant::now() + Duration::from_millis(5),
        CancellationToken::new(),
    );
    let cancel = CancellationToken::new();
    let cancelled = spawn_embed(&batcher, "item-3".to_owned(), 4, far(), cancel.clone());
    let kept = spawn_embed(
        &batcher,
        "item-4".to_owned(),
        4,
        far(),
        CancellationToken::new(),
    );
    tokio::task::yield_now().await;
    cancel.cancel();
    assert_eq!(cancelled.await.unwrap(), Err(Error::Cancelled));
    assert_eq!(expiring.await.unwrap(), Err(Error::Timeout));

    gate.add_permits(10);
    assert_eq!(first.await.unwrap(), Ok(vec![1.0]));
    assert_eq!(kept.await.unwrap(), Ok(vec![4.0]));
    assert_eq!(seen.recv().await.unwrap().texts, ["item-4"]);
    let stats = batcher.stats().await.unwrap();
    assert_eq!(
        (
            stats.expired_in_queue + stats.cancelled_in_queue,
            stats.items
        ),
        (2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn backend_failures_and_panics_answer_every_item_of_the_batch() {
    let (batcher, _seen, _gate) = start(config(1000), 10_000);
    let tasks: Vec<_> = ["item-1", "fail", "item-2"]
        .into_iter()
        .map(|text| {
            spawn_embed(
                &batcher,
                text.to_owned(),
                3,
                far(),
                CancellationToken::new(),
            )
        })
        .collect();
    for task in tasks {
        let error = task.await.unwrap().unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().contains("engine busy"), "{error}");
    }
    let panicked = batcher
        .embed("panic".to_owned(), 3, far(), &CancellationToken::new())
        .await;
    let error = panicked.unwrap_err();
    assert!(!error.is_transient());
    assert!(error.to_string().contains("backend exploded"), "{error}");
    // The batcher lives on.
    let ok = batcher
        .embed("item-9".to_owned(), 3, far(), &CancellationToken::new())
        .await;
    assert_eq!(ok, Ok(vec![9.0]));
    assert_eq!(batcher.stats().await.unwrap().failed_batches, 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_queued_items_and_then_refuses() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let batcher = Batcher::start(
        BatcherConfig {
            max_wait: Duration::from_secs(1),
            ..config(1000)
        },
        FakeBackend {
            seen: seen_tx,
            gate: Arc::new(Semaphore::new(100)),
        },
        shutdown.clone(),
    );
    let start = Instant::now();
    let queued = spawn_embed(
        &batcher,
        "item-5".to_owned(),
        4,
        far(),
        CancellationToken::new(),
    );
    tokio::task::yield_now().await;
    shutdown.cancel();
    // Sent at once, not after the 1 s maximum wait.
    assert_eq!(queued.await.unwrap(), Ok(vec![5.0]));
    assert_eq!(seen.recv().await.unwrap().at, start);
    let refused = batcher
        .embed("item-6".to_owned(), 4, far(), &CancellationToken::new())
        .await;
    assert_eq!(refused, Err(Error::ShuttingDown));
}
