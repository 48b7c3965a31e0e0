//! The live status table `spindle run` draws on a terminal (and
//! `spindle ctl status --watch`, fed from the control API's events).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use spindle_kernel::KernelSnapshot;
use spindle_kernel::supervisor::{Event, LogLine, LogStream, ServiceState};
use spindle_scheduler::Gate;
use spindle_scripting::GraphSpec;

struct Row {
    service: String,
    state: ServiceState,
    pid: Option<u32>,
    restarts: u32,
    running_since: Option<Instant>,
    reason: String,
}

/// The live status table: rows fed by events, redrawn in place with ANSI
/// cursor movement; log lines are printed above it, and one line below it
/// says which pipelines can be served.
pub(crate) struct StatusTable {
    rows: Vec<Row>,
    pipelines: Vec<(String, Gate)>,
    index: HashMap<String, usize>,
    drawn_lines: usize,
    pending_logs: Vec<String>,
    dirty: bool,
    last_draw: Option<Instant>,
}

impl StatusTable {
    pub(crate) fn new(graph: &GraphSpec) -> StatusTable {
        StatusTable::from_names(
            graph.services.iter().map(|service| service.name.clone()),
            graph.pipelines.iter().map(|pipeline| pipeline.name.clone()),
        )
    }

    /// A table of these services and pipelines, all pending.
    pub(crate) fn from_names(
        services: impl IntoIterator<Item = String>,
        pipelines: impl IntoIterator<Item = String>,
    ) -> StatusTable {
        let rows: Vec<Row> = services
            .into_iter()
            .map(|service| Row {
                service,
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
            pipelines: pipelines
                .into_iter()
                .map(|pipeline| {
                    (
                        pipeline,
                        Gate::Closed {
                            reason: "starting".to_owned(),
                        },
                    )
                })
                .collect(),
            index,
            drawn_lines: 0,
            pending_logs: Vec::new(),
            dirty: true,
            last_draw: None,
        }
    }

    pub(crate) fn pipeline(&mut self, name: &str, gate: &Gate) {
        if let Some(entry) = self.pipelines.iter_mut().find(|(known, _)| known == name) {
            entry.1 = gate.clone();
            self.dirty = true;
        }
    }

    pub(crate) fn notice(&mut self, text: &str) {
        self.pending_logs.push(text.to_owned());
    }

    /// Starts again from the kernel's state (after falling behind).
    pub(crate) fn resync(&mut self, snapshot: &KernelSnapshot) {
        for service in &snapshot.services {
            if let Some(row) = self
                .index
                .get(&service.name)
                .map(|idx| &mut self.rows[*idx])
            {
                row.state = service.state;
                row.pid = service.pid;
                row.restarts = service.restarts;
                row.reason = service.reason.clone();
                row.running_since = service.state.is_active().then(Instant::now);
            }
        }
        for pipeline in &snapshot.pipelines {
            self.pipeline(&pipeline.name, &pipeline.gate);
        }
        self.dirty = true;
    }

    /// Sets one row as a status listing has it (`running_for`: how long
    /// its current instance has run).
    pub(crate) fn set_row(
        &mut self,
        service: &str,
        state: ServiceState,
        pid: Option<u32>,
        restarts: u32,
        running_for: Option<Duration>,
        reason: &str,
    ) {
        if let Some(row) = self.index.get(service).map(|idx| &mut self.rows[*idx]) {
            row.state = state;
            row.pid = pid;
            row.restarts = restarts;
            row.reason = reason.to_owned();
            row.running_since = running_for.and_then(|ran| Instant::now().checked_sub(ran));
            self.dirty = true;
        }
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if !self.index.contains_key(&event.service) {
            // A service a reloaded script added.
            self.index.insert(event.service.clone(), self.rows.len());
            self.rows.push(Row {
                service: event.service.clone(),
                state: ServiceState::Pending,
                pid: None,
                restarts: 0,
                running_since: None,
                reason: String::new(),
            });
        }
        let row = &mut self.rows[self.index[&event.service]];
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

    pub(crate) fn log(&mut self, line: &LogLine) {
        let marker = match line.stream {
            LogStream::Stdout => '|',
            LogStream::Stderr => '!',
        };
        self.pending_logs
            .push(format!("{} {marker} {}", line.service, line.line));
    }

    pub(crate) fn redraw(&mut self) {
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
        let mut drawn = self.rows.len() + 1;
        if !self.pipelines.is_empty() {
            let states: Vec<String> = self
                .pipelines
                .iter()
                .map(|(name, gate)| match gate {
                    Gate::Open => format!("{name} \x1b[32mready\x1b[0m"),
                    Gate::Closed { .. } => format!("{name} \x1b[36mwaiting\x1b[0m"),
                    Gate::Failed { .. } => format!("{name} \x1b[31mfailed\x1b[0m"),
                })
                .collect();
            screen.push_str(&format!("\x1b[1mPIPELINES\x1b[0m  {}\n", states.join(", ")));
            drawn += 1;
        }
        self.drawn_lines = drawn;
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
