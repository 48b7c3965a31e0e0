//! Helpers shared by the engine's integration tests: the repository root, the
//! cache (resolved exactly as the `spindle` binary resolves it) and the
//! pinned Python of `.cache/venv` for the reference vectors.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::Command;

use spindle_embed::{Cache, Engine, EngineConfig, Provider};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub const SETUP: &str = "python3 scripts/fetch_models.py --all --venv";

/// The real cache; fails with the set-up command when it was not filled.
pub fn cache() -> Cache {
    let cache = Cache::resolve().expect("cache directory");
    assert!(
        cache.root.join("models").is_dir(),
        "no models in {}: run `{SETUP}` from the repository root first",
        cache.root.display()
    );
    cache
}

/// An engine on the CPU with two threads and no spinning (tests run in
/// parallel on two cores).
pub fn engine(model: &str) -> Engine {
    let config = EngineConfig {
        model: model.to_string(),
        providers: vec![Provider::Cpu],
        intra_threads: Some(1),
        allow_spinning: false,
        cache: Some(cache().root),
        ..EngineConfig::default()
    };
    Engine::start(config).unwrap_or_else(|error| panic!("{error}"))
}

/// Runs `scripts/reference_vectors.py` for `model` and returns its JSON.
pub fn reference(model: &str) -> serde_json::Value {
    let root = repo_root();
    let python = std::env::var_os("SPINDLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run `{SETUP}` from the repository root first",
        python.display()
    );
    let out = root
        .join("target/embed-reference")
        .join(format!("{model}.json"));
    let status = Command::new(&python)
        .current_dir(&root)
        .args(["scripts/reference_vectors.py", "--model", model, "--out"])
        .arg(&out)
        .status()
        .expect("run scripts/reference_vectors.py");
    assert!(
        status.success(),
        "scripts/reference_vectors.py failed for {model}"
    );
    serde_json::from_slice(&std::fs::read(&out).expect("reference output")).expect("reference JSON")
}

pub fn sentences() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sentences.json");
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("sentences.json")).unwrap();
    data["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_string())
        .collect()
}
