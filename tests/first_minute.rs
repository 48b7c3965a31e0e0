//! The first minute of a run, as a newcomer meets it: `spindle run
//! examples/quickstart.lua --http ...`, and 600 requests (32 at a time,
//! mixed priorities, `deadline_ms` 20000) sent the moment the port answers,
//! while the embedding engine is still loading. Requests wait for the
//! engine instead of failing: none may answer `error` (the breaker never
//! saw "not started yet") and each gets one answer. The client is
//! Python's urllib in 32 threads. The share that is `ok` depends on how
//! fast this machine loads the model against the pipeline's deadlines, so
//! it is a benchmark figure (`make bench`, target 99%), not asserted here.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::LineReader;

/// Sends N requests with W workers as soon as the port accepts; prints a
/// JSON object of counts by status, and the first error body if any.
const CLIENT: &str = r#"
import json, sys, urllib.request, urllib.error, concurrent.futures, socket, time
base, total, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port = base.split("//")[1].split(":")
while True:
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        break
    except OSError:
        time.sleep(0.01)
priorities = ["high", "medium", "low"]
def one(i):
    body = json.dumps({"text": f"request {i} about a cat on a mat", "priority": priorities[i % 3],
                       "deadline_ms": 20000}).encode()
    request = urllib.request.Request(base + "/v1/pipelines/ingest", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())
counts, first_error = {}, None
with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for answer in pool.map(one, range(total)):
        counts[answer["status"]] = counts.get(answer["status"], 0) + 1
        if answer["status"] != "ok" and first_error is None:
            first_error = answer
print(json.dumps({"counts": counts, "first_error": first_error}))
"#;

#[test]
fn requests_sent_while_the_engine_loads_wait_for_it_and_succeed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spindle"))
        .current_dir(root)
        .args(["run", "examples/quickstart.lua", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spindle starts");
    let mut stderr = LineReader::new(child.stderr.take().expect("stderr"), "spindle's stderr");
    let base = support::served_base(&mut stderr);
    let client = support::output(Command::new("python3").args(["-c", CLIENT, &base, "600", "32"]));
    // SAFETY: kill(2) on the child's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = support::wait(child, support::GUARD);
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&client.stdout).expect("the client's report");
    eprintln!("first minute: {report}");
    let counts = report["counts"].as_object().expect("counts");
    let answered: u64 = counts.values().filter_map(|count| count.as_u64()).sum();
    assert_eq!(answered, 600, "one answer each: {report}");
    for status in counts.keys() {
        assert!(
            status == "ok" || status == "timeout",
            "no request may fail while the engine loads: {report}"
        );
    }
    assert!(counts.contains_key("ok"), "{report}");
    assert!(status.success(), "{status:?}");
}
