//! Finding running kernels: every `spindle run` writes a connection file,
//! `<run_id>.json`, into the runtime folder and removes it when it ends;
//! `spindle ps` and `spindle ctl` read them. A file whose pid is no longer
//! alive is stale: it is removed when found.
//!
//! The runtime folder is `$XDG_RUNTIME_DIR/spindle/`; without
//! `XDG_RUNTIME_DIR` it is `/tmp/spindle-runtime-<uid>/` (created 0700, and
//! refused when another user owns it). Files in it are written 0600 (they
//! hold the control token). Other front ends put their own connection
//! files beside ours as `<run_id>.<front end>.json` (for example
//! `<run_id>.jupyter.json`); only names without a second dot are
//! `spindle run`'s.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// What a running kernel tells its clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connection {
    pub run_id: String,
    pub pid: u32,
    /// The control API's address (`127.0.0.1:PORT`).
    pub http: String,
    /// The bearer token, when the API requires one.
    pub token: Option<String>,
    pub script: PathBuf,
    pub data_dir: PathBuf,
    /// Unix time in seconds.
    pub started_at: f64,
    pub version: String,
}

/// The folder connection files live in, created if missing.
pub fn runtime_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir).join("spindle");
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Ok(dir)
        }
        None => {
            // SAFETY: getuid(2) has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            let dir = std::env::temp_dir().join(format!("spindle-runtime-{uid}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
            let metadata = std::fs::symlink_metadata(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            if !metadata.is_dir() || metadata.uid() != uid || metadata.mode() & 0o077 != 0 {
                bail!(
                    "{} is not a private folder of this user; set XDG_RUNTIME_DIR to one",
                    dir.display()
                );
            }
            Ok(dir)
        }
    }
}

/// Writes this run's connection file; removed when the guard drops.
pub fn publish(connection: &Connection) -> anyhow::Result<Published> {
    let dir = runtime_dir()?;
    let path = dir.join(format!("{}.json", connection.run_id));
    let partial = dir.join(format!(".{}.json.partial", connection.run_id));
    let text = serde_json::to_string_pretty(connection)?;
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
    }
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Published { path })
}

/// The connection file of this run; removing it on drop.
#[derive(Debug)]
pub struct Published {
    path: PathBuf,
}

impl Drop for Published {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Every running kernel's connection, oldest first. Stale files (their
/// process is gone) are removed on the way.
pub fn running() -> anyhow::Result<Vec<Connection>> {
    let dir = runtime_dir()?;
    let mut connections = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if stem.starts_with('.') || stem.contains('.') {
            continue; // a partial write, or another front end's file
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(connection) = serde_json::from_str::<Connection>(&text) else {
            continue;
        };
        if !alive(connection.pid) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        connections.push(connection);
    }
    connections.sort_by(|a, b| a.started_at.total_cmp(&b.started_at));
    Ok(connections)
}

/// The kernel `selector` names (a run id, a prefix of one, or a pid), or
/// the only one running.
pub fn find(selector: Option<&str>) -> anyhow::Result<Connection> {
    let running = running()?;
    let listed = || {
        running
            .iter()
            .map(|connection| {
                format!(
                    "  {} (pid {}, {})",
                    connection.run_id,
                    connection.pid,
                    connection.script.display()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let matching: Vec<&Connection> = match selector {
        Some(selector) => running
            .iter()
            .filter(|connection| {
                connection.run_id.starts_with(selector) || connection.pid.to_string() == selector
            })
            .collect(),
        None => running.iter().collect(),
    };
    match (matching.as_slice(), selector) {
        ([one], _) => Ok((*one).clone()),
        ([], None) => bail!(
            "no spindle kernel is running (looked in {})\n  hint: start one with `spindle run FILE`",
            runtime_dir()?.display()
        ),
        ([], Some(selector)) => bail!(
            "no running kernel matches `{selector}`; running:\n{}\n  hint: `spindle ps` lists them",
            listed()
        ),
        (_, _) => bail!(
            "several kernels are running; pick one with --kernel RUN_ID:\n{}",
            listed()
        ),
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or_default()
}

/// A fresh bearer token: 32 random bytes from the kernel, as hex.
pub fn new_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a token")?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
