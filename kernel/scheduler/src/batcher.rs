//! Dynamic batching for one embedding service.
//!
//! Callers submit one text with its token count and deadline and await its
//! vector. A batch goes to the backend when it is full — the padded cost
//! (items × longest item, what the engine computes) would exceed
//! `max_batch_tokens`, or it holds `max_batch_size` items — or when its
//! oldest item has waited `max_wait`. A batch starts from the oldest item
//! and is filled with the queued items closest to it in length, which cuts
//! padding. Cancelled and expired items are dropped before a batch forms.
//! At most `max_in_flight` batches run at once (one ONNX session computes
//! one batch at a time). The service's [`CircuitBreaker`] lives here too:
//! it counts backend calls (batches) and fails items fast while open.
//!
//! One task owns the queue, the breaker and the statistics. It knows
//! nothing of ONNX Runtime or tokenizers: the backend is an
//! [`EmbedBackend`] and token counts come from the caller.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::breaker::{BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker};
use crate::catch::catch_panic;
use crate::error::Error;
use crate::failure::{Failure, FailureClass, Gate};
use crate::stats::Histogram;

/// Computes embeddings for a batch of texts, one vector per text in order.
/// A failure of class [`FailureClass::Unavailable`] means the call did not
/// reach the service (not running right now): it does not count against
/// the breaker.
pub trait EmbedBackend: Send + Sync + 'static {
    fn embed(
        &self,
        texts: Vec<String>,
    ) -> impl Future<Output = Result<Vec<Vec<f32>>, Failure>> + Send;
}

/// Batching settings. `Default`: 8,192 padded tokens, 64 items, 2 ms
/// maximum wait, one batch in flight running at most 30 s, 4,096 queued
/// items, a padding ratio of at least 0.75.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// The service's name, in errors, metrics and breaker events.
    pub service: String,
    /// Budget of padded tokens (items × longest) per batch.
    pub max_batch_tokens: usize,
    pub max_batch_size: usize,
    /// How long the oldest queued item may wait for its batch to fill.
    pub max_wait: Duration,
    /// Batches computed at once.
    pub max_in_flight: usize,
    /// How long a batch may run. A batch also ends at the latest deadline
    /// of its items, when nobody waits for it any more. A batch that runs
    /// out of time is dropped (the backend should stop its work when its
    /// future is dropped) and counts as a transient failure, so a hung
    /// backend trips the breaker instead of costing every caller its full
    /// deadline.
    pub batch_timeout: Duration,
    /// Queued items beyond which `embed` answers `Overloaded`.
    pub queue_capacity: usize,
    /// An item joins a batch only if the batch's real/padded token ratio
    /// stays at or above this (0 disables the rule). A text that does not
    /// fit with its neighbours waits for similar ones, at most `max_wait`.
    pub min_padding_ratio: f64,
    pub breaker: BreakerConfig,
    /// Whether the service can take batches now. While it is closed
    /// (starting, restarting) items wait in the queue within their
    /// deadlines and no batch is sent; failed, they are answered
    /// [`Error::Unavailable`]. `None`: always open.
    pub availability: Option<watch::Receiver<Gate>>,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            service: "embedder".to_owned(),
            max_batch_tokens: 8192,
            max_batch_size: 64,
            max_wait: Duration::from_millis(2),
            max_in_flight: 1,
            batch_timeout: Duration::from_secs(30),
            queue_capacity: 4096,
            min_padding_ratio: 0.75,
            breaker: BreakerConfig::default(),
            availability: None,
        }
    }
}

/// Batching measurements, histogram-ready.
#[derive(Debug, Clone, PartialEq)]
pub struct BatcherStats {
    pub batches: u64,
    pub items: u64,
    pub real_tokens: u64,
    pub padded_tokens: u64,
    /// Items per batch.
    pub batch_size: Histogram,
    /// Real tokens / padded tokens per batch (1.0 = no padding).
    pub padding_ratio: Histogram,
    /// Seconds an item waited in the queue before its batch went out.
    pub queue_wait: Histogram,
    pub failed_batches: u64,
    /// Batches that found the service not running (not counted by the
    /// breaker).
    pub unavailable_batches: u64,
    /// Items dropped from the queue: deadline passed, caller cancelled or
    /// gone.
    pub expired_in_queue: u64,
    pub cancelled_in_queue: u64,
    /// Items refused because the breaker was open or the queue full.
    pub failed_fast: u64,
    pub queued: usize,
    pub in_flight_batches: usize,
    pub breaker: BreakerState,
}

