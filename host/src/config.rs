//! The gateway's configuration: a TOML file, then environment overrides.
//!
//! Why so strict: a typo in a cache config is silent in most gateways (an unknown key ignored, a
//! route that never matches) and shows up weeks later as stale or private data served. Here every
//! unknown key, bad value and inconsistent route is refused at start with `file:line:column` and
//! the problem, before a socket is bound.
//!
//! Paths in the file (the plugin directory) are relative to the file's own directory, so
//! `larder serve --config /etc/larder/larder.toml` works from any working directory.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

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
    /// Line of the route's `plugin` key, for messages about a missing plugin.
    pub plugin_line: usize,
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    cache: RawCache,
    redis: Option<RawRedis>,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    upstream_timeout_ms: Option<u64>,
    workers: Option<Spanned<usize>>,
    header_read_timeout_ms: Option<Spanned<u64>>,
    idle_timeout_ms: Option<Spanned<u64>>,
    http2_keepalive_ms: Option<Spanned<u64>>,
    body_read_timeout_ms: Option<Spanned<u64>>,
    max_connections: Option<Spanned<usize>>,
    admin_hosts: Option<Vec<Spanned<String>>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_object_size: Option<usize>,
    revalidate_keep_s: Option<u32>,
    max_request_body: Option<usize>,
    memory_tier_bytes: Option<usize>,
    memory_tier_outage: Option<TierOutage>,
    memory_tier_trust_ms: Option<Spanned<u64>>,
    state_dir: Option<String>,
    max_pending_purges: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<Spanned<String>>,
    cluster: Option<Spanned<Vec<String>>>,
    prefix: Option<Spanned<String>>,
    timeout_ms: Option<u64>,
    connections: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    dir: Option<String>,
    deadline_ms: Option<u64>,
    memory_limit: Option<usize>,
    watch: Option<bool>,
    code_cache: Option<String>,
    decision_cache_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    path: Spanned<String>,
    methods: Option<Spanned<Vec<String>>>,
    plugin: Spanned<String>,
    #[serde(default)]
    settings: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    fail: FailMode,
    deadline_ms: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    #[serde(default)]
    cache_post: bool,
    invalidate_writes: Option<bool>,
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
    /// About a second: a purge on another instance reaches this tier through pub/sub within
    /// milliseconds, so a second without a verified subscription means it may not.
    pub const MEMORY_TIER_TRUST_MS: u64 = 1_000;
    pub const STATE_DIR: &str = "larder-state";
    /// 10,000 tags (about 400 KB of journal): hours of writes during an outage.
    pub const MAX_PENDING_PURGES: usize = 10_000;
}

/// Environment variables that override the file, as a deployment sets them.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    pub redis_url: Option<String>,
    pub upstream: Option<String>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub plugin_dir: Option<String>,
    pub admin_token: Option<String>,
    pub state_dir: Option<String>,
}

