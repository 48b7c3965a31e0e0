//! Analysis of a script's text for editors: where services, pipelines and
//! stages are declared and named ([`index`]), what a cursor stands in
//! ([`cursor_context`]), and the API's documentation ([`api_docs`]).
//!
//! Mistakes are not found here: they come from evaluation
//! ([`crate::evaluate_with`]), so an editor shows exactly what
//! `spindle check` prints. This module reads text only; it knows no editor,
//! no protocol and no running kernel.

pub mod annotations;
pub mod api_docs;
mod context;
mod index;

pub use context::{CursorContext, ProbeKind, TableKind, cursor_context};
pub use index::{
    Declaration, DeclarationKind, FileIndex, Reference, ReferenceKind, Require, Span, index,
};

use crate::source_map::tokenize;

/// The byte offset of a 1-based line and column (columns count characters,
/// as diagnostics do). Positions past a line's end clamp to its end.
pub fn offset_of(source: &str, line: u32, column: u32) -> usize {
    let mut start = 0usize;
    for _ in 1..line.max(1) {
        match source[start..].find('\n') {
            Some(newline) => start += newline + 1,
            None => return source.len(),
        }
    }
    let line_text = source[start..].split('\n').next().unwrap_or_default();
    let byte = line_text
        .char_indices()
        .nth(column.max(1) as usize - 1)
        .map_or(line_text.len(), |(byte, _)| byte);
    start + byte
}

/// The span of the token that starts at (or holds) byte `offset`, for
/// underlining a diagnostic; an empty span when there is none. Only the
/// offset's line is read (a diagnostic points at the start of a token).
pub fn token_span_at(source: &str, offset: usize) -> Span {
    let offset = offset.min(source.len());
    let line_start = source[..offset]
        .rfind('\n')
        .map_or(0, |newline| newline + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |newline| offset + newline);
    tokenize(&source[line_start..line_end])
        .iter()
        .map(|token| (token.span.start + line_start, token.span.end + line_start))
        .find(|(start, end)| *start <= offset && offset < *end)
        .map_or(
            Span {
                start: offset,
                end: offset,
            },
            |(start, end)| Span { start, end },
        )
}

/// `require("name")` resolved the way evaluation resolves it: `name.lua` or
/// `name/init.lua` in the folder of the requiring script (dots are folders).
pub fn resolve_require(script: &std::path::Path, module: &str) -> Option<std::path::PathBuf> {
    let dir = script.parent()?;
    let relative = module.replace('.', "/");
    [
        dir.join(format!("{relative}.lua")),
        dir.join(&relative).join("init.lua"),
    ]
    .into_iter()
    .find(|candidate| candidate.is_file())
}
