//! The protocol's dispatch: tower-lsp-server calls these methods; each one
//! sends a command to the workspace task, which owns all state, and waits
//! for its answer. Evaluations run on blocking threads (at most
//! [`EVALUATIONS_AT_ONCE`]) and come back to the workspace task as commands;
//! while one root evaluates, further changes to it collapse into one more
//! evaluation of the newest text (that is the debounce: no timer, so the
//! newest text is checked as soon as the previous check ends).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spindle_scripting::{Diagnostic, Evaluation, Severity};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::models::ModelEntry;
use crate::workspace::{FileEntry, RootState, Workspace, scan_folder};
use crate::{completion, diagnostics, hints, hover, live_status, navigation, to_proto};

/// Evaluations that may run at once (each on a blocking thread, each with
/// its own Lua state and memory limit).
pub const EVALUATIONS_AT_ONCE: usize = 2;

/// Most `.lua` files read from the workspace's folders at start.
const SCAN_LIMIT: usize = 5_000;

/// Settings a client may pass as initialization options or in
/// `workspace/didChangeConfiguration` (under `spindle`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// `host:port` of a graph run with `spindle run FILE --http ADDR`, for
    /// live states in hover.
    pub http_address: Option<String>,
}

type Query = Box<dyn FnOnce(&Workspace) + Send>;

/// The texts and versions of the open documents an evaluation read, so that
/// its diagnostics are placed in, and published for, the text they are about.
pub(crate) type Snapshot = std::collections::HashMap<PathBuf, (Arc<str>, i32)>;

/// What the workspace task does: a closed set of changes, plus read-only
/// queries that carry their own reply.
enum Command {
    Folders(Vec<PathBuf>),
    Scanned(Vec<(PathBuf, String)>),
    Open {
        path: PathBuf,
        text: String,
        version: i32,
    },
    Change {
        path: PathBuf,
        changes: Vec<TextDocumentContentChangeEvent>,
        version: i32,
    },
    Close {
        path: PathBuf,
    },
    Evaluated {
        root: PathBuf,
        evaluation: Evaluation,
        /// The open documents' texts and versions that were evaluated.
        snapshot: Snapshot,
    },
    Query(Query),
}

/// The protocol side: cheap to call from many requests at once.
pub struct Backend {
    client: Client,
    commands: mpsc::UnboundedSender<Command>,
    settings: std::sync::Mutex<Settings>,
    /// Whether the client shows markdown in completion documentation and
    /// in hovers (else plain text is sent).
    markdown: std::sync::Mutex<(bool, bool)>,
}

impl Backend {
    pub fn new(client: Client) -> Backend {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_workspace(client.clone(), commands.clone(), receiver));
        Backend {
            client,
            commands,
            settings: std::sync::Mutex::new(Settings::default()),
            markdown: std::sync::Mutex::new((false, false)),
        }
    }

    fn send(&self, command: Command) {
        // The workspace task lives as long as the server.
        let _ = self.commands.send(command);
    }

    /// Runs `query` on the workspace task and returns its answer.
    async fn query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Workspace) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Query(Box::new(move |workspace| {
            let _ = reply.send(query(workspace));
        })));
        answer.await.map_err(|_| Error::internal_error())
    }

    /// Runs `query` on an open document: its path, text and the byte offset
    /// of `position`. A document that is not open is an error response.
    async fn at<T: Send + 'static>(
        &self,
        uri: &Uri,
        position: Option<Position>,
        query: impl FnOnce(&Workspace, &Path, &str, usize) -> T + Send + 'static,
    ) -> Result<T> {
        let path = document_path(uri)?;
        let uri_text = uri.as_str().to_owned();
        self.query(move |workspace| {
            let entry = workspace.open_file(&path)?;
            let text = entry.text.clone();
            let offset = position.map_or(0, |p| to_proto::offset(&text, p));
            Some(query(workspace, &path, &text, offset))
        })
        .await?
        .ok_or_else(|| unknown_document(&uri_text))
    }

    fn settings(&self) -> Settings {
        self.settings
            .lock()
            .map(|settings| settings.clone())
            .unwrap_or_default()
    }

    /// `spindle/graph`: the graph of a document by startup wave, for the
    /// editor's graph view.
    pub async fn graph(&self, params: GraphParams) -> Result<GraphAnswer> {
        let uri = params.uri.clone();
        self.at(&params.uri, None, move |workspace, path, _, _| {
            graph_answer(workspace, path, uri.as_str())
        })
        .await
    }
}

