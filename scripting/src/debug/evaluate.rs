//! Expressions and assignments in a paused frame: the frame's locals, its
//! function's upvalues, the request as `req`, then the globals, in that
//! order; assigning to a name writes the local, upvalue or global it
//! resolves to. Conditions, logpoints, watches, hovers and the debug
//! console all evaluate here, on the script host's thread, in a coroutine
//! of their own under a time budget (a runaway expression is stopped, the
//! request stays paused).
//!
//! Must not depend on the registry or any protocol.

use std::time::{Duration, Instant};

use mlua::{Function, Lua, Table, Thread, Value};

use crate::budget::Watchdog;

/// How long one evaluation may run.
pub(crate) const EVALUATION_BUDGET: Duration = Duration::from_secs(1);

/// Builds frame environments; made once per host.
pub(crate) struct Evaluator {
    frame_env: Function,
}

const FRAME_ENV: &str = r#"
local debug, globals, setmetatable = ...
return function(co, level, req)
  local locals, ups, func = {}, {}, nil
  if co then
    for i = 1, 255 do
      local name = debug.getlocal(co, level, i)
      if not name then break end
      if name:sub(1, 1) ~= "(" then locals[name] = i end
    end
    local info = debug.getinfo(co, level, "f")
    func = info and info.func
    if func then
      for j = 1, 255 do
        local name = debug.getupvalue(func, j)
        if not name then break end
        if name ~= "_ENV" then ups[name] = j end
      end
    end
  end
  return setmetatable({}, {
    __index = function(_, key)
      local i = locals[key]
      if i then local _, value = debug.getlocal(co, level, i) return value end
      local j = ups[key]
      if j then local _, value = debug.getupvalue(func, j) return value end
      if key == "req" and req ~= nil then return req end
      return globals[key]
    end,
    __newindex = function(_, key, value)
      local i = locals[key]
      if i then debug.setlocal(co, level, i, value) return end
      local j = ups[key]
      if j then debug.setupvalue(func, j, value) return end
      globals[key] = value
    end,
  })
end
"#;

impl Evaluator {
    pub(crate) fn new(lua: &Lua, debug: &Table) -> mlua::Result<Evaluator> {
        let globals = lua.globals();
        let setmetatable: Value = globals.raw_get("setmetatable")?;
        let frame_env = lua
            .load(FRAME_ENV)
            .set_name("=spindle debugger")
            .call::<Function>((debug.clone(), globals, setmetatable))?;
        Ok(Evaluator { frame_env })
    }

    /// The environment of frame `level` of `thread` (level 0 is the
    /// innermost); without a thread, `req` and the globals only.
    pub(crate) fn environment(
        &self,
        thread: Option<&Thread>,
        level: u32,
        req: Option<&Table>,
    ) -> mlua::Result<Table> {
        self.frame_env
            .call((thread.cloned(), i64::from(level), req.cloned()))
    }
}

/// Compiles `expression` in `env`: as an expression first, then (when
/// `statements`) as statements.
pub(crate) fn compile(
    lua: &Lua,
    expression: &str,
    env: &Table,
    statements: bool,
) -> Result<Function, String> {
    let as_expression = lua
        .load(format!("return {expression}"))
        .set_name("=(debugger)")
        .set_environment(env.clone())
        .into_function();
    match as_expression {
        Ok(function) => Ok(function),
        Err(error) if !statements => Err(lua_message(&error)),
        Err(_) => lua
            .load(expression)
            .set_name("=(debugger)")
            .set_environment(env.clone())
            .into_function()
            .map_err(|error| lua_message(&error)),
    }
}

/// Runs a compiled expression in a coroutine under the watchdog; its first
/// result.
pub(crate) fn run(lua: &Lua, watchdog: &Watchdog, function: &Function) -> Result<Value, String> {
    let thread = lua
        .create_thread(function.clone())
        .map_err(|error| error.to_string())?;
    let guard = watchdog.enter(&thread, Some(Instant::now() + EVALUATION_BUDGET), 0);
    let result = thread.resume::<Value>(());
    let verdict = guard.leave();
    if verdict.is_some() {
        thread.remove_hook();
        return Err(format!(
            "the expression ran past {EVALUATION_BUDGET:?} and was stopped"
        ));
    }
    if thread.status() == mlua::thread::ThreadStatus::Resumable {
        return Err("the expression yielded; it cannot wait here".to_owned());
    }
    result.map_err(|error| lua_message(&error))
}

/// Evaluates `expression` in `env` and returns its value.
pub(crate) fn evaluate(
    lua: &Lua,
    watchdog: &Watchdog,
    env: &Table,
    expression: &str,
    statements: bool,
) -> Result<Value, String> {
    let function = compile(lua, expression, env, statements)?;
    run(lua, watchdog, &function)
}

/// Lua's truth: everything but `nil` and `false`.
pub(crate) fn is_true(value: &Value) -> bool {
    !matches!(value, Value::Nil | Value::Boolean(false))
}

/// A value as `tostring` shows it (tables by address left out: `table`).
pub(crate) fn text_of(lua: &Lua, value: &Value) -> String {
    match value {
        Value::String(text) => text.to_string_lossy(),
        Value::Nil => "nil".to_owned(),
        other => match lua.globals().raw_get::<Function>("tostring") {
            Ok(tostring) => tostring
                .call::<String>(other.clone())
                .unwrap_or_else(|_| other.type_name().to_owned()),
            Err(_) => other.type_name().to_owned(),
        },
    }
}

/// A logpoint's message with every `{expr}` replaced by its value; `{{`
/// and `}}` are literal braces. An expression that fails shows its error
/// in the text.
pub(crate) fn interpolate(message: &str, mut eval: impl FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut chars = message.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut expression = String::new();
                let mut depth = 1;
                for inner in chars.by_ref() {
                    match inner {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    expression.push(inner);
                }
                out.push_str(&eval(expression.trim()));
            }
            other => out.push(other),
        }
    }
    out
}

/// An error's message without mlua's traceback.
pub(crate) fn lua_message(error: &mlua::Error) -> String {
    match error {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) => message.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
    .lines()
    .next()
    .unwrap_or_default()
    .trim_start_matches("[string \"(debugger)\"]:")
    .to_owned()
}
