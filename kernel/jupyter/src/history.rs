//! The execution history: every stored cell's input (and the text of its
//! result), numbered by session and line, kept in a JSON-lines file so
//! that a restarted kernel still finds it. Answers `history_request`s:
//! tail, range and search (glob patterns, `*` and `?`).

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

/// One stored cell.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    session: i64,
    line: i64,
    input: String,
    output: Option<String>,
}

/// The history of every session, this one last.
#[derive(Debug)]
pub(crate) struct History {
    file: Option<PathBuf>,
    entries: Vec<Entry>,
    session: i64,
}

/// How many entries a history file keeps (the oldest go first).
const KEEP: usize = 10_000;

impl History {
    /// Loads the file's history; this kernel is a new session after the
    /// last one in it.
    pub fn open(file: Option<PathBuf>) -> History {
        let mut entries = Vec::new();
        if let Some(file) = &file
            && let Ok(text) = std::fs::read_to_string(file)
        {
            for line in text.lines() {
                let Ok(value) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let (Some(session), Some(number), Some(input)) = (
                    value["session"].as_i64(),
                    value["line"].as_i64(),
                    value["input"].as_str(),
                ) else {
                    continue;
                };
                entries.push(Entry {
                    session,
                    line: number,
                    input: input.to_owned(),
                    output: value["output"].as_str().map(str::to_owned),
                });
            }
        }
        if entries.len() > KEEP {
            entries.drain(..entries.len() - KEEP);
        }
        let session = entries.iter().map(|entry| entry.session).max().unwrap_or(0) + 1;
        History {
            file,
            entries,
            session,
        }
    }

    /// Stores cell `line` of this session.
    pub fn record(&mut self, line: i64, input: &str, output: Option<String>) {
        let entry = Entry {
            session: self.session,
            line,
            input: input.to_owned(),
            output,
        };
        if let Some(file) = &self.file {
            let written = (|| -> std::io::Result<()> {
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut handle = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)?;
                let record = json!({
                    "session": entry.session,
                    "line": entry.line,
                    "input": entry.input,
                    "output": entry.output,
                });
                writeln!(handle, "{record}")
            })();
            if let Err(error) = written {
                tracing::warn!(
                    "cannot append to the history file {}: {error}; history stays in memory",
                    file.display()
                );
                self.file = None;
            }
        }
        self.entries.push(entry);
    }

    /// The `history` list of a `history_reply` to `request`.
    pub fn answer(&self, request: &Value) -> Vec<Value> {
        let output = request["output"].as_bool().unwrap_or(false);
        let kind = request["hist_access_type"].as_str().unwrap_or("tail");
        let n = request["n"].as_i64().filter(|n| *n >= 0);
        let selected: Vec<&Entry> = match kind {
            "range" => {
                let session = match request["session"].as_i64().unwrap_or(0) {
                    0 => self.session,
                    relative if relative < 0 => self.session + relative,
                    absolute => absolute,
                };
                let start = request["start"].as_i64().unwrap_or(0);
                let stop = request["stop"].as_i64();
                self.entries
                    .iter()
                    .filter(|entry| {
                        entry.session == session
                            && entry.line >= start
                            && stop.is_none_or(|stop| entry.line < stop)
                    })
                    .collect()
            }
            "search" => {
                let pattern = request["pattern"].as_str().unwrap_or("*");
                let unique = request["unique"].as_bool().unwrap_or(false);
                let mut found: Vec<&Entry> = Vec::new();
                for entry in self.entries.iter().rev() {
                    if !glob(pattern, &entry.input) {
                        continue;
                    }
                    if unique && found.iter().any(|seen| seen.input == entry.input) {
                        continue;
                    }
                    found.push(entry);
                    if n.is_some_and(|n| found.len() as i64 >= n) {
                        break;
                    }
                }
                found.reverse();
                found
            }
            _ => {
                let count = n.unwrap_or(10) as usize;
                let skip = self.entries.len().saturating_sub(count);
                self.entries[skip..].iter().collect()
            }
        };
        selected
            .into_iter()
            .map(|entry| {
                if output {
                    json!([
                        entry.session,
                        entry.line,
                        [entry.input, entry.output.clone().unwrap_or_default()]
                    ])
                } else {
                    json!([entry.session, entry.line, entry.input])
                }
            })
            .collect()
    }
}

/// A glob match: `*` any text, `?` one character, everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            p += 1;
            resume = t;
        } else if let Some(star) = star {
            p = star + 1;
            resume += 1;
            t = resume;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_survives_a_restart_and_answers_tail_range_and_search() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("history.jsonl");
        let mut first = History::open(Some(file.clone()));
        first.record(1, "x = 1", None);
        first.record(2, "x + 1", Some("2".to_owned()));
        let mut second = History::open(Some(file));
        second.record(1, "x + 1", None);
        let tail = second.answer(&json!({"hist_access_type": "tail", "n": 2, "output": true}));
        assert_eq!(
            tail,
            vec![json!([1, 2, ["x + 1", "2"]]), json!([2, 1, ["x + 1", ""]])]
        );
        let range = second
            .answer(&json!({"hist_access_type": "range", "session": -1, "start": 1, "stop": 2}));
        assert_eq!(range, vec![json!([1, 1, "x = 1"])]);
        let search = second
            .answer(&json!({"hist_access_type": "search", "pattern": "x +*", "unique": true}));
        assert_eq!(search, vec![json!([2, 1, "x + 1"])]);
        assert!(glob("a*c?", "abbbcd"));
        assert!(!glob("a*c", "abd"));
    }
}
