//! One instance of a `process` service: a task that owns the child, copies
//! its output to the log file and the log sink, stops it on request (signal
//! to the group, grace period, SIGKILL to the group) and reports its exit.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spindle_scripting::ProcessSpec;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::event::{LogLine, LogStream};
use super::guard::GuardLink;
use super::os;
use super::runner::Message;

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    Status(i32),
    Signal(i32),
    /// Ended otherwise (waiting failed, an in-process service failed).
    Other(String),
}

impl Exit {
    pub(crate) fn success(&self) -> bool {
        *self == Exit::Status(0)
    }

    fn from_status(status: std::process::ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Status(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Other(format!("unknown exit status {status}")),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Status(code) => write!(f, "exited with status {code}"),
            Exit::Signal(signal) => write!(f, "killed by {}", os::signal_name(*signal)),
            Exit::Other(reason) => f.write_str(reason),
        }
    }
}

/// Where an instance's output goes.
#[derive(Clone)]
pub(crate) struct LogTarget {
    pub service: Arc<str>,
    /// `<data-dir>/logs/<service>.log`, appended to across restarts.
    pub file: Option<PathBuf>,
    pub sink: Option<mpsc::UnboundedSender<LogLine>>,
}

/// Who to tell about the instance.
pub(crate) struct InstanceContext {
    pub service: usize,
    pub generation: u64,
    pub messages: mpsc::UnboundedSender<Message>,
    pub guard: Option<Arc<GuardLink>>,
    pub log: LogTarget,
}

/// Asks a running instance to stop.
pub(crate) struct StopRequest {
    pub signal: i32,
    pub grace: Duration,
}

/// The supervisor's handle on a running instance.
pub(crate) struct ProcessHandle {
    pub pid: u32,
    pub stop: oneshot::Sender<StopRequest>,
}

/// Spawns the process (on a [`os::Spawner`] thread) and then the task that
/// owns it. Sends [`Message::Spawned`] with the handle or the error; after a
/// successful spawn, exactly one [`Message::Exited`] follows when the
/// process has exited and its group is gone.
pub(crate) fn start(
    spawner: &os::Spawner,
    process: &ProcessSpec,
    env: Arc<Vec<(String, String)>>,
    context: InstanceContext,
) {
    let pending = spawner.spawn(os::OwnedSpawnRequest {
        command: process.command.clone(),
        cwd: process.cwd.clone(),
        env,
        capture_output: true,
    });
    let command = process.command.clone();
    tokio::spawn(async move {
        let spawned = pending
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the spawner threads are gone")));
        let result = match spawned {
            Ok(child) => Ok(supervise(child, &command, &context)),
            Err(error) => Err(format!("could not start {:?}: {error}", command[0])),
        };
        let _ = context.messages.send(Message::Spawned {
            service: context.service,
            generation: context.generation,
            result,
        });
    });
}

fn supervise(
    mut child: tokio::process::Child,
    command: &[String],
    context: &InstanceContext,
) -> ProcessHandle {
    let pid = child.id().unwrap_or_default();
    let pgid = pid as i32;
    if let Some(guard) = &context.guard {
        guard.register(pgid);
    }
    let log_file = context.log.file.as_ref().and_then(|path| {
        let mut file = File::options().create(true).append(true).open(path).ok()?;
        let _ = writeln!(
            file,
            "--- spindle: started pid {pid} at {:.3} (unix seconds): {command:?}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        Some(Arc::new(file))
    });
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(copy_lines(
            stdout,
            LogStream::Stdout,
            context.log.clone(),
            log_file.clone(),
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(copy_lines(
            stderr,
            LogStream::Stderr,
            context.log.clone(),
            log_file,
        ));
    }
    let (stop_sender, mut stop_receiver) = oneshot::channel::<StopRequest>();
    let guard = context.guard.clone();
    let messages = context.messages.clone();
    let (service, generation) = (context.service, context.generation);
    tokio::spawn(async move {
        let waited = tokio::select! {
            status = child.wait() => status,
            Ok(request) = &mut stop_receiver => {
                os::signal_group(pgid, request.signal);
                tokio::select! {
                    status = child.wait() => status,
                    () = tokio::time::sleep(request.grace) => {
                        os::signal_group(pgid, os::SIGKILL);
                        child.wait().await
                    }
                }
            }
        };
        // Whatever the leader left behind in its group goes with it.
        os::signal_group(pgid, os::SIGKILL);
        if let Some(guard) = &guard {
            guard.unregister(pgid);
        }
        let exit = match waited {
            Ok(status) => Exit::from_status(status),
            Err(error) => Exit::Other(format!("lost track of the process: {error}")),
        };
        let _ = messages.send(Message::Exited {
            service,
            generation,
            exit,
        });
    });
    ProcessHandle {
        pid,
        stop: stop_sender,
    }
}

async fn copy_lines(
    stream: impl AsyncRead + Unpin,
    which: LogStream,
    target: LogTarget,
    file: Option<Arc<File>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::with_capacity(256);
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(file) = &file {
            // One write per line: O_APPEND keeps lines of both streams whole.
            let _ = (&**file).write_all(&buffer);
        }
        if let Some(sink) = &target.sink {
            let text = String::from_utf8_lossy(&buffer);
            let line = text.trim_end_matches(['\n', '\r']).to_owned();
            let _ = sink.send(LogLine {
                service: target.service.to_string(),
                stream: which,
                line,
            });
        }
    }
}
