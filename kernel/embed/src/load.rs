//! Loading a model: verify its files, load the library once, build the
//! session on the first usable execution provider of the preference list,
//! check the graph's signature against the registry. Runs on the engine's
//! thread before it takes batches; nothing here runs a batch.

use crate::cache::{Cache, fetch_model_command, fetch_runtime_command};
use crate::engine::{EngineConfig, EngineInfo};
use crate::error::EmbedError;
use crate::registry::{ModelSpec, Registry};
use crate::run::Loaded;
use crate::runtime::{Provider, RuntimeFlavour, runtime};
use crate::session::build_session;
use crate::tokenize::TextTokenizer;

pub(crate) fn load(config: &EngineConfig) -> Result<(Loaded, EngineInfo), EmbedError> {
    let registry = config.registry.clone().unwrap_or_else(Registry::builtin);
    let model_name = if config.model.is_empty() {
        registry.default_model.clone()
    } else {
        config.model.clone()
    };
    let spec = registry.model(&model_name)?.clone();
    if config.providers.is_empty() {
        return Err(EmbedError::ProviderUnavailable {
            requested: String::new(),
            reason: "the provider list is empty".into(),
        });
    }
    let cache = match &config.cache {
        Some(root) => Cache::at(root),
        None => Cache::resolve()?,
    };
    let paths = cache.verify_model(&spec)?;

    // The GPU build when CUDA is wanted and fetched; the CPU build otherwise.
    let wants_cuda = config.providers.contains(&Provider::Cuda);
    let (library, flavour) = match &config.library {
        Some(library) => (library.clone(), RuntimeFlavour::Cpu),
        None => {
            let gpu = cache.library_path(&registry, RuntimeFlavour::Gpu);
            if wants_cuda && gpu.as_ref().is_some_and(|path| path.is_file()) {
                (
                    cache.verify_runtime(&registry, RuntimeFlavour::Gpu)?,
                    RuntimeFlavour::Gpu,
                )
            } else {
                (
                    cache.verify_runtime(&registry, RuntimeFlavour::Cpu)?,
                    RuntimeFlavour::Cpu,
                )
            }
        }
    };
    if flavour == RuntimeFlavour::Gpu {
        // The CUDA provider's libraries (CUDA 13, cuDNN 9) from the
        // `nvidia-*` wheels, when `--gpu` fetched them: the provider is
        // loaded with dlopen, which must find them.
        cache.preload_gpu_libraries(&registry);
    }
    let runtime = runtime(&library, &fetch_runtime_command(flavour))?;

    let fetch_command = fetch_model_command(&spec.name);
    let tokenizer =
        TextTokenizer::load(&paths.tokenizer, spec.max_seq_length).map_err(|reason| {
            EmbedError::CorruptModel {
                model: spec.name.clone(),
                path: paths.tokenizer.clone(),
                reason,
                fetch_command: fetch_command.clone(),
            }
        })?;

    // Unset, the cores are shared out among the sessions.
    let threads = config.intra_threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / config.sessions.max(1)).max(1)
    });
    let mut tuning = config.tuning;
    if !config.allow_spinning {
        tuning.spinning = false;
    }
    let mut skipped: Vec<String> = Vec::new();
    let mut chosen = None;
    for &provider in &config.providers {
        match build_session(&runtime.environment, &paths.onnx, provider, threads, tuning) {
            Ok(session) => {
                chosen = Some((session, provider));
                break;
            }
            Err(error) if provider == Provider::Cpu => {
                return Err(EmbedError::CorruptModel {
                    model: spec.name.clone(),
                    path: paths.onnx.clone(),
                    reason: error.to_string(),
                    fetch_command,
                });
            }
            Err(error) => {
                let mut reason = first_line(&error.to_string());
                if flavour == RuntimeFlavour::Cpu && config.library.is_none() {
                    reason.push_str(&format!(
                        " (the CPU build of ONNX Runtime is loaded; `{}` fetches the CUDA build)",
                        fetch_runtime_command(RuntimeFlavour::Gpu)
                    ));
                }
                skipped.push(format!("{provider}: {reason}"));
            }
        }
    }
    let requested = config
        .providers
        .iter()
        .map(|provider| provider.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let Some((session, provider)) = chosen else {
        return Err(EmbedError::ProviderUnavailable {
            requested,
            reason: skipped.join("; "),
        });
    };
    let fallback = if skipped.is_empty() {
        None
    } else {
        Some(skipped.join("; "))
    };
    if let Some(reason) = &fallback {
        tracing::warn!(model = %spec.name, "execution provider {provider} used instead of the preferred one: {reason}");
    }
    check_signature(&session, &spec).map_err(|reason| EmbedError::CorruptModel {
        model: spec.name.clone(),
        path: paths.onnx.clone(),
        reason,
        fetch_command: fetch_model_command(&spec.name),
    })?;
    let info = EngineInfo {
        model: spec.name.clone(),
        provider,
        fallback,
        dimensions: spec.dimensions,
        max_seq_length: spec.max_seq_length,
        intra_threads: threads,
        sessions: config.sessions.max(1),
        tuning,
        library,
        model_path: paths.onnx,
        cache: cache.root,
    };
    Ok((
        Loaded {
            session,
            tokenizer,
            spec,
            provider,
        },
        info,
    ))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

/// The graph must have the registry's inputs and output.
fn check_signature(session: &ort::session::Session, spec: &ModelSpec) -> Result<(), String> {
    let inputs: Vec<&str> = session.inputs().iter().map(|input| input.name()).collect();
    for input in &inputs {
        if !spec.inputs.iter().any(|name| name == input) {
            return Err(format!(
                "the graph wants input `{input}`, which the registry does not list (inputs: {inputs:?})"
            ));
        }
    }
    if !session
        .outputs()
        .iter()
        .any(|output| output.name() == spec.output)
    {
        let outputs: Vec<&str> = session
            .outputs()
            .iter()
            .map(|output| output.name())
            .collect();
        return Err(format!(
            "the graph has no output `{}` (outputs: {outputs:?})",
            spec.output
        ));
    }
    Ok(())
}
