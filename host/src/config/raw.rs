//! The file as written: serde structs that mirror the TOML, and the defaults for what it leaves
//! out.
//!
//! Every struct denies unknown fields, so a misspelt key is refused with its line instead of
//! being ignored; values that carry a position (`Spanned`) are the ones whose checks in
//! [`super::validate`] can fail, so the error points at the value.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{FailMode, TierOutage};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) cache: RawCache,
    pub(super) redis: Option<RawRedis>,
    #[serde(default)]
    pub(super) plugins: RawPlugins,
    #[serde(default, rename = "route")]
    pub(super) routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) admin_listen: Option<Spanned<String>>,
    pub(super) upstream: Option<Spanned<String>>,
    pub(super) upstream_timeout_ms: Option<u64>,
    pub(super) workers: Option<Spanned<usize>>,
    pub(super) header_read_timeout_ms: Option<Spanned<u64>>,
    pub(super) idle_timeout_ms: Option<Spanned<u64>>,
    pub(super) http2_keepalive_ms: Option<Spanned<u64>>,
    pub(super) body_read_timeout_ms: Option<Spanned<u64>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) admin_hosts: Option<Vec<Spanned<String>>>,
    pub(super) trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) max_object_size: Option<usize>,
    pub(super) revalidate_keep_s: Option<u32>,
    pub(super) max_request_body: Option<usize>,
    pub(super) memory_tier_bytes: Option<usize>,
    pub(super) memory_tier_outage: Option<TierOutage>,
    pub(super) memory_tier_trust_ms: Option<Spanned<u64>>,
    pub(super) state_dir: Option<String>,
    pub(super) max_pending_purges: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub(super) url: Option<Spanned<String>>,
    pub(super) cluster: Option<Spanned<Vec<String>>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) connections: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugins {
    pub(super) dir: Option<String>,
    pub(super) deadline_ms: Option<u64>,
    pub(super) memory_limit: Option<Spanned<usize>>,
    pub(super) watch: Option<bool>,
    pub(super) code_cache: Option<String>,
    pub(super) code_cache_bytes: Option<Spanned<u64>>,
    pub(super) hidden_headers: Option<Spanned<Vec<String>>>,
    pub(super) decision_cache_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Spanned<String>,
    pub(super) path: Spanned<String>,
    pub(super) methods: Option<Spanned<Vec<String>>>,
    pub(super) plugin: Spanned<String>,
    #[serde(default)]
    pub(super) settings: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) fail: FailMode,
    pub(super) deadline_ms: Option<u64>,
    pub(super) upstream_timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) cache_post: bool,
    pub(super) invalidate_writes: Option<bool>,
    pub(super) fleet_coalescing: Option<bool>,
    #[serde(default)]
    pub(super) also_invalidate: Vec<Spanned<String>>,
}

/// Defaults, in one place so the README's key table can be checked against them.
pub mod defaults {
    pub const LISTEN: &str = "0.0.0.0:8359";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:8360";
    pub const UPSTREAM: &str = "http://127.0.0.1:8000";
    pub const UPSTREAM_TIMEOUT_MS: u64 = 30_000;
    pub const MAX_OBJECT_SIZE: usize = 8 * 1024 * 1024;
    /// Ten minutes, like NGINX's `proxy_cache_path ... inactive=10m`.
    pub const REVALIDATE_KEEP_S: u32 = 600;
    pub const MAX_REQUEST_BODY: usize = 64 * 1024;
    pub const REDIS_PREFIX: &str = "larder:";
    pub const REDIS_TIMEOUT_MS: u64 = 50;
    /// One multiplexed connection carries thousands of requests a second; more help when one
    /// connection's single reader becomes the limit.
    pub const REDIS_CONNECTIONS: usize = 1;
    pub const REDIS_MAX_CONNECTIONS: usize = 64;
    pub const MAX_WORKERS: usize = 256;
    /// A real client sends its headers in one or two packets: ten seconds is many times what
    /// a slow mobile link needs, and short enough that a client holding connections open with
    /// half-sent requests gets each closed soon (Apache's keep-alive idle limit is 5 s).
    pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
    /// A minute, like common load balancers' idle limit; HTTP/1.1 connections are closed
    /// sooner, by the header read timeout (see `ServerConfig::header_read_timeout`).
    pub const IDLE_TIMEOUT_MS: u64 = 60_000;
    /// Pings that find a vanished HTTP/2 client (hyper waits 20 s for the answer).
    pub const HTTP2_KEEPALIVE_MS: u64 = 30_000;
    /// `cache.max_request_body` (64 KiB by default) in ten seconds is 6.4 KiB/s.
    pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;
    /// At most this many client connections by default, and at most half the process's
    /// open-file limit: the other half is for upstream and Redis connections, plugin and
    /// journal files, so that a flood of clients cannot stop the gateway from reaching them.
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// Timeouts shorter than this are a mistake (a unit read as seconds).
    pub const MIN_TIMEOUT_MS: u64 = 100;
    pub const PLUGIN_DIR: &str = "plugins";
    pub const DEADLINE_MS: u64 = 5;
    pub const MEMORY_LIMIT: usize = 16 * 1024 * 1024;
    /// A few thousand distinct requests' decisions per proxy thread.
    pub const DECISION_CACHE_BYTES: usize = 1024 * 1024;
    /// Request fields that trace or correlate a request and never decide how to cache it; a
    /// client or a tracing proxy sends a new value with every request, which would make every
    /// request's decision new (`proxy::decisions`).
    pub const HIDDEN_HEADERS: &[&str] = &[
        "x-request-id",
        "x-correlation-id",
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "uber-trace-id",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "sentry-trace",
    ];
    /// About a second: a purge on another instance reaches this tier through pub/sub within
    /// milliseconds, so a second without a verified subscription means it may not.
    pub const MEMORY_TIER_TRUST_MS: u64 = 1_000;
    pub const STATE_DIR: &str = "larder-state";
    /// 10,000 tags (about 400 KB of journal): hours of writes during an outage.
    pub const MAX_PENDING_PURGES: usize = 10_000;
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn an_unknown_key_is_refused_with_file_line_and_name() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dir/larder.toml:3:1:"), "{err}");
        assert!(err.contains("listen_typo"), "{err}");
    }
}
