//! Spindle's values as Jupyter message contents: one small function per
//! message, writing exactly the fields the protocol (5.3) has, with `{}`
//! and `[]` where the typed structs of the protocol crate write `null`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use spindle_scripting::{
    CellError, CellErrorKind, Completeness, Completion, Data, Inspection, StreamName,
};

use crate::render;

/// The protocol version Spindle speaks.
pub const PROTOCOL_VERSION: &str = "5.3";

pub fn kernel_info_reply(banner: &str) -> Value {
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "spindle",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "lua",
            "version": "5.4",
            "mimetype": "text/x-lua",
            "file_extension": ".lua",
            "pygments_lexer": "lua",
            "codemirror_mode": "lua",
            "nbconvert_exporter": "script",
        },
        "banner": banner,
        "help_links": [
            {"text": "Spindle notebook API", "url": "https://example.invalid/spindle/docs/guide.md#notebooks"},
            {"text": "Lua 5.4 manual", "url": "https://www.lua.org/manual/5.4/"},
        ],
        "debugger": true,
        "supported_features": ["debugger"],
    })
}

pub fn status(state: &str) -> Value {
    json!({ "execution_state": state })
}

pub fn execute_input(code: &str, count: u32) -> Value {
    json!({ "code": code, "execution_count": count })
}

pub fn stream(name: StreamName, text: &str) -> Value {
    let name = match name {
        StreamName::Stdout => "stdout",
        StreamName::Stderr => "stderr",
    };
    json!({ "name": name, "text": text })
}

fn transient(display_id: Option<&str>) -> Value {
    match display_id {
        Some(id) => json!({ "display_id": id }),
        None => json!({}),
    }
}

/// `display_data` (or `update_display_data` with `update`).
pub fn display_data(value: &Data, display_id: Option<&str>) -> Value {
    json!({
        "data": Value::Object(render::bundle(value)),
        "metadata": {},
        "transient": transient(display_id),
    })
}

/// The values of a cell's trailing expression as one result: one value
/// as itself, several as a list.
pub fn execute_result(values: &[Data], count: u32) -> Value {
    let bundle = match values {
        [one] => render::bundle(one),
        many => {
            let mut bundle = Map::new();
            let texts: Vec<String> = many.iter().map(render::plain).collect();
            bundle.insert("text/plain".to_owned(), Value::String(texts.join("\t")));
            bundle
        }
    };
    json!({ "execution_count": count, "data": Value::Object(bundle), "metadata": {} })
}

pub fn clear_output(wait: bool) -> Value {
    json!({ "wait": wait })
}

pub fn input_request(prompt: &str, password: bool) -> Value {
    json!({ "prompt": prompt, "password": password })
}

/// Names cells `Cell In[n]` in errors, by their paths.
#[derive(Debug, Default)]
pub struct CellNames {
    by_path: HashMap<PathBuf, u32>,
}

impl CellNames {
    pub fn insert(&mut self, path: PathBuf, count: u32) {
        self.by_path.insert(path, count);
    }

    fn label(&self, path: &Path) -> String {
        match self.by_path.get(path) {
            Some(count) => format!("Cell In[{count}]"),
            None => path.display().to_string(),
        }
    }

    /// A traceback frame with any cell path (`/…/123.lua:4:`) as its label.
    fn frame(&self, frame: &str) -> String {
        if let Some(end) = frame.find(".lua:") {
            let path = Path::new(&frame[..end + 4]);
            if self.by_path.contains_key(path) {
                let rest = &frame[end + 5..];
                let (line, tail) = rest.split_once(':').unwrap_or((rest, ""));
                return format!("{}, line {line}:{tail}", self.label(path));
            }
        }
        frame.to_owned()
    }
}

