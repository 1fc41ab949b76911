//! Watching the plugin directory and the config file, and reloading on change.
//!
//! The directories are watched, not the files: editors and build tools replace files by
//! renaming a temporary one into place, which a watch on the old inode would miss. Events come
//! in bursts (a rename is two, a build tool writes in several steps), so they are debounced: a
//! reload starts once the directory has been quiet for [`QUIET`]. A file caught half-written is
//! refused like any broken plugin (the previous version keeps serving) and the write that
//! completes it triggers the next reload. Access events, which the gateway's own reads cause,
//! are ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::gateway::Gateway;

/// How long the watched directories must be quiet before a reload starts.
pub const QUIET: Duration = Duration::from_millis(100);

/// Keeps the watch alive; dropping it stops watching.
pub struct WatchGuard {
    _watcher: RecommendedWatcher,
}

/// Starts watching the current snapshot's plugin directory and config file.
pub fn start(gw: Arc<Gateway>) -> anyhow::Result<WatchGuard> {
    let snapshot = gw.snapshot();
    let plugin_dir = snapshot.config.plugins.dir.clone();
    let config_file = snapshot.config.path.clone();
    let config_dir = config_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let relevant_config = config_file.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            let wasm = path.extension().is_some_and(|e| e == "wasm");
            let config = path.file_name() == relevant_config.file_name();
            if wasm || config {
                let _ = tx.send(path);
            }
        }
    })?;
    watcher.watch(&plugin_dir, RecursiveMode::NonRecursive)?;
    if config_dir != plugin_dir {
        watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    }
    tracing::info!(plugins = %plugin_dir.display(), config = %config_file.display(), "watching for changes");

    let weak = Arc::downgrade(&gw);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = vec![first];
            while let Ok(Some(path)) = tokio::time::timeout(QUIET, rx.recv()).await {
                changed.push(path);
            }
            changed.sort();
            changed.dedup();
            let Some(gw) = weak.upgrade() else { return };
            tracing::info!(changed = ?changed, "change detected: reloading");
            if let Err(e) = crate::reload::reload(&gw).await {
                tracing::error!("reload refused, still serving the previous configuration: {e:#}");
            }
        }
    });
    Ok(WatchGuard { _watcher: watcher })
}
