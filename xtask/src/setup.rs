//! Installing what a fresh machine lacks.

use std::process::Command;

use anyhow::{Context, bail};

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `rustup target add wasm32-wasip2`, unless installed.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains(crate::build::WASM_TARGET) => Ok(()),
        Ok(_) => {
            eprintln!("xtask: installing the {} target", crate::build::WASM_TARGET);
            let status = Command::new("rustup")
                .args(["target", "add", crate::build::WASM_TARGET])
                .status()
                .context("running rustup")?;
            if !status.success() {
                bail!("`rustup target add {}` failed", crate::build::WASM_TARGET);
            }
            Ok(())
        }
        Err(_) => bail!(
            "rustup not found: install the {} target for your Rust toolchain by hand",
            crate::build::WASM_TARGET
        ),
    }
}

/// The tests start their own `redis-server`s; install Debian's package when it is missing and
/// we are allowed to.
pub fn ensure_redis_server() -> anyhow::Result<()> {
    if have("redis-server") {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root || !have("apt-get") {
        bail!(
            "redis-server is not installed; the tests start their own. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) and run again"
        );
    }
    eprintln!("xtask: installing redis-server (apt-get)");
    let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq", "redis-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !update.success() || !install.success() || !have("redis-server") {
        bail!("installing redis-server with apt-get failed");
    }
    Ok(())
}
