//! Operating a running kernel, with real processes: restart one service
//! (its dependents follow, others keep their pid), stop and start one,
//! recover a service that gave up, reload an edited script as a diff (an
//! invalid edit changes nothing), and no changes while shutting down.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use spindle_kernel::supervisor::ServiceState;
use spindle_kernel::{Kernel, KernelConfig, KernelError, KernelEvent, KernelSource, Submission};
use spindle_scheduler::{Outcome, Priority, Source};

const GRAPH: &str = r#"local s = require("spindle")
s.service "db" { command = { "sleep", "600" } }
s.service "api" { command = { "sleep", "601" }, depends_on = { db = "healthy" } }
s.service "cron" { command = { "sleep", "602" } }
s.pipeline "echo" { s.stage("tag", function(req) req.version = "one" return req end) }
"#;

fn start(dir: &Path, script: &str) -> Kernel {
    let file = dir.join("graph.lua");
    std::fs::write(&file, script).expect("write");
    Kernel::start(KernelSource::Script(file), KernelConfig::default()).expect("starts")
}

/// Waits on events until `done` holds for the services' states and pids.
async fn wait_until(
    kernel: &Kernel,
    what: &str,
    done: impl Fn(&BTreeMap<String, (ServiceState, Option<u32>)>) -> bool,
) -> BTreeMap<String, (ServiceState, Option<u32>)> {
    let mut events = kernel.subscribe(false);
    loop {
        let now: BTreeMap<String, (ServiceState, Option<u32>)> = kernel
            .services()
            .into_iter()
            .map(|service| (service.name, (service.state, service.pid)))
            .collect();
        if done(&now) {
            return now;
        }
        match events.recv().await {
            Some(_) => {}
            None => panic!("the kernel stopped while waiting for {what}: {now:?}"),
        }
    }
}

