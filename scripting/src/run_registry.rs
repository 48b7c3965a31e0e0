//! The requests in flight on the script host: for each, its pipeline, the
//! stage it is in, whether it runs, waits on an effect or is paused, and
//! the coroutine of its current stage so that the debugger can pause it and
//! read its stack.
//!
//! The registry lives on the host thread and is owned by the host (one
//! owner); the runs update their own entry between resumes, never while
//! Lua runs. It knows no runtime, channel protocol or wire format.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::AbortHandle;
use mlua::{HookTriggers, Table, Thread, Value, VmState};

use crate::ScriptError;
use crate::pipeline_run::{PipelineRequest, RequestScope};

/// A request in flight on the script host, as [`crate::ScriptHost::runs`]
/// lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRun {
    pub request_id: u64,
    pub correlation_id: String,
    pub pipeline: String,
    pub priority: String,
    /// The stage it is in (`"fallback"` while the pipeline's fallback
    /// runs); empty before its first stage starts.
    pub stage: String,
    pub state: RunState,
}

/// What a request in flight is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Running Lua, or ready to run it as soon as the Lua thread is free.
    Running,
    /// Waiting for the kernel to answer an effect (an embedding).
    Waiting,
    /// Stopped by the debugger; it stays resumable.
    Paused(PausePoint),
}

/// Where and why a request stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausePoint {
    pub reason: PauseReason,
    /// The script's absolute path, as the chunk is named.
    pub file: String,
    pub line: u32,
}

/// Why a request stopped. More reasons come with the debugger
/// (breakpoints, steps, exceptions); match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseReason {
    /// [`crate::ScriptHost::pause`] asked for it.
    Requested,
}

/// What the host tells the kernel about a request's run, through
/// [`crate::Effects::run_event`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub request_id: u64,
    /// The request's [`PipelineRequest::scope`]: the kernel finds its own
    /// state of the request here (to stop or restart its deadline clock).
    pub scope: RequestScope,
    pub pipeline: String,
    pub stage: String,
    pub kind: RunEventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunEventKind {
    /// The request stopped at a line and waits for
    /// [`crate::ScriptHost::resume`]; its time budget stands still.
    Paused(PausePoint),
    /// The request runs again.
    Resumed,
}

/// Where the pause hook stopped a coroutine (file, line), shared between
/// the hook and the run.
type PauseHit = Rc<Cell<Option<(String, u32)>>>;

/// The host's registry of runs.
#[derive(Default)]
pub(crate) struct Registry {
    runs: HashMap<u64, RunEntry, BuildHasherDefault<IdHasher>>,
    next_generation: u64,
}

/// Hashes request ids with one multiplication: they are the kernel's own
/// unique numbers, not attacker-chosen keys, and the registry is looked up
/// several times per request (SipHash cost more than the rest of the
/// bookkeeping together).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One request's entry. `generation` tells a run apart from a later one
/// that reused its id.
pub(crate) struct RunEntry {
    generation: u64,
    /// The request, shared with its run (nothing is copied per request).
    pub request: Rc<PipelineRequest>,
    /// The stage it is in; empty before the first.
    pub stage: String,
    pub state: RunState,
    abort: AbortHandle,
    /// The coroutine of the stage running now, while there is one.
    pub thread: Option<Thread>,
    /// `req` as the current stage sees it.
    pub req: Option<Table>,
    pause_requested: bool,
    hooked: bool,
    /// Written by the pause hook on the Lua thread, read by the run after
    /// the coroutine yields; made with the first pause.
    pause_hit: Option<PauseHit>,
    resume: Option<oneshot::Sender<()>>,
    /// Values of expandable variables shown while paused; a variables
    /// reference is an index into it plus one. Cleared on resume.
    pub inspected: Vec<Value>,
}

