//! The embed stage's client: a fallback to another service when the
//! primary fails or its breaker is open. Answers say which service produced
//! them, so a fallback answer is always marked as one.
//!
//! Retries are not made here but in each service's batcher, where the
//! batch is ([`crate::batcher`]): an item is retried with its batch's other
//! items, inside its deadline, and the breaker counts each batch once.
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

use crate::batcher::{BatcherHandle, EmbedInput};
use crate::error::Error;

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
    /// Batches the item was sent in on the service that answered (more
    /// than one when a batch failed and the batcher retried it).
    pub attempts: u32,
}

impl Embedded {
    pub fn is_fallback(&self) -> bool {
        matches!(self.served_by, ServedBy::Fallback { .. })
    }
}

/// A primary embedding service, services sharing its work, and an
/// optional fallback.
#[derive(Debug)]
pub struct EmbedClient<P = ()> {
    primary: BatcherHandle<P>,
    /// Services sharing the work with the primary.
    shared_with: Vec<BatcherHandle<P>>,
    fallback: Option<BatcherHandle<P>>,
}

impl<P> Clone for EmbedClient<P> {
    fn clone(&self) -> Self {
        EmbedClient {
            primary: self.primary.clone(),
            shared_with: self.shared_with.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<P: Clone + Send + 'static> EmbedClient<P> {
    pub fn new(primary: BatcherHandle<P>) -> Self {
        EmbedClient {
            primary,
            shared_with: Vec::new(),
            fallback: None,
        }
    }

    /// Lets `others` share the work with the primary (least in flight,
    /// failing over among them).
    pub fn shared_with(mut self, others: Vec<BatcherHandle<P>>) -> Self {
        self.shared_with = others;
        self
    }

    /// The pool in the order to try it: serving services first, fewest in
    /// flight first (declaration order breaks ties).
    fn pool_order(&self) -> Vec<&BatcherHandle<P>> {
        let mut pool: Vec<(usize, &BatcherHandle<P>)> = std::iter::once(&self.primary)
            .chain(&self.shared_with)
            .enumerate()
            .collect();
        pool.sort_by_key(|(position, service)| {
            (!service.is_serving(), service.in_flight(), *position)
        });
        pool.into_iter().map(|(_, service)| service).collect()
    }

    /// Names the service to use when the primary fails.
    pub fn with_fallback(mut self, fallback: BatcherHandle<P>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Embeds `input`. When the primary fails for any reason but the
    /// deadline or cancellation (an error its batcher did not or could not
    /// retry, an open breaker, an overloaded queue) and a fallback is named,
    /// the fallback is tried; if it fails too the error carries both causes.
    /// The fallback gets the same input, `prepared` included: its backend
    /// decides whether that preparation is of use to it.
    pub async fn embed(
        &self,
        input: EmbedInput<P>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Embedded, Error> {
        let mut primary_error = None;
        let pooled = !self.shared_with.is_empty();
        for service in self.pool_order() {
            let attempt = if pooled {
                service
                    .embed_input_or_leave(input.clone(), deadline, cancel)
                    .await
            } else {
                service.embed_input(input.clone(), deadline, cancel).await
            };
            match attempt {
                Ok(batched) => {
                    return Ok(Embedded {
                        vector: batched.vector,
                        served_by: ServedBy::Primary {
                            service: service.service().to_owned(),
                        },
                        attempts: batched.attempts,
                    });
                }
                Err(error @ (Error::Timeout | Error::Cancelled | Error::ShuttingDown)) => {
                    return Err(error);
                }
                Err(error) => {
                    if pooled {
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
        match fallback.embed_input(input, deadline, cancel).await {
            Ok(batched) => Ok(Embedded {
                vector: batched.vector,
                served_by: ServedBy::Fallback {
                    service: fallback.service().to_owned(),
                    primary_error: primary_error.to_string(),
                },
                attempts: batched.attempts,
            }),
            Err(fallback_error) => Err(Error::FallbackFailed {
                primary: Box::new(primary_error),
                fallback: Box::new(fallback_error),
            }),
        }
    }
}
