//! The engine against the Python reference (onnxruntime + numpy +
//! tokenizers, `scripts/reference_vectors.py`, run by each test): same model
//! files, independent tokenizing and pooling. Cosine >= 0.9999 per sentence,
//! identical token counts and truncation flags, and batched results equal to
//! single results.

mod common;

use spindle_embed::pool::cosine;

fn check_against_reference(model: &str) {
    let reference = common::reference(model);
    let rows = reference["sentences"].as_array().unwrap();
    let sentences = common::sentences();
    assert_eq!(rows.len(), sentences.len());
    let engine = common::engine(model);

    let batched = engine.embed(&sentences).unwrap();
    assert_eq!(batched.embeddings.len(), sentences.len());
    assert_eq!(
        batched.padded_len,
        batched.embeddings.iter().map(|e| e.tokens).max().unwrap(),
        "padded to the longest"
    );
    for (index, (row, text)) in rows.iter().zip(&sentences).enumerate() {
        assert_eq!(row["text"].as_str().unwrap(), text);
        let expected: Vec<f32> = row["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let single = engine.embed(&[text.as_str()]).unwrap();
        let single = &single.embeddings[0];
        let in_batch = &batched.embeddings[index];
        let label = format!(
            "{model} sentence {index} ({:?}…)",
            text.chars().take(30).collect::<String>()
        );

        assert_eq!(single.vector.len(), 384, "{label}");
        assert_eq!(
            single.tokens as u64,
            row["tokens"].as_u64().unwrap(),
            "{label}: token count"
        );
        assert_eq!(
            single.truncated,
            row["truncated"].as_bool().unwrap(),
            "{label}: truncation flag"
        );
        let to_reference = cosine(&single.vector, &expected);
        assert!(
            to_reference >= 0.9999,
            "{label}: cosine to the Python reference {to_reference}"
        );

        assert_eq!(in_batch.tokens, single.tokens, "{label}");
        assert_eq!(in_batch.truncated, single.truncated, "{label}");
        let batch_to_single = cosine(&in_batch.vector, &single.vector);
        let max_diff = in_batch
            .vector
            .iter()
            .zip(&single.vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            batch_to_single >= 0.99999 && max_diff < 1e-4,
            "{label}: batched differs from single (cos {batch_to_single}, max |Δ| {max_diff})"
        );

        let norm: f32 = single.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{label}: norm {norm}");
    }
    let long = batched.embeddings.last().unwrap();
    assert!(
        long.truncated && long.tokens == engine.info().max_seq_length,
        "the 5,000-character text is cut at max_seq_length"
    );
}

#[test]
fn minilm_l6_int8_matches_python_reference() {
    check_against_reference("all-MiniLM-L6-v2");
}

#[test]
fn minilm_l6_fp32_built_from_safetensors_matches_python_reference() {
    check_against_reference("all-MiniLM-L6-v2-fp32");
}

/// The int8-weight export stays close to the fp32 graph (lowest here: 0.9963,
/// on the punctuation-only sentence; DESIGN measured ≥ 0.9986 on prose).
#[test]
fn int8_weights_stay_close_to_fp32() {
    let sentences = common::sentences();
    let int8 = common::engine("all-MiniLM-L6-v2")
        .embed(&sentences)
        .unwrap();
    let fp32 = common::engine("all-MiniLM-L6-v2-fp32")
        .embed(&sentences)
        .unwrap();
    for (index, (a, b)) in int8.embeddings.iter().zip(&fp32.embeddings).enumerate() {
        let similarity = cosine(&a.vector, &b.vector);
        assert!(
            similarity >= 0.995,
            "sentence {index}: int8 vs fp32 cosine {similarity}"
        );
    }
}

#[test]
fn paraphrase_minilm_l3_matches_python_reference() {
    check_against_reference("paraphrase-MiniLM-L3-v2");
}

#[test]
fn submit_replies_exactly_once_per_batch_in_order() {
    let engine = common::engine("all-MiniLM-L6-v2");
    let (sender, receiver) = std::sync::mpsc::channel();
    for index in 0..4 {
        let sender = sender.clone();
        engine.submit(
            vec![format!("request number {index}")],
            Box::new(move |result| {
                sender
                    .send((index, result.map(|batch| batch.embeddings.len())))
                    .unwrap()
            }),
        );
    }
    drop(sender);
    let answers: Vec<_> = receiver.iter().collect();
    assert_eq!(answers.len(), 4);
    for (expected, (index, result)) in answers.into_iter().enumerate() {
        assert_eq!(index, expected);
        assert_eq!(result.unwrap(), 1);
    }
    let health = engine.health();
    assert!(health.alive);
    assert_eq!((health.batches, health.failures, health.queued), (4, 0, 0));
}

#[test]
fn empty_batch_is_an_empty_answer() {
    let engine = common::engine("paraphrase-MiniLM-L3-v2");
    let batch = engine.embed::<&str>(&[]).unwrap();
    assert!(batch.embeddings.is_empty());
    assert_eq!(batch.padded_tokens, 0);
}

/// A cancelled batch is answered `Cancelled` exactly once, whether it was
/// still queued or already running (ONNX Runtime's `RunOptions::terminate`),
/// and the engine goes on serving.
#[test]
fn cancel_answers_queued_and_running_batches() {
    let engine = common::engine("all-MiniLM-L6-v2");
    let long: Vec<String> = (0..64)
        .map(|index| format!("{index} {}", "several words ".repeat(150)))
        .collect();
    let (sender, receiver) = std::sync::mpsc::channel();
    let running_sender = sender.clone();
    let running = engine.submit(
        long,
        Box::new(move |result| {
            running_sender
                .send(("running", result.map(|batch| batch.embeddings.len())))
                .unwrap()
        }),
    );
    let queued = engine.submit(
        vec!["queued behind a long batch".to_string()],
        Box::new(move |result| {
            sender
                .send(("queued", result.map(|batch| batch.embeddings.len())))
                .unwrap()
        }),
    );
    queued.cancel();
    // The first batch leaves the queue when the engine thread takes it.
    while engine.health().queued > 1 {
        std::thread::yield_now();
    }
    running.cancel();
    let mut answers: Vec<_> = receiver.iter().collect();
    answers.sort_by_key(|(name, _)| *name);
    assert_eq!(answers.len(), 2);
    for (name, result) in answers {
        assert!(
            matches!(result, Err(spindle_embed::EmbedError::Cancelled)),
            "{name}: {result:?}"
        );
    }
    assert!(engine.embed(&["still serving"]).is_ok());
    let health = engine.health();
    assert_eq!((health.failures, health.queued), (0, 0));
}

/// Two sessions side by side take batches from one queue: every batch is
/// answered once, each with the vectors a one-session engine gives, and an
/// input encoded by the engine's tokenizer is accepted by either session.
#[test]
fn two_sessions_share_the_queue_and_the_tokenizer() {
    let model = "paraphrase-MiniLM-L3-v2";
    let one = common::engine(model);
    let two = spindle_embed::Engine::start(spindle_embed::EngineConfig {
        model: model.to_owned(),
        providers: vec![spindle_embed::Provider::Cpu],
        intra_threads: Some(1),
        sessions: 2,
        allow_spinning: false,
        cache: Some(common::cache().root),
        ..spindle_embed::EngineConfig::default()
    })
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(two.info().sessions, 2);
    assert_eq!(two.health().sessions, 2);

    let sentences = common::sentences();
    let (sender, receiver) = std::sync::mpsc::channel();
    for (index, text) in sentences.iter().enumerate() {
        let encoded = two.encode(text).expect("encode");
        let sender = sender.clone();
        two.submit_inputs(
            vec![spindle_embed::Input::Encoded(std::sync::Arc::new(encoded))],
            Box::new(move |result| sender.send((index, result)).expect("the test waits")),
        );
    }
    drop(sender);
    let mut answered = vec![0; sentences.len()];
    for (index, result) in receiver {
        answered[index] += 1;
        let batch = result.unwrap_or_else(|error| panic!("sentence {index}: {error}"));
        assert_eq!(batch.tokenized, 0, "sentence {index} was tokenized again");
        let expected = one
            .embed(&[sentences[index].as_str()])
            .expect("one session");
        let similarity = cosine(&batch.embeddings[0].vector, &expected.embeddings[0].vector);
        assert!(
            similarity >= 0.99999,
            "sentence {index}: cosine {similarity} to the one-session engine"
        );
    }
    assert!(answered.iter().all(|count| *count == 1), "{answered:?}");
    let health = two.health();
    assert_eq!(
        (health.batches, health.failures, health.queued),
        (sentences.len() as u64, 0, 0)
    );
    drop(two);
}
