//! Larder: a caching gateway whose cache policies are WebAssembly components.
//!
//! Larder sits in front of an HTTP API, caches its responses in Redis (or in process), and asks a
//! policy plugin, per route, what is cacheable, under which key, for how long, with which tags,
//! and what a write invalidates. Plugins implement the `larder:policy` WIT world (`wit/`).
//!
//! # Layout
//!
//! The modules follow a request's path (the phase chart, with the file of each phase, is
//! `docs/request-path.md`):
//!
//! - [`config`]: the TOML file (`raw`), its validation with file:line:column errors
//!   (`validate`) and the environment overrides (`env`).
//! - [`routes`]: phase 1, matching method and path to a route.
//! - [`policy`]: phase 2, the plugin host: engine, sandbox, calls, plugin sets.
//! - [`store`]: phases 3 and 5, lookup and store; Redis and memory implementations, entry
//!   format, keys, invalidation tokens, and purges kept pending while Redis does not answer.
//! - [`proxy`]: the phases in order, stale serving, request coalescing, the upstream client,
//!   `Cache-Status`, invalidation.
//! - [`gateway`]: shared state and the per-request snapshot of config, routes and plugins.
//! - [`reload`]: replacing the snapshot without a restart; [`watch`]: doing it on file changes.
//! - [`admin`]: the admin listener (`/health`, `/plugins`, `/stats`, `/metrics`, the dashboard;
//!   with the admin token `/plugins/reload`, `/purge` and `/warm`), answering only to allowed
//!   `Host` and `Origin` values.
//! - [`telemetry`]: what `/metrics`, `/stats` and the dashboard show.
//! - [`server`]: binding, the proxy's worker threads, graceful shutdown.
//! - [`cli`]: the `larder` command line: `serve`, `check-config`, and the policy author's
//!   `plugin new|check|run`; `main.rs` only sets up the process around it.

pub mod admin;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod watch;

#[cfg(test)]
mod properties;

pub use config::Config;
pub use server::{Running, start};
