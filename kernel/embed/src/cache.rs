//! Where fetched files live, and checking them before use.
//!
//! The cache directory is `$SPINDLE_CACHE`, else `$XDG_CACHE_HOME/spindle`,
//! else `~/.cache/spindle` — the same resolution as
//! `scripts/fetch_models.py`, which fills it. Layout:
//! `onnxruntime/<version>/<cpu|gpu>/libonnxruntime.so.<version>` and
//! `models/<name>/<file>`.
//!
//! Checksums: the fetch script writes `.spindle-fetched.json` beside the files
//! with each file's sha256, size and modification time once it has hashed
//! it. A file whose size and modification time still match that stamp is
//! trusted without hashing again; any other file is hashed here and must
//! match the registry.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::EmbedError;
use crate::registry::{FileSpec, ModelSpec, Registry, RuntimeSpec};
use crate::runtime::RuntimeFlavour;

/// The stamp file the fetch script writes into each directory it fills.
pub const STAMP_FILE: &str = ".spindle-fetched.json";

/// Resolves the cache directory as the fetch script does.
pub fn cache_dir() -> Result<PathBuf, EmbedError> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty("SPINDLE_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("spindle"));
    }
    non_empty("HOME")
        .map(|home| PathBuf::from(home).join(".cache").join("spindle"))
        .ok_or(EmbedError::NoCacheDir)
}

/// The command that fetches one model (run from the repository root).
pub fn fetch_model_command(model: &str) -> String {
    format!("python3 scripts/fetch_models.py --model {model}")
}

/// The command that fetches the ONNX Runtime library (run from the repository root).
pub fn fetch_runtime_command(flavour: RuntimeFlavour) -> String {
    match flavour {
        RuntimeFlavour::Cpu => "python3 scripts/fetch_models.py --runtime".to_string(),
        RuntimeFlavour::Gpu => "python3 scripts/fetch_models.py --runtime --gpu".to_string(),
    }
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// Whether a model's files are all present (by size; hashing happens at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchStatus {
    Fetched,
    Missing(Vec<PathBuf>),
}

/// The verified paths of one model's files.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub onnx: PathBuf,
    pub tokenizer: PathBuf,
}

impl Cache {
    /// The cache at the standard location.
    pub fn resolve() -> Result<Cache, EmbedError> {
        Ok(Cache { root: cache_dir()? })
    }

    /// A cache at `root` (tests, `--cache`).
    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn runtime_dir(&self, runtime: &RuntimeSpec, flavour: RuntimeFlavour) -> PathBuf {
        self.root
            .join("onnxruntime")
            .join(&runtime.version)
            .join(flavour.as_str())
    }

    /// Where the fetch script puts the shared library of `flavour`.
    pub fn library_path(&self, registry: &Registry, flavour: RuntimeFlavour) -> Option<PathBuf> {
        let runtime = registry.runtime.get(flavour.as_str())?;
        Some(self.runtime_dir(runtime, flavour).join(&runtime.library))
    }

    pub fn model_dir(&self, model: &str) -> PathBuf {
        self.root.join("models").join(model)
    }

    /// Presence of a model's files, without hashing (for `spindle models list`).
    pub fn model_status(&self, model: &ModelSpec) -> FetchStatus {
        let dir = self.model_dir(&model.name);
        let missing: Vec<PathBuf> = model
            .files
            .iter()
            .map(|file| dir.join(&file.path))
            .filter(|path| !path.is_file())
            .collect();
        if missing.is_empty() {
            FetchStatus::Fetched
        } else {
            FetchStatus::Missing(missing)
        }
    }

    /// Checks every file of `model` (presence, size, sha256) and returns the
    /// paths the engine loads.
    pub fn verify_model(&self, model: &ModelSpec) -> Result<ModelPaths, EmbedError> {
        let dir = self.model_dir(&model.name);
        let command = fetch_model_command(&model.name);
        verify_files(&dir, &model.files, &model.name, &command, |path| {
            EmbedError::ModelMissing {
                model: model.name.clone(),
                path,
                fetch_command: command.clone(),
            }
        })?;
        let path_of = |role: &str| model.file(role).map(|file| dir.join(&file.path));
        match (path_of("onnx"), path_of("tokenizer")) {
            (Some(onnx), Some(tokenizer)) => Ok(ModelPaths { onnx, tokenizer }),
            _ => Err(EmbedError::Registry {
                origin: "registry".to_string(),
                reason: format!("model `{}` lacks an onnx or tokenizer file", model.name),
            }),
        }
    }

    /// Checks the runtime library files of `flavour` and returns the library path.
    pub fn verify_runtime(
        &self,
        registry: &Registry,
        flavour: RuntimeFlavour,
    ) -> Result<PathBuf, EmbedError> {
        let command = fetch_runtime_command(flavour);
        let runtime =
            registry
                .runtime
                .get(flavour.as_str())
                .ok_or_else(|| EmbedError::Registry {
                    origin: "registry".to_string(),
                    reason: format!("no [runtime.{}] entry", flavour.as_str()),
                })?;
        let dir = self.runtime_dir(runtime, flavour);
        let label = format!("{} {}", runtime.package, runtime.version);
        verify_files(&dir, &runtime.files, &label, &command, |path| {
            EmbedError::LibraryMissing {
                path,
                fetch_command: command.clone(),
            }
        })?;
        Ok(dir.join(&runtime.library))
    }
}

impl Cache {
    /// Preloads the CUDA and cuDNN libraries that `--gpu` fetched
    /// ([`crate::gpu`]); without them the system's apply.
    pub fn preload_gpu_libraries(&self, registry: &Registry) -> crate::gpu::Preloaded {
        crate::gpu::preload(self, registry)
    }
}

#[derive(Deserialize)]
struct StampEntry {
    sha256: String,
    size: u64,
    mtime_ns: u128,
}

/// Checks `files` in `dir` against their sizes and checksums (trusting the
/// fetch script's stamp for files it hashed and that did not change since).
pub(crate) fn verify_files(
    dir: &Path,
    files: &[FileSpec],
    label: &str,
    fetch_command: &str,
    missing: impl Fn(PathBuf) -> EmbedError,
) -> Result<(), EmbedError> {
    let stamp: BTreeMap<String, StampEntry> = fs::read(dir.join(STAMP_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    for file in files {
        let path = dir.join(&file.path);
        let metadata = match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => metadata,
            _ => return Err(missing(path)),
        };
        let mtime_ns = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos());
        let stamped = stamp.get(&file.path).is_some_and(|entry| {
            entry.sha256 == file.sha256
                && entry.size == metadata.len()
                && Some(entry.mtime_ns) == mtime_ns
        });
        if stamped && metadata.len() == file.size {
            continue;
        }
        let actual = sha256_file(&path)?;
        if actual != file.sha256 {
            return Err(EmbedError::ChecksumMismatch {
                model: label.to_string(),
                path,
                expected: file.sha256.clone(),
                actual,
                fetch_command: fetch_command.to_string(),
            });
        }
    }
    Ok(())
}

/// The sha256 of a file, hex-encoded.
pub fn sha256_file(path: &Path) -> Result<String, EmbedError> {
    let io_error = |error: std::io::Error| EmbedError::Io {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let mut file = fs::File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
