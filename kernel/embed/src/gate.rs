//! The accuracy gate a model variant must pass to be offered: its vectors
//! against its reference model's (the fp32 graph it was built from) on the
//! gate corpus (`kernel/embed/tests/data/gate/`, written by
//! `scripts/make_gate_corpus.py`).
//!
//! - every sentence, passage and query: cosine to the reference ≥
//!   [`GATE_MIN_COSINE`];
//! - retrieval: each query ranks the passages by cosine with each model's
//!   own vectors; the top 10 of the variant share ≥ [`GATE_MIN_TOP10_OVERLAP`]
//!   of the reference's top 10, on average over the queries.
//!
//! Texts are embedded as the kernel embeds them: grouped by length into
//! batches (an int8 model quantises its activations per batch, so a batch
//! is what must stay accurate). The test (`kernel/embed/tests/gate.rs`)
//! runs a slice of the corpus; `cargo bench -p spindle-embed --bench gate` runs all of it.

use std::path::Path;

use crate::engine::Engine;
use crate::error::EmbedError;
use crate::pool::cosine;
pub use crate::registry::{GATE_MIN_COSINE, GATE_MIN_TOP10_OVERLAP};

/// The gate's text.
#[derive(Debug, Clone, Default)]
pub struct GateCorpus {
    pub sentences: Vec<String>,
    pub passages: Vec<String>,
    pub queries: Vec<String>,
}

impl GateCorpus {
    /// Reads `sentences.txt`, `passages.txt` and `queries.txt` from `dir`,
    /// the first `limit` lines of each (`None`: all).
    pub fn load(
        dir: &Path,
        limit: Option<(usize, usize, usize)>,
    ) -> Result<GateCorpus, EmbedError> {
        let read = |name: &str, limit: Option<usize>| -> Result<Vec<String>, EmbedError> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|error| EmbedError::Io {
                path: path.clone(),
                reason: error.to_string(),
            })?;
            Ok(text
                .lines()
                .take(limit.unwrap_or(usize::MAX))
                .map(str::to_string)
                .collect())
        };
        Ok(GateCorpus {
            sentences: read("sentences.txt", limit.map(|l| l.0))?,
            passages: read("passages.txt", limit.map(|l| l.1))?,
            queries: read("queries.txt", limit.map(|l| l.2))?,
        })
    }
}

/// How a variant did against its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    pub texts: usize,
    pub min_cosine: f64,
    /// The text with the lowest cosine.
    pub worst: String,
    pub mean_cosine: f64,
    pub top10_overlap: f64,
    /// The lowest overlap of one query.
    pub worst_query_overlap: f64,
}

impl GateReport {
    pub fn passes(&self) -> bool {
        self.min_cosine >= GATE_MIN_COSINE && self.top10_overlap >= GATE_MIN_TOP10_OVERLAP
    }
}

/// Vectors of `texts` from `engine`, batched by length in batches of
/// `batch`, returned in the order of `texts`.
pub fn embed_by_length(
    engine: &Engine,
    texts: &[String],
    batch: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&index| engine.count_tokens(&texts[index]));
    let mut vectors = vec![Vec::new(); texts.len()];
    for chunk in order.chunks(batch.max(1)) {
        let group: Vec<&str> = chunk.iter().map(|&index| texts[index].as_str()).collect();
        let embedded = engine.embed(&group)?;
        for (&index, embedding) in chunk.iter().zip(embedded.embeddings) {
            vectors[index] = embedding.vector;
        }
    }
    Ok(vectors)
}

/// One model's vectors of the gate's text: the corpus batched by length,
/// the extra sentences one at a time.
#[derive(Debug, Clone)]
pub struct GateVectors {
    corpus: Vec<Vec<f32>>,
    extra: Vec<Vec<f32>>,
}

/// Embeds the gate's text with `engine`.
pub fn gate_vectors(
    engine: &Engine,
    corpus: &GateCorpus,
    extra: &[String],
) -> Result<GateVectors, EmbedError> {
    let texts = corpus_texts(corpus);
    let mut singles = Vec::with_capacity(extra.len());
    for text in extra {
        singles.push(engine.embed(&[text.as_str()])?.embeddings.remove(0).vector);
    }
    Ok(GateVectors {
        corpus: embed_by_length(engine, &texts, 8)?,
        extra: singles,
    })
}

/// Runs the gate: `variant` against `reference` on `corpus` plus `extra`
/// sentences (the tests' own, embedded one at a time).
pub fn evaluate(
    reference: &Engine,
    variant: &Engine,
    corpus: &GateCorpus,
    extra: &[String],
) -> Result<GateReport, EmbedError> {
    let expected = gate_vectors(reference, corpus, extra)?;
    let got = gate_vectors(variant, corpus, extra)?;
    Ok(compare(&expected, &got, corpus, extra))
}

fn corpus_texts(corpus: &GateCorpus) -> Vec<String> {
    corpus
        .sentences
        .iter()
        .chain(&corpus.passages)
        .chain(&corpus.queries)
        .cloned()
        .collect()
}

/// The gate's figures of `got` against `expected` (both from [`gate_vectors`]).
pub fn compare(
    expected: &GateVectors,
    got: &GateVectors,
    corpus: &GateCorpus,
    extra: &[String],
) -> GateReport {
    let texts = corpus_texts(corpus);
    let pairs: Vec<(f64, &str)> = expected
        .corpus
        .iter()
        .zip(&got.corpus)
        .zip(&texts)
        .chain(expected.extra.iter().zip(&got.extra).zip(extra))
        .map(|((a, b), text)| (f64::from(cosine(a, b)), text.as_str()))
        .collect();
    let (min_cosine, worst) = pairs
        .iter()
        .copied()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((1.0, ""));
    let mean_cosine = pairs.iter().map(|pair| pair.0).sum::<f64>() / pairs.len().max(1) as f64;

    let passages = corpus.sentences.len()..corpus.sentences.len() + corpus.passages.len();
    let queries = passages.end..texts.len();
    let top10 = |vectors: &[Vec<f32>], query: usize| -> Vec<usize> {
        let mut scored: Vec<(f32, usize)> = passages
            .clone()
            .map(|passage| (cosine(&vectors[query], &vectors[passage]), passage))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(10).map(|pair| pair.1).collect()
    };
    let mut overlaps = Vec::new();
    for query in queries {
        let a = top10(&expected.corpus, query);
        let b = top10(&got.corpus, query);
        let shared = b.iter().filter(|index| a.contains(index)).count();
        overlaps.push(shared as f64 / a.len().max(1) as f64);
    }
    let top10_overlap = if overlaps.is_empty() {
        1.0
    } else {
        overlaps.iter().sum::<f64>() / overlaps.len() as f64
    };
    GateReport {
        texts: pairs.len(),
        min_cosine,
        worst: worst.to_string(),
        mean_cosine,
        top10_overlap,
        worst_query_overlap: overlaps.iter().copied().fold(1.0, f64::min),
    }
}
