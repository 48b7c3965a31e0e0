//! A request's deadline as its worker sees it: a running clock, or
//! suspended while a debugger holds the request paused.
//!
//! The scheduler owns the deadline (the sending side); workers and the
//! stages they call read it. Nothing here knows what a debugger is.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The state of a request's deadline clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineState {
    /// The request must be answered by this instant.
    Running(Instant),
    /// The clock is stopped with this much time left (a debugger pause).
    Paused { remaining: Duration },
}

/// The read side of a request's deadline; cheap to clone.
#[derive(Debug, Clone)]
pub struct DeadlineWatch {
    receiver: watch::Receiver<DeadlineState>,
}

impl DeadlineWatch {
    pub(crate) fn new(receiver: watch::Receiver<DeadlineState>) -> Self {
        DeadlineWatch { receiver }
    }

    /// A watch that never changes, for callers outside the scheduler
    /// (tests, one-off embeddings).
    pub fn fixed(deadline: Instant) -> Self {
        let (_sender, receiver) = watch::channel(DeadlineState::Running(deadline));
        DeadlineWatch { receiver }
    }

    pub fn state(&self) -> DeadlineState {
        *self.receiver.borrow()
    }

    /// The current deadline; while paused, as if the clock resumed now.
    pub fn deadline(&self) -> Instant {
        match self.state() {
            DeadlineState::Running(deadline) => deadline,
            DeadlineState::Paused { remaining } => Instant::now() + remaining,
        }
    }

    pub fn is_paused(&self) -> bool {
        matches!(self.state(), DeadlineState::Paused { .. })
    }

    /// Waits until the deadline changes (pause, resume). Returns at once
    /// with `false` when the scheduler has let go of the request.
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }
}
