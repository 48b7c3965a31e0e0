//! The CUDA provider's libraries without a system install: CUDA 13
//! (cudart, cuBLAS, cuBLASLt, cuRAND) and cuDNN 9 from PyPI's `nvidia-*`
//! wheels, which `scripts/fetch_models.py --gpu` unpacks flat into
//! `<cache>/cuda/13/` with their checksums (registry `[gpu]`).
//!
//! ONNX Runtime loads `libonnxruntime_providers_cuda.so` with `dlopen`
//! when a session asks for CUDA; the dynamic loader must then find the
//! provider's `NEEDED` libraries and, later, `libcudnn.so.9`. Environment
//! variables such as `LD_LIBRARY_PATH` are read only when a process starts,
//! so instead the engine loads each fetched library by its full path,
//! globally and in dependency order, before the first CUDA session: a
//! library already loaded satisfies any later request for its soname. Only
//! the driver's `libcuda.so.1` must come from the machine.
//!
//! Nothing here has run on a machine with a GPU yet (docs/embeddings.md).

use std::path::PathBuf;
use std::sync::Mutex;

use crate::cache::{Cache, verify_files};
use crate::error::EmbedError;
use crate::registry::Registry;

/// What preloading found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preloaded {
    /// Every library of `[gpu]` is loaded from `directory`.
    Loaded {
        directory: PathBuf,
        libraries: usize,
    },
    /// `--gpu` did not fetch them: the system's libraries, if any, apply.
    NotFetched { directory: PathBuf },
    /// A file is there but failed its checksum or could not be loaded.
    Failed { reason: String },
}

static PRELOADED: Mutex<Option<Preloaded>> = Mutex::new(None);

/// Loads the `[gpu]` libraries of `registry` from `cache`, once per
/// process; later calls return the first result.
pub fn preload(cache: &Cache, registry: &Registry) -> Preloaded {
    let mut slot = PRELOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(done) = slot.as_ref() {
        return done.clone();
    }
    let result = preload_now(cache, registry);
    match &result {
        Preloaded::Loaded {
            directory,
            libraries,
        } => tracing::info!(
            directory = %directory.display(),
            "preloaded {libraries} CUDA and cuDNN libraries"
        ),
        Preloaded::NotFetched { directory } => tracing::debug!(
            directory = %directory.display(),
            "no CUDA libraries fetched; the system's apply"
        ),
        Preloaded::Failed { reason } => tracing::warn!("CUDA libraries: {reason}"),
    }
    *slot = Some(result.clone());
    result
}

/// Where `[gpu]`'s libraries live in `cache`.
pub fn directory(cache: &Cache, registry: &Registry) -> Option<PathBuf> {
    registry
        .gpu
        .as_ref()
        .map(|gpu| cache.root.join(&gpu.directory))
}

fn preload_now(cache: &Cache, registry: &Registry) -> Preloaded {
    let Some(gpu) = registry.gpu.as_ref() else {
        return Preloaded::NotFetched {
            directory: PathBuf::new(),
        };
    };
    let directory = cache.root.join(&gpu.directory);
    if !gpu
        .libraries
        .iter()
        .all(|file| directory.join(&file.path).is_file())
    {
        return Preloaded::NotFetched { directory };
    }
    let command = "python3 scripts/fetch_models.py --runtime --gpu";
    if let Err(error) = verify_files(
        &directory,
        &gpu.libraries,
        "CUDA libraries",
        command,
        |path| EmbedError::LibraryMissing {
            path,
            fetch_command: command.to_string(),
        },
    ) {
        return Preloaded::Failed {
            reason: error.to_string(),
        };
    }
    for file in &gpu.libraries {
        let path = directory.join(&file.path);
        // SAFETY: loading a library runs its initialisers. These are the
        // checksummed NVIDIA runtime libraries of the registry, loaded in
        // their dependency order; they are never unloaded (the handle is
        // leaked), so no symbol outlives its library.
        let loaded = unsafe {
            libloading::os::unix::Library::open(
                Some(&path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        };
        match loaded {
            Ok(library) => std::mem::forget(library),
            Err(error) => {
                return Preloaded::Failed {
                    reason: format!("{}: {error}", path.display()),
                };
            }
        }
    }
    Preloaded::Loaded {
        directory,
        libraries: gpu.libraries.len(),
    }
}
