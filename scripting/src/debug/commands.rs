//! The debugger's commands, answered on the host thread between two
//! resumes: they read and change the registry of runs, the debugger's
//! state and the hook table. Each answer is computed before its reply
//! runs, so that no reply runs while something is borrowed.

use mlua::{Table, Thread, Value};

use super::debugger::{self, DebugCommand, SCOPES};
use super::evaluate;
use super::hooks::{self, Mode, Reason};
use super::inspect::{self, Paused};
use super::{EvaluateContext, Page, Scope, StepKind, Variable, VariablesRef};
use crate::ScriptError;
use crate::pipeline_run::RunContext;
use crate::run_registry::Inspected;

/// Answers one command.
pub(crate) fn handle(context: &RunContext, command: DebugCommand) {
    match command {
        DebugCommand::Attach { reply } => {
            let attached = context.debugger.borrow_mut().attach();
            reply(if attached {
                Ok(())
            } else {
                Err(ScriptError::DebuggerAttached)
            });
        }
        DebugCommand::Detach { reply } => {
            context.debugger.borrow_mut().detach();
            let resumed = continue_runs(context, None);
            reply(resumed.map(|_| ()));
        }
        DebugCommand::SetBreakpoints {
            file,
            breakpoints,
            reply,
        } => {
            let statuses =
                context
                    .debugger
                    .borrow_mut()
                    .set_breakpoints(&context.lua, &file, breakpoints);
            reply(Ok(statuses));
        }
        DebugCommand::SetFunctionBreakpoints { breakpoints, reply } => {
            let statuses = context
                .debugger
                .borrow_mut()
                .set_function_breakpoints(context.graph().as_deref(), breakpoints);
            reply(Ok(statuses));
        }
        DebugCommand::SetExceptionBreakpoints { filters, reply } => {
            context.debugger.borrow_mut().set_exceptions(filters);
            reply(Ok(()));
        }
        DebugCommand::StopOnEntry { reply } => {
            context.debugger.borrow_mut().set_stop_on_entry();
            reply(Ok(()));
        }
        DebugCommand::Pause { request_id, reply } => {
            let ids = match request_id {
                Some(request_id) => pause(context, request_id).map(|()| vec![request_id]),
                None => {
                    let ids: Vec<u64> = context
                        .registry
                        .borrow()
                        .threads()
                        .into_iter()
                        .map(|(id, _, _)| id)
                        .collect();
                    for id in &ids {
                        let _ = pause(context, *id);
                    }
                    Ok(ids)
                }
            };
            reply(ids);
        }
        DebugCommand::Continue { request_id, reply } => {
            let resumed = continue_runs(context, request_id);
            reply(resumed);
        }
        DebugCommand::Step {
            request_id,
            kind,
            reply,
        } => {
            let stepped = step(context, request_id, kind);
            reply(stepped);
        }
        DebugCommand::Scopes {
            request_id,
            frame,
            reply,
        } => {
            let scopes = scopes(context, request_id, frame);
            reply(scopes);
        }
        DebugCommand::Variables {
            request_id,
            reference,
            page,
            reply,
        } => {
            let variables = variables(context, request_id, reference, page);
            reply(variables);
        }
        DebugCommand::Evaluate {
            request_id,
            frame,
            expression,
            context: evaluate_context,
            reply,
        } => {
            let value = evaluate_in(context, request_id, frame, &expression, evaluate_context);
            reply(value);
        }
        DebugCommand::SetVariable {
            request_id,
            reference,
            name,
            value,
            reply,
        } => {
            let set = set_variable(context, request_id, reference, &name, &value);
            reply(set);
        }
        DebugCommand::LoadedSources { reply } => {
            let sources = loaded_sources(context);
            reply(Ok(sources));
        }
        DebugCommand::Globals { reply } => {
            reply(Ok(user_globals(context)));
        }
        DebugCommand::RegisterSource { path, text } => {
            context.debugger.borrow_mut().register_source(path, text);
        }
        DebugCommand::Hooks { reply } => {
            let runs = context.registry.borrow().threads();
            let reports = debugger::Debugger::hook_reports(runs);
            reply(Ok((reports, hooks::counters())));
        }
    }
}

