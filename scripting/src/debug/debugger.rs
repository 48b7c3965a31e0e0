//! The debugger's state on the script host, and its commands: breakpoints
//! with their hit counts, the exception filters, each request's pending
//! step or pause, and the decisions taken when a hook stops a coroutine
//! (does the condition hold, is the hit count reached, is it a logpoint?).
//!
//! One owner: the host thread, which reaches it between resumes. Events
//! leave through [`crate::Effects::debug_event`]. No protocol here.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use mlua::{Function, Table, Thread, Value};

use super::evaluate::{self, Evaluator};
use super::hooks::{self, ChunkBreakpoints, Mode, Reason, StopCause};
use super::lines::{Binding, ChunkMap};
use super::reach::{Reach, Reachable};
use super::{
    BreakpointStatus, DebugEvent, EvaluateContext, ExceptionFilter, FunctionBreakpoint,
    HookCounters, HookReport, Output, OutputCategory, Page, Scope, SourceBreakpoint, StepKind,
    Stop, StopReason, Variable, VariablesRef,
};
use crate::ScriptError;
use crate::host::DebugReply;
use crate::lua_raw::{ConditionRef, ConditionRuntime};
use crate::spec::{GraphSpec, StageKind};

/// A command for the debugger core, with its reply; send it with
/// [`crate::ScriptHost::debug`]. Each reply runs on the host thread.
pub enum DebugCommand {
    /// A front end is attached: `print` goes to it as output events
    /// (instead of stdout) until it detaches.
    Attach { reply: DebugReply<()> },
    /// Clears every breakpoint, step and filter and lets every stopped
    /// request go on.
    Detach { reply: DebugReply<()> },
    /// Replaces the line breakpoints of `file` (an absolute path, as the
    /// chunk is named).
    SetBreakpoints {
        file: String,
        breakpoints: Vec<SourceBreakpoint>,
        reply: DebugReply<Vec<BreakpointStatus>>,
    },
    SetFunctionBreakpoints {
        breakpoints: Vec<FunctionBreakpoint>,
        reply: DebugReply<Vec<BreakpointStatus>>,
    },
    SetExceptionBreakpoints {
        filters: Vec<ExceptionFilter>,
        reply: DebugReply<()>,
    },
    /// The next request to start a Lua stage stops at its first line.
    StopOnEntry { reply: DebugReply<()> },
    /// Pauses one request (or every live one) at its next Lua line; the
    /// reply lists the requests asked to pause.
    Pause {
        request_id: Option<u64>,
        reply: DebugReply<Vec<u64>>,
    },
    /// Lets one stopped request (or every one) go on; the reply lists
    /// those that were stopped.
    Continue {
        request_id: Option<u64>,
        reply: DebugReply<Vec<u64>>,
    },
    Step {
        request_id: u64,
        kind: StepKind,
        reply: DebugReply<()>,
    },
    /// The scopes of frame `frame` (0 is the innermost) of a stopped
    /// request: Locals, Upvalues, Request, Globals.
    Scopes {
        request_id: u64,
        frame: u32,
        reply: DebugReply<Vec<Scope>>,
    },
    /// The entries of a scope, table or vector of a stopped request.
    Variables {
        request_id: u64,
        reference: VariablesRef,
        page: Page,
        reply: DebugReply<Vec<Variable>>,
    },
    /// Evaluates an expression in frame `frame` of a stopped request, or
    /// with the globals only when `request_id` is `None`.
    Evaluate {
        request_id: Option<u64>,
        frame: u32,
        expression: String,
        context: EvaluateContext,
        reply: DebugReply<Variable>,
    },
    /// Sets `name` in a scope or table to the value of the Lua expression
    /// `value` (evaluated in the innermost frame).
    SetVariable {
        request_id: u64,
        reference: VariablesRef,
        name: String,
        value: String,
        reply: DebugReply<Variable>,
    },
    /// The script files Lua has loaded code from.
    LoadedSources { reply: DebugReply<Vec<String>> },
    /// Source text for a chunk that is not a file (a notebook cell), so
    /// that breakpoints in it can bind. `path` is its chunk name without
    /// the `@`.
    RegisterSource { path: String, text: String },
    /// The globals a user defined (Lua's own libraries and functions left
    /// out), for a variables view while nothing is stopped.
    Globals { reply: DebugReply<Vec<Variable>> },
    /// The hook each live request's coroutine carries, and the counters of
    /// the hook policy.
    Hooks {
        reply: DebugReply<(Vec<HookReport>, HookCounters)>,
    },
}

impl std::fmt::Debug for DebugCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DebugCommand")
    }
}

