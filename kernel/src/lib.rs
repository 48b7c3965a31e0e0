//! spindle-kernel: the integrated kernel, one [`Kernel`] object.
//!
//! [`Kernel::start`] assembles the [`supervisor`] (the service graph), the
//! embedding engines ([`embedding`]), the request path ([`requests`]: the
//! scheduler, batchers and Lua pipelines) and the script host, and returns
//! a cheap handle that every front end uses: HTTP, Jupyter, the debug
//! adapter and the netlink bridge are crates of their own on it. With
//! [`KernelConfig::journal`] it records every request, service event and
//! operation (`spindle-journal`); stages' `s.state` calls reach the run's
//! durable store (`spindle-state`).
//!
//! Invariant: this crate speaks plain Rust types. It depends on no HTTP,
//! ZeroMQ, netlink or JSON-protocol crate (checked by
//! `scripts/check-layering.sh`); front ends turn its values into wire
//! formats.

mod debug;
pub mod embedding;
mod error;
mod events;
pub mod failure;
mod faults;
mod journal;
mod kernel;
pub mod memory;
pub mod metrics;
pub mod requests;
mod services;
mod state;
pub mod supervisor;

pub use debug::LiveRequest;
pub use embedding::{RemoteEngine, RemoteEngines, RemoteStatus};
pub use error::KernelError;
pub use events::{KernelEvent, KernelSubscription};
pub use faults::Fault;
pub use journal::outcome_record;
pub use kernel::{
    FirstSubscriptions, GuardCommand, Kernel, KernelConfig, KernelOutcome, KernelSource,
    MetricsSnapshot, new_run_id,
};
pub use requests::{RequestAnswer, RequestPathConfig, Submission};
pub use services::{
    KernelSnapshot, PipelineStatus, RECENT_LOG_LINES, Readiness, ServiceDetail, ServiceStatus,
};
