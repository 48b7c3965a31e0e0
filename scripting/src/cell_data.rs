//! [`Data`]: a Lua value as plain Rust data, and back.
//!
//! A notebook cell's results, what `s.display` shows, and what the kernel
//! answers to a cell's questions (services, metrics, a request's answer)
//! cross the Lua thread's boundary as `Data`: a tree of plain values that a
//! front end can render (HTML, SVG, text) without touching Lua. Tables are
//! copied to a bounded depth and size, cycles included, so that showing a
//! huge or self-referencing table stays cheap and finite.
//!
//! Knows no front end and no wire format.

use std::collections::HashSet;

use mlua::{Lua, Table, Value};

use crate::lua_vector::LuaVector;

/// How deep [`Data::from_lua`] follows nested tables.
pub const DATA_DEPTH: usize = 6;
/// How many entries of one table [`Data::from_lua`] copies.
pub const DATA_ENTRIES: usize = 2_000;

/// A Lua value as plain data.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Nil,
    Boolean(bool),
    Integer(i64),
    Number(f64),
    String(String),
    /// An embedding (`req.vector`) or any list of numbers made in Rust.
    Vector(Vec<f32>),
    /// A table: its entries in a stable order (the array part first, then
    /// the other keys sorted by their text), and the `__name` of its
    /// metatable, which says what kind of thing it is
    /// (`"spindle.chart"`, `"spindle.answer"`, ...).
    Table {
        kind: Option<String>,
        entries: Vec<(Data, Data)>,
        /// Entries left out past [`DATA_ENTRIES`] or [`DATA_DEPTH`].
        truncated: bool,
    },
    /// A value that is not data (a function, a coroutine, a userdata),
    /// as Lua's `tostring` shows it.
    Opaque(String),
}

impl Data {
    /// A table of `(key, value)` pairs with string keys.
    pub fn record(kind: Option<&str>, fields: Vec<(&str, Data)>) -> Data {
        Data::Table {
            kind: kind.map(str::to_owned),
            entries: fields
                .into_iter()
                .map(|(key, value)| (Data::String(key.to_owned()), value))
                .collect(),
            truncated: false,
        }
    }

    /// A list (keys 1..n).
    pub fn list(items: Vec<Data>) -> Data {
        Data::Table {
            kind: None,
            entries: items
                .into_iter()
                .enumerate()
                .map(|(idx, item)| (Data::Integer(idx as i64 + 1), item))
                .collect(),
            truncated: false,
        }
    }

    pub fn text(text: impl Into<String>) -> Data {
        Data::String(text.into())
    }

    /// The value at string key `name` of a table.
    pub fn field(&self, name: &str) -> Option<&Data> {
        let Data::Table { entries, .. } = self else {
            return None;
        };
        entries.iter().find_map(|(key, value)| match key {
            Data::String(key) if key == name => Some(value),
            _ => None,
        })
    }

    /// The items of a list (keys 1..n in order), or `None` when the table
    /// has other keys.
    pub fn as_list(&self) -> Option<Vec<&Data>> {
        let Data::Table { entries, .. } = self else {
            return None;
        };
        let mut items = Vec::with_capacity(entries.len());
        for (idx, (key, value)) in entries.iter().enumerate() {
            match key {
                Data::Integer(number) if *number == idx as i64 + 1 => items.push(value),
                _ => return None,
            }
        }
        Some(items)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Data::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Data::Integer(number) => Some(*number as f64),
            Data::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// The kind of a table (its metatable's `__name`).
    pub fn kind(&self) -> Option<&str> {
        match self {
            Data::Table { kind, .. } => kind.as_deref(),
            _ => None,
        }
    }

    /// Copies a Lua value, following tables to [`DATA_DEPTH`].
    pub fn from_lua(lua: &Lua, value: &Value) -> Data {
        let mut seen = HashSet::new();
        from_lua(lua, value, 0, &mut seen)
    }

    /// Makes the Lua value: tables get their kind back as a metatable with
    /// `__name`, vectors become list-like userdata.
    pub fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Data::Nil => Value::Nil,
            Data::Boolean(flag) => Value::Boolean(flag),
            Data::Integer(number) => Value::Integer(number),
            Data::Number(number) => Value::Number(number),
            Data::String(text) => Value::String(lua.create_string(&text)?),
            Data::Vector(values) => Value::UserData(lua.create_userdata(LuaVector::new(values))?),
            Data::Opaque(text) => Value::String(lua.create_string(&text)?),
            Data::Table { kind, entries, .. } => {
                let table = lua.create_table_with_capacity(0, entries.len())?;
                for (key, value) in entries {
                    table.raw_set(key.into_lua(lua)?, value.into_lua(lua)?)?;
                }
                if let Some(kind) = kind {
                    table.set_metatable(Some(kind_metatable(lua, &kind)?))?;
                }
                Value::Table(table)
            }
        })
    }
}

