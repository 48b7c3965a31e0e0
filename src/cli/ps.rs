//! `spindle ps`: the kernels running now, from their connection files
//! (stale ones, whose process is gone, are removed on the way).

use std::process::ExitCode;

use crate::cli::discovery;

/// List running kernels (run id, pid, control address, uptime, script).
#[derive(clap::Args)]
pub struct Args {
    /// Print the connection files' JSON, one per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let running = discovery::running()?;
    if args.json {
        for connection in &running {
            println!("{}", serde_json::to_string(connection)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if running.is_empty() {
        eprintln!(
            "spindle: no kernel is running (looked in {})",
            discovery::runtime_dir()?.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24}  {:>7}  {:<21}  {:>8}  SCRIPT",
        "RUN ID", "PID", "CONTROL", "UPTIME"
    );
    let now = discovery::unix_now();
    for connection in &running {
        println!(
            "{:<24}  {:>7}  {:<21}  {:>8}  {}",
            connection.run_id,
            connection.pid,
            connection.http,
            crate::cli::ctl::uptime_text((now - connection.started_at).max(0.0) as u64),
            connection.script.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
