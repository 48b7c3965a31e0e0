//! `spindle check` and `spindle graph` through the real binary: exit codes,
//! what goes to stdout and what to stderr, and every output format, as insta
//! snapshots. One `cli` helper: the script as a raw string in, the run
//! rendered as text out (the temporary folder shown as `[DIR]`).

mod support;

use std::process::Command;

/// Writes `script` as `graph.lua` in a fresh folder, runs `spindle ARGS
/// graph.lua ...` (the file goes where `{}` stands in `args`) and renders
/// the exit code, stdout and stderr.
fn cli(args: &[&str], script: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    std::fs::write(&file, script).expect("write script");
    let mut command = Command::new(env!("CARGO_BIN_EXE_spindle"));
    for arg in args {
        match *arg {
            "{}" => command.arg(&file),
            other => command.arg(other),
        };
    }
    let output = support::output(command.env("NO_COLOR", "1"));
    let root = dir.path().display().to_string();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).replace(&root, "[DIR]");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output
            .status
            .code()
            .map_or("signal".to_owned(), |code| code.to_string()),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Services in three waves, an embedding pair with a fallback, and a
/// pipeline with both kinds of extra source.
const GRAPH: &str = r#"local s = require("spindle")

s.service "db" {
  command = { "sleep", "60" },
  ready = s.tcp_probe { address = "127.0.0.1:5432" },
  critical = true,
}
s.service "migrate" { command = "echo migrated", restart = "no", depends_on = { db = "healthy" } }
s.service "api" {
  command = { "sleep", "60" },
  depends_on = { db = "healthy", migrate = "completed" },
}
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2", providers = { "cuda", "cpu" } } }
s.service "small" { embedding = { model = "paraphrase-MiniLM-L3-v2" } }

s.pipeline "ingest" {
  from = { s.http_route "/v1/ingest", s.netlink { family = "spindle" } },
  s.stage("clean", function(req) req.text = req.text:gsub("%s+", " ") return req end),
  s.stage("embed", s.embed { service = "embedder", fallback = "small" }),
}
s.pipeline "search" {
  s.stage("embed", s.embed "small"),
}
"#;

const BROKEN: &str = r#"local s = require("spindle")
s.service "db" {
  comand = { "sleep", "60" },
  restart = { policy = "sometimes" },
}
s.service "api" { command = { "sleep", "60" }, depends_on = { "bd" } }
"#;

#[test]
fn check_of_a_good_script_prints_a_summary_only() {
    insta::assert_snapshot!(cli(
        &["check", "{}"],
        r#"local s = require("spindle")
s.service "db" { command = { "sleep", "60" } }
s.service "api" { command = { "sleep", "60" }, depends_on = { db = "started" } }
"#
    ), @r"
    exit: 0
    --- stdout
    --- stderr
    [DIR]/graph.lua: ok, 2 service(s), 0 warning(s)
    ");
}

#[test]
fn check_of_a_bad_script_prints_every_error_with_its_hint_and_exits_1() {
    insta::assert_snapshot!(cli(&["check", "{}"], BROKEN));
}

#[test]
fn check_prints_warnings_and_still_exits_0() {
    insta::assert_snapshot!(cli(
        &["check", "{}"],
        r#"local s = require("spindle")
s.service "job" { command = "echo done", restart = "always" }
s.service "app" {
  command = { "sleep", "60" },
  cwd = "no-such-folder",
  depends_on = { job = "completed" },
}
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
s.pipeline "kernel" {
  from = s.netlink { family = "spindle" },
  s.stage("embed", s.embed "embedder"),
}
"#
    ));
}

#[test]
fn check_of_a_missing_file_says_so_and_exits_1() {
    let output = support::output(
        Command::new(env!("CARGO_BIN_EXE_spindle")).args(["check", "no/such/graph.lua"]),
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("no/such/graph.lua:1:1: error: cannot read the script"),
        "{stdout}"
    );
    assert!(stdout.contains("hint: "), "{stdout}");
}

#[test]
fn graph_as_text_shows_waves_and_pipelines() {
    insta::assert_snapshot!(cli(&["graph", "{}"], GRAPH));
}

#[test]
fn graph_as_json() {
    insta::assert_snapshot!(cli(&["graph", "{}", "--format", "json"], GRAPH));
}

#[test]
fn graph_as_dot() {
    insta::assert_snapshot!(cli(&["graph", "{}", "--format", "dot"], GRAPH));
}

#[test]
fn graph_of_a_bad_script_prints_diagnostics_to_stderr_and_exits_1() {
    insta::assert_snapshot!(cli(&["graph", "{}", "--format", "json"], BROKEN));
}

#[test]
fn check_and_graph_have_examples_in_their_help() {
    for command in ["check", "graph"] {
        let output =
            support::output(Command::new(env!("CARGO_BIN_EXE_spindle")).args([command, "--help"]));
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(
            help.contains(&format!("spindle {command} examples/quickstart.lua")),
            "{help}"
        );
    }
}
