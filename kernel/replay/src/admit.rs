//! Submitting a request so that it is in the kernel before the next step:
//! `Kernel::submit` admits a request (or rejects it) when its future is
//! first polled, before it waits for the answer; [`admit`] polls it once
//! by hand, so that a cancel or a fault that follows the request in a
//! timeline finds it queued or running. Shared by journal replays and
//! scenarios.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use spindle_kernel::{Kernel, RequestAnswer, Submission};

/// A submitted request's answer, still to come.
pub type Pending = Pin<Box<dyn Future<Output = RequestAnswer> + Send>>;

/// What the first poll of a submission gave.
pub enum Admission {
    /// Answered at once (rejected: busy, shutting down, unknown pipeline).
    Answered(RequestAnswer),
    /// Admitted; the answer comes later.
    Admitted(Pending),
}

/// Submits `submission` and returns once the kernel has admitted or
/// rejected it.
pub async fn admit(kernel: &Kernel, submission: Submission) -> Admission {
    let kernel = kernel.clone();
    let mut pending: Pending = Box::pin(async move { kernel.submit(submission).await });
    let first = std::future::poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(answer) => Admission::Answered(answer),
        Poll::Pending => Admission::Admitted(pending),
    }
}
