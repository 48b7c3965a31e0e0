//! Every class of script mistake, as `spindle check` prints it. One `check`
//! helper: the script as a raw string in, the printed diagnostics out as an
//! insta snapshot (file paths shown relative to the script's folder).

use std::path::Path;

use spindle_scripting::evaluate_file;

/// Writes `files` (name, text) into a fresh folder, evaluates the first one
/// and renders its diagnostics the way `spindle check` does.
fn check_files(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write script");
    }
    let evaluation = evaluate_file(&dir.path().join(files[0].0));
    let root = format!("{}/", dir.path().display());
    let mut out: String = evaluation
        .diagnostics
        .iter()
        .map(|d| format!("{d}\n").replace(&root, ""))
        .collect();
    if let Some(graph) = evaluation.graph {
        out.push_str("graph: ");
        let waves: Vec<String> = graph
            .waves()
            .iter()
            .map(|wave| {
                let names: Vec<&str> = wave.iter().map(|s| s.name.as_str()).collect();
                names.join(",")
            })
            .collect();
        out.push_str(&waves.join(" | "));
        out.push('\n');
    }
    out
}

fn check(script: &str) -> String {
    check_files(&[("graph.lua", script)])
}

#[test]
fn a_valid_graph_has_waves_and_no_diagnostics() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" { command = { "sleep", "60" }, ready = s.tcp_probe { address = "127.0.0.1:5432" } }
s.service "migrate" { command = "echo migrated", restart = "no", depends_on = { db = "healthy" } }
s.service "api" {
  command = { "sleep", "60" },
  depends_on = { migrate = "completed", db = "healthy" },
  live = s.http_probe { url = "http://127.0.0.1:8080/health", period = "2s", failures = 2 },
}
s.service "worker" { command = { "sleep", "60" }, depends_on = { "db" } }
"#
    ));
}

#[test]
fn syntax_error_points_at_the_token() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" {
  command = { "sleep" "60" },
}
"#
    ));
}

#[test]
fn unknown_fields_suggest_the_near_name() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" {
  comand = { "sleep", "60" },
  restart = { policy = "always", backofff = "1s..5s" },
  frobnicate = true,
}
"#
    ));
}

#[test]
fn wrong_types_name_what_was_expected() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" {
  command = { "sleep", {} },
  critical = "yes",
  env = { PORT = 5432, BAD = {} },
  ready = "http://127.0.0.1/",
}
s.service(42) { command = { "true" } }
"#
    ));
}

#[test]
fn bad_durations_and_choices() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" {
  command = { "sleep", "60" },
  ready = s.exec_probe { command = { "true" }, period = "5 parsecs", timeout = "10" },
  restart = { policy = "sometimes", backoff = "10s..1s", jitter = 3 },
  stop = { signal = "SIGTERN", grace = "soon" },
}
"#
    ));
}

#[test]
fn probes_need_their_target() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" {
  command = { "sleep", "60" },
  ready = s.http_probe { period = "1s" },
  live = s.tcp_probe { address = "localhost" },
}
s.service "web" { command = { "sleep", "60" }, ready = s.http_probe { url = "https://x/" } }
"#
    ));
}

#[test]
fn unknown_dependencies_and_conditions() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "database" { command = { "sleep", "60" } }
s.service "api" {
  command = { "sleep", "60" },
  depends_on = { databse = "healthy", cache = "started", database = "ready" },
}
"#
    ));
}

#[test]
fn duplicate_names_point_at_both() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" { command = { "sleep", "60" } }
s.service "api" { command = { "sleep", "60" } }
  s.service "db" { command = { "sleep", "61" } }
"#
    ));
}

#[test]
fn cycles_are_named_in_order() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "a" { command = { "true" }, depends_on = { "c" } }
s.service "b" { command = { "true" }, depends_on = { "a" } }
s.service "c" { command = { "true" }, depends_on = { "b" } }
s.service "self" { command = { "true" }, depends_on = { "self" } }
s.service "ok" { command = { "true" } }
"#
    ));
}

#[test]
fn runtime_errors_and_misspelt_api() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "db" { command = { "sleep", "60" } }
s.servce "api" { command = { "sleep", "60" } }
"#
    ));
}

