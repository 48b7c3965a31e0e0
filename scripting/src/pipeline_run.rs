//! Running one request through a pipeline on the script host's thread.
//!
//! Each Lua stage runs as a coroutine (`coroutine`), so a request that
//! waits on Rust (an embedding) or on the debugger yields and the host runs
//! other requests meanwhile; each stage runs under its time budget. The
//! embed stage asks the kernel through [`Effects`] and resumes when the
//! answer arrives, from whatever thread; the vector reaches Lua as a
//! `lua_vector` userdata, not a table. The run keeps its entry in the
//! host's registry current (stage, running or waiting).
//! Nothing here knows a runtime, a socket or a wire format.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{Function, Lua, Table, Value};

use crate::budget::{Stopped, Watchdog};
use crate::coroutine::{self, CallError, CoroutineCall};
use crate::eval::lua_error_diagnostic;
use crate::host::HostConfig;
use crate::lua_vector::LuaVector;
use crate::notebook_api::{CellSubmission, DataReply, KernelQuery};
use crate::run_registry::{Registry, RunEvent, RunState};
use crate::spec::{FunctionId, GraphSpec, PipelineSpec, StageKind, StageSpec};
use crate::stage_log::{StageLog, StageOutput as StageOutputRecord, StageTrace};

/// A request as a pipeline sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRequest {
    pub id: u64,
    pub correlation_id: String,
    pub pipeline: String,
    /// `"high"`, `"medium"` or `"low"`.
    pub priority: String,
    pub text: String,
    /// The kernel's own state of the request (its deadline, its cancel
    /// token); handed back unchanged with every effect the request asks for.
    pub scope: RequestScope,
    /// When set, each stage's timing and output (or error) is appended
    /// here as the stage ends (the kernel's journal asks for it); `None`
    /// copies nothing.
    pub stage_log: Option<StageLog>,
}

/// Whatever the kernel attaches to a request, opaque to scripting. It
/// travels with the request into every [`Effects`] call, so that the
/// kernel never looks a request's state up by id.
#[derive(Clone, Default)]
pub struct RequestScope(Option<Arc<dyn Any + Send + Sync>>);

impl RequestScope {
    pub fn new<T: Any + Send + Sync>(state: T) -> RequestScope {
        RequestScope(Some(Arc::new(state)))
    }

    /// The kernel's state, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|state| state.downcast_ref())
    }
}

impl fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "RequestScope(..)"
        } else {
            "RequestScope(none)"
        })
    }
}

impl PartialEq for RequestScope {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// What a pipeline produced for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineAnswer {
    pub text: String,
    pub vector: Option<Vec<f32>>,
    /// Other scalar fields the stages set on `req` (as text).
    pub fields: BTreeMap<String, String>,
    /// Time spent in each stage, in order.
    pub stages: Vec<(String, Duration)>,
    /// The pipeline's fallback function produced this answer after a stage
    /// failed.
    pub degraded: bool,
    /// The embed stage's answer came from its fallback service.
    pub embed_fallback: bool,
}

/// A stage that failed: where, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pipeline `{pipeline}`, stage `{stage}` failed at {file}:{line}: {message}")]
pub struct StageFailure {
    pub pipeline: String,
    pub stage: String,
    pub file: String,
    pub line: u32,
    pub message: String,
    /// The kernel's error behind an embed stage's failure; the kernel
    /// decides from it whether the failure is transient. `None` for
    /// failures of the script itself, which are permanent.
    pub cause: Option<EmbedFailure>,
    /// The host stopped the stage: it ran past its budget, or was
    /// interrupted. Permanent.
    pub stopped: Option<Stopped>,
}

/// One embedding asked of the kernel by an embed stage.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedCall {
    pub request_id: u64,
    /// The request's [`PipelineRequest::scope`].
    pub scope: RequestScope,
    pub service: String,
    pub fallback: Option<String>,
    /// Services that share the work with `service` (least in flight).
    pub shared_with: Vec<String>,
    pub text: String,
}

/// The kernel's answer to an [`EmbedCall`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedAnswer {
    pub vector: Vec<f32>,
    pub from_fallback: bool,
}

/// Why an embedding failed: the kernel's own error, kept whole so that
/// the kernel can classify it when the request is answered.
#[derive(Debug, Clone)]
pub struct EmbedFailure(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl EmbedFailure {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> EmbedFailure {
        EmbedFailure(Arc::new(error))
    }

    /// The kernel's error, if it is an `E`.
    pub fn get<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl fmt::Display for EmbedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for EmbedFailure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.to_string() == other.to_string()
    }
}