impl Registry {
    /// Registers a run; returns its generation, which the run passes back
    /// to [`Registry::remove`].
    pub(crate) fn insert(&mut self, request: Rc<PipelineRequest>, abort: AbortHandle) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        let request_id = request.id;
        let entry = RunEntry {
            generation,
            request,
            stage: String::new(),
            state: RunState::Running,
            abort,
            thread: None,
            req: None,
            pause_requested: false,
            hooked: false,
            pause_hit: None,
            resume: None,
            inspected: Vec::new(),
        };
        self.runs.insert(request_id, entry);
        generation
    }

    /// Forgets a run that ended, unless a later run took its id.
    pub(crate) fn remove(&mut self, request_id: u64, generation: u64) {
        if self
            .runs
            .get(&request_id)
            .is_some_and(|entry| entry.generation == generation)
        {
            self.runs.remove(&request_id);
        }
    }

    /// Stops a run in flight (its reply gets `Cancelled`).
    pub(crate) fn abort(&mut self, request_id: u64) {
        if let Some(entry) = self.runs.remove(&request_id) {
            entry.abort.abort();
        }
    }

    pub(crate) fn list(&self) -> Vec<LiveRun> {
        let mut runs: Vec<LiveRun> = self
            .runs
            .values()
            .map(|entry| LiveRun {
                request_id: entry.request.id,
                correlation_id: entry.request.correlation_id.clone(),
                pipeline: entry.request.pipeline.clone(),
                priority: entry.request.priority.clone(),
                stage: entry.stage.clone(),
                state: entry.state.clone(),
            })
            .collect();
        runs.sort_by_key(|run| run.request_id);
        runs
    }

    pub(crate) fn get(&self, request_id: u64) -> Result<&RunEntry, ScriptError> {
        self.runs
            .get(&request_id)
            .ok_or(ScriptError::UnknownRequest { request_id })
    }

    pub(crate) fn get_mut(&mut self, request_id: u64) -> Result<&mut RunEntry, ScriptError> {
        self.runs
            .get_mut(&request_id)
            .ok_or(ScriptError::UnknownRequest { request_id })
    }

    /// The run is now in `stage`, in `state`.
    pub(crate) fn set_stage(&mut self, request_id: u64, stage: &str, state: RunState) {
        if let Some(entry) = self.runs.get_mut(&request_id) {
            if entry.stage != stage {
                // Reuses the string's buffer from stage to stage.
                entry.stage.clear();
                entry.stage.push_str(stage);
            }
            entry.state = state;
        }
    }

    /// A stage's coroutine is about to start; a pause asked for earlier
    /// applies to it.
    pub(crate) fn attach(&mut self, request_id: u64, thread: &Thread, req: Option<&Table>) {
        if let Some(entry) = self.runs.get_mut(&request_id) {
            entry.thread = Some(thread.clone());
            entry.req = req.cloned();
            if let Some(hit) = &entry.pause_hit {
                hit.set(None);
            }
            if entry.pause_requested {
                entry.install_pause_hook();
            }
        }
    }

    /// The stage's coroutine has ended.
    pub(crate) fn detach(&mut self, request_id: u64) {
        if let Some(entry) = self.runs.get_mut(&request_id) {
            if let Some(thread) = entry.thread.take()
                && entry.hooked
            {
                thread.remove_hook();
            }
            entry.req = None;
            entry.hooked = false;
        }
    }

    /// Asks a run to pause at its next line: now if its stage's coroutine
    /// exists, else as soon as the next one starts.
    pub(crate) fn request_pause(&mut self, request_id: u64) -> Result<(), ScriptError> {
        let entry = self.get_mut(request_id)?;
        if matches!(entry.state, RunState::Paused(_)) || entry.pause_requested {
            return Ok(());
        }
        entry.pause_requested = true;
        if entry.thread.is_some() {
            entry.install_pause_hook();
        }
        Ok(())
    }

    /// After a yield: did the pause hook stop the coroutine? If so the run
    /// is paused from now on, and the receiver resolves on resume.
    pub(crate) fn take_pause(
        &mut self,
        request_id: u64,
    ) -> Option<(PausePoint, oneshot::Receiver<()>)> {
        let entry = self.runs.get_mut(&request_id)?;
        let (file, line) = entry.pause_hit.as_ref()?.take()?;
        let point = PausePoint {
            reason: PauseReason::Requested,
            file,
            line,
        };
        let (sender, receiver) = oneshot::channel();
        entry.pause_requested = false;
        entry.resume = Some(sender);
        entry.state = RunState::Paused(point.clone());
        Some((point, receiver))
    }

    /// Lets a paused run go on; a pause asked for but not reached yet is
    /// withdrawn.
    pub(crate) fn resume(&mut self, request_id: u64) -> Result<(), ScriptError> {
        let entry = self.get_mut(request_id)?;
        if entry.pause_requested {
            entry.pause_requested = false;
            if let Some(thread) = &entry.thread
                && entry.hooked
            {
                thread.remove_hook();
            }
            entry.hooked = false;
            return Ok(());
        }
        let Some(resume) = entry.resume.take() else {
            return Err(ScriptError::NotPaused { request_id });
        };
        if let Some(thread) = &entry.thread
            && entry.hooked
        {
            thread.remove_hook();
        }
        entry.hooked = false;
        entry.inspected.clear();
        entry.state = RunState::Running;
        let _ = resume.send(());
        Ok(())
    }
}

impl RunEntry {
    /// A line hook on this run's coroutine only, which records the line and
    /// yields; the host removes it when the run resumes.
    fn install_pause_hook(&mut self) {
        let Some(thread) = &self.thread else { return };
        let hit = self.pause_hit.get_or_insert_with(Rc::default).clone();
        let installed = thread.set_hook(HookTriggers::EVERY_LINE, move |_lua, debug| {
            let source = debug.source();
            let file = source
                .source
                .as_deref()
                .map(|name| name.strip_prefix('@').unwrap_or(name).to_owned())
                .unwrap_or_default();
            let line = debug.current_line().unwrap_or(0) as u32;
            hit.set(Some((file, line)));
            // Lua yields only where it can (not across a C call such as a
            // `string.gsub` callback); elsewhere the next line tries again.
            Ok(VmState::Yield)
        });
        self.hooked = installed.is_ok();
    }

    pub(crate) fn is_paused(&self) -> bool {
        matches!(self.state, RunState::Paused(_))
    }
}
