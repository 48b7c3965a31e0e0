//! Where a script names things: the declarations of services, pipelines and
//! stages, every reference to a service by name (`depends_on`, `s.embed`,
//! embed fallbacks) and every `require`d module, with byte spans.
//!
//! This reads tokens only (the tokenizer of `source_map`); it never runs the
//! script, so it works on a script that does not evaluate (a syntax error
//! half-way, a loop that never ends). What the names mean (kinds, waves,
//! mistakes) comes from evaluation.

use std::collections::HashMap;
use std::sync::Arc;

use crate::source_map::{Token, TokenKind, tokenize};

/// A byte range in a script's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// Whether `offset` is inside the span or just past its end (where a
    /// cursor after the last character stands).
    pub fn touches(&self, offset: usize) -> bool {
        self.start <= offset && offset <= self.end
    }

    pub fn contains(&self, other: Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeclarationKind {
    Service,
    Pipeline,
    Stage,
}

impl DeclarationKind {
    pub fn name(self) -> &'static str {
        match self {
            DeclarationKind::Service => "service",
            DeclarationKind::Pipeline => "pipeline",
            DeclarationKind::Stage => "stage",
        }
    }
}

/// `s.service "name" { ... }`, `s.pipeline "name" { ... }` or
/// `s.stage("name", ...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub kind: DeclarationKind,
    pub name: String,
    /// The name inside its quotes.
    pub name_span: Span,
    /// From the module name (`s`) to the end of the declaration's table or
    /// argument list.
    pub full_span: Span,
    /// The pipeline a stage belongs to.
    pub container: Option<String>,
    /// The field names written at the top of the declaration's table
    /// (`command`, `embedding`, ...), in order. Shared: one list per
    /// distinct list of names in a file, one text per distinct name (a
    /// large script repeats a few such lists hundreds of times).
    pub keys: Arc<[Arc<str>]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    /// A key or entry of `depends_on`.
    DependsOn,
    /// `s.embed "name"` or `service = "name"` of `s.embed { ... }`.
    Embed,
    /// `fallback = "name"` of `s.embed { ... }`.
    EmbedFallback,
}

/// A service named by another declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: ReferenceKind,
    pub name: String,
    /// The name itself: inside its quotes, or the bare key of
    /// `depends_on = { db = "healthy" }`.
    pub span: Span,
    /// The service (for `depends_on`) or pipeline (for embeds) that refers.
    pub container: Option<String>,
}

/// `require("name")` or `require "name"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Require {
    pub module: String,
    /// The module name inside its quotes.
    pub span: Span,
}

/// Everything [`index`] found in one text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileIndex {
    pub declarations: Vec<Declaration>,
    pub references: Vec<Reference>,
    pub requires: Vec<Require>,
}

impl FileIndex {
    /// The declaration whose name is at `offset`.
    pub fn declaration_at(&self, offset: usize) -> Option<&Declaration> {
        self.declarations
            .iter()
            .find(|declaration| declaration.name_span.touches(offset))
    }

    pub fn reference_at(&self, offset: usize) -> Option<&Reference> {
        self.references
            .iter()
            .find(|reference| reference.span.touches(offset))
    }

    pub fn require_at(&self, offset: usize) -> Option<&Require> {
        self.requires
            .iter()
            .find(|require| require.span.touches(offset))
    }

    pub fn services(&self) -> impl Iterator<Item = &Declaration> {
        self.declarations
            .iter()
            .filter(|declaration| declaration.kind == DeclarationKind::Service)
    }
}

/// Reads the declarations, references and requires of a script's text.
pub fn index(source: &str) -> FileIndex {
    let tokens = tokenize(source);
    let mut indexer = Indexer {
        source,
        tokens: &tokens,
        found: FileIndex::default(),
        key_texts: HashMap::new(),
        key_lists: HashMap::new(),
    };
    indexer.run();
    let mut found = indexer.found;
    // A stage belongs to the pipeline whose table holds it.
    let pipelines: Vec<(String, Span)> = found
        .declarations
        .iter()
        .filter(|d| d.kind == DeclarationKind::Pipeline)
        .map(|d| (d.name.clone(), d.full_span))
        .collect();
    for declaration in &mut found.declarations {
        if declaration.kind == DeclarationKind::Stage {
            declaration.container = pipelines
                .iter()
                .filter(|(_, span)| span.contains(declaration.full_span))
                .min_by_key(|(_, span)| span.end - span.start)
                .map(|(name, _)| name.clone());
        }
    }
    for reference in &mut found.references {
        if reference.container.is_none() {
            reference.container = pipelines
                .iter()
                .filter(|(_, span)| span.contains(reference.span))
                .min_by_key(|(_, span)| span.end - span.start)
                .map(|(name, _)| name.clone());
        }
    }
    // A language server holds one index per known file: no spare capacity.
    found.declarations.shrink_to_fit();
    found.references.shrink_to_fit();
    found.requires.shrink_to_fit();
    found
}

