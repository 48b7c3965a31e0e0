//! Where things stand in a script's text.
//!
//! Lua tables forget where their fields were written, so diagnostics about a
//! field need a second look at the source. This module holds a small Lua
//! tokenizer and, for a call such as `s.service "api" { ... }` reported by
//! Lua at some line, maps each field path (`restart.backoff`) of the table
//! constructor that follows to the line and column of its key and value.
//! It reads text only; it never runs anything.

use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

/// The fields of one table constructor: `key` and `value` positions by
/// dotted path (`"restart"`, `"restart.backoff"`, `"command.1"`).
#[derive(Debug, Clone, Default)]
pub struct TableMap {
    pub open: Option<Position>,
    fields: HashMap<String, FieldPosition>,
}

#[derive(Debug, Clone, Copy)]
pub struct FieldPosition {
    pub key: Position,
    pub value: Position,
}

impl TableMap {
    pub fn field(&self, path: &str) -> Option<FieldPosition> {
        self.fields.get(path).copied()
    }
}

/// A tokenized script.
#[derive(Debug)]
pub struct SourceMap {
    tokens: Vec<Token>,
    /// Index of the first token of each line (1-based line `n` at `n - 1`),
    /// so that a call's line is found without scanning every token.
    line_starts: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    Name(String),
    Str,
    Number,
    Punct(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub position: Position,
    /// Byte offsets of the token in the source (for the analysis module).
    pub span: std::ops::Range<usize>,
}

impl SourceMap {
    pub fn new(source: &str) -> SourceMap {
        let tokens = tokenize(source);
        let last_line = tokens
            .last()
            .map_or(0, |token| token.position.line as usize);
        let mut line_starts = Vec::with_capacity(last_line + 1);
        let mut next = 0;
        for line in 1..=last_line + 1 {
            while next < tokens.len() && (tokens[next].position.line as usize) < line {
                next += 1;
            }
            line_starts.push(next);
        }
        SourceMap {
            tokens,
            line_starts,
        }
    }

    /// The position of the first name token `callee` on `line`, e.g. the
    /// `service` of `s.service "api" {`.
    pub fn call_position(&self, line: u32, callee: &str) -> Option<Position> {
        self.call_token(line, callee)
            .map(|idx| self.tokens[idx].position)
    }

    /// The table constructor that is the argument of the call of `callee` on
    /// `line` (skipping a string argument between them, as in
    /// `service "api" { ... }`).
    pub fn table_after_call(&self, line: u32, callee: &str) -> Option<TableMap> {
        let mut idx = self.call_token(line, callee)? + 1;
        // Skip `"name"`, `("name")` or `("name",` between the callee and
        // the table.
        while let Some(token) = self.tokens.get(idx) {
            match &token.kind {
                TokenKind::Punct("{") => break,
                TokenKind::Str
                | TokenKind::Punct("(")
                | TokenKind::Punct(")")
                | TokenKind::Punct(",") => idx += 1,
                _ => return None,
            }
        }
        let mut map = TableMap {
            open: Some(self.tokens.get(idx)?.position),
            fields: HashMap::new(),
        };
        self.read_constructor(idx, "", &mut map);
        Some(map)
    }

    fn call_token(&self, line: u32, callee: &str) -> Option<usize> {
        let start = *self.line_starts.get((line as usize).checked_sub(1)?)?;
        self.tokens[start..]
            .iter()
            .take_while(|token| token.position.line == line)
            .position(|token| matches!(&token.kind, TokenKind::Name(name) if name == callee))
            .map(|offset| start + offset)
    }

