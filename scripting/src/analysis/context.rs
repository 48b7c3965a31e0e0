//! What stands at a cursor: which table of which declaration it is in, and
//! whether it is at a field's key, inside a string value, or after `s.`.
//! Completion and hover ask this; it reads tokens only.

use crate::source_map::{Token, TokenKind, tokenize};

use super::index::{Span, string_content, token_span};

/// The kinds of tables a script writes, as far as Spindle knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    Service,
    Restart,
    Stop,
    Embedding,
    Providers,
    DependsOn,
    Probe(ProbeKind),
    Pipeline,
    Timeout,
    Sources,
    Embed,
    Netlink,
    /// `s.settings { ... }`.
    Settings,
    /// A table Spindle does not look into (`command`, `env`, a user's own).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Exec,
    Http,
    Tcp,
    Lua,
}

/// What the cursor is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorContext {
    /// After `s.` (the module's name and a dot), typing a member.
    ApiMember {
        typed: Span,
    },
    /// Where a field's key goes in a table of `table` kind; `present` are the
    /// keys already written in that table.
    FieldKey {
        table: TableKind,
        typed: Span,
        present: Vec<String>,
    },
    /// Inside a string that is the value of `key` (or a list entry when
    /// `key` is `None`) in a table of `table` kind.
    StringValue {
        table: TableKind,
        key: Option<String>,
        /// The text inside the quotes.
        content: Span,
    },
    /// Inside the string argument of `s.<callee> "..."`, e.g. `s.embed "`.
    CallArgument {
        callee: String,
        content: Span,
    },
    /// On a field's key (for hover): `key` of a table of `table` kind.
    OnKey {
        table: TableKind,
        key: String,
        span: Span,
    },
    Nothing,
}

/// The context at byte `offset` of `source`.
pub fn cursor_context(source: &str, offset: usize) -> CursorContext {
    let tokens = tokenize(source);
    // The token the cursor is in or just after (while a word is typed).
    let current = tokens
        .iter()
        .position(|token| token.span.start < offset && offset <= token.span.end);
    let before_end = current.unwrap_or_else(|| {
        tokens
            .iter()
            .position(|token| token.span.start >= offset)
            .unwrap_or(tokens.len())
    });
    let frames = open_tables(&tokens[..before_end]);
    let table = resolve(&frames);
    if let Some(idx) = current {
        let token = &tokens[idx];
        match &token.kind {
            TokenKind::Str => {
                let Some((_, content)) = string_content(source, token) else {
                    return CursorContext::Nothing;
                };
                if offset < content.start || offset > content.end.max(content.start) {
                    return CursorContext::Nothing;
                }
                return string_context(&tokens, idx, table, content);
            }
            TokenKind::Name(name) => {
                let typed = Span {
                    start: token.span.start,
                    end: offset,
                };
                if is_member(&tokens, idx) {
                    return CursorContext::ApiMember { typed };
                }
                if punct(&tokens, idx + 1, "=") && at_key_position(&tokens, idx) {
                    return CursorContext::OnKey {
                        table,
                        key: name.clone(),
                        span: token_span(token),
                    };
                }
                if at_key_position(&tokens, idx) {
                    return CursorContext::FieldKey {
                        table,
                        typed,
                        present: present_keys(&tokens, frames.last().map(|f| f.open)),
                    };
                }
                return CursorContext::Nothing;
            }
            TokenKind::Punct(".")
                if idx >= 1 && matches!(tokens[idx - 1].kind, TokenKind::Name(_)) =>
            {
                return CursorContext::ApiMember {
                    typed: Span {
                        start: offset,
                        end: offset,
                    },
                };
            }
            _ => {}
        }
    }
    // Between tokens: at a key position when the last token before the
    // cursor opens the table or ends a field.
    let last = before_end.checked_sub(1).map(|idx| &tokens[idx].kind);
    match last {
        Some(TokenKind::Punct("{" | "," | ";")) if !frames.is_empty() => CursorContext::FieldKey {
            table,
            typed: Span {
                start: offset,
                end: offset,
            },
            present: present_keys(&tokens, frames.last().map(|f| f.open)),
        },
        _ => CursorContext::Nothing,
    }
}

/// An open `{` and what it belongs to.
#[derive(Debug)]
struct Frame {
    open: usize,
    owner: Owner,
}

#[derive(Debug)]
enum Owner {
    /// `key = {`
    Field(String),
    /// `s.callee {`, `s.callee "name" {`, `s.callee("name", {`
    Call(String),
    /// `{` as a list entry.
    Entry,
}

fn open_tables(tokens: &[Token]) -> Vec<Frame> {
    let mut frames = Vec::new();
    for (idx, token) in tokens.iter().enumerate() {
        match token.kind {
            TokenKind::Punct("{") => frames.push(Frame {
                open: idx,
                owner: owner(tokens, idx),
            }),
            TokenKind::Punct("}") => {
                frames.pop();
            }
            _ => {}
        }
    }
    frames
}

