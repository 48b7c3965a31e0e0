//! The script host: a thread that owns a script's Lua state for as long as a
//! graph runs. Lua probes are called on it, and every request runs its
//! pipeline on it as coroutines, many in flight at once. Work reaches it as
//! jobs on a channel; each job carries the callback that receives its
//! answer, so the caller may bridge to any runtime it likes.
//!
//! The host keeps a registry of the runs in flight and answers the
//! debugger's commands about them (list, pause, resume, stack, variables)
//! between two resumes. A watchdog thread stops Lua that runs past its
//! budget, and an [`Interrupter`] stops it on demand (`budget`).

use std::cell::{Cell, RefCell};
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
use mlua::{Function, Value};

use crate::budget::{self, DEFAULT_STAGE_BUDGET, Interrupter, Verdict, Watchdog};
use crate::cell::{self, NotebookJob};
use crate::debug::debugger::Debugger;
use crate::debug::{DebugCommand, Page, RunStack, Variable, VariablesRef, commands, inspect};
use crate::pipeline_run::{
    self, Effects, NoEffects, PipelineAnswer, PipelineRequest, RunContext, StageFailure,
};
use crate::run_registry::{LiveRun, Registry};
use crate::spec::FunctionId;
use crate::spin::{CpuSeen, PURE_SPIN, Pause, Spin, move_off_this_cpu, spinning_pays};
use crate::{Evaluation, ScriptError, eval, lua_raw};

/// How a host runs its script's Lua.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// The budget of a Lua stage when neither the stage nor its pipeline
    /// declares one; `None` lets such stages run without limit.
    pub default_stage_budget: Option<Duration>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            default_stage_budget: Some(DEFAULT_STAGE_BUDGET),
        }
    }
}

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

/// A callback that receives the runs in flight.
pub type RunsReply = Box<dyn FnOnce(Vec<LiveRun>) + Send>;

/// A callback that receives a debugger command's answer on the host thread.
pub type DebugReply<T> = Box<dyn FnOnce(Result<T, ScriptError>) + Send>;

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
    Runs {
        reply: RunsReply,
    },
    Pause {
        request_id: u64,
        reply: DebugReply<()>,
    },
    Resume {
        request_id: u64,
        reply: DebugReply<()>,
    },
    Stack {
        request_id: u64,
        reply: DebugReply<RunStack>,
    },
    Variables {
        request_id: u64,
        reference: VariablesRef,
        reply: DebugReply<Vec<Variable>>,
    },
    Debug(DebugCommand),
    Notebook(NotebookJob),
}

/// A handle to the thread that runs a script's Lua. Dropping every handle
/// ends the thread once the runs in flight are done.
#[derive(Clone)]
pub struct ScriptHost {
    jobs: mpsc::UnboundedSender<Job>,
    interrupter: Interrupter,
    cpus: Arc<HostCpus>,
}

