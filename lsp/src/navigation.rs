//! Go to definition, find references and rename for service and pipeline
//! names and `require`d modules; document and workspace symbols. All from
//! the indexes of the files of a graph (a root and its modules).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use spindle_scripting::analysis::{self, Declaration, DeclarationKind, Span};
use tower_lsp_server::ls_types::{
    DocumentSymbol, Location, Range, SymbolKind, TextEdit, Uri, WorkspaceEdit, WorkspaceSymbol,
};

use crate::to_proto;
use crate::workspace::Workspace;

/// What a name at the cursor is.
enum Target {
    Service(String, Span),
    Declared(Declaration),
    Module(PathBuf),
}

fn target(workspace: &Workspace, file: &Path, offset: usize) -> Option<Target> {
    let index = &workspace.files.get(file)?.index;
    if let Some(declaration) = index.declaration_at(offset) {
        return Some(match declaration.kind {
            DeclarationKind::Service => {
                Target::Service(declaration.name.clone(), declaration.name_span)
            }
            _ => Target::Declared(declaration.clone()),
        });
    }
    if let Some(reference) = index.reference_at(offset) {
        return Some(Target::Service(reference.name.clone(), reference.span));
    }
    let require = index.require_at(offset)?;
    let module = analysis::resolve_require(file, &require.module)?;
    Some(Target::Module(
        std::path::absolute(&module).unwrap_or(module),
    ))
}

fn location(workspace: &Workspace, file: &Path, span: Span) -> Option<Location> {
    let entry = workspace.files.get(file)?;
    to_proto::location(file, &entry.text, span)
}

pub fn definition(workspace: &Workspace, file: &Path, offset: usize) -> Vec<Location> {
    match target(workspace, file, offset) {
        Some(Target::Service(name, _)) => workspace
            .declarations(file, DeclarationKind::Service, &name)
            .iter()
            .filter_map(|(path, d)| location(workspace, path, d.name_span))
            .collect(),
        Some(Target::Declared(declaration)) => location(workspace, file, declaration.name_span)
            .into_iter()
            .collect(),
        Some(Target::Module(path)) => to_proto::uri(&path)
            .map(|uri| Location {
                uri,
                range: Range::default(),
            })
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

pub fn references(
    workspace: &Workspace,
    file: &Path,
    offset: usize,
    include_declaration: bool,
) -> Vec<Location> {
    match target(workspace, file, offset) {
        Some(Target::Service(name, _)) => workspace
            .service_occurrences(file, &name)
            .into_iter()
            .filter(|o| include_declaration || !o.is_declaration)
            .filter_map(|o| location(workspace, &o.file, o.span))
            .collect(),
        Some(Target::Declared(declaration)) if include_declaration => {
            location(workspace, file, declaration.name_span)
                .into_iter()
                .collect()
        }
        Some(Target::Module(module)) => {
            // Every `require` that resolves to the same file.
            let mut found = Vec::new();
            for (path, entry) in &workspace.files {
                for require in &entry.index.requires {
                    let resolved = analysis::resolve_require(path, &require.module)
                        .map(|p| std::path::absolute(&p).unwrap_or(p));
                    if resolved.as_ref() == Some(&module)
                        && let Some(location) = to_proto::location(path, &entry.text, require.span)
                    {
                        found.push(location);
                    }
                }
            }
            found
        }
        _ => Vec::new(),
    }
}

/// The span a rename at `offset` would change, if the name there can be
/// renamed.
pub fn prepare_rename(workspace: &Workspace, file: &Path, offset: usize) -> Option<(Span, String)> {
    match target(workspace, file, offset)? {
        Target::Service(name, span) => Some((span, name)),
        Target::Declared(declaration) => Some((declaration.name_span, declaration.name)),
        Target::Module(..) => None,
    }
}

/// Why a new name cannot be used, if it cannot.
pub fn check_new_name(new_name: &str) -> Result<(), String> {
    if new_name.is_empty() {
        return Err("a name cannot be empty".to_owned());
    }
    if new_name.contains(['"', '\'', '\\', '\n']) {
        return Err(format!(
            "`{new_name}` cannot hold quotes, backslashes or line breaks"
        ));
    }
    Ok(())
}

pub fn rename(
    workspace: &Workspace,
    file: &Path,
    offset: usize,
    new_name: &str,
) -> Option<WorkspaceEdit> {
    let mut edits: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    let mut add = |path: &Path, span: Span, text: &str| {
        let Some(entry) = workspace.files.get(path) else {
            return;
        };
        let Some(uri) = to_proto::uri(path) else {
            return;
        };
        edits.entry(uri).or_default().push(TextEdit {
            range: to_proto::range(&entry.text, span),
            new_text: text.to_owned(),
        });
    };
    match target(workspace, file, offset)? {
        Target::Service(name, _) => {
            for occurrence in workspace.service_occurrences(file, &name) {
                // A bare `depends_on` key must stay a Lua name.
                let entry = workspace.files.get(&occurrence.file)?;
                let quoted = occurrence.span.start > 0
                    && matches!(
                        entry.text.as_bytes()[occurrence.span.start - 1],
                        b'"' | b'\''
                    );
                let text = if quoted || is_lua_name(new_name) {
                    new_name.to_owned()
                } else {
                    format!("[\"{new_name}\"]")
                };
                add(&occurrence.file, occurrence.span, &text);
            }
        }
        Target::Declared(declaration) => add(file, declaration.name_span, new_name),
        Target::Module(..) => return None,
    }
    Some(WorkspaceEdit {
        changes: Some(edits),
        ..WorkspaceEdit::default()
    })
}

fn is_lua_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            text,
            "and"
                | "break"
                | "do"
                | "else"
                | "elseif"
                | "end"
                | "false"
                | "for"
                | "function"
                | "goto"
                | "if"
                | "in"
                | "local"
                | "nil"
                | "not"
                | "or"
                | "repeat"
                | "return"
                | "then"
                | "true"
                | "until"
                | "while"
        )
}