fn document_path(uri: &Uri) -> Result<PathBuf> {
    to_proto::path(uri).ok_or_else(|| {
        Error::invalid_params(format!(
            "{} is not a file: Spindle checks scripts on disk (file:// URIs)",
            uri.as_str()
        ))
    })
}

fn unknown_document(uri: &str) -> Error {
    Error::invalid_params(format!(
        "unknown document {uri}: open it first (textDocument/didOpen)"
    ))
}

/// Parameters of `spindle/graph`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GraphParams {
    pub uri: Uri,
}

/// The answer of `spindle/graph`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphAnswer {
    pub uri: String,
    /// Whether the latest evaluation had errors (then `waves` is empty).
    pub errors: usize,
    pub waves: Vec<Vec<GraphService>>,
    pub pipelines: Vec<GraphPipeline>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphService {
    pub name: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub line: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphPipeline {
    pub name: String,
    pub stages: Vec<String>,
}

fn graph_answer(workspace: &Workspace, path: &Path, uri: &str) -> GraphAnswer {
    let errors = workspace
        .roots_of(path)
        .iter()
        .filter_map(|root| workspace.roots.get(root)?.latest.clone())
        .map(|evaluation| evaluation.errors)
        .sum();
    let Some(graph) = workspace.graph_of(path) else {
        return GraphAnswer {
            uri: uri.to_owned(),
            errors,
            waves: Vec::new(),
            pipelines: Vec::new(),
        };
    };
    GraphAnswer {
        uri: uri.to_owned(),
        errors,
        waves: graph
            .waves()
            .iter()
            .map(|wave| {
                wave.iter()
                    .map(|service| GraphService {
                        name: service.name.to_string(),
                        kind: service.kind.to_owned(),
                        depends_on: service
                            .depends_on
                            .iter()
                            .map(|(name, _)| name.to_string())
                            .collect(),
                        line: service.line,
                    })
                    .collect()
            })
            .collect(),
        pipelines: graph
            .pipelines
            .iter()
            .map(|pipeline| GraphPipeline {
                name: pipeline.name.clone(),
                stages: pipeline.stages.clone(),
            })
            .collect(),
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        if let Some(options) = params.initialization_options
            && let Ok(settings) = serde_json::from_value::<Settings>(options)
            && let Ok(mut current) = self.settings.lock()
        {
            *current = settings;
        }
        if let Some(text_document) = &params.capabilities.text_document
            && let Ok(mut markdown) = self.markdown.lock()
        {
            let supports = |formats: Option<&Vec<MarkupKind>>| {
                formats.is_some_and(|formats| formats.contains(&MarkupKind::Markdown))
            };
            *markdown = (
                supports(
                    text_document
                        .completion
                        .as_ref()
                        .and_then(|c| c.completion_item.as_ref())
                        .and_then(|item| item.documentation_format.as_ref()),
                ),
                supports(
                    text_document
                        .hover
                        .as_ref()
                        .and_then(|hover| hover.content_format.as_ref()),
                ),
            );
        }
        let folders: Vec<PathBuf> = params
            .workspace_folders
            .unwrap_or_default()
            .iter()
            .filter_map(|folder| to_proto::path(&folder.uri))
            .collect();
        self.send(Command::Folders(folders));
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "spindle".to_owned(),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            }),
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::INCREMENTAL,
                )),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![".".into(), "\"".into(), "{".into()]),
                    ..CompletionOptions::default()
                }),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                definition_provider: Some(OneOf::Left(true)),
                references_provider: Some(OneOf::Left(true)),
                rename_provider: Some(OneOf::Right(RenameOptions {
                    prepare_provider: Some(true),
                    work_done_progress_options: WorkDoneProgressOptions::default(),
                })),
                document_symbol_provider: Some(OneOf::Left(true)),
                workspace_symbol_provider: Some(OneOf::Left(true)),
                code_action_provider: Some(CodeActionProviderCapability::Options(
                    CodeActionOptions {
                        code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
                        ..CodeActionOptions::default()
                    },
                )),
                inlay_hint_provider: Some(OneOf::Left(true)),
                ..ServerCapabilities::default()
            },
            ..InitializeResult::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.client
            .log_message(MessageType::INFO, "spindle language server ready")
            .await;
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        let settings = params
            .settings
            .get("spindle")
            .cloned()
            .unwrap_or(params.settings);
        if let Ok(settings) = serde_json::from_value::<Settings>(settings)
            && let Ok(mut current) = self.settings.lock()
        {
            *current = settings;
        }
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        if let Some(path) = to_proto::path(&params.text_document.uri) {
            self.send(Command::Open {
                path,
                text: params.text_document.text,
                version: params.text_document.version,
            });
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        if let Some(path) = to_proto::path(&params.text_document.uri) {
            self.send(Command::Change {
                path,
                changes: params.content_changes,
                version: params.text_document.version,
            });
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        if let Some(path) = to_proto::path(&params.text_document.uri) {
            self.send(Command::Close { path });
        }
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let position = params.text_document_position;
        let items = self
            .at(
                &position.text_document.uri,
                Some(position.position),
                |workspace, path, text, offset| {
                    thread_local! {
                        static MODELS: Vec<ModelEntry> = crate::models::models();
                    }
                    MODELS
                        .with(|models| completion::complete(workspace, models, path, text, offset))
                },
            )
            .await?;
        let markdown = self.markdown.lock().map(|m| m.0).unwrap_or(false);
        let items = items
            .into_iter()
            .map(|mut item| {
                if !markdown
                    && let Some(Documentation::MarkupContent(content)) = item.documentation.take()
                {
                    item.documentation = Some(Documentation::String(content.value));
                }
                item
            })
            .collect();
        Ok(Some(CompletionResponse::Array(items)))
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let position = params.text_document_position_params;
        let planned = self
            .at(
                &position.text_document.uri,
                Some(position.position),
                |workspace, path, text, offset| {
                    hover::plan(workspace, path, text, offset)
                        .map(|plan| (to_proto::range(text, plan.span), plan))
                },
            )
            .await?;
        let Some((range, plan)) = planned else {
            return Ok(None);
        };
        let mut markdown = plan.markdown;
        if let (Some(service), Some(address)) = (&plan.service, self.settings().http_address) {
            let live = live_status::fetch(&address).await;
            markdown.push_str("\n\n");
            markdown.push_str(&hover::live_markdown(service, &live));
        }
        let kind = if self.markdown.lock().map(|m| m.1).unwrap_or(false) {
            MarkupKind::Markdown
        } else {
            MarkupKind::PlainText
        };
        Ok(Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind,
                value: markdown,
            }),
            range: Some(range),
        }))
    }

    async fn goto_definition(
        &self,
        params: GotoDefinitionParams,
    ) -> Result<Option<GotoDefinitionResponse>> {
        let position = params.text_document_position_params;
        let locations = self
            .at(
                &position.text_document.uri,
                Some(position.position),
                |workspace, path, _, offset| navigation::definition(workspace, path, offset),
            )
            .await?;
        Ok((!locations.is_empty()).then_some(GotoDefinitionResponse::Array(locations)))
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let position = params.text_document_position;
        let include = params.context.include_declaration;
        let locations = self
            .at(
                &position.text_document.uri,
                Some(position.position),
                move |workspace, path, _, offset| {
                    navigation::references(workspace, path, offset, include)
                },
            )
            .await?;
        Ok(Some(locations))
    }

    async fn prepare_rename(
        &self,
        params: TextDocumentPositionParams,
    ) -> Result<Option<PrepareRenameResponse>> {
        let prepared = self
            .at(
                &params.text_document.uri,
                Some(params.position),
                |workspace, path, text, offset| {
                    navigation::prepare_rename(workspace, path, offset)
                        .map(|(span, name)| (to_proto::range(text, span), name))
                },
            )
            .await?;
        Ok(prepared.map(
            |(range, placeholder)| PrepareRenameResponse::RangeWithPlaceholder {
                range,
                placeholder,
            },
        ))
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        navigation::check_new_name(&params.new_name).map_err(Error::invalid_params)?;
        let position = params.text_document_position;
        let new_name = params.new_name;
        self.at(
            &position.text_document.uri,
            Some(position.position),
            move |workspace, path, _, offset| {
                navigation::rename(workspace, path, offset, &new_name)
            },
        )
        .await
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let symbols = self
            .at(&params.text_document.uri, None, |workspace, path, _, _| {
                navigation::document_symbols(workspace, path)
            })
            .await?;
        Ok(Some(DocumentSymbolResponse::Nested(symbols)))
    }

    async fn symbol(
        &self,
        params: WorkspaceSymbolParams,
    ) -> Result<Option<WorkspaceSymbolResponse>> {
        let query = params.query;
        let symbols = self
            .query(move |workspace| navigation::workspace_symbols(workspace, &query))
            .await?;
        Ok(Some(WorkspaceSymbolResponse::Nested(symbols)))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri.clone();
        // The document must be open; the fixes travel in the diagnostics.
        self.at(&uri, None, |_, _, _, _| ()).await?;
        let actions = hints::code_actions(&uri, &params.context.diagnostics)
            .into_iter()
            .map(CodeActionOrCommand::CodeAction)
            .collect();
        Ok(Some(actions))
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        let range = params.range;
        let found = self
            .at(
                &params.text_document.uri,
                None,
                move |workspace, path, _, _| hints::inlay_hints(workspace, path, range),
            )
            .await?;
        Ok(Some(found))
    }
}