#[test]
fn memory_limit_stops_a_runaway_script() {
    insta::assert_snapshot!(check(
        r#"local parts = {}
while true do parts[#parts + 1] = string.rep("x", 1024 * 1024) end
"#
    ));
}

#[test]
fn require_resolves_next_to_the_script_only() {
    insta::assert_snapshot!(check_files(&[
        (
            "graph.lua",
            r#"local s = require("spindle")
local common = require("common")
s.service "db" { command = common.sleeper }
require("socket")
"#,
        ),
        ("common.lua", "return { sleeper = { \"sleep\", \"60\" } }\n"),
    ]));
}

#[test]
fn env_files_are_read_and_checked() {
    let out = check_files(&[
        (
            "graph.lua",
            r#"local s = require("spindle")
s.service "db" { command = { "env" }, env_file = ".env", env = { B = "2" } }
s.service "bad" { command = { "env" }, env_file = "missing.env" }
"#,
        ),
        (".env", "# settings\nA=1\nexport C=\"three\"\nnot a pair\n"),
    ]);
    insta::assert_snapshot!(out);
}

#[test]
fn services_keep_declared_fields() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    std::fs::write(
        &file,
        r#"local s = require("spindle")
s.service "db" {
  command = { "sleep", "60" },
  env = { A = "1" },
  ready = s.exec_probe { command = { "true" }, period = "250ms", timeout = "2s", failures = 4, successes = 2, initial_delay = "1s" },
  restart = { policy = "always", backoff = "100ms..3s", jitter = 0.5, max = 7, window = "30s" },
  stop = { signal = "INT", grace = "1500ms" },
  critical = true,
}
"#,
    )
    .expect("write");
    let graph = evaluate_file(&file).graph.expect("valid graph");
    let db = graph.service("db").expect("db");
    let probe = db.readiness.as_ref().expect("probe");
    assert_eq!(probe.period.as_millis(), 250);
    assert_eq!(probe.timeout.as_secs(), 2);
    assert_eq!((probe.failure_threshold, probe.success_threshold), (4, 2));
    assert_eq!(probe.initial_delay.as_secs(), 1);
    assert_eq!(db.restart.backoff_initial.as_millis(), 100);
    assert_eq!(db.restart.backoff_max.as_secs(), 3);
    assert_eq!((db.restart.max_restarts, db.restart.jitter), (7, 0.5));
    assert_eq!(
        (db.shutdown.signal, db.shutdown.grace.as_millis()),
        (2, 1500)
    );
    assert!(db.critical);
    assert_eq!(db.location.line, 2);
    assert_eq!(db.location.column, 3);
    assert_eq!(
        graph.file.parent().map(Path::to_path_buf),
        Some(dir.path().to_path_buf())
    );
}

#[test]
fn pipelines_are_checked_stage_by_stage() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
s.service "db" { command = { "sleep", "60" } }
s.pipeline "ingest" {
  from = { s.http_route "v1/ingest", s.netlink { famly = "spindle" } },
  timeout = { high = "1s", urgent = "5s" },
  s.stage("clean", function(req) return req end),
  s.stage("clean", function(req) return req end),
  s.stage("embed", s.embed "embeder"),
  s.stage("store", s.embed "db"),
  s.stage("oops", 42),
  retries = 3,
}
s.pipeline "empty" {}
s.pipeline "ingest" { s.stage("x", function(req) return req end) }
"#
    ));
}

#[test]
fn a_valid_pipeline_keeps_its_stages_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    std::fs::write(
        &file,
        r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2", providers = { "cuda", "cpu" } } }
s.service "small" { embedding = { model = "paraphrase-MiniLM-L3-v2" } }
s.pipeline "ingest" {
  from = { s.netlink { family = "spindle" }, s.http_route "/v1/ingest" },
  timeout = { high = "500ms", low = "30s" },
  fallback = function(req, err) req.degraded = true return req end,
  s.stage("clean", function(req) req.text = req.text:gsub("%s+", " ") return req end),
  s.stage("embed", s.embed { service = "embedder", fallback = "small" }),
  s.stage("store", { budget = "2s" }, function(req) return req end),
  budget = "250ms",
}
"#,
    )
    .expect("write");
    let evaluation = evaluate_file(&file);
    // No diagnostic at all.
    let found: Vec<(u32, u32, &str)> = evaluation
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.severity.name()))
        .collect();
    assert_eq!(found, [], "{:?}", evaluation.diagnostics);
    let graph = evaluation.graph.expect("valid");
    let pipeline = graph.pipeline("ingest").expect("pipeline");
    let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["clean", "embed", "store"]);
    assert_eq!(
        pipeline.stages[1].kind,
        spindle_scripting::StageKind::Embed {
            service: "embedder".to_owned(),
            fallback: Some("small".to_owned()),
            shared_with: Vec::new(),
        }
    );
    assert_eq!(pipeline.stages[2].location.line, 10);
    assert_eq!(
        pipeline.sources,
        [
            spindle_scripting::SourceSpec::Netlink {
                family: "spindle".to_owned()
            },
            spindle_scripting::SourceSpec::Http {
                route: "/v1/ingest".to_owned()
            }
        ]
    );
    assert_eq!(pipeline.timeouts.high.map(|d| d.as_millis()), Some(500));
    assert_eq!(pipeline.timeouts.medium, None);
    assert!(pipeline.fallback.is_some());
    let millis = |stage: usize| {
        pipeline
            .stage_budget(&pipeline.stages[stage])
            .map(|d| d.as_millis())
    };
    assert_eq!(pipeline.budget.map(|d| d.as_millis()), Some(250));
    assert_eq!(pipeline.stages[0].budget, None);
    assert_eq!((millis(0), millis(2)), (Some(250), Some(2000)));
}

#[test]
fn budgets_are_checked_on_stages_and_pipelines() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
s.pipeline "ingest" {
  budget = "0s",
  s.stage("clean", { budget = "fast" }, function(req) return req end),
  s.stage("embed", { budget = "1s" }, s.embed "embedder"),
  s.stage("score", { budgte = "1s" }, function(req) return req end),
  s.stage("late", function(req) return req end, { budget = "1s" }),
}
s.pipeline "typed" { budget = true, s.stage("x", function(req) return req end) }
"#
    ));
}

