//! Dynamic batching for one embedding service.
//!
//! Callers submit one [`EmbedInput`] (its text, its token count and whatever
//! the caller prepared for the backend, such as its tokenization) with a
//! deadline and await its vector. Which queued items form a batch is
//! planned in [`crate::batch_plan`]: the oldest item with the items closest
//! to it in length, padding kept at `min_padding_ratio` or better, sized by
//! the backend's measured batch costs when it has them. A batch goes when
//! it is full, or when its oldest item has waited `max_wait` — or sooner,
//! when waiting longer would leave that item too little time before its
//! deadline. Cancelled and expired items are dropped before a batch forms.
//! At most `max_in_flight` batches run at once (one ONNX session computes
//! one batch at a time).
//!
//! Retries happen here, where the batch is: when a batch fails with a
//! transient failure, each of its items whose deadline leaves room goes back
//! into the queue after its backoff ([`RetryPolicy`]) and is batched again
//! with whatever is queued then. The service's [`CircuitBreaker`] lives here
//! too and counts backend calls (batches), each once: a failed batch is one
//! failure however many items it held, and its retried items are counted
//! again only when their new batch is actually sent.
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

use crate::batch_plan::{BatchCost, BatchPlan, PlanLimits, plan_batch};
use crate::breaker::{BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker};
use crate::catch::catch_panic;
use crate::error::Error;
use crate::failure::{Failure, FailureClass, Gate};
use crate::retry::RetryPolicy;
use crate::stats::Histogram;

/// One text to embed. `prepared` carries work the caller did ahead for the
/// backend (the kernel puts the engine's tokenization there, so the text is
/// tokenized once); the batcher only clones it along.
#[derive(Debug, Clone)]
pub struct EmbedInput<P = ()> {
    pub text: Arc<str>,
    /// Tokens the backend computes for it, for batching by length.
    pub tokens: usize,
    pub prepared: Option<P>,
}

impl EmbedInput<()> {
    /// A text with nothing prepared.
    pub fn text(text: impl Into<Arc<str>>, tokens: usize) -> EmbedInput<()> {
        EmbedInput {
            text: text.into(),
            tokens,
            prepared: None,
        }
    }
}

/// Computes embeddings for a batch of inputs, one vector per input in
/// order. A failure of class [`FailureClass::Unavailable`] means the call
/// did not reach the service (not running right now): it does not count
/// against the breaker.
pub trait EmbedBackend: Send + Sync + 'static {
    /// What callers prepare for this backend (see [`EmbedInput`]).
    type Prepared: Clone + Send + Sync + 'static;

    fn embed(
        &self,
        inputs: Vec<EmbedInput<Self::Prepared>>,
    ) -> impl Future<Output = Result<Vec<Vec<f32>>, Failure>> + Send;

    /// What batches cost this backend, when it measured it; `None` plans by
    /// the token budget alone.
    fn batch_cost(&self) -> Option<Arc<dyn BatchCost>> {
        None
    }
}

/// Batching settings. `Default`: 8,192 padded tokens, 64 items, 2 ms
/// maximum wait, one batch in flight running at most 30 s, 4,096 queued
/// items, a padding ratio of at least 0.95, three attempts per item.
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
    /// Retries of items whose batch failed transiently, inside each item's
    /// deadline.
    pub retry: RetryPolicy,
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
            min_padding_ratio: 0.95,
            retry: RetryPolicy::default(),
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
    /// Items put back in the queue after their batch failed transiently.
    pub retried_items: u64,
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
            retried_items: 0,
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
    ) -> BatcherHandle<B::Prepared> {
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
            in_flight: HashMap::new(),
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

/// Submits inputs to a running batcher; cheap to clone.
#[derive(Debug)]
pub struct BatcherHandle<P = ()> {
    service: Arc<str>,
    commands: mpsc::UnboundedSender<BatchCommand<P>>,
    breaker_state: watch::Receiver<BreakerState>,
    breaker_transitions: Arc<broadcast::Receiver<BreakerTransition>>,
    /// Texts submitted and not answered yet, over every handle: what a
    /// balancer compares. Counted outside the actor (like the scheduler's
    /// permits) so that reading it needs no round trip.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    availability: Option<watch::Receiver<Gate>>,
}

impl<P> Clone for BatcherHandle<P> {
    fn clone(&self) -> Self {
        BatcherHandle {
            service: self.service.clone(),
            commands: self.commands.clone(),
            breaker_state: self.breaker_state.clone(),
            breaker_transitions: self.breaker_transitions.clone(),
            in_flight: self.in_flight.clone(),
            availability: self.availability.clone(),
        }
    }
}

/// A vector and the attempts it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Batched {
    pub vector: Vec<f32>,
    /// Batches this item was sent in (1 unless a batch failed and it was
    /// retried).
    pub attempts: u32,
}

