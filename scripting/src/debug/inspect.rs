//! Reading a paused coroutine: its frames, locals and upvalues, and the
//! entries of tables, through Lua's own `debug` library applied to the
//! coroutine from the host thread (the table that `lua_raw` opens for
//! Rust only).
//!
//! Reads are raw: no metamethod of the script runs while the debugger
//! looks, so looking never changes the request.

use std::cmp::Ordering;

use mlua::{Function, Table, Thread, Value};

use super::{Page, RunStack, StackFrame, Variable, VariablesRef};
use crate::lua_vector::{LuaVector, number_text};
use crate::run_registry::Inspected;

/// Entries shown in a table's one-line preview.
const PREVIEW_ENTRIES: usize = 6;
/// Characters of a string shown before it is cut.
const STRING_CHARS: usize = 120;
/// Entries read from one table at most (then paged).
const EXPAND_ENTRIES: usize = 100_000;

/// Reads the stack of `thread`, paused by a hook, innermost frame first.
/// Expandable values are appended to `inspected`; a [`VariablesRef`] is an
/// index into it plus one.
pub(crate) fn read_stack(
    debug: &Table,
    thread: &Thread,
    bottom_name: &str,
    req: Option<&Table>,
    inspected: &mut Vec<Inspected>,
) -> mlua::Result<RunStack> {
    let getinfo: Function = debug.get("getinfo")?;
    let getlocal: Function = debug.get("getlocal")?;
    let mut reader = Reader { debug, inspected };
    let mut frames = Vec::new();
    for level in 0i64.. {
        let Some(info) = getinfo.call::<Option<Table>>((thread.clone(), level, "nSlf"))? else {
            break;
        };
        let what: String = info.get("what")?;
        let is_c = what == "C";
        let file = if is_c {
            String::new()
        } else {
            chunk_file(info.get::<Option<String>>("source")?.as_deref())
        };
        let line = info.get::<i64>("currentline")?.max(0) as u32;
        let function = match info.get::<Option<String>>("name")? {
            Some(name) => name,
            None if is_c => "[C]".to_owned(),
            None => format!(
                "function <{}:{}>",
                file_name(&file),
                info.get::<i64>("linedefined")?
            ),
        };
        let mut locals = Vec::new();
        for idx in 1i64.. {
            let (name, value): (Option<String>, Value) =
                getlocal.call((thread.clone(), level, idx))?;
            let Some(name) = name else { break };
            if name.starts_with('(') {
                continue;
            }
            locals.push(reader.variable(name, value)?);
        }
        let mut upvalues = Vec::new();
        if let (false, Some(function)) = (is_c, info.get::<Option<Function>>("func")?) {
            upvalues = reader.upvalues(&function)?;
        }
        frames.push(StackFrame {
            function,
            file,
            line,
            locals,
            upvalues,
        });
    }
    // The bottom frame is the stage's own function (or the cell's code).
    if let Some(bottom) = frames.iter_mut().rev().find(|frame| !frame.file.is_empty())
        && bottom.function.starts_with("function <")
    {
        bottom.function = bottom_name.to_owned();
    }
    let request = match req {
        Some(req) => reader.entries(&Value::Table(req.clone()))?,
        None => Vec::new(),
    };
    Ok(RunStack { frames, request })
}

/// What a stopped request's variables are read from.
pub(crate) struct Paused<'a> {
    pub lua: &'a mlua::Lua,
    pub debug: &'a Table,
    pub thread: Option<&'a Thread>,
    pub req: Option<&'a Table>,
}

/// The entries of an expandable value or scope, one page of them.
pub(crate) fn list(
    paused: &Paused<'_>,
    item: &Inspected,
    inspected: &mut Vec<Inspected>,
    page: Page,
) -> mlua::Result<Vec<Variable>> {
    let mut reader = Reader {
        debug: paused.debug,
        inspected,
    };
    let all = match item {
        Inspected::Value(value) => return reader.entries_page(value, page),
        Inspected::Request => match paused.req {
            Some(req) => return reader.entries_page(&Value::Table(req.clone()), page),
            None => Vec::new(),
        },
        Inspected::Globals => {
            return reader.entries_page(&Value::Table(paused.lua.globals()), page);
        }
        Inspected::Locals { level } => match paused.thread {
            Some(thread) => reader.locals(thread, *level)?,
            None => Vec::new(),
        },
        Inspected::Upvalues { level } => match paused.thread {
            Some(thread) => {
                let getinfo: Function = paused.debug.get("getinfo")?;
                match getinfo.call::<Option<Table>>((thread.clone(), i64::from(*level), "f"))? {
                    Some(info) => match info.get::<Option<Function>>("func")? {
                        Some(function) => reader.upvalues(&function)?,
                        None => Vec::new(),
                    },
                    None => Vec::new(),
                }
            }
            None => Vec::new(),
        },
    };
    Ok(paginate(all, page))
}

