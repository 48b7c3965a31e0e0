//! `spindle graph FILE --format text|json|dot`: the graph and its startup
//! waves.

use std::path::PathBuf;
use std::process::ExitCode;

use spindle_scripting::{GraphSpec, PipelineSpec, ServiceKind, SourceSpec, StageKind};

/// Print a script's service graph with its startup waves.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  spindle graph examples/quickstart.lua\n  \
                        spindle graph examples/quickstart.lua --format json\n  \
                        spindle graph examples/quickstart.lua --format dot | dot -Tsvg > graph.svg")]
pub struct Args {
    /// The Lua script that declares the graph.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Dot,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let evaluation = spindle_scripting::evaluate_file(&args.file);
    eprint!("{}", super::diagnostics_text(&evaluation.diagnostics));
    let Some(graph) = evaluation.graph else {
        return Ok(ExitCode::from(1));
    };
    match args.format {
        Format::Text => print!("{}", text(&graph)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&json(&graph))?),
        Format::Dot => print!("{}", dot(&graph)),
    }
    Ok(ExitCode::SUCCESS)
}

fn text(graph: &GraphSpec) -> String {
    let mut out = String::new();
    for (wave, services) in graph.waves().iter().enumerate() {
        out.push_str(&format!("wave {wave}:\n"));
        for service in services {
            let detail = match &service.kind {
                ServiceKind::Process(process) => process.command.join(" "),
                ServiceKind::Embedding(embedding) => format!("embedding {}", embedding.model),
                other => other.name().to_owned(),
            };
            out.push_str(&format!("  {}  ({detail})\n", service.name));
            for dependency in &service.depends_on {
                out.push_str(&format!(
                    "    needs {} {}\n",
                    dependency.service,
                    dependency.condition.name()
                ));
            }
        }
    }
    for pipeline in &graph.pipelines {
        out.push_str(&format!(
            "pipeline {} (from {}):\n",
            pipeline.name,
            sources(pipeline).join(", ")
        ));
        for stage in &pipeline.stages {
            let detail = match &stage.kind {
                StageKind::Lua { .. } => "lua".to_owned(),
                StageKind::Embed {
                    service,
                    fallback,
                    shared_with,
                } => {
                    let mut detail = if shared_with.is_empty() {
                        format!("embed with {service}")
                    } else {
                        format!(
                            "embed with {service}, {} (least in flight)",
                            shared_with.join(", ")
                        )
                    };
                    if let Some(fallback) = fallback {
                        detail.push_str(&format!(", falling back to {fallback}"));
                    }
                    detail
                }
            };
            out.push_str(&format!("  {}  ({detail})\n", stage.name));
        }
    }
    out
}

fn json(graph: &GraphSpec) -> serde_json::Value {
    let mut services = Vec::new();
    for (wave, members) in graph.waves().iter().enumerate() {
        for service in members {
            services.push(serde_json::json!({
                "name": service.name,
                "kind": service.kind.name(),
                "depends_on": service.depends_on.iter().map(|d| &d.service).collect::<Vec<_>>(),
                "conditions": service.depends_on.iter()
                    .map(|d| (d.service.clone(), serde_json::Value::from(d.condition.name())))
                    .collect::<serde_json::Map<_, _>>(),
                "wave": wave,
                "critical": service.critical,
            }));
        }
    }
    let pipelines: Vec<serde_json::Value> = graph
        .pipelines
        .iter()
        .map(|pipeline| {
            serde_json::json!({
                "name": pipeline.name,
                "stages": pipeline.stages.iter().map(|stage| match &stage.kind {
                    StageKind::Lua { .. } => serde_json::json!({ "name": stage.name, "kind": "lua" }),
                    StageKind::Embed { service, fallback, shared_with } => serde_json::json!({
                        "name": stage.name, "kind": "embed", "service": service, "fallback": fallback,
                        "shared_with": shared_with,
                    }),
                }).collect::<Vec<_>>(),
                "sources": sources(pipeline),
            })
        })
        .collect();
    serde_json::json!({ "services": services, "pipelines": pipelines })
}

/// A pipeline's sources as strings: `http:/v1/pipelines/NAME` first (every
/// pipeline has it), then `http:ROUTE` and `netlink:FAMILY` as declared.
fn sources(pipeline: &PipelineSpec) -> Vec<String> {
    std::iter::once(format!("http:/v1/pipelines/{}", pipeline.name))
        .chain(pipeline.sources.iter().map(|source| match source {
            SourceSpec::Http { route } => format!("http:{route}"),
            SourceSpec::Netlink { family } => format!("netlink:{family}"),
        }))
        .collect()
}

/// Services as nodes in one rank per wave, dependencies as labelled edges;
/// pipelines as boxes with an edge to each embedding service they use
/// (dashed for a fallback).
fn dot(graph: &GraphSpec) -> String {
    let mut out = String::from("digraph spindle {\n  rankdir=LR;\n");
    for (wave, services) in graph.waves().iter().enumerate() {
        out.push_str(&format!("  subgraph wave{wave} {{ rank=same;"));
        for service in services {
            out.push_str(&format!(" {};", quoted(&service.name)));
        }
        out.push_str(" }\n");
    }
    for service in &graph.services {
        for dependency in &service.depends_on {
            out.push_str(&format!(
                "  {} -> {} [label={}];\n",
                quoted(&service.name),
                quoted(&dependency.service),
                quoted(dependency.condition.name())
            ));
        }
    }
    for pipeline in &graph.pipelines {
        let node = quoted(&format!("pipeline {}", pipeline.name));
        out.push_str(&format!("  {node} [shape=box];\n"));
        for stage in &pipeline.stages {
            let StageKind::Embed {
                service,
                fallback,
                shared_with,
            } = &stage.kind
            else {
                continue;
            };
            for service in std::iter::once(service).chain(shared_with) {
                out.push_str(&format!(
                    "  {node} -> {} [label={}];\n",
                    quoted(service),
                    quoted(&stage.name)
                ));
            }
            if let Some(fallback) = fallback {
                out.push_str(&format!(
                    "  {node} -> {} [label={}, style=dashed];\n",
                    quoted(fallback),
                    quoted(&format!("{} (fallback)", stage.name))
                ));
            }
        }
    }
    out.push_str("}\n");
    out
}

/// A DOT string literal.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