/// Where the host thread and the last thread to hand it a run are: neither
/// spins waiting for the other while they share a CPU ([`crate::spin`]).
#[derive(Debug, Default)]
struct HostCpus {
    host: CpuSeen,
    submitter: CpuSeen,
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
        ScriptHost::start_with_config(path, effects, HostConfig::default())
    }

    /// Starts the host thread with the kernel's `effects` and `config`.
    pub fn start_with_config(
        path: &Path,
        effects: Arc<dyn Effects>,
        config: HostConfig,
    ) -> Result<(ScriptHost, Evaluation), ScriptError> {
        let (jobs, job_receiver) = mpsc::unbounded::<Job>();
        let (evaluated, evaluation) = std::sync::mpsc::channel::<Evaluation>();
        let path = path.to_path_buf();
        let watchdog = Watchdog::start().map_err(ScriptError::Thread)?;
        let interrupter = watchdog.interrupter();
        let cpus = Arc::new(HostCpus::default());
        let host_cpus = cpus.clone();
        thread::Builder::new()
            .name("spindle-lua".to_owned())
            .spawn(move || {
                let loaded = eval::load(&path);
                let _ = evaluated.send(loaded.evaluation.clone());
                // Without tracking (only a memory error stops it), a
                // runaway inside a script's own coroutine is not stopped.
                let _ = budget::track_nested_coroutines(&loaded.lua, &watchdog);
                let debug = match lua_raw::debug_library(&loaded.lua) {
                    Ok(debug) => debug,
                    // Only a memory error can get here; without the
                    // library the debugger's reads fail, the rest works.
                    Err(_) => loaded
                        .lua
                        .create_table()
                        .expect("an empty table fits in the memory limit"),
                };
                let attached = Rc::new(Cell::new(false));
                let mut debugger = Debugger::new(attached.clone());
                match crate::debug::evaluate::Evaluator::new(&loaded.lua, &debug) {
                    Ok(evaluator) => debugger.set_evaluator(evaluator),
                    Err(error) => eprintln!("spindle: the debugger cannot evaluate: {error}"),
                }
                // Without it, conditions are checked on the host after a
                // yield (slower in hot loops, the same answers).
                if let Ok(runtime) = crate::lua_raw::ConditionRuntime::new(&loaded.lua) {
                    debugger.set_condition_runtime(runtime);
                }
                // Without it, a breakpoint in any helper puts a call hook
                // on every stage that uses a helper.
                if let Ok(reach) = crate::debug::reach::Reach::new(&loaded.lua, &debug) {
                    debugger.set_reach(reach);
                }
                for function in &loaded.functions {
                    debugger.learn_stage_function(function);
                }
                let _ = crate::debug::output::redirect_print(&loaded.lua, attached, &effects);
                // Cells may declare more and apply it (`s.up()`): keep the
                // script's declarations where the module records new ones.
                loaded.lua.set_app_data(loaded.declarations);
                loaded
                    .lua
                    .set_app_data(crate::state_api::HostEffects(effects.clone()));
                let context = Rc::new(RunContext {
                    request_tables: crate::pipeline_run::RequestTables::new(),
                    lua: loaded.lua,
                    graph: RefCell::new(loaded.evaluation.graph.map(Rc::new)),
                    functions: RefCell::new(loaded.functions),
                    effects,
                    config,
                    registry: RefCell::new(Registry::default()),
                    watchdog,
                    debug,
                    debugger: RefCell::new(debugger),
                });
                serve(context, job_receiver, &host_cpus);
            })
            .map_err(ScriptError::Thread)?;
        let evaluation = evaluation.recv().map_err(|_| ScriptError::HostGone)?;
        Ok((
            ScriptHost {
                jobs,
                interrupter,
                cpus,
            },
            evaluation,
        ))
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
        self.cpus.submitter.note();
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
                stopped: None,
            }));
        }
    }

    /// Whether the host thread was last seen on the calling thread's CPU:
    /// waiting for its answer by spinning would keep it from running.
    pub fn shares_this_cpu(&self) -> bool {
        self.cpus.host.is_here()
    }

    /// Stops a run in flight; its reply receives [`RunOutcome::Cancelled`].
    /// Unknown or finished ids are ignored.
    pub fn cancel(&self, request_id: u64) {
        let _ = self.jobs.unbounded_send(Job::Cancel { request_id });
    }

    /// Lists the requests in flight, by request id.
    pub fn runs(&self, reply: RunsReply) {
        if let Err(error) = self.jobs.unbounded_send(Job::Runs { reply })
            && let Job::Runs { reply } = error.into_inner()
        {
            reply(Vec::new());
        }
    }

    /// Pauses a request at its next line of Lua: at once if it is in a Lua
    /// stage, else when its next Lua stage starts. Only that request stops;
    /// [`Effects::run_event`] reports where. The reply says the pause is
    /// armed (a request that finishes first is simply answered).
    pub fn pause(&self, request_id: u64, reply: DebugReply<()>) {
        // A request busy in a long loop keeps the host from reading jobs:
        // stop it from here (it yields at its next instruction).
        self.interrupter.pause_running(request_id);
        self.send_debug(Job::Pause { request_id, reply });
    }

    /// Sends a command to the debugger core (breakpoints, steps, scopes,
    /// evaluation, ...); its reply runs on the host thread.
    pub fn debug(&self, command: DebugCommand) {
        if let DebugCommand::Pause {
            request_id: Some(request_id),
            ..
        } = &command
        {
            self.interrupter.pause_running(*request_id);
        }
        if let Err(error) = self.jobs.unbounded_send(Job::Debug(command))
            && let Job::Debug(command) = error.into_inner()
        {
            command.fail(|| ScriptError::HostGone);
        }
    }

    /// Lets a paused request go on (or withdraws a pause not reached yet).
    pub fn resume(&self, request_id: u64, reply: DebugReply<()>) {
        self.send_debug(Job::Resume { request_id, reply });
    }

    /// Reads a paused request's stack: frames innermost first, each with
    /// its locals and upvalues, and `req`'s fields.
    pub fn stack(&self, request_id: u64, reply: DebugReply<RunStack>) {
        self.send_debug(Job::Stack { request_id, reply });
    }

    /// Lists the entries of a table or vector that [`ScriptHost::stack`]
    /// (or an earlier call) showed, while the request stays paused.
    pub fn variables(
        &self,
        request_id: u64,
        reference: VariablesRef,
        reply: DebugReply<Vec<Variable>>,
    ) {
        self.send_debug(Job::Variables {
            request_id,
            reference,
            reply,
        });
    }

    /// Runs a notebook job (a cell, a completion, an inspection) on the
    /// host thread (`cell`).
    pub fn notebook(&self, job: NotebookJob) {
        if let Err(error) = self.jobs.unbounded_send(Job::Notebook(job))
            && let Job::Notebook(job) = error.into_inner()
        {
            job.host_gone();
        }
    }

    /// A handle that stops the Lua running right now from any thread.
    pub fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    fn send_debug(&self, job: Job) {
        let Err(error) = self.jobs.unbounded_send(job) else {
            return;
        };
        match error.into_inner() {
            Job::Pause { reply, .. } | Job::Resume { reply, .. } => {
                reply(Err(ScriptError::HostGone));
            }
            Job::Stack { reply, .. } => reply(Err(ScriptError::HostGone)),
            Job::Variables { reply, .. } => reply(Err(ScriptError::HostGone)),
            _ => {}
        }
    }
}

