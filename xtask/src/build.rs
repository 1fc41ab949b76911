//! Building the gateway, the stand-in backend and the plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub const WASM_TARGET: &str = "wasm32-wasip2";
/// Plugins build in their own target directory: a plugin build started from inside a running
/// `cargo test` (the test harness does that) must not wait for the lock of `target/`.
pub const WASM_TARGET_DIR: &str = "target/wasm";
/// Example plugins, copied to `target/plugins/<name>.wasm` (the demo's plugin directory).
pub const PLUGINS: &[&str] = &["analysis-policy", "standard"];
/// Every wasm package, for builds and lints (the hostile test plugins are used by the tests
/// from `target/wasm`, see `tests/support/plugins.rs`).
pub const ALL_PLUGINS: &[&str] = &[
    "larder-sdk",
    "analysis-policy",
    "standard",
    "loop-forever",
    "memory-hog",
    "panic",
    "bad-key",
    "chatty",
    "flood",
];

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .current_dir(root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Builds every plugin and copies the example plugins into `target/plugins`.
pub fn plugins() -> anyhow::Result<PathBuf> {
    crate::setup::ensure_wasm_target()?;
    let mut args = vec![
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--target-dir",
        WASM_TARGET_DIR,
    ];
    for p in ALL_PLUGINS {
        args.extend(["-p", p]);
    }
    cargo(&args)?;
    let root = root();
    let out = root.join(WASM_TARGET_DIR).join(WASM_TARGET).join("release");
    let dest = root.join("target/plugins");
    std::fs::create_dir_all(&dest)?;
    for name in PLUGINS {
        let built = out.join(format!("{}.wasm", name.replace('-', "_")));
        install(&built, &dest.join(format!("{name}.wasm")))?;
    }
    Ok(dest)
}

/// Copies `from` to `to` through a temporary file and a rename, so a gateway watching the
/// directory never reads a half-written plugin.
fn install(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    let tmp = to.with_file_name(format!(
        ".{}.tmp",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("plugin")
    ));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}

/// Plugins, then `target/release/larder` and `target/release/scat-origin`.
pub fn all() -> anyhow::Result<()> {
    plugins()?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "larder",
        "-p",
        "larder-tests",
        "--bins",
    ])
}
