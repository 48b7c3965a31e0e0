//! Reloading the script from a running `spindle run` (SIGHUP, `--watch`):
//! the kernel evaluates it again and applies the difference; an invalid
//! script changes nothing and its diagnostics are printed.

use spindle_kernel::{Kernel, KernelError};

use super::notify::{self, Notifier};

pub(super) async fn reload(kernel: &Kernel, notifier: Option<&Notifier>) {
    notify::reloading(notifier, true);
    match kernel.reload().await {
        Ok(report) => {
            let mut parts = Vec::new();
            for (what, names) in [
                ("added", &report.added),
                ("restarted", &report.changed),
                ("removed", &report.removed),
            ] {
                if !names.is_empty() {
                    parts.push(format!("{what} {}", names.join(", ")));
                }
            }
            if parts.is_empty() {
                parts.push("no service changed".to_owned());
            }
            eprintln!(
                "spindle: reloaded: {}; {} unchanged",
                parts.join("; "),
                report.unchanged.len()
            );
        }
        Err(KernelError::Script { diagnostics, .. }) => {
            eprint!("{}", crate::cli::diagnostics_text(&diagnostics));
            eprintln!("spindle: the script has errors; nothing was changed");
        }
        Err(error) => eprintln!("spindle: cannot reload: {error}"),
    }
    notify::reloading(notifier, false);
}
