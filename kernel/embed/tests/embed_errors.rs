//! Each way loading can fail gives one clear error naming what is missing
//! and the command that fixes it; snapshot-tested with insta. Caches are
//! built in temporary directories from the real cache's files (symlinks), so
//! the real cache is never touched. Paths are redacted to `[CACHE]`.

mod common;

use std::path::Path;

use spindle_embed::{EmbedError, Engine, EngineConfig, Provider, Registry};

/// Starts an engine on `cache` and renders the error, paths redacted.
fn start_error(config: EngineConfig, cache: &Path) -> String {
    let config = EngineConfig {
        cache: Some(cache.to_path_buf()),
        intra_threads: Some(1),
        allow_spinning: false,
        ..config
    };
    match Engine::start(config) {
        Ok(engine) => panic!("expected an error, got an engine on {}", engine.provider()),
        Err(error) => redact(&error.to_string(), cache),
    }
}

fn redact(text: &str, cache: &Path) -> String {
    text.replace(&cache.display().to_string(), "[CACHE]")
}

/// A temporary cache holding links to the real cache's runtime and to the
/// given files of `model`.
fn temp_cache(model: &str, model_files: &[&str], with_runtime: bool) -> tempfile::TempDir {
    let real = common::cache();
    let temp = tempfile::tempdir().unwrap();
    let model_dir = temp.path().join("models").join(model);
    std::fs::create_dir_all(&model_dir).unwrap();
    for file in model_files {
        std::os::unix::fs::symlink(real.model_dir(model).join(file), model_dir.join(file)).unwrap();
    }
    if with_runtime {
        let runtime_dir = temp.path().join("onnxruntime/1.31.1");
        std::fs::create_dir_all(&runtime_dir).unwrap();
        std::os::unix::fs::symlink(
            real.root.join("onnxruntime/1.31.1/cpu"),
            runtime_dir.join("cpu"),
        )
        .unwrap();
    }
    temp
}

