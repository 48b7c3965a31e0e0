//! The model names completion offers for `embedding = { model = "..." }`:
//! the registry Spindle ships (`models/registry.toml`), read at build time.
//! The language server never loads a model; it only names them.

use serde::Deserialize;

/// One model of the registry, as completion shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub dimensions: Option<u32>,
}

#[derive(Deserialize)]
struct Registry {
    #[serde(default)]
    models: Vec<ModelEntry>,
}

const REGISTRY: &str = include_str!("../../models/registry.toml");

/// The models of the registry, in its order; empty if it cannot be read
/// (a test keeps it readable).
pub fn models() -> Vec<ModelEntry> {
    toml::from_str::<Registry>(REGISTRY)
        .map(|registry| registry.models)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_registry_names_its_models() {
        let names: Vec<String> = super::models().into_iter().map(|m| m.name).collect();
        assert!(names.contains(&"all-MiniLM-L6-v2".to_owned()), "{names:?}");
    }
}
