//! Loading ONNX Runtime: the shared library is opened once per process with
//! `ort::init_from` (an error is returned, never a panic), and one
//! environment is built and kept for the life of the process (`ort` allows
//! only one; tests in one binary share it).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use ort::environment::Environment;

use crate::error::EmbedError;

/// An execution provider, in the order a caller prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Cuda,
    Cpu,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }

    /// Parses a comma-separated preference list such as `cuda,cpu`.
    pub fn parse_list(list: &str) -> Result<Vec<Provider>, EmbedError> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Provider::from_str)
            .collect()
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = EmbedError;
    fn from_str(name: &str) -> Result<Provider, EmbedError> {
        match name.to_ascii_lowercase().as_str() {
            "cuda" => Ok(Provider::Cuda),
            "cpu" => Ok(Provider::Cpu),
            _ => Err(EmbedError::UnknownProvider {
                name: name.to_string(),
            }),
        }
    }
}

/// Which build of the library: `onnxruntime` (cpu) or `onnxruntime-gpu` (gpu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFlavour {
    Cpu,
    Gpu,
}

impl RuntimeFlavour {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeFlavour::Cpu => "cpu",
            RuntimeFlavour::Gpu => "gpu",
        }
    }
}

/// The loaded library and the process's one environment.
pub struct Runtime {
    pub environment: Environment,
    /// The library file it was loaded from.
    pub library: PathBuf,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// Loads the library at `library` (first call) and builds the environment;
/// later calls return the same runtime. A later call naming another file
/// gets the runtime already loaded, with a warning: a process holds one.
pub fn runtime(library: &Path, fetch_command: &str) -> Result<Arc<Runtime>, EmbedError> {
    if !library.is_file() {
        return Err(EmbedError::LibraryMissing {
            path: library.to_path_buf(),
            fetch_command: fetch_command.to_string(),
        });
    }
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(runtime) = slot.as_ref() {
        if runtime.library != library {
            tracing::warn!(
                loaded = %runtime.library.display(),
                requested = %library.display(),
                "ONNX Runtime is already loaded in this process; using the loaded library"
            );
        }
        return Ok(runtime.clone());
    }
    let load_error = |reason: String| EmbedError::LibraryLoad {
        path: library.to_path_buf(),
        reason,
        fetch_command: fetch_command.to_string(),
    };
    let builder = ort::init_from(library).map_err(|error| load_error(error.to_string()))?;
    let environment = builder
        .with_name("spindle")
        .build()
        .map_err(|error| load_error(error.to_string()))?;
    tracing::debug!(library = %library.display(), "loaded ONNX Runtime");
    let runtime = Arc::new(Runtime {
        environment,
        library: library.to_path_buf(),
    });
    *slot = Some(runtime.clone());
    Ok(runtime)
}

/// The runtime if one is loaded already.
pub fn loaded_runtime() -> Option<Arc<Runtime>> {
    RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Whether the loaded library was built with the CUDA provider (it may still
/// fail to register when no GPU or CUDA runtime is present).
pub fn cuda_compiled_in() -> bool {
    use ort::ep::ExecutionProvider;
    loaded_runtime().is_some() && ort::ep::CUDA::is_available().unwrap_or(false)
}
