//! Stopping Lua that runs too long, without a hook while it runs normally.
//!
//! The Lua thread writes what it is running into one small slot (the
//! coroutine and the instant its budget runs out) before it resumes a
//! coroutine, and clears it after. A watchdog thread sleeps until the
//! earliest instant that matters; if the same coroutine is still running
//! then, it installs a stop hook on it from outside (`lua_raw`), and only
//! then does that coroutine pay for a hook. An [`Interrupter`] does the same
//! on demand, from any thread.
//!
//! In steady traffic the Lua thread takes an uncontended lock twice per
//! resume and never wakes the watchdog: the watchdog wakes about once per
//! budget period on its own, and is woken only when a shorter deadline
//! appears or the first resume after a quiet budget period arrives.
//!
//! A coroutine that the script itself resumes inside a stage (with
//! `coroutine.resume` or `coroutine.wrap`) runs on a state of its own; the
//! host wraps those two functions so that such coroutines are recorded in
//! the slot while they run, and a stop reaches them too. (A script that
//! saved the original functions in a local before the host started keeps
//! the untracked ones.)
//!
//! This module knows no pipelines or requests; it must not depend on the
//! registry or the host.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mlua::{Lua, Thread, Value};

use crate::lua_raw::{self, RawThread, StopHook};

/// The budget of a Lua stage that declares none, per request: long enough
/// that no per-request transform comes near it (they take microseconds to
/// milliseconds), short enough that a runaway holds the shared Lua thread,
/// and with it every other request, for less than the kernel's shortest
/// default deadline (5 s for high priority).
pub const DEFAULT_STAGE_BUDGET: Duration = Duration::from_secs(1);

/// Why the host stopped Lua code that was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The stage ran past its budget of Lua time (time spent waiting on
    /// effects or paused by the debugger does not count).
    Budget(Duration),
    /// [`Interrupter::interrupt`] was called while it ran.
    Interrupted,
}

/// Raises the interrupt from outside the Lua thread: the Lua code running
/// right now stops with an "interrupted" error; the Lua state and its
/// globals stay. Cheap to clone; `Send` and `Sync`.
#[derive(Clone)]
pub struct Interrupter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupter")
    }
}

impl Interrupter {
    /// Pauses the coroutine running now if it runs for request `tag` (a
    /// request busy in a long loop cannot wait for the host to look between
    /// two resumes): it stops at its next instruction where it may yield.
    /// Returns whether it was running.
    pub(crate) fn pause_running(&self, tag: u64) -> bool {
        let mut slot = self.shared.lock();
        let running_now = slot
            .running
            .as_ref()
            .is_some_and(|running| running.tag == tag && tag != 0 && running.verdict.is_none());
        if !running_now {
            // Not running now: when its next resume starts, it is paused
            // then (the host may be busy in another request's loop and not
            // read its jobs meanwhile).
            if tag != 0 && !slot.pending_pauses.contains(&tag) {
                slot.pending_pauses.push(tag);
            }
            return false;
        }
        let Some(running) = &slot.running else {
            return false;
        };
        // SAFETY: as in `interrupt`: the slot names the coroutine only while
        // the Lua thread runs it, and we hold the lock it takes to clear it.
        unsafe { lua_raw::install_pause_hook(running.thread) };
        true
    }

    /// The host has taken over a pause asked with [`Interrupter::pause_running`].
    pub(crate) fn forget_pause(&self, tag: u64) {
        self.shared
            .lock()
            .pending_pauses
            .retain(|pending| *pending != tag);
    }

    /// Stops the Lua code running now. Returns `false` when no Lua code was
    /// running (the host was idle, or every request waits or is paused):
    /// nothing is remembered for later.
    pub fn interrupt(&self) -> bool {
        let mut slot = self.shared.lock();
        let Some(running) = &mut slot.running else {
            return false;
        };
        if running.verdict.is_none() {
            // SAFETY: the slot names these coroutines only while the Lua
            // thread runs them, and the Lua thread takes this lock to clear
            // the slot before it may drop one; we hold the lock.
            unsafe { running.stop(Verdict::Interrupted) };
        }
        true
    }
}

