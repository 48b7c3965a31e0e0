//! Conversions between Spindle's positions and LSP's: byte offsets and
//! 1-based character columns on one side, 0-based lines and UTF-16 columns
//! on the other; paths and URIs; diagnostics. Small free functions, no state.

use std::path::{Path, PathBuf};

use spindle_scripting::analysis::{self, Span};
use spindle_scripting::{Diagnostic, Severity};
use tower_lsp_server::ls_types::{
    self as lsp, DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString,
    Position, Range, Uri,
};

/// The byte offset of an LSP position (UTF-16 column); positions past a
/// line's end clamp to its end.
pub fn offset(text: &str, position: Position) -> usize {
    let mut start = 0usize;
    for _ in 0..position.line {
        match text[start..].find('\n') {
            Some(newline) => start += newline + 1,
            None => return text.len(),
        }
    }
    let line = text[start..].split('\n').next().unwrap_or_default();
    let mut units = 0u32;
    for (byte, character) in line.char_indices() {
        if units >= position.character {
            return start + byte;
        }
        units += character.len_utf16() as u32;
    }
    start + line.len()
}

/// The LSP position of a byte offset.
pub fn position(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let character = text[line_start..offset]
        .chars()
        .map(|c| c.len_utf16() as u32)
        .sum();
    Position { line, character }
}

pub fn range(text: &str, span: Span) -> Range {
    Range {
        start: position(text, span.start),
        end: position(text, span.end),
    }
}

pub fn uri(path: &Path) -> Option<Uri> {
    Uri::from_file_path(path)
}

pub fn path(uri: &Uri) -> Option<PathBuf> {
    uri.to_file_path().map(|path| path.into_owned())
}

pub fn location(path: &Path, text: &str, span: Span) -> Option<Location> {
    Some(Location {
        uri: uri(path)?,
        range: range(text, span),
    })
}

/// The span a diagnostic at a 1-based line and column underlines: the
/// token that starts there.
pub fn diagnostic_span(text: &str, line: u32, column: u32) -> Span {
    let offset = analysis::offset_of(text, line, column);
    analysis::token_span_at(text, offset)
}

/// A diagnostic as LSP shows it: the same message and hint `spindle check`
/// prints (`message`, then `hint: ...` on the next line), the underlined
/// token, related places, and the did-you-mean fix as `data` for the code
/// action.
pub fn diagnostic(
    text: &str,
    diagnostic: &Diagnostic,
    related: Vec<DiagnosticRelatedInformation>,
) -> lsp::Diagnostic {
    let span = diagnostic_span(text, diagnostic.line, diagnostic.column);
    let message = match &diagnostic.hint {
        Some(hint) => format!("{}\nhint: {hint}", diagnostic.message),
        None => diagnostic.message.clone(),
    };
    let fix = diagnostic
        .hint
        .as_deref()
        .and_then(suggestion)
        .map(|word| replacement(&text[span.start..span.end], word));
    lsp::Diagnostic {
        range: range(text, span),
        severity: Some(match diagnostic.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: None::<NumberOrString>,
        code_description: None,
        source: Some("spindle".to_owned()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: None,
        data: fix.map(|new_text| serde_json::json!({ "replacement": new_text })),
    }
}

/// The word of a hint "did you mean `word`?" or "did you mean \"word\"?".
pub fn suggestion(hint: &str) -> Option<&str> {
    let rest = hint.strip_prefix("did you mean ")?;
    let quote = rest.chars().next()?;
    if quote != '`' && quote != '"' {
        return None;
    }
    let inner = &rest[1..];
    let end = inner.find(quote)?;
    Some(&inner[..end])
}

/// What replaces the underlined token: the word, in the token's own quotes
/// when the token is a string.
fn replacement(token: &str, word: &str) -> String {
    match token.chars().next() {
        Some(quote @ ('"' | '\'')) => format!("{quote}{word}{quote}"),
        _ => word.to_owned(),
    }
}
