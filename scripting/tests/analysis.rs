//! The editor analysis: declarations, references and requires found in a
//! script's text; the context at a cursor (`$0` marks it); and the API
//! documentation kept equal to what the converters accept.

use spindle_scripting::analysis::{self, CursorContext, TableKind, api_docs};
use spindle_scripting::{Overlay, evaluate_with};

/// The index of `script`, one line per item with the text each span covers.
fn check_index(script: &str) -> String {
    let index = analysis::index(script);
    let mut out = String::new();
    for d in &index.declarations {
        out.push_str(&format!(
            "{} {:?} name={:?} full={:?}{}\n",
            d.kind.name(),
            d.name,
            &script[d.name_span.start..d.name_span.end],
            first_line(&script[d.full_span.start..d.full_span.end]),
            d.container
                .as_ref()
                .map(|c| format!(" in {c}"))
                .unwrap_or_default()
        ));
    }
    for r in &index.references {
        out.push_str(&format!(
            "ref {:?} {:?} at {:?}{}\n",
            r.kind,
            r.name,
            &script[r.span.start..r.span.end],
            r.container
                .as_ref()
                .map(|c| format!(" from {c}"))
                .unwrap_or_default()
        ));
    }
    for r in &index.requires {
        out.push_str(&format!(
            "require {:?} at {:?}\n",
            r.module,
            &script[r.span.start..r.span.end]
        ));
    }
    out
}

fn first_line(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    match lines.last() {
        Some(last) => format!("{first} ... {}", last.trim()),
        None => first,
    }
}

/// The context at `$0`.
fn check_context(script: &str) -> CursorContext {
    let offset = script.find("$0").expect("a $0 cursor");
    let text = script.replacen("$0", "", 1);
    analysis::cursor_context(&text, offset)
}

#[test]
fn declarations_references_and_requires() {
    insta::assert_snapshot!(check_index(
        r#"local s = require("spindle")
local common = require "common.defaults"
s.service "db" { command = { "sleep", "60" } }
s.service("cache", { command = "sleep 60", depends_on = "db" })
s.service "api" {
  command = { "sleep", "60" },
  depends_on = { db = "healthy", ["cache"] = "started" },
}
s.service "worker" { command = "x", depends_on = { "api", "db" } }
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
s.pipeline "ingest" {
  s.stage("clean", function(req) return req end),
  s.stage("embed", s.embed { service = "embedder", fallback = "small" }),
  s.stage("again", s.embed "embedder"),
}
"#
    ));
}