/// What stopped a coroutine, as the slot records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Budget,
    Interrupted,
}

/// The watchdog of one Lua thread. Dropping it stops its thread.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Held while a coroutine runs; [`RunningGuard::leave`] says whether it
/// was stopped.
pub(crate) struct RunningGuard<'a> {
    watchdog: &'a Watchdog,
    left: bool,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
}

#[derive(Default)]
struct Slot {
    running: Option<Running>,
    /// When the watchdog will look next; `None` while it waits for news.
    watchdog_wakes_at: Option<Instant>,
    /// Resumes so far, and the deadline of the latest one that had one:
    /// while resumes keep coming, the watchdog looks again at the latest
    /// deadline instead of waiting for news, so that no resume has to wake
    /// it (waking costs the Lua thread a system call).
    enters: u64,
    latest_deadline: Option<Instant>,
    stopping: bool,
    /// Requests to pause at their next resume.
    pending_pauses: Vec<u64>,
}

struct Running {
    thread: RawThread,
    /// The request it runs for (0: none), for a pause from outside.
    tag: u64,
    /// Coroutines the script resumed from `thread`, innermost last.
    nested: Vec<RawThread>,
    deadline: Option<Instant>,
    verdict: Option<Verdict>,
}

impl Running {
    /// Sets the verdict and installs the stop hook on every state that
    /// runs for this resume.
    ///
    /// # Safety
    ///
    /// The slot's lock must be held: the Lua thread takes it to remove a
    /// state from the slot before that state may be dropped (the outer
    /// coroutine is owned by the run until `RunningGuard::leave`; nested
    /// ones by `track_nested_coroutines`'s handles).
    unsafe fn stop(&mut self, verdict: Verdict) {
        self.verdict = Some(verdict);
        let hook = match verdict {
            Verdict::Budget => StopHook::Budget,
            Verdict::Interrupted => StopHook::Interrupt,
        };
        for thread in std::iter::once(self.thread).chain(self.nested.iter().copied()) {
            // SAFETY: every state in the slot is alive while the lock is
            // held (see above).
            unsafe { lua_raw::install_stop_hook(thread, hook) };
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic while the lock was held cannot leave the slot half
        // written: every write is a single assignment.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Watchdog {
    pub(crate) fn start() -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared::default());
        let watched = shared.clone();
        let thread = thread::Builder::new()
            .name("spindle-lua-watchdog".to_owned())
            .spawn(move || watch(&watched))?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn interrupter(&self) -> Interrupter {
        Interrupter {
            shared: self.shared.clone(),
        }
    }

    /// Records that `thread` runs from now until the guard leaves, for
    /// request `tag` (0 for none); with a `deadline`, the watchdog stops it
    /// at that instant.
    pub(crate) fn enter(
        &self,
        thread: &Thread,
        deadline: Option<Instant>,
        tag: u64,
    ) -> RunningGuard<'_> {
        let mut slot = self.shared.lock();
        slot.enters = slot.enters.wrapping_add(1);
        if deadline.is_some() {
            slot.latest_deadline = deadline;
        }
        if tag != 0
            && let Some(at) = slot
                .pending_pauses
                .iter()
                .position(|pending| *pending == tag)
        {
            slot.pending_pauses.swap_remove(at);
            // SAFETY: `thread` is alive (the caller holds it) and about to be
            // resumed on this thread; no other thread knows it yet.
            unsafe { lua_raw::install_pause_hook(RawThread::of(thread)) };
        }
        slot.running = Some(Running {
            thread: RawThread::of(thread),
            tag,
            nested: Vec::new(),
            deadline,
            verdict: None,
        });
        let wake = match (deadline, slot.watchdog_wakes_at) {
            (Some(deadline), Some(wakes_at)) => deadline < wakes_at,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if wake {
            slot.watchdog_wakes_at = deadline;
        }
        drop(slot);
        if wake {
            self.shared.wake.notify_one();
        }
        RunningGuard {
            watchdog: self,
            left: false,
        }
    }
}

/// Wraps `coroutine.resume` and `coroutine.wrap` of `lua` so that the
/// coroutines a script resumes itself are in the watchdog's slot while they
/// run. Lua semantics are kept: `wrap` still closes a failed coroutine and
/// raises its error at the caller's line.
pub(crate) fn track_nested_coroutines(lua: &Lua, watchdog: &Watchdog) -> mlua::Result<()> {
    // Handles that keep every coroutine named in the slot's `nested` list
    // alive: an error between `enter` and `leave` (a stop, a memory error)
    // leaves a stale entry until the outer resume ends, and a stale entry
    // must still point at a live state. `keep_alive[..nested.len()]` holds
    // the handles of `nested`, in order.
    let keep_alive: Rc<RefCell<Vec<Thread>>> = Rc::default();
    let shared = watchdog.shared.clone();
    let kept = keep_alive.clone();
    let enter = lua.create_function(move |_, coroutine: Value| {
        let Value::Thread(thread) = coroutine else {
            return Ok(());
        };
        let mut slot = shared.lock();
        let Some(running) = &mut slot.running else {
            return Ok(());
        };
        let mut kept = kept.borrow_mut();
        kept.truncate(running.nested.len());
        running.nested.push(RawThread::of(&thread));
        kept.push(thread);
        if let Some(verdict) = running.verdict {
            // SAFETY: we hold the lock, and `keep_alive` holds a handle to
            // every state in `nested`, stale entries included.
            unsafe { running.stop(verdict) };
        }
        Ok(())
    })?;
    let shared = watchdog.shared.clone();
    let leave = lua.create_function(move |_, ()| {
        if let Some(running) = &mut shared.lock().running
            && running.nested.pop().is_some()
        {
            let mut kept = keep_alive.borrow_mut();
            kept.truncate(running.nested.len() + 1);
            kept.pop();
        }
        Ok(())
    })?;
    lua.load(
        r#"
local enter, leave = ...
local create, resume, status, close = coroutine.create, coroutine.resume, coroutine.status, coroutine.close
local pack, unpack = table.pack, table.unpack
local function finish(...) leave() return ... end
coroutine.resume = function(co, ...)
  enter(co)
  return finish(resume(co, ...))
end
coroutine.wrap = function(f)
  local co = create(f)
  return function(...)
    enter(co)
    local results = pack(resume(co, ...))
    leave()
    if results[1] then return unpack(results, 2, results.n) end
    if status(co) == "dead" then close(co) end
    local err = results[2]
    if type(err) == "string" then error(err, 2) end
    error(err, 0)
  end
end
"#,
    )
    .set_name("=spindle coroutine tracking")
    .call::<()>((enter, leave))
}

impl RunningGuard<'_> {
    /// The coroutine stopped running (it yielded, returned or failed).
    pub(crate) fn leave(mut self) -> Option<Verdict> {
        self.left = true;
        let mut slot = self.watchdog.shared.lock();
        slot.running.take().and_then(|running| running.verdict)
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if !self.left {
            // Unwinding out of a resume: the coroutine is no longer running.
            self.watchdog.shared.lock().running = None;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watchdog thread: sleeps until the running coroutine's deadline and
/// stops it if it is still running then.
fn watch(shared: &Shared) {
    let mut slot = shared.lock();
    let mut enters_seen = 0;
    loop {
        if slot.stopping {
            return;
        }
        let now = Instant::now();
        let mut next = None;
        if let Some(running) = &mut slot.running
            && running.verdict.is_none()
            && let Some(deadline) = running.deadline
        {
            if deadline <= now {
                // SAFETY: as in `Interrupter::interrupt`: we hold the lock
                // that the Lua thread takes before a coroutine may go.
                unsafe { running.stop(Verdict::Budget) };
            } else {
                next = Some(deadline);
            }
        }
        if next.is_none() && slot.enters != enters_seen {
            // Resumes came since the last look: look again when the latest
            // deadline passes. Without news by then, wait for news.
            next = slot.latest_deadline.filter(|deadline| *deadline > now);
        }
        enters_seen = slot.enters;
        slot.watchdog_wakes_at = next;
        slot = match next {
            Some(deadline) => {
                shared
                    .wake
                    .wait_timeout(slot, deadline.saturating_duration_since(now))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0
            }
            None => shared
                .wake
                .wait(slot)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
    }
}
