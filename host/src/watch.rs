//! Watching the plugin directory and the config file, and reloading on change.
//!
//! The directories are watched, not the files: editors and build tools replace files by
//! renaming a temporary one into place, which a watch on the old inode would miss. A deploy
//! does the same one level up: it renames a new plugin directory over the old one, or swaps a
//! symlink to it. So the plugin directory's parent is watched too, and when an entry of that
//! name appears or goes away the directory is watched again under its path (the new inode) and
//! the plugins reloaded. A reload that moves the plugin directory (`plugins.dir` edited in the
//! config file) moves the watches with it, whatever started the reload.
//!
//! Events come in bursts (a rename is two, a build tool writes in several steps), so they are
//! debounced: a reload starts once the directories have been quiet for [`QUIET`]. A file
//! caught half-written is refused like any broken plugin (the previous version keeps serving)
//! and the write that completes it triggers the next reload. Access events, which the
//! gateway's own reads cause, are ignored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::gateway::Gateway;

/// How long the watched directories must be quiet before a reload starts.
pub const QUIET: Duration = Duration::from_millis(100);

/// Keeps the watch alive; dropping it stops watching.
pub struct WatchGuard {
    _watches: Arc<Mutex<Watches>>,
}

/// What a file-system event means to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    /// A plugin or the config file changed.
    File(PathBuf),
    /// The plugin directory itself was replaced, removed or put back: watch its path again.
    PluginDir,
}

/// The watcher and what it watches.
struct Watches {
    watcher: RecommendedWatcher,
    /// Absolute, symlinks kept: events name paths under what is watched, and the plugin
    /// directory is recognised among its parent's entries by its path. Shared with the event
    /// handler, which runs on the watcher's thread.
    plugin_dir: Arc<RwLock<PathBuf>>,
    config_dir: PathBuf,
    /// Directories watched now: the plugin directory, its parent, the config file's.
    watched: Vec<PathBuf>,
}

/// Starts watching the current snapshot's plugin directory and config file.
pub fn start(gw: Arc<Gateway>) -> anyhow::Result<WatchGuard> {
    let snapshot = gw.snapshot();
    let plugin_dir = std::path::absolute(&snapshot.config.plugins.dir)?;
    let config_file = snapshot.config.path.clone();
    let config_dir = std::path::absolute(
        config_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Change>();
    let shared_dir = Arc::new(RwLock::new(plugin_dir.clone()));
    let config = config_dir.join(config_file.file_name().unwrap_or_default());
    let watcher = notify::recommended_watcher(handler(tx, shared_dir.clone(), config))?;
    let mut watches = Watches {
        watcher,
        plugin_dir: shared_dir,
        config_dir,
        watched: Vec::new(),
    };
    watches.point_at(plugin_dir.clone())?;
    let watches = Arc::new(Mutex::new(watches));
    tracing::info!(plugins = %plugin_dir.display(), config = %config_file.display(), "watching for changes");
    tokio::spawn(reload_on_change(
        Arc::downgrade(&gw),
        Arc::downgrade(&watches),
        rx,
        gw.published.subscribe(),
    ));
    Ok(WatchGuard { _watches: watches })
}

/// What the watcher's thread does with an event: tells the reloading task what it means.
fn handler(
    tx: tokio::sync::mpsc::UnboundedSender<Change>,
    dir: Arc<RwLock<PathBuf>>,
    config: PathBuf,
) -> impl FnMut(notify::Result<notify::Event>) + Send + 'static {
    move |event| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event.need_rescan() {
            let _ = tx.send(Change::PluginDir);
        }
        let dir = dir.read().unwrap_or_else(|p| p.into_inner());
        for path in event.paths {
            if path == *dir {
                let _ = tx.send(Change::PluginDir);
                continue;
            }
            // Only the watched directories' own entries: the parent may hold other `.wasm` files.
            let wasm = path.extension().is_some_and(|e| e == "wasm")
                && path.parent() == Some(dir.as_path());
            if wasm || path == config {
                let _ = tx.send(Change::File(path));
            }
        }
    }
}