/// An embedding failure of the script host itself (no kernel attached).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostEmbedError(pub String);

/// Receives an embedding answer; may run on any thread.
pub type EmbedReply = Box<dyn FnOnce(Result<EmbedAnswer, EmbedFailure>) + Send>;

/// What pipelines ask of the kernel, and what the host tells it.
pub trait Effects: Send + Sync + 'static {
    fn embed(&self, call: EmbedCall, reply: EmbedReply);

    /// A request paused or resumed under the debugger. Called on the host
    /// thread: return quickly, and never wait on the host from here.
    fn run_event(&self, event: RunEvent) {
        let _ = event;
    }

    /// What the debugger tells its front end: a request stopped (and
    /// why) or runs again, printed text and logpoints. Called on the host
    /// thread: return quickly.
    fn debug_event(&self, event: crate::debug::DebugEvent) {
        let _ = event;
    }

    /// A notebook cell submits a request (`s.submit`); `reply` gets the
    /// answer as data (a table of kind `spindle.answer`). The cell's own
    /// effects answer this; the default has no kernel to ask.
    fn submit(&self, submission: CellSubmission, reply: DataReply) {
        reply(Err(format!(
            "no kernel is attached to take a request for pipeline `{}`",
            submission.pipeline
        )));
    }

    /// A notebook cell asks the kernel for its status, services,
    /// pipelines, metrics or service graph.
    fn query(&self, query: KernelQuery, reply: DataReply) {
        reply(Err(format!("no kernel is attached to answer {query:?}")));
    }

    /// A notebook cell applies the graph declared so far (`s.up()`) or an
    /// empty one (`s.down()`); `reply` gets what changed.
    fn apply_graph(&self, graph: GraphSpec, reply: DataReply) {
        let _ = graph;
        reply(Err("no kernel is attached to run a graph".to_owned()));
    }

    /// A stage's `s.state` call; `reply` gets the store's answer.
    fn state(&self, call: crate::StateCall, reply: crate::StateReply) {
        let _ = call;
        reply(Err(
            "this kernel keeps no state (it runs without a data directory)".to_owned(),
        ));
    }
}

/// Effects of a host with no kernel attached: every embedding fails.
pub(crate) struct NoEffects;

impl Effects for NoEffects {
    fn embed(&self, call: EmbedCall, reply: EmbedReply) {
        reply(Err(EmbedFailure::new(HostEmbedError(format!(
            "no embedding engine is attached for `{}`",
            call.service
        )))));
    }
}

/// What a pipeline run needs from the host thread.
pub(crate) struct RunContext {
    pub lua: Lua,
    /// The graph new runs use. A notebook's `s.up()` replaces it; a run
    /// holds the one it started with.
    pub graph: RefCell<Option<Rc<GraphSpec>>>,
    /// The Lua functions specs refer to by id; only ever appended to, so
    /// an id keeps its meaning for runs in flight.
    pub functions: RefCell<Vec<Function>>,
    pub effects: Arc<dyn Effects>,
    pub config: HostConfig,
    /// The runs in flight; borrowed only between resumes, never across an
    /// await.
    pub registry: RefCell<Registry>,
    pub watchdog: Watchdog,
    /// Lua's `debug` library, for Rust only (see `lua_raw`).
    pub debug: Table,
    /// Breakpoints, steps and filters; borrowed only between resumes.
    pub debugger: RefCell<crate::debug::debugger::Debugger>,
    /// Builds each run's `req`.
    pub request_tables: RequestTables,
}

impl RunContext {
    /// The graph new runs use now.
    pub fn graph(&self) -> Option<Rc<GraphSpec>> {
        self.graph.borrow().clone()
    }

    /// The Lua function with id `function`.
    pub fn function(&self, function: FunctionId) -> Option<Function> {
        self.functions.borrow().get(function.0 as usize).cloned()
    }
}

/// Fields of `req` that the runner owns; everything else is reported back as
/// a free field.
const OWN_FIELDS: &[&str] = &[
    "id",
    "correlation_id",
    "pipeline",
    "priority",
    "text",
    "vector",
];