/// Pauses a request at its next Lua line: now if its stage's coroutine
/// exists, else when its next Lua stage starts.
pub(crate) fn pause(context: &RunContext, request_id: u64) -> Result<(), ScriptError> {
    let thread = {
        let registry = context.registry.borrow();
        let entry = registry.get(request_id)?;
        if entry.is_paused() {
            return Ok(());
        }
        entry.thread.clone()
    };
    let mode = Some(Mode::NextLine(Reason::Pause));
    match thread {
        Some(thread) => hooks::rewatch(&thread, mode),
        None => context.debugger.borrow_mut().set_pending(request_id, mode),
    }
    Ok(())
}

/// Resumes a paused request, or withdraws a pause not reached yet.
pub(crate) fn resume(context: &RunContext, request_id: u64) -> Result<(), ScriptError> {
    let (paused, thread) = {
        let registry = context.registry.borrow();
        let entry = registry.get(request_id)?;
        (entry.is_paused(), entry.thread.clone())
    };
    if paused {
        context.debugger.borrow_mut().set_pending(request_id, None);
        return context.registry.borrow_mut().resume(request_id);
    }
    // Not stopped: withdraw a pause (or step) not reached yet, if any.
    let pending = context.debugger.borrow().has_pending(request_id);
    let armed = thread.as_ref().is_some_and(hooks::has_mode);
    if !pending && !armed {
        return Err(ScriptError::NotPaused { request_id });
    }
    context.debugger.borrow_mut().set_pending(request_id, None);
    if let Some(thread) = thread
        && armed
    {
        hooks::rewatch(&thread, None);
    }
    Ok(())
}

fn continue_runs(context: &RunContext, request_id: Option<u64>) -> Result<Vec<u64>, ScriptError> {
    let ids = match request_id {
        Some(request_id) => vec![request_id],
        None => context.registry.borrow().paused(),
    };
    for id in &ids {
        let result = resume(context, *id);
        if request_id.is_some() {
            result?;
        }
    }
    Ok(ids)
}

fn step(context: &RunContext, request_id: u64, kind: StepKind) -> Result<(), ScriptError> {
    let thread = {
        let registry = context.registry.borrow();
        let entry = registry.get(request_id)?;
        if !entry.is_paused() {
            return Err(ScriptError::NotPaused { request_id });
        }
        entry.thread.clone()
    };
    let depth = match &thread {
        // A dead coroutine (stopped on an error) has no next line: its
        // step goes to the next stage.
        Some(thread) if thread.status() == mlua::thread::ThreadStatus::Resumable => {
            crate::lua_raw::thread_depth(thread)
        }
        _ => 0,
    };
    let mode = match kind {
        _ if depth == 0 => Mode::NextLine(Reason::Step),
        StepKind::In => Mode::NextLine(Reason::Step),
        StepKind::Over => Mode::AtDepth(depth),
        StepKind::Out => Mode::Above(depth),
    };
    if depth == 0 {
        // Stopped outside a coroutine (before an embed call, or on an
        // error): the step lands in the next Lua stage.
        context
            .debugger
            .borrow_mut()
            .carry_mode(request_id, Some(mode));
    } else {
        context
            .debugger
            .borrow_mut()
            .set_pending(request_id, Some(mode));
    }
    context.registry.borrow_mut().resume(request_id)
}

/// A stopped request's coroutine, `req`, and its inspected list.
fn stopped(
    context: &RunContext,
    request_id: u64,
) -> Result<(Option<Thread>, Option<Table>), ScriptError> {
    let registry = context.registry.borrow();
    let entry = registry.get(request_id)?;
    if !entry.is_paused() {
        return Err(ScriptError::NotPaused { request_id });
    }
    Ok((entry.thread.clone(), entry.req.clone()))
}

fn inspect_error(request_id: u64) -> impl Fn(mlua::Error) -> ScriptError {
    move |error| ScriptError::Inspect {
        request_id,
        message: error.to_string(),
    }
}

fn scopes(context: &RunContext, request_id: u64, frame: u32) -> Result<Vec<Scope>, ScriptError> {
    let (thread, req) = stopped(context, request_id)?;
    let paused = Paused {
        lua: &context.lua,
        debug: &context.debug,
        thread: thread.as_ref(),
        req: req.as_ref(),
    };
    let mut scopes = Vec::new();
    let mut registry = context.registry.borrow_mut();
    let entry = registry.get_mut(request_id)?;
    for (kind, name) in SCOPES {
        let item = match kind {
            super::ScopeKind::Locals => Inspected::Locals { level: frame },
            super::ScopeKind::Upvalues => Inspected::Upvalues { level: frame },
            super::ScopeKind::Request => Inspected::Request,
            super::ScopeKind::Globals => Inspected::Globals,
        };
        if thread.is_none() && matches!(item, Inspected::Locals { .. } | Inspected::Upvalues { .. })
        {
            continue;
        }
        let count = inspect::count(&paused, &item);
        entry.inspected.push(item);
        scopes.push(Scope {
            kind,
            name: name.to_owned(),
            variables: VariablesRef(entry.inspected.len() as u32),
            count,
        });
    }
    Ok(scopes)
}

