//! Helpers shared by the engine's integration tests: the repository root, the
//! cache (resolved exactly as the `spindle` binary resolves it) and the
//! pinned Python of `.cache/venv` for the reference vectors; and [`output`],
//! which runs a child with a bound on reading its pipes so that a wedged
//! child fails its test instead of hanging CI.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use spindle_embed::{Cache, Engine, EngineConfig, Provider};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub const SETUP: &str = "python3 scripts/fetch_models.py --all --venv";

/// The real cache; fails with the set-up command when it was not filled.
pub fn cache() -> Cache {
    let cache = Cache::resolve().expect("cache directory");
    assert!(
        cache.root.join("models").is_dir(),
        "no models in {}: run `{SETUP}` from the repository root first",
        cache.root.display()
    );
    cache
}

/// An engine on the CPU with two threads and no spinning (tests run in
/// parallel on two cores). `SPINDLE_TEST_PROVIDERS=cuda` runs the tests on
/// the CUDA provider alone (an engine that cannot register it fails), for a
/// machine with a GPU after `SPINDLE_GPU=1 make setup`.
pub fn engine(model: &str) -> Engine {
    let providers = std::env::var("SPINDLE_TEST_PROVIDERS").map_or(vec![Provider::Cpu], |list| {
        Provider::parse_list(&list)
            .unwrap_or_else(|error| panic!("SPINDLE_TEST_PROVIDERS: {error}"))
    });
    let config = EngineConfig {
        model: model.to_string(),
        providers,
        intra_threads: Some(1),
        allow_spinning: false,
        cache: Some(cache().root),
        ..EngineConfig::default()
    };
    Engine::start(config).unwrap_or_else(|error| panic!("{error}"))
}

/// Runs `scripts/reference_vectors.py` for `model` and returns its JSON.
pub fn reference(model: &str) -> serde_json::Value {
    let root = repo_root();
    let python = std::env::var_os("SPINDLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache/venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run `{SETUP}` from the repository root first",
        python.display()
    );
    let out = root
        .join("target/embed-reference")
        .join(format!("{model}.json"));
    let output = output(
        Command::new(&python)
            .current_dir(&root)
            .args(["scripts/reference_vectors.py", "--model", model, "--out"])
            .arg(&out),
    );
    assert!(
        output.status.success(),
        "scripts/reference_vectors.py failed for {model}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).expect("reference output")).expect("reference JSON")
}

pub fn sentences() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sentences.json");
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("sentences.json")).unwrap();
    data["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_string())
        .collect()
}

/// How long a test waits for a child to close its pipes before it declares
/// it wedged: a failure guard far above what a passing run needs, never a
/// way to wait for something.
pub const GUARD: Duration = Duration::from_secs(300);

/// `command.output()` with standard input closed, its pipes read on threads
/// of their own and bounded by [`GUARD`]: a child that keeps them open
/// longer is killed and the test fails naming the command.
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
    // Both pipes are closed: the child has exited or is about to.
    let status = child.wait().expect("wait for the child");
    Output {
        status,
        stdout,
        stderr,
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
