//! The notebook part of the `spindle` Lua module, and the cell-aware
//! `print`, `io.write`, `io.read` and `io.stderr`.
//!
//! Cells talk to the kernel through the cell's [`Effects`]: `s.submit`
//! sends a request to a pipeline and the cell's coroutine waits for the
//! answer (other requests flow on meanwhile); `s.status`, `s.service_list`,
//! `s.pipeline_list`, `s.metrics` and `s.service_graph` ask the kernel. Rich
//! output (`s.display`, `s.update_display`, `s.clear_output`) goes to the
//! front end as [`Data`], which it renders: tables as HTML, `s.chart`
//! specs and the service graph as SVG; `s.help` sends plain text to the
//! front end's pager. These functions raise an error outside a cell;
//! `s.chart`, `s.html` and `s.cosine` work anywhere.
//!
//! Knows no runtime, socket or wire format.

use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use mlua::{Lua, MultiValue, Table, Value, Variadic};

use crate::cell::{CellEvent, CellState, NotebookState, StreamName};
use crate::cell_data::{Data, kind_metatable, tostring};
use crate::duration::parse_duration;
use crate::lua_vector::LuaVector;

/// A request a cell submits to a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSubmission {
    pub pipeline: String,
    pub text: String,
    /// `"high"`, `"medium"` or `"low"`; `None` for the pipeline's default.
    pub priority: Option<String>,
    /// A deadline shorter than the pipeline's timeout.
    pub timeout: Option<Duration>,
    pub correlation_id: Option<String>,
}

/// What a cell asks the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelQuery {
    /// Run id, readiness, services, pipelines and live requests.
    Status,
    /// Each service: name, kind, state, wave, dependencies.
    Services,
    /// Each pipeline: name, whether it is ready and why not.
    Pipelines,
    /// Counters and latency by pipeline, priority and outcome.
    Metrics,
    /// The service graph with its waves and states, to be drawn.
    ServiceGraph,
}

impl KernelQuery {
    fn name(self) -> &'static str {
        match self {
            KernelQuery::Status => "status",
            KernelQuery::Services => "service_list",
            KernelQuery::Pipelines => "pipeline_list",
            KernelQuery::Metrics => "metrics",
            KernelQuery::ServiceGraph => "service_graph",
        }
    }
}

/// Receives the kernel's answer to a cell, on any thread.
pub type DataReply = Box<dyn FnOnce(Result<Data, String>) + Send>;

/// The kinds of chart `s.chart` draws.
pub const CHART_KINDS: &[&str] = &["bar", "line", "scatter", "heatmap", "histogram"];

fn current_cell(lua: &Lua) -> Option<Rc<CellState>> {
    let notebook = lua.app_data_ref::<NotebookState>()?;
    notebook.current.borrow().clone()
}

fn in_cell(lua: &Lua, function: &str) -> mlua::Result<Rc<CellState>> {
    current_cell(lua).ok_or_else(|| {
        mlua::Error::runtime(format!(
            "s.{function} works in notebook cells only (spindle kernel start, or spindle run --jupyter)"
        ))
    })
}