pub(crate) async fn run(
    context: Rc<RunContext>,
    request: Rc<PipelineRequest>,
) -> Result<RunAnswer, StageFailure> {
    let failure = |stage: &str, message: String| StageFailure {
        pipeline: request.pipeline.clone(),
        stage: stage.to_owned(),
        file: String::new(),
        line: 0,
        message,
        cause: None,
        stopped: None,
    };
    let graph = context.graph();
    let Some(pipeline) = graph
        .as_deref()
        .and_then(|graph| graph.pipeline(&request.pipeline))
    else {
        return Err(failure(
            "",
            format!("no pipeline named `{}`", request.pipeline),
        ));
    };
    let mut req = context
        .request_tables
        .build(&context.lua, &request)
        .map_err(|e| failure("", e.to_string()))?;
    let mut stages = Vec::new();
    let mut embed_fallback = false;
    for stage in &pipeline.stages {
        let started = Instant::now();
        let result = run_stage(&context, pipeline, stage, &req, &request).await;
        let elapsed = started.elapsed();
        stages.push((stage.name.clone(), elapsed));
        match &result {
            Ok(StageOutput::Request(next)) => req = next.clone(),
            Ok(StageOutput::Embedded { from_fallback }) => embed_fallback |= *from_fallback,
            Err(_) => {}
        }
        if let Some(log) = &request.stage_log {
            log.push(trace_of(
                &context.lua,
                &stage.name,
                started,
                elapsed,
                &req,
                &request,
                &result,
            ));
        }
        match result {
            Ok(_) => {}
            Err(stage_failure) => {
                let Some(fallback) = pipeline.fallback else {
                    return Err(stage_failure);
                };
                // An interrupt means "stop this", not "answer degraded".
                if stage_failure.stopped == Some(Stopped::Interrupted) {
                    return Err(stage_failure);
                }
                let fallback_started = Instant::now();
                let degraded =
                    call_fallback(&context, pipeline, fallback, &req, &request, &stage_failure)
                        .await;
                if let Some(log) = &request.stage_log {
                    let elapsed = fallback_started.elapsed();
                    let trace = match &degraded {
                        Ok(answer_table) => trace_of(
                            &context.lua,
                            "fallback",
                            fallback_started,
                            elapsed,
                            answer_table,
                            &request,
                            &Ok(()),
                        ),
                        Err(message) => StageTrace {
                            stage: "fallback".to_owned(),
                            started: fallback_started,
                            elapsed,
                            output: None,
                            error: Some(message.clone()),
                        },
                    };
                    log.push(trace);
                }
                return match degraded {
                    Ok(answer_table) => {
                        let mut answered =
                            run_answer(&context, &answer_table, &request, stages, embed_fallback)
                                .map_err(|message| failure("fallback", message))?;
                        answered.answer.degraded = true;
                        Ok(answered)
                    }
                    Err(message) => Err(StageFailure {
                        message: format!(
                            "{}; then the fallback failed: {message}",
                            stage_failure.message
                        ),
                        ..stage_failure
                    }),
                };
            }
        }
    }
    run_answer(&context, &req, &request, stages, embed_fallback)
        .map_err(|message| failure("answer", message))
}

/// The run's answer in `table` (the last stage's `req`, or the fallback's
/// answer), its text left to the host when it is the request's.
fn run_answer(
    context: &RunContext,
    table: &Table,
    request: &PipelineRequest,
    stages: Vec<(String, Duration)>,
    embed_fallback: bool,
) -> Result<RunAnswer, String> {
    let (mut answer, text_is_request) =
        answer_from(&context.lua, table, request, stages, Unchanged::Leave)?;
    answer.embed_fallback = embed_fallback;
    Ok(RunAnswer {
        answer,
        text_is_request,
    })
}

/// What a run answered. When the stages left the request's text as it
/// came, `text_is_request` is set and the answer's `text` is empty: the
/// host hands the request's own text back with the answer (`host.rs`), so
/// that the text is not copied here, and the kernel's thread, which made
/// it, also frees it (glibc takes the making thread's arena lock for a
/// free from any other thread, and a request's text is too large for the
/// freeing thread's cache).
pub(crate) struct RunAnswer {
    pub answer: PipelineAnswer,
    pub text_is_request: bool,
}

/// What [`answer_from`] does with a text the stages left unchanged.
#[derive(Clone, Copy, PartialEq)]
enum Unchanged {
    /// Copies the request's text into the answer.
    Copy,
    /// Leaves the answer's text empty and says so.
    Leave,
}