impl DebugCommand {
    /// Answers the command with `error` (the host is gone).
    pub(crate) fn fail(self, error: impl Fn() -> ScriptError) {
        match self {
            DebugCommand::Attach { reply }
            | DebugCommand::Detach { reply }
            | DebugCommand::SetExceptionBreakpoints { reply, .. }
            | DebugCommand::StopOnEntry { reply }
            | DebugCommand::Step { reply, .. } => reply(Err(error())),
            DebugCommand::SetBreakpoints { reply, .. }
            | DebugCommand::SetFunctionBreakpoints { reply, .. } => reply(Err(error())),
            DebugCommand::Pause { reply, .. } | DebugCommand::Continue { reply, .. } => {
                reply(Err(error()))
            }
            DebugCommand::Scopes { reply, .. } => reply(Err(error())),
            DebugCommand::Variables { reply, .. } => reply(Err(error())),
            DebugCommand::Evaluate { reply, .. } | DebugCommand::SetVariable { reply, .. } => {
                reply(Err(error()))
            }
            DebugCommand::LoadedSources { reply } => reply(Err(error())),
            DebugCommand::Globals { reply } => reply(Err(error())),
            DebugCommand::RegisterSource { .. } => {}
            DebugCommand::Hooks { reply } => reply(Err(error())),
        }
    }
}

struct LineBreakpoint {
    id: u32,
    line: u32,
    condition: Option<String>,
    /// The condition compiled for the hook to check itself (see
    /// `hooks::ChunkBreakpoints::checked_in_hook`).
    compiled: Option<mlua::RegistryKey>,
    hit_condition: Option<HitCondition>,
    log_message: Option<String>,
    hits: u64,
}

struct FunctionBreakpointEntry {
    id: u32,
    /// `Some(pipeline)` for `pipeline/stage`.
    pipeline: Option<String>,
    name: String,
    condition: Option<String>,
    hit_condition: Option<HitCondition>,
    hits: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HitCondition {
    Equal(u64),
    AtLeast(u64),
    Greater(u64),
    Less(u64),
    AtMost(u64),
    Every(u64),
}

impl HitCondition {
    fn parse(text: &str) -> Result<HitCondition, String> {
        let text = text.trim();
        let (operator, number) = text
            .find(|ch: char| ch.is_ascii_digit())
            .map(|at| text.split_at(at))
            .ok_or_else(|| format!("hit count `{text}` has no number"))?;
        let number: u64 = number
            .trim()
            .parse()
            .map_err(|_| format!("hit count `{text}`: `{number}` is not a whole number"))?;
        Ok(match operator.trim() {
            "" | "=" | "==" => HitCondition::Equal(number),
            ">=" => HitCondition::AtLeast(number),
            ">" => HitCondition::Greater(number),
            "<" => HitCondition::Less(number),
            "<=" => HitCondition::AtMost(number),
            "%" if number > 0 => HitCondition::Every(number),
            other => {
                return Err(format!(
                    "hit count `{text}`: unknown operator `{other}`; use N, >= N, > N, < N, <= N or % N"
                ));
            }
        })
    }

    fn holds(self, hits: u64) -> bool {
        match self {
            HitCondition::Equal(n) => hits == n,
            HitCondition::AtLeast(n) => hits >= n,
            HitCondition::Greater(n) => hits > n,
            HitCondition::Less(n) => hits < n,
            HitCondition::AtMost(n) => hits <= n,
            HitCondition::Every(n) => hits.is_multiple_of(n),
        }
    }
}

/// A request's debugger state between its stages.
#[derive(Default)]
struct RequestDebug {
    /// Applies to its next Lua stage (a pause or step not reached yet).
    mode: Option<Mode>,
    /// The function breakpoints that sent it to its stage's entry.
    entry_breakpoints: Vec<u32>,
}

/// The debugger's state; see the module documentation.
pub(crate) struct Debugger {
    attached: std::rc::Rc<std::cell::Cell<bool>>,
    evaluator: Option<Evaluator>,
    /// Where the hook runs conditions; `None` checks them after a yield.
    conditions: Option<ConditionRuntime>,
    /// Finds which functions requests can reach; `None`: all of them.
    reach: Option<Reach>,
    /// Its answer since the breakpoints last changed (`Some(None)`: the
    /// walk gave up).
    reachable: Option<Option<Reachable>>,
    /// The functions the host calls (stages, fallbacks, probes): where
    /// the walk starts.
    roots: Vec<Function>,
    /// Line breakpoints by chunk name (`@/abs/path`).
    lines: HashMap<String, Vec<LineBreakpoint>>,
    functions: Vec<FunctionBreakpointEntry>,
    exceptions: HashSet<ExceptionFilter>,
    stop_on_entry: bool,
    requests: HashMap<u64, RequestDebug>,
    maps: HashMap<String, ChunkMap>,
    sources: HashMap<String, String>,
    /// Line ranges of stage functions by their address: which stage can
    /// reach which breakpoint.
    ranges: HashMap<usize, (String, u32, u32)>,
    next_id: u32,
}

impl Debugger {
    pub(crate) fn new(attached: std::rc::Rc<std::cell::Cell<bool>>) -> Debugger {
        Debugger {
            attached,
            evaluator: None,
            conditions: None,
            reach: None,
            reachable: None,
            roots: Vec::new(),
            lines: HashMap::new(),
            functions: Vec::new(),
            exceptions: HashSet::new(),
            stop_on_entry: false,
            requests: HashMap::new(),
            maps: HashMap::new(),
            sources: HashMap::new(),
            ranges: HashMap::new(),
            next_id: 0,
        }
    }