/// The shared metatable that names a kind of table (`__name`).
pub(crate) fn kind_metatable(lua: &Lua, kind: &str) -> mlua::Result<Table> {
    let registry_key = format!("spindle.kind.{kind}");
    if let Ok(Value::Table(existing)) = lua.named_registry_value::<Value>(&registry_key) {
        return Ok(existing);
    }
    let metatable = lua.create_table()?;
    metatable.raw_set("__name", kind)?;
    lua.set_named_registry_value(&registry_key, &metatable)?;
    Ok(metatable)
}

fn from_lua(lua: &Lua, value: &Value, depth: usize, seen: &mut HashSet<usize>) -> Data {
    match value {
        Value::Nil => Data::Nil,
        Value::Boolean(flag) => Data::Boolean(*flag),
        Value::Integer(number) => Data::Integer(*number),
        Value::Number(number) => Data::Number(*number),
        Value::String(text) => Data::String(text.to_string_lossy()),
        Value::UserData(data) if data.is::<LuaVector>() => {
            Data::Vector(LuaVector::read(data).unwrap_or_default())
        }
        Value::Table(table) => {
            let kind = table
                .metatable()
                .and_then(|meta| meta.raw_get::<Option<String>>("__name").ok().flatten());
            let address = table.to_pointer() as usize;
            if depth >= DATA_DEPTH || !seen.insert(address) {
                return Data::Table {
                    kind,
                    entries: Vec::new(),
                    truncated: true,
                };
            }
            let mut entries = Vec::new();
            let mut truncated = false;
            let length = table.raw_len();
            for idx in 1..=length {
                if entries.len() >= DATA_ENTRIES {
                    truncated = true;
                    break;
                }
                let item = table.raw_get::<Value>(idx).unwrap_or(Value::Nil);
                entries.push((
                    Data::Integer(idx as i64),
                    from_lua(lua, &item, depth + 1, seen),
                ));
            }
            let mut others = Vec::new();
            for pair in table.pairs::<Value, Value>() {
                let Ok((key, item)) = pair else { continue };
                if let Value::Integer(idx) = key
                    && idx >= 1
                    && (idx as usize) <= length
                {
                    continue;
                }
                if entries.len() + others.len() >= DATA_ENTRIES {
                    truncated = true;
                    break;
                }
                others.push((
                    from_lua(lua, &key, depth + 1, seen),
                    from_lua(lua, &item, depth + 1, seen),
                ));
            }
            others.sort_by_key(|(key, _)| sort_key(key));
            entries.extend(others);
            seen.remove(&address);
            Data::Table {
                kind,
                entries,
                truncated,
            }
        }
        other => Data::Opaque(tostring(lua, other)),
    }
}

/// Numbers first (by value), then strings, then the rest by their text.
fn sort_key(key: &Data) -> (u8, i64, String) {
    match key {
        Data::Integer(number) => (0, *number, String::new()),
        Data::Number(number) => (0, *number as i64, number.to_string()),
        Data::String(text) => (1, 0, text.clone()),
        other => (2, 0, format!("{other:?}")),
    }
}

/// What Lua's `tostring` says of a value.
pub(crate) fn tostring(lua: &Lua, value: &Value) -> String {
    let tostring: Option<mlua::Function> = lua.globals().raw_get("tostring").ok();
    tostring
        .and_then(|function| function.call::<String>(value.clone()).ok())
        .unwrap_or_else(|| format!("{}: {:p}", value.type_name(), value.to_pointer()))
}
