//! Lua values ([`Data`]) as Jupyter MIME bundles: `text/plain` always (a
//! Lua-like literal), `text/html` for tables and request answers,
//! `image/svg+xml` for charts (`s.chart`) and the service graph.
//!
//! Knows no sockets; pure functions of the data.

mod chart;
mod graph;
mod html;
mod text;

use serde_json::{Map, Value};
use spindle_scripting::Data;

pub use text::plain;

/// The MIME bundle of a value.
pub fn bundle(value: &Data) -> Map<String, Value> {
    let mut bundle = Map::new();
    bundle.insert("text/plain".to_owned(), Value::String(text::plain(value)));
    match value.kind() {
        Some("spindle.html") => {
            if let Some(html) = value.field("html").and_then(Data::as_str) {
                bundle.insert("text/html".to_owned(), Value::String(html.to_owned()));
            }
        }
        Some("spindle.chart") => match chart::svg(value) {
            Ok(svg) => {
                bundle.insert("image/svg+xml".to_owned(), Value::String(svg));
            }
            Err(message) => {
                bundle.insert(
                    "text/plain".to_owned(),
                    Value::String(format!("chart: {message}")),
                );
            }
        },
        Some("spindle.graph") => {
            bundle.insert("image/svg+xml".to_owned(), Value::String(graph::svg(value)));
        }
        _ => {
            if let Some(html) = html::table(value) {
                bundle.insert("text/html".to_owned(), Value::String(html));
            }
        }
    }
    bundle
}
