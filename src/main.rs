//! The `spindle` command line. Parsing and printing only; the work is done by
//! the workspace crates. Each subcommand lives in `src/cli/<name>.rs` with
//! its own `Args` and `run`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Spindle: a developer workbench for embedding services.
#[derive(Parser)]
#[command(name = "spindle", version, propagate_version = true)]
struct Spindle {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Check(cli::check::Args),
    Graph(cli::graph::Args),
    Run(cli::run::Args),
    Journal(cli::journal::Args),
    Replay(cli::replay::Args),
    Ps(cli::ps::Args),
    Ctl(cli::ctl::Args),
    Models(cli::models::Args),
    Embed(cli::embed::Args),
    Dap(cli::dap::Args),
    Kernel(cli::kernel::Args),
    NetlinkPeer(cli::netlink_peer::Args),
    Lsp(cli::lsp::Args),
    #[command(hide = true, name = "__guard")]
    Guard,
}

fn main() -> ExitCode {
    spindle_kernel::memory::settle_allocator();
    let spindle = Spindle::parse();
    let result = match spindle.command {
        Command::Check(args) => cli::check::run(args),
        Command::Graph(args) => cli::graph::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Journal(args) => cli::journal::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Ps(args) => cli::ps::run(args),
        Command::Ctl(args) => cli::ctl::run(args),
        Command::Models(args) => cli::models::run(args),
        Command::Embed(args) => cli::embed::run(args),
        Command::Dap(args) => cli::dap::run(args),
        Command::Kernel(args) => cli::kernel::run(args),
        Command::NetlinkPeer(args) => cli::netlink_peer::run(args),
        Command::Lsp(args) => cli::lsp::run(args),
        Command::Guard => cli::run::guard(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("spindle: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
