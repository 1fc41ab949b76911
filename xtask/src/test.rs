//! `cargo xtask test`: the checks CI runs, cheapest first, so a formatting slip fails in seconds
//! rather than after the long build.

use xtask::plugins;

use crate::{build, setup};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let no_lint = args.iter().any(|a| a == "--no-lint");
    let extra: Vec<&str> = args
        .iter()
        .filter(|a| *a != "--no-lint")
        .map(String::as_str)
        .collect();
    // Cheapest first: formatting takes seconds and builds nothing; the plugins' clippy checks
    // only the SDK's few dependencies. The host's lints run with its build below
    // (`build::cargo_linted`), which fails on the first warning.
    let deny = !no_lint;
    if !no_lint {
        timed("format and plugin lints", || {
            setup::ensure_lint_components()?;
            build::cargo(&["fmt", "--all", "--check"])?;
            setup::ensure_wasm_target()?;
            build::run(build::plugin_cargo("clippy").args(["--", "-D", "warnings"]))
        })?;
    }
    // Installing the test programs (apt: Chromium for the dashboard's test) waits on the
    // network and the disk, the build on the cores: on a fresh machine they overlap.
    let programs = std::thread::spawn(|| timed("test programs", setup::ensure_test_programs));
    // The plugins, and `target/release/larder`, which the CLI and fault tests run.
    timed("build", || build::all(deny))?;
    // The gateway side: the workspace's default members (root `Cargo.toml`). Not the SDK nor
    // the plugins: the SDK's `wit-bindgen` macro would bring its own proc-macro dependencies
    // into this build, change the features of ones wasmtime's macros share (`indexmap`,
    // `anyhow`), and so build wasmtime a second time (about ten minutes on CI's two cores).
    // Exactly the units the test run needs, then the bench binary: `--all-targets` (or
    // `--benches`) also compiled every library and binary in test mode, `test = false` or not
    // (the bindgen crate, the test support, the stand-in backend: minutes of CI for binaries
    // nothing runs). Both linted, as `cargo clippy --all-targets` would.
    timed("build of the tests and the benches", || {
        build::cargo_linted(&["test", "--release", "--no-run"], deny)?;
        build::cargo_linted(&["build", "--release", "--bench", "figures"], deny)
    })?;
    // The Python policies' components (which the tests load) and their own tests (pytest).
    timed("Python policies", || {
        build::python_plugins()?;
        xtask::python::pytest(&build::root())
    })?;
    programs
        .join()
        .map_err(|_| anyhow::anyhow!("installing the test programs panicked"))??;
    let mut cmd = vec!["test", "--release"];
    if !extra.is_empty() {
        cmd.push("--");
        cmd.extend(extra);
    }
    timed("tests", || build::cargo_linted(&cmd, deny))?;
    // The unit tests of the crates under `plugins/` (the SDK and the example policies),
    // natively. In a target directory of their own: in the workspace's, their feature set would
    // rebuild half the host's dependencies; here they need only the SDK's few (about 20 s from
    // clean).
    let root = build::root();
    let examples = root.join("plugins");
    let mut cmd = vec!["test", "--release", "--target-dir", "target/plugin-tests"];
    let crates = plugins::discover(&root);
    for c in crates.iter().filter(|c| c.dir.starts_with(&examples)) {
        cmd.extend(["-p", &c.name]);
    }
    timed("plugin unit tests", || build::cargo(&cmd))
}

/// Runs `step`, then says how long it took: a run's log shows where its minutes went.
fn timed<T>(name: &str, step: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let started = std::time::Instant::now();
    let result = step();
    eprintln!(
        "xtask: {name}: {} in {:.1} s",
        if result.is_ok() { "done" } else { "failed" },
        started.elapsed().as_secs_f64()
    );
    result
}
