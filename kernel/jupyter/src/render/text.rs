//! `text/plain`: a value as a Lua literal, on one line when short, else
//! indented; vectors shortened.

use spindle_scripting::Data;

/// A value as Lua would write it.
pub fn plain(value: &Data) -> String {
    let mut out = String::new();
    write(value, 0, &mut out);
    out
}

const WIDTH: usize = 78;

fn write(value: &Data, indent: usize, out: &mut String) {
    match value {
        Data::Table {
            kind,
            entries,
            truncated,
        } => {
            let prefix = match kind.as_deref() {
                Some(kind) if kind != "spindle.answer" => format!("{kind} "),
                _ => String::new(),
            };
            if entries.is_empty() {
                out.push_str(&prefix);
                out.push_str(if *truncated { "{ … }" } else { "{}" });
                return;
            }
            let one_line = inline(value);
            if let Some(line) = one_line
                && indent + line.len() <= WIDTH
            {
                out.push_str(&prefix);
                out.push_str(&line);
                return;
            }
            out.push_str(&prefix);
            out.push_str("{\n");
            let list_len = value.as_list().map(|items| items.len());
            for (key, item) in entries {
                out.push_str(&" ".repeat(indent + 2));
                if list_len.is_none() {
                    out.push_str(&key_text(key));
                    out.push_str(" = ");
                }
                write(item, indent + 2, out);
                out.push_str(",\n");
            }
            if *truncated {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str("…\n");
            }
            out.push_str(&" ".repeat(indent));
            out.push('}');
        }
        other => out.push_str(&scalar(other)),
    }
}

/// The table on one line, if none of its values is a non-empty table.
fn inline(value: &Data) -> Option<String> {
    let Data::Table {
        entries, truncated, ..
    } = value
    else {
        return Some(scalar(value));
    };
    let is_list = value.as_list().is_some();
    let mut parts = Vec::new();
    for (key, item) in entries {
        let text = match item {
            Data::Table { entries, .. } if !entries.is_empty() => inline(item)?,
            Data::Table { .. } => "{}".to_owned(),
            other => scalar(other),
        };
        parts.push(if is_list {
            text
        } else {
            format!("{} = {text}", key_text(key))
        });
    }
    if *truncated {
        parts.push("…".to_owned());
    }
    Some(format!("{{ {} }}", parts.join(", ")))
}

fn key_text(key: &Data) -> String {
    match key {
        Data::String(name) if is_identifier(name) => name.clone(),
        other => format!("[{}]", scalar(other)),
    }
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// A non-table value.
pub(crate) fn scalar(value: &Data) -> String {
    match value {
        Data::Nil => "nil".to_owned(),
        Data::Boolean(flag) => flag.to_string(),
        Data::Integer(number) => number.to_string(),
        Data::Number(number) => number_text(*number),
        Data::String(text) => format!("{text:?}"),
        Data::Vector(values) => {
            let shown: Vec<String> = values.iter().take(4).map(|v| format!("{v:.4}")).collect();
            let more = if values.len() > 4 { ", …" } else { "" };
            format!("vector({}) [{}{more}]", values.len(), shown.join(", "))
        }
        Data::Opaque(text) => text.clone(),
        Data::Table { .. } => "{…}".to_owned(),
    }
}

/// A float as Lua prints it: whole numbers with `.0`, else the shortest
/// text that reads back.
pub(crate) fn number_text(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{number:.1}")
    } else {
        format!("{number}")
    }
}
