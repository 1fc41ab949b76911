//! Support code for Larder's end-to-end tests.
//!
//! # Layout
//!
//! - [`origin`]: the stand-in Source Code Analysis Tool (the slow backend behind the gateway),
//!   started in-process by tests and wrapped by the `scat-origin` binary for the demo.
//! - [`redis_server`]: real `redis-server` processes on free ports, killed and restarted at will.
//! - [`redis_cluster`]: a real 3-master Redis Cluster, built with `redis-cli --cluster create`.
//! - [`plugins`]: the real plugin components, built for `wasm32-wasip2` once per process.
//! - [`gateway`]: a gateway under test, with its origin and plugin directory.
//! - [`process`]: a gateway as an OS process of the built `larder` binary (for fault tests that
//!   kill or pause it, or that need two).
//! - [`http`]: a small client that reads replies whole.
//! - [`webdriver`]: a minimal WebDriver client, for the dashboard's browser test.

pub mod gateway;
pub mod http;
pub mod origin;
pub mod plugins;
pub mod process;
pub mod redis_cluster;
pub mod redis_server;
pub mod webdriver;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}
