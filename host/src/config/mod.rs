//! The gateway's configuration: a TOML file, then environment overrides.
//!
//! Why so strict: a typo in a cache config is silent in most gateways (an unknown key ignored, a
//! route that never matches) and shows up weeks later as stale or private data served. Here every
//! unknown key, bad value and inconsistent route is refused at start with `file:line:column` and
//! the problem, before a socket is bound.
//!
//! Paths in the file (the plugin directory) are relative to the file's own directory, so
//! `larder serve --config /etc/larder/larder.toml` works from any working directory.
//!
//! # Layout
//!
//! A file goes through three steps, one module each; this one holds what comes out ([`Config`]
//! and its sections) and [`Config::load`], which runs the steps in order:
//!
//! - `raw`: the file as written (serde structs that refuse unknown keys) and its [`defaults`].
//! - `validate`: from those structs to [`Config`], every error at `file:line:column`.
//! - `env`: the [`EnvOverrides`] a deployment sets, applied last and checked again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod env;
mod raw;
mod validate;

pub use env::EnvOverrides;
pub use raw::defaults;
use validate::Locator;
pub use validate::render_setting;

/// Where compiled plugin code is kept when `plugins.code_cache` is not set: shared by every
/// gateway and `larder plugin` command of this user, since entries are keyed by the plugin's
/// bytes and the engine's build.
pub fn default_code_cache() -> PathBuf {
    std::env::temp_dir().join("larder-code-cache")
}

/// A config file that could not be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and reloads).
    pub path: PathBuf,
    pub server: ServerConfig,
    pub cache: CacheConfig,
    pub redis: Option<RedisConfig>,
    pub plugins: PluginsConfig,
    pub routes: Vec<RouteConfig>,
    /// The environment overrides applied, kept so that a reload applies the same ones.
    pub env: EnvOverrides,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where clients connect (`LARDER_LISTEN`).
    pub listen: SocketAddr,
    /// The admin API (`LARDER_ADMIN_LISTEN`); keep it on loopback or a private network.
    pub admin_listen: SocketAddr,
    /// The origin every request is forwarded to (`LARDER_UPSTREAM`), `http://host:port`.
    pub upstream: http::Uri,
    /// How long an upstream request may take before the client gets 504.
    pub upstream_timeout: Duration,
    /// Bearer token of the admin API's mutating endpoints (`LARDER_ADMIN_TOKEN`); without one
    /// they refuse. Only from the environment: secrets stay out of config files.
    pub admin_token: Option<String>,
    /// Threads serving the proxy listener's connections, each with a runtime of its own
    /// (`server.workers`; default: one per core). See [`crate::server`].
    pub workers: usize,
    /// How long a client may take to send a request's headers: from the connection's opening
    /// to its first request, and on HTTP/1.1 from the end of a response to the next request's
    /// headers (hyper counts both alike, so this is also HTTP/1.1's keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 with a GOAWAY).
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive pings to an otherwise silent client, this often; `None`: no pings.
    pub http2_keepalive: Option<Duration>,
    /// How long a `cache_post` route may take to read the body it keys a POST by; then 408.
    pub body_read_timeout: Duration,
    /// Client connections open at once; past it new ones are closed at once and counted.
    pub max_connections: usize,
    /// Host names the admin API answers to besides `localhost` and IP addresses (lower-case,
    /// no port): a browser that reaches it under any other name was sent by a page the
    /// operator did not mean to trust (DNS rebinding).
    pub admin_hosts: Vec<String>,
    /// Peers whose `X-Forwarded-*` and `Forwarded` fields are believed (`server.trusted_proxies`;
    /// default none): everyone else's are dropped. See [`crate::proxy::upstream`].
    pub trusted_proxies: Vec<crate::proxy::upstream::TrustedProxy>,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Responses with bodies larger than this are streamed through and never stored.
    pub max_object_size: usize,
    /// Seconds a stale entry that carries a validator (`ETag` or `Last-Modified`) is kept
    /// after its freshness and stale windows end, so that the next request revalidates it with
    /// a conditional request (a 304 costs the origin no body) instead of fetching it again.
    /// 0 drops entries when their windows end.
    pub revalidate_keep: u32,
    /// The largest request body a `cache_post` route reads to key a POST by its digest; a
    /// larger POST is forwarded uncached.
    pub max_request_body: usize,
    /// Bytes of the memory tier in front of Redis (0: none). Each instance keeps its hottest
    /// entries in process; purges reach every instance's tier through Redis pub/sub.
    pub memory_tier_bytes: usize,
    /// What the memory tier does while its invalidation subscription is not verified (Redis
    /// down, paused or unreachable, the subscription lost): see [`TierOutage`].
    pub memory_tier_outage: TierOutage,
    /// How recently the invalidation subscription must have been verified (a heartbeat
    /// answered on it) for the memory tier to answer; it is checked four times this often.
    pub memory_tier_trust: Duration,
    /// Where the gateway keeps state that must survive a restart: the journal of purges
    /// that Redis has not acknowledged yet (`LARDER_STATE_DIR`).
    pub state_dir: PathBuf,
    /// Tags of unacknowledged purges kept at most; past it the instance stops serving from
    /// the cache until every entry in Redis is dropped (see [`crate::store::pending`]).
    pub max_pending_purges: usize,
}

