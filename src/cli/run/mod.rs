//! `spindle run FILE`: evaluates a script and runs its service graph in the
//! foreground until Ctrl-C, SIGTERM, every service coming to rest, or a
//! critical service giving up. Printing only; the supervisor is
//! `spindle_kernel::supervisor`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use spindle_kernel::embedding::{EmbeddingRuntime, EngineDirectory};
use spindle_kernel::http::{HttpConfig, serve};
use spindle_kernel::requests::{EffectsWiring, RequestPath, RequestPathConfig};
use spindle_kernel::status::StatusBoard;
use spindle_kernel::supervisor::{
    self, Event, GuardLink, LogLine, LogStream, LuaProbes, RunOutcome, ServiceState,
    SupervisorConfig,
};
use spindle_scripting::{FunctionId, GraphSpec, ScriptHost};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Run a script's service graph in the foreground.
///
/// Services start in dependency waves, are probed and restarted by their
/// policy, and stop in reverse dependency order on Ctrl-C or SIGTERM. On a
/// terminal a live status table is drawn below the services' output;
/// otherwise each state change is printed as a line. Every service's output
/// is also kept in DATA_DIR/logs/SERVICE.log.
///
/// A second Ctrl-C (or SIGTERM) skips the remaining grace periods.
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
    /// Serve the script's pipelines, the status API and /metrics over HTTP
    /// on this address, e.g. 127.0.0.1:8080 (see docs/http.md).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EventFormat {
    /// One JSON object per line.
    Jsonl,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let directory = EngineDirectory::default();
    let wiring = EffectsWiring::new(directory.clone());
    let (host, evaluation) = ScriptHost::start_with(&args.file, wiring.effects())
        .with_context(|| format!("cannot evaluate {}", args.file.display()))?;
    eprint!("{}", super::diagnostics_text(&evaluation.diagnostics));
    let graph = match evaluation.graph {
        Some(graph) if !evaluation.has_errors() => graph,
        _ => return Ok(ExitCode::from(1)),
    };
    let run_id = new_run_id();
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir(&run_id)?,
    };
    let log_dir = data_dir.join("logs");
    if let Err(error) = supervisor::become_child_subreaper() {
        eprintln!(
            "spindle: warning: cannot become a child subreaper ({error}); orphans may escape"
        );
    }
    let guard = match std::env::current_exe()
        .and_then(|program| GuardLink::spawn(&program, &["__guard"], &run_id))
    {
        Ok(guard) => Some(Arc::new(guard)),
        Err(error) => {
            eprintln!(
                "spindle: warning: cannot start the guard process ({error}); a killed spindle may leave processes behind"
            );
            None
        }
    };
    eprintln!("spindle: run {run_id}, logs in {}", log_dir.display());
    // One thread is plenty for the supervisor (it waits on I/O and timers)
    // and costs less CPU than work-stealing workers waking each other; forks
    // happen on the supervisor's spawner threads and printing on its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let output = match args.events {
        Some(EventFormat::Jsonl) => Output::Jsonl,
        None if std::io::stdout().is_terminal() => Output::Table(StatusTable::new(&graph)),
        None => Output::Plain,
    };
    let config = SupervisorConfig {
        run_id,
        log_dir: Some(log_dir),
        lua_probes: Some(Arc::new(ScriptProbes(host.clone()))),
        in_process: Some(Arc::new(EmbeddingRuntime {
            directory,
            cache: None,
        })),
        guard,
        ..SupervisorConfig::default()
    };
    let http = args.http.map(|address| HttpSetup {
        address,
        host,
        wiring,
    });
    let outcome = runtime.block_on(run_graph(graph, config, output, http))?;
    Ok(exit_code(&outcome))
}

/// The hidden `__guard` process: see `spindle_kernel::supervisor::run_guard`.
pub fn guard() -> anyhow::Result<ExitCode> {
    supervisor::ignore_terminal_signals();
    supervisor::run_guard(std::io::stdin().lock());
    Ok(ExitCode::SUCCESS)
}

/// Lua probes run on the script host's thread.
struct ScriptProbes(ScriptHost);

impl LuaProbes for ScriptProbes {
    fn call_check(
        &self,
        function: FunctionId,
        timeout: Duration,
        reply: Box<dyn FnOnce(Result<bool, String>) + Send>,
    ) {
        self.0.call_check(function, timeout, reply);
    }
}

/// What `--http` needs: where to listen, and the script host wired to the
/// request path.
struct HttpSetup {
    address: std::net::SocketAddr,
    host: ScriptHost,
    wiring: EffectsWiring,
}

/// Binds the address and serves the request path until `shutdown`.
async fn start_http(
    setup: HttpSetup,
    graph: &GraphSpec,
    status: StatusBoard,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(setup.address)
        .await
        .with_context(|| format!("cannot listen on {}", setup.address))?;
    let path = Arc::new(RequestPath::start(
        graph,
        setup.host,
        setup.wiring,
        RequestPathConfig::default(),
        shutdown.clone(),
    ));
    eprintln!(
        "spindle: serving {} pipeline(s) on http://{}",
        graph.pipelines.len(),
        listener.local_addr().unwrap_or(setup.address)
    );
    tokio::spawn(async move {
        if let Err(error) = serve(listener, path, status, HttpConfig::default(), shutdown).await {
            eprintln!("spindle: http: {error}");
        }
    });
    Ok(())
}

