//! Notebook cells on the script host: a cell's code runs in the same Lua
//! state as the script's stages and probes, as a coroutine under the
//! watchdog, so an [`crate::Interrupter`] stops a runaway cell and the
//! state (every global a cell set) stays.
//!
//! A cell is compiled as the Lua REPL does: as an expression first (its
//! value is the result), then with its last lines as a trailing expression,
//! then as statements. Its chunk is named after the path the caller gives
//! (a notebook front end names cells as its debugger expects), so errors and
//! breakpoints name the cell. `print`, `io.write` and `io.stderr:write`
//! inside a cell become [`CellEvent::Stream`]s in batches; `io.read` asks
//! the front end ([`CellEvent::Input`]); `s.display` and friends
//! (`notebook_api`) send rich values as [`Data`]. Outside a cell these
//! functions behave as plain Lua's.
//!
//! Also here: completion and inspection against the live state, and
//! [`cell_completeness`] (complete, incomplete, invalid) from Lua's own
//! parser.
//!
//! Knows no runtime, socket or wire format; the front end renders.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::future::{AbortHandle, Abortable, poll_fn};
use futures::task::LocalSpawnExt;
use futures::{FutureExt, Stream};
use mlua::thread::ThreadStatus;
use mlua::{Function, Lua, MultiValue, Table, Thread, Value};

use crate::budget::Verdict;
use crate::cell_data::{Data, tostring};
use crate::debug::cell_run::CellRun;
use crate::pipeline_run::{Effects, RunContext};
use crate::{eval, notebook_api};

/// A cell to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRequest {
    pub code: String,
    /// The chunk's path: errors, tracebacks and the debugger name it.
    pub path: PathBuf,
    /// `io.read` may ask the front end for input; without, it fails.
    pub allow_stdin: bool,
    /// Expressions evaluated after the cell, by name (Jupyter's
    /// `user_expressions`).
    pub user_expressions: Vec<(String, String)>,
}

/// Output stream of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamName {
    Stdout,
    Stderr,
}

/// Receives a line of input for `io.read` (or why there is none).
pub type InputReply = Box<dyn FnOnce(Result<String, String>) + Send>;

/// What a running cell shows, in order.
pub enum CellEvent {
    /// Text written by `print`, `io.write` or `io.stderr:write`; many
    /// writes in one event.
    Stream { name: StreamName, text: String },
    /// `s.display(value)`; with `update`, replaces the display `display_id`.
    Display {
        value: Data,
        display_id: Option<String>,
        update: bool,
    },
    /// `s.clear_output(wait)`.
    ClearOutput { wait: bool },
    /// `s.help(value)`: plain text for the front end's pager (Jupyter's
    /// `page` payload of the execute reply).
    Page { text: String },
    /// `io.read`: the front end asks its user and answers.
    Input {
        prompt: String,
        password: bool,
        reply: InputReply,
    },
}

impl std::fmt::Debug for CellEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CellEvent::Stream { name, text } => write!(f, "Stream({name:?}, {text:?})"),
            CellEvent::Display {
                value,
                display_id,
                update,
            } => write!(f, "Display({value:?}, {display_id:?}, update={update})"),
            CellEvent::ClearOutput { wait } => write!(f, "ClearOutput(wait={wait})"),
            CellEvent::Page { text } => write!(f, "Page({text:?})"),
            CellEvent::Input { prompt, .. } => write!(f, "Input({prompt:?})"),
        }
    }
}

/// Receives a cell's events, on the host thread: return quickly.
pub type CellOutput = Arc<dyn Fn(CellEvent) + Send + Sync>;

/// How a cell failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellErrorKind {
    /// The code does not parse.
    Syntax,
    /// Lua raised an error.
    Runtime,
    /// The cell was interrupted; the Lua state is kept.
    Interrupted,
    /// The Lua state ran out of its memory limit.
    Memory,
}