#[test]
fn a_script_that_does_not_parse_is_still_indexed_up_to_the_mistake() {
    insta::assert_snapshot!(check_index(
        r#"local s = require("spindle")
s.service "db" { command = { "sleep", "60" } }
s.service "api" { command = "x", depends_on = { db = "healthy" }
s.service "broken" { command = 
"#
    ));
}

#[test]
fn contexts_at_the_cursor() {
    let cases = [
        r#"local s = require("spindle") s.$0"#,
        r#"local s = require("spindle") s.ser$0"#,
        r#"s.service "a" { $0 }"#,
        r#"s.service "a" { command = "x", rest$0 }"#,
        r#"s.service "a" { rest$0
  command = "x" }"#,
        r#"s.service "a" { restart = { $0 } }"#,
        r#"s.service "a" { restart = { policy = "$0" } }"#,
        r#"s.service "a" { restart = "on$0" }"#,
        r#"s.service "a" { stop = { signal = "SIG$0" } }"#,
        r#"s.service "a" { depends_on = { $0 } }"#,
        r#"s.service "a" { depends_on = { db = "$0" } }"#,
        r#"s.service "a" { depends_on = { "$0" } }"#,
        r#"s.service "a" { ready = s.http_probe { $0 } }"#,
        r#"s.service "a" { embedding = { model = "$0" } }"#,
        r#"s.service "a" { embedding = { providers = { "$0" } } }"#,
        r#"s.pipeline "p" { s.stage("e", s.embed "$0") }"#,
        r#"s.pipeline "p" { s.stage("e", s.embed { fallback = "$0" }) }"#,
        r#"s.pipeline "p" { timeout = { $0 } }"#,
        r#"s.service "a" { restart$0 = "no" }"#,
        r#"local x = 1 + $0"#,
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|case| format!("{case}\n  => {:?}", check_context(case)))
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

/// Evaluates `script` and returns the hint of the diagnostic about the
/// made-up name `zzzzzzzzzzzz`.
fn first_hint(script: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    let mut overlay = Overlay::new();
    overlay.insert(&file, script.to_owned());
    let evaluation = evaluate_with(&file, &overlay);
    evaluation
        .diagnostics
        .iter()
        .find(|d| d.message.to_lowercase().contains("zzzzzzzzzzzz"))
        .and_then(|d| d.hint.clone())
        .unwrap_or_default()
}

/// The names a converter lists in a hint such as "the fields of X are: a, b".
fn listed(hint: &str) -> Vec<String> {
    let list = hint.rsplit(": ").next().unwrap_or_default();
    let mut names: Vec<String> = list.split(", ").map(str::to_owned).collect();
    names.sort();
    names
}

fn documented(kind: TableKind) -> Vec<String> {
    let mut names: Vec<String> = api_docs::fields(kind)
        .iter()
        .map(|doc| doc.name.to_owned())
        .collect();
    names.sort();
    names
}

fn words(values: &[api_docs::ValueDoc]) -> Vec<String> {
    let mut names: Vec<String> = values.iter().map(|v| v.word.to_owned()).collect();
    names.sort();
    names
}

#[test]
fn documented_fields_are_the_fields_the_converters_accept() {
    let s = "local s = require(\"spindle\")\n";
    let cases: Vec<(TableKind, String)> = vec![
        (
            TableKind::Service,
            format!("{s}s.service \"a\" {{ zzzzzzzzzzzz = 1 }}"),
        ),
        (
            TableKind::Restart,
            format!("{s}s.service \"a\" {{ command = \"x\", restart = {{ zzzzzzzzzzzz = 1 }} }}"),
        ),
        (
            TableKind::Stop,
            format!("{s}s.service \"a\" {{ command = \"x\", stop = {{ zzzzzzzzzzzz = 1 }} }}"),
        ),
        (
            TableKind::Embedding,
            format!("{s}s.service \"a\" {{ embedding = {{ model = \"m\", zzzzzzzzzzzz = 1 }} }}"),
        ),
        (
            TableKind::Pipeline,
            format!(
                "{s}s.pipeline \"p\" {{ zzzzzzzzzzzz = 1, s.stage(\"a\", function(r) return r end) }}"
            ),
        ),
        (
            TableKind::Timeout,
            format!(
                "{s}s.pipeline \"p\" {{ timeout = {{ zzzzzzzzzzzz = 1 }}, s.stage(\"a\", function(r) return r end) }}"
            ),
        ),
        (
            TableKind::Embed,
            format!(
                "{s}s.pipeline \"p\" {{ s.stage(\"a\", s.embed {{ service = \"e\", zzzzzzzzzzzz = 1 }}) }}"
            ),
        ),
        (
            TableKind::Netlink,
            format!(
                "{s}s.pipeline \"p\" {{ from = {{ s.netlink {{ zzzzzzzzzzzz = 1 }} }}, s.stage(\"a\", function(r) return r end) }}"
            ),
        ),
        (
            TableKind::Settings,
            format!("{s}s.settings {{ zzzzzzzzzzzz = 1 }}"),
        ),
    ];
    for (kind, script) in cases {
        assert_eq!(
            documented(kind),
            listed(&first_hint(&script)),
            "fields of {kind:?}"
        );
    }
    for (kind, probe, required) in [
        (
            analysis::ProbeKind::Exec,
            "exec_probe",
            "command = \"true\"",
        ),
        (
            analysis::ProbeKind::Http,
            "http_probe",
            "url = \"http://x/\"",
        ),
        (analysis::ProbeKind::Tcp, "tcp_probe", "address = \"x:1\""),
        (
            analysis::ProbeKind::Lua,
            "lua_probe",
            "check = function() end",
        ),
    ] {
        let script = format!(
            "{s}s.service \"a\" {{ command = \"x\", ready = s.{probe} {{ {required}, zzzzzzzzzzzz = 1 }} }}"
        );
        assert_eq!(
            documented(TableKind::Probe(kind)),
            listed(&first_hint(&script)),
            "fields of {probe}"
        );
    }
}

#[test]
fn documented_words_are_the_words_the_converters_accept() {
    let s = "local s = require(\"spindle\")\n";
    let hint = first_hint(&format!(
        "{s}s.service \"db\" {{ command = \"x\" }}\ns.service \"a\" {{ command = \"x\", depends_on = {{ db = \"zzzzzzzzzzzz\" }} }}"
    ));
    assert_eq!(words(api_docs::CONDITIONS), listed(&hint));
    let hint = first_hint(&format!(
        "{s}s.service \"a\" {{ command = \"x\", restart = \"zzzzzzzzzzzz\" }}"
    ));
    assert_eq!(words(api_docs::POLICIES), listed(&hint));
    let hint = first_hint(&format!(
        "{s}s.service \"a\" {{ command = \"x\", stop = {{ signal = \"zzzzzzzzzzzz\" }} }}"
    ));
    assert_eq!(words(api_docs::SIGNALS), listed(&hint));
    let hint = first_hint(&format!(
        "{s}s.service \"a\" {{ embedding = {{ model = \"m\", providers = {{ \"zzzzzzzzzzzz\" }} }} }}"
    ));
    assert_eq!(words(api_docs::PROVIDERS), listed(&hint));
}

#[test]
fn module_functions_are_the_module_s_functions() {
    // Every documented function exists in the module and every function of
    // the module is documented.
    let script = "local s = require(\"spindle\")\nlocal names = {}\nfor k in pairs(s) do names[#names + 1] = k end\ntable.sort(names)\nerror(table.concat(names, \",\"))\n";
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    let mut overlay = Overlay::new();
    overlay.insert(&file, script.to_owned());
    let evaluation = evaluate_with(&file, &overlay);
    let message = &evaluation.diagnostics[0].message;
    let mut members: Vec<String> = message.split(',').map(str::to_owned).collect();
    members.sort();
    let mut documented: Vec<String> = api_docs::module_functions()
        .iter()
        .map(|doc| doc.name.to_owned())
        .collect();
    documented.sort();
    assert_eq!(documented, members);
}

#[test]
fn offsets_of_lines_and_columns() {
    let text = "ab\ncé d\n";
    assert_eq!(analysis::offset_of(text, 1, 1), 0);
    assert_eq!(analysis::offset_of(text, 2, 3), 6);
    assert_eq!(analysis::offset_of(text, 2, 99), 8);
    let span = analysis::token_span_at("s.service \"api\" {", 10);
    assert_eq!((span.start, span.end), (10, 15));
}
