//! The set-up script against a filled cache: a second run fetches nothing
//! and touches no network; it trusts its stamps (size and modification
//! time) instead of reading the files again, which is what keeps it quick;
//! and it resolves the cache directory exactly as the crate does.
//!
//! Network access is made impossible for the runs below (pip has no index
//! and every proxy points at a closed port), so an attempt to download
//! fails the run instead of silently succeeding.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The name of the stamp file the script keeps in each folder it fills.
const STAMP: &str = ".spindle-fetched.json";

/// `python3 scripts/fetch_models.py ARGS` with `cache` as the cache and no
/// way to reach a network.
fn fetch_offline(cache: &Path, args: &[&str]) -> (bool, String) {
    let output = common::output(
        Command::new("python3")
            .current_dir(common::repo_root())
            .arg("scripts/fetch_models.py")
            .args(args)
            .env("SPINDLE_CACHE", cache)
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", "")
            .env("http_proxy", "http://127.0.0.1:9")
            .env("https_proxy", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9"),
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every line says its part is up to date, and nothing was fetched.
fn assert_all_up_to_date(success: bool, stderr: &str) {
    assert!(success, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|line| line.contains(": up to date in ")),
        "{stderr}"
    );
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert!(!stderr.contains("unpacked"), "{stderr}");
}

#[test]
fn a_second_fetch_finds_everything_up_to_date_offline() {
    let cache = common::cache();
    let (success, stderr) = fetch_offline(&cache.root, &["--all"]);
    assert_all_up_to_date(success, &stderr);
}

/// A copy of the cache whose files have the recorded sizes and modification
/// times but hold only zeros: a run that read them would find every hash
/// wrong and try to fetch them again (which fails offline).
#[test]
fn a_second_fetch_trusts_its_stamps_and_reads_no_file() {
    let cache = common::cache();
    let copy = tempfile::tempdir().expect("temp dir");
    let mut stamped_files = 0;
    for stamp_path in stamp_files(&cache.root) {
        let folder = stamp_path.parent().expect("a stamp lies in a folder");
        let relative = folder.strip_prefix(&cache.root).expect("under the cache");
        let target = copy.path().join(relative);
        std::fs::create_dir_all(&target).expect("create the folder");
        std::fs::copy(&stamp_path, target.join(STAMP)).expect("copy the stamp");
        let stamp: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&stamp_path).expect("read the stamp"))
                .expect("the stamp is JSON");
        for (name, seen) in stamp.as_object().expect("a stamp is an object") {
            let file = File::create(target.join(name)).expect("create the stand-in");
            file.set_len(seen["size"].as_u64().expect("size"))
                .expect("size the stand-in");
            let mtime_ns = seen["mtime_ns"].as_u64().expect("mtime_ns");
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_nanos(mtime_ns))
                .expect("date the stand-in");
            stamped_files += 1;
        }
    }
    assert!(
        stamped_files > 0,
        "no stamped files in {}",
        cache.root.display()
    );
    let (success, stderr) = fetch_offline(copy.path(), &["--all"]);
    assert_all_up_to_date(success, &stderr);
}

#[test]
fn fetch_script_and_crate_resolve_the_same_cache() {
    let expected = spindle_embed::cache_dir().unwrap();
    let output = common::output(
        Command::new("python3")
            .current_dir(common::repo_root())
            .args(["scripts/fetch_models.py", "--print-cache"]),
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        expected.display().to_string()
    );
}

/// Every stamp file under `root`.
fn stamp_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)
            .expect("read the cache")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.file_name().is_some_and(|name| name == STAMP) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