    /// A front end attaches; `false` if one already is (two would set
    /// and clear each other's breakpoints).
    pub(crate) fn attach(&mut self) -> bool {
        !self.attached.replace(true)
    }

    /// The front end left: nothing of what it set stays.
    pub(crate) fn detach(&mut self) {
        self.attached.set(false);
        self.clear();
    }

    /// Learns a stage function's line range up front, so that a
    /// breakpoint in one stage costs no other stage a hook.
    pub(crate) fn learn_stage_function(&mut self, function: &Function) {
        self.roots.push(function.clone());
        // What the roots reach is walked again when next asked.
        self.reachable = None;
        let key = function.to_pointer() as usize;
        self.ranges.entry(key).or_insert_with(|| {
            let info = function.info();
            (
                info.source.unwrap_or_default(),
                info.line_defined.unwrap_or(0) as u32,
                info.last_line_defined.unwrap_or(0) as u32,
            )
        });
    }

    pub(crate) fn set_evaluator(&mut self, evaluator: Evaluator) {
        self.evaluator = Some(evaluator);
    }

    pub(crate) fn set_reach(&mut self, reach: Reach) {
        self.reach = Some(reach);
    }

    /// Lets the hook check conditions itself, on `runtime`'s thread.
    pub(crate) fn set_condition_runtime(&mut self, runtime: ConditionRuntime) {
        hooks::set_condition_thread(Some(runtime.raw()));
        self.conditions = Some(runtime);
    }

    fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Whether nothing asks for a hook: the fast path of every stage.
    fn is_idle(&self) -> bool {
        self.lines.is_empty()
            && self.functions.is_empty()
            && self.requests.is_empty()
            && !self.stop_on_entry
    }

    /// A stage's coroutine is about to start: the mode it starts in and
    /// whether it can reach a line breakpoint.
    pub(crate) fn plan_stage(
        &mut self,
        request_id: u64,
        pipeline: &str,
        stage: &str,
        function: &Function,
    ) -> (Option<Mode>, bool) {
        if self.is_idle() {
            return (None, false);
        }
        let mut mode = None;
        let mut entry = Vec::new();
        if let Some(state) = self.requests.get_mut(&request_id) {
            mode = state.mode.take();
        }
        for breakpoint in &self.functions {
            let pipeline_matches = breakpoint
                .pipeline
                .as_deref()
                .is_none_or(|name| name == pipeline);
            if pipeline_matches && breakpoint.name == stage {
                entry.push(breakpoint.id);
            }
        }
        if !entry.is_empty() && mode.is_none() {
            mode = Some(Mode::NextLine(Reason::Entry));
            self.requests
                .entry(request_id)
                .or_default()
                .entry_breakpoints = entry;
        } else if mode.is_none() && self.stop_on_entry {
            self.stop_on_entry = false;
            mode = Some(Mode::NextLine(Reason::Entry));
        }
        let reaches = hooks::has_lines() && self.stage_reaches_breakpoint(function);
        (mode, reaches)
    }

    /// A stage can reach a line breakpoint in its own function, or one
    /// outside every stage function in a function some request can reach
    /// (`reach`: a helper nothing calls is out of reach); one inside
    /// another stage's function is out of its reach.
    fn stage_reaches_breakpoint(&mut self, function: &Function) -> bool {
        let key = function.to_pointer() as usize;
        let range = self.ranges.entry(key).or_insert_with(|| {
            let info = function.info();
            (
                info.source.unwrap_or_default(),
                info.line_defined.unwrap_or(0) as u32,
                info.last_line_defined.unwrap_or(0) as u32,
            )
        });
        let (source, first, last) = range.clone();
        let stage_ranges: Vec<(String, u32, u32)> = self.ranges.values().cloned().collect();
        let mut helpers = Vec::new();
        for (chunk, breakpoints) in &self.lines {
            for breakpoint in breakpoints {
                let line = breakpoint.line;
                if *chunk == source && first <= line && line <= last {
                    return true;
                }
                let in_a_stage = stage_ranges
                    .iter()
                    .any(|(other, from, to)| other == chunk && *from <= line && line <= *to);
                if !in_a_stage {
                    helpers.push((chunk.clone(), line));
                }
            }
        }
        if helpers.is_empty() {
            return false;
        }
        if self.reachable.is_none() {
            self.reachable = Some(
                self.reach
                    .as_ref()
                    .and_then(|reach| reach.reachable(&self.roots)),
            );
        }
        match self.reachable.as_ref().and_then(Option::as_ref) {
            Some(reachable) => helpers
                .iter()
                .any(|(chunk, line)| reachable.may_run(chunk, *line)),
            None => true,
        }
    }

