//! `cargo xtask build | demo | test | plugins`: the project's set-up commands.
//!
//! Each installs what it needs (for tests, `redis-server`, and Chromium with chromedriver for
//! the dashboard's browser test; the toolchain's components and the `wasm32-wasip2` target are
//! declared in `rust-toolchain.toml`, and installed here if rustup did not), so a fresh clone
//! needs nothing but Rust. Everything is built in the one `release` profile, so the
//! demo, the tests and the benchmarks share one build of wasmtime.

mod build;
mod demo;
mod setup;

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("build") => build::all(),
        Some("demo") => demo::run(rest),
        Some("test") => test(rest),
        Some("plugins") => build::plugins().map(|_| ()),
        Some("apt-install") => {
            setup::apt_install(&rest.iter().map(String::as_str).collect::<Vec<_>>())
        }
        _ => bail!(
            "usage: cargo xtask <build|demo|test|plugins|apt-install>\n\
             \n  build    build larder, scat-origin and the plugins (into target/plugins)\
             \n  demo     start the stand-in backend, Redis if reachable, and the gateway\
             \n           (--smoke: run the curl walk-through once and exit)\
             \n  test     format check, clippy, and the whole test suite\
             \n           (--no-lint: tests only; extra args go to cargo test)\
             \n  plugins  build only the plugins\
             \n  apt-install PACKAGE...  install Debian packages with apt-get (as root; for .ci/)"
        ),
    }
}

fn test(args: &[String]) -> anyhow::Result<()> {
    let no_lint = args.iter().any(|a| a == "--no-lint");
    let extra: Vec<&str> = args
        .iter()
        .filter(|a| *a != "--no-lint")
        .map(String::as_str)
        .collect();
    // Lints first, cheapest first: formatting takes seconds and builds nothing; clippy checks in
    // the `release` profile, whose build scripts and proc macros the build below reuses.
    if !no_lint {
        setup::ensure_lint_components()?;
        build::cargo(&["fmt", "--all", "--check"])?;
        build::cargo(&[
            "clippy",
            "--release",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
        setup::ensure_wasm_target()?;
        let mut clippy_plugins = vec![
            "clippy",
            "--release",
            "--target",
            build::WASM_TARGET,
            "--target-dir",
            build::WASM_TARGET_DIR,
        ];
        for p in build::ALL_PLUGINS {
            clippy_plugins.extend(["-p", p]);
        }
        clippy_plugins.extend(["--", "-D", "warnings"]);
        build::cargo(&clippy_plugins)?;
    }
    setup::ensure_test_programs()?;
    // The plugins, and `target/release/larder`, which `integration/invalidation_faults.rs` runs.
    build::all()?;
    // Every native crate of the gateway side. Not the SDK: its `wit-bindgen` macro would bring
    // its own proc-macro dependencies into this build, change the features of ones wasmtime's
    // macros share (`indexmap`, `anyhow`), and so build wasmtime a second time (about ten
    // minutes on CI's two cores).
    let mut cmd = vec!["test", "--release", "--workspace"];
    for p in build::ALL_PLUGINS {
        cmd.extend(["--exclude", p]);
    }
    if !extra.is_empty() {
        cmd.push("--");
        cmd.extend(extra);
    }
    build::cargo(&cmd)?;
    // The SDK's and the example policies' own unit tests, natively. In a target directory of
    // their own: in the workspace's, their feature set would rebuild half the host's
    // dependencies; here they need only the SDK's few (about 20 s from clean).
    build::cargo(&[
        "test",
        "--release",
        "-p",
        "larder-sdk",
        "-p",
        "standard",
        "-p",
        "analysis-policy",
        "--target-dir",
        "target/plugin-tests",
    ])
}
