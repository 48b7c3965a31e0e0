//! `s.chart { ... }` as SVG, drawn with plotters: line, scatter and bar
//! charts of one or more series, histograms, and heatmaps (a similarity
//! matrix, say) with their values written in the cells.

use plotters::prelude::*;
use spindle_scripting::Data;

const SIZE: (u32, u32) = (640, 400);

/// The chart's SVG, or what is wrong with its spec.
pub fn svg(spec: &Data) -> Result<String, String> {
    let kind = spec.field("kind").and_then(Data::as_str).unwrap_or("");
    let title = spec.field("title").and_then(Data::as_str).unwrap_or("");
    let x_label = spec.field("x_label").and_then(Data::as_str).unwrap_or("");
    let y_label = spec.field("y_label").and_then(Data::as_str).unwrap_or("");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let labels = Labels {
            title,
            x: x_label,
            y: y_label,
        };
        match kind {
            "line" | "scatter" => xy(&root, spec, kind == "line", &labels)?,
            "bar" => bars(&root, spec, &labels)?,
            "histogram" => histogram(&root, spec, &labels)?,
            "heatmap" => heatmap(&root, spec, &labels)?,
            other => return Err(format!("unknown chart kind `{other}`")),
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

struct Labels<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn numbers(value: Option<&Data>) -> Vec<f64> {
    match value {
        Some(Data::Vector(values)) => values.iter().map(|v| f64::from(*v)).collect(),
        Some(list) => list
            .as_list()
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.as_f64())
            .collect(),
        None => Vec::new(),
    }
}

/// The named series: `series = { name = {...} }`, else `y` as one series.
fn series(spec: &Data) -> Vec<(String, Vec<f64>)> {
    if let Some(Data::Table { entries, .. }) = spec.field("series") {
        return entries
            .iter()
            .map(|(key, values)| {
                let name = key
                    .as_str()
                    .map_or_else(|| format!("{key:?}"), str::to_owned);
                (name, numbers(Some(values)))
            })
            .collect();
    }
    vec![(String::new(), numbers(spec.field("y")))]
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for value in values {
        low = low.min(value);
        high = high.max(value);
    }
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if (high - low).abs() < f64::EPSILON {
        return (low - 1.0, high + 1.0);
    }
    let pad = (high - low) * 0.05;
    (low - pad, high + pad)
}

fn xy(root: &Area<'_>, spec: &Data, lines: bool, labels: &Labels<'_>) -> Result<(), String> {
    let all = series(spec);
    let xs = numbers(spec.field("x"));
    let length = all.iter().map(|(_, ys)| ys.len()).max().unwrap_or(0);
    let x_at = |idx: usize| xs.get(idx).copied().unwrap_or(idx as f64 + 1.0);
    let (x_low, x_high) = range((0..length).map(x_at));
    let (y_low, y_high) = range(all.iter().flat_map(|(_, ys)| ys.iter().copied()));
    let mut chart = ChartBuilder::on(root)
        .caption(labels.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x_low..x_high, y_low..y_high)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(|e| e.to_string())?;
    let named = all.iter().any(|(name, _)| !name.is_empty());
    for (idx, (name, ys)) in all.iter().enumerate() {
        let colour = Palette99::pick(idx).to_rgba();
        let points: Vec<(f64, f64)> = ys.iter().enumerate().map(|(i, y)| (x_at(i), *y)).collect();
        let drawn = if lines {
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|point| Circle::new(*point, 3, colour.filled())),
                )
                .map_err(|e| e.to_string())?
        } else {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|point| Circle::new(*point, 4, colour.filled())),
                )
                .map_err(|e| e.to_string())?
        };
        if named {
            drawn.label(name.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 4), (x + 14, y + 4)], colour.filled())
            });
        }
    }
    if named {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn bars(root: &Area<'_>, spec: &Data, labels: &Labels<'_>) -> Result<(), String> {
    let all = series(spec);
    let names: Vec<String> = spec
        .field("x")
        .and_then(Data::as_list)
        .unwrap_or_default()
        .iter()
        .map(|item| super::text::plain(item).trim_matches('"').to_owned())
        .collect();
    let count = all.iter().map(|(_, ys)| ys.len()).max().unwrap_or(0).max(1);
    let (_, y_high) = range(
        all.iter()
            .flat_map(|(_, ys)| ys.iter().copied())
            .chain([0.0]),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(labels.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..count as f64, 0.0..y_high)
        .map_err(|e| e.to_string())?;
    let label_of = |x: &f64| {
        let idx = x.floor() as usize;
        if (x - x.floor() - 0.5).abs() < 1e-9 {
            names
                .get(idx)
                .cloned()
                .unwrap_or_else(|| (idx + 1).to_string())
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(count * 2 + 1)
        .x_label_formatter(&label_of)
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(|e| e.to_string())?;
    let groups = all.len().max(1) as f64;
    let named = all.iter().any(|(name, _)| !name.is_empty());
    for (series_idx, (name, ys)) in all.iter().enumerate() {
        let colour = Palette99::pick(series_idx).to_rgba();
        let width = 0.8 / groups;
        let drawn = chart
            .draw_series(ys.iter().enumerate().map(|(idx, y)| {
                let left = idx as f64 + 0.1 + width * series_idx as f64;
                Rectangle::new([(left, 0.0), (left + width, *y)], colour.filled())
            }))
            .map_err(|e| e.to_string())?;
        if named {
            drawn.label(name.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 4), (x + 14, y + 4)], colour.filled())
            });
        }
    }
    if named {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn histogram(root: &Area<'_>, spec: &Data, labels: &Labels<'_>) -> Result<(), String> {
    let values = numbers(spec.field("values"));
    let bins = spec
        .field("bins")
        .and_then(Data::as_f64)
        .map_or(20, |bins| bins.clamp(1.0, 200.0) as usize);
    let (low, high) = range(values.iter().copied());
    let width = (high - low) / bins as f64;
    let mut counts = vec![0u32; bins];
    for value in &values {
        let idx = (((value - low) / width) as usize).min(bins - 1);
        counts[idx] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(labels.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(low..high, 0.0..f64::from(top) * 1.05)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(if labels.y.is_empty() {
            "count"
        } else {
            labels.y
        })
        .draw()
        .map_err(|e| e.to_string())?;
    let colour = Palette99::pick(0).to_rgba();
    chart
        .draw_series(counts.iter().enumerate().map(|(idx, count)| {
            let left = low + width * idx as f64;
            Rectangle::new(
                [(left, 0.0), (left + width, f64::from(*count))],
                colour.filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn heatmap(root: &Area<'_>, spec: &Data, labels: &Labels<'_>) -> Result<(), String> {
    let rows: Vec<Vec<f64>> = spec
        .field("values")
        .and_then(Data::as_list)
        .unwrap_or_default()
        .iter()
        .map(|row| numbers(Some(row)))
        .collect();
    let names: Vec<String> = spec
        .field("labels")
        .and_then(Data::as_list)
        .unwrap_or_default()
        .iter()
        .map(|item| item.as_str().unwrap_or("").to_owned())
        .collect();
    let height = rows.len().max(1);
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let (low, high) = range(rows.iter().flatten().copied());
    let label_area = names
        .iter()
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(2) as u32
        * 7
        + 16;
    let mut chart = ChartBuilder::on(root)
        .caption(labels.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(label_area.min(140))
        .y_label_area_size(label_area.min(160))
        .build_cartesian_2d(0.0..width as f64, 0.0..height as f64)
        .map_err(|e| e.to_string())?;
    let label_of = |position: &f64, flip: bool| {
        let idx = position.floor() as usize;
        if (position - position.floor() - 0.5).abs() > 1e-9 {
            return String::new();
        }
        let idx = if flip {
            height.saturating_sub(idx + 1)
        } else {
            idx
        };
        names
            .get(idx)
            .cloned()
            .unwrap_or_else(|| (idx + 1).to_string())
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(width * 2 + 1)
        .y_labels(height * 2 + 1)
        .x_label_formatter(&|x| label_of(x, false))
        .y_label_formatter(&|y| label_of(y, true))
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()
        .map_err(|e| e.to_string())?;
    let span = (high - low).max(f64::EPSILON);
    for (row_idx, row) in rows.iter().enumerate() {
        let y = (height - row_idx - 1) as f64;
        for (col, value) in row.iter().enumerate() {
            let level = ((value - low) / span).clamp(0.0, 1.0);
            let colour = RGBColor(
                (255.0 - 200.0 * level) as u8,
                (250.0 - 140.0 * level) as u8,
                (245.0 - 40.0 * level) as u8,
            );
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(col as f64, y), (col as f64 + 1.0, y + 1.0)],
                    colour.filled(),
                )))
                .map_err(|e| e.to_string())?;
            let text_colour = if level > 0.6 { &WHITE } else { &BLACK };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{value:.2}"),
                    (col as f64 + 0.35, y + 0.55),
                    ("sans-serif", 13).into_font().color(text_colour),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
