//! The plugins of one configuration: loaded from a directory, shared by reference.
//!
//! A set is immutable once built. Reloading builds a new set next to the old one, reusing every
//! plugin whose file did not change (same content hash), and the gateway swaps the whole
//! snapshot at once; requests in flight finish on the set they started with, and the old
//! plugins are dropped with the last request that holds them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::sandbox::Limits;
use super::{Plugin, PluginEngine, PluginError, convert};
use crate::config::Config;

/// A route whose policy refused its settings (`check-settings` answered `err`, or failed): the
/// whole configuration is refused, at start-up as on a reload.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: route {route:?}: plugin {plugin:?} refused the route's settings: {reason}")]
pub struct SettingsRefused {
    pub file: String,
    /// Line of the route's `plugin` key.
    pub line: usize,
    pub route: String,
    pub plugin: String,
    /// The policy's own words, or why the call failed.
    pub reason: String,
}

#[derive(Default)]
pub struct PluginSet {
    plugins: BTreeMap<String, Arc<Plugin>>,
    /// The last load error per plugin name (a name can have both a plugin, the previous good
    /// version still serving, and an error, the newer file that was refused).
    errors: BTreeMap<String, String>,
}

impl PluginSet {
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    pub fn errors(&self) -> &BTreeMap<String, String> {
        &self.errors
    }

    /// Loads every `<name>.wasm` in `dir`. A file that fails keeps `previous`'s plugin of the
    /// same name serving, and its error is recorded.
    pub async fn load_dir(
        engine: &PluginEngine,
        dir: &Path,
        previous: Option<&PluginSet>,
        limits: Limits,
    ) -> PluginSet {
        let mut set = PluginSet::default();
        let files = match read_wasm_files(dir).await {
            Ok(files) => files,
            Err(e) => {
                let msg = format!("cannot read plugin directory {}: {e}", dir.display());
                tracing::error!("{msg}");
                set.errors.insert("*".into(), msg);
                if let Some(prev) = previous {
                    set.plugins = prev.plugins.clone();
                }
                return set;
            }
        };
        for (name, path) in files {
            let previous_plugin = previous.and_then(|p| p.plugins.get(&name));
            match load_one(engine, &name, &path, previous_plugin, limits).await {
                Ok(plugin) => {
                    set.plugins.insert(name, plugin);
                }
                Err(e) => {
                    tracing::error!(plugin = %name, file = %path.display(), "refused: {e}");
                    set.errors.insert(name.clone(), e.to_string());
                    if let Some(p) = previous_plugin {
                        tracing::warn!(plugin = %name, version = %p.version, "previous version keeps serving");
                        set.plugins.insert(name, p.clone());
                    }
                }
            }
        }
        set
    }
}

impl PluginSet {
    /// Asks every route's policy whether it accepts the route's settings (`check-settings`),
    /// once per route, in the config's order; the first refusal is the answer. A route whose
    /// plugin is not loaded is skipped: [`crate::gateway::Snapshot::check`] refuses it with
    /// its own reason. Called for every set built for a config, so a reload with a new plugin
    /// file, a new setting, or both is checked the same way.
    pub async fn check_settings(
        &self,
        config: &Config,
        limits: Limits,
    ) -> Result<(), SettingsRefused> {
        for route in &config.routes {
            let Some(plugin) = self.plugins.get(&route.plugin) else {
                continue;
            };
            let settings = convert::settings(route);
            let reason = match plugin.check_settings(limits, &route.name, &settings).await {
                Ok(Ok(())) => continue,
                Ok(Err(reason)) => reason,
                Err(e) => format!("check-settings failed: {e}"),
            };
            return Err(SettingsRefused {
                file: config.path.display().to_string(),
                line: route.plugin_line,
                route: route.name.clone(),
                plugin: route.plugin.clone(),
                reason,
            });
        }
        Ok(())
    }
}

async fn load_one(
    engine: &PluginEngine,
    name: &str,
    path: &Path,
    previous: Option<&Arc<Plugin>>,
    limits: Limits,
) -> Result<Arc<Plugin>, PluginError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| PluginError::Read {
            plugin: name.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    if let Some(p) = previous
        && p.version == super::engine::content_hash(&bytes)
    {
        return Ok(p.clone());
    }
    let (engine, owned_name) = (engine.clone(), name.to_owned());
    // Compiling takes tens of milliseconds of CPU: off the async workers.
    let plugin = tokio::task::spawn_blocking(move || engine.load(&owned_name, &bytes))
        .await
        .map_err(|e| PluginError::Compile {
            plugin: name.to_owned(),
            reason: format!("compiler task failed: {e}"),
        })??;
    plugin.trial(limits).await?;
    tracing::info!(plugin = %name, version = %plugin.version, size = plugin.size, "plugin loaded");
    Ok(Arc::new(plugin))
}

async fn read_wasm_files(dir: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        // Editors and build tools write temporary files beside the target; skip hidden ones.
        if stem.starts_with('.') {
            continue;
        }
        // A link is followed. One that leads nowhere (or a file gone since the listing) is
        // listed all the same: its load fails with a reason that names it, where an error here
        // would refuse the whole directory.
        let is_file = entry.file_type().await?.is_file()
            || tokio::fs::metadata(&path)
                .await
                .map_or(true, |m| m.is_file());
        if is_file {
            out.push((stem.to_owned(), path));
        }
    }
    out.sort();
    Ok(out)
}
