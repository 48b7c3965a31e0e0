//! A notebook cell under the debugger: while a front end is attached, a
//! cell's coroutine runs as a run of its own in the registry (a DAP
//! thread numbered from [`CELL_THREAD_BASE`]), carries the hook a stage
//! would, and stops at breakpoints in the cell's lines (and in whatever it
//! calls) the way a request's stage does. Frames, scopes, variables,
//! evaluation, stepping and continue then work on it unchanged.
//!
//! Without an attached debugger a cell runs bare, as before. Must not
//! depend on any protocol; the cell's own machinery (`cell.rs`) drives it.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use futures::future::AbortHandle;
use mlua::{Function, Thread};

use crate::coroutine::{self, CoroutineCall};
use crate::debug::DebugEvent;
use crate::debug::hooks;
use crate::pipeline_run::{PipelineRequest, RequestScope, RunContext};
use crate::run_registry::RunState;

/// The first thread id of cells: cell runs are numbered from here, far
/// above any request id, and below 2^53 (a front end may read ids as
/// JavaScript numbers).
pub const CELL_THREAD_BASE: u64 = 1 << 40;

/// The pipeline name a cell's run shows (`stopped` events, the registry).
pub const CELL_PIPELINE: &str = "cell";

thread_local! {
    static NEXT_CELL_RUN: Cell<u64> = const { Cell::new(0) };
}

/// One cell's run while a debugger is attached; dropping it (the cell
/// ended, or an interrupt dropped the cell's task while it was stopped)
/// forgets the run everywhere.
pub(crate) struct CellRun<'a> {
    context: &'a RunContext,
    id: u64,
    generation: u64,
    stage: String,
    thread: Thread,
}

impl<'a> CellRun<'a> {
    /// Registers `thread` (running `function`, the cell at `path`) as a
    /// debuggable run; `None` when no debugger is attached.
    pub(crate) fn start(
        context: &'a RunContext,
        thread: &Thread,
        function: &Function,
        path: &Path,
    ) -> Option<CellRun<'a>> {
        if !context.debugger.borrow().is_attached() {
            return None;
        }
        let number = NEXT_CELL_RUN.with(|next| {
            let number = next.get() + 1;
            next.set(number);
            number
        });
        let id = CELL_THREAD_BASE + number;
        let stage = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let request = Rc::new(PipelineRequest {
            id,
            correlation_id: format!("cell-{number}"),
            pipeline: CELL_PIPELINE.to_owned(),
            priority: "cell".to_owned(),
            text: String::new(),
            scope: RequestScope::default(),
            stage_log: None,
        });
        // The cell is stopped by its own abort (an interrupt); this handle
        // only fills the registry's slot.
        let (abort, _registration) = AbortHandle::new_pair();
        let generation = {
            let mut registry = context.registry.borrow_mut();
            let generation = registry.insert(request, abort);
            registry.set_stage(id, &stage, RunState::Running);
            registry.attach(id, thread, None);
            generation
        };
        let (mode, reaches) =
            context
                .debugger
                .borrow_mut()
                .plan_stage(id, CELL_PIPELINE, &stage, function);
        if mode.is_some() || reaches {
            hooks::watch(thread, reaches, mode, None);
        }
        Some(CellRun {
            context,
            id,
            generation,
            stage,
            thread: thread.clone(),
        })
    }

    /// The run's id: its DAP thread id, and the watchdog's tag (so that a
    /// pause from outside reaches a cell busy in a loop).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// After a yield of the cell's coroutine: stops there if its hook
    /// asked to and the debugger agrees, until resumed.
    pub(crate) async fn after_yield(&self) {
        let call = CoroutineCall {
            request_id: self.id,
            pipeline: CELL_PIPELINE,
            stage: &self.stage,
            handled_by_fallback: false,
            budget: None,
            req: None,
        };
        coroutine::after_yield(self.context, &call, &self.thread).await;
    }
}

impl Drop for CellRun<'_> {
    fn drop(&mut self) {
        hooks::unwatch(&self.thread);
        let was_paused = {
            let mut registry = self.context.registry.borrow_mut();
            let paused = registry.get(self.id).is_ok_and(|entry| entry.is_paused());
            registry.remove(self.id, self.generation);
            paused
        };
        if let Ok(mut debugger) = self.context.debugger.try_borrow_mut() {
            debugger.forget(self.id);
        }
        if was_paused {
            // Interrupted while stopped: the front end must not keep
            // showing it stopped.
            self.context.effects.debug_event(DebugEvent::Continued {
                request_id: self.id,
            });
        }
    }
}