/// The memory tier's choice while it cannot hear other instances' purges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TierOutage {
    /// Skip the tier: answer from Redis if it answers, else from the upstream (the default:
    /// invalidation over availability).
    #[default]
    Bypass,
    /// Keep answering from the tier: hot keys stay served through a Redis outage, but a purge
    /// made on another instance meanwhile is not seen here until the subscription is back.
    Serve,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or a cluster as
    /// `redis+cluster://[user:password@]host:port,host:port,...` (`REDIS_URL`). Empty when
    /// `cluster` names the nodes.
    pub url: String,
    /// A Redis Cluster's seed nodes (`[redis] cluster = ["host:port", ...]`); empty when `url`
    /// says where Redis is.
    pub cluster: Vec<String>,
    /// Prefix of every key Larder writes (default `larder:`).
    pub prefix: String,
    /// Per-operation timeout: a slow Redis costs a request at most this long.
    pub timeout: Duration,
    /// Multiplexed connections, used round-robin (for a cluster: connections to every node).
    /// With a single Redis, each proxy worker also makes one of its own for its requests.
    pub connections: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            cluster: Vec::new(),
            prefix: defaults::REDIS_PREFIX.into(),
            timeout: Duration::from_millis(defaults::REDIS_TIMEOUT_MS),
            connections: defaults::REDIS_CONNECTIONS,
        }
    }
}

impl RedisConfig {
    /// Where to connect: `cluster` if given, else `url`.
    pub fn target(&self) -> Result<crate::store::cluster::Target, String> {
        use crate::store::cluster::Target;
        if self.cluster.is_empty() {
            Target::parse(&self.url)
        } else {
            Target::from_nodes(&self.cluster)
        }
    }

    /// The URL for logs, password hidden.
    pub fn display_url(&self) -> String {
        if self.cluster.is_empty() {
            crate::store::cluster::redact(&self.url)
        } else {
            let nodes: Vec<String> = self
                .cluster
                .iter()
                .map(|n| crate::store::cluster::redact(n))
                .collect();
            format!("cluster [{}]", nodes.join(", "))
        }
    }
}

#[derive(Debug, Clone)]
pub struct PluginsConfig {
    /// Directory holding `<name>.wasm` policy components (`LARDER_PLUGIN_DIR`).
    pub dir: PathBuf,
    /// Default guest run time allowed per call.
    pub deadline: Duration,
    /// Linear memory an instance may grow to, in bytes.
    pub memory_limit: usize,
    /// Reload when a `.wasm` file in `dir` or the config file changes.
    pub watch: bool,
    /// Where compiled plugin code is cached; `None` compiles on every load.
    pub code_cache: Option<PathBuf>,
    /// Bytes of compiled code the code cache may hold; the least recently used go first.
    pub code_cache_bytes: u64,
    /// Request header fields no policy is shown (`convert::request`), and so no reused
    /// decision depends on (`proxy::decisions`); they are still forwarded upstream.
    pub hidden_headers: Vec<http::HeaderName>,
    /// Bytes each proxy thread may spend remembering `on-request` answers for identical
    /// requests (`proxy::decisions`); 0 calls the plugin for every request.
    pub decision_cache_bytes: usize,
}

