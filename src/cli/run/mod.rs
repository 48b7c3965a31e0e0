//! `spindle run FILE`: starts a [`Kernel`] on the script and runs it in the
//! foreground until Ctrl-C, SIGTERM, every service coming to rest (a graph
//! without pipelines), or a critical service giving up. The HTTP front end
//! always serves it: on `--http`, or on a loopback control port for
//! `spindle ctl`. This file wires the pieces; `output.rs` prints events and
//! logs, `table.rs` draws the live status table, `control.rs` serves the
//! API and publishes the connection file, `signals.rs` handles signals,
//! `notify.rs` speaks systemd's readiness protocol, `daemon.rs` detaches,
//! `hot_reload.rs` follows file changes, `reload.rs` reloads and
//! `logging.rs` owns the run's own log.

mod control;
mod daemon;
mod hot_reload;
mod logging;
mod notify;
mod output;
mod reload;
mod signals;
pub(crate) mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use spindle_kernel::supervisor;
use spindle_kernel::{
    FirstSubscriptions, GuardCommand, Kernel, KernelConfig, KernelError, KernelEvent,
    KernelOutcome, KernelSource,
};
use tokio::sync::broadcast::error::RecvError;

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
  spindle run graph.lua --watch                 # reload when a .lua file changes
  spindle run graph.lua --detach --pid-file /run/spindle.pid
Then operate it with `spindle ctl status`, `spindle ctl restart NAME`, ...

Signals: SIGINT/SIGTERM stop in dependency order (a second one kills at
once), SIGHUP reloads the script, SIGUSR1 writes a status dump to the log,
SIGUSR2 switches debug logging on and off. With NOTIFY_SOCKET set (systemd
Type=notify) it sends READY=1 once every service has settled.

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
    /// Also serve the running kernel over Jupyter: cells run on the live
    /// graph. The connection file goes to
    /// $XDG_RUNTIME_DIR/spindle/kernel-RUN_ID.json (printed); see
    /// docs/jupyter.md.
    #[arg(long)]
    jupyter: bool,
    /// Serve the pipelines that declare `s.netlink` to the kernel module
    /// (`genl`, the default when any pipeline declares one: it waits for the
    /// module if it is not loaded) or to a `spindle netlink-peer`
    /// (`usersock:PORT`). See docs/netlink-protocol.md.
    #[arg(long, value_name = "TRANSPORT")]
    netlink: Option<String>,
    /// The bearer token the HTTP API requires (default: generated for the
    /// loopback control port and for a non-loopback --http; none for a
    /// loopback --http). Also read from SPINDLE_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Record every request (its admission, each stage's output and
    /// timing, its answer), every service event and every operation in a
    /// journal in DIR (segments journal-NNNNNN.spj). Read it with `spindle
    /// journal`, replay it with `spindle replay DIR`. Wins over the
    /// script's `s.settings { journal = "DIR" }`. See docs/journal.md.
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// With a journal: start a new segment when one reaches this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    journal_segment_mib: u64,
    /// With a journal: keep at most this many segments, deleting the
    /// oldest (0 keeps all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    journal_keep: usize,
    /// Reload the script when it or a module it requires changes.
    #[arg(long)]
    watch: bool,
    /// Run as a daemon: return once every service has settled, leaving the
    /// run in the background (its output in --log-file).
    #[arg(long)]
    detach: bool,
    /// With --detach: write the daemon's pid here (mode 0644).
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// With --detach: where the run's own output goes (appended). Default:
    /// DATA_DIR/spindle.log.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// With --detach: the daemon's working directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    workdir: PathBuf,
    /// With --detach: the daemon's umask, in octal.
    #[arg(long, value_name = "MASK", default_value = "022", value_parser = daemon::parse_umask)]
    umask: u32,
    /// Set by --detach in the daemon it starts.
    #[arg(long, hide = true)]
    detached_child: bool,
    /// Set by --detach: the run id the parent chose.
    #[arg(long, hide = true, value_name = "ID")]
    run_id: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EventFormat {
    /// One JSON object per line.
    Jsonl,
}

/// The hidden `__guard` process: see `spindle_kernel::supervisor::run_guard`.
pub fn guard() -> anyhow::Result<ExitCode> {
    supervisor::ignore_terminal_signals();
    supervisor::run_guard(std::io::stdin().lock());
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut args = args;
    let daemon = daemon::DaemonSettings {
        pid_file: args.pid_file.clone(),
        log_file: args.log_file.clone(),
        workdir: args.workdir.clone(),
        umask: args.umask,
    };
    if args.detach {
        let run_id = spindle_kernel::new_run_id();
        let data_dir = match &args.data_dir {
            Some(dir) => std::path::absolute(dir)?,
            None => default_data_dir(&run_id)?,
        };
        return daemon::detach(&run_id, &data_dir, &daemon);
    }
    // Before any thread starts: a new session, umask, working directory.
    let pid_file = if args.detached_child {
        if let Some(dir) = &args.data_dir {
            args.data_dir = Some(std::path::absolute(dir)?);
        }
        daemon::become_daemon(&mut args.file, &daemon)?
    } else {
        None
    };
    let code = run_foreground(args);
    drop(pid_file);
    code
}

