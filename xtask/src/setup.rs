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

/// What the tests run besides cargo: their own `redis-server`s, and headless Chromium with
/// chromedriver for the dashboard's browser test. Installs Debian's packages for whatever is
/// missing when we are allowed to (root with apt-get), else says what to install.
pub fn ensure_test_programs() -> anyhow::Result<()> {
    let wanted = [
        ("redis-server", "redis-server", "redis"),
        ("/usr/bin/chromium", "chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver", "chromedriver"),
    ];
    let missing: Vec<(&str, &str)> = wanted
        .iter()
        .filter(|(program, ..)| !have(program))
        .map(|(_, package, brew)| (*package, *brew))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root || !have("apt-get") {
        bail!(
            "the tests need {0}; install them (Debian/Ubuntu: `sudo apt-get install {0}`) and run again (LARDER_SKIP_BROWSER=1 skips the browser test)",
            packages.join(" ")
        );
    }
    eprintln!("xtask: installing {} (apt-get)", packages.join(" "));
    let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !update.success() || !install.success() {
        bail!("installing {} with apt-get failed", packages.join(" "));
    }
    if let Some((program, ..)) = wanted.iter().find(|(program, ..)| !have(program)) {
        bail!("{program} is still missing after apt-get install");
    }
    Ok(())
}
