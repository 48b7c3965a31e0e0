//! The guard: a separate process (`spindle __guard`) that kills what the
//! supervisor started if the supervisor dies without cleaning up (SIGKILL,
//! a crash).
//!
//! The supervisor writes `run <id>` once, then `+<pgid>` and `-<pgid>` lines
//! on the guard's stdin as it creates and removes process groups. When stdin
//! reaches end-of-file (the supervisor exited, however it exited), the guard
//! SIGKILLs every group still registered, then every process whose
//! environment carries `SPINDLE_RUN_ID=<id>` (grandchildren that left their
//! group), and exits. After a clean shutdown nothing is registered and the
//! sweep finds nothing.

use std::collections::HashSet;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{os, reaper};

/// The supervisor's end of the pipe to a guard process.
pub struct GuardLink {
    stdin: Mutex<ChildStdin>,
    child: Mutex<Child>,
}

impl GuardLink {
    /// Spawns `program args...` as the guard for `run_id`, in its own process
    /// group (a terminal's Ctrl-C does not reach it) with stdout and stderr
    /// on /dev/null (it never holds a caller's pipe open).
    pub fn spawn(program: &Path, args: &[&str], run_id: &str) -> io::Result<GuardLink> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("guard has no stdin"))?;
        writeln!(stdin, "run {run_id}")?;
        // Nobody here waits for the guard; should it die first, the reaper
        // reaps it.
        reaper::watch(child.id() as i32);
        Ok(GuardLink {
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    /// Tells the guard about a new process group.
    pub fn register(&self, pgid: i32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Tells the guard a process group is gone.
    pub fn unregister(&self, pgid: i32) {
        self.send(&format!("-{pgid}\n"));
    }

    /// The guard's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .map(|child| child.id())
            .unwrap_or_default()
    }

    fn send(&self, line: &str) {
        // A few bytes into a pipe the guard drains; no await while locked.
        if let Ok(mut stdin) = self.stdin.lock() {
            let _ = stdin.write_all(line.as_bytes());
        }
    }
}

/// The guard process's main loop: reads the protocol from `input` until
/// end-of-file, then kills what is registered and sweeps the run. Returns
/// the number of processes it had to kill.
pub fn run_guard(input: impl BufRead) -> usize {
    let mut run_id: Option<String> = None;
    let mut groups: HashSet<i32> = HashSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("run ") {
            run_id = Some(id.trim().to_owned());
        } else if let Some(pgid) = line
            .strip_prefix('+')
            .and_then(|pgid| pgid.trim().parse().ok())
        {
            groups.insert(pgid);
        } else if let Some(pgid) = line
            .strip_prefix('-')
            .and_then(|pgid| pgid.trim().parse::<i32>().ok())
        {
            groups.remove(&pgid);
        }
    }
    let mut killed = 0;
    for pgid in &groups {
        os::signal_group(*pgid, os::SIGKILL);
        killed += 1;
    }
    if let Some(run_id) = run_id {
        killed += sweep_run(&run_id, Duration::from_secs(2)).len();
    }
    killed
}

/// Makes this process (the guard) ignore SIGINT, SIGHUP and SIGPIPE, so it
/// outlives the terminal session and its Ctrl-C long enough to clean up.
/// Process-wide: call it in the guard process only.
pub fn ignore_terminal_signals() {
    os::ignore_signal(libc::SIGINT);
    os::ignore_signal(libc::SIGHUP);
    os::ignore_signal(libc::SIGPIPE);
}

/// SIGKILLs every process of the run (found through its environment) until
/// none is left or `within` has passed. Returns the pids it signalled.
pub fn sweep_run(run_id: &str, within: Duration) -> Vec<i32> {
    let deadline = Instant::now() + within;
    let mut signalled: Vec<i32> = Vec::new();
    loop {
        let pids = os::processes_of_run(run_id);
        if pids.is_empty() || Instant::now() >= deadline {
            return signalled;
        }
        for pid in pids {
            os::signal_process(pid, os::SIGKILL);
            if !signalled.contains(&pid) {
                signalled.push(pid);
            }
        }
        // Polling /proc until the processes are gone; nothing to wait on.
        std::thread::sleep(Duration::from_millis(5));
    }
}