fn owner(tokens: &[Token], open: usize) -> Owner {
    if open >= 2
        && tokens[open - 1].kind == TokenKind::Punct("=")
        && let TokenKind::Name(key) = &tokens[open - 2].kind
    {
        return Owner::Field(key.clone());
    }
    // Walk back over `"name"`, `(` and `,` to the callee of `x.callee`.
    let mut idx = open;
    for _ in 0..4 {
        let Some(previous) = idx.checked_sub(1) else {
            break;
        };
        idx = previous;
        match &tokens[idx].kind {
            TokenKind::Str | TokenKind::Punct("(" | ",") => continue,
            TokenKind::Name(callee) if is_member(tokens, idx) => {
                return Owner::Call(callee.clone());
            }
            _ => break,
        }
    }
    Owner::Entry
}

/// The kind of the innermost table, from the chain of open tables.
fn resolve(frames: &[Frame]) -> TableKind {
    let mut kind = TableKind::Other;
    for frame in frames {
        kind = match (&frame.owner, kind) {
            (Owner::Call(callee), _) => match callee.as_str() {
                "service" => TableKind::Service,
                "pipeline" => TableKind::Pipeline,
                "exec_probe" => TableKind::Probe(ProbeKind::Exec),
                "http_probe" => TableKind::Probe(ProbeKind::Http),
                "tcp_probe" => TableKind::Probe(ProbeKind::Tcp),
                "lua_probe" => TableKind::Probe(ProbeKind::Lua),
                "embed" => TableKind::Embed,
                "netlink" => TableKind::Netlink,
                "settings" => TableKind::Settings,
                _ => TableKind::Other,
            },
            (Owner::Field(key), TableKind::Service) => match key.as_str() {
                "restart" => TableKind::Restart,
                "stop" => TableKind::Stop,
                "embedding" => TableKind::Embedding,
                "depends_on" => TableKind::DependsOn,
                _ => TableKind::Other,
            },
            (Owner::Field(key), TableKind::Embedding) if key == "providers" => TableKind::Providers,
            (Owner::Field(key), TableKind::Pipeline) => match key.as_str() {
                "timeout" => TableKind::Timeout,
                "from" => TableKind::Sources,
                _ => TableKind::Other,
            },
            _ => TableKind::Other,
        };
    }
    kind
}

fn string_context(tokens: &[Token], idx: usize, table: TableKind, content: Span) -> CursorContext {
    let previous = idx.checked_sub(1).map(|i| &tokens[i].kind);
    match previous {
        Some(TokenKind::Punct("=")) => {
            let key = match idx.checked_sub(2).map(|i| &tokens[i].kind) {
                Some(TokenKind::Name(key)) => Some(key.clone()),
                _ => None,
            };
            CursorContext::StringValue {
                table,
                key,
                content,
            }
        }
        Some(TokenKind::Punct("{" | "," | ";")) => CursorContext::StringValue {
            table,
            key: None,
            content,
        },
        _ => match call_of_argument(tokens, idx) {
            Some(callee) => CursorContext::CallArgument { callee, content },
            None => CursorContext::StringValue {
                table,
                key: None,
                content,
            },
        },
    }
}

/// `x.callee "..."` or `x.callee("...", ...)`: the callee whose first
/// argument the string at `idx` is.
fn call_of_argument(tokens: &[Token], idx: usize) -> Option<String> {
    let callee_idx = match idx.checked_sub(1).map(|i| &tokens[i].kind) {
        Some(TokenKind::Punct("(")) => idx.checked_sub(2)?,
        Some(TokenKind::Name(_)) => idx - 1,
        _ => return None,
    };
    match &tokens[callee_idx].kind {
        TokenKind::Name(callee) if is_member(tokens, callee_idx) || callee == "require" => {
            Some(callee.clone())
        }
        _ => None,
    }
}

fn is_member(tokens: &[Token], idx: usize) -> bool {
    idx >= 2
        && tokens[idx - 1].kind == TokenKind::Punct(".")
        && matches!(tokens[idx - 2].kind, TokenKind::Name(_))
}

fn punct(tokens: &[Token], idx: usize, punct: &str) -> bool {
    tokens
        .get(idx)
        .is_some_and(|token| matches!(token.kind, TokenKind::Punct(p) if p == punct))
}

/// A name at `idx` stands where a key goes: right after `{`, `,` or `;`.
fn at_key_position(tokens: &[Token], idx: usize) -> bool {
    idx.checked_sub(1)
        .is_some_and(|previous| matches!(tokens[previous].kind, TokenKind::Punct("{" | "," | ";")))
}

/// The `key = ` names written at depth one of the table opening at `open`.
fn present_keys(tokens: &[Token], open: Option<usize>) -> Vec<String> {
    let Some(open) = open else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut depth = 0i32;
    for idx in open..tokens.len() {
        match &tokens[idx].kind {
            TokenKind::Punct("{" | "(" | "[") => depth += 1,
            TokenKind::Punct("}" | ")" | "]") => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            // A key is a name followed by `=` (not `==`) at depth one; the
            // token before may be a half-typed key without its comma.
            TokenKind::Name(name) if depth == 1 && punct(tokens, idx + 1, "=") => {
                keys.push(name.clone())
            }
            _ => {}
        }
    }
    keys
}
