//! Evaluation results as published diagnostics: grouped by file, with
//! related places (a cycle points at each of its edges, a duplicate at the
//! first declaration), merged over the roots a file is evaluated through.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use spindle_scripting::Diagnostic;
use spindle_scripting::analysis::ReferenceKind;
use tower_lsp_server::ls_types::{self as lsp, DiagnosticRelatedInformation};

use crate::server::Snapshot;
use crate::to_proto;
use crate::workspace::Workspace;

/// The LSP diagnostics of one evaluation, by file.
pub fn by_file(
    workspace: &Workspace,
    snapshot: &Snapshot,
    diagnostics: &[Diagnostic],
) -> HashMap<PathBuf, Vec<lsp::Diagnostic>> {
    let mut files: HashMap<PathBuf, Vec<lsp::Diagnostic>> = HashMap::new();
    let mut texts: HashMap<PathBuf, std::sync::Arc<str>> = HashMap::new();
    for diagnostic in diagnostics {
        let file = std::path::absolute(&diagnostic.file).unwrap_or(diagnostic.file.clone());
        // The text that was evaluated, where the editor held it.
        let text = texts
            .entry(file.clone())
            .or_insert_with(|| match (snapshot.get(&file), workspace.files.get(&file)) {
                (Some((text, _)), _) => text.clone(),
                (None, Some(entry)) => entry.text.clone(),
                (None, None) => {
                    std::sync::Arc::from(std::fs::read_to_string(&file).unwrap_or_default())
                }
            })
            .clone();
        let related = related(workspace, &file, diagnostic);
        files
            .entry(file)
            .or_default()
            .push(to_proto::diagnostic(&text, diagnostic, related));
    }
    files
}

fn related(
    workspace: &Workspace,
    file: &Path,
    diagnostic: &Diagnostic,
) -> Vec<DiagnosticRelatedInformation> {
    let mut related = Vec::new();
    // "first declared at FILE:LINE:COL; ..."
    if let Some(rest) = diagnostic
        .hint
        .as_deref()
        .and_then(|hint| hint.strip_prefix("first declared at "))
        && let Some((place, _)) = rest.split_once(';')
        && let Some((path_line, column)) = place.rsplit_once(':')
        && let Some((path, line)) = path_line.rsplit_once(':')
        && let (Ok(line), Ok(column)) = (line.parse::<u32>(), column.parse::<u32>())
    {
        let path = PathBuf::from(path);
        let text = workspace
            .files
            .get(&path)
            .map(|entry| entry.text.to_string())
            .or_else(|| std::fs::read_to_string(&path).ok())
            .unwrap_or_default();
        if let Some(location) =
            to_proto::location(&path, &text, to_proto::diagnostic_span(&text, line, column))
        {
            related.push(DiagnosticRelatedInformation {
                location,
                message: "first declared here".to_owned(),
            });
        }
    }
    // "dependency cycle: a → b → c → a": each edge at its `depends_on` entry.
    if let Some(cycle) = diagnostic.message.strip_prefix("dependency cycle: ") {
        let names: Vec<&str> = cycle.split(" → ").collect();
        for pair in names.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            for member in workspace.graph_files(file) {
                let Some(entry) = workspace.files.get(&member) else {
                    continue;
                };
                for reference in &entry.index.references {
                    if reference.kind == ReferenceKind::DependsOn
                        && reference.name == to
                        && reference.container.as_deref() == Some(from)
                        && let Some(location) =
                            to_proto::location(&member, &entry.text, reference.span)
                    {
                        related.push(DiagnosticRelatedInformation {
                            location,
                            message: format!("`{from}` depends on `{to}`"),
                        });
                    }
                }
            }
        }
    }
    related
}