#[test]
fn unknown_model() {
    let temp = tempfile::tempdir().unwrap();
    insta::assert_snapshot!(start_error(EngineConfig::new("all-MiniLM-L12-v2"), temp.path()), @r"
    unknown model `all-MiniLM-L12-v2`
      hint: known models are all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2, all-MiniLM-L6-v2-fp32, all-MiniLM-L6-v2-fused, all-MiniLM-L6-v2-int8 (see `spindle models list`)
    ");
}

#[test]
fn unknown_provider() {
    let error = Provider::parse_list("cuda,tpu").unwrap_err();
    insta::assert_snapshot!(error.to_string(), @r"
    unknown execution provider `tpu`
      hint: known providers are cuda, cpu
    ");
}

#[test]
fn model_not_fetched() {
    let temp = tempfile::tempdir().unwrap();
    insta::assert_snapshot!(start_error(EngineConfig::new("paraphrase-MiniLM-L3-v2"), temp.path()), @r"
    model `paraphrase-MiniLM-L3-v2` is not fetched: [CACHE]/models/paraphrase-MiniLM-L3-v2/model.onnx is missing
      hint: fetch it with `python3 scripts/fetch_models.py --model paraphrase-MiniLM-L3-v2`
    ");
}

#[test]
fn library_missing() {
    let temp = temp_cache(
        "paraphrase-MiniLM-L3-v2",
        &["model.onnx", "tokenizer.json"],
        false,
    );
    insta::assert_snapshot!(start_error(EngineConfig::new("paraphrase-MiniLM-L3-v2"), temp.path()), @r"
    ONNX Runtime library not found at [CACHE]/onnxruntime/1.31.1/cpu/libonnxruntime.so.1.31.1
      hint: fetch it with `python3 scripts/fetch_models.py --runtime`
    ");
}

#[test]
fn explicit_library_path_missing() {
    let temp = temp_cache(
        "paraphrase-MiniLM-L3-v2",
        &["model.onnx", "tokenizer.json"],
        false,
    );
    let config = EngineConfig {
        library: Some(temp.path().join("lib/libonnxruntime.so")),
        ..EngineConfig::new("paraphrase-MiniLM-L3-v2")
    };
    insta::assert_snapshot!(start_error(config, temp.path()), @r"
    ONNX Runtime library not found at [CACHE]/lib/libonnxruntime.so
      hint: fetch it with `python3 scripts/fetch_models.py --runtime`
    ");
}

#[test]
fn wrong_checksum() {
    let temp = temp_cache("paraphrase-MiniLM-L3-v2", &["tokenizer.json"], true);
    std::fs::write(
        temp.path()
            .join("models/paraphrase-MiniLM-L3-v2/model.onnx"),
        b"not an onnx model\n",
    )
    .unwrap();
    insta::assert_snapshot!(start_error(EngineConfig::new("paraphrase-MiniLM-L3-v2"), temp.path()), @r"
    model `paraphrase-MiniLM-L3-v2`: [CACHE]/models/paraphrase-MiniLM-L3-v2/model.onnx has sha256 adfcf3efcdcd2970ce5ae1427ba72f364c45a4f0cf836b96abb410280174aba5, but the registry records b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16
      hint: delete it and fetch it again with `python3 scripts/fetch_models.py --model paraphrase-MiniLM-L3-v2`
    ");
}

/// A registry that vouches for a broken file: the checksum passes and ONNX
/// Runtime is the one to reject it.
#[test]
fn corrupt_model() {
    let temp = temp_cache("paraphrase-MiniLM-L3-v2", &["tokenizer.json"], true);
    let broken = b"not an onnx model\n";
    let path = temp
        .path()
        .join("models/paraphrase-MiniLM-L3-v2/model.onnx");
    std::fs::write(&path, broken).unwrap();
    let sha256 = spindle_embed::cache::sha256_file(&path).unwrap();
    let text = spindle_embed::registry::BUILTIN_REGISTRY
        .replace(
            "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
            &sha256,
        )
        .replace("size = 69060623", &format!("size = {}", broken.len()));
    let registry = Registry::parse(&text, "test registry").unwrap();
    let config = EngineConfig {
        registry: Some(registry),
        ..EngineConfig::new("paraphrase-MiniLM-L3-v2")
    };
    insta::assert_snapshot!(start_error(config, temp.path()));
}

#[test]
fn malformed_registry() {
    let error = Registry::parse("default_model = 3\n", "models/broken.toml").unwrap_err();
    insta::assert_snapshot!(error.to_string());
}

/// No GPU here: asking for CUDA first falls back to the CPU, says so once,
/// and the result metadata names the provider really used.
#[test]
fn cuda_falls_back_to_cpu() {
    let config = EngineConfig {
        providers: vec![Provider::Cuda, Provider::Cpu],
        intra_threads: Some(1),
        allow_spinning: false,
        cache: Some(common::cache().root),
        ..EngineConfig::new("paraphrase-MiniLM-L3-v2")
    };
    let engine = Engine::start(config).unwrap();
    assert_eq!(engine.provider(), Provider::Cpu);
    let fallback = engine
        .info()
        .fallback
        .clone()
        .expect("the fallback is reported");
    assert!(fallback.starts_with("cuda: "), "{fallback}");
    let batch = engine.embed(&["on the CPU after all"]).unwrap();
    assert_eq!(batch.provider, Provider::Cpu);
    assert_eq!(engine.health().provider, Provider::Cpu);
    insta::assert_snapshot!(fallback);
}

#[test]
fn cuda_only_is_an_error_without_a_gpu() {
    let config = EngineConfig {
        providers: vec![Provider::Cuda],
        cache: Some(common::cache().root),
        ..EngineConfig::new("paraphrase-MiniLM-L3-v2")
    };
    let error = Engine::start(config).unwrap_err();
    assert!(
        matches!(error, EmbedError::ProviderUnavailable { .. }),
        "{error:?}"
    );
    insta::assert_snapshot!(error.to_string());
}
