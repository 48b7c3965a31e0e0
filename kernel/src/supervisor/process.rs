//! One instance of a `process` service: a task that owns the child, copies
//! its output to the log file and the log sink, stops it on request (signal
//! to the group, grace period, SIGKILL to the group) and reports its exit.
//! The child is spawned through the reaper, which tells this task its exit
//! status (see `reaper` for why nothing here calls `waitpid`).

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spindle_scripting::ProcessSpec;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::event::{LogLine, LogStream};
use super::guard::GuardLink;
use super::os;
use super::reaper::{self, WatchedChild};
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

/// Spawns the process (on a [`Spawner`] thread) and then the task that
/// owns it. Sends [`Message::Spawned`] with the handle or the error; after a
/// successful spawn, exactly one [`Message::Exited`] follows when the
/// process has exited and its group is gone.
pub(crate) fn start(
    spawner: &Spawner,
    process: &ProcessSpec,
    env: Arc<Vec<(String, String)>>,
    context: InstanceContext,
) {
    let pending = spawner.spawn(OwnedSpawnRequest {
        command: process.command.clone(),
        cwd: process.cwd.clone(),
        env,
    });
    let command = process.command.clone();
    tokio::spawn(async move {
        let spawned = pending
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the spawner threads are gone")));
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

/// What a [`Spawner`] thread spawns: a service's command, owned.
pub(crate) struct OwnedSpawnRequest {
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub env: Arc<Vec<(String, String)>>,
}

type SpawnReply = oneshot::Sender<io::Result<WatchedChild>>;

/// Threads that spawn service processes.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that spawned a child exits, so
/// services are spawned by threads that live exactly as long as the
/// supervisor run (tokio's blocking pool retires idle threads, which would
/// kill their children). Several threads let spawns overlap: the spawning
/// thread is suspended until the child has exec'd.
pub(crate) struct Spawner {
    jobs: std::sync::mpsc::Sender<(OwnedSpawnRequest, SpawnReply)>,
}

impl Spawner {
    /// Starts `threads` spawner threads. They end when the `Spawner` is
    /// dropped.
    pub(crate) fn new(threads: usize) -> Spawner {
        let (jobs, queue) = std::sync::mpsc::channel::<(OwnedSpawnRequest, SpawnReply)>();
        let queue = Arc::new(Mutex::new(queue));
        for thread_idx in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("spindle-spawn-{thread_idx}"))
                .spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok((request, reply)) = job else { return };
                        let result = os::PreparedCommand::new(&os::CommandSpec {
                            command: &request.command,
                            cwd: &request.cwd,
                            env: &request.env,
                        })
                        .and_then(|command| reaper::spawn_watched(&command, os::Output::Capture));
                        let _ = reply.send(result);
                    }
                });
            if spawned.is_err() && thread_idx == 0 {
                tracing::error!("cannot start a spawner thread; services will fail to start");
            }
        }
        Spawner { jobs }
    }

    /// Queues a spawn; the receiver gets the watched child or the error.
    pub(crate) fn spawn(
        &self,
        request: OwnedSpawnRequest,
    ) -> oneshot::Receiver<io::Result<WatchedChild>> {
        let (reply, receiver) = oneshot::channel();
        if let Err(std::sync::mpsc::SendError((_, reply))) = self.jobs.send((request, reply)) {
            let _ = reply.send(Err(io::Error::other("the spawner threads are gone")));
        }
        receiver
    }
}

fn supervise(child: WatchedChild, command: &[String], context: &InstanceContext) -> ProcessHandle {
    let WatchedChild {
        pid,
        stdout,
        stderr,
        exit,
    } = child;
    let pgid = pid;
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
    for (stream, which) in [(stdout, LogStream::Stdout), (stderr, LogStream::Stderr)] {
        if let Some(reader) = stream.and_then(async_pipe) {
            tokio::spawn(copy_lines(
                reader,
                which,
                context.log.clone(),
                log_file.clone(),
            ));
        }
    }
    drop(log_file);
    let (stop_sender, mut stop_receiver) = oneshot::channel::<StopRequest>();
    let guard = context.guard.clone();
    let messages = context.messages.clone();
    let (service, generation) = (context.service, context.generation);
    tokio::spawn(async move {
        let mut exit = exit;
        let waited = tokio::select! {
            status = &mut exit => status,
            Ok(request) = &mut stop_receiver => {
                os::signal_group(pgid, request.signal);
                tokio::select! {
                    status = &mut exit => status,
                    () = tokio::time::sleep(request.grace) => {
                        os::signal_group(pgid, os::SIGKILL);
                        exit.await
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
            Err(_) => Exit::Other("lost track of the process: the reaper is gone".to_owned()),
        };
        let _ = messages.send(Message::Exited {
            service,
            generation,
            exit,
        });
    });
    ProcessHandle {
        pid: pid as u32,
        stop: stop_sender,
    }
}

/// The read end of an output pipe, registered with the runtime.
fn async_pipe(fd: OwnedFd) -> Option<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
        .inspect_err(|error| tracing::warn!(%error, "cannot read a service's output"))
        .ok()
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
