//! `s.state`: durable key-value state for stages, kept by the kernel.
//!
//! `s.state()` is the global scope, `s.state("pipeline", req)` the scope of
//! the request's pipeline, `s.state("request", req)` the request's own
//! (by its correlation id). Each returns a table of functions bound to the
//! scope: `get`, `set`, `cas`, `incr`, `delete`, `list`. Each call is a
//! [`StateCall`] to the host's [`Effects`]; the stage's coroutine waits for
//! the answer while other requests run on.
//!
//! Values are booleans, integers, numbers, strings and vectors (`req.vector`
//! or a list of numbers). Options: `{ ttl = "10m" }` (a duration or
//! seconds); `list` takes `{ limit = N }` (default 1,000).
//!
//! This module only turns Lua values into plain Rust ones and back; the
//! store is the kernel's. Knows no runtime, file or wire format.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use mlua::{IntoLua, Lua, Table, Value};

use crate::duration::parse_duration;
use crate::lua_vector::LuaVector;
use crate::pipeline_run::Effects;

/// Whose key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateScopeSpec {
    Global,
    /// A pipeline's, by name.
    Pipeline(String),
    /// A request's, by its correlation id.
    Request(String),
}

/// A value a stage stores.
#[derive(Debug, Clone, PartialEq)]
pub enum StateData {
    Boolean(bool),
    Integer(i64),
    Number(f64),
    String(String),
    Vector(Vec<f32>),
}

/// What a stage asks of the state.
#[derive(Debug, Clone, PartialEq)]
pub enum StateCallOp {
    Get,
    Set {
        value: StateData,
        ttl: Option<Duration>,
    },
    /// Stores `new` (deletes when `None`) only if the current value is
    /// `expected` (`None`: absent).
    CompareAndSwap {
        expected: Option<StateData>,
        new: Option<StateData>,
        ttl: Option<Duration>,
    },
    Increment {
        by: i64,
        ttl: Option<Duration>,
    },
    Delete,
    /// The keys of the scope that start with the call's key.
    List {
        limit: usize,
    },
}

/// One call of `s.state`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateCall {
    pub scope: StateScopeSpec,
    pub key: String,
    pub op: StateCallOp,
}

/// The store's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StateAnswer {
    /// `get`; `set` and `delete` (the value before).
    Value(Option<StateData>),
    /// `cas`: whether it swapped, and the value now.
    Swapped {
        swapped: bool,
        current: Option<StateData>,
    },
    /// `incr`: the new value.
    Integer(i64),
    /// `list`: keys (without the scope) and values, in key order.
    Entries(Vec<(String, StateData)>),
}

/// Receives the store's answer, on any thread; an error is a message for
/// the stage (raised as a Lua error).
pub type StateReply = Box<dyn FnOnce(Result<StateAnswer, String>) + Send>;

/// The host's effects, for `s.state` (set on the host's Lua state; absent
/// while a script is only evaluated).
pub(crate) struct HostEffects(pub(crate) Arc<dyn Effects>);

const LIST_LIMIT: usize = 1000;

/// Adds `s.state` to the `spindle` module table.
pub(crate) fn extend(lua: &Lua, module: &Table) -> mlua::Result<()> {
    module.set(
        "state",
        lua.create_function(|lua, (kind, req): (Option<String>, Option<Table>)| {
            let scope = scope_of(kind.as_deref(), req.as_ref())?;
            accessor(lua, scope)
        })?,
    )
}

fn scope_of(kind: Option<&str>, req: Option<&Table>) -> mlua::Result<StateScopeSpec> {
    let field = |name: &str| -> mlua::Result<String> {
        let req = req.ok_or_else(|| {
            mlua::Error::runtime(format!(
                "s.state(\"{}\", req): pass the request as the second argument",
                kind.unwrap_or_default()
            ))
        })?;
        req.get::<Option<String>>(name)?.ok_or_else(|| {
            mlua::Error::runtime(format!(
                "s.state: the request table has no `{name}` (pass the `req` your stage got)"
            ))
        })
    };
    match kind {
        None | Some("global") => Ok(StateScopeSpec::Global),
        Some("pipeline") => Ok(StateScopeSpec::Pipeline(field("pipeline")?)),
        Some("request") => Ok(StateScopeSpec::Request(field("correlation_id")?)),
        Some(other) => Err(mlua::Error::runtime(format!(
            "s.state: the scope is \"global\", \"pipeline\" or \"request\", not \"{other}\""
        ))),
    }
}

