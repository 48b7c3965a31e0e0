//! The embed stage's client: retries with backoff inside the deadline, and
//! a fallback to another service when the primary fails or its breaker is
//! open. Answers say which service produced them, so a fallback answer is
//! always marked as one.
//!
//! Several services can share the work (`shared_with`): each text goes to
//! the one serving now (ready, breaker not open) with the fewest texts in
//! flight, and on a failure (not a timeout or a cancellation) to the next,
//! so a stage fails over within the pool before its fallback is tried.
//!
//! It composes [`BatcherHandle`]s; it knows nothing of Lua. A Lua fallback
//! function producing a degraded answer is the kernel's business: it gets
//! the [`Error`] from here and marks its own answer.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batcher::BatcherHandle;
use crate::error::Error;
use crate::retry::{RetryPolicy, retry};

/// Which service produced an embedding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServedBy {
    Primary {
        service: String,
    },
    /// The fallback service answered because the primary failed with
    /// `primary_error`.
    Fallback {
        service: String,
        primary_error: String,
    },
}

/// An embedding and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vector: Vec<f32>,
    pub served_by: ServedBy,
    /// Attempts made on the service that answered.
    pub attempts: u32,
}

impl Embedded {
    pub fn is_fallback(&self) -> bool {
        matches!(self.served_by, ServedBy::Fallback { .. })
    }
}

/// A primary embedding service, an optional fallback and a retry policy.
#[derive(Debug, Clone)]
pub struct EmbedClient {
    primary: BatcherHandle,
    /// Services sharing the work with the primary.
    shared_with: Vec<BatcherHandle>,
    fallback: Option<BatcherHandle>,
    retry: RetryPolicy,
}

impl EmbedClient {
    pub fn new(primary: BatcherHandle, retry: RetryPolicy) -> Self {
        EmbedClient {
            primary,
            shared_with: Vec::new(),
            fallback: None,
            retry,
        }
    }

    /// Lets `others` share the work with the primary (least in flight,
    /// failing over among them).
    pub fn shared_with(mut self, others: Vec<BatcherHandle>) -> Self {
        self.shared_with = others;
        self
    }

    /// The pool in the order to try it: serving services first, fewest in
    /// flight first (declaration order breaks ties).
    fn pool_order(&self) -> Vec<&BatcherHandle> {
        let mut pool: Vec<(usize, &BatcherHandle)> = std::iter::once(&self.primary)
            .chain(&self.shared_with)
            .enumerate()
            .collect();
        pool.sort_by_key(|(position, service)| {
            (!service.is_serving(), service.in_flight(), *position)
        });
        pool.into_iter().map(|(_, service)| service).collect()
    }

    /// Names the service to use when the primary fails.
    pub fn with_fallback(mut self, fallback: BatcherHandle) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Embeds `text` (`tokens` long). Transient failures are retried with
    /// backoff while `deadline` allows. When the primary fails for any
    /// reason but the deadline or cancellation (an error, an open breaker,
    /// an overloaded queue) and a fallback is named, the fallback is tried
    /// the same way; if it fails too the error carries both causes.
    pub async fn embed(
        &self,
        text: &str,
        tokens: usize,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Embedded, Error> {
        let mut primary_error = None;
        for service in self.pool_order() {
            match self
                .embed_with(service, text, tokens, deadline, cancel)
                .await
            {
                Ok((vector, attempts)) => {
                    return Ok(Embedded {
                        vector,
                        served_by: ServedBy::Primary {
                            service: service.service().to_owned(),
                        },
                        attempts,
                    });
                }
                Err(error @ (Error::Timeout | Error::Cancelled | Error::ShuttingDown)) => {
                    return Err(error);
                }
                Err(error) => {
                    if !self.shared_with.is_empty() {
                        tracing::warn!(service = service.service(), %error, "embedding fails over within its pool");
                    }
                    primary_error.get_or_insert(error);
                }
            }
        }
        let primary_error = primary_error.expect("the pool has at least the primary");
        let Some(fallback) = &self.fallback else {
            return Err(primary_error);
        };
        if matches!(
            primary_error,
            Error::Timeout | Error::Cancelled | Error::ShuttingDown
        ) {
            return Err(primary_error);
        }
        tracing::warn!(primary = self.primary.service(), fallback = fallback.service(), error = %primary_error, "embedding falls back");
        match self
            .embed_with(fallback, text, tokens, deadline, cancel)
            .await
        {
            Ok((vector, attempts)) => Ok(Embedded {
                vector,
                served_by: ServedBy::Fallback {
                    service: fallback.service().to_owned(),
                    primary_error: primary_error.to_string(),
                },
                attempts,
            }),
            Err(fallback_error) => Err(Error::FallbackFailed {
                primary: Box::new(primary_error),
                fallback: Box::new(fallback_error),
            }),
        }
    }

    async fn embed_with(
        &self,
        service: &BatcherHandle,
        text: &str,
        tokens: usize,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<(Vec<f32>, u32), Error> {
        let pooled = !self.shared_with.is_empty();
        retry(&self.retry, deadline, cancel, |_attempt| async move {
            if pooled {
                service
                    .embed_or_leave(text.to_owned(), tokens, deadline, cancel)
                    .await
            } else {
                service
                    .embed(text.to_owned(), tokens, deadline, cancel)
                    .await
            }
        })
        .await
    }
}
