//! `spindle run --watch`: reload the script when it, or a module it
//! requires, changes. Modules are confined to the script's folder, so the
//! folder is watched (recursively, inotify through `notify`) for changes
//! to `.lua` files; a burst of changes (an editor's save is several) is
//! reloaded once, after 200 ms without another.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher};
use spindle_kernel::Kernel;
use tokio::sync::mpsc;

use super::notify::Notifier;
use super::reload;

const QUIET: Duration = Duration::from_millis(200);

/// Starts watching; the watcher lives as long as the kernel runs.
pub(super) fn watch(
    kernel: Kernel,
    script: &Path,
    notifier: Option<Arc<Notifier>>,
) -> anyhow::Result<()> {
    let script = std::fs::canonicalize(script)
        .with_context(|| format!("cannot watch {}", script.display()))?;
    let folder = script
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let (changes, mut changed) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if !matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) {
            return;
        }
        for path in event.paths {
            if path.extension().is_some_and(|extension| extension == "lua") {
                let _ = changes.send(path);
            }
        }
    })
    .context("cannot start watching files")?;
    watcher
        .watch(&folder, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", folder.display()))?;
    eprintln!(
        "spindle: watching {} for changes to .lua files",
        folder.display()
    );
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let first = tokio::select! {
                path = changed.recv() => match path {
                    Some(path) => path,
                    None => return,
                },
                () = kernel.shutting_down() => return,
            };
            let mut paths = vec![first];
            // Debounce: wait until the files have been quiet for a while.
            while let Ok(Some(path)) = tokio::time::timeout(QUIET, changed.recv()).await {
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
            if kernel.is_shutting_down() {
                return;
            }
            let names: Vec<String> = paths
                .iter()
                .map(|path| {
                    path.strip_prefix(&folder)
                        .unwrap_or(path)
                        .display()
                        .to_string()
                })
                .collect();
            eprintln!("spindle: {} changed, reloading", names.join(", "));
            reload::reload(&kernel, notifier.as_deref()).await;
        }
    });
    Ok(())
}
