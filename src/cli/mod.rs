//! One module per subcommand, and the few helpers they share.

pub mod check;
pub mod ctl;
pub mod discovery;
pub mod embed;
pub mod graph;
pub mod kernel;
pub mod lsp;
pub mod models;
pub mod netlink_peer;
pub mod ps;
pub mod run;

use spindle_scripting::Diagnostic;

/// Diagnostics as `FILE:LINE:COL: severity: message` lines with hints.
pub fn diagnostics_text(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}