    /// Reads the constructor opening at `open` and returns the index just
    /// past its closing brace.
    fn read_constructor(&self, open: usize, prefix: &str, map: &mut TableMap) -> usize {
        let mut idx = open + 1;
        let mut positional = 0u32;
        loop {
            let Some(token) = self.tokens.get(idx) else {
                return idx;
            };
            match &token.kind {
                TokenKind::Punct("}") => return idx + 1,
                TokenKind::Punct(",") | TokenKind::Punct(";") => {
                    idx += 1;
                    continue;
                }
                _ => {}
            }
            let is_named = matches!(token.kind, TokenKind::Name(_))
                && matches!(
                    self.tokens.get(idx + 1).map(|t| &t.kind),
                    Some(TokenKind::Punct("="))
                );
            let (path, key_position, value_idx) = if is_named {
                let TokenKind::Name(name) = &token.kind else {
                    unreachable!("checked above")
                };
                (join(prefix, name), token.position, idx + 2)
            } else if token.kind == TokenKind::Punct("[") {
                // `[expr] = value`: find the matching `]` and skip `=`.
                let close = self.skip_expression(idx + 1, &["]"]);
                (join(prefix, "[]"), token.position, close + 2)
            } else {
                positional += 1;
                (join(prefix, &positional.to_string()), token.position, idx)
            };
            let Some(value_token) = self.tokens.get(value_idx) else {
                return value_idx;
            };
            map.fields.insert(
                path.clone(),
                FieldPosition {
                    key: key_position,
                    value: value_token.position,
                },
            );
            idx = if value_token.kind == TokenKind::Punct("{") {
                let after = self.read_constructor(value_idx, &path, map);
                // A constructor may be followed by more of an expression.
                self.skip_expression(after, &[",", ";", "}"])
            } else {
                self.skip_expression(value_idx, &[",", ";", "}"])
            };
        }
    }