/// Adds the notebook functions to the `spindle` module table.
pub(crate) fn extend(lua: &Lua, module: &Table) -> mlua::Result<()> {
    for (name, up) in [("up", true), ("down", false)] {
        module.set(
            name,
            lua.create_async_function(move |lua, ()| {
                let prepared = in_cell(&lua, name).and_then(|cell| {
                    let graph = if up {
                        crate::notebook_graph::declared_graph(&lua)?
                    } else {
                        crate::notebook_graph::empty_graph(&lua)?
                    };
                    Ok((cell, graph))
                });
                async move {
                    let (cell, graph) = prepared?;
                    let report = ask(|reply| cell.effects.apply_graph(graph, reply)).await;
                    report.into_lua(&lua)
                }
            })?,
        )?;
    }
    module.set(
        "submit",
        lua.create_async_function(|lua, (pipeline, request): (String, Value)| {
            let prepared = in_cell(&lua, "submit")
                .and_then(|cell| Ok((cell, submission(&lua, pipeline, &request)?)));
            async move {
                let (cell, submission) = prepared?;
                let answer = ask(|reply| cell.effects.submit(submission, reply)).await;
                answer.into_lua(&lua)
            }
        })?,
    )?;
    module.set(
        "submit_all",
        lua.create_async_function(|lua, (pipeline, requests): (String, Table)| {
            let prepared = in_cell(&lua, "submit_all").and_then(|cell| {
                let mut submissions = Vec::new();
                for request in requests.sequence_values::<Value>() {
                    submissions.push(submission(&lua, pipeline.clone(), &request?)?);
                }
                Ok((cell, submissions))
            });
            async move {
                let (cell, submissions) = prepared?;
                let pending: Vec<_> = submissions
                    .into_iter()
                    .map(|submission| {
                        let cell = cell.clone();
                        ask(move |reply| cell.effects.submit(submission, reply))
                    })
                    .collect();
                let answers = futures::future::join_all(pending).await;
                let list = lua.create_table_with_capacity(answers.len(), 0)?;
                for answer in answers {
                    list.raw_push(answer.into_lua(&lua)?)?;
                }
                Ok(list)
            }
        })?,
    )?;
    for query in [
        KernelQuery::Status,
        KernelQuery::Services,
        KernelQuery::Pipelines,
        KernelQuery::Metrics,
        KernelQuery::ServiceGraph,
    ] {
        module.set(
            query.name(),
            lua.create_async_function(move |lua, ()| {
                let cell = in_cell(&lua, query.name());
                async move {
                    let cell = cell?;
                    let answer = ask(|reply| cell.effects.query(query, reply)).await;
                    answer.into_lua(&lua)
                }
            })?,
        )?;
    }
    module.set(
        "display",
        lua.create_function(|lua, (value, options): (Value, Option<Table>)| {
            let cell = in_cell(lua, "display")?;
            let display_id = match options.map(|options| options.get::<Value>("id")) {
                Some(Ok(Value::String(id))) => Some(id.to_string_lossy()),
                Some(Ok(Value::Boolean(true))) => Some(cell.new_display_id()),
                _ => None,
            };
            cell.send(CellEvent::Display {
                value: Data::from_lua(lua, &value),
                display_id: display_id.clone(),
                update: false,
            });
            Ok(display_id)
        })?,
    )?;
    module.set(
        "update_display",
        lua.create_function(|lua, (display_id, value): (String, Value)| {
            let cell = in_cell(lua, "update_display")?;
            cell.send(CellEvent::Display {
                value: Data::from_lua(lua, &value),
                display_id: Some(display_id),
                update: true,
            });
            Ok(())
        })?,
    )?;
    module.set(
        "clear_output",
        lua.create_function(|lua, wait: Option<bool>| {
            let cell = in_cell(lua, "clear_output")?;
            cell.send(CellEvent::ClearOutput {
                wait: wait.unwrap_or(false),
            });
            Ok(())
        })?,
    )?;
    module.set(
        "help",
        lua.create_function(|lua, value: Value| {
            let cell = in_cell(lua, "help")?;
            let text = crate::cell::help_text(lua, &value)
                .map_err(|why| mlua::Error::runtime(format!("s.help: {why}")))?;
            cell.send(CellEvent::Page { text });
            Ok(())
        })?,
    )?;
    module.set(
        "chart",
        lua.create_function(|lua, spec: Table| {
            let kind: Option<String> = spec.get("kind")?;
            match kind.as_deref() {
                Some(kind) if CHART_KINDS.contains(&kind) => {}
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "s.chart: `kind` must be one of {}, not {}",
                        CHART_KINDS.join(", "),
                        other.map_or("nothing".to_owned(), |kind| format!("\"{kind}\""))
                    )));
                }
            }
            spec.set_metatable(Some(kind_metatable(lua, "spindle.chart")?))?;
            Ok(spec)
        })?,
    )?;
    module.set(
        "html",
        lua.create_function(|lua, html: String| {
            let table = lua.create_table()?;
            table.raw_set("html", html)?;
            table.set_metatable(Some(kind_metatable(lua, "spindle.html")?))?;
            Ok(table)
        })?,
    )?;
    module.set(
        "cosine",
        lua.create_function(|_, (a, b): (Value, Value)| {
            let a = numbers(&a, "first")?;
            let b = numbers(&b, "second")?;
            if a.len() != b.len() || a.is_empty() {
                return Err(mlua::Error::runtime(format!(
                    "s.cosine: the vectors have {} and {} numbers; they must have the same, non-zero length",
                    a.len(),
                    b.len()
                )));
            }
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let denominator = norm(&a) * norm(&b);
            Ok(if denominator == 0.0 {
                0.0
            } else {
                dot / denominator
            })
        })?,
    )?;
    Ok(())
}

