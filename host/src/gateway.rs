//! The gateway's shared state, and the snapshot a request takes when it starts.
//!
//! Everything a reload may change (the config, the route table, the plugins) lives in one
//! [`Snapshot`] behind an `ArcSwap`: a request loads it once at entry and uses that snapshot to
//! the end, so a reload can never hand it a route from one config and a plugin from another.
//! What a reload does not change (the store, the upstream client, the engine) lives beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::policy::sandbox::Limits;
use crate::policy::{PluginEngine, PluginSet};
use crate::proxy::decisions::Decisions;
use crate::proxy::upstream::Upstream;
use crate::routes::RouteTable;
use crate::store::Store;
use crate::store::memory::{self, MemoryStore};
use crate::store::pending::{self, PendingPurges};
use crate::store::redis::RedisStore;
use crate::store::tiered::TieredStore;
use crate::telemetry::{RouteTelemetry, Telemetry};

/// One consistent view of config, routes and plugins.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub plugins: PluginSet,
    /// Counters of each route (indexed like `routes.routes()`), with its plugin's version.
    pub telemetry: Vec<RouteTelemetry>,
    /// The policies' `on-request` answers, reused for identical requests while this snapshot
    /// serves.
    pub decisions: Decisions,
}

/// A snapshot that cannot serve: a route names a plugin that did not load.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: route {route:?} uses plugin {plugin:?}, which is not loaded: {reason}")]
pub struct MissingPlugin {
    pub file: String,
    pub line: usize,
    pub route: String,
    pub plugin: String,
    pub reason: String,
}

impl Snapshot {
    /// Loads the plugins for `config`, reusing unchanged ones from `previous`, and has each
    /// route's policy check the route's settings.
    pub async fn build(
        config: Arc<Config>,
        engine: &PluginEngine,
        previous: Option<&Snapshot>,
        telemetry: &Telemetry,
    ) -> Result<Self, anyhow::Error> {
        let routes = RouteTable::new(&config.routes, &config.plugins.hidden_headers)
            .map_err(anyhow::Error::msg)?;
        let plugins = PluginSet::load_dir(
            engine,
            &config.plugins.dir,
            previous.map(|p| &p.plugins),
            default_limits(&config),
        )
        .await;
        plugins
            .check_settings(&config, default_limits(&config))
            .await?;
        let telemetry = routes
            .routes()
            .iter()
            .map(|r| {
                let plugin = &r.config.plugin;
                let version = plugins.get(plugin).map_or("", |p| p.version.as_str());
                telemetry.route(&r.config.name, plugin, version)
            })
            .collect();
        Ok(Self {
            decisions: Decisions::new(config.plugins.decision_cache_bytes),
            config,
            routes,
            plugins,
            telemetry,
        })
    }

    /// Every plugin a route names is loaded (its own, and those of `also_invalidate`).
    pub fn check(&self) -> Result<(), MissingPlugin> {
        for route in self.routes.routes() {
            let c = &route.config;
            for (plugin, line) in c.plugin_refs() {
                if self.plugins.get(plugin).is_some() {
                    continue;
                }
                let reason = self
                    .plugins
                    .errors()
                    .get(plugin)
                    .or_else(|| self.plugins.errors().get("*"))
                    .cloned()
                    .unwrap_or_else(|| {
                        format!("no {plugin}.wasm in {}", self.config.plugins.dir.display())
                    });
                return Err(MissingPlugin {
                    file: self.config.path.display().to_string(),
                    line,
                    route: c.name.clone(),
                    plugin: plugin.to_owned(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// Limits for trial instantiation: the config's defaults.
pub fn default_limits(config: &Config) -> Limits {
    Limits {
        deadline: config
            .plugins
            .deadline
            .max(std::time::Duration::from_millis(50)),
        memory: config.plugins.memory_limit,
    }
}

/// State shared by every request.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    pub store: Store,
    pub upstream: Upstream,
    pub engine: PluginEngine,
    next_request_id: AtomicU64,
    /// Serialises reloads; requests never take it.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Fills in flight (misses and background refreshes), for request coalescing.
    pub coalescer: Arc<crate::proxy::coalesce::Coalescer>,
    pub telemetry: Telemetry,
    /// Counts published snapshots, for whoever must follow a reload (the watcher).
    pub published: tokio::sync::watch::Sender<u64>,
}

impl Gateway {
    /// Builds the gateway for `config`: plugins loaded and checked, store started. Fails with a
    /// message naming the file and line when a route's plugin is missing or broken.
    pub async fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let engine = PluginEngine::with_code_cache(
            config.plugins.code_cache.as_deref(),
            config.plugins.code_cache_bytes,
        )?;
        let config = Arc::new(config);
        let telemetry = Telemetry::new();
        let snapshot = Snapshot::build(config.clone(), &engine, None, &telemetry).await?;
        snapshot.check()?;
        let store = match &config.redis {
            Some(redis) => {
                let journal = pending::journal_path(&config.cache.state_dir, &redis.prefix);
                let pending = PendingPurges::open(Some(journal), config.cache.max_pending_purges);
                let l2 = RedisStore::start_with(redis, pending)?;
                l2.set_ack_wait(config.cache.memory_tier_trust);
                match config.cache.memory_tier_bytes {
                    0 => {
                        tracing::info!(url = %redact(&redis.url), prefix = %redis.prefix, "store: redis");
                        Store::Redis(l2)
                    }
                    budget => {
                        tracing::info!(
                            url = %redact(&redis.url),
                            prefix = %redis.prefix,
                            budget,
                            "store: redis behind a memory tier"
                        );
                        Store::Tiered(TieredStore::start(
                            l2,
                            budget,
                            config.cache.memory_tier_trust,
                            config.cache.memory_tier_outage,
                        ))
                    }
                }
            }
            None => {
                tracing::info!(
                    "store: in-process memory (no [redis] in the config and no REDIS_URL); entries are lost on restart and not shared between instances"
                );
                Store::Memory(MemoryStore::new(memory::DEFAULT_BUDGET))
            }
        };
        let upstream = Upstream::new(config.server.upstream.clone());
        let gateway = Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            store,
            upstream,
            engine,
            next_request_id: AtomicU64::new(1),
            reload_lock: tokio::sync::Mutex::new(()),
            published: tokio::sync::watch::channel(0).0,
            coalescer: Default::default(),
            telemetry,
        });
        upkeep(&gateway);
        Ok(gateway)
    }

    /// The current snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new snapshot; requests already running keep theirs.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
        self.published.send_modify(|n| *n += 1);
    }

    pub fn request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Folds histogram samples into their buckets every second, so that they do not pile up
/// between scrapes; stops with the gateway.
fn upkeep(gateway: &Arc<Gateway>) {
    let gateway = Arc::downgrade(gateway);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(gw) = gateway.upgrade() else { return };
            gw.telemetry.run_upkeep();
        }
    });
}

/// `redis://user:secret@host` -> `redis://user:***@host`, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(super::redact("redis://h:1"), "redis://h:1");
    }
}
