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
//! - On every SIGCHLD it looks at the signalled child (the handler passes
//!   its pid) and decides by pid: a *watched* child (one spawned through
//!   [`spawn_watched`], or the guard) is reaped and its status sent to its
//!   watcher; an *orphan* is reaped and counted; anything else is left
//!   alone. Since signals that arrive while one is pending are merged, it
//!   also peeks at every other exited child (`waitid(P_ALL, WNOWAIT)`, which
//!   reaps nothing, until none is left) at every wake-up: one system call
//!   when none is left, so a merged orphan is not left a zombie until the
//!   next signal. (It used to look at most every 50 ms; the long run's
//!   samples then caught orphans in that window.)
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
//! The registry of watched children sits behind a mutex rather than in an
//! actor's inbox: the spawning thread registers the pid synchronously right
//! after the clone (a request through a channel would arrive after a fast
//! child such as `true` had exited and been looked at), and the reaper
//! drivers hold it during a pass. A child that exits before it is
//! registered is left alone by a pass (it leads its own group in this
//! session, like a child of other code; the pass sees a spawn under way and
//! defers) and reaped by the pass its registration triggers. The lock is
//! never held across an `.await` or a spawn.
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
//! One reaper per process (its registry and its SIGCHLD pipe), shared by
//! every supervisor run in it. Its passes run on the runs' own runtimes: each
//! run drives it ([`drive`]) while it runs, woken by the pipe the SIGCHLD
//! handler writes to. No thread of its own: a probe's exit is delivered in
//! the same wake-up of the runtime that waits for it. Between runs nothing
//! is reaped (nothing of a run is left then: the final sweep waits for its
//! processes to be reaped). Knows nothing about services.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::os;

/// A child spawned through the reaper; its exit status arrives on `exit`.
pub(crate) struct WatchedChild {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub exit: oneshot::Receiver<ExitStatus>,
}

/// Spawns `command` as a group leader ([`os::spawn_group_leader`]) and
/// watches it.
pub(crate) fn spawn_watched(
    command: &os::PreparedCommand,
    output: os::Output,
) -> io::Result<WatchedChild> {
    let reaper = reaper();
    if let Some(error) = &reaper.broken {
        return Err(io::Error::other(error.clone()));
    }
    // Spawned without the registry's lock (a spawn suspends its thread until
    // the child has exec'd). Until it is registered, a pass that sees the
    // child exited leaves it alone (it leads its own group in this session,
    // like a child of other code) and, seeing a spawn under way, defers.
    reaper.spawning.fetch_add(1, Ordering::SeqCst);
    let spawned = os::spawn_group_leader(command, output);
    let mut registry = reaper.lock();
    reaper.spawning.fetch_sub(1, Ordering::SeqCst);
    match spawned {
        Ok(child) => {
            let (exit, receiver) = oneshot::channel();
            registry.watched.insert(child.pid, Some(exit));
            // A pass that met this child exited before it was registered
            // left it alone and deferred to this registration. A service may
            // also have left orphans of its group behind already (rare, and
            // services start rarely: look anyway).
            let deferred = std::mem::take(&mut registry.deferred);
            drop(registry);
            if deferred || output == os::Output::Capture {
                reaper.poke();
            }
            Ok(WatchedChild {
                pid: child.pid,
                stdout: child.stdout,
                stderr: child.stderr,
                exit: receiver,
            })
        }
        Err(failure) => {
            if let Some(pid) = failure.exited_child {
                // It gave up before exec; reaped like any watched child,
                // with nobody to tell.
                registry.watched.insert(pid, None);
                drop(registry);
                reaper.poke();
            }
            Err(failure.error)
        }
    }
}

/// Watches `pid`, a child of this process that leads its own process group
/// and that nobody waits for (the guard, spawned by `std::process`): it is
/// reaped when it exits.
pub(crate) fn watch(pid: i32) {
    let reaper = reaper();
    reaper.lock().watched.insert(pid, None);
    // It may have exited already.
    reaper.poke();
}

/// Reaps `pids` (processes of a run that the final sweep killed) as they
/// exit; resolves once none of them is a live child of this process.
pub(crate) async fn reap_swept(pids: Vec<i32>) {
    let (done, receiver) = oneshot::channel();
    let reaper = reaper();
    {
        let mut registry = reaper.lock();
        let pids: Vec<i32> = pids
            .into_iter()
            .filter(|pid| !registry.watched.contains_key(pid))
            .collect();
        registry.swept.extend(pids.iter().copied());
        registry.sweep_waiters.push((pids, done));
    }
    reaper.poke();
    let _ = receiver.await;
}

/// Orphans reaped so far in this process (children it inherited as a
/// subreaper, and processes the final sweep killed).
pub fn orphans_reaped() -> u64 {
    ORPHANS_REAPED.load(Ordering::Relaxed)
}

static ORPHANS_REAPED: AtomicU64 = AtomicU64::new(0);

/// How often a driver looks without SIGCHLD (only if the handler could not
/// be installed).
const LOOK_WITHOUT_SIGNALS: Duration = Duration::from_millis(50);

