//! `textDocument/completion`: the `spindle` API after `s.`, the fields of
//! the table the cursor is in (with snippets and documentation), service
//! names in `depends_on` and `s.embed`, the closed sets of words (conditions,
//! policies, signals, providers, priorities) and model names.

use std::path::Path;

use spindle_scripting::analysis::api_docs::{self, ApiDoc, ValueDoc};
use spindle_scripting::analysis::{CursorContext, Span, TableKind, cursor_context};
use tower_lsp_server::ls_types::{
    CompletionItem, CompletionItemKind, CompletionTextEdit, Documentation, InsertTextFormat,
    MarkupContent, MarkupKind, TextEdit,
};

use crate::models::ModelEntry;
use crate::to_proto;
use crate::workspace::Workspace;

/// The completions at byte `offset` of `file`.
pub fn complete(
    workspace: &Workspace,
    models: &[ModelEntry],
    file: &Path,
    text: &str,
    offset: usize,
) -> Vec<CompletionItem> {
    let context = cursor_context(text, offset);
    let current_service = workspace.files.get(file).and_then(|entry| {
        entry
            .index
            .services()
            .filter(|d| d.full_span.touches(offset))
            .min_by_key(|d| d.full_span.end - d.full_span.start)
            .map(|d| d.name.clone())
    });
    match context {
        CursorContext::ApiMember { typed } => api_docs::module_functions()
            .iter()
            .map(|doc| snippet_item(text, typed, doc, CompletionItemKind::FUNCTION))
            .collect(),
        CursorContext::FieldKey {
            table,
            typed,
            present,
        } => match table {
            TableKind::DependsOn => workspace
                .service_names(file)
                .into_iter()
                .filter(|(name, _)| Some(name) != current_service.as_ref())
                .filter(|(name, _)| !present.contains(name))
                .map(|(name, _)| {
                    let snippet = format!("{name} = \"${{1|healthy,started,completed|}}\",");
                    item(
                        text,
                        typed,
                        &name,
                        "service",
                        &format!("Wait for service `{name}`."),
                        Some(snippet),
                        CompletionItemKind::REFERENCE,
                    )
                })
                .collect(),
            TableKind::Timeout => words(text, typed, api_docs::PRIORITIES, |word| {
                format!("{word} = \"${{1:10s}}\",")
            }),
            TableKind::Pipeline => {
                let mut items: Vec<CompletionItem> = api_docs::fields(table)
                    .iter()
                    .filter(|doc| !present.iter().any(|key| key == doc.name))
                    .map(|doc| snippet_item(text, typed, doc, CompletionItemKind::FIELD))
                    .collect();
                let alias = module_alias(text);
                items.push(item(
                    text,
                    typed,
                    "stage",
                    "s.stage(\"name\", function(req) ... end)",
                    "A Lua stage of this pipeline.",
                    Some(format!(
                        "{alias}.stage(\"${{1:name}}\", function(req)\n\t$0\n\treturn req\nend),"
                    )),
                    CompletionItemKind::SNIPPET,
                ));
                items.push(item(
                    text,
                    typed,
                    "embed stage",
                    "s.stage(\"embed\", s.embed \"service\")",
                    "An embedding stage of this pipeline.",
                    Some(format!(
                        "{alias}.stage(\"${{1:embed}}\", {alias}.embed \"${{2:embedder}}\"),"
                    )),
                    CompletionItemKind::SNIPPET,
                ));
                items
            }
            _ => api_docs::fields(table)
                .iter()
                .filter(|doc| !present.iter().any(|key| key == doc.name))
                .map(|doc| snippet_item(text, typed, doc, CompletionItemKind::FIELD))
                .collect(),
        },
        CursorContext::StringValue {
            table,
            key,
            content,
        } => {
            let closed = api_docs::values(table, key.as_deref());
            if !closed.is_empty() {
                return words(text, content, closed, str::to_owned);
            }
            match (table, key.as_deref()) {
                (TableKind::DependsOn, None) => service_items(
                    workspace,
                    file,
                    text,
                    content,
                    current_service.as_deref(),
                    false,
                ),
                (TableKind::Embed, Some("service" | "fallback")) => {
                    service_items(workspace, file, text, content, None, true)
                }
                (TableKind::Embedding, Some("model")) => models
                    .iter()
                    .map(|model| {
                        let detail = match model.dimensions {
                            Some(dimensions) => format!("model, {dimensions} dimensions"),
                            None => "model".to_owned(),
                        };
                        item(
                            text,
                            content,
                            &model.name,
                            &detail,
                            &model.description,
                            None,
                            CompletionItemKind::VALUE,
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            }
        }
        CursorContext::CallArgument { callee, content } if callee == "embed" => {
            service_items(workspace, file, text, content, None, true)
        }
        CursorContext::CallArgument { .. }
        | CursorContext::OnKey { .. }
        | CursorContext::Nothing => Vec::new(),
    }
}

/// The name the script gave `require("spindle")` (`s` when none is found).
pub fn module_alias(text: &str) -> String {
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("local ") else {
            continue;
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let value = value.trim_start();
        if value.starts_with("require(\"spindle\")")
            || value.starts_with("require \"spindle\"")
            || value.starts_with("require('spindle')")
        {
            return name.trim().to_owned();
        }
    }
    "s".to_owned()
}

fn service_items(
    workspace: &Workspace,
    file: &Path,
    text: &str,
    content: Span,
    except: Option<&str>,
    embedding_only: bool,
) -> Vec<CompletionItem> {
    workspace
        .service_names(file)
        .into_iter()
        .filter(|(name, embedding)| {
            Some(name.as_str()) != except && (*embedding || !embedding_only)
        })
        .map(|(name, embedding)| {
            let detail = if embedding {
                "embedding service"
            } else {
                "service"
            };
            item(
                text,
                content,
                &name,
                detail,
                &format!("Service `{name}` of this graph."),
                None,
                CompletionItemKind::REFERENCE,
            )
        })
        .collect()
}

fn words(
    text: &str,
    typed: Span,
    values: &[ValueDoc],
    snippet: impl Fn(&str) -> String,
) -> Vec<CompletionItem> {
    values
        .iter()
        .enumerate()
        .map(|(idx, value)| {
            let inserted = snippet(value.word);
            let mut completion = item(
                text,
                typed,
                value.word,
                "",
                value.documentation,
                (inserted != value.word).then_some(inserted),
                CompletionItemKind::ENUM_MEMBER,
            );
            // Keep the documented order (the default first).
            completion.sort_text = Some(format!("{idx:02}"));
            completion
        })
        .collect()
}

fn snippet_item(text: &str, typed: Span, doc: &ApiDoc, kind: CompletionItemKind) -> CompletionItem {
    item(
        text,
        typed,
        doc.name,
        doc.detail,
        doc.documentation,
        Some(doc.snippet.to_owned()),
        kind,
    )
}

fn item(
    text: &str,
    replace: Span,
    label: &str,
    detail: &str,
    documentation: &str,
    snippet: Option<String>,
    kind: CompletionItemKind,
) -> CompletionItem {
    let (new_text, format) = match snippet {
        Some(snippet) => (snippet, InsertTextFormat::SNIPPET),
        None => (label.to_owned(), InsertTextFormat::PLAIN_TEXT),
    };
    CompletionItem {
        label: label.to_owned(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then(|| detail.to_owned()),
        documentation: (!documentation.is_empty()).then(|| {
            Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value: documentation.to_owned(),
            })
        }),
        insert_text_format: Some(format),
        filter_text: Some(label.to_owned()),
        text_edit: Some(CompletionTextEdit::Edit(TextEdit {
            range: to_proto::range(text, replace),
            new_text,
        })),
        ..CompletionItem::default()
    }
}
