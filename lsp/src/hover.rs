//! `textDocument/hover`: the API's documentation on a module function or a
//! field; on a service name, its kind, command, dependencies and wave from
//! the latest evaluation; and, when the graph runs, its live state (added by
//! the server after asking the status API, outside the workspace's task).

use std::path::Path;

use crate::summary::GraphSummary;
use spindle_scripting::analysis::{
    self, CursorContext, DeclarationKind, Span, TableKind, api_docs, cursor_context,
};

use crate::live_status::{LiveError, LiveService};
use crate::workspace::Workspace;

/// What hover shows before the live part: markdown, the span it is about,
/// and the service whose live state to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoverPlan {
    pub markdown: String,
    pub span: Span,
    pub service: Option<String>,
}

pub fn plan(workspace: &Workspace, file: &Path, text: &str, offset: usize) -> Option<HoverPlan> {
    let entry = workspace.files.get(file)?;
    let index = &entry.index;
    let graph = workspace.graph_of(file);
    if let Some(declaration) = index.declaration_at(offset) {
        let markdown = match declaration.kind {
            DeclarationKind::Service => service_markdown(workspace, file, &declaration.name, graph),
            DeclarationKind::Pipeline => pipeline_markdown(&declaration.name, graph),
            DeclarationKind::Stage => format!(
                "**stage** `{}`{}",
                declaration.name,
                declaration
                    .container
                    .as_ref()
                    .map(|pipeline| format!(" of pipeline `{pipeline}`"))
                    .unwrap_or_default()
            ),
        };
        let service =
            (declaration.kind == DeclarationKind::Service).then(|| declaration.name.clone());
        return Some(HoverPlan {
            markdown,
            span: declaration.name_span,
            service,
        });
    }
    if let Some(reference) = index.reference_at(offset) {
        return Some(HoverPlan {
            markdown: service_markdown(workspace, file, &reference.name, graph),
            span: reference.span,
            service: Some(reference.name.clone()),
        });
    }
    if let Some(require) = index.require_at(offset) {
        let markdown = match analysis::resolve_require(file, &require.module) {
            Some(path) => format!("**module** `{}`\n\n`{}`", require.module, path.display()),
            None if require.module == "spindle" => {
                "**module** `spindle`: the Spindle API (services, probes, pipelines).".to_owned()
            }
            None => format!(
                "**module** `{}`: not found next to the script",
                require.module
            ),
        };
        return Some(HoverPlan {
            markdown,
            span: require.span,
            service: None,
        });
    }
    match cursor_context(text, offset) {
        CursorContext::OnKey { table, key, span } => {
            let doc = api_docs::field(table, &key)?;
            Some(HoverPlan {
                markdown: format!(
                    "**{}** `{key}`: {}\n\n{}",
                    table_name(table),
                    doc.detail,
                    doc.documentation
                ),
                span,
                service: None,
            })
        }
        CursorContext::ApiMember { typed } => {
            let name = word_at(text, typed.start);
            let doc = api_docs::module_function(&name)?;
            Some(HoverPlan {
                markdown: format!("```lua\n{}\n```\n\n{}", doc.detail, doc.documentation),
                span: Span {
                    start: typed.start,
                    end: typed.start + name.len(),
                },
                service: None,
            })
        }
        _ => None,
    }
}

/// The live part of a service's hover.
pub fn live_markdown(service: &str, live: &Result<Vec<LiveService>, LiveError>) -> String {
    match live {
        Ok(services) => match services.iter().find(|s| s.name == service) {
            Some(state) => {
                let mut text = format!(
                    "**live**: {} · pid {} · restarts {}",
                    state.state,
                    state
                        .pid
                        .map_or_else(|| "none".to_owned(), |pid| pid.to_string()),
                    state.restarts
                );
                if let Some(reason) = state.reason.as_deref().filter(|r| !r.is_empty()) {
                    text.push_str(&format!(" · last reason: {reason}"));
                }
                text
            }
            None => "**live**: the running graph has no such service".to_owned(),
        },
        Err(error) => format!("**live**: {error}"),
    }
}

fn word_at(text: &str, start: usize) -> String {
    text[start..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn table_name(table: TableKind) -> &'static str {
    match table {
        TableKind::Service => "service field",
        TableKind::Restart => "restart field",
        TableKind::Stop => "stop field",
        TableKind::Embedding => "embedding field",
        TableKind::Probe(_) => "probe field",
        TableKind::Pipeline => "pipeline field",
        TableKind::Timeout => "timeout",
        TableKind::Embed => "s.embed field",
        TableKind::Netlink => "s.netlink field",
        TableKind::Settings => "setting",
        _ => "field",
    }
}

fn service_markdown(
    workspace: &Workspace,
    file: &Path,
    name: &str,
    graph: Option<&GraphSummary>,
) -> String {
    let Some(graph) = graph else {
        let declared = !workspace
            .declarations(file, DeclarationKind::Service, name)
            .is_empty();
        return if declared {
            format!(
                "**service** `{name}`\n\n(the script has errors; kind, dependencies and wave show once it checks clean)"
            )
        } else {
            format!("**service** `{name}`: not declared in this graph")
        };
    };
    let Some(service) = graph.service(name) else {
        return format!("**service** `{name}`: not declared in this graph");
    };
    let mut lines = vec![format!("**service** `{name}` — {}", service.kind)];
    match service.kind {
        "process" => lines.push(format!("command: `{}`", service.runs)),
        "embedding" => lines.push(format!("model: {}", service.runs)),
        _ => {}
    }
    if service.depends_on.is_empty() {
        lines.push("depends on: nothing".to_owned());
    } else {
        let dependencies: Vec<String> = service
            .depends_on
            .iter()
            .map(|(dependency, condition)| format!("`{dependency}` ({condition})"))
            .collect();
        lines.push(format!("depends on: {}", dependencies.join(", ")));
    }
    lines.push(format!("wave {} of {}", service.wave, graph.wave_count));
    lines.push(format!("restart: {}", service.restart));
    lines.join("\n\n")
}

fn pipeline_markdown(name: &str, graph: Option<&GraphSummary>) -> String {
    let Some(pipeline) = graph.and_then(|graph| graph.pipeline(name)) else {
        return format!("**pipeline** `{name}`");
    };
    let stages: Vec<&str> = pipeline.stages.iter().map(String::as_str).collect();
    format!(
        "**pipeline** `{name}`\n\nstages: {}\n\nserved at `POST /v1/pipelines/{name}`",
        stages.join(" → ")
    )
}
