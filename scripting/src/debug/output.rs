//! `print` for the script host: while a debugger is attached, printed
//! lines go to it as output events (with the file and line that printed
//! them) instead of stdout, which may carry a protocol (the debug adapter
//! over stdio, `spindle run --events jsonl`). With nobody attached it
//! writes to stdout as Lua's own `print` does.

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;

use mlua::{Function, Lua, MultiValue, Value};

use crate::pipeline_run::Effects;

/// Replaces the global `print`.
pub(crate) fn redirect_print(
    lua: &Lua,
    attached: Rc<Cell<bool>>,
    effects: &Arc<dyn Effects>,
) -> mlua::Result<()> {
    let effects = effects.clone();
    let tostring: Function = lua.globals().raw_get("tostring")?;
    let print = lua.create_function(move |lua, values: MultiValue| {
        let mut text = String::new();
        for (idx, value) in values.into_iter().enumerate() {
            if idx > 0 {
                text.push('\t');
            }
            match value {
                Value::String(string) => text.push_str(&string.to_string_lossy()),
                other => text.push_str(&tostring.call::<String>(other)?),
            }
        }
        text.push('\n');
        if attached.get() {
            let (file, line) = lua
                .inspect_stack(1, |debug| {
                    let source = debug.source();
                    let file = source
                        .source
                        .as_deref()
                        .and_then(|name| name.strip_prefix('@'))
                        .unwrap_or_default()
                        .to_owned();
                    (file, debug.current_line().unwrap_or(0) as u32)
                })
                .unwrap_or_default();
            effects.debug_event(super::debugger::print_output(text, file, line));
        } else {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
        Ok(())
    })?;
    lua.globals().raw_set("print", print)
}