fn variables(
    context: &RunContext,
    request_id: u64,
    reference: VariablesRef,
    page: Page,
) -> Result<Vec<Variable>, ScriptError> {
    let (thread, req) = stopped(context, request_id)?;
    let mut registry = context.registry.borrow_mut();
    let entry = registry.get_mut(request_id)?;
    let item = lookup(&entry.inspected, request_id, reference)?;
    let paused = Paused {
        lua: &context.lua,
        debug: &context.debug,
        thread: thread.as_ref(),
        req: req.as_ref(),
    };
    inspect::list(&paused, &item, &mut entry.inspected, page).map_err(inspect_error(request_id))
}

fn lookup(
    inspected: &[Inspected],
    request_id: u64,
    reference: VariablesRef,
) -> Result<Inspected, ScriptError> {
    (reference.0 as usize)
        .checked_sub(1)
        .and_then(|idx| inspected.get(idx))
        .cloned()
        .ok_or(ScriptError::UnknownVariables {
            request_id,
            reference: reference.0,
        })
}

fn evaluate_in(
    context: &RunContext,
    request_id: Option<u64>,
    frame: u32,
    expression: &str,
    evaluate_context: EvaluateContext,
) -> Result<Variable, ScriptError> {
    let (thread, req) = match request_id {
        Some(request_id) => stopped(context, request_id)?,
        None => (None, None),
    };
    let frame_of = thread
        .as_ref()
        .filter(|thread| thread.status() != mlua::thread::ThreadStatus::Finished)
        .map(|thread| (thread, frame));
    let value = context
        .debugger
        .borrow()
        .evaluate(
            &context.lua,
            &context.watchdog,
            frame_of,
            req.as_ref(),
            expression,
            evaluate_context,
        )
        .map_err(|message| ScriptError::Evaluate { message })?;
    show(context, request_id, expression, value)
}

/// A value as a variable, its children listable while the request stays
/// stopped.
fn show(
    context: &RunContext,
    request_id: Option<u64>,
    name: &str,
    value: Value,
) -> Result<Variable, ScriptError> {
    let Some(request_id) = request_id else {
        return Ok(debugger::plain_variable(&context.lua, name, &value));
    };
    let mut registry = context.registry.borrow_mut();
    let entry = registry.get_mut(request_id)?;
    inspect::variable(&context.debug, &mut entry.inspected, name.to_owned(), value)
        .map_err(inspect_error(request_id))
}

