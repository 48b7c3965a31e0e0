//! What benchmarks read about processes from outside (`/proc`: CPU time,
//! resident memory, children, environment), and waits on child processes
//! that always end: each has a bound and fails with a message naming what
//! it waited for, so a stuck peer cannot hang a benchmark.
//!
//! Shared by path (`#[path = ".../benches/common/process.rs"] mod process;`);
//! it needs `libc` only.

#![allow(dead_code, reason = "each benchmark uses part of this module")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// User + system CPU seconds of `pid` itself (not of its reaped children);
/// 0 when it is gone.
pub fn cpu_seconds(pid: i32) -> f64 {
    let fields = stat_fields(pid);
    // SAFETY: sysconf reads a constant of the system; no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |idx: usize| {
        fields
            .get(idx)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / ticks
}

/// Resident memory of `pid` in KiB; 0 when it is gone.
pub fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of [`rss_kib`] (heap, stacks; not the pages of the
/// binary and libraries, which grow as more of their code runs).
pub fn rss_anon_kib(pid: i32) -> u64 {
    status_kib(pid, "RssAnon:")
}

/// A `/proc/PID/status` line in KiB; 0 when it or the process is gone.
fn status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// The live children of `pid` (zombies excluded).
pub fn children(pid: i32) -> Vec<i32> {
    all_pids()
        .filter(|child| {
            let fields = stat_fields(*child);
            fields.get(1).and_then(|ppid| ppid.parse::<i32>().ok()) == Some(pid)
                && fields.first().map(String::as_str) != Some("Z")
        })
        .collect()
}

/// The zombie children of `pid`, each with its start time (which tells a
/// process from a later one with the same pid).
pub fn zombie_children(pid: i32) -> Vec<(i32, String)> {
    all_pids()
        .filter_map(|child| {
            let fields = stat_fields(child);
            let is_zombie_of_pid = fields.first().map(String::as_str) == Some("Z")
                && fields.get(1).and_then(|ppid| ppid.parse::<i32>().ok()) == Some(pid);
            // starttime is field 22 of proc(5), 19 counted from the state.
            is_zombie_of_pid.then(|| (child, fields.get(19).cloned().unwrap_or_default()))
        })
        .collect()
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    let fields = stat_fields(pid);
    !fields.is_empty() && fields[0] != "Z"
}

/// The value of `key` in the environment of `pid`.
pub fn environment_value(pid: i32, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    environ
        .split(|byte| *byte == 0)
        .filter_map(|var| std::str::from_utf8(var).ok())
        .find_map(|var| var.strip_prefix(&prefix).map(str::to_owned))
}

/// Live processes whose environment carries `key=value`.
pub fn live_processes_with(key: &str, value: &str) -> usize {
    all_pids()
        .filter(|pid| environment_value(*pid, key).as_deref() == Some(value))
        .filter(|pid| is_alive(*pid))
        .count()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory effects; a stale pid gets ESRCH.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits for `child` at most `limit`; returns its status and the moment it
/// was seen to exit. On timeout it is killed and the error names `what`.
pub fn wait_bounded(
    mut child: Child,
    limit: Duration,
    what: &str,
) -> Result<(ExitStatus, Instant), String> {
    let pid = child.id() as i32;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = sender.send((status, Instant::now()));
    });
    match receiver.recv_timeout(limit) {
        Ok((Ok(status), at)) => Ok((status, at)),
        Ok((Err(error), _)) => Err(format!("{what}: waiting for it failed: {error}")),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            Err(format!(
                "{what} did not exit within {limit:?}; killed it (pid {pid})"
            ))
        }
    }
}

/// Runs `command` to its end with stdout captured (stderr passes through)
/// within `limit`. On timeout the process gets SIGTERM, then SIGKILL 15 s
/// later, and the error names `what`.
pub fn output_bounded(
    command: &mut Command,
    limit: Duration,
    what: &str,
) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("{what}: cannot start it: {error}"))?;
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut captured = Vec::new();
        let read = stdout.read_to_end(&mut captured);
        let status = child.wait();
        let _ = sender.send((read, status, captured));
    });
    let Ok(outcome) = receiver.recv_timeout(limit) else {
        signal(pid, libc::SIGTERM);
        if receiver.recv_timeout(Duration::from_secs(15)).is_err() {
            signal(pid, libc::SIGKILL);
        }
        return Err(format!(
            "{what} did not finish within {limit:?}; stopped it (pid {pid})"
        ));
    };
    match outcome {
        (Ok(_), Ok(status), stdout) => Ok(Output {
            status,
            stdout,
            stderr: Vec::new(),
        }),
        (Err(error), _, _) | (_, Err(error), _) => {
            Err(format!("{what}: reading its output failed: {error}"))
        }
    }
}

/// The lines a child writes on `stream`, each stamped with the moment it
/// was read, from a thread of their own (the pipe never fills while the
/// benchmark does something else). The channel closes at end of file.
pub fn stamped_lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<(Instant, String)> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    receiver
}

fn stat_fields(pid: i32) -> Vec<String> {
    // The fields after the command name: state, ppid, ... (field 3 onwards
    // of proc(5), counted from 0 here).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn all_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
}