    /// The stage's coroutine ended with `mode` still waiting (a step that
    /// did not stop in it): it applies to the next Lua stage.
    pub(crate) fn carry_mode(&mut self, request_id: u64, mode: Option<Mode>) {
        let Some(mode) = mode else { return };
        let carried = match mode {
            Mode::NextLine(Reason::Pause) => Mode::NextLine(Reason::Pause),
            Mode::NextLine(Reason::Entry) => return,
            _ => Mode::NextLine(Reason::Step),
        };
        self.requests.entry(request_id).or_default().mode = Some(carried);
    }

    /// The request has finished: forget it.
    pub(crate) fn forget(&mut self, request_id: u64) {
        self.requests.remove(&request_id);
    }

    /// A pending mode for a request whose coroutine is not running yet.
    pub(crate) fn set_pending(&mut self, request_id: u64, mode: Option<Mode>) {
        match mode {
            Some(mode) => self.requests.entry(request_id).or_default().mode = Some(mode),
            None => {
                if let Some(state) = self.requests.get_mut(&request_id) {
                    state.mode = None;
                }
                self.tidy(request_id);
            }
        }
    }

    /// Whether a pause or step waits for the request's next Lua stage.
    pub(crate) fn has_pending(&self, request_id: u64) -> bool {
        self.requests
            .get(&request_id)
            .is_some_and(|state| state.mode.is_some())
    }

    /// The mode a stopped request resumes with (a step), taken.
    pub(crate) fn take_mode(&mut self, request_id: u64) -> Option<Mode> {
        let mode = self
            .requests
            .get_mut(&request_id)
            .and_then(|state| state.mode.take());
        self.tidy(request_id);
        mode
    }

    fn tidy(&mut self, request_id: u64) {
        if self
            .requests
            .get(&request_id)
            .is_some_and(|state| state.mode.is_none() && state.entry_breakpoints.is_empty())
        {
            self.requests.remove(&request_id);
        }
    }

    /// Whether an error that escaped a stage stops the request.
    pub(crate) fn stops_on_exception(&self, handled_by_fallback: bool) -> bool {
        self.exceptions.contains(&ExceptionFilter::All)
            || (!handled_by_fallback && self.exceptions.contains(&ExceptionFilter::Unhandled))
    }

    /// A function breakpoint on an embed stage or its service: the ids
    /// that stop the request before its embed call.
    pub(crate) fn embed_breakpoints(
        &mut self,
        pipeline: &str,
        stage: &str,
        services: &[&str],
    ) -> Vec<u32> {
        let mut ids = Vec::new();
        for breakpoint in &mut self.functions {
            let pipeline_matches = breakpoint
                .pipeline
                .as_deref()
                .is_none_or(|name| name == pipeline);
            let hit = (pipeline_matches && breakpoint.name == stage)
                || (breakpoint.pipeline.is_none() && services.contains(&breakpoint.name.as_str()));
            if hit && breakpoint.condition.is_none() {
                breakpoint.hits += 1;
                if breakpoint
                    .hit_condition
                    .is_none_or(|condition| condition.holds(breakpoint.hits))
                {
                    ids.push(breakpoint.id);
                }
            }
        }
        ids
    }

    fn stage_names(graph: Option<&GraphSpec>) -> Vec<String> {
        let Some(graph) = graph else {
            return Vec::new();
        };
        graph
            .pipelines
            .iter()
            .flat_map(|pipeline| {
                pipeline
                    .stages
                    .iter()
                    .map(move |stage| format!("{}/{}", pipeline.name, stage.name))
            })
            .collect()
    }