enum StageOutput {
    Request(Table),
    Embedded { from_fallback: bool },
}

/// What a stage did, for the request's [`StageLog`]: `req` after it, or its
/// error (located like the request's answer).
fn trace_of<T>(
    lua: &Lua,
    stage: &str,
    started: Instant,
    elapsed: Duration,
    req: &Table,
    request: &PipelineRequest,
    result: &Result<T, StageFailure>,
) -> StageTrace {
    let (output, error) = match result {
        Ok(_) => match answer_from(lua, req, request, Vec::new(), Unchanged::Copy) {
            Ok((answer, _)) => (
                Some(StageOutputRecord {
                    text: answer.text,
                    vector: answer.vector,
                    fields: answer.fields.into_iter().collect(),
                }),
                None,
            ),
            // The stage left `req` in a shape the answer will reject too
            // (a `text` that is not a string); say so here already.
            Err(message) => (None, Some(message)),
        },
        Err(failure) if failure.file.is_empty() => (None, Some(failure.message.clone())),
        Err(failure) => (
            None,
            Some(format!(
                "{}:{}: {}",
                failure.file, failure.line, failure.message
            )),
        ),
    };
    StageTrace {
        stage: stage.to_owned(),
        started,
        elapsed,
        output,
        error,
    }
}

async fn run_stage(
    context: &RunContext,
    pipeline: &PipelineSpec,
    stage: &StageSpec,
    req: &Table,
    request: &PipelineRequest,
) -> Result<StageOutput, StageFailure> {
    let failure = |message: String, cause: Option<EmbedFailure>| StageFailure {
        pipeline: pipeline.name.clone(),
        stage: stage.name.clone(),
        file: stage.location.file.display().to_string(),
        line: stage.location.line,
        message,
        cause,
        stopped: None,
    };
    match &stage.kind {
        StageKind::Lua { function } => {
            context
                .registry
                .borrow_mut()
                .set_stage(request.id, &stage.name, RunState::Running);
            let call = CoroutineCall {
                request_id: request.id,
                pipeline: &pipeline.name,
                stage: &stage.name,
                handled_by_fallback: pipeline.fallback.is_some(),
                budget: pipeline
                    .stage_budget(stage)
                    .or(context.config.default_stage_budget),
                req: Some(req),
            };
            let result = call_function(context, call, *function, (req.clone(),)).await;
            match result {
                Ok(Value::Nil) => Ok(StageOutput::Request(req.clone())),
                Ok(Value::Table(next)) => Ok(StageOutput::Request(next)),
                Ok(other) => Err(failure(
                    format!(
                        "the stage returned {}; a stage returns req (or nothing)",
                        other.type_name()
                    ),
                    None,
                )),
                Err(error) => Err(call_failure(pipeline, &stage.name, &stage.location, error)),
            }
        }
        StageKind::Embed {
            service,
            fallback,
            shared_with,
        } => {
            context
                .registry
                .borrow_mut()
                .set_stage(request.id, &stage.name, RunState::Waiting);
            let services: Vec<&str> = std::iter::once(service.as_str())
                .chain(fallback.as_deref())
                .collect();
            let breakpoints = context.debugger.borrow_mut().embed_breakpoints(
                &pipeline.name,
                &stage.name,
                &services,
            );
            if !breakpoints.is_empty() {
                // Stopped before the embed call: no coroutine, `req` as the
                // Request scope, the stage's declaration as the place.
                context.registry.borrow_mut().attach_req(request.id, req);
                let call = CoroutineCall {
                    request_id: request.id,
                    pipeline: &pipeline.name,
                    stage: &stage.name,
                    handled_by_fallback: pipeline.fallback.is_some(),
                    budget: None,
                    req: Some(req),
                };
                let place = (
                    stage.location.file.display().to_string(),
                    stage.location.line,
                );
                coroutine::stop_here(
                    context,
                    &call,
                    crate::debug::StopReason::FunctionBreakpoint,
                    place,
                    breakpoints,
                    None,
                )
                .await;
                context.registry.borrow_mut().detach(request.id);
                context
                    .registry
                    .borrow_mut()
                    .set_stage(request.id, &stage.name, RunState::Waiting);
            }
            let text = match req.raw_get::<Value>("text") {
                Ok(Value::String(text)) => text.to_string_lossy(),
                Ok(other) => {
                    return Err(failure(
                        format!(
                            "req.text must be a string to embed, found {}",
                            other.type_name()
                        ),
                        None,
                    ));
                }
                Err(error) => return Err(failure(error.to_string(), None)),
            };
            let (sender, receiver) = futures::channel::oneshot::channel();
            context.effects.embed(
                EmbedCall {
                    request_id: request.id,
                    scope: request.scope.clone(),
                    service: service.clone(),
                    fallback: fallback.clone(),
                    shared_with: shared_with.clone(),
                    text,
                },
                Box::new(move |answer| {
                    let _ = sender.send(answer);
                }),
            );
            let answer = receiver
                .await
                .map_err(|_| {
                    let gone = EmbedFailure::new(HostEmbedError(
                        "the embedding service went away".to_owned(),
                    ));
                    failure(gone.to_string(), Some(gone))
                })?
                .map_err(|embed_failure| failure(embed_failure.to_string(), Some(embed_failure)))?;
            context
                .registry
                .borrow_mut()
                .set_stage(request.id, &stage.name, RunState::Running);
            // No table copy: stages that read it go through the userdata.
            let vector = context
                .lua
                .create_userdata(LuaVector::new(answer.vector))
                .map_err(|error| failure(error.to_string(), None))?;
            req.raw_set("vector", vector)
                .map_err(|error| failure(error.to_string(), None))?;
            Ok(StageOutput::Embedded {
                from_fallback: answer.from_fallback,
            })
        }
    }
}

