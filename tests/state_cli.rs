//! `s.state` end to end: a real `spindle run` whose Lua stages count with
//! `incr` and with a compare-and-swap loop under concurrent requests from
//! Python's urllib (threads), loses no update; scoped keys stay in their
//! scope; after SIGKILL of `spindle` while requests are in flight, a new
//! run on the same data directory finds every value whose request was
//! answered. Synchronised on output lines, never on sleeps.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const SCRIPT: &str = r#"local s = require("spindle")
s.pipeline "count" {
  s.stage("count", function(req)
    local global = s.state()
    global.incr("hits")
    -- A compare-and-swap loop: retried until no other request got between.
    repeat
      local seen = global.get("cas")
      local swapped = global.cas("cas", seen, (seen or 0) + 1)
    until swapped
    s.state("pipeline", req).incr("mine")
    local own = s.state("request", req)
    own.set("scratch", req.text)
    req.scratch = own.get("scratch")
    global.set("done:" .. req.text, true, { ttl = "1h" })
    return req
  end),
}
s.pipeline "read" {
  s.stage("read", function(req)
    local global = s.state()
    req.hits = global.get("hits")
    req.cas = global.get("cas")
    req.mine = s.state("pipeline", req).get("mine") or "none"
    req.count_scope = s.state("pipeline", { pipeline = "count" }).get("mine")
    local found = 0
    for name in req.text:gmatch("%S+") do
      if global.get("done:" .. name) then found = found + 1 end
    end
    req.found = found
    local listed = 0
    for _ in pairs(global.list("done:")) do listed = listed + 1 end
    req.listed = listed
    return req
  end),
}
"#;

/// Posts N requests to the count pipeline from N threads and prints each
/// answered text as it comes (flushed), then "all".
const FLOOD: &str = r#"
import sys, json, threading, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
def post(idx):
    body = json.dumps({"text": f"r{idx}"}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
            if answer.get("status") == "ok":
                with lock:
                    print(answer["text"], flush=True)
    except Exception as error:
        with lock:
            print("failed", error, flush=True)
threads = [threading.Thread(target=post, args=(idx,)) for idx in range(count)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print("all", flush=True)
"#;

const READ: &str = r#"
import sys, json, urllib.request
request = urllib.request.Request(sys.argv[1], data=json.dumps({"text": sys.argv[2]}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=60) as response:
    print(response.read().decode())
"#;

fn start(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .args([
            "run",
            "graph.lua",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spindle starts");
    let mut stderr = support::LineReader::new(child.stderr.take().expect("stderr"), "stderr");
    let base = support::served_base(&mut stderr);
    // Keep draining its stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || while stderr.next_line().is_some() {});
    (child, base)
}

fn read(base: &str, text: &str) -> serde_json::Value {
    let output = support::output(Command::new("python3").args([
        "-c",
        READ,
        &format!("{base}/v1/pipelines/read"),
        text,
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON answer");
    assert_eq!(answer["status"], "ok", "{answer}");
    answer["fields"].clone()
}

#[test]
fn concurrent_updates_lose_nothing_and_answered_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("graph.lua"), SCRIPT).expect("write");

    // 1. 40 concurrent requests: every increment and every CAS counted.
    let (mut child, base) = start(dir.path());
    let output = support::output(Command::new("python3").args([
        "-c",
        FLOOD,
        &format!("{base}/v1/pipelines/count"),
        "40",
    ]));
    let answered = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        answered.lines().filter(|l| l.starts_with('r')).count(),
        40,
        "{answered}"
    );
    let fields = read(&base, "r0 r39 nope");
    assert_eq!(fields["hits"], "40", "{fields}");
    assert_eq!(fields["cas"], "40", "{fields}");
    assert_eq!(fields["count_scope"], "40", "{fields}");
    assert_eq!(
        fields["mine"], "none",
        "a pipeline's scope is its own: {fields}"
    );
    assert_eq!(fields["found"], "2", "{fields}");
    assert_eq!(fields["listed"], "40", "{fields}");

    // 2. Another flood, and SIGKILL of spindle once 10 of them are answered
    //    (the others are in flight or queued).
    let mut flood = Command::new("python3")
        .args(["-c", FLOOD, &format!("{base}/v1/pipelines/count"), "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python starts");
    let mut lines = BufReader::new(flood.stdout.take().expect("stdout")).lines();
    let mut answered = Vec::new();
    while answered.len() < 10 {
        let line = lines.next().expect("an answer").expect("utf-8");
        assert!(line.starts_with('r'), "{line}");
        answered.push(line);
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    drop(lines);
    let _ = flood.kill();
    let _ = flood.wait();

    // 3. A new run on the same data directory has every answered write.
    let (child, base) = start(dir.path());
    let fields = read(&base, &answered.join(" "));
    assert_eq!(fields["found"], "10", "{fields}");
    // Requests killed in flight may have counted `hits` and not yet `cas`
    // (each does one, then the other); every answered one did both.
    let number = |name: &str| -> u64 {
        fields[name]
            .as_str()
            .expect("a count")
            .parse()
            .expect("a number")
    };
    assert!(
        number("hits") >= 50,
        "40 + at least the 10 answered: {fields}"
    );
    assert!(
        number("cas") >= 50,
        "40 + at least the 10 answered: {fields}"
    );
    assert!(
        number("hits") <= 100 && number("cas") <= number("hits"),
        "{fields}"
    );
    // SAFETY: kill(2) on the child's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = support::wait(child, support::GUARD);
    assert!(status.success(), "{status:?}");
}
