//! spindle-embed: the embedding engine and the model registry.
