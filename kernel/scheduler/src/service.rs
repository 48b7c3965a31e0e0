//! The embed stage's client: retries with backoff inside the deadline, and
//! a fallback to another service when the primary fails or its breaker is
//! open. Answers say which service produced them, so a fallback answer is
//! always marked as one.
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
    fallback: Option<BatcherHandle>,
    retry: RetryPolicy,
}

impl EmbedClient {
    pub fn new(primary: BatcherHandle, retry: RetryPolicy) -> Self {
        EmbedClient {
            primary,
            fallback: None,
            retry,
        }
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
        let primary_error = match self
            .embed_with(&self.primary, text, tokens, deadline, cancel)
            .await
        {
            Ok((vector, attempts)) => {
                return Ok(Embedded {
                    vector,
                    served_by: ServedBy::Primary {
                        service: self.primary.service().to_owned(),
                    },
                    attempts,
                });
            }
            Err(error) => error,
        };
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
        retry(&self.retry, deadline, cancel, |_attempt| {
            service.embed(text.to_owned(), tokens, deadline, cancel)
        })
        .await
    }
}
