//! `larder plugin check`: is this `.wasm` file a policy component this gateway can load?
//!
//! It loads the file with the gateway's own engine and trial-instantiates it in the sandbox, so
//! an `ok` here means the gateway will accept it, and an error is the one the gateway would give.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::policy::sandbox::Limits;
use crate::policy::{Plugin, PluginEngine};

/// `--memory-limit`: the linear memory a plugin instance may grow to, as the gateway's
/// `plugins.memory_limit` (whose default it has), so that a policy that passes here fits the
/// gateway too.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct MemoryLimit {
    /// Linear memory per instance, bytes: the gateway's `plugins.memory_limit` (at most
    /// 67108864).
    #[arg(long = "memory-limit", default_value_t = crate::config::defaults::MEMORY_LIMIT as u64,
          value_parser = clap::value_parser!(u64).range(1..=crate::policy::engine::POOL_MAX_MEMORY as u64))]
    pub bytes: u64,
}

/// Compiles `file` with a fresh engine, off the async threads; the plugin is named by the file
/// stem, as the gateway names it. Compiled code is kept in the gateway's default code cache
/// (`config::default_code_cache`), so running `check`, `run` and `test` on one file compiles it
/// once: a Rust policy compiles in a fraction of a second, a Python one (CPython inside) in
/// 10 to 20 s.
pub(super) async fn load(file: &Path) -> anyhow::Result<Plugin> {
    let bytes = tokio::fs::read(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned();
    let engine = PluginEngine::with_code_cache(
        Some(&crate::config::default_code_cache()),
        crate::policy::code_cache::DEFAULT_BUDGET,
    )?;
    let plugin = tokio::task::spawn_blocking(move || engine.load(&name, &bytes)).await??;
    Ok(plugin)
}

/// Loads and trial-instantiates `file`; describes it.
pub async fn check(file: &Path, memory: MemoryLimit) -> anyhow::Result<String> {
    let plugin = load(file).await?;
    plugin
        .trial(Limits {
            deadline: Duration::from_millis(100),
            memory: memory.bytes as usize,
        })
        .await?;
    Ok(format!(
        "{}: ok\n  world:   {}/policy-plugin\n  name:    {}\n  version: {}\n  size:    {} bytes\n  exports: {}",
        file.display(),
        plugin.wit_version().package(),
        plugin.name,
        plugin.version,
        plugin.size,
        plugin.wit_version().exports(),
    ))
}
