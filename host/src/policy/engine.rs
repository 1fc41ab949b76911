//! The process's one wasmtime engine, and how a plugin file becomes a ready-to-run plugin.

use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::code_cache::CodeCache;
use super::sandbox::{CallState, TICK};
use super::world::{self, Pre, WitVersion};
use super::{Plugin, PluginError};

/// The largest linear memory a plugin instance can have, whatever `plugins.memory_limit` says
/// (which the per-call limiter enforces below it).
pub const POOL_MAX_MEMORY: usize = 64 * 1024 * 1024;
/// Instances that can exist at once (calls in flight); one more fails that call (open).
const POOL_INSTANCES: u32 = 512;

/// The pooling allocator: a new instance (for a first call, or after one failed or served its
/// share) takes its memory, tables and async stack from slots reserved once, so a call costs no `mmap`/`munmap` (and no TLB
/// shootdown across cores), and the first pages of each slot stay resident between calls.
/// Measured under load before it: most of a hit's CPU time went to the kernel mapping and
/// unmapping an instance per call.
fn pool() -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        // A wasip2 component holds a few core instances (the guest, WASI adapter shims).
        .max_core_instances_per_component(32)
        .total_core_instances(POOL_INSTANCES * 8)
        .max_memories_per_component(4)
        .total_memories(POOL_INSTANCES * 2)
        .max_tables_per_component(16)
        .total_tables(POOL_INSTANCES * 8)
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(POOL_MAX_MEMORY)
        // Instances are reused (see `Plugin::run_with`), so instantiation is rare: keep little
        // resident per slot, and few slots warm, so that memory stays flat across reloads.
        .max_unused_warm_slots(16)
        .linear_memory_keep_resident(128 * 1024)
        .table_keep_resident(16 * 1024)
        .async_stack_keep_resident(64 * 1024);
    pool
}

/// The engine, the linker with the host's imports, and the epoch ticker.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    cache: Option<CodeCache>,
}

impl PluginEngine {
    /// An engine without a code cache: every load compiles.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_code_cache(None, 0)
    }

    /// An engine that keeps compiled code in `cache_dir`, at most `budget` bytes of it (see
    /// [`CodeCache`]); an unusable directory is logged and the engine compiles every time.
    pub fn with_code_cache(
        cache_dir: Option<&std::path::Path>,
        budget: u64,
    ) -> anyhow::Result<Self> {
        let mut config = Config::new();
        // (Calls are made with `call_async`, so a guest that runs long yields to tokio on an
        // epoch tick instead of blocking its worker thread; wasmtime 48 enables async support
        // whenever the `async` feature is on.)
        // Epoch interruption rather than fuel: it costs a load and compare per loop back-edge
        // instead of a counter update per instruction block, and the deadline is in time.
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool()));
        // Plugin memories are small (`plugins.memory_limit`): reserve what the pool's slots
        // hold rather than 4 GiB each, with explicit bounds checks in place of guard pages.
        config.memory_reservation(POOL_MAX_MEMORY as u64);
        config.memory_guard_size(64 * 1024);
        config.memory_reservation_for_growth(0);
        let engine = Engine::new(&config).map_err(wasm_error)?;

        let mut linker = Linker::new(&engine);
        // WASI preview 2, linked so that std-built guests instantiate; the per-call context
        // grants nothing (see `sandbox`).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasm_error)?;
        // The host's functions under the name of every WIT version the gateway loads.
        world::add_host_to_linker(&mut linker).map_err(wasm_error)?;

        // The ticker: a plain thread, not a tokio task, so that a saturated runtime cannot
        // delay it and stretch every deadline. It stops when the last engine clone is dropped.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("larder-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;

        let cache = cache_dir.and_then(|dir| match CodeCache::open(dir, &engine, budget) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "no code cache: {e}");
                None
            }
        });
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache,
        })
    }

    /// Compiles, links and checks a plugin. CPU-heavy (tens of milliseconds): call it from a
    /// blocking thread, never from a tokio worker.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let version = content_hash(bytes);
        let compile_error = |reason: String| PluginError::Compile {
            plugin: name.to_owned(),
            reason,
        };
        if let Some(reason) = not_a_component(bytes) {
            return Err(compile_error(reason));
        }
        let component = match self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, bytes))
        {
            Some(cached) => cached,
            None => {
                let compiled = Component::from_binary(&self.engine, bytes).map_err(|e| {
                    compile_error(format!(
                        "{e:#} (the file is damaged or was cut short: rebuild it with `cargo build --release --target wasm32-wasip2` and copy it again)"
                    ))
                })?;
                if let Some(cache) = &self.cache {
                    cache.store(bytes, &compiled);
                }
                compiled
            }
        };
        let world = |reason: String| PluginError::World {
            plugin: name.to_owned(),
            reason,
        };
        let wit = world::check_world(&self.engine, &component).map_err(world)?;
        // What `check_world` lets through and the linker still refuses: a function or type
        // whose signature differs from this gateway's WIT.
        let world = |e: wasmtime::Error| {
            world(format!(
                "{e:#} (rebuild it with the larder-sdk of this gateway, whose wit/ defines `{}`)",
                WitVersion::CURRENT.package()
            ))
        };
        let pre = self.linker.instantiate_pre(&component).map_err(world)?;
        let pre = Pre::new(wit, pre).map_err(world)?;
        Ok(Plugin::new(
            name.into(),
            version,
            bytes.len(),
            SystemTime::now(),
            pre,
            self.engine.clone(),
        ))
    }
}

