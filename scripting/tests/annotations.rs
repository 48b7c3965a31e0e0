//! `editor/spindle.lua` (the LuaCATS annotations) against the real `spindle`
//! module: every function and field the module has is declared there with
//! documentation, and nothing more.
//!
//! What the module has is asked of the module itself: a script walks
//! `require("spindle")`, and a script with one unknown field in every table
//! the converters read makes each converter list the fields it accepts (the
//! "the fields of ... are: ..." hint). What the annotations declare is read
//! by a real Lua parser (functions) and from the `---@class`/`---@field`
//! lines. A new function or field without an annotation fails here; so does
//! an annotation of something the module no longer has. The same list of
//! functions is checked against the did-you-mean of a misspelt call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use spindle_scripting::{Evaluation, evaluate_file};

fn annotation_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../editor/spindle.lua")
}

fn annotation_text() -> String {
    std::fs::read_to_string(annotation_file()).expect("editor/spindle.lua is readable")
}

/// Evaluates `script` in a fresh folder.
fn evaluate(script: &str) -> Evaluation {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("probe.lua");
    std::fs::write(&file, script).expect("write script");
    evaluate_file(&file)
}

/// The module's members as `name:type`, from a script that walks the table
/// `require("spindle")` returns and raises the list as its error.
fn module_members() -> BTreeSet<String> {
    let evaluation = evaluate(
        r#"local members = {}
for name, value in pairs(require("spindle")) do
  members[#members + 1] = name .. ":" .. type(value)
end
table.sort(members)
error("members " .. table.concat(members, " "), 0)
"#,
    );
    let message = evaluation
        .diagnostics
        .iter()
        .find_map(|d| d.message.strip_prefix("members "))
        .unwrap_or_else(|| panic!("no member list in {:?}", evaluation.diagnostics));
    message.split(' ').map(str::to_owned).collect()
}

/// A field name no converter accepts and none is near (no did-you-mean).
const UNKNOWN: &str = "zzzzzzzzzzzz";

/// One unknown field in every table a converter reads, and the annotation
/// class that must declare that table's fields. The second column is the
/// `in ...` part of the converter's "unknown field" message.
const TABLES: &[(&str, &str)] = &[
    ("service `process`", "spindle.Service"),
    ("`embedding`", "spindle.Embedding"),
    ("`restart`", "spindle.Restart"),
    ("`stop`", "spindle.Stop"),
    ("s.exec_probe", "spindle.ExecProbeFields"),
    ("s.http_probe", "spindle.HttpProbeFields"),
    ("s.tcp_probe", "spindle.TcpProbeFields"),
    ("s.lua_probe", "spindle.LuaProbeFields"),
    ("pipeline `p`", "spindle.Pipeline"),
    ("`timeout`", "spindle.Timeouts"),
    ("s.embed", "spindle.EmbedFields"),
    ("s.netlink", "spindle.NetlinkFields"),
    ("s.settings", "spindle.Settings"),
];

const EVERY_TABLE: &str = r#"local s = require("spindle")
s.service "process" {
  command = "true",
  zzzzzzzzzzzz = 1,
  ready = s.exec_probe { command = "true", zzzzzzzzzzzz = 1 },
  live = s.http_probe { url = "http://127.0.0.1:9/", zzzzzzzzzzzz = 1 },
  restart = { zzzzzzzzzzzz = 1 },
  stop = { zzzzzzzzzzzz = 1 },
}
s.service "other" {
  command = "true",
  ready = s.tcp_probe { address = "127.0.0.1:9", zzzzzzzzzzzz = 1 },
  live = s.lua_probe { check = function() return true end, zzzzzzzzzzzz = 1 },
}
s.service "engine" { embedding = { model = "all-MiniLM-L6-v2", zzzzzzzzzzzz = 1 } }
s.pipeline "p" {
  zzzzzzzzzzzz = 1,
  timeout = { zzzzzzzzzzzz = "1s" },
  from = { s.netlink { zzzzzzzzzzzz = 1 } },
  s.stage("embed", s.embed { service = "engine", zzzzzzzzzzzz = 1 }),
}
s.settings { zzzzzzzzzzzz = 1 }
"#;

/// For each table of [`TABLES`], the fields its converter accepts.
fn converter_fields() -> BTreeMap<&'static str, BTreeSet<String>> {
    let evaluation = evaluate(EVERY_TABLE);
    let prefix = format!("unknown field `{UNKNOWN}` in ");
    let mut found = BTreeMap::new();
    for diagnostic in &evaluation.diagnostics {
        let Some(what) = diagnostic.message.strip_prefix(&prefix) else {
            continue;
        };
        let (_, class) = TABLES
            .iter()
            .find(|(table, _)| *table == what)
            .unwrap_or_else(|| panic!("add `{what}` to TABLES with its annotation class"));
        let hint = diagnostic.hint.as_deref().expect("a hint");
        let (_, list) = hint
            .rsplit_once(": ")
            .unwrap_or_else(|| panic!("no field list in the hint `{hint}`"));
        found.insert(*class, list.split(", ").map(str::to_owned).collect());
    }
    for (table, class) in TABLES {
        assert!(
            found.contains_key(class),
            "the converter reported no unknown field in {table}: {:#?}",
            evaluation.diagnostics
        );
    }
    found
}