/// The host thread's loop: a single-threaded executor whose tasks are the
/// runs in flight, fed by the job channel. Jobs are handled between two
/// resumes, so no Lua runs while the registry is read or changed.
fn serve(context: Rc<RunContext>, mut jobs: mpsc::UnboundedReceiver<Job>, cpus: &HostCpus) {
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let jobs_seen = Rc::new(Cell::new(0_u64));
    let seen = Rc::clone(&jobs_seen);
    let job_loop = async move {
        while let Some(job) = jobs.next().await {
            seen.set(seen.get() + 1);
            match job {
                Job::Check {
                    function,
                    timeout,
                    reply,
                } => {
                    let result = match context.function(function) {
                        Some(check) => call_with_deadline(&context, &check, timeout),
                        None => Err(format!("no Lua function with id {}", function.0)),
                    };
                    reply(result);
                }
                Job::Run { request, reply } => {
                    let request_id = request.id;
                    let request = Rc::new(request);
                    let (abort, registration) = AbortHandle::new_pair();
                    let generation = context.registry.borrow_mut().insert(request.clone(), abort);
                    let run = AssertUnwindSafe(pipeline_run::run(context.clone(), request.clone()))
                        .catch_unwind();
                    let run = Abortable::new(run, registration);
                    let context = context.clone();
                    let task = async move {
                        let outcome = match run.await {
                            Ok(Ok(Ok(answered))) => Ok(answered),
                            Ok(Ok(Err(failure))) => Err(RunOutcome::Failed(failure)),
                            Ok(Err(panic)) => Err(RunOutcome::Panicked(panic_message(&panic))),
                            Err(_aborted) => Err(RunOutcome::Cancelled),
                        };
                        context.registry.borrow_mut().remove(request_id, generation);
                        context.debugger.borrow_mut().forget(request_id);
                        reply(match outcome {
                            Ok(answered) => RunOutcome::Answered(with_text(answered, request)),
                            Err(outcome) => outcome,
                        });
                    };
                    if spawner.spawn_local(task).is_err() {
                        // The pool is shutting down; nothing can run any more.
                        break;
                    }
                }
                // Each answer is computed before its reply runs, so that a
                // reply never runs while the registry is borrowed.
                Job::Cancel { request_id } => context.registry.borrow_mut().abort(request_id),
                Job::Runs { reply } => {
                    let runs = context.registry.borrow().list();
                    reply(runs);
                }
                Job::Pause { request_id, reply } => {
                    context.watchdog.interrupter().forget_pause(request_id);
                    let armed = commands::pause(&context, request_id);
                    reply(armed);
                }
                Job::Resume { request_id, reply } => {
                    let resumed = commands::resume(&context, request_id);
                    reply(resumed);
                }
                Job::Debug(command) => {
                    if let DebugCommand::Pause {
                        request_id: Some(request_id),
                        ..
                    } = &command
                    {
                        context.watchdog.interrupter().forget_pause(*request_id);
                    }
                    commands::handle(&context, command);
                }
                Job::Stack { request_id, reply } => {
                    let stack = read_stack(&context, request_id);
                    reply(stack);
                }
                Job::Variables {
                    request_id,
                    reference,
                    reply,
                } => {
                    let variables = read_variables(&context, request_id, reference);
                    reply(variables);
                }
                Job::Notebook(job) => cell::handle(&context, &spawner, job),
            }
        }
    };
    let ended = Rc::new(Cell::new(false));
    let job_loop_ended = Rc::clone(&ended);
    let started = pool.spawner().spawn_local(async move {
        job_loop.await;
        job_loop_ended.set(true);
        // Wakes the pool, which may be about to sleep (`run_spinning`).
        std::future::poll_fn(|cx| {
            cx.waker().wake_by_ref();
            std::task::Poll::Ready(())
        })
        .await;
    });
    if started.is_ok() {
        run_spinning(&mut pool, &ended, &jobs_seen, cpus);
    }
    // Every handle is gone: finish the runs still in flight.
    pool.run();
}

