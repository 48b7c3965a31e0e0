//! Where evaluation reads script text from: the file system, or texts an
//! editor holds that are not saved yet.
//!
//! An [`Overlay`] maps absolute paths to texts. Evaluation reads the script,
//! every `require`d module next to it, and the source positions of its
//! diagnostics through it, so a language server checks exactly what the
//! editor shows and `spindle check` (with an empty overlay) checks exactly
//! what is on disk, with the same code. This module knows no editor and no
//! protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlua::{Lua, Value};

/// Texts that stand in for files. Paths are absolute. Texts are shared, not
/// copied: cloning an overlay (evaluation does, for `require` and for
/// positions) costs a map of pointers, and a caller that keeps its texts in
/// `Arc<str>` lends them without a copy.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    texts: HashMap<PathBuf, Arc<str>>,
}

impl Overlay {
    pub fn new() -> Overlay {
        Overlay::default()
    }

    /// Makes `text` stand in for the file at `path` (a `String` or a
    /// shared `Arc<str>`).
    pub fn insert(&mut self, path: &Path, text: impl Into<Arc<str>>) {
        self.texts.insert(absolute(path), text.into());
    }

    pub fn remove(&mut self, path: &Path) {
        self.texts.remove(&absolute(path));
    }

    pub fn get(&self, path: &Path) -> Option<&str> {
        self.texts.get(&absolute(path)).map(|text| &**text)
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The overlay's text for `path` as bytes, else the file's (which need
    /// not be UTF-8: Lua reads bytes).
    pub fn read_bytes(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        match self.get(path) {
            Some(text) => Ok(text.as_bytes().to_vec()),
            None => std::fs::read(path),
        }
    }

    /// The overlay's text for `path`, else the file's.
    pub fn read(&self, path: &Path) -> std::io::Result<String> {
        match self.get(path) {
            Some(text) => Ok(text.to_owned()),
            None => std::fs::read_to_string(path),
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Puts a searcher before Lua's own file searcher that loads a module from
/// the overlay when the overlay holds the file `package.path` resolves to.
/// Chunks keep the `@<path>` name a file would get, so positions and
/// breakpoints are the same either way. Does nothing for an empty overlay.
pub(crate) fn install_searcher(lua: &Lua, overlay: &Overlay) -> mlua::Result<()> {
    if overlay.is_empty() {
        return Ok(());
    }
    let texts = overlay.texts.clone();
    let searcher = lua.create_function(move |lua, name: String| {
        let package: mlua::Table = lua.globals().get("package")?;
        let searchpath: mlua::Function = package.get("searchpath")?;
        let path: String = package.get("path")?;
        // `searchpath` finds files on disk; a module only the editor holds
        // is looked up by the same templates.
        let candidates: Vec<PathBuf> = path
            .split(';')
            .map(|template| PathBuf::from(template.replace('?', &name.replace('.', "/"))))
            .collect();
        let found = candidates
            .into_iter()
            .find(|candidate| texts.contains_key(&absolute(candidate)))
            .or_else(|| {
                searchpath
                    .call::<Option<String>>((name.as_str(), path.as_str()))
                    .ok()
                    .flatten()
                    .map(PathBuf::from)
                    .filter(|file| texts.contains_key(&absolute(file)))
            });
        let Some(file) = found else {
            return Ok((
                Value::String(lua.create_string("\n\tno open editor text for this module")?),
                Value::Nil,
            ));
        };
        let text = &texts[&absolute(&file)];
        // The same message Lua's file searcher gives for a syntax error.
        let chunk = lua
            .load(text.as_bytes())
            .set_name(format!("@{}", file.display()))
            .into_function()
            .map_err(|error| {
                let message = match &error {
                    mlua::Error::SyntaxError { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                mlua::Error::runtime(format!(
                    "error loading module '{name}' from file '{}':\n\t{message}",
                    file.display()
                ))
            })?;
        Ok((
            Value::Function(chunk),
            Value::String(lua.create_string(file.display().to_string())?),
        ))
    })?;
    let package: mlua::Table = lua.globals().get("package")?;
    let searchers: mlua::Table = package.get("searchers")?;
    // Position 2 is Lua's file searcher; position 1 the preload table.
    let table_insert: mlua::Function = lua.globals().get::<mlua::Table>("table")?.get("insert")?;
    table_insert.call::<()>((searchers, 2, searcher))?;
    Ok(())
}