impl BatcherStats {
    fn new() -> Self {
        BatcherStats {
            batches: 0,
            items: 0,
            real_tokens: 0,
            padded_tokens: 0,
            batch_size: Histogram::exponential(1.0, 2.0, 9),
            padding_ratio: Histogram::linear(0.1, 0.1, 10),
            queue_wait: Histogram::exponential(0.000_05, 2.0, 16),
            failed_batches: 0,
            unavailable_batches: 0,
            expired_in_queue: 0,
            cancelled_in_queue: 0,
            failed_fast: 0,
            queued: 0,
            in_flight_batches: 0,
            breaker: BreakerState::Closed,
        }
    }

    /// Real tokens over padded tokens, over all batches.
    pub fn overall_padding_ratio(&self) -> f64 {
        if self.padded_tokens == 0 {
            1.0
        } else {
            self.real_tokens as f64 / self.padded_tokens as f64
        }
    }
}

/// Starts batchers; see [`Batcher::start`].
#[derive(Debug)]
pub struct Batcher;

impl Batcher {
    /// Spawns the batcher task. On `shutdown` it stops taking items,
    /// sends what is queued without waiting, and stops once the batches in
    /// flight have been answered.
    pub fn start<B: EmbedBackend>(
        config: BatcherConfig,
        backend: B,
        shutdown: CancellationToken,
    ) -> BatcherHandle {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let breaker = CircuitBreaker::new(config.service.clone(), config.breaker.clone());
        let availability = config.availability.clone();
        let config_availability = config.availability.clone();
        let breaker_state = breaker.watch();
        let breaker_transitions = breaker.transitions();
        let service: Arc<str> = Arc::from(config.service.as_str());
        let actor = BatchActor {
            config,
            backend: Arc::new(backend),
            pending: Vec::new(),
            batches: JoinSet::new(),
            replies: HashMap::new(),
            next_batch: 0,
            breaker,
            stats: BatcherStats::new(),
            accepting: true,
            gate: Gate::Open,
        };
        tokio::spawn(actor.run(commands_rx, availability, shutdown));
        BatcherHandle {
            service,
            commands: commands_tx,
            breaker_state,
            breaker_transitions: Arc::new(breaker_transitions.resubscribe()),
            in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            availability: config_availability,
        }
    }
}

/// Submits texts to a running batcher; cheap to clone.
#[derive(Debug, Clone)]
pub struct BatcherHandle {
    service: Arc<str>,
    commands: mpsc::UnboundedSender<BatchCommand>,
    breaker_state: watch::Receiver<BreakerState>,
    breaker_transitions: Arc<broadcast::Receiver<BreakerTransition>>,
    /// Texts submitted and not answered yet, over every handle: what a
    /// balancer compares. Counted outside the actor (like the scheduler's
    /// permits) so that reading it needs no round trip.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    availability: Option<watch::Receiver<Gate>>,
}

