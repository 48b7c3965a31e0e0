//! `spindle check FILE`: prints a script's diagnostics.

use std::path::PathBuf;
use std::process::ExitCode;

use spindle_scripting::Severity;

/// Check a script and print its diagnostics.
///
/// Each diagnostic is printed as `FILE:LINE:COL: error|warning: message`,
/// followed by an indented hint line. Exits 1 when there is an error, 0
/// otherwise.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  spindle check examples/quickstart.lua")]
pub struct Args {
    /// The Lua script to check.
    file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let evaluation = spindle_scripting::evaluate_file(&args.file);
    print!("{}", super::diagnostics_text(&evaluation.diagnostics));
    let errors = evaluation
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = evaluation.diagnostics.len() - errors;
    if errors > 0 {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s)",
            args.file.display()
        );
        return Ok(ExitCode::from(1));
    }
    if let Some(graph) = &evaluation.graph {
        eprintln!(
            "{}: ok, {} service(s), {warnings} warning(s)",
            args.file.display(),
            graph.services.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
