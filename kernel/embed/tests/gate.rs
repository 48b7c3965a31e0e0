//! The accuracy gate on a slice of the shipped gate corpus, fast enough for
//! CI: every optimised variant in the registry keeps cosine ≥ 0.995 to its
//! fp32 reference on each sentence (the corpus's and the tests' own) and
//! top-10 retrieval overlap ≥ 0.95; and each variant's batched vectors
//! equal its single ones (cosine ≥ 0.999: an int8 model quantises its
//! activations per batch). `cargo bench -p spindle-embed --bench gate` runs the whole corpus
//! (1,200 sentences, 3,000 passages, 200 queries).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use spindle_embed::gate::{
    GATE_MIN_COSINE, GATE_MIN_TOP10_OVERLAP, GateCorpus, compare, gate_vectors,
};
use spindle_embed::pool::cosine;
use spindle_embed::{Engine, EngineConfig, Provider, Registry};

fn engine(model: &str) -> Engine {
    Engine::start(EngineConfig {
        model: model.to_string(),
        providers: vec![Provider::Cpu],
        intra_threads: Some(1),
        allow_spinning: false,
        cache: Some(common::cache().root),
        ..EngineConfig::default()
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn every_offered_variant_passes_the_gate_on_a_slice_of_the_corpus() {
    let corpus = GateCorpus::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gate"),
        Some((60, 160, 12)),
    )
    .expect("gate corpus");
    let extra = common::sentences();
    let registry = Registry::builtin();
    let mut variants: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for model in &registry.models {
        if let Some(reference) = &model.measured.reference {
            variants
                .entry(reference.clone())
                .or_default()
                .push(model.name.clone());
        }
    }
    assert!(!variants.is_empty(), "the registry offers no variant");
    for (reference, names) in variants {
        let expected = gate_vectors(&engine(&reference), &corpus, &extra).expect("reference");
        for variant in names {
            let engine = engine(&variant);
            let got = gate_vectors(&engine, &corpus, &extra).expect("variant");
            let report = compare(&expected, &got, &corpus, &extra);
            assert!(
                report.min_cosine >= GATE_MIN_COSINE,
                "{variant}: cosine {} < {GATE_MIN_COSINE} on {:?}",
                report.min_cosine,
                report.worst
            );
            assert!(
                report.top10_overlap >= GATE_MIN_TOP10_OVERLAP,
                "{variant}: top-10 overlap {}",
                report.top10_overlap
            );
            // Batched equals single.
            let batched = engine.embed(&extra).expect("batch");
            for (text, in_batch) in extra.iter().zip(&batched.embeddings) {
                let single = engine.embed(&[text.as_str()]).expect("single");
                let similarity = cosine(&in_batch.vector, &single.embeddings[0].vector);
                assert!(
                    similarity >= 0.999,
                    "{variant}: batched vs single {similarity} on {text:?}"
                );
            }
        }
    }
}
