//! `spindle lsp`: the language server over standard input and output.

use std::process::ExitCode;

/// Run the language server over stdio (for editors).
///
/// Editors start it and speak LSP on its standard input and output; it
/// checks scripts exactly as `spindle check` does, as they are typed.
/// Settings come as initialization options: `{ "httpAddress": "127.0.0.1:7700" }`
/// names a graph run with `spindle run FILE --http ADDR`, whose live states
/// hover then shows.
#[derive(clap::Args)]
#[command(after_help = "Example (what an editor runs):\n  spindle lsp")]
pub struct Args {
    /// Accepted for editors that pass it; stdio is the only transport.
    #[arg(long, hide = true)]
    stdio: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = args.stdio;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(spindle_lsp::serve_stdio());
    Ok(ExitCode::SUCCESS)
}
