//! The gateway's benchmarks: figures, not pass/fail. One binary for all of them: each bench of
//! its own would link wasmtime and compile the test support again, which cost CI about a minute
//! and a half of two cores per bench.
//!
//! ```sh
//! cargo bench --bench figures -- NAME [ARGS]    # one of them (ARGS: criterion's, for hot_path)
//! cargo bench --bench figures                   # all, one after the other
//! ```
//!
//! Each runs in a process of its own (this binary, started again with the bench's name in
//! `LARDER_BENCH`), so that one bench's memory figures (the process's RSS) are not another's.

mod hot_path;
mod large_body;
mod misses;
mod policy_call;
mod purge;
mod redis_budget;
mod reload;

use std::process::Command;

/// The benches, by name.
const BENCHES: &[(&str, fn())] = &[
    ("hot_path", hot_path::run),
    ("misses", misses::run),
    ("policy_call", policy_call::run),
    ("reload", reload::run),
    ("purge", purge::run),
    ("large_body", large_body::run),
    ("redis_budget", redis_budget::run),
];

/// Set in the process that runs one bench.
const CHILD: &str = "LARDER_BENCH";

fn main() {
    if let Ok(name) = std::env::var(CHILD) {
        let (_, run) = BENCHES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no bench {name}"));
        return run();
    }
    // `cargo bench` passes `--bench`, and `cargo test --benches` nothing; the bench's name is
    // the first other argument.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = match args.iter().position(|a| !a.starts_with('-')) {
        Some(i) => {
            let name = args.remove(i);
            match BENCHES.iter().find(|(n, _)| *n == name) {
                Some((n, _)) => vec![n],
                None => {
                    let known: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
                    eprintln!("no bench {name}; the benches are {}", known.join(", "));
                    std::process::exit(2);
                }
            }
        }
        None => BENCHES.iter().map(|(n, _)| *n).collect(),
    };
    let me = std::env::current_exe().expect("the bench binary's path");
    for name in names {
        eprintln!("== {name}");
        let status = Command::new(&me)
            .args(&args)
            .env(CHILD, name)
            .status()
            .expect("starting a bench");
        if !status.success() {
            eprintln!("bench {name} failed: {status}");
            std::process::exit(1);
        }
    }
}