    /// Replaces the function breakpoints.
    pub(crate) fn set_function_breakpoints(
        &mut self,
        graph: Option<&GraphSpec>,
        requested: Vec<FunctionBreakpoint>,
    ) -> Vec<BreakpointStatus> {
        self.functions.clear();
        let mut statuses = Vec::new();
        for breakpoint in requested {
            let id = self.next_id();
            let name = breakpoint.name.trim().to_owned();
            let (pipeline, stage) = match name.split_once('/') {
                Some((pipeline, stage)) => (Some(pipeline.to_owned()), stage.to_owned()),
                None => (None, name.clone()),
            };
            let mut found = None;
            if let Some(graph) = graph {
                for spec in &graph.pipelines {
                    if pipeline.as_deref().is_some_and(|name| name != spec.name) {
                        continue;
                    }
                    for stage_spec in &spec.stages {
                        let service_matches = match &stage_spec.kind {
                            StageKind::Embed {
                                service,
                                fallback,
                                shared_with,
                            } => {
                                pipeline.is_none()
                                    && (*service == stage
                                        || fallback.as_deref() == Some(&stage)
                                        || shared_with.contains(&stage))
                            }
                            StageKind::Lua { .. } => false,
                        };
                        if (stage_spec.name == stage || service_matches) && found.is_none() {
                            found = Some(stage_spec.location.clone());
                        }
                    }
                }
            }
            let hit_condition = match breakpoint.hit_condition.as_deref().map(HitCondition::parse) {
                Some(Err(message)) => {
                    statuses.push(BreakpointStatus {
                        id,
                        verified: false,
                        line: None,
                        file: None,
                        message: Some(message),
                    });
                    continue;
                }
                Some(Ok(condition)) => Some(condition),
                None => None,
            };
            match found {
                Some(location) => {
                    statuses.push(BreakpointStatus {
                        id,
                        verified: true,
                        line: Some(location.line),
                        file: Some(location.file.display().to_string()),
                        message: None,
                    });
                    self.functions.push(FunctionBreakpointEntry {
                        id,
                        pipeline,
                        name: stage,
                        condition: breakpoint.condition.filter(|text| !text.trim().is_empty()),
                        hit_condition,
                        hits: 0,
                    });
                }
                None => statuses.push(BreakpointStatus {
                    id,
                    verified: false,
                    line: None,
                    file: None,
                    message: Some(format!(
                        "no stage or embedding service named `{name}`; function breakpoints \
                         name `pipeline/stage`, a stage, or a service. Stages: {}",
                        Debugger::stage_names(graph).join(", ")
                    )),
                }),
            }
        }
        statuses
    }

    /// Replaces the line breakpoints of `file`.
    pub(crate) fn set_breakpoints(
        &mut self,
        lua: &mlua::Lua,
        file: &str,
        requested: Vec<SourceBreakpoint>,
    ) -> Vec<BreakpointStatus> {
        let chunk = format!("@{file}");
        let map = match self.chunk_map(lua, file) {
            Ok(map) => Some(map),
            Err(_) if requested.is_empty() => None,
            Err(reason) => {
                self.lines.remove(&chunk);
                self.publish_lines();
                return requested
                    .into_iter()
                    .map(|_| BreakpointStatus {
                        id: self.next_id(),
                        verified: false,
                        line: None,
                        file: Some(file.to_owned()),
                        message: Some(reason.clone()),
                    })
                    .collect();
            }
        };
        let mut kept = Vec::new();
        let mut statuses = Vec::new();
        for breakpoint in requested {
            let id = self.next_id();
            let binding = map
                .as_ref()
                .map(|map| map.bind(breakpoint.line, self.sources.contains_key(file)))
                .unwrap_or(Binding::Unbound("no such file".to_owned()));
            let hit_condition = match breakpoint.hit_condition.as_deref().map(HitCondition::parse) {
                Some(Err(message)) => {
                    statuses.push(BreakpointStatus {
                        id,
                        verified: false,
                        line: Some(breakpoint.line),
                        file: Some(file.to_owned()),
                        message: Some(message),
                    });
                    continue;
                }
                Some(Ok(condition)) => Some(condition),
                None => None,
            };
            if let Some(condition) = breakpoint
                .condition
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                && let Err(message) = check_syntax(lua, condition)
            {
                statuses.push(BreakpointStatus {
                    id,
                    verified: false,
                    line: Some(breakpoint.line),
                    file: Some(file.to_owned()),
                    message: Some(format!("the condition does not compile: {message}")),
                });
                continue;
            }
            match binding {
                Binding::Line(line) => {
                    statuses.push(BreakpointStatus {
                        id,
                        verified: true,
                        line: Some(line),
                        file: Some(file.to_owned()),
                        message: (line != breakpoint.line).then(|| {
                            format!(
                                "moved from line {} to line {line}, the next line with code",
                                breakpoint.line
                            )
                        }),
                    });
                    let condition = breakpoint.condition.filter(|text| !text.trim().is_empty());
                    let compiled = condition
                        .as_deref()
                        .and_then(|condition| self.compile_condition(lua, condition));
                    kept.push(LineBreakpoint {
                        id,
                        line,
                        condition,
                        compiled,
                        hit_condition,
                        log_message: breakpoint.log_message,
                        hits: 0,
                    });
                }
                Binding::Unbound(reason) => statuses.push(BreakpointStatus {
                    id,
                    verified: false,
                    line: Some(breakpoint.line),
                    file: Some(file.to_owned()),
                    message: Some(reason),
                }),
            }
        }
        if kept.is_empty() {
            self.lines.remove(&chunk);
        } else {
            self.lines.insert(chunk, kept);
        }
        self.publish_lines();
        statuses
    }

