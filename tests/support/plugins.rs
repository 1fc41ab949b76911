//! The real plugin components, built for `wasm32-wasip2` once per test process.
//!
//! `cargo xtask test` builds them before the tests run; when a test is run on its own with
//! `cargo test`, the first call here builds them (a no-op when they are up to date). The build
//! uses its own target directory, so it does not wait on the lock that the running `cargo test`
//! holds on `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ALL: &[&str] = &[
    "analysis-policy",
    "standard",
    "loop-forever",
    "memory-hog",
    "panic",
    "bad-key",
    "chatty",
    "flood",
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_owned()
}

fn build_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root).args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
            "target/wasm",
        ]);
        for p in ALL {
            cmd.args(["-p", p]);
        }
        // The outer `cargo test` sets variables meant for its own build.
        for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_BUILD_TARGET"] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("running cargo to build the plugins");
        assert!(
            status.success(),
            "building the plugins failed (is the wasm32-wasip2 target installed? `cargo xtask test` installs it)"
        );
        root.join("target/wasm/wasm32-wasip2/release")
    })
}

/// The built component of plugin crate `name` (e.g. `"analysis-policy"`).
pub fn path(name: &str) -> PathBuf {
    assert!(ALL.contains(&name), "unknown plugin {name}");
    build_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// Copies plugin `name` into `dir` as `<as_name>.wasm`.
pub fn install(name: &str, dir: &Path, as_name: &str) {
    std::fs::copy(path(name), dir.join(format!("{as_name}.wasm"))).expect("copy plugin");
}