/// A `---@class` with its parents and its `---@field`s as (name,
/// description).
#[derive(Debug, Default)]
struct Class {
    parents: Vec<String>,
    fields: Vec<(String, String)>,
}

/// What the annotation file declares.
#[derive(Debug, Default)]
struct Annotations {
    classes: BTreeMap<String, Class>,
    /// Names of `spindle.*` types used in tags.
    types_used: BTreeSet<String>,
    /// Aliases declared.
    aliases: BTreeSet<String>,
    /// `function spindle.NAME(` with whether a description precedes it.
    functions: BTreeMap<String, bool>,
}

impl Annotations {
    fn parse(text: &str) -> Annotations {
        let mut annotations = Annotations::default();
        let mut class: Option<String> = None;
        let mut described = false;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("---@class ") {
                let (name, parents) = match rest.split_once(':') {
                    Some((name, parents)) => (
                        name.trim(),
                        parents.split(',').map(|p| p.trim().to_owned()).collect(),
                    ),
                    None => (rest.trim(), Vec::new()),
                };
                annotations.classes.insert(
                    name.to_owned(),
                    Class {
                        parents,
                        fields: Vec::new(),
                    },
                );
                class = Some(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("---@field ") {
                let class = class.as_ref().expect("a field belongs to a class");
                let (name, rest) = if rest.starts_with('[') {
                    let end = rest.find(']').expect("closing bracket") + 1;
                    (&rest[..end], &rest[end..])
                } else {
                    rest.split_once(' ').expect("a field has a type")
                };
                let (_, description) = split_type(rest.trim_start());
                annotations
                    .classes
                    .get_mut(class)
                    .expect("class declared")
                    .fields
                    .push((
                        name.trim_end_matches('?').to_owned(),
                        description.to_owned(),
                    ));
            } else if let Some(rest) = line.strip_prefix("---@alias ") {
                let name = rest.split_whitespace().next().expect("alias name");
                annotations.aliases.insert(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("function spindle.") {
                let name = rest.split('(').next().expect("function name");
                annotations.functions.insert(name.to_owned(), described);
            }
            if line.starts_with("---@") || line.starts_with("---|") {
                annotations.types_used.extend(type_names(line));
            }
            if !line.starts_with("---") {
                described = false;
            } else if !line.starts_with("---@") && !line.starts_with("---|") {
                described |= line.len() > 3;
            }
            if !line.starts_with("---@field") && !line.starts_with("---@class") {
                class = None;
            }
        }
        annotations
    }

    /// A class's fields, those of its parents included.
    fn fields(&self, class: &str) -> Vec<(String, String)> {
        let declared = self
            .classes
            .get(class)
            .unwrap_or_else(|| panic!("editor/spindle.lua declares no class {class}"));
        let mut fields: Vec<(String, String)> = declared
            .parents
            .iter()
            .flat_map(|parent| self.fields(parent))
            .collect();
        fields.extend(declared.fields.iter().cloned());
        fields
    }
}

/// Splits `TYPE description` where the type may hold spaces inside
/// brackets or after `:`, `,` and `|` (`fun(req: R): R?`).
fn split_type(text: &str) -> (&str, &str) {
    let mut depth = 0i32;
    let mut previous = ' ';
    for (idx, c) in text.char_indices() {
        match c {
            '(' | '<' | '{' | '[' => depth += 1,
            ')' | '>' | '}' | ']' => depth -= 1,
            ' ' if depth == 0 && !matches!(previous, ':' | ',' | '|') => {
                return (&text[..idx], text[idx..].trim());
            }
            _ => {}
        }
        if c != ' ' {
            previous = c;
        }
    }
    (text, "")
}

/// The `spindle.Name` type names in a line (capitalised, unlike functions).
fn type_names(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("spindle.") {
        let tail = &rest[at + "spindle.".len()..];
        let end = tail
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(tail.len());
        if tail.starts_with(|c: char| c.is_ascii_uppercase()) {
            names.push(format!("spindle.{}", &tail[..end]));
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_annotation_file_is_lua_a_real_parser_accepts() {
    let lua = mlua::Lua::new();
    let module: mlua::Table = lua
        .load(annotation_text())
        .set_name("@editor/spindle.lua")
        .eval()
        .unwrap_or_else(|error| panic!("editor/spindle.lua does not load: {error}"));
    // Lua's own view of the stubs must match the comment parser's.
    let mut stubs: Vec<String> = module
        .pairs::<String, mlua::Value>()
        .map(|pair| pair.expect("string keys").0)
        .collect();
    stubs.sort();
    let parsed: Vec<String> = Annotations::parse(&annotation_text())
        .functions
        .into_keys()
        .collect();
    assert_eq!(stubs, parsed);
    assert!(annotation_text().starts_with("---@meta spindle\n"));
}

#[test]
fn every_module_member_is_annotated_with_documentation() {
    let annotations = Annotations::parse(&annotation_text());
    let mut declared: BTreeSet<String> = annotations
        .functions
        .keys()
        .map(|name| format!("{name}:function"))
        .collect();
    for (name, _) in annotations.fields("spindlelib") {
        // `version` is the only non-function member; its type is a string.
        declared.insert(format!("{name}:string"));
    }
    assert_eq!(
        module_members(),
        declared,
        "require(\"spindle\") (left) and editor/spindle.lua (right) differ"
    );
    let undocumented: Vec<&String> = annotations
        .functions
        .iter()
        .filter(|(_, described)| !**described)
        .map(|(name, _)| name)
        .collect();
    assert!(
        undocumented.is_empty(),
        "functions without a description line: {undocumented:?}"
    );
}

#[test]
fn every_field_the_converters_accept_is_annotated_with_documentation() {
    let annotations = Annotations::parse(&annotation_text());
    let mut differences = Vec::new();
    for (class, accepted) in converter_fields() {
        let fields = annotations.fields(class);
        let declared: BTreeSet<String> = fields
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| !name.starts_with('['))
            .collect();
        if declared != accepted {
            differences.push(format!(
                "{class}: not annotated {:?}, annotated but not accepted {:?}",
                accepted.difference(&declared).collect::<Vec<_>>(),
                declared.difference(&accepted).collect::<Vec<_>>()
            ));
        }
    }
    assert!(differences.is_empty(), "{differences:#?}");
    let undocumented: Vec<String> = annotations
        .classes
        .iter()
        .flat_map(|(name, class)| {
            class
                .fields
                .iter()
                .filter(|(_, description)| description.is_empty())
                .map(move |(field, _)| format!("{name}.{field}"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "fields without a description: {undocumented:?}"
    );
}

#[test]
fn every_type_the_annotations_use_is_declared() {
    let annotations = Annotations::parse(&annotation_text());
    let missing: Vec<&String> = annotations
        .types_used
        .iter()
        .filter(|name| {
            !annotations.classes.contains_key(*name) && !annotations.aliases.contains(*name)
        })
        .collect();
    assert!(missing.is_empty(), "undeclared types: {missing:?}");
}

#[test]
fn every_module_function_is_suggested_when_misspelt() {
    for member in module_members() {
        let Some(name) = member.strip_suffix(":function") else {
            continue;
        };
        // The first letter dropped: dropping the last one is ambiguous for
        // `state` (`stat` is as close to `stage`).
        let misspelt = &name[1..];
        let evaluation = evaluate(&format!(
            "local s = require(\"spindle\")\ns.{misspelt}(\"x\")\n"
        ));
        let hints: Vec<&str> = evaluation
            .diagnostics
            .iter()
            .filter_map(|d| d.hint.as_deref())
            .collect();
        assert_eq!(
            hints,
            [format!("did you mean `{name}`?")],
            "s.{misspelt}: {:?}",
            evaluation.diagnostics
        );
    }
}