/// The text of a string token without its quotes or long brackets, and
/// where that text is.
pub(crate) fn string_content(source: &str, token: &Token) -> Option<(String, Span)> {
    if token.kind != TokenKind::Str {
        return None;
    }
    let raw = &source[token.span.clone()];
    let (open, close) = if raw.starts_with('"') || raw.starts_with('\'') {
        let quote = &raw[..1];
        let closed = raw.len() >= 2 && raw.ends_with(quote);
        (1, if closed { 1 } else { 0 })
    } else {
        // `[[...]]` or `[==[...]==]`.
        let level = raw[1..].bytes().take_while(|b| *b == b'=').count();
        let closing = format!("]{}]", "=".repeat(level));
        let close = if raw.len() >= 2 * (level + 2) && raw.ends_with(&closing) {
            level + 2
        } else {
            0
        };
        (level + 2, close)
    };
    if raw.len() < open + close {
        return None;
    }
    let start = token.span.start + open;
    let end = token.span.end - close;
    Some((source[start..end].to_owned(), Span { start, end }))
}

pub(crate) fn token_span(token: &Token) -> Span {
    Span {
        start: token.span.start,
        end: token.span.end,
    }
}

/// One field of a table constructor, by token indexes.
struct Field {
    key: FieldKey,
    /// The first and one past the last token of the value.
    value: std::ops::Range<usize>,
}

enum FieldKey {
    /// `name = value`.
    Named(String, Span),
    /// `["name"] = value`.
    Bracketed(String, Span),
    Positional,
}

struct Indexer<'a> {
    source: &'a str,
    tokens: &'a [Token],
    found: FileIndex,
    /// The shared text of each field name seen so far.
    key_texts: HashMap<String, Arc<str>>,
    /// The shared list of each list of field names seen so far.
    key_lists: HashMap<Vec<Arc<str>>, Arc<[Arc<str>]>>,
}

