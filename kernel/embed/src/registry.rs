//! The model registry: `models/registry.toml`, compiled into the crate and
//! parsed with `toml` + `serde`. The same file drives
//! `scripts/fetch_models.py`, so what the engine expects and what the fetch
//! script unpacks cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::EmbedError;

/// The registry shipped with this build.
pub const BUILTIN_REGISTRY: &str = include_str!("../../../models/registry.toml");

/// All models and runtimes Spindle knows how to fetch and run.
#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    /// The model used when none is named.
    pub default_model: String,
    /// `cpu` and `gpu` builds of the ONNX Runtime library.
    pub runtime: BTreeMap<String, RuntimeSpec>,
    /// PyPI packages that carry model files, by package name.
    #[serde(default)]
    pub packages: BTreeMap<String, PackageSpec>,
    /// The models, in the registry's order.
    pub models: Vec<ModelSpec>,
    /// The CUDA provider's libraries (CUDA 13, cuDNN 9) from `nvidia-*`
    /// wheels, fetched with `--gpu`.
    #[serde(default)]
    pub gpu: Option<GpuSpec>,
}

/// The CUDA and cuDNN runtime libraries the CUDA provider needs.
#[derive(Debug, Clone, Deserialize)]
pub struct GpuSpec {
    /// Directory under the cache that holds the libraries, flat.
    pub directory: String,
    pub packages: BTreeMap<String, PackageSpec>,
    /// The libraries, in the order the engine preloads them.
    pub libraries: Vec<FileSpec>,
}

/// The accuracy gate a variant of a model must pass to be offered: its
/// vectors against its reference model's on the gate corpus
/// (`kernel/embed/tests/data/gate/`).
pub const GATE_MIN_COSINE: f64 = 0.995;
/// ... and the overlap of its top-10 retrieval results with the reference's.
pub const GATE_MIN_TOP10_OVERLAP: f64 = 0.95;

/// Measured figures of a model, recorded from `make bench` (`cargo bench
/// --bench gate` and `--bench embed`) and shown by `spindle models list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Measured {
    /// The model this one is a variant of (the accuracy reference).
    #[serde(default)]
    pub reference: Option<String>,
    /// Lowest cosine to the reference over the gate corpus.
    #[serde(default)]
    pub min_cosine: Option<f64>,
    /// Mean top-10 overlap with the reference on the retrieval task.
    #[serde(default)]
    pub top10_overlap: Option<f64>,
    /// Engine sentences per second on the benchmark corpus (sorted by
    /// length, batch 8, 2 threads), and the same for the reference in the
    /// same run.
    #[serde(default)]
    pub sentences_per_s: Option<f64>,
    #[serde(default)]
    pub reference_sentences_per_s: Option<f64>,
    /// When and where: date, machine, load.
    #[serde(default)]
    pub note: String,
}

impl Measured {
    /// Whether the recorded accuracy passes the gate (a model that is not a
    /// variant passes trivially).
    pub fn passes_gate(&self) -> bool {
        match (&self.reference, self.min_cosine, self.top10_overlap) {
            (None, _, _) => true,
            (Some(_), Some(cosine), Some(overlap)) => {
                cosine >= GATE_MIN_COSINE && overlap >= GATE_MIN_TOP10_OVERLAP
            }
            _ => false,
        }
    }

    /// Speed relative to the reference, as measured in the same run.
    pub fn speedup(&self) -> Option<f64> {
        Some(self.sentences_per_s? / self.reference_sentences_per_s?)
    }
}

/// One build of the ONNX Runtime library and where it comes from.
#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeSpec {
    pub package: String,
    pub version: String,
    pub wheel: String,
    pub sha256: String,
    /// File name of the shared library among `files`.
    pub library: String,
    pub files: Vec<FileSpec>,
}

/// A pinned PyPI package.
#[derive(Debug, Clone, Deserialize)]
pub struct PackageSpec {
    pub version: String,
    pub wheel: String,
    pub sha256: String,
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
}

/// How the sentence vector is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    L2,
    None,
}

/// One embedding model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub dimensions: usize,
    /// Maximum tokens per input, special tokens included, from the model's
    /// sentence-transformers configuration.
    pub max_seq_length: usize,
    #[serde(default)]
    pub max_seq_length_source: String,
    pub pooling: Pooling,
    pub normalization: Normalization,
    /// The ONNX graph's input names, among `input_ids`, `attention_mask`,
    /// `token_type_ids`.
    pub inputs: Vec<String>,
    /// The output holding the token vectors, `[batch, seq, dimensions]`.
    pub output: String,
    /// Forward-pass cost per token, for the benchmark's GFLOP/s.
    #[serde(default)]
    pub mflop_per_token: f64,
    /// Accuracy against a reference and speed, as measured.
    #[serde(default)]
    pub measured: Measured,
    pub files: Vec<FileSpec>,
}

/// One file in the cache and where it was unpacked from.
#[derive(Debug, Clone, Deserialize)]
pub struct FileSpec {
    /// `onnx`, `tokenizer` or `config` (absent for runtime files).
    #[serde(default)]
    pub role: String,
    /// Path relative to the model's (or runtime's) cache directory.
    pub path: String,
    #[serde(default)]
    pub package: String,
    pub member: String,
    /// Member of a zip inside `member`, when the package nests one.
    #[serde(default)]
    pub inner: Option<String>,
    /// A script that builds this file from `member` instead of unpacking it
    /// (the fp32 ONNX made from safetensors), with its arguments.
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub build_args: Vec<String>,
    pub sha256: String,
    pub size: u64,
}

