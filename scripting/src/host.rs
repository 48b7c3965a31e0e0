//! The script host: a thread that owns a script's Lua state for as long as a
//! graph runs. Lua probes are called on it, and every request runs its
//! pipeline on it as coroutines, many in flight at once. Work reaches it as
//! jobs on a channel; each job carries the callback that receives its
//! answer, so the caller may bridge to any runtime it likes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::executor::LocalPool;
use futures::future::{AbortHandle, Abortable};
use futures::task::LocalSpawnExt;
use futures::{FutureExt, StreamExt};
use mlua::{Function, HookTriggers, Lua, Value, VmState};

use crate::eval;
use crate::pipeline_run::{
    self, Effects, NoEffects, PipelineAnswer, PipelineRequest, RunContext, StageFailure,
};
use crate::spec::FunctionId;
use crate::{Evaluation, ScriptError};

/// The answer to a Lua check: pass, or fail with a reason.
pub type CheckResult = Result<bool, String>;

/// A callback that receives a check's answer on the host thread.
pub type CheckReply = Box<dyn FnOnce(CheckResult) + Send>;

/// How a pipeline run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Answered(PipelineAnswer),
    Failed(StageFailure),
    /// Cancelled before it finished (`ScriptHost::cancel`).
    Cancelled,
    /// A Rust panic inside the run; the host lives on.
    Panicked(String),
}

/// A callback that receives a run's outcome on the host thread.
pub type RunReply = Box<dyn FnOnce(RunOutcome) + Send>;

enum Job {
    Check {
        function: FunctionId,
        timeout: Duration,
        reply: CheckReply,
    },
    Run {
        request: PipelineRequest,
        reply: RunReply,
    },
    Cancel {
        request_id: u64,
    },
}

/// A handle to the thread that runs a script's Lua. Dropping every handle
/// ends the thread once the runs in flight are done.
#[derive(Clone)]
pub struct ScriptHost {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScriptHost")
    }
}

impl ScriptHost {
    /// Starts the host thread and evaluates `path` on it. Embed stages fail
    /// until a host is started with [`ScriptHost::start_with`].
    pub fn start(path: &Path) -> Result<(ScriptHost, Evaluation), ScriptError> {
        ScriptHost::start_with(path, Arc::new(NoEffects))
    }

    /// Starts the host thread with the kernel's `effects`.
    pub fn start_with(
        path: &Path,
        effects: Arc<dyn Effects>,
    ) -> Result<(ScriptHost, Evaluation), ScriptError> {
        let (jobs, job_receiver) = mpsc::unbounded::<Job>();
        let (evaluated, evaluation) = std::sync::mpsc::channel::<Evaluation>();
        let path = path.to_path_buf();
        thread::Builder::new()
            .name("spindle-lua".to_owned())
            .spawn(move || {
                let loaded = eval::load(&path);
                let _ = evaluated.send(loaded.evaluation.clone());
                let context = Rc::new(RunContext {
                    lua: loaded.lua,
                    graph: loaded.evaluation.graph,
                    functions: loaded.functions,
                    effects,
                });
                serve(context, job_receiver);
            })
            .map_err(ScriptError::Thread)?;
        let evaluation = evaluation.recv().map_err(|_| ScriptError::HostGone)?;
        Ok((ScriptHost { jobs }, evaluation))
    }

    /// Calls a Lua check function; `reply` runs on the host thread with the
    /// result. A check that runs past `timeout` is stopped and fails.
    pub fn call_check(&self, function: FunctionId, timeout: Duration, reply: CheckReply) {
        let job = Job::Check {
            function,
            timeout,
            reply,
        };
        if let Err(error) = self.jobs.unbounded_send(job)
            && let Job::Check { reply, .. } = error.into_inner()
        {
            reply(Err("the script host has stopped".to_owned()));
        }
    }