/// How many variables a scope holds.
pub(crate) fn count(paused: &Paused<'_>, item: &Inspected) -> usize {
    let mut scratch = Vec::new();
    list(paused, item, &mut scratch, Page::default())
        .map(|list| list.len())
        .unwrap_or(0)
}

/// A value as a variable named `name`, its children registered.
pub(crate) fn variable(
    debug: &Table,
    inspected: &mut Vec<Inspected>,
    name: String,
    value: Value,
) -> mlua::Result<Variable> {
    Reader { debug, inspected }.variable(name, value)
}

fn paginate(all: Vec<Variable>, page: Page) -> Vec<Variable> {
    let count = page.count.unwrap_or(usize::MAX);
    all.into_iter().skip(page.start).take(count).collect()
}

struct Reader<'a> {
    debug: &'a Table,
    inspected: &'a mut Vec<Inspected>,
}

impl Reader<'_> {
    fn variable(&mut self, name: String, value: Value) -> mlua::Result<Variable> {
        let expandable = match &value {
            Value::Table(table) => !table.is_empty(),
            Value::UserData(data) => data.is::<LuaVector>(),
            _ => false,
        };
        let type_name = match &value {
            Value::UserData(data) if data.is::<LuaVector>() => "vector".to_owned(),
            other => other.type_name().to_owned(),
        };
        let shown = self.display(&value, true)?;
        let children = expandable.then(|| {
            self.inspected.push(Inspected::Value(value));
            VariablesRef(self.inspected.len() as u32)
        });
        Ok(Variable {
            name,
            type_name,
            value: shown,
            children,
        })
    }

    fn locals(&mut self, thread: &Thread, level: u32) -> mlua::Result<Vec<Variable>> {
        let getlocal: Function = self.debug.get("getlocal")?;
        let mut locals = Vec::new();
        for idx in 1i64.. {
            let (name, value): (Option<String>, Value) =
                getlocal.call((thread.clone(), i64::from(level), idx))?;
            let Some(name) = name else { break };
            if name.starts_with('(') {
                continue;
            }
            locals.push(self.variable(name, value)?);
        }
        Ok(locals)
    }

    fn entries_page(&mut self, value: &Value, page: Page) -> mlua::Result<Vec<Variable>> {
        match value {
            Value::Table(table) => {
                let mut entries = Vec::new();
                let count = page.count.unwrap_or(usize::MAX);
                for (key, value) in sorted_entries(table, EXPAND_ENTRIES)
                    .into_iter()
                    .skip(page.start)
                    .take(count)
                {
                    let name = match &key {
                        Value::String(text) => text.to_string_lossy(),
                        other => format!("[{}]", self.display(other, false)?),
                    };
                    entries.push(self.variable(name, value)?);
                }
                Ok(entries)
            }
            other => Ok(paginate(self.entries(other)?, page)),
        }
    }

    fn upvalues(&mut self, function: &Function) -> mlua::Result<Vec<Variable>> {
        let getupvalue: Function = self.debug.get("getupvalue")?;
        let mut upvalues = Vec::new();
        for idx in 1i64.. {
            let (name, value): (Option<String>, Value) =
                getupvalue.call((function.clone(), idx))?;
            let Some(name) = name else { break };
            if name == "_ENV" {
                continue;
            }
            upvalues.push(self.variable(name, value)?);
        }
        Ok(upvalues)
    }

    fn entries(&mut self, value: &Value) -> mlua::Result<Vec<Variable>> {
        match value {
            Value::Table(table) => {
                let mut entries = Vec::new();
                for (key, value) in sorted_entries(table, EXPAND_ENTRIES) {
                    let name = match &key {
                        Value::String(text) => text.to_string_lossy(),
                        other => format!("[{}]", self.display(other, false)?),
                    };
                    entries.push(self.variable(name, value)?);
                }
                Ok(entries)
            }
            Value::UserData(data) => {
                let numbers = LuaVector::read(data).unwrap_or_default();
                Ok(numbers
                    .into_iter()
                    .enumerate()
                    .map(|(idx, number)| Variable {
                        name: format!("[{}]", idx + 1),
                        type_name: "number".to_owned(),
                        value: number_text(number),
                        children: None,
                    })
                    .collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// One line of text for a value; `nested` tables inside a preview are
    /// shown as `{…}`.
    fn display(&self, value: &Value, preview: bool) -> mlua::Result<String> {
        Ok(match value {
            Value::Nil => "nil".to_owned(),
            Value::Boolean(flag) => flag.to_string(),
            Value::Integer(number) => number.to_string(),
            Value::Number(number) => lua_number(*number),
            Value::String(text) => {
                let text = text.to_string_lossy();
                let mut cut: String = text.chars().take(STRING_CHARS).collect();
                if cut.len() < text.len() {
                    cut.push('…');
                }
                format!("{cut:?}")
            }
            Value::Table(table) if !preview => {
                if table.is_empty() {
                    "{}".to_owned()
                } else {
                    "{…}".to_owned()
                }
            }
            Value::Table(table) => {
                let entries = sorted_entries(table, PREVIEW_ENTRIES + 1);
                let mut parts = Vec::new();
                for (key, value) in entries.iter().take(PREVIEW_ENTRIES) {
                    let key = match key {
                        Value::String(text) => text.to_string_lossy(),
                        other => format!("[{}]", self.display(other, false)?),
                    };
                    parts.push(format!("{key} = {}", self.display(value, false)?));
                }
                if entries.len() > PREVIEW_ENTRIES {
                    parts.push("…".to_owned());
                }
                if parts.is_empty() {
                    "{}".to_owned()
                } else {
                    format!("{{ {} }}", parts.join(", "))
                }
            }
            Value::Function(function) => self.function_text(function)?,
            Value::UserData(data) => LuaVector::preview(data, if preview { 4 } else { 0 })
                .unwrap_or_else(|| "userdata".to_owned()),
            Value::Thread(_) => "thread".to_owned(),
            Value::LightUserData(_) => "lightuserdata".to_owned(),
            Value::Error(error) => format!("error: {error}"),
            other => other.type_name().to_owned(),
        })
    }

    fn function_text(&self, function: &Function) -> mlua::Result<String> {
        let getinfo: Function = self.debug.get("getinfo")?;
        let info: Table = getinfo.call((function.clone(), "S"))?;
        let what: String = info.get("what")?;
        if what == "C" {
            return Ok("function <builtin>".to_owned());
        }
        let file = chunk_file(info.get::<Option<String>>("source")?.as_deref());
        Ok(format!(
            "function <{}:{}>",
            file_name(&file),
            info.get::<i64>("linedefined")?
        ))
    }
}

/// A table's entries, read raw: whole-number keys in order first, then
/// string keys in order, then the rest; at most `limit` of them.
fn sorted_entries(table: &Table, limit: usize) -> Vec<(Value, Value)> {
    let mut entries: Vec<(Value, Value)> = table
        .clone()
        .pairs::<Value, Value>()
        .flatten()
        .take(EXPAND_ENTRIES)
        .collect();
    entries.sort_by(|(a, _), (b, _)| key_order(a, b));
    entries.truncate(limit);
    entries
}

fn key_order(a: &Value, b: &Value) -> Ordering {
    fn rank(key: &Value) -> u8 {
        match key {
            Value::Integer(_) | Value::Number(_) => 0,
            Value::String(_) => 1,
            _ => 2,
        }
    }
    match (a, b) {
        (Value::Integer(a), Value::Integer(b)) => a.cmp(b),
        (Value::String(a), Value::String(b)) => a.as_bytes().cmp(&b.as_bytes()),
        (a, b) => rank(a).cmp(&rank(b)),
    }
}

/// The file of a chunk named `@<path>`; empty for the host's own chunks
/// (named `=...`), other chunk names as they are.
fn chunk_file(source: Option<&str>) -> String {
    let source = source.unwrap_or("");
    if source.starts_with('=') {
        return String::new();
    }
    source.strip_prefix('@').unwrap_or(source).to_owned()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Numbers as Lua prints them: `1.0`, `0.5`, `1e+20`.
fn lua_number(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{number:.1}")
    } else {
        format!("{number}")
    }
}
