//! Printing a run's events and services' output, on a thread of its own.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use spindle_kernel::KernelSnapshot;
use spindle_kernel::supervisor::{Event, LogLine};
use spindle_scheduler::Gate;

use super::table::StatusTable;

/// What the printer thread prints.
pub(super) enum Printed {
    Event(Event),
    Log(LogLine),
    /// A pipeline became ready, waiting or failed.
    Pipeline {
        name: String,
        gate: Gate,
    },
    /// The printer fell behind the kernel's events and starts again from
    /// this snapshot.
    Resync {
        missed: u64,
        snapshot: Box<KernelSnapshot>,
    },
    /// Lines of services' output that were not shown (still in the logs).
    LogsSkipped(u64),
}

/// Prints on a thread of its own: a reader that stops reading spindle's
/// stdout blocks only this thread, never the supervisor.
pub(super) struct Printer {
    items: std::sync::mpsc::Sender<Printed>,
    thread: std::thread::JoinHandle<()>,
}

impl Printer {
    pub(super) fn start(mut output: Output) -> anyhow::Result<Printer> {
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

    pub(super) fn send(&self, item: Printed) {
        let _ = self.items.send(item);
    }

    pub(super) fn finish(self) {
        drop(self.items);
        let _ = self.thread.join();
    }
}

/// Where events and log lines go.
pub(super) enum Output {
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
            Printed::Pipeline { name, gate } => self.pipeline(name, gate),
            Printed::Resync { missed, snapshot } => {
                self.notice(&format!(
                    "spindle: the printer fell {missed} event(s) behind; showing the current state"
                ));
                if let Output::Table(table) = self {
                    table.resync(snapshot);
                }
            }
            Printed::LogsSkipped(missed) => self.notice(&format!(
                "spindle: {missed} line(s) of service output not shown here (they are in the log files)"
            )),
        }
    }

    fn pipeline(&mut self, name: &str, gate: &Gate) {
        let text = match gate {
            Gate::Open => format!("pipeline {name}: ready"),
            Gate::Closed { reason } => format!("pipeline {name}: waiting: {reason}"),
            Gate::Failed { reason } => format!("pipeline {name}: failed: {reason}"),
        };
        match self {
            // The JSON lines stay service events only.
            Output::Jsonl => drop(writeln!(std::io::stderr(), "spindle: {text}")),
            Output::Plain => drop(writeln!(
                std::io::stdout(),
                "{} {text}",
                format_unix(SystemTime::now())
            )),
            Output::Table(table) => table.pipeline(name, gate),
        }
    }

    fn notice(&mut self, text: &str) {
        match self {
            Output::Table(table) => table.notice(text),
            _ => drop(writeln!(std::io::stderr(), "{text}")),
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
