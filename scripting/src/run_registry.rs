//! The requests in flight on the script host: for each, its pipeline, the
//! stage it is in, whether it runs, waits on an effect or is paused, and
//! the coroutine of its current stage so that the debugger can pause it and
//! read its stack.
//!
//! The registry lives on the host thread and is owned by the host (one
//! owner); the runs update their own entry between resumes, never while
//! Lua runs. It knows no runtime, channel protocol or wire format.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::AbortHandle;
use mlua::{Table, Thread, Value};

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

/// Why a request stopped; match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseReason {
    /// [`crate::ScriptHost::pause`] asked for it.
    Requested,
    /// A line breakpoint hit.
    Breakpoint,
    /// A function breakpoint on its stage or service hit.
    FunctionBreakpoint,
    /// A step ended.
    Step,
    /// An error escaped a stage (exception breakpoints).
    Exception,
    /// Stop on entry: the first line of its first Lua stage.
    Entry,
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

/// What a variables reference of a stopped request names: a value, or a
/// scope of one of its frames.
#[derive(Debug, Clone)]
pub(crate) enum Inspected {
    Value(Value),
    Locals { level: u32 },
    Upvalues { level: u32 },
    Request,
    Globals,
}

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
    resume: Option<oneshot::Sender<()>>,
    /// Values and scopes shown while paused; a variables reference is an
    /// index into it plus one. Cleared on resume.
    pub inspected: Vec<Inspected>,
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

    /// A stage's coroutine is about to start.
    pub(crate) fn attach(&mut self, request_id: u64, thread: &Thread, req: Option<&Table>) {
        if let Some(entry) = self.runs.get_mut(&request_id) {
            entry.thread = Some(thread.clone());
            entry.req = req.cloned();
        }
    }

    /// The request stops between stages (before an embed call), with
    /// `req` for its Request scope and no coroutine.
    pub(crate) fn attach_req(&mut self, request_id: u64, req: &Table) {
        if let Some(entry) = self.runs.get_mut(&request_id) {
            entry.thread = None;
            entry.req = Some(req.clone());
        }
    }

    /// The stage's coroutine has ended.
    pub(crate) fn detach(&mut self, request_id: u64) {
        if let Some(entry) = self.runs.get_mut(&request_id) {
            entry.thread = None;
            entry.req = None;
        }
    }

    /// The run stops at `point`; the receiver resolves on resume (or with
    /// an error when the run is forgotten).
    pub(crate) fn enter_pause(
        &mut self,
        request_id: u64,
        point: PausePoint,
    ) -> Option<oneshot::Receiver<()>> {
        let entry = self.runs.get_mut(&request_id)?;
        let (sender, receiver) = oneshot::channel();
        entry.resume = Some(sender);
        entry.state = RunState::Paused(point);
        Some(receiver)
    }

    /// Lets a paused run go on.
    pub(crate) fn resume(&mut self, request_id: u64) -> Result<(), ScriptError> {
        let entry = self.get_mut(request_id)?;
        let Some(resume) = entry.resume.take() else {
            return Err(ScriptError::NotPaused { request_id });
        };
        entry.inspected.clear();
        entry.state = RunState::Running;
        let _ = resume.send(());
        Ok(())
    }

    /// Every run: id, stage, coroutine (for the debugger's commands).
    pub(crate) fn threads(&self) -> Vec<(u64, String, Option<Thread>)> {
        let mut runs: Vec<_> = self
            .runs
            .values()
            .map(|entry| (entry.request.id, entry.stage.clone(), entry.thread.clone()))
            .collect();
        runs.sort_by_key(|run| run.0);
        runs
    }

    /// The ids of the paused runs.
    pub(crate) fn paused(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .runs
            .values()
            .filter(|entry| entry.is_paused())
            .map(|entry| entry.request.id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

impl RunEntry {
    pub(crate) fn is_paused(&self) -> bool {
        matches!(self.state, RunState::Paused(_))
    }
}