impl Indexer<'_> {
    fn run(&mut self) {
        for idx in 0..self.tokens.len() {
            let TokenKind::Name(name) = &self.tokens[idx].kind else {
                continue;
            };
            match name.as_str() {
                "require" if !self.is_member(idx) => self.require(idx),
                "service" | "pipeline" | "stage" | "embed" if self.is_member(idx) => {
                    self.call(idx, name)
                }
                _ => {}
            }
        }
    }

    /// `x.name`: the token before is a `.` after a name.
    fn is_member(&self, idx: usize) -> bool {
        idx >= 2
            && self.tokens[idx - 1].kind == TokenKind::Punct(".")
            && matches!(self.tokens[idx - 2].kind, TokenKind::Name(_))
    }

    fn punct(&self, idx: usize, punct: &str) -> bool {
        self.tokens
            .get(idx)
            .is_some_and(|token| matches!(token.kind, TokenKind::Punct(p) if p == punct))
    }

    fn string_at(&self, idx: usize) -> Option<(String, Span)> {
        string_content(self.source, self.tokens.get(idx)?)
    }

    fn require(&mut self, idx: usize) {
        let arg = if self.punct(idx + 1, "(") {
            idx + 2
        } else {
            idx + 1
        };
        if let Some((module, span)) = self.string_at(arg) {
            self.found.requires.push(Require { module, span });
        }
    }

    fn call(&mut self, idx: usize, callee: &str) {
        let start = self.tokens[idx - 2].span.start;
        let parenthesised = self.punct(idx + 1, "(");
        let arg = if parenthesised { idx + 1 + 1 } else { idx + 1 };
        if callee == "embed" {
            self.embed(arg);
            return;
        }
        let Some((name, name_span)) = self.string_at(arg) else {
            return;
        };
        // The table: `"name" {`, `("name", {` or `("name") {`.
        let mut next = arg + 1;
        while self.punct(next, ",") || self.punct(next, ")") {
            next += 1;
        }
        let mut end = self.tokens[arg].span.end;
        let mut keys = Vec::new();
        let kind = match callee {
            "service" => DeclarationKind::Service,
            "pipeline" => DeclarationKind::Pipeline,
            _ => DeclarationKind::Stage,
        };
        if kind == DeclarationKind::Stage {
            let close = if parenthesised {
                self.matching(idx + 1)
            } else {
                arg
            };
            end = self.tokens.get(close).map_or(end, |token| token.span.end);
        } else if self.punct(next, "{") {
            let (fields, close) = self.fields(next);
            end = self
                .tokens
                .get(close)
                .map_or(self.source.len(), |t| t.span.end);
            if kind == DeclarationKind::Service {
                self.depends_on(&fields, &name);
            }
            for field in &fields {
                if let FieldKey::Named(key, _) = &field.key {
                    let text = self
                        .key_texts
                        .entry(key.clone())
                        .or_insert_with(|| Arc::from(key.as_str()));
                    keys.push(text.clone());
                }
            }
        }
        let keys = self
            .key_lists
            .entry(keys)
            .or_insert_with_key(|list| Arc::from(list.as_slice()))
            .clone();
        self.found.declarations.push(Declaration {
            kind,
            name,
            name_span,
            full_span: Span { start, end },
            container: None,
            keys,
        });
    }

    fn embed(&mut self, arg: usize) {
        if let Some((name, span)) = self.string_at(arg) {
            self.found.references.push(Reference {
                kind: ReferenceKind::Embed,
                name,
                span,
                container: None,
            });
            return;
        }
        if !self.punct(arg, "{") {
            return;
        }
        let (fields, _) = self.fields(arg);
        for field in fields {
            let FieldKey::Named(key, _) = &field.key else {
                continue;
            };
            let kind = match key.as_str() {
                "service" => ReferenceKind::Embed,
                "fallback" => ReferenceKind::EmbedFallback,
                _ => continue,
            };
            if field.value.len() == 1
                && let Some((name, span)) = self.string_at(field.value.start)
            {
                self.found.references.push(Reference {
                    kind,
                    name,
                    span,
                    container: None,
                });
            }
        }
    }

    fn depends_on(&mut self, fields: &[Field], service: &str) {
        let Some(field) = fields
            .iter()
            .find(|field| matches!(&field.key, FieldKey::Named(key, _) if key == "depends_on"))
        else {
            return;
        };
        let push = |found: &mut FileIndex, name: String, span: Span| {
            found.references.push(Reference {
                kind: ReferenceKind::DependsOn,
                name,
                span,
                container: Some(service.to_owned()),
            });
        };
        if field.value.len() == 1
            && let Some((name, span)) = self.string_at(field.value.start)
        {
            push(&mut self.found, name, span);
            return;
        }
        if !self.punct(field.value.start, "{") {
            return;
        }
        let (entries, _) = self.fields(field.value.start);
        for entry in entries {
            match entry.key {
                FieldKey::Named(name, span) | FieldKey::Bracketed(name, span) => {
                    push(&mut self.found, name, span)
                }
                FieldKey::Positional => {
                    if entry.value.len() == 1
                        && let Some((name, span)) = self.string_at(entry.value.start)
                    {
                        push(&mut self.found, name, span);
                    }
                }
            }
        }
    }

    /// The index of the bracket closing the one at `open`, or the last
    /// token when it is never closed.
    fn matching(&self, open: usize) -> usize {
        let mut depth = 0i32;
        for (idx, token) in self.tokens.iter().enumerate().skip(open) {
            match token.kind {
                TokenKind::Punct("(" | "{" | "[") => depth += 1,
                TokenKind::Punct(")" | "}" | "]") => {
                    depth -= 1;
                    if depth == 0 {
                        return idx;
                    }
                }
                _ => {}
            }
        }
        self.tokens.len().saturating_sub(1)
    }

    /// The fields of the constructor opening at `open`, and the index of its
    /// closing brace.
    fn fields(&self, open: usize) -> (Vec<Field>, usize) {
        let close = self.matching(open);
        let mut fields = Vec::new();
        let mut idx = open + 1;
        while idx < close {
            if self.punct(idx, ",") || self.punct(idx, ";") {
                idx += 1;
                continue;
            }
            let (key, value_start) = match &self.tokens[idx].kind {
                TokenKind::Name(name) if self.punct(idx + 1, "=") => (
                    FieldKey::Named(name.clone(), token_span(&self.tokens[idx])),
                    idx + 2,
                ),
                TokenKind::Punct("[") => {
                    let end = self.matching(idx);
                    let key = match self.string_at(idx + 1) {
                        Some((name, span)) if end == idx + 2 => FieldKey::Bracketed(name, span),
                        _ => FieldKey::Positional,
                    };
                    (key, end + 2)
                }
                _ => (FieldKey::Positional, idx),
            };
            let value_end = self.expression_end(value_start, close);
            fields.push(Field {
                key,
                value: value_start..value_end,
            });
            idx = value_end.max(idx + 1);
        }
        (fields, close)
    }

    /// The index just past an expression starting at `idx`: the next `,` or
    /// `;` at depth zero, or `limit`.
    fn expression_end(&self, mut idx: usize, limit: usize) -> usize {
        let mut depth = 0i32;
        while idx < limit {
            match &self.tokens[idx].kind {
                TokenKind::Punct("," | ";") if depth == 0 => return idx,
                TokenKind::Punct("(" | "{" | "[") => depth += 1,
                TokenKind::Punct(")" | "}" | "]") => depth -= 1,
                TokenKind::Name(name) => match name.as_str() {
                    "function" | "if" | "do" | "repeat" => depth += 1,
                    "end" | "until" => depth -= 1,
                    _ => {}
                },
                _ => {}
            }
            idx += 1;
        }
        limit
    }
}