#[test]
fn remote_embedding_services_and_shared_stages_are_checked() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "local" { embedding = { model = "all-MiniLM-L6-v2" } }
s.service "remote" { embedding = { url = "http://10.0.0.5:7997", model = "all-MiniLM-L6-v2", dimensions = 384 } }
s.service "tls" { embedding = { url = "https://example.invalid", model = "m" } }
s.service "path" { embedding = { url = "http://127.0.0.1:7997/v1", model = "m" } }
s.service "wrong" { embedding = { url = "http://127.0.0.1:7997", api = "grpc", model = "m", threads = 2 } }
s.service "stray" { embedding = { model = "all-MiniLM-L6-v2", api = "tei" } }
s.pipeline "shared" { s.stage("embed", s.embed { services = { "local", "remote", "missing" } }) }
s.pipeline "both" { s.stage("embed", s.embed { service = "local", services = { "remote" } }) }
"#
    ));
}

#[test]
fn a_remote_service_is_ready_when_its_health_route_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    std::fs::write(
        &file,
        r#"local s = require("spindle")
s.service "local" { embedding = { model = "all-MiniLM-L6-v2" } }
s.service "remote" { embedding = { url = "http://127.0.0.1:7997/", api = "tei", model = "m", timeout = "5s" } }
s.pipeline "shared" { s.stage("embed", s.embed { services = { "remote", "local" } }) }
"#,
    )
    .expect("write");
    let evaluation = spindle_scripting::evaluate_file(&file);
    assert!(
        evaluation.diagnostics.is_empty(),
        "{:?}",
        evaluation.diagnostics
    );
    let graph = evaluation.graph.expect("valid");
    let remote = graph.service("remote").expect("remote");
    let spindle_scripting::ServiceKind::Embedding(embedding) = &remote.kind else {
        panic!("an embedding service");
    };
    let spec = embedding.remote.as_ref().expect("remote");
    assert_eq!(spec.url, "http://127.0.0.1:7997");
    assert_eq!(spec.api, spindle_scripting::RemoteApi::Tei);
    assert_eq!(spec.timeout, std::time::Duration::from_secs(5));
    let probe = remote
        .readiness
        .as_ref()
        .expect("an implied readiness probe");
    assert_eq!(
        probe.check,
        spindle_scripting::ProbeCheck::Http {
            url: "http://127.0.0.1:7997/health".to_owned()
        }
    );
    assert_eq!(
        graph.pipelines[0].stages[0].kind,
        spindle_scripting::StageKind::Embed {
            service: "remote".to_owned(),
            fallback: None,
            shared_with: vec!["local".to_owned()],
        }
    );
}

#[test]
fn settings_are_checked_field_by_field() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.settings {
  journal = 42,
  jornal = "j",
}
s.settings { journal = "elsewhere" }
s.settings "journal"
"#
    ));
    let journal_is = |value: &str| {
        check_files(&[
            (
                "graph.lua",
                &format!("local s = require(\"spindle\")\ns.settings {{ journal = {value} }}\n"),
            ),
            ("file.lua", "-- a file where a folder belongs\n"),
        ])
    };
    insta::assert_snapshot!(
        "settings_journal_empty_or_a_file",
        format!("{}{}", journal_is("\"\""), journal_is("\"file.lua\""))
    );
}

#[test]
fn the_journal_setting_resolves_against_the_script_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::write(
        sub.join("graph.lua"),
        "local s = require(\"spindle\")\ns.settings { journal = \"../journal\" }\n",
    )
    .expect("write");
    let graph = evaluate_file(&sub.join("graph.lua"))
        .graph
        .expect("a graph");
    assert_eq!(graph.settings.journal, Some(sub.join("../journal")));
    std::fs::write(
        sub.join("absolute.lua"),
        "local s = require(\"spindle\")\ns.settings { journal = \"/var/tmp/j\" }\n",
    )
    .expect("write");
    let graph = evaluate_file(&sub.join("absolute.lua"))
        .graph
        .expect("a graph");
    assert_eq!(
        graph.settings.journal,
        Some(std::path::PathBuf::from("/var/tmp/j"))
    );
    let graph = evaluate_file(&{
        std::fs::write(sub.join("none.lua"), "local s = require(\"spindle\")\n").expect("write");
        sub.join("none.lua")
    })
    .graph
    .expect("a graph");
    assert_eq!(graph.settings.journal, None);
}

#[test]
fn embedding_sessions_are_counted_and_only_for_an_engine_here() {
    insta::assert_snapshot!(check(
        r#"local s = require("spindle")
s.service "none" { embedding = { model = "all-MiniLM-L6-v2", sessions = 0 } }
s.service "far" { embedding = { model = "all-MiniLM-L6-v2", url = "http://127.0.0.1:7997", sessions = 2 } }
s.service "two" { embedding = { model = "all-MiniLM-L6-v2", threads = 1, sessions = 2 } }
"#
    ));
}