async fn run_graph(
    graph: GraphSpec,
    mut config: SupervisorConfig,
    output: Output,
    http: Option<HttpSetup>,
) -> anyhow::Result<RunOutcome> {
    let (event_sender, mut events) = mpsc::unbounded_channel();
    let (log_sender, mut logs) = mpsc::unbounded_channel();
    config.subscribers.push(event_sender);
    config.logs = Some(log_sender);
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone(), config.kill_now.clone())?;
    if let Some(http) = http {
        let status = StatusBoard::default();
        config.subscribers.push(status.subscriber());
        start_http(http, &graph, status, shutdown.clone()).await?;
    }
    let printer = Printer::start(output)?;
    let mut run = tokio::spawn(supervisor::run(graph, config, shutdown));
    let outcome = loop {
        tokio::select! {
            Some(event) = events.recv() => printer.send(Printed::Event(event)),
            Some(line) = logs.recv() => printer.send(Printed::Log(line)),
            outcome = &mut run => break outcome.context("the supervisor task failed")??,
        }
    };
    while let Ok(line) = logs.try_recv() {
        printer.send(Printed::Log(line));
    }
    while let Ok(event) = events.try_recv() {
        printer.send(Printed::Event(event));
    }
    // Waits until everything is printed; the services are already stopped.
    tokio::task::spawn_blocking(move || printer.finish())
        .await
        .context("the printer thread failed")?;
    for (service, reason) in &outcome.critical_failures {
        eprintln!("spindle: critical service {service} gave up: {reason}");
    }
    if outcome.swept > 0 {
        eprintln!(
            "spindle: killed {} leftover process(es) that had left their service's group",
            outcome.swept
        );
    }
    Ok(outcome)
}

/// What the printer thread prints.
enum Printed {
    Event(Event),
    Log(LogLine),
}

/// Prints on a thread of its own: a reader that stops reading spindle's
/// stdout blocks only this thread, never the supervisor.
struct Printer {
    items: std::sync::mpsc::Sender<Printed>,
    thread: std::thread::JoinHandle<()>,
}

impl Printer {
    fn start(mut output: Output) -> anyhow::Result<Printer> {
        let (items, queue) = std::sync::mpsc::channel::<Printed>();
        let thread = std::thread::Builder::new()
            .name("spindle-printer".to_owned())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                loop {
                    match queue.recv_timeout(Duration::from_secs(1)) {
                        Ok(item) => {
                            output.print(&item);
                            while let Ok(item) = queue.try_recv() {
                                output.print(&item);
                            }
                            output.flush();
                        }
                        // The table's uptime column ticks.
                        Err(RecvTimeoutError::Timeout) => output.flush(),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                output.finish();
            })
            .context("cannot start the printer thread")?;
        Ok(Printer { items, thread })
    }

    fn send(&self, item: Printed) {
        let _ = self.items.send(item);
    }

    fn finish(self) {
        drop(self.items);
        let _ = self.thread.join();
    }
}

/// Ctrl-C and SIGTERM ask for an orderly shutdown; a second one skips the
/// remaining grace periods (SIGKILL to every service's process group).
fn watch_signals(shutdown: CancellationToken, kill_now: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => eprintln!("\nspindle: interrupted, stopping services"),
            _ = terminate.recv() => eprintln!("spindle: SIGTERM, stopping services"),
        }
        shutdown.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("spindle: second signal, killing services now");
        kill_now.cancel();
    });
    Ok(())
}

fn exit_code(outcome: &RunOutcome) -> ExitCode {
    if outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_secs(), std::process::id())
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

/// Where events and log lines go.
enum Output {
    /// `--events jsonl`: events on stdout, logs on stderr.
    Jsonl,
    /// Not a terminal: event lines and log lines on stdout.
    Plain,
    /// A terminal: logs scroll above a status table that is redrawn.
    Table(StatusTable),
}

impl Output {
    fn print(&mut self, item: &Printed) {
        match item {
            Printed::Event(event) => self.event(event),
            Printed::Log(line) => self.log(line),
        }
    }

    fn event(&mut self, event: &Event) {
        match self {
            // Write errors (a closed pipe) are ignored: the supervisor goes on
            // and stops its services whether or not anyone reads.
            Output::Jsonl => {
                let _ = writeln!(std::io::stdout(), "{}", event_json(event));
            }
            Output::Plain => drop(writeln!(
                std::io::stdout(),
                "{} {}: {} -> {}: {}",
                format_unix(event.at),
                event.service,
                event.from,
                event.to,
                event.reason
            )),
            Output::Table(table) => table.apply(event),
        }
    }

    fn log(&mut self, line: &LogLine) {
        match self {
            Output::Jsonl => drop(writeln!(
                std::io::stderr(),
                "{} | {}",
                line.service,
                line.line
            )),
            Output::Plain => drop(writeln!(
                std::io::stdout(),
                "{} | {}",
                line.service,
                line.line
            )),
            Output::Table(table) => table.log(line),
        }
    }

