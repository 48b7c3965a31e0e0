//! The one owner of `waitpid` in the process: reaps every child the
//! supervisor spawned (services, exec probes, the guard) and hands its exit
//! status to whoever watches it, and reaps every orphan this process
//! inherits as a child subreaper as soon as it exits. It never reaps a child
//! that another part of the process waits for.
//!
//! Why it is needed: a subreaper inherits every orphan below its services
//! (`while true; do (sleep 0.05 &); sleep 0.1; done` makes ten a second),
//! and an orphan that is not reaped stays a zombie, holding a pid, until
//! `spindle` exits.
//!
//! How it decides, without ever calling `waitpid(-1)` (which takes whichever
//! child exited first, including one that `std::process::Child::wait`,
//! `tokio::process` or libc's `system()` behind Lua's `os.execute` is about
//! to wait for by pid):
//! - On every SIGCHLD (and after every request) it peeks at the next exited
//!   child with `waitid(P_ALL, WNOWAIT)`, which reaps nothing, and decides by
//!   pid: a *watched* child (one the supervisor spawned through
//!   [`spawn_watched`]) is reaped and its status sent to its watcher; an
//!   *orphan* is reaped and counted; anything else is left alone.
//! - An orphan is a child in another session than this process (it or an
//!   ancestor called `setsid`: daemons, `setsid cmd &`) or a member, not the
//!   leader, of a process group the supervisor created (every service and
//!   exec probe leads a group of its own). Children that other code in the
//!   process spawns stay in this process's session, in its group or in a
//!   group of their own, so they are never taken. (Code in the process that
//!   spawns a child into a new session and waits for it must spawn it
//!   through here instead.)
//! - A child left alone would be returned by every later peek, hiding the
//!   ones behind it; while one is there, each pass also lists the children
//!   (`/proc/self/task/*/children`) and decides for each exited one.
//! - A group is remembered after its leader was reaped until it has no
//!   member left (`kill(-pgid, 0)` fails): its orphans are still recognised,
//!   and the number is forgotten before the kernel can hand it out again.
//! - The final sweep hands over the pids it killed (found by their
//!   environment, so known to be the run's even in a group of their own)
//!   and waits until they are reaped ([`reap_swept`]).
//!
//! Why not `tokio::process` for services and probes: it reaps its own
//! children by pid (through a pidfd, or on SIGCHLD) and its `Child`, dropped
//! unreaped, goes to tokio's own orphan queue: a second owner racing this
//! one for the same pids. The supervisor spawns with
//! `os::spawn_group_leader` (vfork-style, which is also what makes exec
//! probes cheap) and asks this reaper for the exit. Other code may still use
//! `tokio::process`: its children are in this process's session and not in
//! a supervisor's group, so the reaper leaves them to tokio.
//!
//! One reaper per process, started on first use and shared by every
//! supervisor run in it: a thread of its own with a current-thread tokio
//! runtime for the SIGCHLD stream and its inbox, so it works whichever
//! runtime (or none) its callers use. Knows nothing about services.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::os;

/// A child spawned through the reaper; its exit status arrives on `exit`
/// (an error only if the reaper thread could not start).
pub(crate) struct WatchedChild {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub exit: oneshot::Receiver<ExitStatus>,
}

/// Spawns `request` as a group leader ([`os::spawn_group_leader`]) and
/// watches it.
pub(crate) fn spawn_watched(request: &os::SpawnRequest<'_>) -> io::Result<WatchedChild> {
    let child = os::spawn_group_leader(request)?;
    let exit = watch(child.pid);
    Ok(WatchedChild {
        pid: child.pid,
        stdout: child.stdout,
        stderr: child.stderr,
        exit,
    })
}

/// Watches `pid`, a child of this process that leads its own process group
/// (the guard, spawned by `std::process`, which never waits for it): it is
/// reaped when it exits and its status goes to the receiver, which may be
/// dropped.
pub(crate) fn watch(pid: i32) -> oneshot::Receiver<ExitStatus> {
    let (exit, receiver) = oneshot::channel();
    reaper().send(Request::Watch { pid, exit });
    receiver
}

/// Reaps `pids` (processes of a run that the final sweep killed) as they
/// exit; resolves once none of them is a live child of this process.
pub(crate) async fn reap_swept(pids: Vec<i32>) {
    let (done, receiver) = oneshot::channel();
    reaper().send(Request::ReapSwept { pids, done });
    let _ = receiver.await;
}

/// Orphans reaped so far in this process (children it inherited as a
/// subreaper, and processes the final sweep killed).
pub fn orphans_reaped() -> u64 {
    ORPHANS_REAPED.load(Ordering::Relaxed)
}

static ORPHANS_REAPED: AtomicU64 = AtomicU64::new(0);

enum Request {
    Watch {
        pid: i32,
        exit: oneshot::Sender<ExitStatus>,
    },
    ReapSwept {
        pids: Vec<i32>,
        done: oneshot::Sender<()>,
    },
}

struct Reaper {
    requests: mpsc::UnboundedSender<Request>,
}

fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER.get_or_init(Reaper::start)
}

/// How often the reaper looks without SIGCHLD (only if the signal stream
/// could not be set up).
const POLL_WITHOUT_SIGNALS: Duration = Duration::from_millis(50);