impl EnvOverrides {
    /// Reads `REDIS_URL`, `LARDER_UPSTREAM`, `LARDER_LISTEN`, `LARDER_ADMIN_LISTEN`,
    /// `LARDER_PLUGIN_DIR`, `LARDER_ADMIN_TOKEN` and `LARDER_STATE_DIR`; empty values count
    /// as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            redis_url: var("REDIS_URL"),
            upstream: var("LARDER_UPSTREAM"),
            listen: var("LARDER_LISTEN"),
            admin_listen: var("LARDER_ADMIN_LISTEN"),
            plugin_dir: var("LARDER_PLUGIN_DIR"),
            admin_token: var("LARDER_ADMIN_TOKEN"),
            state_dir: var("LARDER_STATE_DIR"),
        }
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
        let at = Locator { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            at.error(offset, e.message().trim_end())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));

        let server = ServerConfig {
            listen: at.socket_addr(raw.server.listen.as_ref(), defaults::LISTEN)?,
            admin_listen: at
                .socket_addr(raw.server.admin_listen.as_ref(), defaults::ADMIN_LISTEN)?,
            upstream: at.upstream(raw.server.upstream.as_ref())?,
            upstream_timeout: Duration::from_millis(
                raw.server
                    .upstream_timeout_ms
                    .unwrap_or(defaults::UPSTREAM_TIMEOUT_MS),
            ),
            admin_token: None,
            workers: at.workers(raw.server.workers.as_ref())?,
            header_read_timeout: at.timeout(
                "header_read_timeout_ms",
                raw.server.header_read_timeout_ms.as_ref(),
                defaults::HEADER_READ_TIMEOUT_MS,
            )?,
            idle_timeout: at.timeout(
                "idle_timeout_ms",
                raw.server.idle_timeout_ms.as_ref(),
                defaults::IDLE_TIMEOUT_MS,
            )?,
            http2_keepalive: match &raw.server.http2_keepalive_ms {
                Some(ms) if *ms.get_ref() == 0 => None,
                ms => Some(at.timeout(
                    "http2_keepalive_ms",
                    ms.as_ref(),
                    defaults::HTTP2_KEEPALIVE_MS,
                )?),
            },
            body_read_timeout: at.timeout(
                "body_read_timeout_ms",
                raw.server.body_read_timeout_ms.as_ref(),
                defaults::BODY_READ_TIMEOUT_MS,
            )?,
            max_connections: at.max_connections(raw.server.max_connections.as_ref())?,
            admin_hosts: at.admin_hosts(raw.server.admin_hosts.as_deref())?,
            trusted_proxies: raw
                .server
                .trusted_proxies
                .iter()
                .flatten()
                .map(|p| p.get_ref().parse().map_err(|m| at.error(p.span().start, m)))
                .collect::<Result<_, _>>()?,
        };
        let cache = CacheConfig {
            max_object_size: raw
                .cache
                .max_object_size
                .unwrap_or(defaults::MAX_OBJECT_SIZE),
            revalidate_keep: raw
                .cache
                .revalidate_keep_s
                .unwrap_or(defaults::REVALIDATE_KEEP_S),
            max_request_body: raw
                .cache
                .max_request_body
                .unwrap_or(defaults::MAX_REQUEST_BODY),
            memory_tier_bytes: raw.cache.memory_tier_bytes.unwrap_or(0),
            memory_tier_outage: raw.cache.memory_tier_outage.unwrap_or_default(),
            memory_tier_trust: Duration::from_millis(match &raw.cache.memory_tier_trust_ms {
                None => defaults::MEMORY_TIER_TRUST_MS,
                Some(ms) if (100..=60_000).contains(ms.get_ref()) => *ms.get_ref(),
                Some(ms) => {
                    return Err(at.error(
                        ms.span().start,
                        "`memory_tier_trust_ms` must be between 100 and 60000",
                    ));
                }
            }),
            state_dir: base.join(
                raw.cache
                    .state_dir
                    .as_deref()
                    .unwrap_or(defaults::STATE_DIR),
            ),
            max_pending_purges: match &raw.cache.max_pending_purges {
                None => defaults::MAX_PENDING_PURGES,
                Some(n) if *n.get_ref() >= 1 => *n.get_ref(),
                Some(n) => {
                    return Err(at.error(n.span().start, "`max_pending_purges` must be at least 1"));
                }
            },
        };
        let redis = match raw.redis {
            Some(r) => Some(at.redis(r)?),
            None => None,
        };
        let plugins = PluginsConfig {
            dir: base.join(raw.plugins.dir.as_deref().unwrap_or(defaults::PLUGIN_DIR)),
            deadline: Duration::from_millis(
                raw.plugins.deadline_ms.unwrap_or(defaults::DEADLINE_MS),
            ),
            memory_limit: raw.plugins.memory_limit.unwrap_or(defaults::MEMORY_LIMIT),
            watch: raw.plugins.watch.unwrap_or(true),
            code_cache: match raw.plugins.code_cache.as_deref() {
                None => Some(std::env::temp_dir().join("larder-code-cache")),
                Some("") => None,
                Some(dir) => Some(base.join(dir)),
            },
            decision_cache_bytes: raw
                .plugins
                .decision_cache_bytes
                .unwrap_or(defaults::DECISION_CACHE_BYTES),
        };

        let mut routes = Vec::with_capacity(raw.routes.len());
        for r in raw.routes {
            routes.push(at.route(r, &plugins, &server)?);
        }
        at.check_route_names(&routes)?;

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
        if let Some(redis) = &config.redis
            && redis.url.is_empty()
            && redis.cluster.is_empty()
        {
            return Err(at.error(
                text.find("[redis]").unwrap_or(0),
                "[redis] needs `url` or `cluster` (or set REDIS_URL); remove the section to use the in-memory store",
            ));
        }
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

    fn apply_env(&mut self, env: &EnvOverrides) -> Result<(), ConfigError> {
        if let Some(url) = &env.redis_url {
            let redis = self.redis.get_or_insert_with(RedisConfig::default);
            // The environment names the deployment's Redis: it replaces a cluster list too.
            redis.url = url.clone();
            redis.cluster.clear();
            let target = redis.target().map_err(|message| ConfigError::Env {
                var: "REDIS_URL",
                value: crate::store::cluster::redact(url),
                message,
            })?;
            check_prefix(&redis.prefix, target.is_cluster()).map_err(|message| {
                ConfigError::Env {
                    var: "REDIS_URL",
                    value: crate::store::cluster::redact(url),
                    message,
                }
            })?;
        }
        if let Some(v) = &env.upstream {
            self.server.upstream = parse_upstream(v).map_err(|message| ConfigError::Env {
                var: "LARDER_UPSTREAM",
                value: v.clone(),
                message,
            })?;
        }
        for (var, value, slot) in [
            ("LARDER_LISTEN", &env.listen, &mut self.server.listen),
            (
                "LARDER_ADMIN_LISTEN",
                &env.admin_listen,
                &mut self.server.admin_listen,
            ),
        ] {
            if let Some(v) = value {
                *slot = v.parse().map_err(|e| ConfigError::Env {
                    var,
                    value: v.clone(),
                    message: format!("not a socket address (host:port): {e}"),
                })?;
            }
        }
        if let Some(dir) = &env.plugin_dir {
            self.plugins.dir = PathBuf::from(dir);
        }
        if let Some(dir) = &env.state_dir {
            self.cache.state_dir = PathBuf::from(dir);
        }
        self.server.admin_token = env.admin_token.clone();
        Ok(())
    }
}