/// The table of functions bound to `scope`.
fn accessor(lua: &Lua, scope: StateScopeSpec) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    let bind = |name: &'static str,
                make: fn(&Lua, mlua::MultiValue) -> mlua::Result<(String, StateCallOp)>|
     -> mlua::Result<()> {
        let scope = scope.clone();
        table.raw_set(
            name,
            lua.create_async_function(move |lua, args: mlua::MultiValue| {
                let prepared = make(&lua, args).map(|(key, op)| StateCall {
                    scope: scope.clone(),
                    key,
                    op,
                });
                let effects = lua
                    .app_data_ref::<HostEffects>()
                    .map(|effects| effects.0.clone());
                async move {
                    let call = prepared?;
                    let effects = effects.ok_or_else(|| {
                        mlua::Error::runtime(format!(
                            "s.state().{name} works in the stages of a running kernel (spindle run), not while a script is checked"
                        ))
                    })?;
                    let (sender, receiver) = oneshot::channel();
                    effects.state(
                        call,
                        Box::new(move |answer| {
                            let _ = sender.send(answer);
                        }),
                    );
                    let answer = match receiver.await {
                        Ok(Ok(answer)) => answer,
                        Ok(Err(message)) => {
                            return Err(mlua::Error::runtime(format!("s.state().{name}: {message}")));
                        }
                        Err(_) => {
                            return Err(mlua::Error::runtime(format!(
                                "s.state().{name}: the kernel went away before it answered"
                            )));
                        }
                    };
                    answer_into_lua(&lua, answer)
                }
            })?,
        )
    };
    bind("get", |_, args| {
        Ok((key_arg(&args, "get")?, StateCallOp::Get))
    })?;
    bind("set", |_, args| {
        let key = key_arg(&args, "set")?;
        let value = data_of(args.get(1).unwrap_or(&Value::Nil), "set", "value")?
            .ok_or_else(|| mlua::Error::runtime("s.state().set: the value is nil (use delete)"))?;
        Ok((
            key,
            StateCallOp::Set {
                value,
                ttl: ttl_arg(args.get(2), "set")?,
            },
        ))
    })?;
    bind("cas", |_, args| {
        let key = key_arg(&args, "cas")?;
        Ok((
            key,
            StateCallOp::CompareAndSwap {
                expected: data_of(args.get(1).unwrap_or(&Value::Nil), "cas", "expected value")?,
                new: data_of(args.get(2).unwrap_or(&Value::Nil), "cas", "new value")?,
                ttl: ttl_arg(args.get(3), "cas")?,
            },
        ))
    })?;
    bind("incr", |_, args| {
        let key = key_arg(&args, "incr")?;
        let by = match args.get(1) {
            None | Some(Value::Nil) => 1,
            Some(Value::Integer(by)) => *by,
            Some(Value::Number(by)) if by.fract() == 0.0 => *by as i64,
            Some(other) => {
                return Err(mlua::Error::runtime(format!(
                    "s.state().incr: the step is an integer, not {}",
                    other.type_name()
                )));
            }
        };
        Ok((
            key,
            StateCallOp::Increment {
                by,
                ttl: ttl_arg(args.get(2), "incr")?,
            },
        ))
    })?;
    bind("delete", |_, args| {
        Ok((key_arg(&args, "delete")?, StateCallOp::Delete))
    })?;
    bind("list", |_, args| {
        let prefix = match args.front() {
            None | Some(Value::Nil) => String::new(),
            Some(_) => key_arg(&args, "list")?,
        };
        let limit = match args.get(1) {
            Some(Value::Table(options)) => {
                options.get::<Option<usize>>("limit")?.unwrap_or(LIST_LIMIT)
            }
            _ => LIST_LIMIT,
        };
        Ok((prefix, StateCallOp::List { limit }))
    })?;
    Ok(table)
}

