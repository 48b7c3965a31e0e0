//! `s.up()` and `s.down()` in notebook cells: the services and pipelines
//! declared so far (by the script the kernel started on, and by cells) become
//! the graph the kernel runs, applied as a diff (new services start, changed
//! ones restart, removed ones stop; untouched ones keep running).
//!
//! A declaration repeated in a later cell (a cell run again, edited)
//! replaces the earlier one of the same name rather than being a duplicate.
//! The graph is converted with the same converters and diagnostics as a
//! script; mistakes are the cell's error, with the cell and line. Lua
//! functions the new specs refer to are appended to the host's function
//! table, so the ids of runs in flight keep their meaning; new runs use the
//! new graph, runs in flight finish on theirs.
//!
//! Knows no runtime or wire format: applying the graph is the kernel's,
//! through the cell's `Effects`.

use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use mlua::Lua;

use crate::api::Declarations;
use crate::eval;
use crate::pipeline_run::RunContext;
use crate::sources::Overlay;
use crate::spec::GraphSpec;
use crate::{Diagnostic, Severity};

/// What the notebook machinery keeps about the host, in the Lua state's
/// app data.
#[derive(Default)]
pub(crate) struct NotebookGraph {
    pub(crate) context: Weak<RunContext>,
    /// Each cell's text by its path, so that diagnostics point into cells.
    pub(crate) cells: Overlay,
}

/// The graph `s.up()` applies: every declaration so far, converted. On
/// success the host's graph is replaced (new runs use it).
pub(crate) fn declared_graph(lua: &Lua) -> mlua::Result<GraphSpec> {
    let (context, cells) = {
        let state = lua
            .app_data_ref::<NotebookGraph>()
            .ok_or_else(|| mlua::Error::runtime("s.up works in notebook cells only"))?;
        (state.context.upgrade(), state.cells.clone())
    };
    let context = context.ok_or_else(|| mlua::Error::runtime("the script host is stopping"))?;
    let declarations = {
        let mut declarations = lua
            .app_data_mut::<Declarations>()
            .ok_or_else(|| mlua::Error::runtime("this Lua state records no declarations"))?;
        keep_last_of_each_name(&mut declarations);
        declarations.clone()
    };
    let file = context
        .graph()
        .map_or_else(|| PathBuf::from("notebook.lua"), |graph| graph.file.clone());
    let functions = context.functions.borrow().clone();
    let (evaluation, functions) = eval::convert(&declarations, &file, &cells, functions);
    let Some(graph) = evaluation.graph else {
        return Err(mlua::Error::runtime(describe(&evaluation.diagnostics)));
    };
    // Stages the cells declared are the debugger's too: a breakpoint in
    // one of them binds, and hooks only the coroutines that can reach it.
    if let Ok(mut debugger) = context.debugger.try_borrow_mut() {
        let known = context.functions.borrow().len();
        for function in functions.iter().skip(known) {
            debugger.learn_stage_function(function);
        }
    }
    *context.functions.borrow_mut() = functions;
    *context.graph.borrow_mut() = Some(Rc::new(graph.clone()));
    Ok(graph)
}

/// The graph `s.down()` applies: nothing (every service stopped in reverse
/// order, every pipeline gone); the declarations stay for the next `s.up()`.
pub(crate) fn empty_graph(lua: &Lua) -> mlua::Result<GraphSpec> {
    let context = lua
        .app_data_ref::<NotebookGraph>()
        .and_then(|state| state.context.upgrade())
        .ok_or_else(|| mlua::Error::runtime("s.down works in notebook cells only"))?;
    let file = context
        .graph()
        .map_or_else(|| PathBuf::from("notebook.lua"), |graph| graph.file.clone());
    let graph = GraphSpec {
        file,
        services: Vec::new(),
        pipelines: Vec::new(),
        settings: Default::default(),
    };
    *context.graph.borrow_mut() = Some(Rc::new(graph.clone()));
    Ok(graph)
}

/// Remembers the host and a cell's text before the cell runs.
pub(crate) fn enter_cell(lua: &Lua, context: &Rc<RunContext>, path: &Path, code: &str) {
    if lua.app_data_ref::<NotebookGraph>().is_none() {
        lua.set_app_data(NotebookGraph::default());
    }
    if let Some(mut state) = lua.app_data_mut::<NotebookGraph>() {
        state.context = Rc::downgrade(context);
        state.cells.insert(path, code.to_owned());
    }
    if lua.app_data_ref::<Declarations>().is_none() {
        lua.set_app_data(Declarations::default());
    }
}

/// A later declaration of a name replaces an earlier one (a cell run
/// again).
fn keep_last_of_each_name(declarations: &mut Declarations) {
    let mut seen = std::collections::HashSet::new();
    let mut services = std::mem::take(&mut declarations.services);
    services.reverse();
    services.retain(|decl| seen.insert(decl.name.clone()));
    services.reverse();
    declarations.services = services;
    let mut seen = std::collections::HashSet::new();
    let mut pipelines = std::mem::take(&mut declarations.pipelines);
    pipelines.reverse();
    pipelines.retain(|decl| seen.insert(decl.name.clone()));
    pipelines.reverse();
    declarations.pipelines = pipelines;
}

/// Diagnostics as the cell's error text.
fn describe(diagnostics: &[Diagnostic]) -> String {
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    format!(
        "the declared graph has {} error(s):\n{}",
        errors.len(),
        errors.join("\n")
    )
}