/// A failed cell: what, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub kind: CellErrorKind,
    pub message: String,
    /// The chunk the error points at (this cell's path or an earlier
    /// cell's, a module's file), if Lua named one.
    pub file: Option<PathBuf>,
    pub line: u32,
    /// Lua's stack traceback, innermost frame first, without its header.
    pub traceback: Vec<String>,
}

/// How a cell ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CellAnswer {
    /// The values of its trailing expression (empty for statements).
    pub outcome: Result<Vec<Data>, CellError>,
    /// Each user expression's value, in the order asked.
    pub user_expressions: Vec<(String, Result<Data, CellError>)>,
}

/// Receives a cell's answer, on the host thread.
pub type CellReply = Box<dyn FnOnce(CellAnswer) + Send>;

/// Whether code is a whole cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    /// More lines would complete it (an open block, string or call).
    Incomplete,
    /// It cannot parse, whatever follows.
    Invalid,
}

/// Completions at a cursor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub matches: Vec<String>,
    /// The replaced range, in characters of the code.
    pub cursor_start: usize,
    pub cursor_end: usize,
}

/// What inspecting the name at a cursor found.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The name as written (`s.submit`, `x.field`).
    pub name: String,
    /// Plain text: the API documentation of a `spindle` function, or the
    /// value's type and contents.
    pub text: String,
}

/// Work for the notebook side of the host.
pub enum NotebookJob {
    /// Runs a cell; `effects` answer its requests and queries.
    Execute {
        cell: CellRequest,
        effects: Arc<dyn Effects>,
        streams: Arc<CellStreams>,
        reply: CellReply,
    },
    /// Completions at character `cursor` of `code`.
    Complete {
        code: String,
        cursor: usize,
        reply: Box<dyn FnOnce(Completion) + Send>,
    },
    /// The documentation or value of the name at `cursor`.
    Inspect {
        code: String,
        cursor: usize,
        reply: Box<dyn FnOnce(Option<Inspection>) + Send>,
    },
    /// Stops the cell that waits (on a request, a query or input); a cell
    /// that runs Lua is stopped by the `Interrupter`.
    CancelCell,
}

impl std::fmt::Debug for NotebookJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            NotebookJob::Execute { .. } => "Execute",
            NotebookJob::Complete { .. } => "Complete",
            NotebookJob::Inspect { .. } => "Inspect",
            NotebookJob::CancelCell => "CancelCell",
        };
        f.write_str(name)
    }
}

impl NotebookJob {
    /// Answers the job as "the host has stopped" (or there is none).
    pub fn host_gone(self) {
        match self {
            NotebookJob::Execute { reply, .. } => reply(CellAnswer {
                outcome: Err(CellError {
                    kind: CellErrorKind::Runtime,
                    message: "the script host has stopped".to_owned(),
                    file: None,
                    line: 0,
                    traceback: Vec::new(),
                }),
                user_expressions: Vec::new(),
            }),
            NotebookJob::Complete { reply, .. } => reply(Completion::default()),
            NotebookJob::Inspect { reply, .. } => reply(None),
            NotebookJob::CancelCell => {}
        }
    }
}

/// Whether `code` parses as a cell, asked of Lua's parser on a small state
/// of this thread's own (the host may be busy running a cell).
pub fn cell_completeness(code: &str) -> Completeness {
    thread_local! {
        static PARSER: Lua = Lua::new();
    }
    PARSER.with(|lua| {
        let compiles = |text: &str| lua.load(text).set_name("=cell").into_function();
        if code.trim().is_empty() {
            return Completeness::Complete;
        }
        if compiles(&format!("return {code}")).is_ok() {
            return Completeness::Complete;
        }
        match compiles(code) {
            Ok(_) => Completeness::Complete,
            Err(mlua::Error::SyntaxError {
                incomplete_input: true,
                ..
            }) => Completeness::Incomplete,
            Err(_) => Completeness::Invalid,
        }
    })
}

/// How often buffered output is sent while a cell runs without pause.
pub const STREAM_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Buffered output that is sent at once, whatever the time.
const STREAM_FLUSH_BYTES: usize = 64 * 1024;