fn key_arg(args: &mlua::MultiValue, function: &str) -> mlua::Result<String> {
    match args.front() {
        Some(Value::String(key)) => Ok(key.to_str()?.to_owned()),
        Some(Value::Integer(key)) => Ok(key.to_string()),
        other => Err(mlua::Error::runtime(format!(
            "s.state().{function}: the key is a string, not {}",
            other.map_or("nothing", Value::type_name)
        ))),
    }
}

fn ttl_arg(options: Option<&Value>, function: &str) -> mlua::Result<Option<Duration>> {
    let Some(Value::Table(options)) = options else {
        return Ok(None);
    };
    match options.get::<Value>("ttl")? {
        Value::Nil => Ok(None),
        Value::Integer(seconds) => Ok(Some(Duration::from_secs(seconds.max(0) as u64))),
        Value::Number(seconds) => Ok(Some(Duration::from_secs_f64(seconds.max(0.0)))),
        Value::String(text) => {
            parse_duration(&text.to_string_lossy())
                .map(Some)
                .map_err(|message| {
                    mlua::Error::runtime(format!("s.state().{function}: ttl: {message}"))
                })
        }
        other => Err(mlua::Error::runtime(format!(
            "s.state().{function}: ttl is a duration such as \"10m\" or seconds, not {}",
            other.type_name()
        ))),
    }
}

fn data_of(value: &Value, function: &str, what: &str) -> mlua::Result<Option<StateData>> {
    Ok(Some(match value {
        Value::Nil => return Ok(None),
        Value::Boolean(flag) => StateData::Boolean(*flag),
        Value::Integer(number) => StateData::Integer(*number),
        Value::Number(number) => StateData::Number(*number),
        Value::String(text) => StateData::String(text.to_str()?.to_owned()),
        Value::UserData(data) => match LuaVector::read(data) {
            Some(vector) => StateData::Vector(vector),
            None => return Err(not_storable(function, what, "this userdata")),
        },
        Value::Table(list) => {
            let mut vector = Vec::with_capacity(list.raw_len());
            for number in list.sequence_values::<f64>() {
                vector.push(number.map_err(|_| {
                    not_storable(function, what, "a table that is not a list of numbers")
                })? as f32);
            }
            StateData::Vector(vector)
        }
        other => return Err(not_storable(function, what, other.type_name())),
    }))
}

fn not_storable(function: &str, what: &str, found: &str) -> mlua::Error {
    mlua::Error::runtime(format!(
        "s.state().{function}: the {what} is {found}; state keeps booleans, numbers, strings and vectors"
    ))
}

fn data_into_lua(lua: &Lua, data: Option<StateData>) -> mlua::Result<Value> {
    match data {
        None => Ok(Value::Nil),
        Some(StateData::Boolean(flag)) => Ok(Value::Boolean(flag)),
        Some(StateData::Integer(number)) => Ok(Value::Integer(number)),
        Some(StateData::Number(number)) => Ok(Value::Number(number)),
        Some(StateData::String(text)) => text.into_lua(lua),
        Some(StateData::Vector(vector)) => lua
            .create_userdata(LuaVector::new(vector))
            .map(Value::UserData),
    }
}

fn answer_into_lua(lua: &Lua, answer: StateAnswer) -> mlua::Result<mlua::MultiValue> {
    let values = match answer {
        StateAnswer::Value(value) => vec![data_into_lua(lua, value)?],
        StateAnswer::Swapped { swapped, current } => {
            vec![Value::Boolean(swapped), data_into_lua(lua, current)?]
        }
        StateAnswer::Integer(number) => vec![Value::Integer(number)],
        StateAnswer::Entries(entries) => {
            let table = lua.create_table()?;
            for (key, value) in entries {
                table.raw_set(key, data_into_lua(lua, Some(value))?)?;
            }
            vec![Value::Table(table)]
        }
    };
    Ok(mlua::MultiValue::from_iter(values))
}