impl BatcherHandle<()> {
    /// Embeds one text (`tokens` long) with nothing prepared; see
    /// [`BatcherHandle::embed_input`].
    pub async fn embed(
        &self,
        text: String,
        tokens: usize,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Vec<f32>, Error> {
        self.embed_input(EmbedInput::text(text, tokens), deadline, cancel)
            .await
            .map(|batched| batched.vector)
    }

    /// [`BatcherHandle::embed`] for a caller with other services to go to;
    /// see [`BatcherHandle::embed_input_or_leave`].
    pub async fn embed_or_leave(
        &self,
        text: String,
        tokens: usize,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Vec<f32>, Error> {
        self.embed_input_or_leave(EmbedInput::text(text, tokens), deadline, cancel)
            .await
            .map(|batched| batched.vector)
    }
}

impl<P: Send + 'static> BatcherHandle<P> {
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Embeds one input as part of some batch. Answers `Timeout` at
    /// `deadline` and `Cancelled` when `cancel` fires, whether the input is
    /// still queued or its batch is running (the batch's other inputs are
    /// unaffected); `BreakerOpen` or `Overloaded` at once. A batch that
    /// fails transiently is retried here, within the deadline.
    pub async fn embed_input(
        &self,
        input: EmbedInput<P>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Batched, Error> {
        self.embed_item(input, deadline, cancel, false).await
    }

    /// [`BatcherHandle::embed_input`] for a caller with other services to
    /// go to: while this service is not serving (starting, restarting, gone
    /// unhealthy) the input is answered `Unavailable` at once instead of
    /// waiting for it, even if it was queued before.
    pub async fn embed_input_or_leave(
        &self,
        input: EmbedInput<P>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Batched, Error> {
        self.embed_item(input, deadline, cancel, true).await
    }

    async fn embed_item(
        &self,
        input: EmbedInput<P>,
        deadline: Instant,
        cancel: &CancellationToken,
        leave_when_closed: bool,
    ) -> Result<Batched, Error> {
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
        let now = Instant::now();
        let item = PendingItem {
            tokens: input.tokens.max(1),
            input,
            deadline,
            enqueued_at: now,
            not_before: now,
            attempts: 0,
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

enum BatchCommand<P> {
    Embed(PendingItem<P>),
    Stats(oneshot::Sender<BatcherStats>),
}

impl<P> std::fmt::Debug for BatchCommand<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BatchCommand::Embed(_) => "Embed",
            BatchCommand::Stats(_) => "Stats",
        })
    }
}

struct PendingItem<P> {
    input: EmbedInput<P>,
    tokens: usize,
    deadline: Instant,
    enqueued_at: Instant,
    /// A retried item waits for its backoff.
    not_before: Instant,
    /// Batches it was sent in so far.
    attempts: u32,
    reply: ItemReply,
    cancel: CancellationToken,
    /// Answer `Unavailable` instead of waiting while the service is not
    /// serving (the caller has other services to go to).
    leave_when_closed: bool,
}

/// Where one item's vector (or error) goes.
type ItemReply = oneshot::Sender<Result<Batched, Error>>;

type BatchResult = (u64, Result<Result<Vec<Vec<f32>>, Failure>, String>);

struct BatchActor<B: EmbedBackend> {
    config: BatcherConfig,
    backend: Arc<B>,
    /// Queued items, oldest first.
    pending: Vec<PendingItem<B::Prepared>>,
    batches: JoinSet<BatchResult>,
    /// The items of each batch in flight, in the batch's order.
    in_flight: HashMap<u64, Vec<PendingItem<B::Prepared>>>,
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
        mut commands: mpsc::UnboundedReceiver<BatchCommand<B::Prepared>>,
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
            let cost = self.backend.batch_cost();
            let now = Instant::now();
            self.dispatch(now, cost.as_deref());
            if !self.accepting && self.pending.is_empty() && self.batches.is_empty() {
                break;
            }
            let next = self.next_wakeup(now, cost.as_deref());
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

    fn admit(&mut self, item: PendingItem<B::Prepared>) {
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

    /// The next time a batch may become due: the oldest ready item's max
    /// wait (or sooner, for its deadline), a retried item's backoff, when
    /// there is room for a batch.
    fn next_wakeup(&self, now: Instant, cost: Option<&dyn BatchCost>) -> Option<Instant> {
        if !self.gate.is_open() {
            // Nothing is sent; wake only to answer the first item whose
            // deadline passes.
            return self.pending.iter().map(|item| item.deadline).min();
        }
        if self.batches.len() >= self.config.max_in_flight.max(1) {
            return None;
        }
        let backoff = self
            .pending
            .iter()
            .filter(|item| item.not_before > now)
            .map(|item| item.not_before)
            .min();
        let oldest = self
            .pending
            .iter()
            .find(|item| item.not_before <= now)
            .map(|oldest| self.latest_start(oldest, cost));
        match (oldest, backoff) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the batch of `oldest` must go at the latest: after its maximum
    /// wait, or early enough that a batch of it alone still ends before its
    /// deadline.
    fn latest_start(
        &self,
        oldest: &PendingItem<B::Prepared>,
        cost: Option<&dyn BatchCost>,
    ) -> Instant {
        let by_wait = oldest.enqueued_at.max(oldest.not_before) + self.config.max_wait;
        let run = cost.map_or(Duration::ZERO, |cost| {
            Duration::from_secs_f64(cost.seconds(1, oldest.tokens).clamp(0.0, 3600.0))
        });
        let by_deadline = oldest
            .deadline
            .checked_sub(run * 2)
            .unwrap_or(oldest.deadline);
        by_wait.min(by_deadline)
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
        let (leaving, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
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

    fn dispatch(&mut self, now: Instant, cost: Option<&dyn BatchCost>) {
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
        let limits = PlanLimits {
            max_batch_tokens: self.config.max_batch_tokens,
            max_batch_size: self.config.max_batch_size.max(1),
            min_padding_ratio: self.config.min_padding_ratio,
        };
        while self.batches.len() < self.config.max_in_flight.max(1) && !self.pending.is_empty() {
            self.purge(now);
            // Items waiting for a retry's backoff are not plannable yet.
            let ready: Vec<usize> = (0..self.pending.len())
                .filter(|&index| self.pending[index].not_before <= now)
                .collect();
            let Some(&oldest) = ready.first() else {
                return;
            };
            let tokens: Vec<usize> = ready
                .iter()
                .map(|&index| self.pending[index].tokens)
                .collect();
            let plan = plan_batch(&tokens, &limits, cost);
            let due = plan.full
                || now >= self.latest_start(&self.pending[oldest], cost)
                || !self.accepting;
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
            let members = plan.members.iter().map(|&member| ready[member]).collect();
            self.launch(
                BatchPlan {
                    members,
                    full: plan.full,
                },
                now,
            );
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
        let mut inputs = Vec::with_capacity(items.len());
        for item in &mut items {
            self.stats
                .queue_wait
                .observe((now - item.enqueued_at).as_secs_f64());
            item.attempts += 1;
            inputs.push(item.input.clone());
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        self.in_flight.insert(batch, items);
        let backend = Arc::clone(&self.backend);
        self.batches.spawn(async move {
            let work = catch_panic(async move { backend.embed(inputs).await });
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
        let items = self.in_flight.remove(&batch).unwrap_or_default();
        let failure = match result {
            Ok(Ok(vectors)) if vectors.len() == items.len() => {
                self.breaker.on_success(now);
                for (item, vector) in items.into_iter().zip(vectors) {
                    let _ = item.reply.send(Ok(Batched {
                        vector,
                        attempts: item.attempts,
                    }));
                }
                return;
            }
            Ok(Ok(vectors)) => Failure::permanent(format!(
                "returned {} vectors for {} texts",
                vectors.len(),
                items.len()
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
        let retryable = failure.class.is_transient();
        let error = Error::Backend {
            service: self.config.service.clone(),
            failure,
        };
        let mut retried = Vec::new();
        for mut item in items {
            let wait = self
                .config
                .retry
                .jittered_backoff(item.attempts.saturating_sub(1), &mut rand::rng());
            let room = now + wait < item.deadline;
            if retryable
                && room
                && item.attempts < self.config.retry.max_attempts.max(1)
                && !item.cancel.is_cancelled()
                && !item.reply.is_closed()
            {
                item.not_before = now + wait;
                retried.push(item);
            } else {
                let _ = item.reply.send(Err(error.clone()));
            }
        }
        if !retried.is_empty() {
            self.stats.retried_items += retried.len() as u64;
            // Back in the queue by age: they are among the oldest.
            self.pending.extend(retried);
            self.pending.sort_by_key(|item| item.enqueued_at);
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