/// Runs a script function as a coroutine of the request.
async fn call_function(
    context: &RunContext,
    call: CoroutineCall<'_>,
    function: FunctionId,
    args: impl mlua::IntoLuaMulti,
) -> Result<Value, CallError> {
    let function = context.function(function).ok_or_else(|| {
        CallError::Lua(mlua::Error::runtime(format!(
            "no Lua function with id {}",
            function.0
        )))
    })?;
    coroutine::call(context, call, &function, args).await
}

async fn call_fallback(
    context: &RunContext,
    pipeline: &PipelineSpec,
    fallback: FunctionId,
    req: &Table,
    request: &PipelineRequest,
    stage_failure: &StageFailure,
) -> Result<Table, String> {
    context
        .registry
        .borrow_mut()
        .set_stage(request.id, "fallback", RunState::Running);
    let call = CoroutineCall {
        request_id: request.id,
        pipeline: &pipeline.name,
        stage: "fallback",
        handled_by_fallback: false,
        budget: pipeline.budget.or(context.config.default_stage_budget),
        req: Some(req),
    };
    let args = (req.clone(), stage_failure.to_string());
    match call_function(context, call, fallback, args).await {
        Ok(Value::Table(answer)) => Ok(answer),
        Ok(Value::Nil) => Ok(req.clone()),
        Ok(other) => Err(format!(
            "the fallback returned {}; it returns req (or nothing)",
            other.type_name()
        )),
        Err(error) => {
            let failure = call_failure(pipeline, "fallback", &pipeline.location, error);
            Err(format!(
                "{}:{}: {}",
                failure.file, failure.line, failure.message
            ))
        }
    }
}

/// A failed coroutine call as a stage failure: where Lua raised the error,
/// or where the host stopped it.
fn call_failure(
    pipeline: &PipelineSpec,
    stage: &str,
    location: &crate::spec::Location,
    error: CallError,
) -> StageFailure {
    let (error, stopped) = match error {
        CallError::Lua(error) => (Some(error), None),
        CallError::Stopped { stopped, error } => (error, Some(stopped)),
    };
    let diagnostic = error
        .as_ref()
        .map(|error| lua_error_diagnostic(error, &location.file));
    let (file, line, lua_message) = match diagnostic {
        Some(diagnostic) => (
            diagnostic.file.display().to_string(),
            diagnostic.line,
            diagnostic.message,
        ),
        None => (
            location.file.display().to_string(),
            location.line,
            String::new(),
        ),
    };
    let message = match stopped {
        None => lua_message,
        Some(Stopped::Budget(budget)) => format!(
            "ran past its budget of {budget:?} of Lua time (waits on effects and debugger \
             pauses do not count); raise `budget` on the stage or pipeline if it needs more"
        ),
        Some(Stopped::Interrupted) => "interrupted".to_owned(),
    };
    StageFailure {
        pipeline: pipeline.name.clone(),
        stage: stage.to_owned(),
        file,
        line,
        message,
        cause: None,
        stopped,
    }
}

