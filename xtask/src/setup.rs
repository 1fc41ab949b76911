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

/// The `wasm32-wasip2` target, unless installed. `rust-toolchain.toml` declares it, and rustup
/// installs what that file names when it may (`RUSTUP_AUTO_INSTALL` not `0`); this is the
/// fallback for a rustup that did not.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(crate::build::root())
        .output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains(xtask::plugins::WASM_TARGET) => Ok(()),
        Ok(_) => {
            eprintln!(
                "xtask: installing the {} target",
                xtask::plugins::WASM_TARGET
            );
            let status = Command::new("rustup")
                .args(["target", "add", xtask::plugins::WASM_TARGET])
                .current_dir(crate::build::root())
                .status()
                .context("running rustup")?;
            if !status.success() {
                bail!("`rustup target add {}` failed", xtask::plugins::WASM_TARGET);
            }
            Ok(())
        }
        Err(_) => bail!(
            "rustup not found: install the {} target for your Rust toolchain by hand",
            xtask::plugins::WASM_TARGET
        ),
    }
}

/// `rustfmt` and `clippy`, unless installed: the same fallback as [`ensure_wasm_target`].
pub fn ensure_lint_components() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (subcommand, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        let installed = Command::new(&cargo)
            .args([subcommand, "--version"])
            .current_dir(crate::build::root())
            .output()
            .is_ok_and(|o| o.status.success());
        if installed {
            continue;
        }
        eprintln!("xtask: installing {component}");
        let added = Command::new("rustup")
            .args(["component", "add", component])
            .current_dir(crate::build::root())
            .status()
            .is_ok_and(|s| s.success());
        if !added {
            bail!("`cargo {subcommand}` is missing and `rustup component add {component}` failed");
        }
    }
    Ok(())
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
    apt_install(&packages).map_err(|e| {
        e.context("the tests need these (LARDER_SKIP_BROWSER=1 skips the browser test)")
    })?;
    if let Some((program, ..)) = wanted.iter().find(|(program, ..)| !have(program)) {
        bail!("{program} is still missing after apt-get install");
    }
    Ok(())
}

/// Installs Debian packages with apt-get: the project's one apt installer (`.ci/compose-check`
/// calls it as `cargo xtask apt-install PACKAGE...`). Needs root, as on CI; otherwise says what
/// to install.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root || !have("apt-get") {
        bail!(
            "{0} missing; install (Debian/Ubuntu: `sudo apt-get install {0}`) and run again",
            packages.join(" ")
        );
    }
    eprintln!("xtask: installing {} (apt-get)", packages.join(" "));
    // Output kept, and shown only if it fails: `cargo xtask test` installs while it builds.
    let update = Command::new("apt-get").args(["update", "-qq"]).output()?;
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()?;
    for step in [&update, &install] {
        if !step.status.success() {
            bail!(
                "installing {} with apt-get failed:\n{}{}",
                packages.join(" "),
                String::from_utf8_lossy(&step.stdout),
                String::from_utf8_lossy(&step.stderr)
            );
        }
    }
    Ok(())
}
