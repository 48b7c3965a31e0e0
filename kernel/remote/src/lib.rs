//! spindle-remote: embedding services whose vectors a server elsewhere
//! computes. [`RemoteBackend`] implements the kernel's
//! [`spindle_kernel::RemoteEngines`]: one pooled HTTP client (keep-alive
//! connections reused across batches), a timeout per batch, one immediate
//! retry when a reused connection turns out closed, and failures classified
//! so that the kernel's batcher, breaker and retries treat a server like a
//! local engine: connection refused is "unavailable" (not counted by the
//! breaker), a 5xx or a timeout transient, any other refusal permanent.
//!
//! The vectors contract is the local engine's: one L2-normalised vector
//! per text, all of the dimension checked when the service starts.
//!
//! Modules: `api` (the two wire formats), `client` (HTTP and errors).
//! It depends on the kernel and on no front end; the kernel does not know
//! this crate.

mod api;
mod client;

use std::sync::Arc;

use spindle_kernel::supervisor::BoxFuture;
use spindle_kernel::{RemoteEngine, RemoteEngines, RemoteStatus};
use spindle_scheduler::Failure;
use spindle_scripting::{RemoteApi, RemoteEmbeddingSpec};

pub use client::RemoteError;

use client::HttpClient;

/// Connects remote embedding services; one per kernel (its connection pool
/// is shared by every remote service).
#[derive(Clone, Default)]
pub struct RemoteBackend {
    client: HttpClient,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend").finish_non_exhaustive()
    }
}

impl RemoteBackend {
    pub fn new() -> RemoteBackend {
        RemoteBackend::default()
    }
}

impl RemoteEngines for RemoteBackend {
    fn connect(
        &self,
        service: &str,
        model: &str,
        spec: &RemoteEmbeddingSpec,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteEngine>, String>> {
        let mut engine = Remote {
            client: self.client.clone(),
            service: service.to_owned(),
            model: model.to_owned(),
            spec: spec.clone(),
            dimensions: 0,
        };
        Box::pin(async move {
            let probe = engine
                .call(vec!["spindle checks the vectors' dimension".to_owned()])
                .await
                .map_err(|error| format!("{} does not embed: {error}", engine.endpoint()))?;
            let dimensions = probe.first().map(Vec::len).unwrap_or_default();
            if dimensions == 0 {
                return Err(format!("{} answered an empty vector", engine.endpoint()));
            }
            if let Some(declared) = engine.spec.dimensions
                && declared as usize != dimensions
            {
                return Err(format!(
                    "{} gives vectors of {dimensions} dimensions, and the service declares dimensions = {declared}\n  hint: check the model the server runs, or fix `dimensions`",
                    engine.endpoint()
                ));
            }
            engine.dimensions = dimensions;
            Ok(Arc::new(engine) as Arc<dyn RemoteEngine>)
        })
    }
}

/// One connected remote service.
#[derive(Clone)]
struct Remote {
    client: HttpClient,
    service: String,
    model: String,
    spec: RemoteEmbeddingSpec,
    /// Known after the first embedding (0 before).
    dimensions: usize,
}

impl Remote {
    fn endpoint(&self) -> String {
        format!("remote:{} {}", self.spec.api.name(), self.spec.url)
    }

    async fn call(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, RemoteError> {
        let count = texts.len();
        let (path, body) = match self.spec.api {
            RemoteApi::OpenAi => ("/v1/embeddings", api::openai_request(&self.model, texts)),
            RemoteApi::Tei => ("/embed", api::tei_request(texts)),
        };
        let url = format!("{}{path}", self.spec.url);
        let answer = self.client.post_json(&url, body, self.spec.timeout).await?;
        let mut vectors = match self.spec.api {
            RemoteApi::OpenAi => api::openai_vectors(&answer)?,
            RemoteApi::Tei => api::tei_vectors(&answer)?,
        };
        if vectors.len() != count {
            return Err(RemoteError::Answer(format!(
                "{} vector(s) for {count} text(s)",
                vectors.len()
            )));
        }
        for vector in &mut vectors {
            if self.dimensions != 0 && vector.len() != self.dimensions {
                return Err(RemoteError::Answer(format!(
                    "a vector of {} dimensions; the service started with {}",
                    vector.len(),
                    self.dimensions
                )));
            }
            normalise(vector);
        }
        Ok(vectors)
    }
}

impl RemoteEngine for Remote {
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'static, Result<Vec<Vec<f32>>, Failure>> {
        let remote = self.clone();
        Box::pin(async move {
            remote
                .call(texts)
                .await
                .map_err(|error| error.to_failure(&remote.service))
        })
    }

    fn status(&self) -> RemoteStatus {
        RemoteStatus {
            model: self.model.clone(),
            endpoint: self.endpoint(),
            dimensions: self.dimensions,
        }
    }
}

/// L2 normalisation, as the local engine's pooling ends.
fn normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in vector {
            *x /= norm;
        }
    }
}
