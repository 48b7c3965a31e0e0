//! Operating a running `spindle run` from outside, against the real
//! binary: the connection file (0600, removed at exit, stale ones cleaned),
//! `spindle ps`, `spindle ctl` (status, graph, restart, stop, start, logs,
//! events, reload, shutdown), the signals (SIGHUP reload, SIGUSR1 dump,
//! SIGUSR2 debug logging, SIGTERM), systemd's readiness datagrams, `--detach`
//! (PID file, log file, working directory, umask) and `--watch` (a real
//! file edit, a required module included).
//!
//! Every wait is on a line the child prints, an event it sends or its exit;
//! `support` bounds them so that a wedged child fails instead of hanging.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use support::LineReader;

const GRAPH: &str = r#"local s = require("spindle")
s.service "db" { command = { "sh", "-c", "echo hello from db; exec sleep 600" } }
s.service "api" { command = { "sleep", "601" }, depends_on = { db = "healthy" } }
s.service "cron" { command = { "sleep", "602" } }
"#;

/// A `spindle run` in a folder of its own, with its own runtime folder.
struct Run {
    dir: tempfile::TempDir,
    child: Option<Child>,
    events: LineReader,
    stderr: LineReader,
}

fn runtime_dir(dir: &Path) -> PathBuf {
    let runtime = dir.join("runtime");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    runtime
}

fn spindle(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spindle"));
    command
        .env("XDG_RUNTIME_DIR", runtime_dir(dir))
        .env_remove("NOTIFY_SOCKET");
    command
}