/// The host thread's notebook state, in the Lua state's app data.
#[derive(Default)]
pub(crate) struct NotebookState {
    /// The cell whose coroutine is being resumed right now.
    pub current: RefCell<Option<Rc<CellState>>>,
    /// The cell in flight, to cancel it while it waits.
    running: RefCell<Option<AbortHandle>>,
    installed: Cell<bool>,
}

/// A cell's output: text written to its streams is buffered and sent in
/// batches, through the cell's [`CellOutput`], in the order it was
/// written relative to the cell's other events. The Lua thread sends a
/// batch when 50 ms have passed since the last one, when 64 KiB built up,
/// and whenever the cell pauses; the front end calls [`CellStreams::flush`]
/// on a timer too, so that text written just before a long computation
/// shows while it runs.
pub struct CellStreams {
    output: CellOutput,
    buffers: std::sync::Mutex<StreamBuffers>,
    /// Whether the cell's Lua runs on the host thread right now (not
    /// waiting on a request, a query or input).
    lua_running: std::sync::atomic::AtomicBool,
}

struct StreamBuffers {
    stdout: String,
    stderr: String,
    last_flush: Instant,
}

impl std::fmt::Debug for CellStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellStreams")
    }
}

impl CellStreams {
    pub fn new(output: CellOutput) -> Arc<CellStreams> {
        Arc::new(CellStreams {
            output,
            buffers: std::sync::Mutex::new(StreamBuffers {
                stdout: String::new(),
                stderr: String::new(),
                last_flush: Instant::now(),
            }),
            lua_running: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the cell's Lua is running right now: an interrupt then
    /// stops it through the `Interrupter`; a cell that waits is stopped by
    /// [`NotebookJob::CancelCell`] instead.
    pub fn lua_running(&self) -> bool {
        self.lua_running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sends what the streams hold (stdout first). Any thread.
    pub fn flush(&self) {
        let mut buffers = self.lock();
        self.flush_locked(&mut buffers);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamBuffers> {
        // Every write to the buffers is complete before a panic could
        // happen in the callback; the text is still whole.
        self.buffers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends under the lock, so that batches keep their order whichever
    /// thread flushes.
    fn flush_locked(&self, buffers: &mut StreamBuffers) {
        buffers.last_flush = Instant::now();
        for (name, text) in [
            (StreamName::Stdout, std::mem::take(&mut buffers.stdout)),
            (StreamName::Stderr, std::mem::take(&mut buffers.stderr)),
        ] {
            if !text.is_empty() {
                (self.output)(CellEvent::Stream { name, text });
            }
        }
    }

    /// Buffers text of a stream; sends it when enough time or text built up.
    pub(crate) fn write(&self, name: StreamName, text: &str) {
        let mut buffers = self.lock();
        let buffer = match name {
            StreamName::Stdout => &mut buffers.stdout,
            StreamName::Stderr => &mut buffers.stderr,
        };
        buffer.push_str(text);
        let size = buffers.stdout.len() + buffers.stderr.len();
        if size >= STREAM_FLUSH_BYTES || buffers.last_flush.elapsed() >= STREAM_FLUSH_INTERVAL {
            self.flush_locked(&mut buffers);
        }
    }

    /// Sends an event after the text written before it.
    pub(crate) fn send(&self, event: CellEvent) {
        let mut buffers = self.lock();
        self.flush_locked(&mut buffers);
        (self.output)(event);
    }
}

/// One running cell, as its Lua functions see it.
pub(crate) struct CellState {
    pub effects: Arc<dyn Effects>,
    pub streams: Arc<CellStreams>,
    pub allow_stdin: bool,
    next_display: Cell<u64>,
}

impl CellState {
    pub fn write(&self, name: StreamName, text: &str) {
        self.streams.write(name, text);
    }

    pub fn flush(&self) {
        self.streams.flush();
    }

    pub fn send(&self, event: CellEvent) {
        self.streams.send(event);
    }

    /// A fresh display id for `s.display(value, { id = true })`.
    pub fn new_display_id(&self) -> String {
        let next = self.next_display.get() + 1;
        self.next_display.set(next);
        format!("spindle-{}-{next}", std::process::id())
    }
}

/// Handles a notebook job on the host thread.
pub(crate) fn handle(context: &Rc<RunContext>, spawner: &impl LocalSpawnExt, job: NotebookJob) {
    if let Err(error) = install(&context.lua) {
        // Only a memory error gets here; the cell reports it.
        if let NotebookJob::Execute { reply, .. } = job {
            reply(CellAnswer {
                outcome: Err(lua_cell_error(&error, Path::new(""))),
                user_expressions: Vec::new(),
            });
        }
        return;
    }
    match job {
        NotebookJob::Execute {
            cell,
            effects,
            streams,
            reply,
        } => {
            crate::notebook_graph::enter_cell(&context.lua, context, &cell.path, &cell.code);
            let state = Rc::new(CellState {
                effects,
                streams,
                allow_stdin: cell.allow_stdin,
                next_display: Cell::new(0),
            });
            let (abort, registration) = AbortHandle::new_pair();
            if let Some(notebook) = context.lua.app_data_ref::<NotebookState>() {
                *notebook.running.borrow_mut() = Some(abort);
            }
            let task_context = context.clone();
            let run =
                AssertUnwindSafe(run_cell(context.clone(), state.clone(), cell)).catch_unwind();
            let task = async move {
                let answer = match Abortable::new(run, registration).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_panic)) => failed(CellErrorKind::Runtime, "a panic inside the host"),
                    Err(_aborted) => failed(CellErrorKind::Interrupted, "interrupted"),
                };
                state.flush();
                if let Some(notebook) = task_context.lua.app_data_ref::<NotebookState>() {
                    notebook.running.borrow_mut().take();
                    notebook.current.borrow_mut().take();
                }
                reply(answer);
            };
            // Fails only while the pool shuts down; the reply is dropped
            // with the task, and the caller sees its reply channel close.
            let _ = spawner.spawn_local(task);
        }
        NotebookJob::Complete {
            code,
            cursor,
            reply,
        } => reply(complete(&context.lua, &code, cursor)),
        NotebookJob::Inspect {
            code,
            cursor,
            reply,
        } => reply(inspect(&context.lua, &code, cursor)),
        NotebookJob::CancelCell => {
            let running = context
                .lua
                .app_data_ref::<NotebookState>()
                .and_then(|notebook| notebook.running.borrow_mut().take());
            if let Some(abort) = running {
                abort.abort();
            }
        }
    }
}

fn failed(kind: CellErrorKind, message: &str) -> CellAnswer {
    CellAnswer {
        outcome: Err(CellError {
            kind,
            message: message.to_owned(),
            file: None,
            line: 0,
            traceback: Vec::new(),
        }),
        user_expressions: Vec::new(),
    }
}

/// Installs the notebook state and the cell-aware `print` and `io`
/// functions, once.
fn install(lua: &Lua) -> mlua::Result<()> {
    if lua
        .app_data_ref::<NotebookState>()
        .is_some_and(|notebook| notebook.installed.get())
    {
        return Ok(());
    }
    lua.set_app_data(NotebookState::default());
    notebook_api::install_streams(lua)?;
    if let Some(notebook) = lua.app_data_ref::<NotebookState>() {
        notebook.installed.set(true);
    }
    Ok(())
}

async fn run_cell(context: Rc<RunContext>, state: Rc<CellState>, cell: CellRequest) -> CellAnswer {
    let lua = &context.lua;
    let name = format!("@{}", cell.path.display());
    let outcome = match compile_cell(lua, &cell.code, &name) {
        Ok(function) => drive(&context, &state, function, &cell.path, true).await,
        Err(error) => Err(lua_cell_error(&error, &cell.path)),
    };
    let outcome = outcome.map(|values| {
        values
            .iter()
            .map(|value| Data::from_lua(lua, value))
            .collect::<Vec<_>>()
    });
    let mut user_expressions = Vec::new();
    if outcome.is_ok() {
        for (name, expression) in &cell.user_expressions {
            let value = match lua
                .load(format!("return {expression}"))
                .set_name("=user_expression")
                .into_function()
            {
                Ok(function) => drive(&context, &state, function, &cell.path, false)
                    .await
                    .map(|values| {
                        values
                            .front()
                            .map(|value| Data::from_lua(lua, value))
                            .unwrap_or(Data::Nil)
                    }),
                Err(error) => Err(lua_cell_error(&error, &cell.path)),
            };
            user_expressions.push((name.clone(), value));
        }
    }
    CellAnswer {
        outcome,
        user_expressions,
    }
}

/// The cell as a function: an expression (`return code`), statements with
/// a trailing expression (`prefix; return last lines`), or statements.
/// Line numbers stay those of the cell: `return ` goes on the same line.
pub(crate) fn compile_cell(lua: &Lua, code: &str, name: &str) -> mlua::Result<Function> {
    let compile = |text: &str| lua.load(text).set_name(name).into_function();
    if let Ok(function) = compile(&format!("return {code}")) {
        return Ok(function);
    }
    let trimmed = code.trim_end();
    let starts: Vec<usize> = std::iter::once(0)
        .chain(trimmed.match_indices('\n').map(|(idx, _)| idx + 1))
        .collect();
    // The last statement usually is the last line, or a few: try those.
    for &start in starts.iter().rev().take(8) {
        if start == 0 {
            break;
        }
        let (prefix, suffix) = trimmed.split_at(start);
        if suffix.trim().is_empty() {
            continue;
        }
        if let Ok(function) = compile(&format!("{prefix}return {suffix}")) {
            return Ok(function);
        }
    }
    compile(code)
}

/// Resumes the cell's coroutine until it ends, under the watchdog (no
/// deadline: only an interrupt stops it), with the cell current while its
/// Lua runs. A plain `coroutine.yield()` in the cell is ignored. With
/// `debuggable` and a debugger attached, the cell stops at breakpoints
/// (`debug::cell_run`).
async fn drive(
    context: &RunContext,
    state: &Rc<CellState>,
    function: Function,
    path: &Path,
    debuggable: bool,
) -> Result<MultiValue, CellError> {
    let lua = &context.lua;
    let thread = lua
        .create_thread(function.clone())
        .map_err(|error| lua_cell_error(&error, path))?;
    let debugging = debuggable
        .then(|| CellRun::start(context, &thread, &function, path))
        .flatten();
    let tag = debugging.as_ref().map_or(0, CellRun::id);
    let mut stream = thread
        .clone()
        .into_async::<MultiValue>(())
        .map_err(|error| lua_cell_error(&error, path))?;
    loop {
        let (item, verdict) = poll_fn(|cx| {
            set_current(lua, Some(state.clone()));
            let running = &state.streams.lua_running;
            running.store(true, std::sync::atomic::Ordering::SeqCst);
            let guard = context.watchdog.enter(&thread, None, tag);
            let poll = Pin::new(&mut stream).poll_next(cx);
            let verdict = guard.leave();
            running.store(false, std::sync::atomic::Ordering::SeqCst);
            set_current(lua, None);
            state.flush();
            match (poll, verdict) {
                (Poll::Ready(item), verdict) => Poll::Ready((item, verdict)),
                (Poll::Pending, Some(verdict)) => Poll::Ready((None, Some(verdict))),
                (Poll::Pending, None) => Poll::Pending,
            }
        })
        .await;
        if let Some(Verdict::Interrupted | Verdict::Budget) = verdict {
            thread.remove_hook();
            let line = item
                .and_then(Result::err)
                .map(|error| lua_cell_error(&error, path).line)
                .unwrap_or(0);
            return Err(CellError {
                kind: CellErrorKind::Interrupted,
                message: "interrupted; the Lua state and its globals are kept".to_owned(),
                file: Some(path.to_path_buf()),
                line,
                traceback: Vec::new(),
            });
        }
        match item {
            Some(Ok(values)) => {
                if thread.status() != ThreadStatus::Resumable {
                    return Ok(values);
                }
                if let Some(debugging) = &debugging {
                    debugging.after_yield().await;
                }
            }
            Some(Err(error)) => {
                let mut cell_error = lua_cell_error(&error, path);
                cell_error.traceback = traceback(context, &thread);
                return Err(cell_error);
            }
            None => return Ok(MultiValue::new()),
        }
    }
}

fn set_current(lua: &Lua, cell: Option<Rc<CellState>>) {
    if let Some(notebook) = lua.app_data_ref::<NotebookState>() {
        *notebook.current.borrow_mut() = cell;
    }
}

/// The failed coroutine's frames, innermost first, without the host's own.
fn traceback(context: &RunContext, thread: &Thread) -> Vec<String> {
    let Ok(traceback) = context.debug.get::<Function>("traceback") else {
        return Vec::new();
    };
    let Ok(text) = traceback.call::<String>((thread.clone(), Value::Nil, 0)) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty() && !line.starts_with("[C]"))
        .collect()
}

/// A Lua error as a cell error, with the position Lua names.
pub(crate) fn lua_cell_error(error: &mlua::Error, path: &Path) -> CellError {
    let kind = match error {
        mlua::Error::SyntaxError { .. } => CellErrorKind::Syntax,
        mlua::Error::MemoryError(_) => CellErrorKind::Memory,
        _ => CellErrorKind::Runtime,
    };
    let diagnostic = eval::lua_error_diagnostic(error, path);
    let file = (!diagnostic.file.as_os_str().is_empty()).then_some(diagnostic.file);
    let mut message = diagnostic.message;
    if kind == CellErrorKind::Runtime
        && let Some((first, _)) = message.split_once("\nstack traceback:")
    {
        message = first.to_owned();
    }
    CellError {
        kind,
        message,
        file,
        line: diagnostic.line,
        traceback: Vec::new(),
    }
}

const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// The dotted name that ends at character `cursor` (`s.sub` of
/// `print(s.sub|`).
fn name_before(code: &str, cursor: usize) -> (usize, String) {
    let chars: Vec<char> = code.chars().take(cursor).collect();
    let is_name = |c: char| c.is_alphanumeric() || c == '_' || c == '.' || c == ':';
    let mut start = chars.len();
    while start > 0 && is_name(chars[start - 1]) {
        start -= 1;
    }
    (start, chars[start..].iter().collect())
}

/// `require("spindle").sub` names the module by its `require`: the
/// dotted name that `name_before` found after a `)` gets the module's path
/// in front when the code before it is such a call.
fn with_required_module(code: &str, start: usize, name: String) -> String {
    if !name.starts_with(['.', ':']) {
        return name;
    }
    let before: String = code.chars().take(start).collect();
    let before = before.trim_end();
    let forms = [
        "require(\"spindle\")",
        "require('spindle')",
        "require \"spindle\"",
        "require 'spindle'",
    ];
    if forms.iter().any(|form| before.ends_with(form)) {
        format!("package.loaded.spindle{name}")
    } else {
        name
    }
}

/// Resolves `a.b.c` through the globals (tables, and a value's `__index`
/// table), `None` where a part is not there.
fn resolve(lua: &Lua, path: &[&str]) -> Option<Value> {
    let mut value = Value::Table(lua.globals());
    for part in path {
        value = match &value {
            Value::Table(table) => match table.get::<Value>(*part).ok()? {
                Value::Nil => return None,
                found => found,
            },
            other => match index_table(lua, other)?.get::<Value>(*part).ok()? {
                Value::Nil => return None,
                found => found,
            },
        };
    }
    Some(value)
}

/// The table behind a value's `__index` (strings: the `string` library).
fn index_table(lua: &Lua, value: &Value) -> Option<Table> {
    match value {
        Value::String(_) => lua.globals().get::<Table>("string").ok(),
        Value::Table(table) => table.metatable()?.raw_get::<Table>("__index").ok(),
        Value::UserData(data) => data.metatable().ok()?.get::<Table>("__index").ok(),
        _ => None,
    }
}

fn complete(lua: &Lua, code: &str, cursor: usize) -> Completion {
    let (start, name) = name_before(code, cursor);
    let name = with_required_module(code, start, name);
    let split = name.rfind(['.', ':']);
    let (base, partial, method) = match split {
        Some(idx) => (&name[..idx], &name[idx + 1..], name[idx..].starts_with(':')),
        None => ("", name.as_str(), false),
    };
    let mut candidates: Vec<String> = Vec::new();
    let mut add_keys = |table: &Table, functions_only: bool| {
        for pair in table.pairs::<Value, Value>() {
            let Ok((Value::String(key), value)) = pair else {
                continue;
            };
            if functions_only && !matches!(value, Value::Function(_)) {
                continue;
            }
            let key = key.to_string_lossy();
            if key.starts_with(partial) && !key.starts_with("__") {
                candidates.push(key);
            }
        }
    };
    if base.is_empty() && split.is_none() {
        add_keys(&lua.globals(), false);
        candidates.extend(
            KEYWORDS
                .iter()
                .filter(|keyword| keyword.starts_with(partial))
                .map(|keyword| (*keyword).to_owned()),
        );
    } else if let Some(value) = resolve(lua, &base.split(['.', ':']).collect::<Vec<_>>()) {
        if let Value::Table(table) = &value {
            add_keys(table, method);
        }
        if let Some(index) = index_table(lua, &value) {
            add_keys(&index, method);
        }
    }
    candidates.sort();
    candidates.dedup();
    let partial_chars = partial.chars().count();
    Completion {
        matches: candidates,
        cursor_start: cursor.min(code.chars().count()) - partial_chars,
        cursor_end: cursor,
    }
}

fn inspect(lua: &Lua, code: &str, cursor: usize) -> Option<Inspection> {
    // The whole name under the cursor: its start, then on to its end.
    let (start, _) = name_before(code, cursor);
    let name: String = code
        .chars()
        .skip(start)
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == ':')
        .collect();
    let name = name.trim_end_matches(['.', ':']).to_owned();
    if name.trim_start_matches(['.', ':']).is_empty() {
        return None;
    }
    let written = name.clone();
    let name = with_required_module(code, start, name);
    let parts: Vec<&str> = name.split(['.', ':']).collect();
    let value = resolve(lua, &parts)?;
    let module_function = parts.len() >= 2
        && spindle_module(lua).is_some_and(|module| {
            matches!(resolve(lua, &parts[..parts.len() - 1]),
                Some(Value::Table(parent)) if parent.to_pointer() == module.to_pointer())
        });
    let documented = parts
        .last()
        .filter(|_| module_function)
        .and_then(|last| crate::analysis::annotations::function_documentation(last));
    Some(Inspection {
        name: written,
        text: documented.unwrap_or_else(|| describe(lua, &value)),
    })
}

/// What `s.help(value)` pages: a `spindle` function's documentation, the
/// module's function list, or the value described as inspection does. A
/// string is a name: of a `spindle` function (`"submit"`, `"s.submit"`) or
/// of a global (`"config.limits"`); an error says when it names nothing.
pub(crate) fn help_text(lua: &Lua, value: &Value) -> Result<String, String> {
    if let Value::String(name) = value {
        let name = name.to_string_lossy();
        let bare = name
            .strip_prefix("s.")
            .or_else(|| name.strip_prefix("spindle."))
            .unwrap_or(&name);
        if let Some(doc) = crate::analysis::annotations::function_documentation(bare) {
            return Ok(doc);
        }
        return match resolve(lua, &name.split(['.', ':']).collect::<Vec<_>>()) {
            Some(found @ Value::String(_)) => Ok(describe(lua, &found)),
            Some(found) => help_text(lua, &found),
            None => Err(format!(
                "\"{name}\" names no spindle function and no global; pass the value itself (s.help(x)) or a name such as \"submit\""
            )),
        };
    }
    let module = spindle_module(lua);
    let module_name = |value: &Value| -> Option<String> {
        let module = module.as_ref()?;
        module
            .pairs::<Value, Value>()
            .flatten()
            .find_map(|(key, entry)| match (key, &entry) {
                (Value::String(key), Value::Function(_))
                    if entry.to_pointer() == value.to_pointer() =>
                {
                    Some(key.to_string_lossy())
                }
                _ => None,
            })
    };
    let documented = match value {
        Value::Nil => Some(module_overview()),
        Value::Table(table)
            if module.as_ref().map(Table::to_pointer) == Some(table.to_pointer()) =>
        {
            Some(module_overview())
        }
        Value::Function(_) => module_name(value)
            .and_then(|name| crate::analysis::annotations::function_documentation(&name)),
        _ => None,
    };
    Ok(documented.unwrap_or_else(|| describe(lua, value)))
}

/// Every `spindle` function with the first line of its documentation.
fn module_overview() -> String {
    let mut text = String::from(
        "The `spindle` module (s = require(\"spindle\")); s.help(s.NAME) pages one function.\n\n",
    );
    for function in crate::analysis::annotations::module_functions() {
        let summary = function
            .documentation
            .lines()
            .find(|line| !line.starts_with('@'))
            .unwrap_or_default();
        text.push_str(&format!("s.{}\n    {summary}\n", function.signature));
    }
    text
}

/// A value as inspection shows it: its type and contents, or where a
/// function was defined.
fn describe(lua: &Lua, value: &Value) -> String {
    match value {
        Value::Table(table)
            if spindle_module(lua).map(|module| module.to_pointer()) == Some(table.to_pointer()) =>
        {
            "the `spindle` module: require(\"spindle\"); s.help() lists its functions; see docs/guide.md".to_owned()
        }
        Value::Table(_) => {
            let data = Data::from_lua(lua, value);
            format!("table: {}", describe_table(&data))
        }
        Value::Function(function) => {
            let info = function.info();
            match (info.source, info.line_defined) {
                (Some(source), Some(line)) if source.starts_with('@') => {
                    format!("function defined at {}:{line}", &source[1..])
                }
                _ => "function (built in)".to_owned(),
            }
        }
        other => format!("{}: {}", other.type_name(), tostring(lua, other)),
    }
}

fn spindle_module(lua: &Lua) -> Option<Table> {
    let package: Table = lua.globals().get("package").ok()?;
    let loaded: Table = package.get("loaded").ok()?;
    loaded.get::<Table>("spindle").ok()
}

fn describe_table(data: &Data) -> String {
    let Data::Table { entries, .. } = data else {
        return String::new();
    };
    let shown: Vec<String> = entries
        .iter()
        .take(12)
        .map(|(key, value)| match key {
            Data::String(name) if is_identifier(name) => format!("{name} = {}", short(value)),
            other => format!("[{}] = {}", short(other), short(value)),
        })
        .collect();
    let more = if entries.len() > 12 {
        format!(", … ({} entries)", entries.len())
    } else {
        String::new()
    };
    format!("{{ {}{more} }}", shown.join(", "))
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&text)
}

fn short(data: &Data) -> String {
    match data {
        Data::Nil => "nil".to_owned(),
        Data::Boolean(flag) => flag.to_string(),
        Data::Integer(number) => number.to_string(),
        Data::Number(number) => number.to_string(),
        Data::String(text) => format!("{text:?}"),
        Data::Vector(values) => format!("vector({})", values.len()),
        Data::Table { .. } => "{…}".to_owned(),
        Data::Opaque(text) => text.clone(),
    }
}