    fn publish_lines(&mut self) {
        // What a request can reach is read again for the new breakpoints.
        self.reachable = None;
        hooks::set_lines(
            self.lines
                .iter()
                .map(|(chunk, breakpoints)| ChunkBreakpoints {
                    source: chunk.clone(),
                    lines: breakpoints
                        .iter()
                        .map(|breakpoint| breakpoint.line)
                        .collect(),
                    checked_in_hook: checked_in_hook(breakpoints),
                    main_is_code: self
                        .sources
                        .contains_key(chunk.strip_prefix('@').unwrap_or(chunk)),
                })
                .collect(),
        );
    }

    /// `condition` compiled as an expression in the hook's frame
    /// environment, kept in the registry; `None` when the hook cannot
    /// check it (no runtime), so the host does after a yield.
    fn compile_condition(&self, lua: &mlua::Lua, condition: &str) -> Option<mlua::RegistryKey> {
        let runtime = self.conditions.as_ref()?;
        let function = lua
            .load(format!("return {condition}"))
            .set_name("=(condition)")
            .set_environment(runtime.env().clone())
            .into_function()
            .ok()?;
        lua.create_registry_value(function).ok()
    }

    fn chunk_map(&mut self, lua: &mlua::Lua, file: &str) -> Result<ChunkMap, String> {
        if let Some(map) = self.maps.get(file) {
            return Ok(map.clone());
        }
        let map = match self.sources.get(file) {
            Some(code) => ChunkMap::of_cell(lua, &format!("@{file}"), code)?,
            None => {
                let text = std::fs::read(Path::new(file))
                    .map_err(|error| format!("cannot read {file}: {error}"))?;
                ChunkMap::of_source(lua, &format!("@{file}"), &text)?
            }
        };
        self.maps.insert(file.to_owned(), map.clone());
        Ok(map)
    }

    pub(crate) fn set_exceptions(&mut self, filters: Vec<ExceptionFilter>) {
        self.exceptions = filters.into_iter().collect();
    }

    pub(crate) fn set_stop_on_entry(&mut self) {
        self.stop_on_entry = true;
    }

    pub(crate) fn register_source(&mut self, path: String, text: String) {
        self.maps.remove(&path);
        self.sources.insert(path, text);
        // Its main chunk is code now (a cell): the hook must know.
        self.publish_lines();
    }

    /// Whether a front end is attached.
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.get()
    }

    /// Clears everything a front end set.
    pub(crate) fn clear(&mut self) {
        self.lines.clear();
        self.functions.clear();
        self.exceptions.clear();
        self.stop_on_entry = false;
        self.requests.clear();
        self.publish_lines();
    }