/// The workspace task: applies changes, starts evaluations, publishes
/// their diagnostics and answers queries, one command at a time.
async fn run_workspace(
    client: Client,
    commands: mpsc::UnboundedSender<Command>,
    mut receiver: mpsc::UnboundedReceiver<Command>,
) {
    let mut workspace = Workspace::default();
    let permits = Arc::new(Semaphore::new(EVALUATIONS_AT_ONCE));
    while let Some(command) = receiver.recv().await {
        match command {
            Command::Folders(folders) => {
                let commands = commands.clone();
                tokio::task::spawn_blocking(move || {
                    let mut found = Vec::new();
                    for folder in folders {
                        found.extend(scan_folder(&folder, SCAN_LIMIT));
                    }
                    let _ = commands.send(Command::Scanned(found));
                });
            }
            Command::Scanned(found) => {
                for (path, text) in found {
                    let path = std::path::absolute(&path).unwrap_or(path);
                    if !workspace.files.get(&path).is_some_and(FileEntry::is_open) {
                        let entry = FileEntry::new(&path, text, None);
                        workspace.files.insert(path, entry);
                    }
                }
                // Open documents may now belong to other roots.
                let open: Vec<PathBuf> = workspace
                    .files
                    .iter()
                    .filter(|(_, entry)| entry.is_open())
                    .map(|(path, _)| path.clone())
                    .collect();
                for path in open {
                    schedule_roots_of(&mut workspace, &path, &commands, &permits);
                }
            }
            Command::Open {
                path,
                text,
                version,
            } => {
                let entry = FileEntry::new(&path, text, Some(version));
                workspace.files.insert(path.clone(), entry);
                schedule_roots_of(&mut workspace, &path, &commands, &permits);
            }
            Command::Change {
                path,
                changes,
                version,
            } => {
                let Some(entry) = workspace.files.get(&path) else {
                    continue;
                };
                let (previous_index, previous_requires) =
                    (entry.index.clone(), entry.requires.clone());
                let mut text = entry.text.to_string();
                for change in changes {
                    match change.range {
                        Some(range) => {
                            let start = to_proto::offset(&text, range.start);
                            let end = to_proto::offset(&text, range.end).max(start);
                            text.replace_range(start..end, &change.text);
                        }
                        None => text = change.text,
                    }
                }
                // The evaluation of the new text starts first, with the
                // previous index standing in; the new index is built while
                // it runs (before its result can be handled: this task does
                // one thing at a time). Only the file's own `require`s could
                // change its roots; if they changed, its roots are scheduled
                // again.
                let text: Arc<str> = Arc::from(text);
                workspace.files.insert(
                    path.clone(),
                    FileEntry {
                        text: text.clone(),
                        index: previous_index,
                        requires: previous_requires.clone(),
                        version: Some(version),
                    },
                );
                schedule_roots_of(&mut workspace, &path, &commands, &permits);
                let entry = FileEntry::indexed(&path, text, Some(version));
                let requires_changed = entry.requires != previous_requires;
                workspace.files.insert(path.clone(), entry);
                if requires_changed {
                    schedule_roots_of(&mut workspace, &path, &commands, &permits);
                }
            }
            Command::Close { path } => {
                let roots = workspace.roots_of(&path);
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let entry = FileEntry::new(&path, text, None);
                        workspace.files.insert(path.clone(), entry);
                    }
                    Err(_) => {
                        workspace.files.remove(&path);
                    }
                }
                // A root nobody has open any more stops being checked.
                for root in roots {
                    let still_open = workspace
                        .closure(&root)
                        .iter()
                        .any(|member| workspace.open_file(member).is_some());
                    if still_open {
                        schedule(&mut workspace, &root, &commands, &permits);
                    } else {
                        workspace.roots.remove(&root);
                        publish(
                            &client,
                            &mut workspace,
                            &root,
                            Default::default(),
                            &Snapshot::new(),
                        )
                        .await;
                    }
                }
            }
            Command::Evaluated {
                root,
                evaluation,
                snapshot,
            } => {
                let by_file = diagnostics::by_file(&workspace, &snapshot, &evaluation.diagnostics);
                let again = {
                    let state = workspace.roots.entry(root.clone()).or_default();
                    state.in_flight = false;
                    state.latest = Some(Arc::new(crate::summary::summarize(&evaluation)));
                    std::mem::take(&mut state.pending)
                };
                if again {
                    // Newer text is waiting: its evaluation publishes.
                    schedule(&mut workspace, &root, &commands, &permits);
                } else {
                    publish(&client, &mut workspace, &root, by_file, &snapshot).await;
                }
            }
            Command::Query(query) => query(&workspace),
        }
    }
}

