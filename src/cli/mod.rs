//! One module per subcommand, and the few helpers they share.

pub mod check;
pub mod dap;
pub mod embed;
pub mod graph;
pub mod models;
pub mod run;

use spindle_scripting::Diagnostic;

/// Diagnostics as `FILE:LINE:COL: severity: message` lines with hints.
pub fn diagnostics_text(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}