fn run_foreground(args: Args) -> anyhow::Result<ExitCode> {
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

async fn run_kernel(args: Args) -> anyhow::Result<ExitCode> {
    let log_level = logging::LogLevel::install();
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(spindle_kernel::new_run_id);
    let data_dir = match args.data_dir.clone() {
        Some(dir) => dir,
        None => default_data_dir(&run_id)?,
    };
    let guard = std::env::current_exe().ok().map(|program| GuardCommand {
        program,
        args: vec!["__guard".to_owned()],
    });
    let journal_config = |dir: &Path| {
        let mut journal = spindle_journal::JournalConfig::new(dir);
        journal.max_segment_bytes = args.journal_segment_mib.max(1) << 20;
        journal.max_segments = args.journal_keep;
        journal
    };
    let config = KernelConfig {
        run_id: Some(run_id.clone()),
        data_dir: Some(data_dir.clone()),
        child_subreaper: true,
        guard,
        remote_engines: Some(std::sync::Arc::new(spindle_remote::RemoteBackend::new())),
        journal: args.journal.as_deref().map(journal_config),
        // The script's `s.settings { journal = "DIR" }`, when no --journal.
        script_journal: Some(journal_config(Path::new(""))),
        ..KernelConfig::default()
    };
    // Subscribed before any service starts: every event and output line.
    let (kernel, first) =
        match Kernel::start_subscribed(KernelSource::Script(args.file.clone()), config, false) {
            Ok(started) => started,
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
    if let Some(dir) = kernel.journal_dir() {
        eprintln!("spindle: journal in {}", dir.display());
    }
    let FirstSubscriptions { events, logs } = first;
    let token = args.token.or_else(|| {
        std::env::var("SPINDLE_TOKEN")
            .ok()
            .filter(|token| !token.is_empty())
    });
    let control = control::start(
        &kernel,
        control::ControlSettings {
            http: args.http,
            token,
        },
    )
    .await?;
    if args.http.is_none() {
        eprintln!(
            "spindle: control API on http://{} (`spindle ctl --kernel {run_id} status`)",
            control.address
        );
    }
    let notifier = notify::Notifier::from_env().map(std::sync::Arc::new);
    if let Some(notifier) = &notifier {
        tokio::spawn(notify::follow(kernel.clone(), notifier.clone()));
    }
    signals::watch(kernel.clone(), log_level, notifier.clone())?;
    if args.watch {
        hot_reload::watch(kernel.clone(), &args.file, notifier.clone())?;
    }
    let jupyter = match args.jupyter {
        true => Some(super::kernel::serve_attached(&kernel).await?),
        false => None,
    };
    let declares_netlink = kernel.graph().pipelines.iter().any(|pipeline| {
        pipeline
            .sources
            .iter()
            .any(|source| matches!(source, spindle_scripting::SourceSpec::Netlink { .. }))
    });
    let transport = args
        .netlink
        .clone()
        .or_else(|| declares_netlink.then(|| "genl".to_owned()));
    if let Some(transport) = &transport {
        super::netlink_peer::start_for_run(&kernel, transport)?;
    }
    if let Some(port) = args.debug_port {
        super::dap::start_debug_port(&kernel, port, &data_dir).await?;
    }
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
    drop(jupyter);
    // Waits until everything is printed; the services are already stopped.
    tokio::task::spawn_blocking(move || printer.finish())
        .await
        .context("the printer thread failed")?;
    // The connection file goes once the run has ended.
    drop(control);
    let outcome = outcome.context("the kernel failed")?;
    report(&outcome);
    if let Some(stats) = kernel.journal_stats() {
        eprintln!(
            "spindle: journal: {} record(s), {} byte(s) in {} segment(s)",
            stats.records, stats.bytes, stats.segments
        );
        if let Some(error) = &stats.failed {
            eprintln!("spindle: journal stopped writing: {error}");
        }
    }
    Ok(exit_code(&outcome))
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

fn exit_code(outcome: &KernelOutcome) -> ExitCode {
    if outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

pub(crate) fn default_data_dir(run_id: &str) -> anyhow::Result<PathBuf> {
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
