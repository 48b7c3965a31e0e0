//! The run's own log (stderr, or the log file of a detached run):
//! `tracing` output at the level `SPINDLE_LOG` names (default `warn`), and
//! SIGUSR2's toggle between that and `debug`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

const DEBUG_FILTER: &str = "debug,hyper=info,hyper_util=info,mio=info,notify=info,ort=warn";

/// Switches the log between its normal filter and debug.
pub(crate) struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    normal: String,
    debug: bool,
}

impl LogLevel {
    /// Installs the subscriber; `None` if one is installed already.
    pub(crate) fn install() -> Option<LogLevel> {
        let normal = std::env::var("SPINDLE_LOG")
            .ok()
            .filter(|filter| !filter.is_empty())
            .unwrap_or_else(|| "warn".to_owned());
        let filter = EnvFilter::try_new(&normal).unwrap_or_else(|_| EnvFilter::new("warn"));
        let (filter, handle) = reload::Layer::new(filter);
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(true),
            )
            .try_init()
            .ok()?;
        Some(LogLevel {
            handle,
            normal,
            debug: false,
        })
    }

    /// Debug on if it was off, off if it was on; returns whether it is on.
    pub(crate) fn toggle(&mut self) -> bool {
        self.debug = !self.debug;
        let filter = if self.debug {
            DEBUG_FILTER
        } else {
            self.normal.as_str()
        };
        if let Err(error) = self
            .handle
            .reload(EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn")))
        {
            eprintln!("spindle: cannot change the log level: {error}");
        }
        self.debug
    }
}
