//! `spindle kernel install` (the kernelspec Jupyter launches) and
//! `spindle kernel start --connection-file FILE` (what Jupyter launches):
//! a notebook's kernel, serving Jupyter until a client asks it to shut
//! down. Also [`serve_attached`], which `spindle run --jupyter` uses to
//! serve a running graph. Wiring only; the front end is spindle-jupyter.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use spindle_jupyter::{JupyterConfig, JupyterServer, KernelspecPlace};
use spindle_kernel::{Kernel, KernelConfig, KernelError, KernelSource};

/// Run Spindle as a Jupyter kernel: Lua cells on a live kernel.
#[derive(clap::Args)]
#[command(after_help = "\
Example:
  spindle kernel install --user      # then: jupyter lab, and pick \"Spindle (Lua)\"
  spindle run graph.lua --jupyter    # attach: jupyter console --existing FILE
See docs/jupyter.md.")]
pub struct Args {
    #[command(subcommand)]
    command: KernelCommand,
}

#[derive(clap::Subcommand)]
enum KernelCommand {
    /// Write the kernelspec (kernel.json and logos) where Jupyter finds it;
    /// `jupyter kernelspec list` then shows `spindle`.
    Install(InstallArgs),
    /// Start a kernel for Jupyter (Jupyter runs this from the kernelspec).
    Start(StartArgs),
}

#[derive(clap::Args)]
struct InstallArgs {
    /// Into the user's Jupyter data folder (the default).
    #[arg(long, conflicts_with_all = ["sys_prefix", "prefix"])]
    user: bool,
    /// Into the active Python environment ($VIRTUAL_ENV or $CONDA_PREFIX).
    #[arg(long, conflicts_with = "prefix")]
    sys_prefix: bool,
    /// Into DIR/share/jupyter/kernels.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StartArgs {
    /// The connection file Jupyter wrote (ports and key).
    #[arg(long, value_name = "FILE")]
    connection_file: PathBuf,
    /// Start the kernel on this graph script instead of an empty notebook.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// The kernel's data directory: `s.state` (in cells and stages) keeps
    /// its store in DIR/state.redb, so state outlives the kernel; service
    /// logs go to DIR/logs. Without it state is kept in memory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        KernelCommand::Install(install) => {
            let place = match (install.sys_prefix, install.prefix) {
                (true, _) => KernelspecPlace::SysPrefix,
                (false, Some(prefix)) => KernelspecPlace::Prefix(prefix),
                (false, None) => KernelspecPlace::User,
            };
            let program = std::env::current_exe().context("cannot find the spindle binary")?;
            let dir = spindle_jupyter::install_kernelspec(&program, &place)?;
            println!(
                "spindle: installed the kernelspec `spindle` in {}",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        KernelCommand::Start(start) => {
            // One thread: the channels wait on sockets; Lua has its own.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(start_kernel(start))
        }
    }
}

async fn start_kernel(args: StartArgs) -> anyhow::Result<ExitCode> {
    let connection = spindle_jupyter::read_connection_file(&args.connection_file)?;
    let script = match args.script {
        Some(script) => script,
        None => notebook_script()?,
    };
    let config = KernelConfig {
        until_shutdown: true,
        data_dir: args.data_dir.map(std::path::absolute).transpose()?,
        ..KernelConfig::default()
    };
    let kernel = match Kernel::start(KernelSource::Script(script.clone()), config) {
        Ok(kernel) => kernel,
        Err(KernelError::Script { diagnostics, .. }) => {
            eprint!("{}", super::diagnostics_text(&diagnostics));
            return Ok(ExitCode::from(1));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot start {}", script.display()));
        }
    };
    let server = spindle_jupyter::serve(kernel.clone(), JupyterConfig::new(connection)).await?;
    let interrupts = watch_interrupts(&kernel)?;
    let asked = tokio::select! {
        asked = server.shutdown_asked() => Some(asked),
        _ = terminated()? => None,
    };
    // The shutdown reply is on its way; the channels stop after it.
    tokio::task::yield_now().await;
    server.stop();
    drop(interrupts);
    kernel.shutdown();
    let _ = kernel.wait().await;
    if asked.is_some_and(|asked| asked.restart) {
        eprintln!("spindle: restart asked; Jupyter starts a new kernel");
    }
    Ok(ExitCode::SUCCESS)
}

/// The empty notebook script a notebook's kernel starts on (cells declare
/// the graph), in the runtime folder.
fn notebook_script() -> anyhow::Result<PathBuf> {
    let dir = spindle_jupyter::runtime_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let script = dir.join(format!("notebook-{}.lua", std::process::id()));
    std::fs::write(&script, "-- A notebook's kernel: cells declare services and pipelines.\nlocal s = require(\"spindle\")\n")
        .with_context(|| format!("cannot write {}", script.display()))?;
    Ok(script)
}

/// SIGINT interrupts the running cell (as a terminal's Ctrl-C should),
/// it does not end the kernel.
fn watch_interrupts(kernel: &Kernel) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let interrupter = kernel.interrupter();
    Ok(tokio::spawn(async move {
        while interrupt.recv().await.is_some() {
            if let Some(interrupter) = &interrupter {
                interrupter.interrupt();
            }
        }
    }))
}

fn terminated() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    Ok(async move {
        terminate.recv().await;
    })
}

/// `spindle run --jupyter`: serves the running kernel over Jupyter and
/// writes the connection file into the runtime folder
/// (`$XDG_RUNTIME_DIR/spindle/kernel-RUN_ID.json`), removed at the end.
pub async fn serve_attached(kernel: &Kernel) -> anyhow::Result<JupyterServer> {
    let file = spindle_jupyter::run_connection_file(kernel.run_id());
    let mut config = JupyterConfig::new(spindle_jupyter::local_connection("spindle"));
    config.connection_file = Some(file.clone());
    let server = spindle_jupyter::serve(kernel.clone(), config).await?;
    eprintln!(
        "spindle: Jupyter: jupyter console --existing {}",
        file.display()
    );
    Ok(server)
}