/// What to do when a route's plugin fails (traps, overruns its deadline, answers nonsense).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Proxy the request uncached (the default: a broken policy must not break the API).
    #[default]
    Open,
    /// Answer 502: for policies that guard private data, where caching wrongly is worse than
    /// not answering.
    Closed,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique name; namespaces the route's cache keys.
    pub name: String,
    /// Path pattern with `{param}` captures, e.g. `/api/v1/repositories/{id}`.
    pub path: String,
    /// Methods this route handles (upper-case).
    pub methods: Vec<http::Method>,
    /// Plugin name: the stem of a `.wasm` file in the plugin directory.
    pub plugin: String,
    /// Free-form settings handed to the plugin, every value rendered as a string.
    pub settings: Vec<(String, String)>,
    pub fail: FailMode,
    pub deadline: Duration,
    pub upstream_timeout: Duration,
    /// POST requests may be cached by the digest of their body, if the policy opts in
    /// (`host.request-body-digest` in the WIT): the host reads bodies up to
    /// `cache.max_request_body` before calling the policy. Off by default.
    pub cache_post: bool,
    /// Unsafe requests (POST, PUT, PATCH, DELETE, ...) to this route's paths go through the
    /// policy's `on-invalidate` whatever `methods` lists (RFC 9111 section 4.4). `false` opts
    /// out: such requests then pass through as unrouted, and `check-config` says so.
    pub invalidate_writes: bool,
    /// With a Redis store, concurrent misses for one entry on different instances make one
    /// upstream request, through a fill lease in Redis (`proxy/fleet.rs`). On by default.
    pub fleet_coalescing: bool,
    /// Line of the route's `plugin` key, for messages about a missing plugin.
    pub plugin_line: usize,
    /// Other plugins whose `on-invalidate` also runs for this route's writes, each with the
    /// line that names it (`also_invalidate`): the union of what they and `plugin` name is
    /// purged. Lookups stay with `plugin` alone.
    pub also_invalidate: Vec<(String, usize)>,
}

impl RouteConfig {
    /// Every plugin the route calls, with the line that names it: its own, then those of
    /// `also_invalidate`.
    pub fn plugin_refs(&self) -> impl Iterator<Item = (&str, usize)> {
        std::iter::once((self.plugin.as_str(), self.plugin_line)).chain(
            self.also_invalidate
                .iter()
                .map(|(plugin, line)| (plugin.as_str(), *line)),
        )
    }
}

