//! The embed path through the kernel with the real engine: each text is
//! tokenized once (by the request path, off the Lua thread; the engine
//! never tokenizes it again), and vectors computed in batches under load
//! equal the vectors of the same texts sent one at a time.

mod common;

use std::time::Duration;

use common::start_kernel;
use spindle_kernel::{RequestPathConfig, Submission};
use spindle_scheduler::{Outcome, Priority, Source};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 } }
s.pipeline "ingest" { s.stage("embed", s.embed "embedder") }
"#;

/// The same with two sessions side by side (two batches at once).
const TWO_SESSIONS: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1, sessions = 2 } }
s.pipeline "ingest" { s.stage("embed", s.embed "embedder") }
"#;

fn submission(text: String) -> Submission {
    Submission {
        pipeline: "ingest".to_owned(),
        text,
        priority: Priority::Medium,
        deadline: Some(Duration::from_secs(120)),
        correlation_id: None,
        source: Source::Scenario,
    }
}

fn texts() -> Vec<String> {
    let words = [
        "the", "queue", "holds", "requests", "while", "a", "model", "loads", "and", "batches",
        "form", "by", "length", "so", "padding", "stays", "low",
    ];
    (0..48)
        .map(|index| {
            let length = 3 + (index * 7) % 20;
            (0..length)
                .map(|word| words[(index + word * 5) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_are_tokenized_once_and_batched_vectors_equal_single_ones() {
    tokenized_once_and_batched_equal_single(SCRIPT).await;
}

/// Either session takes what the request path tokenized, and every text is
/// answered with its own vector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_answer_each_text_tokenized_once_with_its_own_vector() {
    tokenized_once_and_batched_equal_single(TWO_SESSIONS).await;
}

async fn tokenized_once_and_batched_equal_single(script: &str) {
    let fixture = start_kernel(script, RequestPathConfig::default());
    fixture.ready("ingest").await;
    let kernel = &fixture.kernel;
    let texts = texts();

    // One at a time: every batch holds one text.
    let mut single = Vec::new();
    for text in &texts {
        let answer = kernel.submit(submission(text.clone())).await;
        let Outcome::Ok(answer) = answer.outcome else {
            panic!("{text}: {:?}", answer.outcome);
        };
        single.push(answer.vector.expect("a vector"));
    }
    // All at once: batched by length.
    let before = kernel.metrics().await.batchers[0].1.batches;
    let batched: Vec<Vec<f32>> = futures_join(kernel, &texts).await;
    let metrics = kernel.metrics().await;
    let batches = metrics.batchers[0].1.batches - before;
    assert!(
        batches < texts.len() as u64,
        "{} texts at once went in {batches} batches",
        texts.len()
    );
    for (index, (a, b)) in single.iter().zip(&batched).enumerate() {
        let similarity = cosine(a, b);
        assert!(similarity >= 0.999, "text {index}: cosine {similarity}");
    }

    // Tokenized once: the engine embedded every text and tokenized none.
    let engine = &metrics.engines[0];
    assert_eq!(engine.texts, 2 * texts.len() as u64, "{engine:?}");
    assert_eq!(engine.tokenized_by_engine, 0, "{engine:?}");
}

async fn futures_join(kernel: &spindle_kernel::Kernel, texts: &[String]) -> Vec<Vec<f32>> {
    let tasks: Vec<_> = texts
        .iter()
        .map(|text| {
            let kernel = kernel.clone();
            let text = text.clone();
            tokio::spawn(async move { kernel.submit(submission(text)).await })
        })
        .collect();
    let mut vectors = Vec::new();
    for task in tasks {
        let answer = task.await.expect("task");
        let Outcome::Ok(answer) = answer.outcome else {
            panic!("{:?}", answer.outcome);
        };
        vectors.push(answer.vector.expect("a vector"));
    }
    vectors
}
