//! Compiled plugin code, cached on disk so a restart or a reload of an unchanged plugin does not
//! compile again.
//!
//! Compiling a component takes tens of milliseconds; loading wasmtime's serialized form of it
//! takes well under one. Files are named by the BLAKE3 hash of the `.wasm` and the engine's
//! compatibility hash (wasmtime version and every setting that changes generated code), so a
//! changed plugin or a new gateway build never loads stale code.
//!
//! Files are written to a temporary name and renamed into place, never overwritten or truncated
//! (deleting one is safe: a mapping keeps the deleted file's pages), and they are memory-mapped
//! (`deserialize_file`) rather than copied: only the pages a plugin runs or reads become
//! resident, as clean file pages the kernel can reclaim and shares between the gateways of one
//! host. That matters for a Python policy, whose compiled code (the whole CPython interpreter)
//! is about 39 MB, most of which a policy never runs. A cache file that fails to load (truncated,
//! from an incompatible build) is deleted and the plugin compiled afresh.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The on-disk cache of one engine configuration.
#[derive(Clone)]
pub struct CodeCache {
    dir: PathBuf,
    engine_hash: u64,
}

impl CodeCache {
    /// Uses (and creates, private to this user) `dir`.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            engine_hash: hasher.finish(),
        })
    }

    fn path(&self, bytes: &[u8]) -> PathBuf {
        self.dir.join(format!(
            "{}-{:016x}.cwasm",
            blake3::hash(bytes).to_hex(),
            self.engine_hash
        ))
    }

    /// The cached compilation of `bytes`, if there is a usable one.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.path(bytes);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output for a
        // compatible engine (it checks the compatibility header itself) and to stay unchanged
        // while mapped. The file was written by `store` below, from a compilation made in this
        // process kind, into a directory created private to this user, under a name bound to the
        // source's hash, and renamed into place whole; nothing here writes it again. Whoever can
        // write that directory can already replace the plugins themselves.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(file = %path.display(), "dropping an unusable code cache file: {e:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves `component`, the compilation of `bytes`. Failures are logged, never fatal.
    pub fn store(&self, bytes: &[u8], component: &Component) {
        let path = self.path(bytes);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|code| {
                // Unique, so concurrent loads of one plugin never write the same file.
                let tmp = path.with_extension(format!("tmp{:x}", rand::random::<u64>()));
                std::fs::write(&tmp, code)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot write the code cache: {e}");
        }
    }
}
