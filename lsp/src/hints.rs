//! Inlay hints (each service's startup wave after its name) and code
//! actions (the did-you-mean fixes of diagnostics' hints).

use std::collections::HashMap;
use std::path::Path;

use tower_lsp_server::ls_types::{
    CodeAction, CodeActionKind, Diagnostic, InlayHint, InlayHintKind, InlayHintLabel, Range,
    TextEdit, Uri, WorkspaceEdit,
};

use crate::to_proto;
use crate::workspace::Workspace;

/// `wave N` after the name of every service of `file` in `range`, from the
/// latest graph that evaluated without errors.
pub fn inlay_hints(workspace: &Workspace, file: &Path, range: Range) -> Vec<InlayHint> {
    let (Some(entry), Some(graph)) = (workspace.files.get(file), workspace.graph_of(file)) else {
        return Vec::new();
    };
    let text = &entry.text;
    entry
        .index
        .services()
        .filter_map(|declaration| {
            let wave = graph.service(&declaration.name)?.wave;
            // Just past the closing quote.
            let position =
                to_proto::position(text, (declaration.name_span.end + 1).min(text.len()));
            (range.start <= position && position <= range.end).then(|| InlayHint {
                position,
                label: InlayHintLabel::String(format!("wave {wave}")),
                kind: Some(InlayHintKind::TYPE),
                text_edits: None,
                tooltip: None,
                padding_left: Some(true),
                padding_right: Some(false),
                data: None,
            })
        })
        .collect()
}

/// A quick fix for every diagnostic whose hint names the word that was
/// meant (carried in the diagnostic's `data`).
pub fn code_actions(uri: &Uri, diagnostics: &[Diagnostic]) -> Vec<CodeAction> {
    diagnostics
        .iter()
        .filter(|d| d.source.as_deref() == Some("spindle"))
        .filter_map(|diagnostic| {
            let replacement = diagnostic.data.as_ref()?.get("replacement")?.as_str()?;
            let edit = TextEdit {
                range: diagnostic.range,
                new_text: replacement.to_owned(),
            };
            Some(CodeAction {
                title: format!("Change to {replacement}"),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![diagnostic.clone()]),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                    ..WorkspaceEdit::default()
                }),
                is_preferred: Some(true),
                ..CodeAction::default()
            })
        })
        .collect()
}
