//! Building the gateway, the stand-in backend and the plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use xtask::plugins;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new(cargo_program()).args(args).current_dir(root()))
}

/// Runs `cmd`, echoing it; an error unless it succeeds.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("xtask: {line}");
    let status = cmd.status().with_context(|| format!("running {line}"))?;
    if !status.success() {
        bail!("{line} failed");
    }
    Ok(())
}

/// `cargo ARGS` with the workspace's own crates compiled by `clippy-driver` instead of `rustc`
/// (dependencies by `rustc` as usual): the build lints what it compiles, so one build is both
/// the lint and the test build. A separate `cargo clippy` would check every dependency once
/// more in check mode, which cost CI several minutes of its two cores. With `deny`, every
/// warning (rustc's and clippy's) fails the build, as `cargo clippy -- -D warnings` does;
/// without, they are printed.
///
/// The build, the demo and the tests all build this way, so none rebuilds what another built
/// (the wrapper and its arguments are part of cargo's fingerprint).
pub fn cargo_linted(args: &[&str], deny: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new(cargo_program());
    cmd.args(args).current_dir(root());
    if let Some(driver) = clippy_driver() {
        let clippy_args = if deny {
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
        } else {
            ""
        };
        cmd.env("RUSTC_WORKSPACE_WRAPPER", driver)
            .env("CLIPPY_ARGS", clippy_args);
    } else if deny {
        bail!("clippy-driver not found: `rustup component add clippy`");
    }
    run(&mut cmd)
}

/// The toolchain's `clippy-driver`: beside the `cargo` that runs us, else on the `PATH`.
fn clippy_driver() -> Option<PathBuf> {
    let beside = Path::new(&cargo_program()).with_file_name("clippy-driver");
    if beside.is_file() {
        return Some(beside);
    }
    Command::new("clippy-driver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("clippy-driver"))
}

/// `cargo <subcommand>` over every plugin crate and the SDK (see `xtask::plugins`).
pub fn plugin_cargo(subcommand: &str) -> Command {
    plugins::cargo(&cargo_program(), subcommand, &root())
}

/// Builds every plugin and copies the example plugins (those under `plugins/`) into
/// `target/plugins` (the demo's plugin directory).
pub fn plugins() -> anyhow::Result<PathBuf> {
    crate::setup::ensure_wasm_target()?;
    run(&mut plugin_cargo("build"))?;
    let root = root();
    let dest = root.join("target/plugins");
    std::fs::create_dir_all(&dest)?;
    let examples = root.join("plugins");
    for c in plugins::discover(&root) {
        if c.plugin && c.dir.starts_with(&examples) {
            install(&c.component(&root), &dest.join(format!("{}.wasm", c.name)))?;
        }
    }
    Ok(dest)
}

/// Builds every Python policy (`plugins/python/*/app.py`) into `target/python/<name>.wasm`,
/// those whose inputs changed (see `xtask::python`).
pub fn python_plugins() -> anyhow::Result<Vec<PathBuf>> {
    let root = root();
    xtask::python::discover(&root)
        .iter()
        .map(|policy| xtask::python::build(&root, policy))
        .collect()
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

/// Plugins, then `target/release/larder` and `target/release/scat-origin`, linted
/// ([`cargo_linted`]; `deny`: warnings fail the build).
///
/// One cargo build, so the `larder` library is compiled once for the binary and the tests:
/// cargo unifies the features that `larder-tests` asks of it (`test-support`) with the
/// binary's. That adds no code to the binary (the test helpers are generic over the store, or
/// unused, and dropped at link time); `cargo build --release -p larder` builds without them.
pub fn all(deny: bool) -> anyhow::Result<()> {
    plugins()?;
    cargo_linted(
        &[
            "build",
            "--release",
            "-p",
            "larder",
            "-p",
            "larder-tests",
            "--bins",
        ],
        deny,
    )
}
