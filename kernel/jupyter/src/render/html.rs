//! `text/html`: Lua tables as HTML tables. A list of records becomes rows
//! with a column per field; a record becomes key/value rows; a list of
//! plain values a numbered column; a request's answer a summary.

use spindle_scripting::Data;

use super::text::{plain, scalar};

/// The table as HTML, or `None` for a value that is not a table.
pub fn table(value: &Data) -> Option<String> {
    let Data::Table { entries, .. } = value else {
        return None;
    };
    if entries.is_empty() {
        return None;
    }
    if value.kind() == Some("spindle.answer") {
        return Some(answer(value));
    }
    if let Some(items) = value.as_list() {
        let records: Vec<&Data> = items
            .iter()
            .copied()
            .filter(|item| matches!(item, Data::Table { .. }) && item.as_list().is_none())
            .collect();
        if !records.is_empty() && records.len() == items.len() {
            return Some(records_table(&records));
        }
        let mut html = table_start(&["#", "value"]);
        for (idx, item) in items.iter().enumerate() {
            row(&mut html, &[(idx + 1).to_string(), cell(item)]);
        }
        html.push_str("</tbody></table>");
        return Some(html);
    }
    let mut html = table_start(&["key", "value"]);
    for (key, item) in entries {
        let key = match key {
            Data::String(name) => name.clone(),
            other => scalar(other),
        };
        row(&mut html, &[key, cell(item)]);
    }
    html.push_str("</tbody></table>");
    Some(html)
}

fn records_table(records: &[&Data]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for record in records {
        if let Data::Table { entries, .. } = record {
            for (key, _) in entries {
                let key = match key {
                    Data::String(name) => name.clone(),
                    other => scalar(other),
                };
                if !columns.contains(&key) {
                    columns.push(key);
                }
            }
        }
    }
    let headers: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut html = table_start(&headers);
    for record in records {
        let cells: Vec<String> = columns
            .iter()
            .map(|column| record.field(column).map(cell).unwrap_or_default())
            .collect();
        row(&mut html, &cells);
    }
    html.push_str("</tbody></table>");
    html
}

fn answer(value: &Data) -> String {
    let mut html = table_start(&["", ""]);
    for name in [
        "outcome",
        "id",
        "pipeline",
        "priority",
        "latency_ms",
        "text",
        "vector",
        "degraded",
        "error",
    ] {
        if let Some(item) = value.field(name) {
            row(&mut html, &[name.to_owned(), cell(item)]);
        }
    }
    if let Some(stages) = value.field("stages").and_then(Data::as_list) {
        let text: Vec<String> = stages
            .iter()
            .map(|stage| {
                format!(
                    "{} {} ms",
                    stage.field("name").and_then(Data::as_str).unwrap_or("?"),
                    stage
                        .field("ms")
                        .and_then(Data::as_f64)
                        .map_or("?".to_owned(), |ms| format!("{ms:.2}"))
                )
            })
            .collect();
        row(&mut html, &["stages".to_owned(), escape(&text.join(", "))]);
    }
    html.push_str("</tbody></table>");
    html
}

fn table_start(headers: &[&str]) -> String {
    let mut html = String::from("<table class=\"spindle-table\"><thead><tr>");
    for header in headers {
        html.push_str("<th>");
        html.push_str(&escape(header));
        html.push_str("</th>");
    }
    html.push_str("</tr></thead><tbody>");
    html
}

/// Cells are already escaped.
fn row(html: &mut String, cells: &[String]) {
    html.push_str("<tr>");
    for cell in cells {
        html.push_str("<td>");
        html.push_str(cell);
        html.push_str("</td>");
    }
    html.push_str("</tr>");
}

fn cell(value: &Data) -> String {
    match value {
        Data::String(text) => escape(text),
        Data::Number(number) => format!("{number:.4}"),
        Data::Table { .. } => format!("<code>{}</code>", escape(&plain(value))),
        other => escape(&scalar(other)),
    }
}

/// Escapes text for HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}