    /// Skips an expression starting at `idx` up to (not past) one of the
    /// `stops` at nesting depth zero, and returns the stop's index.
    fn skip_expression(&self, mut idx: usize, stops: &[&str]) -> usize {
        let mut depth = 0i32;
        while let Some(token) = self.tokens.get(idx) {
            match &token.kind {
                TokenKind::Punct(p) if depth == 0 && stops.contains(p) => return idx,
                TokenKind::Punct("(" | "{" | "[") => depth += 1,
                TokenKind::Punct(")" | "}" | "]") => {
                    depth -= 1;
                    if depth < 0 {
                        return idx;
                    }
                }
                TokenKind::Name(name) => match name.as_str() {
                    "function" | "if" | "do" | "repeat" => depth += 1,
                    "end" | "until" => depth -= 1,
                    _ => {}
                },
                _ => {}
            }
            idx += 1;
        }
        idx
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

pub(crate) fn tokenize(source: &str) -> Vec<Token> {
    let bytes = source.as_bytes();
    // At most about one token per three bytes in a graph script: one
    // allocation, whose pages are only touched as tokens fill them.
    let mut tokens = Vec::with_capacity(source.len() / 3 + 16);
    let mut idx = 0;
    let mut line = 1u32;
    let mut line_start = 0usize;
    // Columns count characters from the line's start; the count is carried
    // forward from the previous token of the same line, so that a line is
    // read once, not once per token.
    let mut counted_line_start = 0usize;
    let mut counted_to = 0usize;
    let mut counted = 0usize;
    while idx < bytes.len() {
        let byte = bytes[idx];
        if byte == b'\n' {
            line += 1;
            idx += 1;
            line_start = idx;
            continue;
        }
        if byte.is_ascii_whitespace() {
            idx += 1;
            continue;
        }
        if counted_line_start != line_start || counted_to < line_start {
            counted_line_start = line_start;
            counted_to = line_start;
            counted = 0;
        }
        counted += source[counted_to..idx].chars().count();
        counted_to = idx;
        let position = Position {
            line,
            column: (counted + 1) as u32,
        };
        if byte == b'-' && bytes.get(idx + 1) == Some(&b'-') {
            idx += 2;
            if let Some(level) = long_bracket_level(&bytes[idx..]) {
                idx = skip_long_bracket(bytes, idx, level, &mut line, &mut line_start);
            } else {
                while idx < bytes.len() && bytes[idx] != b'\n' {
                    idx += 1;
                }
            }
            continue;
        }
        if byte == b'['
            && let Some(level) = long_bracket_level(&bytes[idx..])
        {
            let start = idx;
            idx = skip_long_bracket(bytes, idx, level, &mut line, &mut line_start);
            tokens.push(Token {
                kind: TokenKind::Str,
                position,
                span: start..idx,
            });
            continue;
        }
        if byte == b'"' || byte == b'\'' {
            let start = idx;
            idx += 1;
            while idx < bytes.len() && bytes[idx] != byte && bytes[idx] != b'\n' {
                if bytes[idx] == b'\\' {
                    idx += 1;
                    if bytes.get(idx) == Some(&b'\n') {
                        line += 1;
                        line_start = idx + 1;
                    }
                }
                idx += 1;
            }
            idx = (idx + 1).min(bytes.len());
            tokens.push(Token {
                kind: TokenKind::Str,
                position,
                span: start..idx,
            });
            continue;
        }
        if byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80 {
            let start = idx;
            while idx < bytes.len()
                && (bytes[idx].is_ascii_alphanumeric() || bytes[idx] == b'_' || bytes[idx] >= 0x80)
            {
                idx += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Name(source[start..idx].to_owned()),
                position,
                span: start..idx,
            });
            continue;
        }
        if byte.is_ascii_digit() {
            let start = idx;
            while idx < bytes.len()
                && (bytes[idx].is_ascii_alphanumeric() || bytes[idx] == b'.' || bytes[idx] == b'_')
            {
                idx += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Number,
                position,
                span: start..idx,
            });
            continue;
        }
        let punct = punctuation_at(&bytes[idx..]);
        let start = idx;
        idx += punct.len().max(1);
        // A byte outside the punctuation table (`?`) may start a wider
        // character: keep the span on a character boundary.
        while !source.is_char_boundary(idx.min(source.len())) {
            idx += 1;
        }
        tokens.push(Token {
            kind: TokenKind::Punct(punct),
            position,
            span: start..idx.min(source.len()),
        });
    }
    tokens
}

/// The longest Lua punctuation that `bytes` starts with, or `?`.
/// A branch on the first byte: most tokens of a graph script are
/// punctuation, and a walk through the table for each was most of the
/// tokenizer's time.
fn punctuation_at(bytes: &[u8]) -> &'static str {
    let second = bytes.get(1).copied();
    match bytes.first().copied() {
        Some(b'.') => match (second, bytes.get(2).copied()) {
            (Some(b'.'), Some(b'.')) => "...",
            (Some(b'.'), _) => "..",
            _ => ".",
        },
        Some(b'=') if second == Some(b'=') => "==",
        Some(b'=') => "=",
        Some(b'~') if second == Some(b'=') => "~=",
        Some(b'~') => "~",
        Some(b'<') if second == Some(b'=') => "<=",
        Some(b'<') if second == Some(b'<') => "<<",
        Some(b'<') => "<",
        Some(b'>') if second == Some(b'=') => ">=",
        Some(b'>') if second == Some(b'>') => ">>",
        Some(b'>') => ">",
        Some(b'/') if second == Some(b'/') => "//",
        Some(b'/') => "/",
        Some(b':') if second == Some(b':') => "::",
        Some(b':') => ":",
        Some(b'+') => "+",
        Some(b'-') => "-",
        Some(b'*') => "*",
        Some(b'%') => "%",
        Some(b'^') => "^",
        Some(b'#') => "#",
        Some(b'&') => "&",
        Some(b'|') => "|",
        Some(b'(') => "(",
        Some(b')') => ")",
        Some(b'{') => "{",
        Some(b'}') => "}",
        Some(b'[') => "[",
        Some(b']') => "]",
        Some(b';') => ";",
        Some(b',') => ",",
        _ => "?",
    }
}

/// `[[`, `[=[`, ... : the number of `=` signs, or `None`.
fn long_bracket_level(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'[') {
        return None;
    }
    let level = bytes[1..].iter().take_while(|b| **b == b'=').count();
    (bytes.get(1 + level) == Some(&b'[')).then_some(level)
}