/// Sends a question through `send` and waits for its answer; a dropped
/// reply is an error.
async fn ask(send: impl FnOnce(crate::notebook_api::DataReply)) -> Data {
    let (sender, receiver) = oneshot::channel();
    send(Box::new(move |answer| {
        let _ = sender.send(answer);
    }));
    match receiver.await {
        Ok(Ok(data)) => data,
        Ok(Err(message)) => Data::record(
            Some("spindle.answer"),
            vec![
                ("outcome", Data::text("error")),
                ("error", Data::text(message)),
            ],
        ),
        Err(_) => Data::record(
            Some("spindle.answer"),
            vec![
                ("outcome", Data::text("error")),
                (
                    "error",
                    Data::text("the kernel went away before it answered"),
                ),
            ],
        ),
    }
}

/// `s.submit`'s second argument: the text, or a table with `text` and
/// options.
fn submission(lua: &Lua, pipeline: String, request: &Value) -> mlua::Result<CellSubmission> {
    let mut submission = CellSubmission {
        pipeline,
        text: String::new(),
        priority: None,
        timeout: None,
        correlation_id: None,
    };
    match request {
        Value::String(text) => submission.text = text.to_string_lossy(),
        Value::Table(fields) => {
            submission.text = fields
                .get::<Option<String>>("text")?
                .ok_or_else(|| mlua::Error::runtime("s.submit: the request table needs `text`"))?;
            submission.priority = fields.get("priority")?;
            if let Some(priority) = &submission.priority
                && !["high", "medium", "low"].contains(&priority.as_str())
            {
                return Err(mlua::Error::runtime(format!(
                    "s.submit: priority must be \"high\", \"medium\" or \"low\", not \"{priority}\""
                )));
            }
            submission.timeout = match fields.get::<Value>("timeout")? {
                Value::Nil => None,
                Value::String(text) => Some(
                    parse_duration(&text.to_string_lossy())
                        .map_err(|message| mlua::Error::runtime(format!("s.submit: {message}")))?,
                ),
                Value::Integer(seconds) => Some(Duration::from_secs(seconds.max(0) as u64)),
                Value::Number(seconds) => Some(Duration::from_secs_f64(seconds.max(0.0))),
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "s.submit: timeout must be a duration such as \"2s\", not {}",
                        other.type_name()
                    )));
                }
            };
            submission.correlation_id = fields.get("correlation_id")?;
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "s.submit: the request is a text or a table with `text`, not {}",
                tostring(lua, other)
            )));
        }
    }
    Ok(submission)
}

/// A vector as numbers: a `req.vector` userdata or a list of numbers.
fn numbers(value: &Value, which: &str) -> mlua::Result<Vec<f64>> {
    match value {
        Value::UserData(data) if data.is::<LuaVector>() => Ok(LuaVector::read(data)
            .unwrap_or_default()
            .into_iter()
            .map(f64::from)
            .collect()),
        Value::Table(table) => table
            .sequence_values::<f64>()
            .collect::<mlua::Result<Vec<f64>>>()
            .map_err(|_| {
                mlua::Error::runtime(format!("s.cosine: the {which} list holds a non-number"))
            }),
        other => Err(mlua::Error::runtime(format!(
            "s.cosine: the {which} argument is a vector or a list of numbers, not {}",
            other.type_name()
        ))),
    }
}