/// `ename`, `evalue` and `traceback` of a failed cell.
pub fn error_fields(error: &CellError, names: &CellNames) -> Map<String, Value> {
    let ename = match error.kind {
        CellErrorKind::Syntax => "SyntaxError",
        CellErrorKind::Runtime => "LuaError",
        CellErrorKind::Interrupted => "Interrupted",
        CellErrorKind::Memory => "MemoryError",
    };
    let location = error
        .file
        .as_deref()
        .map(|file| format!("{}, line {}", names.label(file), error.line));
    let evalue = match &location {
        Some(location) => format!("{location}: {}", error.message),
        None => error.message.clone(),
    };
    let mut traceback = vec![format!("\u{1b}[0;31m{ename}\u{1b}[0m: {}", error.message)];
    if let Some(location) = location {
        traceback.push(location);
    }
    traceback.extend(
        error
            .traceback
            .iter()
            .map(|frame| format!("  {}", names.frame(frame))),
    );
    let mut fields = Map::new();
    fields.insert("ename".to_owned(), json!(ename));
    fields.insert("evalue".to_owned(), json!(evalue));
    fields.insert("traceback".to_owned(), json!(traceback));
    fields
}

/// The pager payloads of an execute reply, one per `s.help` of the cell.
fn page_payloads(pages: &[String]) -> Value {
    pages
        .iter()
        .map(|text| json!({ "source": "page", "data": { "text/plain": text }, "start": 0 }))
        .collect()
}

pub fn execute_reply_ok(
    count: u32,
    user_expressions: &[(String, Result<Data, CellError>)],
    names: &CellNames,
    pages: &[String],
) -> Value {
    let mut expressions = Map::new();
    for (name, value) in user_expressions {
        let result = match value {
            Ok(data) => json!({
                "status": "ok",
                "data": Value::Object(render::bundle(data)),
                "metadata": {},
            }),
            Err(error) => {
                let mut fields = error_fields(error, names);
                fields.insert("status".to_owned(), json!("error"));
                Value::Object(fields)
            }
        };
        expressions.insert(name.clone(), result);
    }
    json!({
        "status": "ok",
        "execution_count": count,
        "payload": page_payloads(pages),
        "user_expressions": Value::Object(expressions),
    })
}

pub fn execute_reply_error(count: u32, fields: &Map<String, Value>, pages: &[String]) -> Value {
    let mut content = fields.clone();
    content.insert("status".to_owned(), json!("error"));
    content.insert("execution_count".to_owned(), json!(count));
    content.insert("payload".to_owned(), page_payloads(pages));
    content.insert("user_expressions".to_owned(), json!({}));
    Value::Object(content)
}

pub fn complete_reply(completion: &Completion) -> Value {
    json!({
        "status": "ok",
        "matches": completion.matches,
        "cursor_start": completion.cursor_start,
        "cursor_end": completion.cursor_end,
        "metadata": {},
    })
}

pub fn inspect_reply(inspection: Option<&Inspection>) -> Value {
    match inspection {
        Some(found) => json!({
            "status": "ok",
            "found": true,
            "data": { "text/plain": found.text },
            "metadata": {},
        }),
        None => json!({ "status": "ok", "found": false, "data": {}, "metadata": {} }),
    }
}

pub fn is_complete_reply(completeness: Completeness) -> Value {
    match completeness {
        Completeness::Complete => json!({ "status": "complete" }),
        Completeness::Incomplete => json!({ "status": "incomplete", "indent": "  " }),
        Completeness::Invalid => json!({ "status": "invalid" }),
    }
}

pub fn history_reply(history: Vec<Value>) -> Value {
    json!({ "status": "ok", "history": history })
}

pub fn comm_info_reply() -> Value {
    json!({ "status": "ok", "comms": {} })
}

pub fn shutdown_reply(restart: bool) -> Value {
    json!({ "status": "ok", "restart": restart })
}

pub fn interrupt_reply() -> Value {
    json!({ "status": "ok" })
}

/// A request the kernel does not serve (yet): an error reply that says so.
pub fn unsupported_reply(msg_type: &str, hint: &str) -> Value {
    json!({
        "status": "error",
        "ename": "NotSupported",
        "evalue": format!("Spindle does not serve `{msg_type}` requests: {hint}"),
        "traceback": [],
    })
}
