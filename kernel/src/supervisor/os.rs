//! The supervisor's only door to the operating system: spawning children in
//! their own process group, signals, `prctl`, reaping and `/proc` scans.
//!
//! Everything `unsafe` and everything Linux-specific in the supervisor lives
//! here, so the logic above it reads as plain state changes. Nothing here
//! knows about services, states or events.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, mpsc};

/// Signal numbers the supervisor uses by name.
pub const SIGKILL: i32 = libc::SIGKILL;

/// Marks this process as a child subreaper (`PR_SET_CHILD_SUBREAPER`):
/// orphaned descendants reparent to it instead of to init, so a final sweep
/// can find and kill them. Call once, early, in the process that supervises.
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument and
    // touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What to spawn: a command line, its directory and extra environment.
pub(crate) struct SpawnRequest<'a> {
    pub command: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    /// Pipe stdout and stderr (a service) or send them to /dev/null (a probe).
    pub capture_output: bool,
}

/// Spawns `request` as the leader of a new process group (pgid = pid), with
/// `PR_SET_PDEATHSIG(SIGKILL)` so it dies with the thread that spawned it and
/// stdin from /dev/null. Must be called from inside a tokio runtime.
pub(crate) fn spawn_group_leader(request: &SpawnRequest<'_>) -> io::Result<tokio::process::Child> {
    let (program, args) = request
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(request.cwd)
        .envs(
            request
                .env
                .iter()
                .map(|(key, value)| (OsStr::new(key), OsStr::new(value))),
        )
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    if request.capture_output {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
    // SAFETY: getpid is async-signal-safe; the value is read before fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(111);
            }
            Ok(())
        });
    }
    command.spawn()
}

/// A [`SpawnRequest`] that owns its parts, to hand to a [`Spawner`] thread.
pub(crate) struct OwnedSpawnRequest {
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub env: Arc<Vec<(String, String)>>,
    pub capture_output: bool,
}

type SpawnReply = tokio::sync::oneshot::Sender<io::Result<tokio::process::Child>>;

/// Threads that fork service processes.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, so
/// services are forked by threads that live exactly as long as the
/// supervisor run (tokio's blocking pool retires idle threads, which would
/// kill their children). Several threads let forks overlap: a fork with
/// `pre_exec` blocks its caller until the child has exec'd.
pub(crate) struct Spawner {
    jobs: mpsc::Sender<(OwnedSpawnRequest, SpawnReply)>,
}

impl Spawner {
    /// Starts `threads` spawner threads attached to the current tokio
    /// runtime. They end when the `Spawner` is dropped.
    pub(crate) fn new(threads: usize) -> Spawner {
        let runtime = tokio::runtime::Handle::current();
        let (jobs, queue) = mpsc::channel::<(OwnedSpawnRequest, SpawnReply)>();
        let queue = Arc::new(Mutex::new(queue));
        for thread_idx in 0..threads.max(1) {
            let queue = queue.clone();
            let runtime = runtime.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("spindle-spawn-{thread_idx}"))
                .spawn(move || {
                    let _runtime = runtime.enter();
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok((request, reply)) = job else { return };
                        let result = spawn_group_leader(&SpawnRequest {
                            command: &request.command,
                            cwd: &request.cwd,
                            env: &request.env,
                            capture_output: request.capture_output,
                        });
                        let _ = reply.send(result);
                    }
                });
            if spawned.is_err() && thread_idx == 0 {
                tracing::error!("cannot start a spawner thread; services will fail to start");
            }
        }
        Spawner { jobs }
    }

    /// Queues a spawn; the receiver gets the child or the error.
    pub(crate) fn spawn(
        &self,
        request: OwnedSpawnRequest,
    ) -> tokio::sync::oneshot::Receiver<io::Result<tokio::process::Child>> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        if let Err(mpsc::SendError((_, reply))) = self.jobs.send((request, reply)) {
            let _ = reply.send(Err(io::Error::other("the spawner threads are gone")));
        }
        receiver
    }
}

/// Sends `signal` to every process of group `pgid`. A group that no longer
/// exists is not an error.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return; // never signal our own group or everything
    }
    // SAFETY: killpg has no memory effects; a stale pgid yields ESRCH.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Sends `signal` to one process.
pub fn signal_process(pid: i32, signal: i32) {
    if pid <= 1 {
        return;
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A signal's conventional name, for messages.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// Processes (other than this one) whose environment holds
/// `SPINDLE_RUN_ID=<run_id>` and that are not zombies.
pub fn processes_of_run(run_id: &str) -> Vec<i32> {
    let needle = format!("SPINDLE_RUN_ID={run_id}");
    let own_pid = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own_pid || is_zombie(pid) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ
            .split(|byte| *byte == 0)
            .any(|var| var == needle.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `pid` exists and is a zombie (state `Z` in `/proc/PID/stat`).
pub fn is_zombie(pid: i32) -> bool {
    process_state(pid) == Some('Z')
}

/// The one-letter state of `pid` from `/proc/PID/stat`, if it exists.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

/// Reaps those of `pids` that are zombie children of this process: the
/// run's processes the final sweep killed after they had reparented here
/// (this process is a subreaper). Only pids known to belong to the run are
/// touched, so children other parts of the process wait for are left alone.
pub(crate) fn reap_zombie_children(pids: &[i32]) {
    let own_pid = std::process::id() as i32;
    // The sweep's SIGKILLs may still be landing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    for pid in pids {
        while parent_of(*pid) == Some(own_pid) {
            if is_zombie(*pid) {
                let mut status = 0;
                // SAFETY: waitpid on one specific zombie child; WNOHANG never blocks.
                unsafe {
                    libc::waitpid(*pid, &mut status, libc::WNOHANG);
                }
                break;
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::yield_now();
        }
    }
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) this process has used, in seconds.
pub fn own_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident set size of this process in KiB (`VmRSS`).
pub fn own_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Ignores a signal in this process (the guard ignores terminal signals).
pub(crate) fn ignore_signal(signal: i32) {
    // SAFETY: installing SIG_IGN has no memory effects.
    unsafe {
        libc::signal(signal, libc::SIG_IGN);
    }
}