impl Registry {
    /// The registry compiled into this build (`models/registry.toml`).
    pub fn builtin() -> Registry {
        // The file is part of the source tree and checked by this crate's
        // tests; a parse failure here is a build defect, not user input.
        Registry::parse(BUILTIN_REGISTRY, "models/registry.toml")
            .expect("models/registry.toml is valid")
    }

    /// Parses registry text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Registry, EmbedError> {
        let registry: Registry = toml::from_str(text).map_err(|error| EmbedError::Registry {
            origin: origin.to_string(),
            reason: error.to_string(),
        })?;
        registry.validate(origin)?;
        Ok(registry)
    }

    /// Reads and parses a registry file.
    pub fn from_path(path: &Path) -> Result<Registry, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(|error| EmbedError::Io {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        Registry::parse(&text, &path.display().to_string())
    }

    /// The model named `name`, or [`EmbedError::UnknownModel`].
    pub fn model(&self, name: &str) -> Result<&ModelSpec, EmbedError> {
        self.models
            .iter()
            .find(|model| model.name == name)
            .ok_or_else(|| EmbedError::UnknownModel {
                name: name.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|model| model.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn validate(&self, origin: &str) -> Result<(), EmbedError> {
        let fail = |reason: String| {
            Err(EmbedError::Registry {
                origin: origin.to_string(),
                reason,
            })
        };
        for model in &self.models {
            for role in ["onnx", "tokenizer"] {
                if !model.files.iter().any(|file| file.role == role) {
                    return fail(format!(
                        "model `{}` has no file with role `{role}`",
                        model.name
                    ));
                }
            }
            if !model.inputs.iter().any(|input| input == "input_ids") {
                return fail(format!(
                    "model `{}` does not list the `input_ids` input",
                    model.name
                ));
            }
            if let Some(input) = model.inputs.iter().find(|input| {
                !matches!(
                    input.as_str(),
                    "input_ids" | "attention_mask" | "token_type_ids"
                )
            }) {
                return fail(format!(
                    "model `{}`: unsupported input `{input}`",
                    model.name
                ));
            }
        }
        for model in &self.models {
            if let Some(reference) = &model.measured.reference {
                if !self.models.iter().any(|other| &other.name == reference) {
                    return fail(format!(
                        "model `{}` is measured against `{reference}`, which is not listed",
                        model.name
                    ));
                }
                if !model.measured.passes_gate() {
                    return fail(format!(
                        "model `{}` does not pass the accuracy gate (cosine ≥ {GATE_MIN_COSINE} \
                         for every sentence, top-10 overlap ≥ {GATE_MIN_TOP10_OVERLAP}): \
                         a variant that fails is not offered",
                        model.name
                    ));
                }
            }
        }
        if !self
            .models
            .iter()
            .any(|model| model.name == self.default_model)
        {
            return fail(format!(
                "default_model `{}` is not a listed model",
                self.default_model
            ));
        }
        Ok(())
    }
}

impl ModelSpec {
    /// The file with `role` (validated to exist for `onnx` and `tokenizer`).
    pub fn file(&self, role: &str) -> Option<&FileSpec> {
        self.files.iter().find(|file| file.role == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses() {
        let registry = Registry::builtin();
        let model = registry.model("all-MiniLM-L6-v2").unwrap();
        assert_eq!(model.dimensions, 384);
        assert_eq!(model.max_seq_length, 256);
        assert_eq!(model.pooling, Pooling::Mean);
        assert!(registry.model("paraphrase-MiniLM-L3-v2").is_ok());
        assert!(registry.runtime.contains_key("cpu") && registry.runtime.contains_key("gpu"));
    }

    #[test]
    fn listed_variants_pass_the_gate_and_the_default_is_the_fastest_that_does() {
        let registry = Registry::builtin();
        for model in &registry.models {
            assert!(model.measured.passes_gate(), "{}", model.name);
        }
        let fastest = registry
            .models
            .iter()
            .filter(|model| model.measured.reference.is_some())
            .max_by(|a, b| {
                a.measured
                    .speedup()
                    .unwrap_or(0.0)
                    .total_cmp(&b.measured.speedup().unwrap_or(0.0))
            });
        if let Some(fastest) = fastest
            && fastest.measured.speedup().unwrap_or(0.0) > 1.0
        {
            assert_eq!(registry.default_model, fastest.name);
        }
    }

    #[test]
    fn a_variant_below_the_gate_is_refused() {
        let text = BUILTIN_REGISTRY.replace("min_cosine = 0.99", "min_cosine = 0.96");
        if text != BUILTIN_REGISTRY {
            let error = Registry::parse(&text, "test").unwrap_err();
            assert!(error.to_string().contains("accuracy gate"), "{error}");
        }
    }

    #[test]
    fn the_gpu_libraries_are_listed_with_checksums() {
        let gpu = Registry::builtin().gpu.expect("[gpu]");
        let names: Vec<&str> = gpu
            .libraries
            .iter()
            .map(|file| file.path.as_str())
            .collect();
        for needed in [
            "libcudart.so.13",
            "libcublasLt.so.13",
            "libcublas.so.13",
            "libcurand.so.10",
            "libcudnn.so.9",
        ] {
            assert!(names.contains(&needed), "{needed} missing from [gpu]");
        }
        for file in &gpu.libraries {
            assert!(gpu.packages.contains_key(&file.package), "{}", file.package);
            assert_eq!(file.sha256.len(), 64);
        }
    }

    #[test]
    fn unknown_model_lists_known_ones() {
        let error = Registry::builtin().model("nope").unwrap_err();
        assert!(error.to_string().contains("all-MiniLM-L6-v2"), "{error}");
    }
}
