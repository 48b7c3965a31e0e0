//! Errors a script raises itself, wherever Lua puts their position: the
//! diagnostic names the file and line of the raising code even when the
//! message has no position (`error(text, 0)`) or points at the caller
//! (`error(text, 2)` from a required module), at the column of the name a
//! "nil value" error names, with a did-you-mean for every `spindle` function.

use spindle_scripting::evaluate_file;

/// Writes `files` (name, text) into a fresh folder, evaluates the first one
/// and prints its diagnostics as `spindle check` does, paths relative.
fn check(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write script");
    }
    let evaluation = evaluate_file(&dir.path().join(files[0].0));
    let root = format!("{}/", dir.path().display());
    evaluation
        .diagnostics
        .iter()
        .map(|d| format!("{d}\n").replace(&root, ""))
        .collect()
}

#[test]
fn an_error_without_a_position_takes_the_line_that_raised_it() {
    insta::assert_snapshot!(check(&[(
        "graph.lua",
        r#"local s = require("spindle")

error("the configuration is incomplete", 0)
"#
    )]), @r"
    graph.lua:3:1: error: the configuration is incomplete
      hint: the script raised this error while it was evaluated
    ");
}

#[test]
fn an_error_blamed_on_the_caller_points_at_the_caller() {
    insta::assert_snapshot!(check(&[
        ("graph.lua", "local helper = require(\"helper\")\n\nhelper.need(nil)\n"),
        (
            "helper.lua",
            "return { need = function(value) if value == nil then error(\"a value is needed\", 2) end end }\n"
        ),
    ]), @r"
    graph.lua:3:1: error: a value is needed
      hint: the script raised this error while it was evaluated
    ");
}

#[test]
fn a_misspelt_pipeline_function_suggests_the_right_one() {
    insta::assert_snapshot!(check(&[(
        "graph.lua",
        r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
s.pipeline "ingest" {
  s.stag("embed", s.embed "embedder"),
}
"#
    )]), @r"
    graph.lua:4:5: error: attempt to call a nil value (field 'stag')
      hint: did you mean `stage`?
    ");
}
