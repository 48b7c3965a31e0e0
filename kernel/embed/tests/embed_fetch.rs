//! The set-up script against the filled cache: a second run fetches
//! nothing, touches no network and is quick; and it resolves the cache
//! directory exactly as the crate does.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn fetch_script_is_idempotent_and_quick() {
    let cache = common::cache();
    let started = Instant::now();
    let output = Command::new("python3")
        .current_dir(common::repo_root())
        .args(["scripts/fetch_models.py", "--all"])
        .env("SPINDLE_CACHE", &cache.root)
        .output()
        .expect("run scripts/fetch_models.py");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|line| line.contains(": up to date in ")),
        "{stderr}"
    );
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn fetch_script_and_crate_resolve_the_same_cache() {
    let expected = spindle_embed::cache_dir().unwrap();
    let output = Command::new("python3")
        .current_dir(common::repo_root())
        .args(["scripts/fetch_models.py", "--print-cache"])
        .output()
        .expect("run scripts/fetch_models.py");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        expected.display().to_string()
    );
}
