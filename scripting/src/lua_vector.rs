//! `req.vector`: an embedding handed to Lua without copying it into a
//! table. It is a userdata that behaves like a list of numbers: `#v`,
//! `v[i]`, `v[i] = x`, `ipairs(v)`, `pairs(v)`, `table.unpack(v)` and
//! `table.concat(v, ",")` work (Lua 5.4 honours `__index` and `__len` in
//! all of them). A pipeline whose stages never read it pays no per-element
//! work at all, and the answer takes the numbers back without converting
//! a table.
//!
//! Knows nothing of pipelines; the runner puts it into `req` and takes it
//! back out.

use std::cell::RefCell;

use mlua::{AnyUserData, Lua, MetaMethod, UserData, UserDataMethods, Value};

/// The numbers of one embedding, owned by Lua while the request runs.
pub(crate) struct LuaVector(RefCell<Vec<f32>>);

impl LuaVector {
    pub(crate) fn new(values: Vec<f32>) -> LuaVector {
        LuaVector(RefCell::new(values))
    }

    /// The numbers, if `value` is a `LuaVector`.
    pub(crate) fn read(value: &AnyUserData) -> Option<Vec<f32>> {
        value
            .borrow::<LuaVector>()
            .ok()
            .map(|vector| vector.0.borrow().clone())
    }

    /// `vector(384) [0.0123, -0.0456, ...]` for the debugger.
    pub(crate) fn preview(value: &AnyUserData, shown: usize) -> Option<String> {
        let vector = value.borrow::<LuaVector>().ok()?;
        let values = vector.0.borrow();
        let mut text = format!("vector({}) [", values.len());
        for (idx, number) in values.iter().take(shown).enumerate() {
            if idx > 0 {
                text.push_str(", ");
            }
            text.push_str(&number_text(*number));
        }
        if values.len() > shown {
            text.push_str(", …");
        }
        text.push(']');
        Some(text)
    }
}

/// An element as the debugger shows it: the shortest text that reads back
/// as the same `f32`, with `.0` on whole numbers as Lua prints floats.
pub(crate) fn number_text(number: f32) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{number:.1}")
    } else {
        format!("{number}")
    }
}

/// The 1-based index a key stands for, if it is a whole number.
fn index_of(key: &Value) -> Option<usize> {
    let number = match key {
        Value::Integer(number) => *number,
        Value::Number(number) if number.fract() == 0.0 => *number as i64,
        _ => return None,
    };
    usize::try_from(number).ok().filter(|idx| *idx >= 1)
}

impl UserData for LuaVector {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |_, vector, key: Value| {
            let values = vector.0.borrow();
            Ok(index_of(&key)
                .and_then(|idx| values.get(idx - 1))
                .map_or(Value::Nil, |number| Value::Number(f64::from(*number))))
        });
        methods.add_meta_method(
            MetaMethod::NewIndex,
            |_, vector, (key, number): (Value, f64)| {
                let mut values = vector.0.borrow_mut();
                match index_of(&key) {
                    Some(idx) if idx <= values.len() => values[idx - 1] = number as f32,
                    Some(idx) if idx == values.len() + 1 => values.push(number as f32),
                    _ => {
                        return Err(mlua::Error::runtime(format!(
                            "req.vector has {} numbers; index {} is out of range (write 1..{})",
                            values.len(),
                            key.to_string()
                                .unwrap_or_else(|_| key.type_name().to_owned()),
                            values.len() + 1
                        )));
                    }
                }
                Ok(())
            },
        );
        methods.add_meta_method(MetaMethod::Len, |_, vector, ()| Ok(vector.0.borrow().len()));
        methods.add_meta_method(MetaMethod::ToString, |_, vector, ()| {
            Ok(format!("vector({})", vector.0.borrow().len()))
        });
        methods.add_meta_function(MetaMethod::Pairs, |lua: &Lua, vector: AnyUserData| {
            let next = lua.create_function(|_, (vector, idx): (AnyUserData, Option<i64>)| {
                let idx = idx.unwrap_or(0) + 1;
                let number = vector
                    .borrow::<LuaVector>()?
                    .0
                    .borrow()
                    .get((idx - 1) as usize)
                    .copied();
                Ok(match number {
                    Some(number) => (Value::Integer(idx), Value::Number(f64::from(number))),
                    None => (Value::Nil, Value::Nil),
                })
            })?;
            Ok((next, vector, Value::Nil))
        });
    }
}