fn set_variable(
    context: &RunContext,
    request_id: u64,
    reference: VariablesRef,
    name: &str,
    value: &str,
) -> Result<Variable, ScriptError> {
    let (thread, req) = stopped(context, request_id)?;
    let item = {
        let registry = context.registry.borrow();
        lookup(&registry.get(request_id)?.inspected, request_id, reference)?
    };
    let level = match item {
        Inspected::Locals { level } | Inspected::Upvalues { level } => level,
        _ => 0,
    };
    let frame_of = thread
        .as_ref()
        .filter(|thread| thread.status() != mlua::thread::ThreadStatus::Finished)
        .map(|thread| (thread, level));
    let new_value = context
        .debugger
        .borrow()
        .evaluate(
            &context.lua,
            &context.watchdog,
            frame_of,
            req.as_ref(),
            value,
            EvaluateContext::Watch,
        )
        .map_err(|message| ScriptError::Evaluate { message })?;
    let assign = || -> mlua::Result<bool> {
        match &item {
            Inspected::Locals { level } => {
                let Some(thread) = &thread else {
                    return Ok(false);
                };
                let getlocal: mlua::Function = context.debug.get("getlocal")?;
                let setlocal: mlua::Function = context.debug.get("setlocal")?;
                let mut found = None;
                for idx in 1i64..256 {
                    let (local, _): (Option<String>, Value) =
                        getlocal.call((thread.clone(), i64::from(*level), idx))?;
                    let Some(local) = local else { break };
                    if local == name {
                        found = Some(idx);
                    }
                }
                match found {
                    Some(idx) => {
                        setlocal.call::<Value>((
                            thread.clone(),
                            i64::from(*level),
                            idx,
                            new_value.clone(),
                        ))?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            Inspected::Upvalues { level } => {
                let Some(thread) = &thread else {
                    return Ok(false);
                };
                let getinfo: mlua::Function = context.debug.get("getinfo")?;
                let getupvalue: mlua::Function = context.debug.get("getupvalue")?;
                let setupvalue: mlua::Function = context.debug.get("setupvalue")?;
                let Some(info) =
                    getinfo.call::<Option<Table>>((thread.clone(), i64::from(*level), "f"))?
                else {
                    return Ok(false);
                };
                let Some(function) = info.get::<Option<mlua::Function>>("func")? else {
                    return Ok(false);
                };
                for idx in 1i64..256 {
                    let (upvalue, _): (Option<String>, Value) =
                        getupvalue.call((function.clone(), idx))?;
                    let Some(upvalue) = upvalue else { break };
                    if upvalue == name {
                        setupvalue.call::<Value>((function.clone(), idx, new_value.clone()))?;
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Inspected::Request => match &req {
                Some(req) => req.raw_set(name, new_value.clone()).map(|()| true),
                None => Ok(false),
            },
            Inspected::Globals => context
                .lua
                .globals()
                .raw_set(name, new_value.clone())
                .map(|()| true),
            Inspected::Value(Value::Table(table)) => {
                let key = table_key(&context.lua, name)?;
                table.raw_set(key, new_value.clone()).map(|()| true)
            }
            Inspected::Value(_) => Ok(false),
        }
    };
    match assign() {
        Ok(true) => show(context, Some(request_id), name, new_value),
        Ok(false) => Err(ScriptError::Evaluate {
            message: format!("there is no `{name}` here to set"),
        }),
        Err(error) => Err(ScriptError::Evaluate {
            message: evaluate::lua_message(&error),
        }),
    }
}

/// A table key as the variables list names it: `[3]` is the integer 3,
/// `["a b"]` a string, anything else the string itself.
fn table_key(lua: &mlua::Lua, name: &str) -> mlua::Result<Value> {
    if let Some(inner) = name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        if let Ok(number) = inner.parse::<i64>() {
            return Ok(Value::Integer(number));
        }
        if let Some(text) = inner
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        {
            return lua.create_string(text).map(Value::String);
        }
    }
    lua.create_string(name).map(Value::String)
}

/// Lua 5.4's own globals, left out of [`user_globals`].
const LUA_GLOBALS: &[&str] = &[
    "_G",
    "_VERSION",
    "assert",
    "collectgarbage",
    "coroutine",
    "debug",
    "dofile",
    "error",
    "getmetatable",
    "io",
    "ipairs",
    "load",
    "loadfile",
    "math",
    "next",
    "os",
    "package",
    "pairs",
    "pcall",
    "print",
    "rawequal",
    "rawget",
    "rawlen",
    "rawset",
    "require",
    "select",
    "setmetatable",
    "string",
    "table",
    "tonumber",
    "tostring",
    "type",
    "utf8",
    "warn",
    "xpcall",
];

/// The globals a user defined, sorted by name, as plain variables.
fn user_globals(context: &RunContext) -> Vec<Variable> {
    let mut variables: Vec<Variable> = context
        .lua
        .globals()
        .pairs::<Value, Value>()
        .filter_map(Result::ok)
        .filter_map(|(key, value)| {
            let name = key.as_string()?.to_str().ok()?.to_owned();
            (!LUA_GLOBALS.contains(&name.as_str()))
                .then(|| debugger::plain_variable(&context.lua, &name, &value))
        })
        .collect();
    variables.sort_by(|a, b| a.name.cmp(&b.name));
    variables
}

/// The script and the files of every stage and probe function.
fn loaded_sources(context: &RunContext) -> Vec<String> {
    let mut sources: Vec<String> = Vec::new();
    if let Some(graph) = context.graph() {
        sources.push(graph.file.display().to_string());
    }
    for function in context.functions.borrow().iter() {
        if let Some(source) = function.info().source
            && let Some(file) = source.strip_prefix('@')
            && !sources.iter().any(|known| known == file)
        {
            sources.push(file.to_owned());
        }
    }
    sources
}