impl Run {
    /// Runs `script` as `graph.lua`, beside `modules` (name, text).
    fn start(script: &str, modules: &[(&str, &str)], extra: &[&str], env: &[(&str, &Path)]) -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("graph.lua"), script).expect("write");
        for (name, text) in modules {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let mut command = spindle(dir.path());
        command
            .current_dir(dir.path())
            .args([
                "run",
                "graph.lua",
                "--events",
                "jsonl",
                "--data-dir",
                "data",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spindle starts");
        let events = LineReader::new(child.stdout.take().expect("stdout"), "spindle's events");
        let stderr = LineReader::new(child.stderr.take().expect("stderr"), "spindle's stderr");
        Run {
            dir,
            child: Some(child),
            events,
            stderr,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.pid(), signal) };
    }

    fn ctl(&self, args: &[&str]) -> Output {
        support::output(spindle(self.dir.path()).arg("ctl").args(args))
    }

    /// Reads events until `service` goes to `to`; returns that event.
    fn until(&mut self, service: &str, to: &str) -> serde_json::Value {
        loop {
            let line = self.events.next_line().expect("events go on");
            let event: serde_json::Value = serde_json::from_str(&line).expect("jsonl");
            if event["service"] == service && event["to"] == to {
                return event;
            }
        }
    }

    fn stderr_until(&mut self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .stderr
                .next_line()
                .unwrap_or_else(|| panic!("stderr ended before `{needle}`: {seen:#?}"));
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    fn all_ready(&mut self, names: &[&str]) {
        let mut ready: Vec<String> = Vec::new();
        while !names
            .iter()
            .all(|name| ready.iter().any(|known| known == name))
        {
            let line = self.events.next_line().expect("events go on");
            let event: serde_json::Value = serde_json::from_str(&line).expect("jsonl");
            if event["to"] == "ready" {
                ready.push(event["service"].as_str().expect("name").to_owned());
            }
        }
    }

    fn wait(mut self) -> std::process::ExitStatus {
        support::wait(self.child.take().expect("running"), support::GUARD)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn connection_files(dir: &Path) -> Vec<PathBuf> {
    let folder = dir.join("runtime/spindle");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn ctl_finds_the_run_by_its_connection_file_and_operates_it() {
    let mut run = Run::start(GRAPH, &[], &[], &[]);
    run.stderr_until("control API on http://127.0.0.1:");
    run.all_ready(&["db", "api", "cron"]);

    let files = connection_files(run.dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = std::fs::metadata(&files[0])
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the connection file holds a token");
    let connection: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).expect("read")).expect("json");
    assert_eq!(connection["pid"], run.pid());
    assert!(
        connection["token"]
            .as_str()
            .is_some_and(|token| token.len() == 64)
    );
    assert!(
        connection["script"]
            .as_str()
            .expect("script")
            .ends_with("graph.lua")
    );

    // A stale file (its process is gone) is cleaned by whoever looks.
    let stale = run.dir.path().join("runtime/spindle/1-999999999.json");
    let mut stale_connection = connection.clone();
    stale_connection["run_id"] = "1-999999999".into();
    stale_connection["pid"] = 999_999_999u32.into();
    std::fs::write(&stale, stale_connection.to_string()).expect("write");
    let ps = support::output(spindle(run.dir.path()).arg("ps"));
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    let listing = text(&ps.stdout);
    assert!(
        listing.contains(connection["run_id"].as_str().expect("id")),
        "{listing}"
    );
    assert!(!listing.contains("1-999999999"), "{listing}");
    assert!(!stale.exists(), "the stale file was removed");

    // Without its token the API refuses (a local user who cannot read the
    // connection file cannot operate the run).
    let address = connection["http"].as_str().expect("address");
    let curl = support::output(Command::new("python3").args([
        "-c",
        "import sys, urllib.request, urllib.error\ntry:\n    urllib.request.urlopen('http://' + sys.argv[1] + '/v1/services')\nexcept urllib.error.HTTPError as e:\n    print(e.code)",
        address,
    ]));
    assert_eq!(text(&curl.stdout).trim(), "401");

    let status = run.ctl(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let table = text(&status.stdout);
    assert!(table.starts_with("SERVICE"), "{table}");
    for name in ["db", "api", "cron"] {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with(name) && line.contains("ready")),
            "{table}"
        );
    }
    let graph = run.ctl(&["graph"]);
    assert!(
        text(&graph.stdout).contains("1: api"),
        "{}",
        text(&graph.stdout)
    );
    let logs = run.ctl(&["logs", "db"]);
    assert_eq!(text(&logs.stdout), "hello from db\n");

    let restart = run.ctl(&["restart", "db"]);
    assert!(restart.status.success(), "{}", text(&restart.stderr));
    run.until("api", "stopped");
    run.until("db", "ready");
    run.until("api", "ready");
    let stop = run.ctl(&["stop", "cron", "--now"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let stopped = run.until("cron", "stopped");
    assert!(
        stopped["reason"]
            .as_str()
            .expect("reason")
            .contains("SIGKILL"),
        "{stopped}"
    );
    let unknown = run.ctl(&["restart", "nope"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no service named `nope`"));

    let shutdown = run.ctl(&["shutdown"]);
    assert!(shutdown.status.success(), "{}", text(&shutdown.stderr));
    assert!(run.wait().success());
    assert!(!files[0].exists(), "the connection file goes with the run");
}

#[test]
fn signals_reload_dump_toggle_debug_and_stop() {
    let mut run = Run::start(GRAPH, &[], &[], &[]);
    run.all_ready(&["db", "api", "cron"]);

    run.signal(libc::SIGUSR1);
    let dump = run.stderr_until("requests: submitted");
    assert!(
        dump.iter()
            .any(|line| line.contains("service db") && line.contains("ready")),
        "{dump:#?}"
    );

    run.signal(libc::SIGUSR2);
    run.stderr_until("debug logging on");
    assert!(run.ctl(&["restart", "cron"]).status.success());
    run.stderr_until("state change");
    run.signal(libc::SIGUSR2);
    run.stderr_until("debug logging off");

    let file = run.dir.path().join("graph.lua");
    std::fs::write(
        &file,
        GRAPH.replace("\"sleep\", \"602\"", "\"sleep\" \"602\""),
    )
    .expect("write");
    run.signal(libc::SIGHUP);
    let said = run.stderr_until("nothing was changed");
    assert!(
        said.iter().any(|line| line.contains("graph.lua:4:")),
        "the diagnostic names the line: {said:#?}"
    );
    std::fs::write(
        &file,
        GRAPH.replace("\"sleep\", \"602\"", "\"sleep\", \"603\""),
    )
    .expect("write");
    run.signal(libc::SIGHUP);
    let said = run.stderr_until("reloaded:");
    assert!(
        said.last().expect("line").contains("restarted cron"),
        "{said:#?}"
    );
    run.until("cron", "ready");

    run.signal(libc::SIGTERM);
    assert!(run.wait().success());
}

#[test]
fn systemd_hears_ready_status_and_stopping() {
    let socket_dir = tempfile::tempdir().expect("temp dir");
    let path = socket_dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(support::GUARD))
        .expect("guard");
    let run = Run::start(GRAPH, &[], &[], &[("NOTIFY_SOCKET", &path)]);
    let mut buffer = [0u8; 1024];
    let mut messages = Vec::new();
    loop {
        let received = socket
            .recv(&mut buffer)
            .expect("a datagram before the guard");
        let message = String::from_utf8_lossy(&buffer[..received]).into_owned();
        let ready = message.lines().any(|line| line == "READY=1");
        messages.push(message);
        if ready {
            break;
        }
    }
    let last = messages.last().expect("message");
    assert!(last.contains("STATUS=3/3 services ready"), "{messages:#?}");
    run.signal(libc::SIGTERM);
    loop {
        let received = socket
            .recv(&mut buffer)
            .expect("a datagram before the guard");
        if String::from_utf8_lossy(&buffer[..received]).contains("STOPPING=1") {
            break;
        }
    }
    assert!(run.wait().success());
}

/// Waits for a process that is not our child to exit (pidfd).
fn wait_for_exit(pid: i32) {
    // SAFETY: pidfd_open(2) returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return; // already gone
    }
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd we own; the pidfd becomes readable when
    // the process exits.
    let ready = unsafe { libc::poll(&mut poll, 1, support::GUARD.as_millis() as i32) };
    // SAFETY: closing the descriptor pidfd_open gave us.
    unsafe { libc::close(fd) };
    assert_eq!(ready, 1, "pid {pid} did not exit within the guard");
}

#[test]
fn detach_leaves_a_daemon_with_its_pid_file_log_and_umask() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = r#"local s = require("spindle")
s.service "writer" { command = { "sh", "-c", "touch made-by-writer; echo written; exec sleep 600" } }
"#;
    std::fs::write(dir.path().join("graph.lua"), script).expect("write");
    let pid_file = dir.path().join("spindle.pid");
    let log_file = dir.path().join("spindle.log");
    let output = support::output(
        spindle(dir.path())
            .current_dir(dir.path())
            .args([
                "run",
                "graph.lua",
                "--detach",
                "--umask",
                "077",
                "--data-dir",
                "data",
            ])
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--log-file")
            .arg(&log_file),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("is up (pid"),
        "{}",
        text(&output.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let mode = std::fs::metadata(&pid_file)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    // SAFETY: kill(2) with signal 0 only checks that it exists.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "the daemon runs");
    // Its own session: no terminal signal of ours reaches it.
    // SAFETY: getsid(2) reads a process's session id.
    assert_eq!(unsafe { libc::getsid(pid) }, pid, "a session leader");

    let status = support::output(spindle(dir.path()).args(["ctl", "status"]));
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).contains("writer"));
    // The service ran in the script's folder with the daemon's umask.
    let made = dir.path().join("made-by-writer");
    let mode = std::fs::metadata(&made)
        .expect("the service's file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "umask 077");

    let shutdown = support::output(spindle(dir.path()).args(["ctl", "shutdown"]));
    assert!(shutdown.status.success(), "{}", text(&shutdown.stderr));
    wait_for_exit(pid);
    assert!(!pid_file.exists(), "the PID file goes with the daemon");
    assert!(connection_files(dir.path()).is_empty());
    let log = std::fs::read_to_string(&log_file).expect("log file");
    assert!(log.contains("writer | written"), "{log}");
}

#[test]
fn watch_reloads_an_edited_script_and_module_and_ignores_a_broken_edit() {
    let script = r#"local s = require("spindle")
local settings = require("settings")
s.service "db" { command = { "sleep", "600" } }
s.service "worker" { command = { "sleep", settings.seconds } }
"#;
    let mut run = Run::start(
        script,
        &[("settings.lua", "return { seconds = \"601\" }\n")],
        &["--watch"],
        &[],
    );
    run.stderr_until("watching");
    run.all_ready(&["db", "worker"]);
    let before = run.ctl(&["status"]);
    let db_line = |table: &str| {
        table
            .lines()
            .find(|line| line.starts_with("db"))
            .map(str::to_owned)
            .expect("db row")
    };
    let db_before = db_line(&text(&before.stdout));

    std::fs::write(
        run.dir.path().join("settings.lua"),
        "return { seconds = 602 602 }\n",
    )
    .expect("write");
    let said = run.stderr_until("nothing was changed");
    assert!(
        said.iter().any(|line| line.contains("settings.lua:1:")),
        "{said:#?}"
    );
    std::fs::write(
        run.dir.path().join("settings.lua"),
        "return { seconds = \"603\" }\n",
    )
    .expect("write");
    let said = run.stderr_until("reloaded:");
    assert!(
        said.last().expect("line").contains("restarted worker"),
        "{said:#?}"
    );
    run.until("worker", "ready");
    let after = run.ctl(&["status"]);
    let db_after = db_line(&text(&after.stdout));
    let pid_of = |line: &str| line.split_whitespace().nth(2).map(str::to_owned);
    assert_eq!(pid_of(&db_before), pid_of(&db_after), "db kept its pid");

    run.signal(libc::SIGTERM);
    assert!(run.wait().success());
}
