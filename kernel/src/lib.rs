//! spindle-kernel: the integrated kernel.
//!
//! Today: the [`supervisor`], which runs a [`spindle_scripting::GraphSpec`].
//! It speaks plain Rust types only; the command line and later front ends
//! turn its events into text or JSON.

pub mod embedding;
pub mod http;
pub mod metrics;
pub mod requests;
pub mod status;
pub mod supervisor;