impl BatcherHandle {
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Embeds one text as part of some batch. Answers `Timeout` at
    /// `deadline` and `Cancelled` when `cancel` fires, whether the text is
    /// still queued or its batch is running (the batch's other texts are
    /// unaffected); `BreakerOpen` or `Overloaded` at once.
    pub async fn embed(
        &self,
        text: String,
        tokens: usize,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Vec<f32>, Error> {
        self.embed_item(text, tokens, deadline, cancel, false).await
    }

    /// [`BatcherHandle::embed`] for a caller with other services to go to:
    /// while this service is not serving (starting, restarting, gone
    /// unhealthy) the text is answered `Unavailable` at once instead of
    /// waiting for it, even if it was queued before.
    pub async fn embed_or_leave(
        &self,
        text: String,
        tokens: usize,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Vec<f32>, Error> {
        self.embed_item(text, tokens, deadline, cancel, true).await
    }

    async fn embed_item(
        &self,
        text: String,
        tokens: usize,
        deadline: Instant,
        cancel: &CancellationToken,
        leave_when_closed: bool,
    ) -> Result<Vec<f32>, Error> {
        use std::sync::atomic::Ordering;
        struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.in_flight);
        let (reply, receiver) = oneshot::channel();
        let item = PendingItem {
            text,
            tokens: tokens.max(1),
            deadline,
            enqueued_at: Instant::now(),
            reply,
            cancel: cancel.clone(),
            leave_when_closed,
        };
        if self.commands.send(BatchCommand::Embed(item)).is_err() {
            return Err(Error::ShuttingDown);
        }
        tokio::select! {
            biased;
            answer = receiver => answer.unwrap_or(Err(Error::ShuttingDown)),
            _ = cancel.cancelled() => Err(Error::Cancelled),
            _ = tokio::time::sleep_until(deadline) => Err(Error::Timeout),
        }
    }

    pub async fn stats(&self) -> Option<BatcherStats> {
        let (reply, receiver) = oneshot::channel();
        self.commands.send(BatchCommand::Stats(reply)).ok()?;
        receiver.await.ok()
    }

    /// Texts submitted through any handle of this batcher and not answered
    /// yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the service can take work now (its availability gate is
    /// open, or it has none) and its breaker is not open.
    pub fn is_serving(&self) -> bool {
        let open = self
            .availability
            .as_ref()
            .is_none_or(|gate| gate.borrow().is_open());
        open && *self.breaker_state.borrow() != BreakerState::Open
    }

    /// The breaker's current state, updated on every change.
    pub fn breaker_state(&self) -> watch::Receiver<BreakerState> {
        self.breaker_state.clone()
    }

    /// Breaker transitions from now on.
    pub fn breaker_transitions(&self) -> broadcast::Receiver<BreakerTransition> {
        self.breaker_transitions.resubscribe()
    }
}

enum BatchCommand {
    Embed(PendingItem),
    Stats(oneshot::Sender<BatcherStats>),
}

struct PendingItem {
    text: String,
    tokens: usize,
    deadline: Instant,
    enqueued_at: Instant,
    reply: ItemReply,
    cancel: CancellationToken,
    /// Answer `Unavailable` instead of waiting while the service is not
    /// serving (the caller has other services to go to).
    leave_when_closed: bool,
}

/// Where one item's vector (or error) goes.
type ItemReply = oneshot::Sender<Result<Vec<f32>, Error>>;

type BatchResult = (u64, Result<Result<Vec<Vec<f32>>, Failure>, String>);

struct BatchActor<B> {
    config: BatcherConfig,
    backend: Arc<B>,
    /// Queued items in arrival order.
    pending: Vec<PendingItem>,
    batches: JoinSet<BatchResult>,
    replies: HashMap<u64, Vec<ItemReply>>,
    next_batch: u64,
    breaker: CircuitBreaker,
    stats: BatcherStats,
    accepting: bool,
    /// The service's availability, as last seen.
    gate: Gate,
}

impl<B: EmbedBackend> BatchActor<B> {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<BatchCommand>,
        mut availability: Option<watch::Receiver<Gate>>,
        shutdown: CancellationToken,
    ) {
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep_until(far_future));
        let mut timer_target: Option<Instant> = None;
        let mut handles_alive = true;
        loop {
            if let Some(availability) = &availability {
                self.gate = availability.borrow().clone();
            }
            self.dispatch(Instant::now());
            if !self.accepting && self.pending.is_empty() && self.batches.is_empty() {
                break;
            }
            let next = self.next_wakeup();
            if next != timer_target {
                timer.as_mut().reset(next.unwrap_or(far_future));
                timer_target = next;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if self.accepting => self.accepting = false,
                Some(joined) = self.batches.join_next(), if !self.batches.is_empty() => match joined {
                    Ok((batch, result)) => self.finish(batch, result),
                    // Tasks are never aborted and panics are caught inside.
                    Err(join_error) => tracing::error!(%join_error, "batch task failed"),
                },
                _ = timer.as_mut(), if timer_target.is_some() => timer_target = None,
                changed = async { availability.as_mut().expect("guarded").changed().await },
                    if availability.is_some() => {
                    if changed.is_err() {
                        // The kernel stopped watching: treat as always open.
                        availability = None;
                        self.gate = Gate::Open;
                    }
                }
                command = commands.recv(), if handles_alive => match command {
                    Some(BatchCommand::Embed(item)) => self.admit(item),
                    Some(BatchCommand::Stats(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    None => {
                        handles_alive = false;
                        self.accepting = false;
                    }
                },
            }
        }
    }

    fn admit(&mut self, item: PendingItem) {
        let now = Instant::now();
        let refusal = if !self.accepting {
            Some(Error::ShuttingDown)
        } else if let Gate::Failed { reason } = &self.gate {
            Some(Error::Unavailable {
                service: self.config.service.clone(),
                reason: reason.clone(),
            })
        } else if !self.breaker.would_admit(now) {
            Some(self.breaker.refusal(now))
        } else if self.pending.len() >= self.config.queue_capacity {
            self.purge(now);
            (self.pending.len() >= self.config.queue_capacity).then(|| Error::Overloaded {
                service: self.config.service.clone(),
            })
        } else {
            None
        };
        match refusal {
            Some(error) => {
                self.stats.failed_fast += 1;
                let _ = item.reply.send(Err(error));
            }
            None => self.pending.push(item),
        }
    }

    /// The next time a batch may become due: the oldest item's max wait,
    /// when there is room for a batch.
    fn next_wakeup(&self) -> Option<Instant> {
        if !self.gate.is_open() {
            // Nothing is sent; wake only to answer the first item whose
            // deadline passes.
            return self.pending.iter().map(|item| item.deadline).min();
        }
        if self.batches.len() >= self.config.max_in_flight.max(1) {
            return None;
        }
        self.pending
            .first()
            .map(|oldest| oldest.enqueued_at + self.config.max_wait)
    }

    /// Drops cancelled, abandoned and expired items from the queue,
    /// answering each with why: a dropped reply would read as a shutdown to
    /// a caller whose wait is still being polled.
    fn purge(&mut self, now: Instant) {
        for item in std::mem::take(&mut self.pending) {
            if item.cancel.is_cancelled() || item.reply.is_closed() {
                self.stats.cancelled_in_queue += 1;
                let _ = item.reply.send(Err(Error::Cancelled));
            } else if item.deadline <= now {
                self.stats.expired_in_queue += 1;
                let _ = item.reply.send(Err(Error::Timeout));
            } else {
                self.pending.push(item);
            }
        }
    }

    /// While the service is not serving: purges the queue and answers the
    /// texts that another service can take (`embed_or_leave`) at once.
    fn leave_while_closed(&mut self, now: Instant) {
        self.purge(now);
        let reason = match &self.gate {
            Gate::Closed { reason } | Gate::Failed { reason } => reason.clone(),
            Gate::Open => return,
        };
        let (leaving, staying): (Vec<PendingItem>, Vec<PendingItem>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|item| item.leave_when_closed);
        self.pending = staying;
        for item in leaving {
            self.stats.failed_fast += 1;
            let _ = item.reply.send(Err(Error::Unavailable {
                service: self.config.service.clone(),
                reason: reason.clone(),
            }));
        }
    }

    fn dispatch(&mut self, now: Instant) {
        match &self.gate {
            Gate::Open => {}
            Gate::Closed { .. } => {
                self.leave_while_closed(now);
                return;
            }
            Gate::Failed { reason } => {
                let error = Error::Unavailable {
                    service: self.config.service.clone(),
                    reason: reason.clone(),
                };
                self.stats.failed_fast += self.pending.len() as u64;
                for item in self.pending.drain(..) {
                    let _ = item.reply.send(Err(error.clone()));
                }
                return;
            }
        }
        while self.batches.len() < self.config.max_in_flight.max(1) && !self.pending.is_empty() {
            self.purge(now);
            if self.pending.is_empty() {
                return;
            }
            let plan = plan_batch(
                &self
                    .pending
                    .iter()
                    .map(|item| item.tokens)
                    .collect::<Vec<_>>(),
                self.config.max_batch_tokens,
                self.config.max_batch_size.max(1),
                self.config.min_padding_ratio,
            );
            let oldest_waited = now - self.pending[0].enqueued_at;
            let due = plan.full || oldest_waited >= self.config.max_wait || !self.accepting;
            if !due {
                return;
            }
            if let Err(error) = self.breaker.try_acquire(now) {
                // Everything queued would be refused the same way.
                self.stats.failed_fast += self.pending.len() as u64;
                for item in self.pending.drain(..) {
                    let _ = item.reply.send(Err(error.clone()));
                }
                return;
            }
            self.launch(plan, now);
        }
    }

    fn launch(&mut self, plan: BatchPlan, now: Instant) {
        let mut chosen = plan.members;
        chosen.sort_unstable();
        let mut items = Vec::with_capacity(chosen.len());
        for index in chosen.into_iter().rev() {
            items.push(self.pending.remove(index));
        }
        items.reverse();
        let longest = items.iter().map(|item| item.tokens).max().unwrap_or(0);
        let real: usize = items.iter().map(|item| item.tokens).sum();
        let padded = longest * items.len();
        self.stats.batches += 1;
        self.stats.items += items.len() as u64;
        self.stats.real_tokens += real as u64;
        self.stats.padded_tokens += padded as u64;
        self.stats.batch_size.observe(items.len() as f64);
        self.stats
            .padding_ratio
            .observe(real as f64 / padded.max(1) as f64);
        let latest_deadline = items.iter().map(|item| item.deadline).max().unwrap_or(now);
        let until = latest_deadline.min(now + self.config.batch_timeout);
        let mut texts = Vec::with_capacity(items.len());
        let mut replies = Vec::with_capacity(items.len());
        for item in items {
            self.stats
                .queue_wait
                .observe((now - item.enqueued_at).as_secs_f64());
            texts.push(item.text);
            replies.push(item.reply);
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        self.replies.insert(batch, replies);
        let backend = Arc::clone(&self.backend);
        self.batches.spawn(async move {
            let work = catch_panic(async move { backend.embed(texts).await });
            let result = match tokio::time::timeout_at(until, work).await {
                Ok(result) => result,
                Err(_elapsed) => Ok(Err(Failure::transient(
                    "no answer before the batch's deadline",
                ))),
            };
            (batch, result)
        });
    }

    fn finish(&mut self, batch: u64, result: Result<Result<Vec<Vec<f32>>, Failure>, String>) {
        let now = Instant::now();
        let replies = self.replies.remove(&batch).unwrap_or_default();
        let failure = match result {
            Ok(Ok(vectors)) if vectors.len() == replies.len() => {
                self.breaker.on_success(now);
                for (reply, vector) in replies.into_iter().zip(vectors) {
                    let _ = reply.send(Ok(vector));
                }
                return;
            }
            Ok(Ok(vectors)) => Failure::permanent(format!(
                "returned {} vectors for {} texts",
                vectors.len(),
                replies.len()
            )),
            Ok(Err(failure)) => failure,
            Err(panic) => Failure::permanent(format!("the backend panicked: {panic}")),
        };
        if let FailureClass::Unavailable { .. } = failure.class {
            self.stats.unavailable_batches += 1;
            self.breaker.on_unavailable();
        } else {
            self.stats.failed_batches += 1;
            self.breaker.on_failure(now);
        }
        let error = Error::Backend {
            service: self.config.service.clone(),
            failure,
        };
        for reply in replies {
            let _ = reply.send(Err(error.clone()));
        }
    }

    fn snapshot(&self) -> BatcherStats {
        let mut stats = self.stats.clone();
        stats.queued = self.pending.len();
        stats.in_flight_batches = self.batches.len();
        stats.breaker = self.breaker.state();
        stats
    }
}

/// Which queued items form the next batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Indices into the queue; the oldest (0) is always first.
    pub members: Vec<usize>,
    /// Whether the batch is full: adding any other queued item would break
    /// the token budget or the size limit.
    pub full: bool,
}

/// Plans a batch over queued token counts (oldest first): the oldest item,
/// then the others by closeness in length to it, each taken if the padded
/// cost `members × longest` stays within `max_batch_tokens` and the real
/// over padded tokens stays at or above `min_padding_ratio`. Only the
/// budget and the size limit make a batch full; an item left out for its
/// padding does not (the batch then waits for similar items).
pub fn plan_batch(
    tokens: &[usize],
    max_batch_tokens: usize,
    max_batch_size: usize,
    min_padding_ratio: f64,
) -> BatchPlan {
    let Some(&anchor) = tokens.first() else {
        return BatchPlan {
            members: Vec::new(),
            full: false,
        };
    };
    let mut members = vec![0];
    let mut longest = anchor;
    let mut real = anchor;
    let mut full = anchor >= max_batch_tokens;
    let mut candidates: Vec<usize> = (1..tokens.len()).collect();
    // Closest length first; among equals, the oldest.
    candidates.sort_by_key(|&index| (tokens[index].abs_diff(anchor), index));
    for index in candidates {
        if members.len() >= max_batch_size {
            full = true;
            break;
        }
        let new_longest = longest.max(tokens[index]);
        let new_padded = new_longest * (members.len() + 1);
        if ((real + tokens[index]) as f64) < min_padding_ratio * new_padded as f64 {
            // Too different in length: leave it for a batch of its own
            // kind; it says nothing about whether this batch is full.
        } else if new_padded > max_batch_tokens {
            full = true;
        } else {
            members.push(index);
            longest = new_longest;
            real += tokens[index];
        }
    }
    if members.len() >= max_batch_size || longest * (members.len() + 1) > max_batch_tokens {
        full = true;
    }
    BatchPlan { members, full }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_groups_similar_lengths_within_the_budget() {
        // Budget 40: the oldest (10) takes 9, 11 and 10 (4 × 11 = 44 > 40
        // once four are in, so the fourth must keep the longest at 10).
        let plan = plan_batch(&[10, 50, 9, 30, 11, 10], 40, 64, 0.75);
        let lengths: Vec<usize> = plan
            .members
            .iter()
            .map(|&i| [10, 50, 9, 30, 11, 10][i])
            .collect();
        assert_eq!(lengths, vec![10, 10, 9]);
        assert!(plan.full);
        let padded = lengths.iter().max().unwrap() * lengths.len();
        assert!(padded <= 40);
    }

    #[test]
    fn plan_is_not_full_when_everything_fits() {
        let plan = plan_batch(&[5, 6, 7], 100, 64, 0.75);
        assert_eq!(plan.members, vec![0, 1, 2]);
        assert!(!plan.full);
    }

    #[test]
    fn items_far_in_length_are_left_out_without_making_the_batch_full() {
        let plan = plan_batch(&[8, 64, 8, 64, 8], 512, 64, 0.75);
        assert_eq!(plan.members, vec![0, 2, 4]);
        assert!(!plan.full, "the long ones wait for a batch of their own");
        // With the rule disabled they join: the budget allows it.
        let plan = plan_batch(&[8, 64, 8, 64, 8], 512, 64, 0.0);
        assert_eq!(plan.members.len(), 5);
    }

    #[test]
    fn an_oversized_item_goes_alone() {
        let plan = plan_batch(&[500, 5], 100, 64, 0.75);
        assert_eq!(plan.members, vec![0]);
        assert!(plan.full);
    }

    #[test]
    fn size_limit_makes_a_batch_full() {
        let plan = plan_batch(&[1, 1, 1, 1], 100, 2, 0.75);
        assert_eq!(plan.members.len(), 2);
        assert!(plan.full);
    }
}