    /// Runs `request` through its pipeline; `reply` receives exactly one
    /// outcome.
    pub fn run_pipeline(&self, request: PipelineRequest, reply: RunReply) {
        if let Err(error) = self.jobs.unbounded_send(Job::Run { request, reply })
            && let Job::Run { request, reply } = error.into_inner()
        {
            reply(RunOutcome::Failed(StageFailure {
                pipeline: request.pipeline,
                stage: String::new(),
                file: String::new(),
                line: 0,
                message: "the script host has stopped".to_owned(),
                cause: None,
            }));
        }
    }

    /// Stops a run in flight; its reply receives [`RunOutcome::Cancelled`].
    /// Unknown or finished ids are ignored.
    pub fn cancel(&self, request_id: u64) {
        let _ = self.jobs.unbounded_send(Job::Cancel { request_id });
    }
}

/// The host thread's loop: a single-threaded executor whose tasks are the
/// runs in flight, fed by the job channel.
fn serve(context: Rc<RunContext>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let running: Rc<RefCell<HashMap<u64, AbortHandle>>> = Rc::default();
    pool.run_until(async {
        while let Some(job) = jobs.next().await {
            match job {
                Job::Check {
                    function,
                    timeout,
                    reply,
                } => {
                    let result = match context.functions.get(function.0 as usize) {
                        Some(check) => call_with_deadline(&context.lua, check, timeout),
                        None => Err(format!("no Lua function with id {}", function.0)),
                    };
                    reply(result);
                }
                Job::Run { request, reply } => {
                    let request_id = request.id;
                    let (abort, registration) = AbortHandle::new_pair();
                    running.borrow_mut().insert(request_id, abort);
                    let run = AssertUnwindSafe(pipeline_run::run(context.clone(), request))
                        .catch_unwind();
                    let run = Abortable::new(run, registration);
                    let running = running.clone();
                    let task = async move {
                        let outcome = match run.await {
                            Ok(Ok(Ok(answer))) => RunOutcome::Answered(answer),
                            Ok(Ok(Err(failure))) => RunOutcome::Failed(failure),
                            Ok(Err(panic)) => RunOutcome::Panicked(panic_message(&panic)),
                            Err(_aborted) => RunOutcome::Cancelled,
                        };
                        running.borrow_mut().remove(&request_id);
                        reply(outcome);
                    };
                    if spawner.spawn_local(task).is_err() {
                        // The pool is shutting down; nothing can run any more.
                        break;
                    }
                }
                Job::Cancel { request_id } => {
                    if let Some(abort) = running.borrow_mut().remove(&request_id) {
                        abort.abort();
                    }
                }
            }
        }
    });
    // Every handle is gone: finish the runs still in flight.
    pool.run();
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Calls `check` with an instruction-count hook that stops it at the
/// deadline; the hook exists only for the duration of the call.
fn call_with_deadline(lua: &Lua, check: &Function, timeout: Duration) -> CheckResult {
    let deadline = Instant::now() + timeout;
    let hooked = lua.set_hook(
        HookTriggers::new().every_nth_instruction(10_000),
        move |_, debug| {
            if Instant::now() < deadline {
                return Ok(VmState::Continue);
            }
            let file = debug
                .source()
                .source
                .map(|s| s.trim_start_matches('@').to_owned());
            let line = debug.current_line().unwrap_or(0);
            Err(mlua::Error::runtime(format!(
                "{}:{line}: the check ran past its timeout of {timeout:?}",
                file.unwrap_or_default()
            )))
        },
    );
    let result = check.call::<Value>(());
    if hooked.is_ok() {
        lua.remove_hook();
    }
    match result {
        Ok(Value::Nil | Value::Boolean(false)) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) => {
            let diagnostic = eval::lua_error_diagnostic(&error, Path::new(""));
            Err(format!(
                "{}:{}: {}",
                diagnostic.file.display(),
                diagnostic.line,
                diagnostic.message
            ))
        }
    }
}
