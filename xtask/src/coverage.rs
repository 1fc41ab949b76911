//! `cargo xtask coverage`: the gateway's test suite under `cargo llvm-cov`, and its line coverage
//! per file of `host/src`, summed per module (a top-level file, or a folder).
//!
//! Not part of CI: an instrumented build of wasmtime and the whole suite take far longer than
//! CI's two cores allow for every change. Run it by hand to see which paths no test takes.
//!
//! - The build goes to `target/llvm-cov-target` (cargo llvm-cov's own target directory), so it
//!   does not invalidate the normal `release` build. The plugins are built first, as for
//!   `cargo xtask test` (not instrumented: their own target directory and profile).
//! - The `larder` binary is built instrumented in that directory too: the CLI and fault tests
//!   run the binary next to their test executable, so what its processes execute counts.
//! - Tools: `cargo-llvm-cov` (installed with `cargo install --locked` when missing), and an
//!   `llvm-profdata`/`llvm-cov` of rustc's LLVM version: rustup's `llvm-tools` component when
//!   installed, else Debian's `llvm-<major>` (installed through the one apt installer), named to
//!   cargo llvm-cov by `LLVM_COV` and `LLVM_PROFDATA`.
//! - The report: `target/llvm-cov/lcov.info` (for editors), and a table on stdout.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use xtask::lcov;

use crate::{build, setup};

const LCOV: &str = "target/llvm-cov/lcov.info";

pub fn run(args: &[String]) -> anyhow::Result<()> {
    ensure_cargo_llvm_cov()?;
    let tools = llvm_tools()?;
    setup::ensure_test_programs()?;
    build::plugins()?;
    let root = build::root();
    let cov = |args: &[&str]| {
        let mut cmd = Command::new(cargo_program());
        cmd.arg("llvm-cov").args(args).current_dir(&root);
        cmd.envs(tools.iter().map(|(k, v)| (k, v)));
        cmd
    };
    build::run(&mut cov(&["clean", "--workspace"]))?;
    // The instrumented `larder` binary, for the tests that run it (`--version` writes the
    // profile of a run that did nothing, harmless).
    build::run(&mut cov(&[
        "run",
        "--no-report",
        "--release",
        "-p",
        "larder",
        "--bin",
        "larder",
        "--",
        "--version",
    ]))?;
    // The gateway side's tests (the workspace's default members, as `cargo xtask test`). A
    // failing test still leaves a report worth reading: say so after it.
    let mut test = cov(&["test", "--no-report", "--release", "--no-fail-fast"]);
    if !args.is_empty() {
        test.arg("--").args(args);
    }
    let tests = build::run(&mut test);
    std::fs::create_dir_all(root.join(LCOV).parent().expect("a folder"))?;
    build::run(&mut cov(&[
        "report",
        "--release",
        "--lcov",
        "--output-path",
        LCOV,
    ]))?;
    let lcov = std::fs::read_to_string(root.join(LCOV)).context(LCOV)?;
    print!("{}", lcov::table(&lcov, &root.join("host/src")));
    println!("(per line: {LCOV})");
    tests.context("some tests failed; the coverage above is of the tests that ran")
}

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn ensure_cargo_llvm_cov() -> anyhow::Result<()> {
    let installed = Command::new(cargo_program())
        .args(["llvm-cov", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    build::cargo(&["install", "--locked", "cargo-llvm-cov"])
}

/// The variables that name `llvm-cov` and `llvm-profdata` to cargo llvm-cov, when it would not
/// find suitable ones itself. An older LLVM's `llvm-profdata` (Debian's unversioned one, say)
/// cannot read the profiles of a newer rustc's LLVM: the tools must be of rustc's LLVM version.
fn llvm_tools() -> anyhow::Result<Vec<(String, String)>> {
    if std::env::var_os("LLVM_COV").is_some() && std::env::var_os("LLVM_PROFDATA").is_some() {
        return Ok(vec![]);
    }
    let rustc = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new("rustc")
            .args(args)
            .current_dir(build::root())
            .output()
            .context("running rustc")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let version = rustc(&["-vV"])?;
    let field = |name: &str| {
        version
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .map(str::to_owned)
    };
    let (Some(host), Some(llvm)) = (field("host:"), field("LLVM version:")) else {
        bail!("`rustc -vV` names no host or LLVM version:\n{version}");
    };
    let sysroot = rustc(&["--print", "sysroot"])?;
    let rustup_tools = Path::new(sysroot.trim()).join(format!("lib/rustlib/{host}/bin"));
    if rustup_tools.join("llvm-profdata").exists() {
        return Ok(vec![]);
    }
    let major = llvm.split('.').next().unwrap_or(&llvm);
    let tool = |name: &str| PathBuf::from(format!("/usr/bin/{name}-{major}"));
    if !tool("llvm-profdata").exists() || !tool("llvm-cov").exists() {
        setup::apt_install(&[&format!("llvm-{major}")]).with_context(|| {
            format!("coverage needs llvm-cov and llvm-profdata of LLVM {major} (rustc's)")
        })?;
    }
    Ok(["LLVM_COV", "LLVM_PROFDATA"]
        .iter()
        .zip(["llvm-cov", "llvm-profdata"])
        .map(|(var, name)| (var.to_string(), tool(name).display().to_string()))
        .collect())
}
