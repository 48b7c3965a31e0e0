//! A future adapter that turns a panic while polling into an `Err`, so a
//! panicking worker answers its own request with an error instead of
//! taking the scheduler down. (The same as `futures::FutureExt::catch_unwind`,
//! without the dependency.)

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Wraps `future`, boxed, so that the wrapper has a name whatever the
/// future's type; see the module docs.
pub(crate) fn catch_panic<O>(future: impl Future<Output = O> + Send + 'static) -> CatchPanic<O> {
    CatchPanic {
        inner: Box::pin(future),
    }
}

pub(crate) struct CatchPanic<O> {
    inner: Pin<Box<dyn Future<Output = O> + Send>>,
}

impl<O> Future for CatchPanic<O> {
    type Output = Result<O, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        // The future is dropped right after a panic and never polled again,
        // so no broken invariant can be observed.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