/// Runs the reaper's passes on the caller's runtime until `stop`. Every
/// supervisor run drives it for as long as it runs: each SIGCHLD wakes the
/// drivers, and the first to read the pipe passes for all (the registry is
/// shared, so any pass delivers any watcher's exit).
pub(crate) async fn drive(stop: CancellationToken) {
    let reaper = reaper();
    let Some(signals) = &reaper.signals else {
        return;
    };
    let pipe = if signals.has_signal_handler() {
        signals
            .subscribe()
            .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd)
            .inspect_err(|error| {
                tracing::error!(%error, "cannot wait for SIGCHLD; the reaper looks every 50 ms");
            })
            .ok()
    } else {
        None
    };
    let mut signalled = Vec::new();
    loop {
        let woken = async {
            match &pipe {
                Some(pipe) => {
                    let _ = pipe.readable().await;
                }
                None => tokio::time::sleep(LOOK_WITHOUT_SIGNALS).await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = woken => {}
        }
        signalled.clear();
        if let Some(pipe) = &pipe {
            read_pids(pipe, &mut signalled);
        }
        // Every wake-up also looks for exited children whose signal was
        // merged: one `waitid` when there is none, so an orphan is never
        // left a zombie until some later signal.
        reaper.lock().pass(&signalled, &reaper.spawning);
    }
}

/// Empties the SIGCHLD pipe into `pids` (4 bytes each, native order; 0
/// for a poke). Another driver may have emptied it first.
fn read_pids(pipe: &tokio::net::unix::pipe::Receiver, pids: &mut Vec<i32>) {
    let mut buffer = [0u8; 256];
    while let Ok(read) = pipe.try_read(&mut buffer) {
        pids.extend(
            buffer[..read]
                .chunks_exact(4)
                .map(|bytes| i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        );
        if read < buffer.len() {
            return;
        }
    }
}

struct Reaper {
    registry: Mutex<Registry>,
    /// Spawns between their clone and their registration.
    spawning: AtomicUsize,
    signals: Option<os::ChildSignals>,
    /// Why the reaper could not be set up; spawning then fails with it (a
    /// child nobody reaps must not be started).
    broken: Option<String>,
}

fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER.get_or_init(Reaper::new)
}

impl Reaper {
    fn new() -> Reaper {
        let (signals, broken) = match os::ChildSignals::install() {
            Ok(signals) => (Some(signals), None),
            Err(error) => (None, Some(format!("cannot set up the reaper: {error}"))),
        };
        Reaper {
            registry: Mutex::new(Registry::new()),
            spawning: AtomicUsize::new(0),
            signals,
            broken,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the drivers.
    fn poke(&self) {
        if let Some(signals) = &self.signals {
            signals.poke();
        }
    }
}

/// Who is watched, and what is known about the supervisor's groups.
struct Registry {
    own_session: i32,
    /// Watched children and where their status goes (none: nobody asks).
    watched: HashMap<i32, Option<oneshot::Sender<ExitStatus>>>,
    /// Groups whose leader was reaped and that may still have members.
    retired_groups: HashSet<i32>,
    /// Pids the final sweep killed, reaped once they exit.
    swept: HashSet<i32>,
    /// Who waits for which swept pids.
    sweep_waiters: Vec<(Vec<i32>, oneshot::Sender<()>)>,
    /// A pass stopped at a child it left alone while a spawn was between
    /// clone and registration; that registration triggers the next pass.
    deferred: bool,
}

impl Registry {
    fn new() -> Registry {
        Registry {
            own_session: os::own_session(),
            watched: HashMap::new(),
            retired_groups: HashSet::new(),
            swept: HashSet::new(),
            sweep_waiters: Vec::new(),
            deferred: false,
        }
    }

    /// Reaps every exited child that is watched, swept or an orphan: first
    /// the `signalled` ones (pids from SIGCHLD, reaped by pid); then any
    /// other (signals coalesce), by peeking until no exited child is left.
    ///
    /// A child met exited but not ours while a spawn is between clone and
    /// registration is most likely that spawn's (it exited early): the pass
    /// defers to the registration, which triggers the next pass. Otherwise a
    /// child left alone hides the exited children behind it from the peek,
    /// so they are looked for in the list of children.
    fn pass(&mut self, signalled: &[i32], spawning: &AtomicUsize) {
        let mut left_alone = false;
        for pid in signalled {
            if *pid > 0 && os::has_exited(*pid) && !self.reap_if_ours(*pid) {
                left_alone = true;
            }
        }
        while let Some(pid) = os::peek_exited_child() {
            if !self.reap_if_ours(pid) {
                left_alone = true;
                break;
            }
        }
        if left_alone && spawning.load(Ordering::SeqCst) > 0 {
            self.deferred = true;
        } else if left_alone {
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
                    if let Some(exit) = exit {
                        let _ = exit.send(ExitStatus::from_raw(status));
                    }
                    self.retired_groups.insert(pid);
                    true
                }
                os::Reaped::Running => {
                    self.watched.insert(pid, exit);
                    false
                }
                // Someone else took it: its watcher sees the channel close.
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
    /// of a group the supervisor created. Sessions and groups whose leader
    /// is outside this PID namespace read as 0, so two such sessions look
    /// alike; the group still tells a service's orphan (its group is the
    /// service's, inside the namespace).
    fn is_orphan(&self, pid: i32) -> bool {
        let Some((group, session)) = os::group_and_session(pid) else {
            return false;
        };
        if session != self.own_session {
            return true;
        }
        group != pid && (self.watched.contains_key(&group) || self.retired_groups.contains(&group))
    }

    /// Reaps swept pids that have exited, drops those that are no longer
    /// children of this process (their parent is alive elsewhere, or they
    /// were reaped), and answers the waiters whose pids are all settled.
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
