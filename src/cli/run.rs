//! `spindle run`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`spindle run` is being built")
}

/// The hidden `__guard` process; see the supervisor's guard module.
pub fn guard() -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
