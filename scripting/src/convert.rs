//! Turns what a script declared (Lua tables) into specs, reporting every
//! mistake with the position of the field it concerns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mlua::{Function, Table, Value};

use crate::api::{CallSite, ProbeDecl};
use crate::diagnostic::{Diagnostic, Severity};
use crate::duration::parse_duration;
use crate::source_map::{Position, SourceMap, TableMap};
use crate::sources::Overlay;

/// Which part of a field a diagnostic points at.
#[derive(Clone, Copy)]
pub(crate) enum Part {
    Key,
    Value,
}

/// Finds source positions for call sites and their table fields, reading
/// each file once.
#[derive(Default)]
pub(crate) struct Locator {
    overlay: Overlay,
    sources: HashMap<PathBuf, Option<SourceMap>>,
    tables: HashMap<(PathBuf, u32, &'static str), Option<TableMap>>,
}

impl Locator {
    /// A locator that reads the texts `overlay` holds instead of their files.
    pub fn with_overlay(overlay: Overlay) -> Locator {
        Locator {
            overlay,
            ..Locator::default()
        }
    }

    pub fn position(&mut self, site: &CallSite, path: Option<&str>, part: Part) -> Position {
        let fallback = Position {
            line: site.line,
            column: 1,
        };
        let source = self
            .sources
            .entry(site.file.clone())
            .or_insert_with(|| {
                self.overlay
                    .read(&site.file)
                    .ok()
                    .map(|text| SourceMap::new(&text))
            })
            .as_ref();
        let Some(source) = source else {
            return fallback;
        };
        let call = source
            .call_position(site.line, site.callee)
            .unwrap_or(fallback);
        let Some(path) = path else {
            return call;
        };
        let table = self
            .tables
            .entry((site.file.clone(), site.line, site.callee))
            .or_insert_with(|| source.table_after_call(site.line, site.callee));
        let Some(table) = table else {
            return call;
        };
        // Fall back to the closest enclosing field that was written out.
        let mut prefix = path;
        loop {
            if let Some(field) = table.field(prefix) {
                return match (part, prefix == path) {
                    (Part::Value, true) => field.value,
                    _ => field.key,
                };
            }
            match prefix.rfind('.') {
                Some(dot) => prefix = &prefix[..dot],
                None => return table.open.unwrap_or(call),
            }
        }
    }
}

/// Converts declarations one by one, collecting diagnostics and the Lua
/// functions that specs refer to by [`FunctionId`].
pub(crate) struct Converter<'a> {
    pub locator: &'a mut Locator,
    pub diagnostics: Vec<Diagnostic>,
    pub functions: Vec<Function>,
    pub script_dir: PathBuf,
}

