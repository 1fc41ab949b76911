//! `cargo xtask build | demo | test | coverage | plugins`: the project's set-up commands.
//!
//! Each installs what it needs (for tests, `redis-server`, and Chromium with chromedriver for
//! the dashboard's browser test; the toolchain's components and the `wasm32-wasip2` target are
//! declared in `rust-toolchain.toml`, and installed here if rustup did not), so a fresh clone
//! needs nothing but Rust. The gateway side builds in the one `release` profile, so the demo,
//! the tests and the benchmarks share one build of wasmtime; the plugins build in the `plugin`
//! profile (see `xtask::plugins`).

mod build;
mod coverage;
mod demo;
mod setup;
mod test;

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("build") => build::all(true),
        Some("demo") => demo::run(rest),
        Some("test") => test::run(rest),
        Some("coverage") => coverage::run(rest),
        Some("plugins") => {
            build::plugins()?;
            build::python_plugins().map(|_| ())
        }
        Some("apt-install") => {
            setup::apt_install(&rest.iter().map(String::as_str).collect::<Vec<_>>())
        }
        _ => bail!(
            "usage: cargo xtask <build|demo|test|coverage|plugins|apt-install>\n\
             \n  build    build larder, scat-origin and the plugins (into target/plugins)\
             \n  demo     start the stand-in backend, Redis if reachable, and the gateway\
             \n           (--smoke: run the curl walk-through once and exit)\
             \n  test     format check, clippy, and the whole test suite\
             \n           (--no-lint: tests only; extra args go to cargo test)\
             \n  coverage the test suite under cargo llvm-cov: line coverage per file of\
             \n           host/src, summed per folder (extra args go to cargo test)\
             \n  plugins  build only the plugins (Rust into target/plugins, Python into\
             \n           target/python)\
             \n  apt-install PACKAGE...  install Debian packages with apt-get (as root; for .ci/)"
        ),
    }
}