fn schedule_roots_of(
    workspace: &mut Workspace,
    path: &Path,
    commands: &mpsc::UnboundedSender<Command>,
    permits: &Arc<Semaphore>,
) {
    for root in workspace.roots_of(path) {
        schedule(workspace, &root, commands, permits);
    }
}

/// Evaluates `root` now, or once more after the evaluation in flight.
fn schedule(
    workspace: &mut Workspace,
    root: &Path,
    commands: &mpsc::UnboundedSender<Command>,
    permits: &Arc<Semaphore>,
) {
    let state: &mut RootState = workspace.roots.entry(root.to_path_buf()).or_default();
    if state.in_flight {
        state.pending = true;
        return;
    }
    state.in_flight = true;
    // Both share the documents' texts: a queued evaluation holds pointers.
    let overlay = workspace.overlay_for(root);
    let snapshot: Snapshot = workspace
        .files
        .iter()
        .filter_map(|(path, entry)| Some((path.clone(), (entry.text.clone(), entry.version?))))
        .collect();
    let root = root.to_path_buf();
    let commands = commands.clone();
    let permits = permits.clone();
    tokio::spawn(async move {
        let _permit = permits.acquire_owned().await;
        let evaluated_root = root.clone();
        let sender = commands.clone();
        let finished = tokio::task::spawn_blocking(move || {
            let evaluation = std::panic::catch_unwind(|| {
                spindle_scripting::evaluate_with(&evaluated_root, &overlay)
            })
            .unwrap_or_else(|_| internal_error(&evaluated_root));
            drop(overlay);
            // The result goes out first; giving memory back takes a
            // millisecond or more and nobody waits for it.
            let _ = sender.send(Command::Evaluated {
                root: evaluated_root,
                evaluation,
                snapshot,
            });
            crate::memory::give_back_freed_memory();
        })
        .await;
        if finished.is_err() {
            // Not reached (the evaluation's panics are caught above); if it
            // were, the root would otherwise stay in flight for good.
            let _ = commands.send(Command::Evaluated {
                root: root.clone(),
                evaluation: internal_error(&root),
                snapshot: Snapshot::new(),
            });
        }
    });
}