    fn flush(&mut self) {
        if let Output::Table(table) = self {
            table.redraw();
        }
        let _ = std::io::stdout().flush();
    }

    fn finish(&mut self) {
        if let Output::Table(table) = self {
            table.redraw();
        }
    }
}

/// One event as a JSON line (see `Args`' help and `docs/supervisor.md`).
fn event_json(event: &Event) -> String {
    serde_json::json!({
        "ts": unix_seconds(event.at),
        "service": event.service,
        "from": event.from.name(),
        "to": event.to.name(),
        "reason": event.reason,
        "pid": event.pid,
        "restarts": event.restarts,
    })
    .to_string()
}

fn unix_seconds(at: SystemTime) -> f64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    // Microsecond precision keeps the number exact in a double.
    (since.as_micros() as f64) / 1e6
}

fn format_unix(at: SystemTime) -> String {
    format!("{:.3}", unix_seconds(at))
}

struct Row {
    service: String,
    state: ServiceState,
    pid: Option<u32>,
    restarts: u32,
    running_since: Option<Instant>,
    reason: String,
}

/// The live status table: rows fed by events, redrawn in place with ANSI
/// cursor movement; log lines are printed above it.
struct StatusTable {
    rows: Vec<Row>,
    index: HashMap<String, usize>,
    drawn_lines: usize,
    pending_logs: Vec<String>,
    dirty: bool,
    last_draw: Option<Instant>,
}

impl StatusTable {
    fn new(graph: &GraphSpec) -> StatusTable {
        let rows: Vec<Row> = graph
            .services
            .iter()
            .map(|service| Row {
                service: service.name.clone(),
                state: ServiceState::Pending,
                pid: None,
                restarts: 0,
                running_since: None,
                reason: String::new(),
            })
            .collect();
        let index = rows
            .iter()
            .enumerate()
            .map(|(idx, row)| (row.service.clone(), idx))
            .collect();
        StatusTable {
            rows,
            index,
            drawn_lines: 0,
            pending_logs: Vec::new(),
            dirty: true,
            last_draw: None,
        }
    }

    fn apply(&mut self, event: &Event) {
        let Some(row) = self
            .index
            .get(&event.service)
            .map(|idx| &mut self.rows[*idx])
        else {
            return;
        };
        row.state = event.to;
        row.pid = event.pid;
        row.restarts = event.restarts;
        row.reason = event.reason.clone();
        match event.to {
            ServiceState::Running => row.running_since = Some(Instant::now()),
            state if !state.is_active() => row.running_since = None,
            _ => {}
        }
        self.dirty = true;
    }

    fn log(&mut self, line: &LogLine) {
        let marker = match line.stream {
            LogStream::Stdout => '|',
            LogStream::Stderr => '!',
        };
        self.pending_logs
            .push(format!("{} {marker} {}", line.service, line.line));
    }

    fn redraw(&mut self) {
        let second_passed = self
            .last_draw
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if !self.dirty && self.pending_logs.is_empty() && !second_passed {
            return;
        }
        let mut screen = String::new();
        if self.drawn_lines > 0 {
            // To the start of the table, then clear to the end of the screen.
            screen.push_str(&format!("\x1b[{}F\x1b[J", self.drawn_lines));
        }
        for line in self.pending_logs.drain(..) {
            screen.push_str(&line);
            screen.push('\n');
        }
        let width = self
            .rows
            .iter()
            .map(|row| row.service.len())
            .max()
            .unwrap_or(7)
            .max(7);
        screen.push_str(&format!(
            "\x1b[1m{:<width$}  {:<11}  {:>7}  {:>8}  {:>8}  {}\x1b[0m\n",
            "SERVICE", "STATE", "PID", "RESTARTS", "UPTIME", "LAST CHANGE"
        ));
        for row in &self.rows {
            let pid = row
                .pid
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string());
            let uptime = row
                .running_since
                .map_or_else(|| "-".to_owned(), |since| format_uptime(since.elapsed()));
            let reason: String = row.reason.chars().take(60).collect();
            screen.push_str(&format!(
                "{:<width$}  {}{:<11}\x1b[0m  {:>7}  {:>8}  {:>8}  {}\n",
                row.service,
                state_colour(row.state),
                row.state.name(),
                pid,
                row.restarts,
                uptime,
                reason
            ));
        }
        self.drawn_lines = self.rows.len() + 1;
        self.dirty = false;
        self.last_draw = Some(Instant::now());
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(screen.as_bytes());
        let _ = stdout.flush();
    }
}

fn state_colour(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Ready => "\x1b[32m",
        ServiceState::Running | ServiceState::Starting | ServiceState::Restarting => "\x1b[36m",
        ServiceState::Unhealthy | ServiceState::BackingOff | ServiceState::Stopping => "\x1b[33m",
        ServiceState::Failed | ServiceState::GaveUp => "\x1b[31m",
        _ => "\x1b[2m",
    }
}

fn format_uptime(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h{:02}m", seconds / 3600, (seconds / 60) % 60)
    }
}