/// Reloads once the changes have been quiet for [`QUIET`], and follows the plugin directory
/// wherever a reload moves it. Ends with the gateway or the watcher.
async fn reload_on_change(
    gw: Weak<Gateway>,
    watches: Weak<Mutex<Watches>>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Change>,
    mut published: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        let first = tokio::select! {
            change = rx.recv() => match change {
                Some(change) => change,
                None => return,
            },
            // A reload from anywhere (SIGHUP, the admin API, this task) may have moved the
            // plugin directory.
            published = published.changed() => {
                let (Ok(()), Some(gw)) = (published, gw.upgrade()) else { return };
                // A file written there between the publication and the new watch was missed:
                // read the directory once more.
                if follow(&watches, &gw) {
                    reload(&gw).await;
                }
                continue;
            }
        };
        let mut changed = vec![first];
        while let Ok(Some(change)) = tokio::time::timeout(QUIET, rx.recv()).await {
            changed.push(change);
        }
        changed.sort();
        changed.dedup();
        let Some(gw) = gw.upgrade() else { return };
        if changed.contains(&Change::PluginDir)
            && let Some(watches) = watches.upgrade()
        {
            lock(&watches).watch_again();
        }
        tracing::info!(changed = ?changed, "change detected: reloading");
        reload(&gw).await;
    }
}

async fn reload(gw: &Gateway) {
    if let Err(e) = crate::reload::reload(gw).await {
        tracing::error!("reload refused, still serving the previous configuration: {e:#}");
    }
}

/// Moves the watches to the published snapshot's plugin directory; whether it had moved.
fn follow(watches: &Weak<Mutex<Watches>>, gw: &Gateway) -> bool {
    let Some(watches) = watches.upgrade() else {
        return false;
    };
    let Ok(now) = std::path::absolute(&gw.snapshot().config.plugins.dir) else {
        return false;
    };
    let mut w = lock(&watches);
    if *w.plugin_dir.read().unwrap_or_else(|p| p.into_inner()) == now {
        return false;
    }
    match w.point_at(now.clone()) {
        Ok(()) => {
            tracing::info!(plugins = %now.display(), "plugin directory moved: watching it there")
        }
        Err(e) => tracing::warn!(plugins = %now.display(), "plugin directory not watched: {e}"),
    }
    true
}

impl Watches {
    /// Watches `plugin_dir`, its parent and the config file's directory, and nothing else. A
    /// parent that cannot be watched (not readable) only costs noticing a replaced directory,
    /// and is logged; the other two are errors.
    fn point_at(&mut self, plugin_dir: PathBuf) -> notify::Result<()> {
        for old in std::mem::take(&mut self.watched) {
            let _ = self.watcher.unwatch(&old);
        }
        *self.plugin_dir.write().unwrap_or_else(|p| p.into_inner()) = plugin_dir.clone();
        let parent = plugin_dir.parent().map(Path::to_owned);
        let mut result = Ok(());
        for (dir, required) in [
            (Some(plugin_dir), true),
            (Some(self.config_dir.clone()), true),
            (parent, false),
        ] {
            let Some(dir) = dir.filter(|d| !self.watched.contains(d)) else {
                continue;
            };
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push(dir),
                Err(e) if !required => {
                    tracing::warn!(dir = %dir.display(), "cannot watch the plugin directory's parent, so a replaced plugin directory is noticed only by a reload: {e}")
                }
                Err(e) if result.is_ok() => result = Err(e),
                Err(_) => {}
            }
        }
        result
    }

    /// Moves the plugin directory's watch to whatever its path names now. Before the reload
    /// that follows, so a file changed in between is read by that reload or noticed by the new
    /// watch.
    fn watch_again(&mut self) {
        let dir = self
            .plugin_dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // The old watch may be gone already (the watcher drops it when the entry leaves the
        // parent).
        let _ = self.watcher.unwatch(&dir);
        match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                if !self.watched.contains(&dir) {
                    self.watched.push(dir.clone());
                }
                tracing::info!(plugins = %dir.display(), "plugin directory replaced: watching the new one");
            }
            // Gone for now: the reload says so, and its return is an event in the parent.
            Err(e) => tracing::warn!(plugins = %dir.display(), "plugin directory not watched: {e}"),
        }
    }
}

fn lock(watches: &Mutex<Watches>) -> std::sync::MutexGuard<'_, Watches> {
    watches
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
