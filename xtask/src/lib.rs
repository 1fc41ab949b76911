//! The parts of `cargo xtask` worth a library: what the test suite needs to know about the
//! workspace (which crates are plugins, and how they are built: `tests/support/plugins.rs`
//! builds them exactly as `cargo xtask build` does, from one declaration), and what has unit
//! tests of its own.
//!
//! # Layout
//!
//! - [`plugins`]: the plugin crates, discovered from the folders, and their one build command.
//! - [`python`]: the Python policies, discovered from their folders, and their build.
//! - [`lcov`]: line coverage per module, from an LCOV report (`cargo xtask coverage`).

pub mod lcov;
pub mod plugins;
pub mod python;