/// Builds each run's `req` in one protected call (`lua_raw::request_table`)
/// and keeps the Lua strings of pipeline and priority names between
/// requests. The answer is read back by `lua_raw::read_answer`.
pub(crate) struct RequestTables {
    names: RefCell<Vec<(Box<str>, mlua::LuaString)>>,
}

/// Names kept at most; a notebook that declares pipeline after pipeline
/// starts the list again when it is full.
const KEPT_NAMES: usize = 64;

impl RequestTables {
    pub(crate) fn new() -> RequestTables {
        RequestTables {
            names: RefCell::new(Vec::new()),
        }
    }

    /// `req` for a request: the five fields the runner owns.
    fn build(&self, lua: &Lua, request: &PipelineRequest) -> mlua::Result<Table> {
        let pipeline = self.name(lua, &request.pipeline)?;
        let priority = self.name(lua, &request.priority)?;
        crate::lua_raw::request_table(
            lua,
            &crate::lua_raw::RequestFields {
                id: request.id,
                correlation_id: &request.correlation_id,
                pipeline: &pipeline,
                priority: &priority,
                text: &request.text,
            },
        )
    }

    fn name(&self, lua: &Lua, name: &str) -> mlua::Result<mlua::LuaString> {
        let mut names = self.names.borrow_mut();
        if let Some((_, kept)) = names.iter().find(|(kept, _)| **kept == *name) {
            return Ok(kept.clone());
        }
        if names.len() >= KEPT_NAMES {
            names.clear();
        }
        let made = lua.create_string(name)?;
        names.push((name.into(), made.clone()));
        Ok(made)
    }
}

/// The answer in `req`, and whether its text is the request's own (only
/// with [`Unchanged::Leave`]; the answer's text is then empty).
fn answer_from(
    lua: &Lua,
    req: &Table,
    request: &PipelineRequest,
    stages: Vec<(String, Duration)>,
    unchanged: Unchanged,
) -> Result<(PipelineAnswer, bool), String> {
    let crate::lua_raw::AnswerFields {
        text,
        same_text: same,
        vector,
        free_fields,
    } = crate::lua_raw::read_answer(lua, req, &request.text, OWN_FIELDS)
        .map_err(|error| error.to_string())?;
    let text = match text {
        // Unchanged by the stages: no conversion back from Lua.
        _ if same && unchanged == Unchanged::Leave => String::new(),
        _ if same => request.text.clone(),
        Value::String(text) => text.to_string_lossy(),
        other => {
            return Err(format!(
                "req.text must be a string, found {}",
                other.type_name()
            ));
        }
    };
    let vector = match vector {
        Value::Nil => None,
        Value::UserData(data) if data.is::<LuaVector>() => LuaVector::read(&data),
        Value::Table(values) => {
            let mut vector = Vec::with_capacity(values.raw_len());
            for value in values.sequence_values::<f64>() {
                vector.push(
                    value.map_err(|_| "req.vector must hold numbers only".to_owned())? as f32,
                );
            }
            Some(vector)
        }
        other => {
            return Err(format!(
                "req.vector must be a list of numbers, found {}",
                other.type_name()
            ));
        }
    };
    let mut fields = BTreeMap::new();
    let mut error = None;
    // Walked from Rust (a protected call per step) only when it has any.
    if free_fields {
        req.for_each::<Value, Value>(|key, value| {
            let Value::String(key) = key else {
                return Ok(());
            };
            // The runner's own fields are skipped without making a Rust string
            // of their names.
            let name = key.as_bytes();
            if OWN_FIELDS.iter().any(|own| own.as_bytes() == &name[..]) {
                return Ok(());
            }
            let text = match value {
                Value::String(text) => text.to_string_lossy(),
                Value::Integer(number) => number.to_string(),
                Value::Number(number) => number.to_string(),
                Value::Boolean(flag) => flag.to_string(),
                _ => return Ok(()),
            };
            fields.insert(key.to_string_lossy(), text);
            Ok(())
        })
        .unwrap_or_else(|failure| error = Some(failure.to_string()));
    }
    if let Some(error) = error {
        return Err(error);
    }
    let answer = PipelineAnswer {
        text,
        vector,
        fields,
        stages,
        degraded: false,
        embed_fallback: false,
    };
    Ok((answer, same && unchanged == Unchanged::Leave))
}