impl Converter<'_> {
    pub fn error(
        &mut self,
        site: &CallSite,
        path: Option<&str>,
        part: Part,
        message: String,
        hint: String,
    ) {
        self.push(Severity::Error, site, path, part, message, hint);
    }

    pub fn push(
        &mut self,
        severity: Severity,
        site: &CallSite,
        path: Option<&str>,
        part: Part,
        message: String,
        hint: String,
    ) {
        let position = self.locator.position(site, path, part);
        self.diagnostics.push(Diagnostic {
            severity,
            file: site.file.clone(),
            line: position.line,
            column: position.column,
            message,
            hint: Some(hint),
        });
    }

    /// `description`, free text for people and tools, must be a string.
    pub(crate) fn check_description(&mut self, site: &CallSite, table: &Table) {
        match table.raw_get::<Value>("description").unwrap_or(Value::Nil) {
            Value::Nil | Value::String(_) => {}
            other => self.wrong_type(site, "description", "a string", &other),
        }
    }

    pub(crate) fn check_fields(
        &mut self,
        site: &CallSite,
        table: &Table,
        prefix: &str,
        allowed: &[&str],
        what: &str,
    ) {
        for (key, _) in table.clone().pairs::<Value, Value>().flatten() {
            let Value::String(key) = key else {
                self.error(
                    site,
                    Some(&join(prefix, "[]")),
                    Part::Key,
                    format!("{what} has a field whose name is not a string"),
                    format!("the fields of {what} are: {}", allowed.join(", ")),
                );
                continue;
            };
            let key = key.to_string_lossy();
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let hint = match did_you_mean(&key, allowed) {
                Some(candidate) => format!("did you mean `{candidate}`?"),
                None => format!("the fields of {what} are: {}", allowed.join(", ")),
            };
            self.error(
                site,
                Some(&join(prefix, &key)),
                Part::Key,
                format!("unknown field `{key}` in {what}"),
                hint,
            );
        }
    }

    pub(crate) fn wrong_type(
        &mut self,
        site: &CallSite,
        path: &str,
        expected: &str,
        found: &Value,
    ) {
        self.error(
            site,
            Some(path),
            Part::Value,
            format!("`{path}` must be {expected}, found {}", describe(found)),
            match path.rsplit_once('.') {
                Some((list, idx)) if idx.parse::<u32>().is_ok() => {
                    format!("write each entry of `{list}` as {expected}")
                }
                _ => format!("write `{}` as {expected}", last_segment(path)),
            },
        );
    }

    pub(crate) fn one_of(&mut self, site: &CallSite, path: &str, found: &str, allowed: &[&str]) {
        let hint = match did_you_mean(found, allowed) {
            Some(candidate) => format!("did you mean \"{candidate}\"?"),
            None => format!("use one of: {}", allowed.join(", ")),
        };
        self.error(
            site,
            Some(path),
            Part::Value,
            format!("`{}` cannot be \"{found}\"", last_segment(path)),
            hint,
        );
    }

    pub(crate) fn string_list(
        &mut self,
        site: &CallSite,
        path: &str,
        list: &Table,
    ) -> Option<Vec<String>> {
        let mut strings = Vec::new();
        let mut ok = true;
        for (key, value) in list.clone().pairs::<Value, Value>().flatten() {
            let Value::Integer(idx) = key else {
                self.wrong_type(site, path, "a list of strings", &Value::Table(list.clone()));
                return None;
            };
            match scalar_text(&value) {
                Some(text) => strings.push((idx, text)),
                None => {
                    self.wrong_type(site, &format!("{path}.{idx}"), "a string", &value);
                    ok = false;
                }
            }
        }
        strings.sort();
        ok.then(|| strings.into_iter().map(|(_, text)| text).collect())
    }

    pub(crate) fn integer(
        &mut self,
        site: &CallSite,
        table: &Table,
        path: &str,
        key: &str,
    ) -> Option<u32> {
        match table.raw_get::<Value>(key).unwrap_or(Value::Nil) {
            Value::Nil => None,
            Value::Integer(value) if (0..=i64::from(u32::MAX)).contains(&value) => {
                Some(value as u32)
            }
            Value::Number(value)
                if value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&value) =>
            {
                Some(value as u32)
            }
            other => {
                self.wrong_type(site, path, "a whole number", &other);
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        site: &CallSite,
        table: &Table,
        key: &str,
    ) -> Option<Duration> {
        self.duration_at(site, table, key, key)
    }

    pub(crate) fn duration_at(
        &mut self,
        site: &CallSite,
        table: &Table,
        path: &str,
        key: &str,
    ) -> Option<Duration> {
        match table.raw_get::<Value>(key).unwrap_or(Value::Nil) {
            Value::Nil => None,
            Value::Integer(seconds) if seconds >= 0 => Some(Duration::from_secs(seconds as u64)),
            Value::Number(seconds) if seconds >= 0.0 && seconds.is_finite() => {
                Some(Duration::from_secs_f64(seconds))
            }
            Value::String(text) => match parse_duration(&text.to_string_lossy()) {
                Ok(duration) => Some(duration),
                Err(problem) => {
                    self.error(
                        site,
                        Some(path),
                        Part::Value,
                        format!("bad duration for `{key}`: {problem}"),
                        "write a number with a unit: \"250ms\", \"2s\", \"1m30s\"".to_owned(),
                    );
                    None
                }
            },
            other => {
                self.wrong_type(site, path, "a duration like \"2s\"", &other);
                None
            }
        }
    }
}

/// The string form of a string or number value.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.to_string_lossy()),
        Value::Integer(number) => Some(number.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Boolean(flag) => Some(flag.to_string()),
        _ => None,
    }
}

pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("the string \"{}\"", text.to_string_lossy()),
        Value::Integer(number) => format!("the number {number}"),
        Value::Number(number) => format!("the number {number}"),
        Value::Boolean(flag) => format!("the boolean {flag}"),
        Value::UserData(data) if data.is::<ProbeDecl>() => "a probe".to_owned(),
        other => format!("a {}", other.type_name()),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// The closest candidate within an edit distance of two (or a third of the
/// word), if any.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The folder a script's relative paths start from.
pub(crate) fn script_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}
