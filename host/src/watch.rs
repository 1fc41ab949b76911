//! Watching the plugin directory and the config file, and reloading on change.
//!
//! The directories are watched, not the files: editors and build tools replace files by
//! renaming a temporary one into place, which a watch on the old inode would miss. A deploy
//! does the same one level up: it renames a new plugin directory over the old one, or swaps a
//! symlink to it. So the plugin directory's parent is watched too, and when an entry of that
//! name appears or goes away the directory is watched again under its path (the new inode) and
//! the plugins reloaded. Events come in bursts (a rename is two, a build tool writes in several
//! steps), so they are debounced: a reload starts once the directories have been quiet for
//! [`QUIET`]. A file caught half-written is refused like any broken plugin (the previous version
//! keeps serving) and the write that completes it triggers the next reload. Access events, which
//! the gateway's own reads cause, are ignored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::gateway::Gateway;

/// How long the watched directories must be quiet before a reload starts.
pub const QUIET: Duration = Duration::from_millis(100);

/// Keeps the watch alive; dropping it stops watching.
pub struct WatchGuard {
    _watcher: Arc<Mutex<RecommendedWatcher>>,
}

/// What a file-system event means to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    /// A plugin or the config file changed.
    File(PathBuf),
    /// The plugin directory itself was replaced, removed or put back: watch its path again.
    PluginDir,
}

/// Starts watching the current snapshot's plugin directory and config file.
pub fn start(gw: Arc<Gateway>) -> anyhow::Result<WatchGuard> {
    let snapshot = gw.snapshot();
    // Absolute, symlinks kept: the events name paths under what is watched, and the plugin
    // directory is recognised among its parent's entries by its path.
    let plugin_dir = std::path::absolute(&snapshot.config.plugins.dir)?;
    let config_file = snapshot.config.path.clone();
    let config_dir = std::path::absolute(
        config_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Change>();
    let relevant_config = config_dir.join(config_file.file_name().unwrap_or_default());
    let dir = plugin_dir.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event.need_rescan() {
            let _ = tx.send(Change::PluginDir);
        }
        for path in event.paths {
            if path == dir {
                let _ = tx.send(Change::PluginDir);
                continue;
            }
            // Only the watched directories' own entries: the parent may hold other `.wasm` files.
            let wasm = path.extension().is_some_and(|e| e == "wasm")
                && path.parent() == Some(dir.as_path());
            if wasm || path == relevant_config {
                let _ = tx.send(Change::File(path));
            }
        }
    })?;
    let watcher = Arc::new(Mutex::new(watcher));
    {
        let mut w = lock(&watcher);
        w.watch(&plugin_dir, RecursiveMode::NonRecursive)?;
        let mut others: Vec<&Path> = vec![&config_dir];
        others.extend(plugin_dir.parent());
        others.dedup();
        for other in others.into_iter().filter(|d| *d != plugin_dir) {
            w.watch(other, RecursiveMode::NonRecursive)?;
        }
    }
    tracing::info!(plugins = %plugin_dir.display(), config = %config_file.display(), "watching for changes");

    let weak_gw = Arc::downgrade(&gw);
    let weak_watcher = Arc::downgrade(&watcher);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = vec![first];
            while let Ok(Some(change)) = tokio::time::timeout(QUIET, rx.recv()).await {
                changed.push(change);
            }
            changed.sort();
            changed.dedup();
            let Some(gw) = weak_gw.upgrade() else { return };
            if changed.contains(&Change::PluginDir) {
                watch_again(&weak_watcher, &plugin_dir);
            }
            tracing::info!(changed = ?changed, "change detected: reloading");
            if let Err(e) = crate::reload::reload(&gw).await {
                tracing::error!("reload refused, still serving the previous configuration: {e:#}");
            }
        }
    });
    Ok(WatchGuard { _watcher: watcher })
}

/// Moves the plugin directory's watch to whatever its path names now. Before the reload that
/// follows, so a file changed in between is read by that reload or noticed by the new watch.
fn watch_again(watcher: &Weak<Mutex<RecommendedWatcher>>, plugin_dir: &Path) {
    let Some(watcher) = watcher.upgrade() else {
        return;
    };
    let mut w = lock(&watcher);
    // The old watch may be gone already (the watcher drops it when the entry leaves the parent).
    let _ = w.unwatch(plugin_dir);
    match w.watch(plugin_dir, RecursiveMode::NonRecursive) {
        Ok(()) => {
            tracing::info!(plugins = %plugin_dir.display(), "plugin directory replaced: watching the new one")
        }
        // Gone for now: the reload says so, and its return is an event in the parent.
        Err(e) => {
            tracing::warn!(plugins = %plugin_dir.display(), "plugin directory not watched: {e}")
        }
    }
}

fn lock(watcher: &Mutex<RecommendedWatcher>) -> std::sync::MutexGuard<'_, RecommendedWatcher> {
    watcher
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
