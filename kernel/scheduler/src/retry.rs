//! Retries of transient failures with exponential backoff and jitter,
//! only while the deadline leaves room for the wait.
//!
//! Generic over the operation: it knows only [`Error::is_transient`].

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Backoff settings. `Default`: 3 attempts, 10 ms doubling to at most 1 s,
/// ±20 % jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
    /// The fraction (0..=1) by which a wait is randomly shortened or
    /// lengthened, so that callers failing together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0 = the first retry), without
    /// jitter: `initial_backoff * multiplier^retry`, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(retry.min(64) as i32);
        let seconds = self.initial_backoff.as_secs_f64() * factor;
        Duration::from_secs_f64(seconds.min(self.max_backoff.as_secs_f64()))
    }

    /// [`RetryPolicy::backoff`] with jitter applied.
    pub fn jittered_backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let base = self.backoff(retry).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rng.random_range((1.0 - jitter)..=(1.0 + jitter))
        } else {
            1.0
        };
        Duration::from_secs_f64(base * factor)
    }
}

/// Runs `attempt(1)`, `attempt(2)`, ... until one succeeds, fails with a
/// non-transient error, the attempts run out, or the next wait would end
/// past `deadline` — then returns the last error. Returns the value and the
/// number of attempts made. `cancel` interrupts a wait with
/// [`Error::Cancelled`].
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    cancel: &CancellationToken,
    mut attempt: F,
) -> Result<(T, u32), Error>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt_number = 1;
    loop {
        let error = match attempt(attempt_number).await {
            Ok(value) => return Ok((value, attempt_number)),
            Err(error) => error,
        };
        if !error.is_transient() || attempt_number >= policy.max_attempts.max(1) {
            return Err(error);
        }
        let wait = policy.jittered_backoff(attempt_number - 1, &mut rand::rng());
        if Instant::now() + wait >= deadline {
            return Err(error);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(wait) => {}
        }
        attempt_number += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(0), Duration::from_millis(10));
        assert_eq!(policy.backoff(1), Duration::from_millis(20));
        assert_eq!(policy.backoff(2), Duration::from_millis(40));
        assert_eq!(policy.backoff(3), Duration::from_millis(50));
        let mut rng = rand::rng();
        for _ in 0..100 {
            let wait = policy.jittered_backoff(1, &mut rng);
            assert!(
                wait >= Duration::from_millis(16) && wait <= Duration::from_millis(24),
                "{wait:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_interrupts_the_backoff() {
        let cancel = CancellationToken::new();
        let policy = RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            canceller.cancel();
        });
        let started = Instant::now();
        let result: Result<((), u32), Error> = retry(&policy, deadline, &cancel, |_| async {
            Err(Error::Backend {
                service: "embedder".to_owned(),
                failure: crate::Failure::transient("busy"),
            })
        })
        .await;
        assert_eq!(result, Err(Error::Cancelled));
        assert_eq!(Instant::now() - started, Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let mut attempts = 0;
        let result: Result<((), u32), Error> = retry(
            &RetryPolicy::default(),
            Instant::now() + Duration::from_secs(60),
            &CancellationToken::new(),
            |_| {
                attempts += 1;
                async { Err(Error::InvalidPriority("x".to_owned())) }
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }
}