/// The answer of a run, its text filled in: the request's own when the
/// stages left it unchanged ([`pipeline_run::RunAnswer`]), moved out when
/// nothing else holds the request any more (the run and its registry entry
/// are gone by now), copied otherwise.
fn with_text(
    answered: pipeline_run::RunAnswer,
    request: Rc<PipelineRequest>,
) -> pipeline_run::PipelineAnswer {
    let mut answer = answered.answer;
    if answered.text_is_request {
        answer.text = match Rc::try_unwrap(request) {
            Ok(request) => request.text,
            Err(shared) => shared.text.clone(),
        };
    }
    answer
}

/// How long the host keeps looking for work after it ran out, before it
/// sleeps. A request's round trip wakes the host once, and a sleeping
/// thread takes several microseconds to wake (more when its core is busy):
/// the largest single part of a no-op request's overhead. Work that comes
/// sooner than this after the last finds the host awake. Costs at most
/// this much CPU each time the host runs out of work.
///
/// Only where the host may run on more than one CPU: on one (an affinity
/// mask or a CPU quota of one), the thread that would bring the work cannot
/// run while the host spins, and a no-op request took about 110 µs instead
/// of 15 (`SPINDLE_BENCH_PIN=split` in the netlink bench).
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// Runs the pool's tasks until `ended` (the job loop finished): sleeps
/// until something can run, runs it, then keeps running what arrives for
/// [`SPIN_BEFORE_SLEEP`] after the last job (`jobs_seen` counts them)
/// before sleeping again; not at all while [`spinning_pays`] says no. Beside
/// the thread that hands it work, it moves to another CPU first, or sleeps
/// where it cannot ([`crate::spin`]).
fn run_spinning(pool: &mut LocalPool, ended: &Cell<bool>, jobs_seen: &Cell<u64>, cpus: &HostCpus) {
    while !ended.get() {
        // Runs what can run, then sleeps until a wake-up (the probe is
        // `Pending` once, `Ready` when polled again after the wake-up).
        let mut woken = false;
        pool.run_until(std::future::poll_fn(|_| {
            if woken || ended.get() {
                std::task::Poll::Ready(())
            } else {
                woken = true;
                std::task::Poll::Pending
            }
        }));
        let budget = if spinning_pays() {
            SPIN_BEFORE_SLEEP
        } else {
            Duration::ZERO
        };
        let mut seen = jobs_seen.get();
        let mut spin = Spin::new(budget, PURE_SPIN);
        while !ended.get() {
            pool.run_until_stalled();
            cpus.host.note();
            if jobs_seen.get() != seen {
                seen = jobs_seen.get();
                spin.restart();
            }
            // Beside the thread that hands it work, a host that would spin
            // moves away, or sleeps so that neither waits for the other to
            // stop looking.
            if !budget.is_zero() && cpus.submitter.is_here() && !move_off_this_cpu() {
                break;
            }
            if spin.pause() == Pause::Spent {
                break;
            }
        }
    }
}