    /// A hook stopped a coroutine of `request_id` (frame 0 is where): does
    /// the request really stop? Logpoints print here; conditions and hit
    /// counts are checked here.
    pub(crate) fn decide(
        &mut self,
        context: &StopContext<'_>,
        cause: StopCause,
    ) -> Option<(StopReason, Vec<u32>)> {
        match cause {
            StopCause::CrossThreadPause | StopCause::Mode(Reason::Pause) => {
                Some((StopReason::Pause, Vec::new()))
            }
            StopCause::Mode(Reason::Step) => Some((StopReason::Step, Vec::new())),
            StopCause::Mode(Reason::Entry) => {
                let ids = self
                    .requests
                    .get_mut(&context.request_id)
                    .map(|state| std::mem::take(&mut state.entry_breakpoints))
                    .unwrap_or_default();
                self.tidy(context.request_id);
                if ids.is_empty() {
                    return Some((StopReason::Entry, Vec::new()));
                }
                let mut hit = Vec::new();
                for id in ids {
                    let Some(index) = self.functions.iter().position(|b| b.id == id) else {
                        continue;
                    };
                    let condition = self.functions[index].condition.clone();
                    if let Some(condition) = condition
                        && !self.condition_holds(context, &condition)
                    {
                        continue;
                    }
                    let breakpoint = &mut self.functions[index];
                    breakpoint.hits += 1;
                    if breakpoint
                        .hit_condition
                        .is_none_or(|condition| condition.holds(breakpoint.hits))
                    {
                        hit.push(id);
                    }
                }
                (!hit.is_empty()).then_some((StopReason::FunctionBreakpoint, hit))
            }
            StopCause::Breakpoint { line, checked } => {
                let chunk = format!("@{}", context.file);
                // What is left to check of each breakpoint of the line: its
                // condition, unless the hook checked it (and it held, or
                // failed with why).
                let candidates: Vec<(u32, Checked)> = match checked {
                    Some(checked) => checked
                        .into_iter()
                        .map(|(id, failure)| match failure {
                            Some(failure) => (id, Checked::Failed(failure)),
                            None => (id, Checked::Held),
                        })
                        .collect(),
                    None => self
                        .lines
                        .get(&chunk)?
                        .iter()
                        .filter(|breakpoint| breakpoint.line == line)
                        .map(|breakpoint| {
                            (
                                breakpoint.id,
                                breakpoint
                                    .condition
                                    .clone()
                                    .map_or(Checked::Held, Checked::Unchecked),
                            )
                        })
                        .collect(),
                };
                let mut hit = Vec::new();
                for (id, checked) in candidates {
                    let holds = match checked {
                        Checked::Held => true,
                        Checked::Unchecked(condition) => self.condition_holds(context, &condition),
                        Checked::Failed(failure) => {
                            let condition = self
                                .lines
                                .get(&chunk)
                                .and_then(|list| list.iter().find(|b| b.id == id))
                                .and_then(|b| b.condition.clone())
                                .unwrap_or_default();
                            self.report_condition_failure(context, &condition, &failure);
                            true
                        }
                    };
                    if !holds {
                        continue;
                    }
                    let Some(breakpoint) = self
                        .lines
                        .get_mut(&chunk)
                        .and_then(|list| list.iter_mut().find(|b| b.id == id))
                    else {
                        continue;
                    };
                    breakpoint.hits += 1;
                    if !breakpoint
                        .hit_condition
                        .is_none_or(|condition| condition.holds(breakpoint.hits))
                    {
                        continue;
                    }
                    if let Some(message) = breakpoint.log_message.clone() {
                        let text = evaluate::interpolate(&message, |expression| {
                            match self.evaluate_in(context, expression, false) {
                                Ok(value) => evaluate::text_of(context.lua, &value),
                                Err(error) => format!("<{error}>"),
                            }
                        });
                        context.emit(DebugEvent::Output(Output {
                            category: OutputCategory::Logpoint,
                            text: format!("{text}\n"),
                            file: context.file.to_owned(),
                            line,
                            request_id: Some(context.request_id),
                        }));
                        continue;
                    }
                    hit.push(id);
                }
                (!hit.is_empty()).then_some((StopReason::Breakpoint, hit))
            }
        }
    }

    fn condition_holds(&self, context: &StopContext<'_>, condition: &str) -> bool {
        match self.evaluate_in(context, condition, false) {
            Ok(value) => evaluate::is_true(&value),
            Err(error) => {
                self.report_condition_failure(context, condition, &error);
                true
            }
        }
    }

    /// A condition that fails stops, so that the mistake shows; this says
    /// why.
    fn report_condition_failure(&self, context: &StopContext<'_>, condition: &str, error: &str) {
        context.emit(DebugEvent::Output(Output {
            category: OutputCategory::Console,
            text: format!("breakpoint condition `{condition}` failed: {error}\n"),
            file: context.file.to_owned(),
            line: context.line,
            request_id: Some(context.request_id),
        }));
    }

    fn evaluate_in(
        &self,
        context: &StopContext<'_>,
        expression: &str,
        statements: bool,
    ) -> Result<Value, String> {
        let evaluator = self
            .evaluator
            .as_ref()
            .ok_or("the debugger could not start its evaluator")?;
        let env = evaluator
            .environment(Some(context.thread), 0, context.req)
            .map_err(|error| evaluate::lua_message(&error))?;
        evaluate::evaluate(context.lua, context.watchdog, &env, expression, statements)
    }

    /// Evaluates in frame `level` of `thread` (or with the globals only).
    pub(crate) fn evaluate(
        &self,
        lua: &mlua::Lua,
        watchdog: &crate::budget::Watchdog,
        frame: Option<(&Thread, u32)>,
        req: Option<&Table>,
        expression: &str,
        context: EvaluateContext,
    ) -> Result<Value, String> {
        let evaluator = self
            .evaluator
            .as_ref()
            .ok_or("the debugger could not start its evaluator")?;
        let env = evaluator
            .environment(
                frame.map(|(thread, _)| thread),
                frame.map_or(0, |f| f.1),
                req,
            )
            .map_err(|error| evaluate::lua_message(&error))?;
        evaluate::evaluate(
            lua,
            watchdog,
            &env,
            expression,
            context == EvaluateContext::Repl,
        )
    }

    /// The hooks of live coroutines, for the policy tests.
    pub(crate) fn hook_reports(runs: Vec<(u64, String, Option<Thread>)>) -> Vec<HookReport> {
        runs.into_iter()
            .map(|(request_id, stage, thread)| {
                let mask = thread
                    .as_ref()
                    .map(crate::lua_raw::hook_mask)
                    .unwrap_or_default();
                use crate::lua_raw::HookMask;
                HookReport {
                    request_id,
                    stage,
                    call: mask.has(HookMask::CALL),
                    ret: mask.has(HookMask::RETURN),
                    line: mask.has(HookMask::LINE),
                }
            })
            .collect()
    }
}