fn all_ready(
    names: &'static [&'static str],
) -> impl Fn(&BTreeMap<String, (ServiceState, Option<u32>)>) -> bool {
    move |services| {
        names.iter().all(|name| {
            services
                .get(*name)
                .is_some_and(|(state, _)| *state == ServiceState::Ready)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_stop_start_keep_dependency_order_and_leave_others_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = start(dir.path(), GRAPH);
    let before = wait_until(&kernel, "all ready", all_ready(&["db", "api", "cron"])).await;
    let mut events = kernel.subscribe(false);

    kernel.restart_service("db").await.expect("restart");
    let after = wait_until(&kernel, "all ready again", |services| {
        all_ready(&["db", "api", "cron"])(services)
            && services["db"].1 != before["db"].1
            && services["api"].1 != before["api"].1
    })
    .await;
    assert_eq!(after["cron"].1, before["cron"].1, "cron kept its pid");
    // api stopped before db did, and started after db was ready again.
    let mut order = Vec::new();
    while order.len() < 4 {
        if let Some(KernelEvent::Service(event)) = events.recv().await {
            match (event.service.as_str(), event.to) {
                ("api", ServiceState::Stopped) => order.push("api stopped"),
                ("db", ServiceState::Stopped) => order.push("db stopped"),
                ("db", ServiceState::Ready) => order.push("db ready"),
                ("api", ServiceState::Ready) => order.push("api ready"),
                _ => {}
            }
        }
    }
    assert_eq!(
        order,
        ["api stopped", "db stopped", "db ready", "api ready"]
    );

    kernel.stop_service("db").await.expect("stop");
    let stopped = wait_until(&kernel, "db and api down", |services| {
        services["db"].0 == ServiceState::Stopped && services["api"].0 == ServiceState::Pending
    })
    .await;
    assert_eq!(stopped["cron"].1, before["cron"].1);
    kernel.start_service("db").await.expect("start");
    wait_until(
        &kernel,
        "all ready after start",
        all_ready(&["db", "api", "cron"]),
    )
    .await;

    let error = kernel.stop_service("nope").await.expect_err("unknown");
    assert!(
        error.to_string().contains("no service named `nope`"),
        "{error}"
    );
    assert!(error.to_string().contains("db, api, cron"), "{error}");

    kernel.shutdown();
    let error = kernel
        .restart_service("db")
        .await
        .expect_err("shutting down");
    assert!(error.to_string().contains("shutting down"), "{error}");
    kernel.wait().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_gave_up_is_recovered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("healthy");
    let script = format!(
        r#"local s = require("spindle")
s.service "flaky" {{
  command = {{ "sh", "-c", "test -f {marker} && exec sleep 600; exit 3" }},
  restart = {{ policy = "on-failure", backoff = "10ms..20ms", max = 2, window = "60s" }},
}}
s.service "other" {{ command = {{ "sleep", "600" }} }}
"#,
        marker = marker.display()
    );
    let kernel = start(dir.path(), &script);
    wait_until(&kernel, "flaky gave up", |services| {
        services["flaky"].0 == ServiceState::GaveUp
    })
    .await;
    std::fs::write(&marker, "").expect("marker");
    kernel.recover_service("flaky").await.expect("recover");
    wait_until(&kernel, "flaky ready", all_ready(&["flaky", "other"])).await;
    let flaky = kernel
        .services()
        .into_iter()
        .find(|service| service.name == "flaky")
        .expect("flaky");
    assert!(
        flaky.reason.contains("no readiness probe"),
        "{}",
        flaky.reason
    );
    kernel.shutdown();
    kernel.wait().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_diff_and_an_invalid_edit_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = start(dir.path(), GRAPH);
    let before = wait_until(&kernel, "all ready", all_ready(&["db", "api", "cron"])).await;
    let file = dir.path().join("graph.lua");

    // A mistake first: diagnostics, and nothing changes.
    std::fs::write(
        &file,
        GRAPH.replace("command = { \"sleep\", \"602\" }", "comand = 1"),
    )
    .expect("write");
    let KernelError::Script { diagnostics, .. } = kernel.reload().await.expect_err("invalid")
    else {
        panic!("a script error");
    };
    assert!(
        diagnostics.iter().any(|d| d.message.contains("comand")),
        "{diagnostics:?}"
    );
    assert_eq!(kernel.graph().services.len(), 3);

    // cron changes, api goes, worker comes; db stays as it is; the
    // pipeline answers with its new version.
    let edited = r#"local s = require("spindle")
-- a comment moves every line: positions alone change nothing
s.service "db" { command = { "sleep", "600" } }
s.service "cron" { command = { "sleep", "603" } }
s.service "worker" { command = { "sleep", "604" }, depends_on = { db = "healthy" } }
s.pipeline "echo" { s.stage("tag", function(req) req.version = "two" return req end) }
"#;
    std::fs::write(&file, edited).expect("write");
    let report = kernel.reload().await.expect("reloads");
    assert_eq!(report.unchanged, ["db"]);
    assert_eq!(report.changed, ["cron"]);
    assert_eq!(report.removed, ["api"]);
    assert_eq!(report.added, ["worker"]);
    let after = wait_until(&kernel, "the new graph ready", |services| {
        all_ready(&["db", "cron", "worker"])(services)
            && !services.contains_key("api")
            && services["cron"].1 != before["cron"].1
    })
    .await;
    assert_eq!(after["db"].1, before["db"].1, "db kept its pid");

    let answer = kernel
        .submit(Submission {
            pipeline: "echo".to_owned(),
            text: "x".to_owned(),
            priority: Priority::High,
            deadline: Some(Duration::from_secs(30)),
            correlation_id: None,
            source: Source::Scenario,
        })
        .await;
    let Outcome::Ok(answer) = answer.outcome else {
        panic!("ok: {:?}", answer.outcome);
    };
    assert_eq!(answer.fields["version"], "two");
    kernel.shutdown();
    let outcome = kernel.wait().await.expect("stops");
    let names: Vec<&str> = outcome
        .services
        .services
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, ["db", "cron", "worker"]);
}