fn skip_long_bracket(
    bytes: &[u8],
    mut idx: usize,
    level: usize,
    line: &mut u32,
    line_start: &mut usize,
) -> usize {
    let close: Vec<u8> = std::iter::once(b']')
        .chain(std::iter::repeat_n(b'=', level))
        .chain(std::iter::once(b']'))
        .collect();
    idx += level + 2;
    while idx < bytes.len() {
        if bytes[idx..].starts_with(&close) {
            return idx + close.len();
        }
        if bytes[idx] == b'\n' {
            *line += 1;
            *line_start = idx + 1;
        }
        idx += 1;
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lua's punctuation, longest first where one begins another.
    const PUNCTUATION: &[&str] = &[
        "...", "..", "==", "~=", "<=", ">=", "//", "::", "<<", ">>", "+", "-", "*", "/", "%", "^",
        "#", "&", "~", "|", "<", ">", "=", "(", ")", "{", "}", "[", "]", ";", ":", ",", ".",
    ];

    /// The branch on the first byte finds what a walk through the table,
    /// longest first, finds: for every string of up to three punctuation
    /// characters (and a few others).
    #[test]
    fn punctuation_is_the_longest_entry_of_the_table() {
        let alphabet: Vec<u8> = b".=~<>/:+-*%^#&|(){}[];,a ?".to_vec();
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for a in &alphabet {
            inputs.push(vec![*a]);
            for b in &alphabet {
                inputs.push(vec![*a, *b]);
                for c in &alphabet {
                    inputs.push(vec![*a, *b, *c]);
                }
            }
        }
        for input in inputs {
            let walked = PUNCTUATION
                .iter()
                .find(|p| input.starts_with(p.as_bytes()))
                .copied()
                .unwrap_or("?");
            assert_eq!(
                punctuation_at(&input),
                walked,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    /// Every token's line and column, counted afresh from the start of the
    /// text: the tokenizer carries its column count along a line, and must
    /// land where a plain count lands (wide characters, strings and long
    /// brackets over several lines, comments, escapes before a newline).
    #[test]
    fn positions_match_a_fresh_count_from_the_start() {
        let source = "local s = require(\"spindle\") -- é ü\n\
            s.service \"ünï\" { command = { \"日本\", 'a\\\n  b' }, x = [==[\n  long ]] ]==], y = 1.5e3 }\n\
            --[[ a\n  comment ]] local t = { [\"k\"] = 2 } ... .. == ~= // :: << >> ? ¿ z\n\
            \t  s.stage(\"é\", function(r) return r end)\n";
        let tokens = tokenize(source);
        assert!(tokens.len() > 40, "{}", tokens.len());
        for token in &tokens {
            let before = &source[..token.span.start];
            let line = before.matches('\n').count() as u32 + 1;
            let line_start = before.rfind('\n').map_or(0, |n| n + 1);
            let column = source[line_start..token.span.start].chars().count() as u32 + 1;
            assert_eq!(
                token.position,
                Position { line, column },
                "{:?} at {:?}",
                token.kind,
                token.span
            );
        }
        let puncts: Vec<&str> = tokens
            .iter()
            .filter_map(|token| match token.kind {
                TokenKind::Punct(p) => Some(p),
                _ => None,
            })
            .collect();
        assert!(puncts.contains(&"..."), "{puncts:?}");
        assert!(puncts.contains(&"~="), "{puncts:?}");
        assert!(puncts.contains(&"?"), "{puncts:?}");
    }

    #[test]
    fn maps_nested_fields_of_a_service_table() {
        let source = r#"local s = require("spindle")
-- a comment { with braces }
s.service "api" {
  command = { "sh", "-c", "echo {x}" },
  restart = { policy = "always", backoff = "1s..2s" },
  ready = s.exec_probe { command = { "true" }, period = "1s" },
  check = function() local a, b = 1, 2 return a end,
  after = 1,
}
"#;
        let map = SourceMap::new(source);
        let table = map.table_after_call(3, "service").expect("table");
        assert_eq!(
            table.open,
            Some(Position {
                line: 3,
                column: 17
            })
        );
        let backoff = table.field("restart.backoff").expect("backoff");
        assert_eq!(
            backoff.key,
            Position {
                line: 5,
                column: 34
            }
        );
        assert_eq!(
            backoff.value,
            Position {
                line: 5,
                column: 44
            }
        );
        assert_eq!(
            table.field("command.3").expect("arg").value,
            Position {
                line: 4,
                column: 27
            }
        );
        assert_eq!(
            table.field("after").expect("after").key,
            Position { line: 8, column: 3 }
        );
        let probe = map.table_after_call(6, "exec_probe").expect("probe table");
        assert_eq!(
            probe.field("period").expect("period").value,
            Position {
                line: 6,
                column: 57
            }
        );
    }
}