fn read_stack(context: &RunContext, request_id: u64) -> Result<RunStack, ScriptError> {
    let mut registry = context.registry.borrow_mut();
    let entry = registry.get_mut(request_id)?;
    let (true, Some(thread)) = (entry.is_paused(), entry.thread.clone()) else {
        return Err(ScriptError::NotPaused { request_id });
    };
    let req = entry.req.clone();
    let bottom_name = if entry.request.pipeline == crate::debug::CELL_PIPELINE {
        format!("cell {}", entry.stage)
    } else {
        format!("stage {}", entry.stage)
    };
    inspect::read_stack(
        &context.debug,
        &thread,
        &bottom_name,
        req.as_ref(),
        &mut entry.inspected,
    )
    .map_err(|error| ScriptError::Inspect {
        request_id,
        message: error.to_string(),
    })
}

fn read_variables(
    context: &RunContext,
    request_id: u64,
    reference: VariablesRef,
) -> Result<Vec<Variable>, ScriptError> {
    let mut registry = context.registry.borrow_mut();
    let entry = registry.get_mut(request_id)?;
    if !entry.is_paused() {
        return Err(ScriptError::NotPaused { request_id });
    }
    let item = (reference.0 as usize)
        .checked_sub(1)
        .and_then(|idx| entry.inspected.get(idx))
        .cloned()
        .ok_or(ScriptError::UnknownVariables {
            request_id,
            reference: reference.0,
        })?;
    let thread = entry.thread.clone();
    let req = entry.req.clone();
    let paused = inspect::Paused {
        lua: &context.lua,
        debug: &context.debug,
        thread: thread.as_ref(),
        req: req.as_ref(),
    };
    inspect::list(&paused, &item, &mut entry.inspected, Page::default()).map_err(|error| {
        ScriptError::Inspect {
            request_id,
            message: error.to_string(),
        }
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Calls `check` as a coroutine under the watchdog, which stops it at the
/// deadline; no hook runs unless it gets there.
fn call_with_deadline(context: &RunContext, check: &Function, timeout: Duration) -> CheckResult {
    let describe = |error: &mlua::Error| {
        let diagnostic = eval::lua_error_diagnostic(error, Path::new(""));
        (
            diagnostic.file.display().to_string(),
            diagnostic.line,
            diagnostic.message,
        )
    };
    let thread = context
        .lua
        .create_thread(check.clone())
        .map_err(|error| error.to_string())?;
    let guard = context
        .watchdog
        .enter(&thread, Some(Instant::now() + timeout), 0);
    let result = thread.resume::<Value>(());
    let verdict = guard.leave();
    if verdict.is_some() {
        thread.remove_hook();
        let (file, line) = match &result {
            Err(error) => {
                let (file, line, _) = describe(error);
                (file, line)
            }
            Ok(_) => (String::new(), 0),
        };
        let what = match verdict {
            Some(Verdict::Interrupted) => "the check was interrupted".to_owned(),
            _ => format!("the check ran past its timeout of {timeout:?}"),
        };
        return Err(format!("{file}:{line}: {what}"));
    }
    match result {
        Ok(Value::Nil | Value::Boolean(false)) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) => {
            let (file, line, message) = describe(&error);
            Err(format!("{file}:{line}: {message}"))
        }
    }
}
