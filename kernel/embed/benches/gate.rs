//! `cargo bench -p spindle-embed --bench gate`: the accuracy gate on the
//! whole gate corpus (`kernel/embed/tests/data/gate/`: 1,200 sentences,
//! 3,000 passages, 200 queries, plus the tests' 16 sentences one at a
//! time). Each optimised variant in the registry is compared with its
//! reference model, which is computed in the same run on the same texts:
//! the lowest and mean cosine per text, and the top-10 retrieval overlap of
//! the queries against the passages. The registry's `measured.min_cosine`
//! and `measured.top10_overlap` come from here.
//!
//! Prints a table, writes `target/bench/gate.json`, and exits non-zero when
//! a variant the registry offers fails the gate (cosine ≥ 0.995 on every
//! text, top-10 overlap ≥ 0.95). `tests/gate.rs` runs the same on a slice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use spindle_embed::gate::{
    GATE_MIN_COSINE, GATE_MIN_TOP10_OVERLAP, GateCorpus, compare, gate_vectors,
};
use spindle_embed::{Engine, EngineConfig, Provider, Registry};

fn main() -> ExitCode {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir
        .ancestors()
        .find(|dir| dir.join("models/registry.toml").is_file())
        .expect("repository root")
        .to_path_buf();
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    let corpus = GateCorpus::load(&crate_dir.join("tests/data/gate"), None).expect("gate corpus");
    let extra = extra_sentences(crate_dir);
    println!(
        "gate corpus: {} sentences, {} passages, {} queries, + {} test sentences one at a time",
        corpus.sentences.len(),
        corpus.passages.len(),
        corpus.queries.len(),
        extra.len()
    );
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
    println!(
        "\n{:<28} {:<24} {:>10} {:>10} {:>8} {:>10}  verdict",
        "variant", "reference", "min cos", "mean cos", "top-10", "worst q"
    );
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (reference, names) in &variants {
        eprintln!("gate: {reference} (reference)");
        let started = Instant::now();
        let expected = gate_vectors(&engine(reference), &corpus, &extra).expect("reference");
        let reference_seconds = started.elapsed().as_secs_f64();
        for name in names {
            eprintln!("gate: {name} against {reference}");
            let started = Instant::now();
            let got = gate_vectors(&engine(name), &corpus, &extra).expect("variant");
            let seconds = started.elapsed().as_secs_f64();
            let report = compare(&expected, &got, &corpus, &extra);
            let passes = report.passes();
            println!(
                "{name:<28} {reference:<24} {:>10.5} {:>10.5} {:>8.3} {:>10.2}  {}",
                report.min_cosine,
                report.mean_cosine,
                report.top10_overlap,
                report.worst_query_overlap,
                if passes { "passes" } else { "FAILS" }
            );
            if !passes {
                failed.push(name.clone());
            }
            rows.push(json!({
                "model": name,
                "reference": reference,
                "texts": report.texts,
                "min_cosine": report.min_cosine,
                "worst_text": report.worst,
                "mean_cosine": report.mean_cosine,
                "top10_overlap": report.top10_overlap,
                "worst_query_overlap": report.worst_query_overlap,
                "passes": passes,
                "seconds": seconds,
                "reference_seconds": reference_seconds,
                "registry_min_cosine": registry.model(name).ok().and_then(|spec| spec.measured.min_cosine),
                "registry_top10_overlap": registry.model(name).ok().and_then(|spec| spec.measured.top10_overlap),
            }));
        }
    }
    let json_path = out_dir.join("gate.json");
    let report = json!({
        "gate": {"min_cosine": GATE_MIN_COSINE, "min_top10_overlap": GATE_MIN_TOP10_OVERLAP},
        "corpus": {
            "sentences": corpus.sentences.len(),
            "passages": corpus.passages.len(),
            "queries": corpus.queries.len(),
            "extra": extra.len(),
        },
        "variants": rows,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap())
        .expect("write gate.json");
    println!(
        "\ngate: cosine ≥ {GATE_MIN_COSINE} on every text and top-10 overlap ≥ {GATE_MIN_TOP10_OVERLAP}\nwrote {}",
        json_path.display()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "gate bench: {} fail the gate and must not be offered",
            failed.join(", ")
        );
        ExitCode::FAILURE
    }
}

fn engine(model: &str) -> Engine {
    Engine::start(EngineConfig {
        model: model.to_string(),
        providers: vec![Provider::Cpu],
        intra_threads: Some(2),
        ..EngineConfig::default()
    })
    .unwrap_or_else(|error| panic!("{model}: {error}"))
}

/// The reference tests' sentences (`tests/data/sentences.json`).
fn extra_sentences(crate_dir: &Path) -> Vec<String> {
    let path = crate_dir.join("tests/data/sentences.json");
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("sentences.json")).expect("JSON");
    data["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .filter_map(|text| text.as_str().map(str::to_string))
        .collect()
}
