//! Phase 2 of a request: asking the route's policy plugin what to do.
//!
//! - [`code_cache`]: compiled code kept on disk, so unchanged plugins load without compiling.
//! - [`engine`]: one wasmtime `Engine` and `Linker` for the process; compiling a plugin and
//!   pre-instantiating it happen here, off the request path.
//! - [`world`]: the versions of the WIT the gateway loads (0.1.0 and 0.2.0), and calls that
//!   work for each.
//! - [`plugin`]: a loaded plugin and its three calls, each in a fresh sandboxed instance.
//! - [`sandbox`]: what an instance may touch, and its time and memory limits.
//! - [`convert`]: the request as the policy sees it, and the checks on what it answers.
//! - [`set`]: the plugins of one configuration, as a snapshot requests take at entry.

pub mod code_cache;
pub mod convert;
pub mod engine;
pub mod plugin;
pub mod sandbox;
pub mod set;
pub mod world;

pub use engine::PluginEngine;
/// The types a policy takes and gives (the same for every WIT version), for callers outside the
/// gateway, such as tests, that have no `larder-bindings` dependency of their own.
pub use larder_bindings::types;
pub use plugin::Plugin;
pub use set::{PluginSet, SettingsRefused};
pub use world::WitVersion;

/// Why a plugin could not be loaded or could not answer. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin}: cannot read {path}: {source}")]
    Read {
        plugin: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The file is not a component, or not a valid one. `reason` says what to do.
    #[error("plugin {plugin}: not a valid WebAssembly component: {reason}")]
    Compile { plugin: String, reason: String },
    /// A component, but not of a `larder:policy` world this gateway loads (see
    /// [`world::WitVersion`]). `reason` says what to do.
    #[error("plugin {plugin}: does not fit a larder:policy world this gateway loads: {reason}")]
    World { plugin: String, reason: String },
    #[error("plugin {plugin}@{version}: failed to instantiate: {reason}")]
    Instantiate {
        plugin: String,
        version: String,
        reason: String,
    },
    #[error("plugin {plugin}@{version}: trapped: {reason}")]
    Trap {
        plugin: String,
        version: String,
        reason: String,
    },
    #[error("plugin {plugin}@{version}: ran past its deadline of {deadline:?}")]
    DeadlineExceeded {
        plugin: String,
        version: String,
        deadline: std::time::Duration,
    },
    #[error(
        "plugin {plugin}@{version}: grew past its memory limit of {limit} bytes (it asked for {wanted}); raise `plugins.memory_limit` (at most {max} bytes) if the policy needs that much",
        max = engine::POOL_MAX_MEMORY
    )]
    MemoryExceeded {
        plugin: String,
        version: String,
        limit: usize,
        /// The linear memory size the guest asked for.
        wanted: usize,
    },
    #[error("plugin {plugin}@{version}: returned an invalid answer: {reason}")]
    Malformed {
        plugin: String,
        version: String,
        reason: String,
    },
    #[error("plugin {plugin} is not loaded (no valid {plugin}.wasm in the plugin directory)")]
    NotLoaded { plugin: String },
}

impl PluginError {
    /// A short, stable name for logs, metrics and the `Cache-Status` detail.
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginError::Read { .. } => "plugin-read",
            PluginError::Compile { .. } => "plugin-compile",
            PluginError::World { .. } => "plugin-world",
            PluginError::Instantiate { .. } => "plugin-instantiate",
            PluginError::Trap { .. } => "plugin-trap",
            PluginError::DeadlineExceeded { .. } => "plugin-deadline",
            PluginError::MemoryExceeded { .. } => "plugin-memory",
            PluginError::Malformed { .. } => "plugin-malformed",
            PluginError::NotLoaded { .. } => "plugin-not-loaded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PluginError;

    fn named(plugin: &str) -> (String, String) {
        (plugin.to_owned(), "0123abcd".to_owned())
    }

    /// The failures a request can meet: they end up in its `Cache-Status` detail.
    fn call_failures() -> Vec<PluginError> {
        let (plugin, version) = named("policy");
        let reason = String::from("why");
        vec![
            PluginError::Instantiate {
                plugin: plugin.clone(),
                version: version.clone(),
                reason: reason.clone(),
            },
            PluginError::Trap {
                plugin: plugin.clone(),
                version: version.clone(),
                reason: reason.clone(),
            },
            PluginError::DeadlineExceeded {
                plugin: plugin.clone(),
                version: version.clone(),
                deadline: std::time::Duration::from_millis(5),
            },
            PluginError::MemoryExceeded {
                plugin: plugin.clone(),
                version: version.clone(),
                limit: 1 << 24,
                wanted: 1 << 25,
            },
            PluginError::Malformed {
                plugin: plugin.clone(),
                version,
                reason,
            },
            PluginError::NotLoaded { plugin },
        ]
    }

    /// The failures only a load meets: they are reported by `GET /plugins` and the reload.
    fn load_failures() -> Vec<PluginError> {
        let plugin = String::from("policy");
        vec![
            PluginError::Read {
                plugin: plugin.clone(),
                path: "plugins/policy.wasm".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
            PluginError::Compile {
                plugin: plugin.clone(),
                reason: "not a component".into(),
            },
            PluginError::World {
                plugin,
                reason: "exports nothing larder loads".into(),
            },
        ]
    }

    #[test]
    fn every_failure_a_request_can_meet_is_named_in_the_http_semantics_doc() {
        let doc = include_str!("../../../docs/http-semantics.md");
        for e in call_failures() {
            let name = format!("`{}`", e.as_str());
            assert!(
                doc.contains(&name),
                "{name} is not in docs/http-semantics.md"
            );
        }
    }

    #[test]
    fn every_failure_has_a_name_of_its_own_and_its_message_names_the_plugin() {
        let all: Vec<PluginError> = call_failures().into_iter().chain(load_failures()).collect();
        let names: std::collections::BTreeSet<&str> = all.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), all.len(), "{names:?}");
        for e in &all {
            assert!(e.as_str().starts_with("plugin-"), "{}", e.as_str());
            assert!(e.to_string().contains("plugin policy"), "{e}");
        }
    }
}
