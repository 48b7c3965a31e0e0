//! What the binary's end-to-end tests share: reading a child's pipes with a
//! bound, so that a wedged child fails its test with a message instead of
//! hanging CI forever.
//!
//! The bound is a failure guard only, never synchronisation: tests wait for
//! the line or the exit they need, and a healthy child gives it long before
//! [`GUARD`]. Every read happens on a thread of its own and reaches the test
//! through a channel read with `recv_timeout`.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a test waits for a child's next line or its exit before it
/// declares the child wedged. Far above anything a passing test needs on a
/// loaded two-core machine.
pub const GUARD: Duration = Duration::from_secs(120);

/// `command.output()` with standard input closed, bounded by [`GUARD`]: a
/// child that has not closed its pipes and exited by then is killed, and
/// the test fails naming the command.
pub fn output(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let stdout = read_to_end_on_a_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_to_end_on_a_thread(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + GUARD;
    let mut receive = |receiver: Receiver<Vec<u8>>, what: &str| match receiver
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        Ok(bytes) => bytes,
        Err(_) => {
            let _ = child.kill();
            panic!("{command:?} kept its {what} open for {GUARD:?}: the child is wedged");
        }
    };
    let stdout = receive(stdout, "stdout");
    let stderr = receive(stderr, "stderr");
    let status = wait(child, deadline.saturating_duration_since(Instant::now()));
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Waits for `child` to exit within `limit`; kills it and fails otherwise.
pub fn wait(mut child: Child, limit: Duration) -> ExitStatus {
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    match receiver.recv_timeout(limit) {
        Ok(status) => status.expect("wait for the child"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which the waiter
            // thread has not reaped (it is still waiting).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("child {pid} did not exit within {limit:?}: it is wedged");
        }
    }
}

/// The lines of a child's pipe, read on a thread of their own.
pub struct LineReader {
    receiver: Receiver<String>,
    what: String,
}

impl LineReader {
    /// Starts reading `pipe`; `what` names it in failures ("spindle's stdout").
    pub fn new(pipe: impl Read + Send + 'static, what: &str) -> LineReader {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader {
            receiver,
            what: what.to_owned(),
        }
    }

    /// The next line, or `None` once the pipe is closed. Fails the test when
    /// no line and no end arrive within [`GUARD`].
    pub fn next_line(&mut self) -> Option<String> {
        match self.receiver.recv_timeout(GUARD) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "nothing from {} for {GUARD:?}: the child is wedged",
                    self.what
                )
            }
        }
    }
}

impl Iterator for LineReader {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.next_line()
    }
}

fn read_to_end_on_a_thread(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    receiver
}

/// Reads `spindle run --http`'s stderr until it says where it serves
/// (`... pipeline(s) on http://ADDR`) and returns that base URL.
pub fn served_base(stderr: &mut LineReader) -> String {
    loop {
        let line = stderr
            .next_line()
            .expect("spindle says where it serves before its stderr ends");
        if let Some(rest) = line.split("pipeline(s) on ").nth(1) {
            return rest.trim().to_owned();
        }
    }
}

/// Posts `body` to `url` with Python's urllib (a client Spindle did not
/// write; HTTP errors are answers too); the status and the body as JSON
/// (`Null` when the body is not JSON).
pub fn post_json(url: &str, body: &str) -> (u16, serde_json::Value) {
    const CLIENT: &str = r#"
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        print(response.status); print(response.read().decode())
except urllib.error.HTTPError as error:
    print(error.code); print(error.read().decode())
"#;
    let output = output(Command::new("python3").args(["-c", CLIENT, url, body]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let (status, body) = text.split_once('\n').expect("status line");
    (
        status.trim().parse().expect("status"),
        serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null),
    )
}
