//! The service graph as SVG: one column per startup wave (dependencies to
//! the left), one box per service coloured by its state, an arrow from
//! each dependency to its dependent, and the pipelines listed below with
//! whether they can be served.

use std::collections::HashMap;
use std::fmt::Write;

use spindle_scripting::Data;

use super::html::escape;

const BOX_WIDTH: i64 = 170;
const BOX_HEIGHT: i64 = 46;
const COLUMN_GAP: i64 = 70;
const ROW_GAP: i64 = 22;
const MARGIN: i64 = 20;

/// The colour of a service state (fill, stroke).
fn colours(state: &str) -> (&'static str, &'static str) {
    match state {
        "ready" | "completed" => ("#e3f5e1", "#2e7d32"),
        "running" | "starting" | "pending" => ("#fff6d8", "#b58900"),
        "unhealthy" | "backoff" | "stopping" => ("#ffe7cc", "#d9640f"),
        "failed" | "gave up" | "gave_up" => ("#fde2e1", "#c62828"),
        _ => ("#eeeeee", "#616161"),
    }
}

/// The SVG of a `spindle.graph` value.
pub fn svg(graph: &Data) -> String {
    let services: Vec<&Data> = graph
        .field("services")
        .and_then(Data::as_list)
        .unwrap_or_default();
    let pipelines: Vec<&Data> = graph
        .field("pipelines")
        .and_then(Data::as_list)
        .unwrap_or_default();
    let mut rows_in_wave: HashMap<i64, i64> = HashMap::new();
    let mut places: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut max_wave = 0;
    let mut max_row = 0;
    for service in &services {
        let name = service.field("name").and_then(Data::as_str).unwrap_or("?");
        let wave = service.field("wave").and_then(Data::as_f64).unwrap_or(0.0) as i64;
        let row = rows_in_wave.entry(wave).or_insert(0);
        places.insert(name, (wave, *row));
        max_wave = max_wave.max(wave);
        max_row = max_row.max(*row);
        *row += 1;
    }
    let position = |(wave, row): (i64, i64)| {
        (
            MARGIN + wave * (BOX_WIDTH + COLUMN_GAP),
            MARGIN + 24 + row * (BOX_HEIGHT + ROW_GAP),
        )
    };
    let graph_height = if services.is_empty() {
        30
    } else {
        24 + (max_row + 1) * (BOX_HEIGHT + ROW_GAP)
    };
    let width = (2 * MARGIN + (max_wave + 1) * (BOX_WIDTH + COLUMN_GAP)).max(360);
    let height = 2 * MARGIN + graph_height + 22 * pipelines.len() as i64 + 10;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs><rect width="100%" height="100%" fill="white"/>"##
    );
    for wave in 0..=max_wave {
        if services.is_empty() {
            break;
        }
        let (x, _) = position((wave, 0));
        let _ = write!(
            svg,
            r##"<text x="{x}" y="{}" fill="#555">wave {}</text>"##,
            MARGIN + 10,
            wave + 1
        );
    }
    if services.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{MARGIN}" y="{}" fill="#555">no services</text>"##,
            MARGIN + 14
        );
    }
    for service in &services {
        let name = service.field("name").and_then(Data::as_str).unwrap_or("?");
        let Some(&place) = places.get(name) else {
            continue;
        };
        let (x, y) = position(place);
        for dependency in service
            .field("depends_on")
            .and_then(Data::as_list)
            .unwrap_or_default()
        {
            let Some(from) = dependency.as_str().and_then(|name| places.get(name)) else {
                continue;
            };
            let (from_x, from_y) = position(*from);
            let _ = write!(
                svg,
                r##"<path d="M {} {} C {} {} {} {} {} {}" fill="none" stroke="#555" stroke-width="1.3" marker-end="url(#arrow)"/>"##,
                from_x + BOX_WIDTH,
                from_y + BOX_HEIGHT / 2,
                from_x + BOX_WIDTH + COLUMN_GAP / 2,
                from_y + BOX_HEIGHT / 2,
                x - COLUMN_GAP / 2,
                y + BOX_HEIGHT / 2,
                x,
                y + BOX_HEIGHT / 2
            );
        }
    }
    for service in &services {
        let name = service.field("name").and_then(Data::as_str).unwrap_or("?");
        let state = service.field("state").and_then(Data::as_str).unwrap_or("?");
        let kind = service.field("kind").and_then(Data::as_str).unwrap_or("");
        let Some(&place) = places.get(name) else {
            continue;
        };
        let (x, y) = position(place);
        let (fill, stroke) = colours(state);
        let _ = write!(
            svg,
            r##"<g class="service" data-state="{state}"><rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/><text x="{}" y="{}" font-weight="bold">{}</text><text x="{}" y="{}" fill="{stroke}">{} · {}</text></g>"##,
            x + 10,
            y + 19,
            escape(name),
            x + 10,
            y + 36,
            escape(state),
            escape(kind)
        );
    }
    let mut y = MARGIN + graph_height + 16;
    for pipeline in &pipelines {
        let name = pipeline.field("name").and_then(Data::as_str).unwrap_or("?");
        let ready = matches!(pipeline.field("ready"), Some(Data::Boolean(true)));
        let reason = pipeline
            .field("reason")
            .and_then(Data::as_str)
            .unwrap_or("");
        let (mark, colour) = if ready {
            ("●", "#2e7d32")
        } else {
            ("○", "#b58900")
        };
        let _ = write!(
            svg,
            r##"<text x="{MARGIN}" y="{y}"><tspan fill="{colour}">{mark}</tspan> pipeline {}{}</text>"##,
            escape(name),
            if ready {
                String::from(": ready")
            } else {
                format!(": {}", escape(reason))
            }
        );
        y += 22;
    }
    svg.push_str("</svg>");
    svg
}