/// `print`, `io.write`, `io.read` and `io.stderr` that write to the
/// current cell's streams (or ask its front end for input), and behave as
/// before outside a cell.
pub(crate) fn install_streams(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    let original_print: mlua::Function = globals.get("print")?;
    globals.set(
        "print",
        lua.create_function(move |lua, args: MultiValue| {
            let Some(cell) = current_cell(lua) else {
                return original_print.call::<()>(args);
            };
            let mut text = String::new();
            for (idx, value) in args.iter().enumerate() {
                if idx > 0 {
                    text.push('\t');
                }
                text.push_str(&tostring(lua, value));
            }
            text.push('\n');
            cell.write(StreamName::Stdout, &text);
            Ok(())
        })?,
    )?;
    let io: Table = globals.get("io")?;
    let original_write: mlua::Function = io.get("write")?;
    io.set(
        "write",
        lua.create_function(move |lua, args: MultiValue| {
            let Some(cell) = current_cell(lua) else {
                return original_write.call::<MultiValue>(args);
            };
            cell.write(StreamName::Stdout, &written_text(lua, &args)?);
            let stdout: Value = lua
                .globals()
                .get::<Table>("io")
                .and_then(|io| io.get("stdout"))
                .unwrap_or(Value::Nil);
            Ok(MultiValue::from_vec(vec![stdout]))
        })?,
    )?;
    let original_read: mlua::Function = io.get("read")?;
    io.set(
        "read",
        lua.create_async_function(move |lua, args: MultiValue| {
            let cell = current_cell(&lua);
            let original_read = original_read.clone();
            async move {
                let Some(cell) = cell else {
                    return original_read.call::<MultiValue>(args);
                };
                if !cell.allow_stdin {
                    return Err(mlua::Error::runtime(
                        "io.read: this front end does not take input (allow_stdin is false)",
                    ));
                }
                let format = match args.front() {
                    Some(Value::String(format)) => format.to_string_lossy(),
                    Some(Value::Integer(count)) => format!("{count}"),
                    _ => "l".to_owned(),
                };
                let (sender, receiver) = oneshot::channel();
                cell.send(CellEvent::Input {
                    prompt: String::new(),
                    password: false,
                    reply: Box::new(move |line| {
                        let _ = sender.send(line);
                    }),
                });
                let line = match receiver.await {
                    Ok(Ok(line)) => line,
                    Ok(Err(message)) => {
                        return Err(mlua::Error::runtime(format!("io.read: {message}")));
                    }
                    Err(_) => return Err(mlua::Error::runtime("io.read: the front end went away")),
                };
                let format = format.trim_start_matches('*');
                let value = if format.starts_with('n') {
                    match line.trim().parse::<f64>() {
                        Ok(number) if number.fract() == 0.0 && number.abs() < 9.0e15 => {
                            Value::Integer(number as i64)
                        }
                        Ok(number) => Value::Number(number),
                        Err(_) => Value::Nil,
                    }
                } else if format.starts_with('L') {
                    Value::String(lua.create_string(format!("{line}\n"))?)
                } else {
                    Value::String(lua.create_string(&line)?)
                };
                Ok(MultiValue::from_vec(vec![value]))
            }
        })?,
    )?;
    // io.stderr:write(...) in a cell: a proxy with the file's methods whose
    // `write` goes to the cell's stderr stream.
    let write_stderr = lua.create_function(|lua, args: Variadic<Value>| {
        let Some(cell) = current_cell(lua) else {
            return Ok(false);
        };
        let args: MultiValue = args.into_iter().collect();
        cell.write(StreamName::Stderr, &written_text(lua, &args)?);
        Ok(true)
    })?;
    lua.load(
        r#"
local write_cell = ...
local real = io.stderr
local methods = {}
function methods.write(self, ...)
  if write_cell(...) then return self end
  return real:write(...)
end
io.stderr = setmetatable({}, {
  __name = "FILE*",
  __index = function(_, key)
    local method = methods[key]
    if method then return method end
    local value = real[key]
    if type(value) == "function" then
      return function(_, ...) return value(real, ...) end
    end
    return value
  end,
  __tostring = function() return tostring(real) end,
})
"#,
    )
    .set_name("=spindle notebook streams")
    .call::<()>(write_stderr)
}

/// The text `io.write` writes: strings and numbers, as Lua writes them.
fn written_text(lua: &Lua, args: &MultiValue) -> mlua::Result<String> {
    let mut text = String::new();
    for (idx, value) in args.iter().enumerate() {
        match value {
            Value::String(part) => text.push_str(&part.to_string_lossy()),
            Value::Integer(_) | Value::Number(_) => text.push_str(&tostring(lua, value)),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "bad argument #{} to 'write' (string expected, got {})",
                    idx + 1,
                    other.type_name()
                )));
            }
        }
    }
    Ok(text)
}