/// What the server publishes when evaluation itself broke (a bug, not a
/// script's mistake): said where the user looks, with what to do.
fn internal_error(root: &Path) -> Evaluation {
    Evaluation {
        graph: None,
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            file: root.to_path_buf(),
            line: 1,
            column: 1,
            message: "the language server failed while checking this script".to_owned(),
            hint: Some(format!(
                "run `spindle check {}` for the same check on the command line, and report the failure",
                root.display()
            )),
        }],
    }
}

/// Replaces what `root` contributed to each file's diagnostics and
/// publishes every file whose diagnostics changed.
async fn publish(
    client: &Client,
    workspace: &mut Workspace,
    root: &Path,
    mut by_file: std::collections::HashMap<PathBuf, Vec<tower_lsp_server::ls_types::Diagnostic>>,
    snapshot: &Snapshot,
) {
    let mut touched: Vec<PathBuf> = workspace
        .published
        .iter()
        .filter(|(_, roots)| roots.contains_key(root))
        .map(|(file, _)| file.clone())
        .collect();
    for file in by_file.keys() {
        if !touched.contains(file) {
            touched.push(file.clone());
        }
    }
    // Files of the root's graph always get an answer, empty when clean.
    for member in workspace.closure(root) {
        if workspace.open_file(&member).is_some() && !touched.contains(&member) {
            touched.push(member);
        }
    }
    for file in touched {
        let mine = by_file.remove(&file).unwrap_or_default();
        let roots = workspace.published.entry(file.clone()).or_default();
        if mine.is_empty() {
            roots.remove(root);
        } else {
            roots.insert(root.to_path_buf(), mine);
        }
        let mut merged: Vec<tower_lsp_server::ls_types::Diagnostic> = Vec::new();
        let mut sorted_roots: Vec<&PathBuf> = roots.keys().collect();
        sorted_roots.sort();
        for each in sorted_roots {
            for diagnostic in &roots[each] {
                if !merged.contains(diagnostic) {
                    merged.push(diagnostic.clone());
                }
            }
        }
        // The version that was evaluated (or, for a file the evaluation did
        // not read as an open document, the current one).
        let version = snapshot
            .get(&file)
            .map(|(_, version)| *version)
            .or_else(|| workspace.files.get(&file).and_then(|entry| entry.version));
        if let Some(uri) = to_proto::uri(&file) {
            client.publish_diagnostics(uri, merged, version).await;
        }
    }
}