impl Config {
    /// Reads and validates `path`, then applies `env`.
    pub fn load(path: &Path, env: &EnvOverrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, env)
    }

    /// Validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str, env: &EnvOverrides) -> Result<Self, ConfigError> {
        let at = Locator::new(path, text);
        let raw = at.raw()?;
        let base = path.parent().unwrap_or(Path::new("."));
        let server = at.server(&raw.server)?;
        let cache = at.cache(&raw.cache, base)?;
        let redis = raw.redis.map(|r| at.redis(r)).transpose()?;
        let plugins = at.plugins(&raw.plugins, base)?;
        let routes = at.routes(raw.routes, &plugins, &server)?;
        let mut config = Config {
            path: path.to_owned(),
            server,
            cache,
            redis,
            plugins,
            routes,
            env: env.clone(),
        };
        config.apply_env(env)?;
        at.redis_has_target(config.redis.as_ref())?;
        Ok(config)
    }

    /// What is valid but worth an operator's attention: choices that weaken a guarantee.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for r in self.routes.iter().filter(|r| !r.invalidate_writes) {
            notes.push(format!(
                "route `{}` has `invalidate_writes = false`: unsafe requests to its paths that its `methods` do not list pass through without invalidating what they change (RFC 9111 section 4.4)",
                r.name
            ));
        }
        if self.cache.memory_tier_bytes > 0 && self.cache.memory_tier_outage == TierOutage::Serve {
            notes.push(
                "`cache.memory_tier_outage = \"serve\"`: while this instance cannot hear purges, its memory tier keeps answering, including entries that other instances purged meanwhile"
                    .to_owned(),
            );
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file as `dir/larder.toml`, without environment overrides: what most tests read.
    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("dir/larder.toml"), text, &EnvOverrides::default())
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen, defaults::LISTEN.parse().unwrap());
        assert!(c.redis.is_none());
        assert_eq!(c.plugins.dir, Path::new("dir/plugins"));
    }

    #[test]
    fn a_plugin_memory_limit_past_the_pools_slots_is_refused_where_it_is_written() {
        assert_eq!(parse("").unwrap().plugins.memory_limit, 16 << 20);
        let c = parse("[plugins]\nmemory_limit = 67108864\n").unwrap();
        assert_eq!(c.plugins.memory_limit, 64 << 20);
        for text in [
            "[plugins]\nmemory_limit = 67108865\n",
            "[plugins]\nmemory_limit = 0\n",
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("dir/larder.toml:2:16:")
                    && err.contains("between 1 and 67108864 bytes"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn the_code_cache_is_bounded_by_default_and_its_bound_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.plugins.code_cache_bytes, 1 << 30);
        let c = parse("[plugins]\ncode_cache_bytes = 104857600\n").unwrap();
        assert_eq!(c.plugins.code_cache_bytes, 100 << 20);
        let err = parse("[plugins]\ncode_cache_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("dir/larder.toml:2:20:") && err.contains("code_cache = \"\""),
            "{err}"
        );
    }

    #[test]
    fn hidden_headers_default_to_the_tracing_fields_and_must_be_header_names() {
        let c = parse("").unwrap();
        assert!(c.plugins.hidden_headers.iter().any(|h| h == "traceparent"));
        assert!(c.plugins.hidden_headers.iter().any(|h| h == "x-request-id"));
        let c = parse("[plugins]\nhidden_headers = [\"X-Nonce\"]\n").unwrap();
        assert_eq!(c.plugins.hidden_headers, ["x-nonce"]);
        assert!(
            parse("[plugins]\nhidden_headers = []\n")
                .unwrap()
                .plugins
                .hidden_headers
                .is_empty()
        );
        let err = parse("[plugins]\nhidden_headers = [\"x-ok\", \"no spaces\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("dir/larder.toml:2:18:")
                && err.contains("\"no spaces\" is not a header name"),
            "{err}"
        );
    }

    #[test]
    fn invalidation_settings_have_safe_defaults_and_are_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.cache.state_dir, Path::new("dir/larder-state"));
        assert_eq!(c.cache.memory_tier_outage, TierOutage::Bypass);
        assert_eq!(c.cache.memory_tier_trust, Duration::from_secs(1));
        assert_eq!(c.cache.max_pending_purges, 10_000);
        assert!(c.notes().is_empty());

        let c = parse(
            "[cache]\nmemory_tier_bytes = 1024\nmemory_tier_outage = \"serve\"\nstate_dir = \"/var/lib/larder\"\n\n[[route]]\nname = \"r\"\npath = \"/r\"\nplugin = \"p\"\ninvalidate_writes = false\n",
        )
        .unwrap();
        assert_eq!(c.cache.state_dir, Path::new("/var/lib/larder"));
        assert!(!c.routes[0].invalidate_writes);
        let notes = c.notes().join("\n");
        assert!(notes.contains("invalidate_writes = false"), "{notes}");
        assert!(notes.contains("memory_tier_outage"), "{notes}");

        for (text, at) in [
            ("[cache]\nmemory_tier_trust_ms = 5\n", ":2:24:"),
            ("[cache]\nmax_pending_purges = 0\n", ":2:22:"),
            ("[cache]\nmemory_tier_outage = \"maybe\"\n", ":2:22:"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("dir/larder.toml") && err.contains(at),
                "{text:?}: {err}"
            );
        }

        let env = EnvOverrides {
            state_dir: Some("/srv/state".into()),
            ..Default::default()
        };
        let c = Config::parse(Path::new("l.toml"), "", &env).unwrap();
        assert_eq!(c.cache.state_dir, Path::new("/srv/state"));
    }
}
