//! The tests of the gateway from outside, as one test binary: its command line (`cli`), its
//! plugin engine (`code_cache`, `plugin_calls`) and the whole gateway end to end. Each file of
//! this folder is a module of it, so the suite links wasmtime once instead of once per file
//! (linking was most of CI's test time).
//! Run one file's tests with `cargo test --release -p larder-tests --test integration caching::`.
//! `cli` and `invalidation_faults` run the built `larder` binary: `cargo xtask build` first (they
//! refuse a binary older than the gateway's sources, see `larder_tests::process::binary`).
//!
//! A file whose tests need a process of their own (they change process-wide state, such as an
//! environment variable) is a `[[test]]` of its own in `tests/Cargo.toml` instead, and listed in
//! [`OWN_PROCESS`]. A new file goes in one place or the other: [`every_file_is_run`] fails when
//! it is in neither.

mod caching;
mod cli;
mod coalescing;
mod code_cache;
mod dashboard;
mod fleet;
mod http_semantics;
mod invalidation;
mod invalidation_faults;
mod memory_tier;
mod observability;
mod origin;
mod plugin_calls;
mod policy_interface;
mod python_policy;
mod redis_cluster;
mod redis_resilience;
mod reload;
mod sandbox;
mod server;
mod stale;

/// Files of this folder that are test binaries of their own, and why.
///
/// - `redis_tls`: sets `SSL_CERT_FILE` for the whole process, which the other tests' gateways
///   would read, and which is unsound while other threads read the environment.
const OWN_PROCESS: &[&str] = &["redis_tls"];

/// Every `.rs` file of this folder is either a module above or, when listed in [`OWN_PROCESS`], a
/// `[[test]]` target of its own; none is left out of the suite.
#[test]
fn every_file_is_run() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let this = include_str!("main.rs");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("tests/Cargo.toml");
    let mut names: Vec<String> = std::fs::read_dir(dir.join("integration"))
        .expect("tests/integration")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_owned))
        .filter(|n| n != "main")
        .collect();
    names.sort();
    for name in names {
        let module = this.contains(&format!("\nmod {name};\n"));
        let own = manifest.contains(&format!("path = \"integration/{name}.rs\""));
        match (module, own, OWN_PROCESS.contains(&name.as_str())) {
            (true, false, false) | (false, true, true) => {}
            (false, false, _) => panic!(
                "tests/integration/{name}.rs is not run: add `mod {name};` to tests/integration/main.rs"
            ),
            _ => panic!(
                "tests/integration/{name}.rs: a module of main.rs, or a [[test]] in tests/Cargo.toml listed in OWN_PROCESS, not both"
            ),
        }
    }
}
