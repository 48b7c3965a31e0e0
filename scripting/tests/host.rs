//! The script host keeps a script's Lua alive and answers Lua checks on its
//! own thread, stopping a check that runs past its timeout.

use std::sync::mpsc;
use std::time::Duration;

use spindle_scripting::{CheckResult, FunctionId, ProbeCheck, ScriptHost};

fn call(host: &ScriptHost, function: FunctionId, timeout: Duration) -> CheckResult {
    let (sender, receiver) = mpsc::channel();
    host.call_check(
        function,
        timeout,
        Box::new(move |result| sender.send(result).expect("test waits")),
    );
    receiver.recv().expect("the host answers")
}

fn probe_function(host_script: &str, service: &str) -> (ScriptHost, FunctionId, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("graph.lua");
    std::fs::write(&file, host_script).expect("write");
    let (host, evaluation) = ScriptHost::start(&file).expect("host starts");
    let graph = evaluation.graph.expect("valid graph");
    let probe = graph.service(service).and_then(|s| s.readiness.clone());
    let Some(ProbeCheck::Lua { function }) = probe.map(|p| p.check) else {
        panic!("{service} has a Lua readiness probe");
    };
    (host, function, dir)
}

#[test]
fn lua_checks_keep_state_between_calls() {
    let (host, function, _dir) = probe_function(
        r#"local s = require("spindle")
local calls = 0
s.service "db" {
  command = { "sleep", "60" },
  ready = s.lua_probe { check = function() calls = calls + 1 return calls >= 3 end },
}
"#,
        "db",
    );
    let timeout = Duration::from_secs(5);
    assert_eq!(call(&host, function, timeout), Ok(false));
    assert_eq!(call(&host, function, timeout), Ok(false));
    assert_eq!(call(&host, function, timeout), Ok(true));
}

#[test]
fn a_check_that_loops_forever_fails_at_its_timeout() {
    let (host, function, _dir) = probe_function(
        r#"local s = require("spindle")
s.service "db" {
  command = { "sleep", "60" },
  ready = s.lua_probe { check = function() while true do end end },
}
"#,
        "db",
    );
    let error = call(&host, function, Duration::from_millis(50)).expect_err("times out");
    assert!(error.contains("ran past its timeout"), "{error}");
    assert!(error.contains("graph.lua:4"), "{error}");
}

#[test]
fn a_check_that_raises_fails_with_the_line() {
    let (host, function, _dir) = probe_function(
        r#"local s = require("spindle")
s.service "db" {
  command = { "sleep", "60" },
  ready = s.lua_probe { check = function()
    error("database not ready")
  end },
}
"#,
        "db",
    );
    let error = call(&host, function, Duration::from_secs(1)).expect_err("fails");
    assert!(
        error.ends_with("graph.lua:5: database not ready"),
        "{error}"
    );
}
