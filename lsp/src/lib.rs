//! spindle-lsp: the language server for Spindle scripts.
//!
//! It will speak LSP (tower-lsp-server) over `spindle_scripting`'s analysis,
//! publishing the same diagnostics that `spindle check` prints. Today it
//! exposes that analysis to the binary and nothing else; the protocol front
//! end is later work. It must not depend on the kernel.

pub use spindle_scripting::{Diagnostic, Severity};