impl Reaper {
    fn start() -> Reaper {
        let (requests, inbox) = mpsc::unbounded_channel();
        let started = std::thread::Builder::new()
            .name("spindle-reaper".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "cannot start the reaper's runtime; children will not be reaped");
                        return;
                    }
                };
                runtime.block_on(Owner::new().run(inbox));
            });
        if let Err(error) = started {
            tracing::error!(%error, "cannot start the reaper thread; children will not be reaped");
        }
        Reaper { requests }
    }

    /// A request whose thread is gone is dropped, and with it its reply
    /// sender: the caller sees the channel closed.
    fn send(&self, request: Request) {
        let _ = self.requests.send(request);
    }
}

/// The reaper thread's state.
struct Owner {
    own_session: i32,
    watched: HashMap<i32, oneshot::Sender<ExitStatus>>,
    /// Groups whose leader was reaped and that may still have members.
    retired_groups: HashSet<i32>,
    /// Pids the final sweep killed, reaped once they exit.
    swept: HashSet<i32>,
    /// Who waits for which swept pids.
    sweep_waiters: Vec<(Vec<i32>, oneshot::Sender<()>)>,
}

impl Owner {
    fn new() -> Owner {
        Owner {
            own_session: os::own_session(),
            watched: HashMap::new(),
            retired_groups: HashSet::new(),
            swept: HashSet::new(),
            sweep_waiters: Vec::new(),
        }
    }

    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut child_signals = match signal(SignalKind::child()) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGCHLD; the reaper polls instead");
                None
            }
        };
        loop {
            tokio::select! {
                request = inbox.recv() => match request {
                    Some(request) => self.handle(request),
                    None => return,
                },
                () = next_child_signal(&mut child_signals) => {}
            }
            self.pass();
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Watch { pid, exit } => {
                self.watched.insert(pid, exit);
            }
            Request::ReapSwept { pids, done } => {
                let pids: Vec<i32> = pids
                    .into_iter()
                    .filter(|pid| !self.watched.contains_key(pid))
                    .collect();
                self.swept.extend(pids.iter().copied());
                self.sweep_waiters.push((pids, done));
            }
        }
    }

    /// Reaps every exited child that is watched, swept or an orphan.
    fn pass(&mut self) {
        let mut left_alone = false;
        while let Some(pid) = os::peek_exited_child() {
            if !self.reap_if_ours(pid) {
                left_alone = true;
                break;
            }
        }
        if left_alone {
            for pid in os::children_of_this_process() {
                if os::has_exited(pid) {
                    self.reap_if_ours(pid);
                }
            }
        }
        self.settle_swept();
        self.retired_groups.retain(|pgid| os::group_exists(*pgid));
    }

    /// Reaps `pid`, an exited child, if it is ours to reap; whether it was.
    fn reap_if_ours(&mut self, pid: i32) -> bool {
        if let Some(exit) = self.watched.remove(&pid) {
            return match os::reap_child(pid) {
                os::Reaped::Exited(status) => {
                    let _ = exit.send(ExitStatus::from_raw(status));
                    self.retired_groups.insert(pid);
                    true
                }
                os::Reaped::Running => {
                    self.watched.insert(pid, exit);
                    false
                }
                // Someone else took it (a bug elsewhere): say so to the
                // watcher by dropping its sender.
                os::Reaped::NotAChild => true,
            };
        }
        if !self.swept.contains(&pid) && !self.is_orphan(pid) {
            return false;
        }
        match os::reap_child(pid) {
            os::Reaped::Exited(_) => {
                ORPHANS_REAPED.fetch_add(1, Ordering::Relaxed);
                self.swept.remove(&pid);
                true
            }
            os::Reaped::Running => false,
            os::Reaped::NotAChild => {
                self.swept.remove(&pid);
                true
            }
        }
    }

    /// An inherited child: in another session, or a member (not the leader)
    /// of a group the supervisor created.
    fn is_orphan(&self, pid: i32) -> bool {
        let Some((group, session)) = os::group_and_session(pid) else {
            return false;
        };
        if session != self.own_session {
            return true;
        }
        group != pid && (self.watched.contains_key(&group) || self.retired_groups.contains(&group))
    }

    /// Drops swept pids that are no longer children of this process (their
    /// parent is alive elsewhere, or they were reaped) and answers the
    /// waiters whose pids are all settled.
    fn settle_swept(&mut self) {
        if self.swept.is_empty() && self.sweep_waiters.is_empty() {
            return;
        }
        let pids: Vec<i32> = self.swept.iter().copied().collect();
        for pid in pids {
            match os::reap_child(pid) {
                os::Reaped::Exited(_) => {
                    ORPHANS_REAPED.fetch_add(1, Ordering::Relaxed);
                    self.swept.remove(&pid);
                }
                os::Reaped::NotAChild => {
                    self.swept.remove(&pid);
                }
                os::Reaped::Running => {}
            }
        }
        let swept = &self.swept;
        let (settled, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sweep_waiters)
            .into_iter()
            .partition(|(pids, _)| pids.iter().all(|pid| !swept.contains(pid)));
        self.sweep_waiters = waiting;
        for (_, done) in settled {
            let _ = done.send(());
        }
    }
}

/// The next SIGCHLD, or a poll interval without a signal stream.
async fn next_child_signal(stream: &mut Option<tokio::signal::unix::Signal>) {
    match stream {
        Some(stream) => {
            if stream.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => tokio::time::sleep(POLL_WITHOUT_SIGNALS).await,
    }
}