/// A key prefix must not carry a hash tag on a cluster: the tag keys' own `{...}` must decide
/// their slot (and one prefix tag would put every key on one node).
fn check_prefix(prefix: &str, cluster: bool) -> Result<(), String> {
    if cluster && prefix.contains(['{', '}']) {
        return Err(format!(
            "prefix {prefix:?} contains '{{' or '}}': on a Redis Cluster they would form a hash tag and put keys in the wrong slots"
        ));
    }
    Ok(())
}

fn parse_upstream(v: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = v
        .parse()
        .map_err(|e| format!("not a URL: {e} (expected http://host:port)"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// upstreams are supported (TLS to the origin is not yet)".into());
    }
    if uri.authority().is_none() {
        return Err("the URL has no host (expected http://host:port)".into());
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err("the URL must not have a path: requests keep their own path".into());
    }
    Ok(uri)
}

/// Turns byte offsets in the file into `file:line:column` errors.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, offset: usize, message: impl fmt::Display) -> ConfigError {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: message.to_string(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn socket_addr(
        &self,
        value: Option<&Spanned<String>>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        match value {
            None => Ok(default.parse().expect("default address parses")),
            Some(v) => v.get_ref().parse().map_err(|e| {
                self.error(
                    v.span().start,
                    format!("{:?} is not a socket address (host:port): {e}", v.get_ref()),
                )
            }),
        }
    }

    /// `server.workers`: 1 to [`defaults::MAX_WORKERS`], else one per core.
    fn workers(&self, value: Option<&Spanned<usize>>) -> Result<usize, ConfigError> {
        let Some(value) = value else {
            return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
        };
        let n = *value.get_ref();
        if n == 0 || n > defaults::MAX_WORKERS {
            return Err(self.error(
                value.span().start,
                format!(
                    "`workers` must be 1 to {} (got {n}); leave it out for one per core",
                    defaults::MAX_WORKERS
                ),
            ));
        }
        Ok(n)
    }

    /// A `[server]` timeout in milliseconds: at least [`defaults::MIN_TIMEOUT_MS`].
    fn timeout(
        &self,
        key: &str,
        value: Option<&Spanned<u64>>,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(Duration::from_millis(default)),
            Some(ms) if *ms.get_ref() >= defaults::MIN_TIMEOUT_MS => {
                Ok(Duration::from_millis(*ms.get_ref()))
            }
            Some(ms) => Err(self.error(
                ms.span().start,
                format!(
                    "`{key}` must be at least {} (milliseconds; got {}){}",
                    defaults::MIN_TIMEOUT_MS,
                    ms.get_ref(),
                    if key == "http2_keepalive_ms" {
                        ", or 0 for no pings"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }

    /// `server.max_connections`: at least 1; by default [`defaults::MAX_CONNECTIONS`] or half
    /// the open-file limit, whichever is lower.
    fn max_connections(&self, value: Option<&Spanned<usize>>) -> Result<usize, ConfigError> {
        match value {
            None => Ok(crate::server::open_file_limit()
                .map_or(defaults::MAX_CONNECTIONS, |files| {
                    (files / 2).clamp(1, defaults::MAX_CONNECTIONS)
                })),
            Some(n) if *n.get_ref() >= 1 => Ok(*n.get_ref()),
            Some(n) => Err(self.error(n.span().start, "`max_connections` must be at least 1")),
        }
    }

    /// `server.admin_hosts`: host names (or addresses) without scheme, port or path.
    fn admin_hosts(&self, list: Option<&[Spanned<String>]>) -> Result<Vec<String>, ConfigError> {
        let mut hosts = Vec::new();
        for host in list.unwrap_or_default() {
            let name = host.get_ref();
            let ok = match name.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => {
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }
            };
            if !ok {
                return Err(self.error(
                    host.span().start,
                    format!(
                        "admin host {name:?} must be a host name without scheme, port or path (e.g. \"larder-admin.internal\")"
                    ),
                ));
            }
            hosts.push(name.to_ascii_lowercase());
        }
        Ok(hosts)
    }

    /// The `[redis]` section: where Redis is (a URL or a cluster's nodes, not both), checked as
    /// far as can be without connecting.
    fn redis(&self, r: RawRedis) -> Result<RedisConfig, ConfigError> {
        let mut config = RedisConfig {
            timeout: Duration::from_millis(r.timeout_ms.unwrap_or(defaults::REDIS_TIMEOUT_MS)),
            ..RedisConfig::default()
        };
        if let (Some(_), Some(cluster)) = (&r.url, &r.cluster) {
            return Err(self.error(
                cluster.span().start,
                "give either `url` or `cluster`, not both (a cluster's URL is redis+cluster://host:port,host:port)",
            ));
        }
        let mut at = 0;
        if let Some(url) = &r.url {
            config.url = url.get_ref().clone();
            at = url.span().start;
        }
        if let Some(cluster) = &r.cluster {
            if cluster.get_ref().is_empty() {
                return Err(self.error(cluster.span().start, "`cluster` lists no nodes"));
            }
            config.cluster = cluster.get_ref().clone();
            at = cluster.span().start;
        }
        let cluster = if config.url.is_empty() && config.cluster.is_empty() {
            false
        } else {
            config.target().map_err(|m| self.error(at, m))?.is_cluster()
        };
        if let Some(prefix) = &r.prefix {
            config.prefix = prefix.get_ref().clone();
            check_prefix(&config.prefix, cluster)
                .map_err(|m| self.error(prefix.span().start, m))?;
        }
        if let Some(n) = &r.connections {
            let n = *n.get_ref();
            if n == 0 || n > defaults::REDIS_MAX_CONNECTIONS {
                return Err(self.error(
                    r.connections.as_ref().map(|c| c.span().start).unwrap_or(0),
                    format!(
                        "`connections` must be 1 to {} (got {n})",
                        defaults::REDIS_MAX_CONNECTIONS
                    ),
                ));
            }
            config.connections = n;
        }
        Ok(config)
    }

    fn upstream(&self, value: Option<&Spanned<String>>) -> Result<http::Uri, ConfigError> {
        match value {
            None => Ok(defaults::UPSTREAM.parse().expect("default upstream parses")),
            Some(v) => parse_upstream(v.get_ref()).map_err(|m| self.error(v.span().start, m)),
        }
    }

    fn route(
        &self,
        r: RawRoute,
        plugins: &PluginsConfig,
        server: &ServerConfig,
    ) -> Result<RouteConfig, ConfigError> {
        let name = r.name.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.error(
                r.name.span().start,
                format!("route name {name:?} must be non-empty and use only a-z, 0-9, '-' and '_' (it appears in Redis keys)"),
            ));
        }
        crate::routes::check_pattern(r.path.get_ref())
            .map_err(|m| self.error(r.path.span().start, m))?;
        let methods = match &r.methods {
            None => vec![http::Method::GET, http::Method::HEAD],
            Some(list) => {
                let mut out = Vec::new();
                for m in list.get_ref() {
                    let upper = m.to_ascii_uppercase();
                    let method = http::Method::from_bytes(upper.as_bytes()).map_err(|_| {
                        self.error(list.span().start, format!("{m:?} is not an HTTP method"))
                    })?;
                    out.push(method);
                }
                if out.is_empty() {
                    return Err(self.error(list.span().start, "`methods` must not be empty"));
                }
                out
            }
        };
        let plugin = r.plugin.get_ref();
        if plugin.is_empty() || plugin.contains(['/', '\\', '.']) {
            return Err(self.error(
                r.plugin.span().start,
                format!("plugin {plugin:?} must be a plugin name (the file stem of <name>.wasm in the plugin directory), not a path"),
            ));
        }
        let mut settings = Vec::with_capacity(r.settings.len());
        for (key, value) in &r.settings {
            let rendered = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(self.error(
                        value.span().start,
                        format!(
                            "setting `{key}` is a {}; settings must be strings, numbers or booleans",
                            other.type_str()
                        ),
                    ));
                }
            };
            settings.push((key.clone(), rendered));
        }
        Ok(RouteConfig {
            name: name.clone(),
            path: r.path.get_ref().clone(),
            methods,
            plugin: plugin.clone(),
            settings,
            fail: r.fail,
            deadline: r
                .deadline_ms
                .map(Duration::from_millis)
                .unwrap_or(plugins.deadline),
            upstream_timeout: r
                .upstream_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(server.upstream_timeout),
            cache_post: r.cache_post,
            invalidate_writes: r.invalidate_writes.unwrap_or(true),
            plugin_line: self.line_of(r.plugin.span().start),
        })
    }

    fn check_route_names(&self, routes: &[RouteConfig]) -> Result<(), ConfigError> {
        for (i, a) in routes.iter().enumerate() {
            for b in &routes[..i] {
                if a.name == b.name {
                    let offset = self.nth_route_offset(i);
                    return Err(self.error(
                        offset,
                        format!(
                            "route name {:?} is used twice; names must be unique",
                            a.name
                        ),
                    ));
                }
                if a.path == b.path && a.methods.iter().any(|m| b.methods.contains(m)) {
                    let offset = self.nth_route_offset(i);
                    return Err(self.error(
                        offset,
                        format!(
                            "routes {:?} and {:?} both handle the same method on {:?}",
                            b.name, a.name, a.path
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn nth_route_offset(&self, n: usize) -> usize {
        self.text
            .match_indices("[[route]]")
            .nth(n)
            .map(|(i, _)| i)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
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
    fn an_unknown_key_is_refused_with_file_line_and_name() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dir/larder.toml:3:1:"), "{err}");
        assert!(err.contains("listen_typo"), "{err}");
    }

    #[test]
    fn listener_limits_have_defaults_and_a_bad_value_names_its_line() {
        let s = parse("").unwrap().server;
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.http2_keepalive, Some(Duration::from_secs(30)));
        assert_eq!(s.body_read_timeout, Duration::from_secs(10));
        assert!((1..=defaults::MAX_CONNECTIONS).contains(&s.max_connections));
        assert!(s.admin_hosts.is_empty());

        let s = parse(
            "[server]\nheader_read_timeout_ms = 500\nhttp2_keepalive_ms = 0\nmax_connections = 3\nadmin_hosts = [\"Admin.Example\", \"[::1]\"]\n",
        )
        .unwrap()
        .server;
        assert_eq!(s.header_read_timeout, Duration::from_millis(500));
        assert_eq!((s.http2_keepalive, s.max_connections), (None, 3));
        assert_eq!(s.admin_hosts, ["admin.example", "[::1]"]);

        for (text, at, problem) in [
            ("[server]\nidle_timeout_ms = 5\n", ":2:19:", "at least 100"),
            (
                "[server]\nhttp2_keepalive_ms = 5\n",
                ":2:22:",
                "or 0 for no pings",
            ),
            ("[server]\nmax_connections = 0\n", ":2:19:", "at least 1"),
            (
                "[server]\nadmin_hosts = [\"ok\", \"http://evil\"]\n",
                ":2:22:",
                "without scheme, port or path",
            ),
            (
                "[server]\nadmin_hosts = [\"admin:8360\"]\n",
                ":2:16:",
                "without scheme, port or path",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("dir/larder.toml") && err.contains(at) && err.contains(problem),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn workers_default_to_one_per_core_and_a_bad_count_names_its_line() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(parse("").unwrap().server.workers, cores);
        assert_eq!(parse("[server]\nworkers = 3\n").unwrap().server.workers, 3);
        for bad in ["0", "257"] {
            let err = parse(&format!("[server]\nworkers = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("dir/larder.toml:2:11:"), "{err}");
            assert!(
                err.contains("1 to 256") && err.contains("one per core"),
                "{err}"
            );
        }
    }

    #[test]
    fn trusted_proxies_default_to_none_and_a_bad_range_names_its_line() {
        assert!(parse("").unwrap().server.trusted_proxies.is_empty());
        let text = "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n";
        assert_eq!(parse(text).unwrap().server.trusted_proxies.len(), 2);
        for bad in ["10.0.0.0/33", "proxy.local"] {
            let err = parse(&format!(
                "[server]\ntrusted_proxies = [\"::1\", \"{bad}\"]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("dir/larder.toml:2:27:"), "{err}");
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_bad_pattern_names_its_line() {
        let text = "[[route]]\nname = \"a\"\npath = \"/x/{id\"\nplugin = \"p\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("dir/larder.toml:3:8:"), "{err}");
    }

    #[test]
    fn nested_settings_are_refused() {
        let text = "[[route]]\nname = \"a\"\npath = \"/x\"\nplugin = \"p\"\n[route.settings]\nttl = 5\nbad = [1]\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(":7:7:") && err.contains("array"), "{err}");
        let ok = parse(&text.replace("bad = [1]\n", "")).unwrap();
        assert_eq!(ok.routes[0].settings, vec![("ttl".into(), "5".into())]);
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let route = "[[route]]\nname = \"a\"\npath = \"/x\"\nplugin = \"p\"\n";
        let err = parse(&format!("{route}{route}")).unwrap_err().to_string();
        assert!(err.contains(":5:1:") && err.contains("used twice"), "{err}");
    }

    #[test]
    fn env_overrides_win_and_are_checked() {
        let env = EnvOverrides {
            redis_url: Some("redis://127.0.0.1:7000".into()),
            upstream: Some("http://10.0.0.1:81".into()),
            ..Default::default()
        };
        let c = Config::parse(Path::new("l.toml"), "", &env).unwrap();
        assert_eq!(c.redis.unwrap().url, "redis://127.0.0.1:7000");
        assert_eq!(c.server.upstream.to_string(), "http://10.0.0.1:81/");

        let bad = EnvOverrides {
            upstream: Some("https://x".into()),
            ..Default::default()
        };
        let err = Config::parse(Path::new("l.toml"), "", &bad).unwrap_err();
        assert!(err.to_string().contains("LARDER_UPSTREAM"), "{err}");
    }

    #[test]
    fn redis_settings_are_read() {
        let c = parse("[redis]\nurl = \"redis://u:pw@10.0.0.1:6380/3\"\nprefix = \"app1:\"\nconnections = 4\n").unwrap();
        let r = c.redis.unwrap();
        assert_eq!(
            (r.url.as_str(), r.prefix.as_str(), r.connections),
            ("redis://u:pw@10.0.0.1:6380/3", "app1:", 4)
        );
        assert_eq!(r.display_url(), "redis://u:***@10.0.0.1:6380/3");
        let c = parse("[redis]\ncluster = [\"10.0.0.1:7000\", \"10.0.0.2:7001\"]\n").unwrap();
        let r = c.redis.unwrap();
        assert!(r.target().unwrap().is_cluster());
        assert_eq!(r.connections, defaults::REDIS_CONNECTIONS);
        let c = parse("[redis]\nurl = \"redis+cluster://:pw@h1:7000,h2:7001\"\n").unwrap();
        assert!(c.redis.unwrap().target().unwrap().is_cluster());
    }

    #[test]
    fn redis_mistakes_name_their_line() {
        let cases = [
            (
                "[redis]\nurl = \"redis+cluster://h1:7000,h2:7001/2\"\n",
                ":2:7:",
                "only database 0",
            ),
            (
                "[redis]\ncluster = [\"h1:7000\", \"redis://h2:7001/1\"]\n",
                ":2:11:",
                "only database 0",
            ),
            (
                "[redis]\nurl = \"redis://h\"\ncluster = [\"h1:7000\"]\n",
                ":3:11:",
                "either `url` or `cluster`",
            ),
            ("[redis]\ncluster = []\n", ":2:11:", "no nodes"),
            (
                "[redis]\nurl = \"redis://h:6379\"\nconnections = 0\n",
                ":3:15:",
                "1 to 64",
            ),
            (
                "[redis]\ncluster = [\"h1:7000\"]\nprefix = \"{app}:\"\n",
                ":3:10:",
                "hash tag",
            ),
            (
                "[redis]\nurl = \"mysql://h:6379\"\n",
                ":2:7:",
                "unknown scheme",
            ),
            (
                "[redis]\nprefix = \"x:\"\n",
                ":1:1:",
                "needs `url` or `cluster`",
            ),
        ];
        for (text, at, problem) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("dir/larder.toml") && err.contains(at) && err.contains(problem),
                "{text:?}: {err}"
            );
        }
        let env = EnvOverrides {
            redis_url: Some("redis+cluster://:secret@h1:7000/5".into()),
            ..Default::default()
        };
        let err = Config::parse(Path::new("l.toml"), "", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REDIS_URL") && err.contains("only database 0") && !err.contains("secret"),
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
