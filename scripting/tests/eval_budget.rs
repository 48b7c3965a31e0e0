//! The evaluation budget: a script that never ends is cut off and reported
//! where it was running, however it tries to go on (`pcall`, coroutines), and
//! the memory limit still reports a script that allocates without end.

use spindle_scripting::{Overlay, evaluate_with};

/// Evaluates `script` (held in an overlay: no file on disk) and renders its
/// diagnostics with the folder taken out.
fn check(script: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    let mut overlay = Overlay::new();
    overlay.insert(&file, script.to_owned());
    let evaluation = evaluate_with(&file, &overlay);
    let root = format!("{}/", dir.path().display());
    evaluation
        .diagnostics
        .iter()
        .map(|d| format!("{d}\n").replace(&root, ""))
        .collect()
}

#[test]
fn a_loop_that_never_ends_is_cut_off_at_its_line() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" { command = { "sleep", "60" } }
local n = 0
while true do
  n = n + 1
end
"#
    ));
}

#[test]
fn pcall_in_a_loop_does_not_escape_the_budget() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
while true do
  pcall(function() while true do end end)
end
"#
    ));
}

#[test]
fn a_coroutine_that_never_ends_is_cut_off() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
local spin = coroutine.wrap(function()
  while true do
    pcall(function() while true do end end)
  end
end)
spin()
"#
    ));
}

#[test]
fn a_resumed_coroutine_in_a_loop_is_cut_off() {
    insta::assert_snapshot!(check(
        r#"while true do
  coroutine.resume(coroutine.create(function() while true do end end))
end
"#
    ));
}

#[test]
fn a_script_that_allocates_without_end_hits_the_memory_limit() {
    insta::assert_snapshot!(check(
        r#"local t = {}
local i = 0
while true do
  i = i + 1
  t[i] = string.rep("x", 1024) .. i
end
"#
    ));
}

#[test]
fn a_normal_script_is_not_slowed_into_the_budget() {
    // 2,000 services in a loop: far under the budget.
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
for i = 1, 2000 do
  s.service("svc" .. i) { command = { "sleep", "60" } }
end
"#
    ));
}
