//! `spindle run FILE`: starts a [`Kernel`] on the script and runs it in the
//! foreground until Ctrl-C, SIGTERM, every service coming to rest (a graph
//! without pipelines), or a critical service giving up. With `--http` the
//! HTTP front end serves it. This file wires the pieces; `output.rs` prints
//! events and logs, `table.rs` draws the live status table.

mod output;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use spindle_http::HttpConfig;
use spindle_kernel::supervisor;
use spindle_kernel::{
    GuardCommand, Kernel, KernelConfig, KernelError, KernelEvent, KernelOutcome, KernelSource,
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use output::{Output, Printed, Printer};

/// Run a script's service graph in the foreground.
///
/// Services start in dependency waves, are probed and restarted by their
/// policy, and stop in reverse dependency order on Ctrl-C or SIGTERM. On a
/// terminal a live status table is drawn below the services' output;
/// otherwise each state change is printed as a line. Every service's output
/// is also kept in DATA_DIR/logs/SERVICE.log.
///
/// With --http, requests are admitted at once: a request for a pipeline
/// whose services are still starting waits for them (within its deadline).
/// Shutdown answers every admitted request before services stop. A second
/// Ctrl-C (or SIGTERM) skips the remaining grace periods.
///
/// Exit status: 0 after a clean shutdown, 1 when the script has errors, 3
/// when a critical service gave up.
#[derive(clap::Args)]
#[command(after_help = "\
Example:
  spindle run examples/quickstart.lua
  spindle run graph.lua --events jsonl > events.jsonl
  spindle run graph.lua --http 127.0.0.1:8080   # then: curl -d '{\"text\":\"hi\"}' 127.0.0.1:8080/v1/pipelines/NAME

With --events jsonl, stdout carries one JSON object per state change:
  {\"ts\":1763779200.123456,\"service\":\"db\",\"from\":\"running\",\"to\":\"ready\",
   \"reason\":\"readiness probe passed\",\"pid\":4242,\"restarts\":0}
ts is Unix time in seconds with a fraction; services' output goes to stderr.")]
pub struct Args {
    /// The Lua script that declares the graph.
    file: PathBuf,
    /// Print events in a machine-readable format on stdout instead of the
    /// status table.
    #[arg(long, value_enum, value_name = "FORMAT")]
    events: Option<EventFormat>,
    /// The run's data directory (logs go to DIR/logs/SERVICE.log).
    /// Default: $XDG_STATE_HOME/spindle/runs/RUN_ID (XDG_STATE_HOME defaults
    /// to ~/.local/state).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Serve the script's pipelines, the status and health API and /metrics
    /// over HTTP on this address, e.g. 127.0.0.1:8080 (port 0 picks a free
    /// one; the address is printed). See docs/http.md.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Let debuggers attach on 127.0.0.1:PORT (0 picks one); the port and
    /// the token file (DATA_DIR/debug-token) are printed. See
    /// docs/debugging.md.
    #[arg(long, value_name = "PORT")]
    debug_port: Option<u16>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EventFormat {
    /// One JSON object per line.
    Jsonl,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // One thread is plenty for the supervisor (it waits on I/O and timers)
    // and costs less CPU than work-stealing workers waking each other; forks
    // happen on the supervisor's spawner threads, Lua on its own thread and
    // printing on its own. It also means nothing runs before `run_kernel`
    // awaits, so its subscription sees every event from the start.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_kernel(args))
}

/// The hidden `__guard` process: see `spindle_kernel::supervisor::run_guard`.
pub fn guard() -> anyhow::Result<ExitCode> {
    supervisor::ignore_terminal_signals();
    supervisor::run_guard(std::io::stdin().lock());
    Ok(ExitCode::SUCCESS)
}

async fn run_kernel(args: Args) -> anyhow::Result<ExitCode> {
    let run_id = spindle_kernel::new_run_id();
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir(&run_id)?,
    };
    let guard = std::env::current_exe().ok().map(|program| GuardCommand {
        program,
        args: vec!["__guard".to_owned()],
    });
    let config = KernelConfig {
        run_id: Some(run_id.clone()),
        data_dir: Some(data_dir.clone()),
        child_subreaper: true,
        guard,
        ..KernelConfig::default()
    };
    let kernel = match Kernel::start(KernelSource::Script(args.file.clone()), config) {
        Ok(kernel) => kernel,
        Err(KernelError::Script { diagnostics, .. }) => {
            eprint!("{}", super::diagnostics_text(&diagnostics));
            return Ok(ExitCode::from(1));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot run {}", args.file.display()));
        }
    };
    eprint!("{}", super::diagnostics_text(kernel.diagnostics()));
    for notice in kernel.notices() {
        eprintln!("spindle: warning: {notice}");
    }
    eprintln!(
        "spindle: run {run_id}, logs in {}",
        data_dir.join("logs").display()
    );
    // Subscribed before anything else runs on this thread: every event.
    let events = kernel.subscribe(false);
    let logs = kernel.subscribe_logs();
    if let Some(address) = args.http {
        start_http(&kernel, address).await?;
    }
    if let Some(port) = args.debug_port {
        super::dap::start_debug_port(&kernel, port, &data_dir).await?;
    }
    watch_signals(kernel.clone())?;
    let output = match args.events {
        Some(EventFormat::Jsonl) => Output::Jsonl,
        None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            Output::Table(table::StatusTable::new(&kernel.graph()))
        }
        None => Output::Plain,
    };
    let printer = Printer::start(output)?;
    forward(events, logs, &printer).await;
    let outcome = kernel.wait().await;
    // Waits until everything is printed; the services are already stopped.
    tokio::task::spawn_blocking(move || printer.finish())
        .await
        .context("the printer thread failed")?;
    let outcome = outcome.context("the kernel failed")?;
    report(&outcome);
    Ok(exit_code(&outcome))
}

/// Binds the address and serves the kernel until it begins to shut down.
async fn start_http(kernel: &Kernel, address: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    eprintln!(
        "spindle: serving {} pipeline(s) on http://{}",
        kernel.graph().pipelines.len(),
        listener.local_addr().unwrap_or(address)
    );
    let stop_accepting = CancellationToken::new();
    let kernel_for_stop = kernel.clone();
    let stop = stop_accepting.clone();
    tokio::spawn(async move {
        kernel_for_stop.shutting_down().await;
        stop.cancel();
    });
    let kernel = kernel.clone();
    tokio::spawn(async move {
        if let Err(error) =
            spindle_http::serve(listener, kernel, HttpConfig::default(), stop_accepting).await
        {
            eprintln!("spindle: http: {error}");
        }
    });
    Ok(())
}

/// Hands events and log lines to the printer until the kernel's streams end.
async fn forward(
    mut events: spindle_kernel::KernelSubscription,
    mut logs: tokio::sync::broadcast::Receiver<supervisor::LogLine>,
    printer: &Printer,
) {
    let mut events_open = true;
    let mut logs_open = true;
    while events_open || logs_open {
        tokio::select! {
            event = events.recv(), if events_open => match event {
                Some(KernelEvent::Service(event)) => printer.send(Printed::Event(event)),
                Some(KernelEvent::Pipeline { name, gate }) => {
                    printer.send(Printed::Pipeline { name, gate });
                }
                Some(KernelEvent::Lagged { missed, snapshot }) => {
                    printer.send(Printed::Resync { missed, snapshot });
                }
                Some(KernelEvent::Request(_) | KernelEvent::RequestsLagged { .. }) => {}
                None => events_open = false,
            },
            line = logs.recv(), if logs_open => match line {
                Ok(line) => printer.send(Printed::Log(line)),
                Err(RecvError::Lagged(missed)) => printer.send(Printed::LogsSkipped(missed)),
                Err(RecvError::Closed) => logs_open = false,
            },
        }
    }
}

fn report(outcome: &KernelOutcome) {
    for (service, reason) in &outcome.services.critical_failures {
        eprintln!("spindle: critical service {service} gave up: {reason}");
    }
    if outcome.services.swept > 0 {
        eprintln!(
            "spindle: killed {} leftover process(es) that had left their service's group",
            outcome.services.swept
        );
    }
}

/// Ctrl-C and SIGTERM ask for an orderly shutdown; a second one skips the
/// remaining grace periods (SIGKILL to every service's process group).
fn watch_signals(kernel: Kernel) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => eprintln!("\nspindle: interrupted, stopping services"),
            _ = terminate.recv() => eprintln!("spindle: SIGTERM, stopping services"),
        }
        kernel.shutdown();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("spindle: second signal, killing services now");
        kernel.kill_now();
    });
    Ok(())
}

fn exit_code(outcome: &KernelOutcome) -> ExitCode {
    if outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn default_data_dir(run_id: &str) -> anyhow::Result<PathBuf> {
    let state_home = match std::env::var_os("XDG_STATE_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .context("neither XDG_STATE_HOME nor HOME is set; pass --data-dir")?;
            Path::new(&home).join(".local/state")
        }
    };
    Ok(state_home.join("spindle/runs").join(run_id))
}