fn symbol_kind(kind: DeclarationKind) -> SymbolKind {
    match kind {
        DeclarationKind::Service => SymbolKind::CLASS,
        DeclarationKind::Pipeline => SymbolKind::FUNCTION,
        DeclarationKind::Stage => SymbolKind::METHOD,
    }
}

/// Services and pipelines, with each pipeline's stages as its children.
pub fn document_symbols(workspace: &Workspace, file: &Path) -> Vec<DocumentSymbol> {
    let Some(entry) = workspace.files.get(file) else {
        return Vec::new();
    };
    let text = &entry.text;
    let graph = workspace.graph_of(file);
    let symbol = |declaration: &Declaration, children: Option<Vec<DocumentSymbol>>| {
        let detail = match declaration.kind {
            DeclarationKind::Service => graph
                .and_then(|g| g.service(&declaration.name))
                .map(|s| s.kind.to_owned())
                .or_else(|| Some("service".to_owned())),
            kind => Some(kind.name().to_owned()),
        };
        #[allow(
            deprecated,
            reason = "`deprecated` is a required field of DocumentSymbol"
        )]
        DocumentSymbol {
            name: declaration.name.clone(),
            detail,
            kind: symbol_kind(declaration.kind),
            tags: None,
            deprecated: None,
            range: to_proto::range(text, declaration.full_span),
            selection_range: to_proto::range(text, declaration.name_span),
            children,
        }
    };
    let mut symbols = Vec::new();
    for declaration in &entry.index.declarations {
        match declaration.kind {
            DeclarationKind::Service => symbols.push(symbol(declaration, None)),
            DeclarationKind::Pipeline => {
                let stages: Vec<DocumentSymbol> = entry
                    .index
                    .declarations
                    .iter()
                    .filter(|d| {
                        d.kind == DeclarationKind::Stage
                            && d.container.as_deref() == Some(&declaration.name)
                            && declaration.full_span.contains(d.full_span)
                    })
                    .map(|d| symbol(d, None))
                    .collect();
                symbols.push(symbol(declaration, Some(stages)));
            }
            DeclarationKind::Stage if declaration.container.is_none() => {
                symbols.push(symbol(declaration, None))
            }
            DeclarationKind::Stage => {}
        }
    }
    symbols
}

/// Declarations in every known file whose name contains `query` (case
/// insensitive), services and pipelines first.
pub fn workspace_symbols(workspace: &Workspace, query: &str) -> Vec<WorkspaceSymbol> {
    let query = query.to_lowercase();
    let mut found: Vec<(u8, String, WorkspaceSymbol)> = Vec::new();
    for (path, entry) in &workspace.files {
        let Some(uri) = to_proto::uri(path) else {
            continue;
        };
        for declaration in &entry.index.declarations {
            if !declaration.name.to_lowercase().contains(&query) {
                continue;
            }
            let rank = u8::from(declaration.kind == DeclarationKind::Stage);
            found.push((
                rank,
                declaration.name.clone(),
                WorkspaceSymbol {
                    name: declaration.name.clone(),
                    kind: symbol_kind(declaration.kind),
                    tags: None,
                    container_name: declaration.container.clone(),
                    location: tower_lsp_server::ls_types::OneOf::Left(Location {
                        uri: uri.clone(),
                        range: to_proto::range(&entry.text, declaration.name_span),
                    }),
                    data: None,
                },
            ));
        }
    }
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    found.into_iter().map(|(_, _, symbol)| symbol).collect()
}
