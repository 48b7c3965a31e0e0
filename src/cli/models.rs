//! `spindle models`: the model registry and the cache — what is known, what
//! is fetched, which execution providers the fetched library offers — and
//! fetching through `scripts/fetch_models.py`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;
use spindle_embed::cache::FetchStatus;
use spindle_embed::runtime::{cuda_compiled_in, runtime};
use spindle_embed::{Cache, Registry, RuntimeFlavour};

/// List or fetch embedding models.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  spindle models list\n  spindle models fetch all-MiniLM-L6-v2")]
pub struct Args {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(clap::Subcommand)]
enum ModelsCommand {
    /// Known models: dimensions, maximum tokens, files, whether they are
    /// fetched, and the execution providers of the fetched ONNX Runtime.
    #[command(after_help = "Example:\n  spindle models list")]
    List,
    /// Fetch one model (and the ONNX Runtime library) into the cache by
    /// running `python3 scripts/fetch_models.py --model NAME`; `all` fetches
    /// every model.
    #[command(
        after_help = "Examples:\n  spindle models fetch paraphrase-MiniLM-L3-v2\n  spindle models fetch all --gpu"
    )]
    Fetch {
        /// A model name from `spindle models list`, or `all`.
        name: String,
        /// Fetch the CUDA build of ONNX Runtime (onnxruntime-gpu) too.
        #[arg(long)]
        gpu: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        ModelsCommand::List => list(),
        ModelsCommand::Fetch { name, gpu } => fetch(&name, gpu),
    }
}

fn list() -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let cache = Cache::resolve()?;
    println!("cache: {}", cache.root.display());
    println!();
    println!(
        "{:<24} {:>4} {:>6}  {:<14} {:>8} {:>7} {:>8} {:>7}  files",
        "MODEL", "DIMS", "TOKENS", "FETCHED", "SENT/S", "SPEED", "MIN COS", "TOP-10"
    );
    for model in &registry.models {
        let fetched = match cache.model_status(model) {
            FetchStatus::Fetched => "yes".to_string(),
            FetchStatus::Missing(missing) => format!("no ({} missing)", missing.len()),
        };
        let files = model
            .files
            .iter()
            .map(|file| {
                let origin = if file.build.is_some() {
                    format!("built from {}", file.package)
                } else {
                    format!("from {}", file.package)
                };
                format!("{} ({:.1} MB, {origin})", file.path, file.size as f64 / 1e6)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let default = if model.name == registry.default_model {
            " *"
        } else {
            ""
        };
        let measured = &model.measured;
        let figure = |value: Option<f64>, digits: usize| {
            value.map_or("-".to_string(), |value| format!("{value:.digits$}"))
        };
        println!(
            "{:<24} {:>4} {:>6}  {:<14} {:>8} {:>7} {:>8} {:>7}  {files}",
            format!("{}{default}", model.name),
            model.dimensions,
            model.max_seq_length,
            fetched,
            figure(measured.sentences_per_s, 1),
            measured
                .speedup()
                .map_or("-".to_string(), |speedup| format!("{speedup:.2}×")),
            figure(measured.min_cosine, 4),
            figure(measured.top10_overlap, 3),
        );
    }
    println!(
        "(* default model: the fastest that passes the accuracy gate. SENT/S: engine sentences/s \
         on the benchmark corpus, sorted by length, batch 8, 2 threads; SPEED: against the \
         reference in the same run; MIN COS, TOP-10: lowest cosine and top-10 retrieval overlap \
         against the reference on the gate corpus; see docs/embeddings.md)"
    );
    for model in registry
        .models
        .iter()
        .filter(|model| model.measured.reference.is_some())
    {
        println!(
            "  {} is measured against {}{}",
            model.name,
            model.measured.reference.as_deref().unwrap_or(""),
            if model.measured.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", model.measured.note)
            }
        );
    }
    println!();
    for flavour in [RuntimeFlavour::Cpu, RuntimeFlavour::Gpu] {
        let Some(spec) = registry.runtime.get(flavour.as_str()) else {
            continue;
        };
        let library = cache.library_path(&registry, flavour).unwrap_or_default();
        let state = if library.is_file() {
            format!("fetched at {}", library.display())
        } else {
            "not fetched".to_string()
        };
        println!(
            "runtime {} {} ({}): {state}",
            spec.package,
            spec.version,
            flavour.as_str()
        );
    }
    println!("providers: {}", providers_line(&registry, &cache));
    Ok(ExitCode::SUCCESS)
}

/// Which execution providers the fetched library offers.
fn providers_line(registry: &Registry, cache: &Cache) -> String {
    let gpu = cache
        .library_path(registry, RuntimeFlavour::Gpu)
        .filter(|path| path.is_file());
    let cpu = cache
        .library_path(registry, RuntimeFlavour::Cpu)
        .filter(|path| path.is_file());
    let Some(library) = gpu.or(cpu) else {
        return "unknown: no ONNX Runtime library fetched (python3 scripts/fetch_models.py --runtime)".to_string();
    };
    match runtime(&library, "python3 scripts/fetch_models.py --runtime") {
        Ok(_) if cuda_compiled_in() => {
            let libraries = match spindle_embed::gpu::directory(cache, registry) {
                Some(directory) if directory.is_dir() => {
                    format!("CUDA 13 and cuDNN 9 libraries fetched in {}", directory.display())
                }
                _ => "CUDA 13 and cuDNN 9 libraries not fetched: `spindle models fetch all --gpu`".to_string(),
            };
            format!("cpu (available), cuda (in this build; needs a GPU and its driver; {libraries})")
        }
        Ok(_) => "cpu (available), cuda (not in this build: `spindle models fetch all --gpu` fetches onnxruntime-gpu; \
                  no GPU on this machine either)"
            .to_string(),
        Err(error) => format!("unknown: {error}"),
    }
}

fn fetch(name: &str, gpu: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let script = fetch_script();
    anyhow::ensure!(
        script.is_file(),
        "{} is missing: run `spindle models fetch` from a Spindle checkout",
        script.display()
    );
    let mut command = Command::new("python3");
    command.arg(&script);
    if name == "all" {
        command.arg("--all");
    } else {
        registry.model(name)?;
        command.args(["--model", name]);
    }
    if gpu {
        command.arg("--gpu");
    }
    let status = command
        .status()
        .with_context(|| format!("running python3 {}", script.display()))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `scripts/fetch_models.py` of the checkout this binary was built from, or
/// `$SPINDLE_FETCH_SCRIPT`.
fn fetch_script() -> PathBuf {
    std::env::var_os("SPINDLE_FETCH_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch_models.py")
        })
}