/// Where a hook stopped a coroutine, for [`Debugger::decide`].
pub(crate) struct StopContext<'a> {
    pub lua: &'a mlua::Lua,
    pub watchdog: &'a crate::budget::Watchdog,
    pub request_id: u64,
    pub thread: &'a Thread,
    pub req: Option<&'a Table>,
    pub file: &'a str,
    pub line: u32,
    pub emit: &'a dyn Fn(DebugEvent),
}

impl StopContext<'_> {
    fn emit(&self, event: DebugEvent) {
        (self.emit)(event);
    }
}

fn check_syntax(lua: &mlua::Lua, expression: &str) -> Result<(), String> {
    lua.load(format!("return {expression}"))
        .set_name("=(condition)")
        .into_function()
        .map(|_| ())
        .map_err(|error| evaluate::lua_message(&error))
}

/// The (file, line) of frame 0 of a suspended coroutine.
pub(crate) fn current_line(debug: &Table, thread: &Thread) -> (String, u32) {
    let read = || -> mlua::Result<(String, u32)> {
        let getinfo: Function = debug.get("getinfo")?;
        let Some(info) = getinfo.call::<Option<Table>>((thread.clone(), 0, "Sl"))? else {
            return Ok((String::new(), 0));
        };
        let source: Option<String> = info.get("source")?;
        let line: i64 = info.get("currentline")?;
        let file = source
            .map(|name| name.strip_prefix('@').unwrap_or(&name).to_owned())
            .unwrap_or_default();
        Ok((file, line.max(0) as u32))
    };
    read().unwrap_or_default()
}

/// A value shown as a [`Variable`] named `name` (no children: for values
/// outside a stopped request).
pub(crate) fn plain_variable(lua: &mlua::Lua, name: &str, value: &Value) -> Variable {
    Variable {
        name: name.to_owned(),
        type_name: value.type_name().to_owned(),
        value: match value {
            Value::String(text) => format!("{:?}", text.to_string_lossy()),
            other => evaluate::text_of(lua, other),
        },
        children: None,
    }
}

/// The scopes a stopped frame shows.
pub(crate) const SCOPES: [(super::ScopeKind, &str); 4] = [
    (super::ScopeKind::Locals, "Locals"),
    (super::ScopeKind::Upvalues, "Upvalues"),
    (super::ScopeKind::Request, "Request"),
    (super::ScopeKind::Globals, "Globals"),
];

/// `Output` for a line printed by the script.
pub(crate) fn print_output(text: String, file: String, line: u32) -> DebugEvent {
    DebugEvent::Output(Output {
        category: OutputCategory::Stdout,
        text,
        file,
        line,
        request_id: None,
    })
}

/// A stop as the front end sees it.
pub(crate) fn stop_event(
    request_id: u64,
    pipeline: &str,
    stage: &str,
    reason: StopReason,
    (file, line): (String, u32),
    breakpoints: Vec<u32>,
    text: Option<String>,
) -> Stop {
    Stop {
        request_id,
        pipeline: pipeline.to_owned(),
        stage: stage.to_owned(),
        reason,
        file,
        line,
        breakpoints,
        text,
    }
}

/// A breakpoint's condition, as far as it was checked when a hook stopped.
enum Checked {
    /// No condition, or the hook found it true.
    Held,
    /// The hook ran it and it raised an error.
    Failed(String),
    /// Still to evaluate on the host.
    Unchecked(String),
}

/// The lines of `breakpoints` whose every breakpoint is a plain
/// conditional one with a compiled condition: the hook checks those.
fn checked_in_hook(breakpoints: &[LineBreakpoint]) -> Vec<(u32, Vec<ConditionRef>)> {
    let mut lines: Vec<u32> = breakpoints
        .iter()
        .map(|breakpoint| breakpoint.line)
        .collect();
    lines.sort_unstable();
    lines.dedup();
    lines
        .into_iter()
        .filter_map(|line| {
            let on_line: Vec<&LineBreakpoint> = breakpoints
                .iter()
                .filter(|breakpoint| breakpoint.line == line)
                .collect();
            let conditions: Option<Vec<ConditionRef>> = on_line
                .iter()
                .map(
                    |breakpoint| match (&breakpoint.compiled, &breakpoint.log_message) {
                        (Some(compiled), None) => Some(ConditionRef {
                            breakpoint: breakpoint.id,
                            function: compiled.id(),
                        }),
                        _ => None,
                    },
                )
                .collect();
            conditions.map(|conditions| (line, conditions))
        })
        .collect()
}
