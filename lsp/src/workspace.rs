//! The language server's state: the texts it knows (open documents and the
//! workspace's other `.lua` files), their indexes, which files form one graph
//! (a root script and the modules it `require`s), and the latest evaluation
//! of each root. One task owns it (`server::run_workspace`); nothing here
//! knows the protocol's transport.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spindle_scripting::Overlay;
use spindle_scripting::analysis::{self, Declaration, DeclarationKind, FileIndex, Span};

use crate::summary::{EvaluationSummary, GraphSummary};

/// One text the server knows. The text is shared with evaluations (their
/// overlay) and with the snapshots that place their diagnostics, never
/// copied for them.
#[derive(Debug, Clone)]
pub struct FileEntry {
    pub text: Arc<str>,
    pub index: Arc<FileIndex>,
    /// The files its `require`s resolve to (those that exist).
    pub requires: Vec<PathBuf>,
    /// The editor's version while the document is open.
    pub version: Option<i32>,
}

impl FileEntry {
    pub fn new(path: &Path, text: String, version: Option<i32>) -> FileEntry {
        FileEntry::indexed(path, Arc::from(text), version)
    }

    /// An entry for `text`, indexed now.
    pub fn indexed(path: &Path, text: Arc<str>, version: Option<i32>) -> FileEntry {
        let index = analysis::index(&text);
        let requires = index
            .requires
            .iter()
            .filter_map(|require| analysis::resolve_require(path, &require.module))
            .map(|file| std::path::absolute(&file).unwrap_or(file))
            .collect();
        FileEntry {
            text,
            index: Arc::new(index),
            requires,
            version,
        }
    }

    pub fn is_open(&self) -> bool {
        self.version.is_some()
    }
}

/// The evaluation state of one root script.
#[derive(Debug, Default)]
pub struct RootState {
    pub in_flight: bool,
    /// A change arrived while an evaluation ran: evaluate again after it.
    pub pending: bool,
    pub latest: Option<Arc<EvaluationSummary>>,
}

/// A name found somewhere: which file, where, and what it is.
#[derive(Debug, Clone)]
pub struct Occurrence {
    pub file: PathBuf,
    pub span: Span,
    pub is_declaration: bool,
}

#[derive(Debug, Default)]
pub struct Workspace {
    pub files: HashMap<PathBuf, FileEntry>,
    pub roots: HashMap<PathBuf, RootState>,
    /// Published diagnostics: file → root that produced them → LSP values.
    pub published: HashMap<PathBuf, HashMap<PathBuf, Vec<tower_lsp_server::ls_types::Diagnostic>>>,
}

impl Workspace {
    pub fn open_file(&self, path: &Path) -> Option<&FileEntry> {
        self.files.get(path).filter(|entry| entry.is_open())
    }

    /// The roots a file is evaluated through: the scripts that (directly or
    /// through other modules) `require` it, or the file itself when none
    /// does.
    pub fn roots_of(&self, file: &Path) -> Vec<PathBuf> {
        let mut roots = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![file.to_path_buf()];
        while let Some(current) = stack.pop() {
            if !seen.insert(current.clone()) {
                continue;
            }
            let requirers: Vec<&PathBuf> = self
                .files
                .iter()
                .filter(|(path, entry)| *path != &current && entry.requires.contains(&current))
                .map(|(path, _)| path)
                .collect();
            if requirers.is_empty() {
                roots.push(current);
            } else {
                stack.extend(requirers.into_iter().cloned());
            }
        }
        roots.sort();
        roots
    }

    /// A root and every file it reaches through `require`.
    pub fn closure(&self, root: &Path) -> Vec<PathBuf> {
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(current) = stack.pop() {
            if seen.contains(&current) {
                continue;
            }
            if let Some(entry) = self.files.get(&current) {
                stack.extend(entry.requires.iter().cloned());
            }
            seen.push(current);
        }
        seen
    }

    /// The files of the graph (or graphs) `file` belongs to.
    pub fn graph_files(&self, file: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Vec::new();
        for root in self.roots_of(file) {
            for member in self.closure(&root) {
                if !files.contains(&member) {
                    files.push(member);
                }
            }
        }
        files
    }

    /// The latest graph evaluated through a root of `file`, if it evaluated
    /// without errors.
    pub fn graph_of(&self, file: &Path) -> Option<&GraphSummary> {
        self.roots_of(file).iter().find_map(|root| {
            self.roots
                .get(root)
                .and_then(|state| state.latest.as_ref())
                .and_then(|evaluation| evaluation.graph.as_ref())
        })
    }

    /// The texts of open documents in the folder tree of `root`, for
    /// evaluating it as the editor shows it (shared, not copied).
    pub fn overlay_for(&self, root: &Path) -> Overlay {
        let mut overlay = Overlay::new();
        let dir = root.parent().unwrap_or(root);
        for (path, entry) in &self.files {
            if entry.is_open() && path.starts_with(dir) {
                overlay.insert(path, entry.text.clone());
            }
        }
        overlay
    }

    /// The declarations named `name` of `kind` in the graph of `file`.
    pub fn declarations(
        &self,
        file: &Path,
        kind: DeclarationKind,
        name: &str,
    ) -> Vec<(PathBuf, Declaration)> {
        let mut found = Vec::new();
        for member in self.graph_files(file) {
            let Some(entry) = self.files.get(&member) else {
                continue;
            };
            for declaration in &entry.index.declarations {
                if declaration.kind == kind && declaration.name == name {
                    found.push((member.clone(), declaration.clone()));
                }
            }
        }
        found
    }

    /// Every declaration of service `name` and every reference to it in the
    /// graph of `file`.
    pub fn service_occurrences(&self, file: &Path, name: &str) -> Vec<Occurrence> {
        let mut found = Vec::new();
        for member in self.graph_files(file) {
            let Some(entry) = self.files.get(&member) else {
                continue;
            };
            for declaration in entry.index.services() {
                if declaration.name == name {
                    found.push(Occurrence {
                        file: member.clone(),
                        span: declaration.name_span,
                        is_declaration: true,
                    });
                }
            }
            for reference in &entry.index.references {
                if reference.name == name {
                    found.push(Occurrence {
                        file: member.clone(),
                        span: reference.span,
                        is_declaration: false,
                    });
                }
            }
        }
        found
    }

    /// Service names declared in the graph of `file`, with whether each is
    /// an embedding service (from its fields).
    pub fn service_names(&self, file: &Path) -> Vec<(String, bool)> {
        let mut names: Vec<(String, bool)> = Vec::new();
        for member in self.graph_files(file) {
            let Some(entry) = self.files.get(&member) else {
                continue;
            };
            for declaration in entry.index.services() {
                if !names.iter().any(|(name, _)| name == &declaration.name) {
                    names.push((
                        declaration.name.clone(),
                        declaration.keys.iter().any(|key| &**key == "embedding"),
                    ));
                }
            }
        }
        names
    }
}

/// The `.lua` files under `folder` (not in hidden, `target` or
/// `node_modules` folders), at most `limit` of them and none over 2 MiB.
pub fn scan_folder(folder: &Path, limit: usize) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    stack.push(path);
                }
            } else if kind.is_file()
                && name.ends_with(".lua")
                && entry.metadata().is_ok_and(|m| m.len() <= 2 * 1024 * 1024)
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                found.push((path, text));
                if found.len() >= limit {
                    return found;
                }
            }
        }
    }
    found
}