/// Why `bytes` is not a binary component at all, in words that say what to do; `None` when
/// it has a component's header (whether the rest is valid is the compiler's to say).
///
/// The header is the first 8 bytes: the magic `\0asm`, then a version and layer, which tell a
/// core module (what `wasm32-unknown-unknown` and `wasm32-wasip1` builds produce) from a
/// component (what `wasm32-wasip2` builds produce).
pub fn not_a_component(bytes: &[u8]) -> Option<String> {
    const BUILD: &str = "build the plugin with `cargo build --release --target wasm32-wasip2` and use target/wasm32-wasip2/release/<crate>.wasm";
    if bytes.is_empty() {
        return Some(format!(
            "the file is empty (a build or a copy that did not finish?): {BUILD}"
        ));
    }
    if bytes.trim_ascii_start().starts_with(b"(") {
        return Some(format!(
            "this is WebAssembly text (.wat), which the gateway does not load: {BUILD}"
        ));
    }
    if !bytes.starts_with(b"\0asm") {
        return Some(format!(
            "the file does not start with the WebAssembly magic bytes `\\0asm`, so it is not WebAssembly: {BUILD}"
        ));
    }
    match bytes.get(4..8) {
        Some([0x0d, 0x00, 0x01, 0x00]) => None,
        Some([0x01, 0x00, 0x00, 0x00]) => Some(
            "this file is a core WebAssembly module, not a component: build with `cargo build --release --target wasm32-wasip2` (wasm32-unknown-unknown and wasm32-wasip1 builds make core modules; a wasip1 module can be turned into a component with `wasm-tools component new`)".to_owned(),
        ),
        Some(other) => Some(format!(
            "unknown WebAssembly binary version/layer {other:02x?} (a component has [0d, 00, 01, 00]): {BUILD}"
        )),
        None => Some(format!(
            "the file is cut short ({} bytes, shorter than a WebAssembly header): {BUILD}",
            bytes.len()
        )),
    }
}

/// The first 12 hex digits of the BLAKE3 hash of a plugin file: its version in logs and
/// `/health`.
pub fn content_hash(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    hash.to_hex()[..12].to_owned()
}

/// `wasmtime::Error` is not a `std::error::Error`; carry its full chain as text.
fn wasm_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_tells_a_module_from_a_component_and_says_what_to_do() {
        let core = not_a_component(b"\0asm\x01\0\0\0").unwrap();
        assert!(
            core.contains("core WebAssembly module, not a component")
                && core.contains("--target wasm32-wasip2"),
            "{core}"
        );
        assert_eq!(not_a_component(b"\0asm\x0d\0\x01\0rest"), None);
        assert!(not_a_component(b"").unwrap().contains("empty"));
        assert!(not_a_component(b"  (module)").unwrap().contains("text"));
        assert!(not_a_component(b"ELF\x7f....").unwrap().contains("magic"));
        assert!(not_a_component(b"\0asm\x01").unwrap().contains("cut short"));
        assert!(
            not_a_component(b"\0asm\x02\0\0\0")
                .unwrap()
                .contains("unknown WebAssembly binary version")
        );
    }

    #[test]
    fn a_component_exporting_something_else_is_told_what_it_exports() {
        use wasm_encoder::{
            Component, ComponentExportKind, ComponentExportSection, ComponentInstanceSection,
        };
        // What an HTTP handler component (built for another host) exports: an instance of
        // `wasi:http/incoming-handler`; here an empty one.
        let mut component = Component::new();
        let mut instances = ComponentInstanceSection::new();
        instances.export_items::<&str, _>([]);
        component.section(&instances);
        let mut exports = ComponentExportSection::new();
        let name = "wasi:http/incoming-handler@0.2.0";
        exports.export(name, ComponentExportKind::Instance, 0, None);
        component.section(&exports);
        let err = PluginEngine::new()
            .unwrap()
            .load("handler", &component.finish())
            .err()
            .expect("a component without the policy export is refused")
            .to_string();
        assert!(
            err.contains(&format!(
                "does not export `larder:policy/policy@0.2.0` (it exports `{name}`;"
            )),
            "{err}"
        );
    }

    #[test]
    fn a_component_without_the_policy_export_is_told_to_use_the_macro() {
        let engine = PluginEngine::new().unwrap();
        let err = engine
            .load("empty", b"\0asm\x0d\0\x01\0")
            .err()
            .expect("an empty component is refused")
            .to_string();
        assert!(
            err.starts_with("plugin empty: does not fit a larder:policy world")
                && err.contains(
                    "does not export `larder:policy/policy@0.2.0` (it exports nothing; a plugin built against an older WIT exports `larder:policy/policy@0.1.0`)"
                )
                && err.contains("larder_sdk::export_policy!(YourType)"),
            "{err}"
        );
    }
}
