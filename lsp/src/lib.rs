//! spindle-lsp: the language server for Spindle scripts (`spindle lsp`).
//!
//! It speaks LSP over stdio with tower-lsp-server. Diagnostics come from the
//! evaluation `spindle check` runs (`spindle_scripting::evaluate_with`, the
//! editor's unsaved texts laid over the files), so they are the same
//! messages, positions and hints; completion, hover, navigation, rename,
//! symbols, code actions and inlay hints come from
//! `spindle_scripting::analysis` and the latest evaluation. Hover adds a
//! running graph's live state from its status API over HTTP.
//!
//! Layout: `server` (dispatch, the workspace task, evaluation scheduling),
//! `workspace` (the state it owns), one module per feature, `to_proto`
//! (positions, URIs, diagnostics), `live_status` (the HTTP client),
//! `models` (model names for completion).
//!
//! It depends on `spindle-scripting` only among the workspace crates: never
//! on the kernel, which it reaches only through `spindle run --http`.

mod completion;
mod diagnostics;
mod hints;
mod hover;
pub mod live_status;
mod memory;
mod models;
mod navigation;
mod server;
mod summary;
mod to_proto;
mod workspace;

pub use server::{Backend, EVALUATIONS_AT_ONCE, GraphAnswer, GraphParams, Settings};
pub use spindle_scripting::{Diagnostic, Severity};

use tokio::io::{AsyncRead, AsyncWrite};
use tower_lsp_server::{LspService, Server};

/// Serves one client over `input` and `output` until it exits.
pub async fn serve<I, O>(input: I, output: O)
where
    I: AsyncRead + Unpin,
    O: AsyncWrite,
{
    memory::map_large_blocks_on_their_own();
    let (service, socket) = LspService::build(Backend::new)
        .custom_method("spindle/graph", Backend::graph)
        .finish();
    Server::new(input, output, socket).serve(service).await;
}

/// Serves one client over standard input and output.
pub async fn serve_stdio() {
    serve(tokio::io::stdin(), tokio::io::stdout()).await;
}
