//! spindle-scheduler: requests, their priority queues, dynamic batching,
//! retries and circuit breakers.
//!
//! The request path the kernel wires from these parts:
//!
//! ```text
//! ingress ─▶ SchedulerHandle::submit ─▶ WeightedQueues ─▶ Worker (Lua stages)
//!                                                          └─ embed stage ─▶ EmbedClient
//!                                                                 (fallback) ─▶ Batcher
//!                                                                 (plan, retry, breaker) ─▶ EmbedBackend
//! ```
//!
//! - [`request`]: ids, priorities, sources, the terminal [`Outcome`].
//! - [`queue`]: bounded per-priority queues with weighted-fair dequeue.
//! - [`scheduler`]: admission, dispatch under a concurrency limit,
//!   deadlines (pausable), cancellation, shutdown; exactly one answer each.
//! - [`handle`]: the kernel's side of it: submit, cancel, pause, stats.
//! - [`batcher`]: dynamic batching with retries where the batch is;
//!   [`batch_plan`]: which items form a batch (length buckets, padding,
//!   sizes from the backend's measured batch costs).
//! - [`breaker`], [`mod@retry`], [`service`]: circuit breaker, backoff with
//!   jitter inside the deadline, fallback to another service.
//! - [`stats`]: histograms the metrics endpoint can export.
//!
//! Invariant: this crate depends on no other workspace crate and knows
//! nothing of Lua, ONNX Runtime, HTTP, JSON or any wire format. Payloads,
//! results, the worker and the embedding backend are the kernel's types.

pub mod batch_plan;
pub mod batcher;
pub mod breaker;
mod catch;
pub mod deadline;
pub mod error;
pub mod failure;
pub mod handle;
mod id_map;
pub mod queue;
pub mod request;
pub mod retry;
pub mod scheduler;
pub mod service;
pub mod stats;

pub use batch_plan::{BatchCost, BatchPlan, PlanLimits, plan_batch};
pub use batcher::{
    Batched, Batcher, BatcherConfig, BatcherHandle, BatcherStats, EmbedBackend, EmbedInput,
};
pub use breaker::{BreakerConfig, BreakerState, BreakerTransition, CircuitBreaker};
pub use deadline::{DeadlineState, DeadlineWatch};
pub use error::Error;
pub use failure::{Failure, FailureClass, FailureSite, Gate};
pub use handle::{
    Counters, Rejected, RequestEvent, RequestEventKind, RequestState, RequestSummary,
    SchedulerHandle, Stats, Ticket,
};
pub use queue::WeightedQueues;
pub use request::{
    Answer, CancelReason, NewRequest, Outcome, OutcomeKind, PerPriority, Priority, RejectReason,
    Request, RequestId, Source,
};
pub use retry::{RetryPolicy, retry};
pub use scheduler::{Job, Scheduler, SchedulerConfig, Worker};
pub use service::{EmbedClient, Embedded, ServedBy};
pub use stats::Histogram;
