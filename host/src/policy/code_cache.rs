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
//!
//! The directory is bounded (`plugins.code_cache_bytes`): every plugin version ever loaded
//! leaves a file, and a developer reloading a Python policy all day would otherwise leave 39 MB
//! per build. After each write the least recently used files go until the rest fit; a load from
//! the cache counts as a use (it touches the file's modification time). Deleting a file a
//! gateway has mapped costs nothing but a compile at its next restart. Temporary files that a
//! crashed write left behind go once they are an hour old.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmtime::Engine;
use wasmtime::component::Component;

/// What the cache may hold when `plugins.code_cache_bytes` is not set: about 25 builds of a
/// Python policy, hundreds of a Rust one.
pub const DEFAULT_BUDGET: u64 = 1024 * 1024 * 1024;

/// How old a temporary file must be before it is taken for a crashed write's and deleted.
const ABANDONED: Duration = Duration::from_secs(3600);

/// The on-disk cache of one engine configuration.
#[derive(Clone)]
pub struct CodeCache {
    dir: PathBuf,
    engine_hash: u64,
    /// Bytes of `.cwasm` files the directory may hold after a write (the file just written
    /// is always kept).
    budget: u64,
}

impl CodeCache {
    /// Uses (and creates, private to this user) `dir`, holding at most `budget` bytes.
    pub fn open(dir: &Path, engine: &Engine, budget: u64) -> std::io::Result<Self> {
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
            budget,
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
            Ok(component) => {
                // A use: the least recently used files are the first to go.
                let _ = std::fs::File::open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                Some(component)
            }
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
        match result {
            Ok(()) => self.prune(&path),
            Err(e) => tracing::warn!(dir = %self.dir.display(), "cannot write the code cache: {e}"),
        }
    }

    /// Deletes the least recently used compilations until the rest fit the budget, never
    /// `keep`, and temporary files abandoned by a crashed write. Other gateways sharing the
    /// directory may prune at the same time: a file already gone is not an error.
    fn prune(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(now);
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "cwasm" {
                files.push((modified, meta.len(), path));
            } else if ext.starts_with("tmp")
                && now.duration_since(modified).unwrap_or_default() > ABANDONED
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        if total <= self.budget {
            return;
        }
        files.sort();
        let (mut dropped, mut freed) = (0, 0);
        for (_, len, path) in files {
            if total <= self.budget {
                break;
            }
            if path == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                dropped += 1;
                freed += len;
            }
            total -= len;
        }
        tracing::info!(dir = %self.dir.display(), dropped, freed, budget = self.budget, "code cache over its budget: least recently used compilations dropped");
    }
}
