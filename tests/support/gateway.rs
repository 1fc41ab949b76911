//! A gateway under test: the real `larder` library serving real HTTP on loopback, in front of
//! the stand-in backend, with real plugin components, and Redis or the memory store.

use std::path::Path;
use std::time::Duration;

use larder::config::{Config, EnvOverrides, RedisConfig};

use crate::origin::{Origin, OriginConfig};
use crate::{http, plugins};

/// Which store the gateway uses.
#[derive(Debug, Clone)]
pub enum StoreKind {
    Memory,
    Redis(String),
}

pub struct Harness {
    pub origin: Origin,
    pub gateway: larder::Running,
    /// The gateway's plugin directory (a temp dir the test may write to).
    pub plugin_dir: tempfile::TempDir,
}

/// Installs the example plugins (`analysis-policy`, `standard`) into `dir`.
pub fn install_example_plugins(dir: &Path) {
    plugins::install("analysis-policy", dir, "analysis-policy");
    plugins::install("standard", dir, "standard");
}

impl Harness {
    /// The demo configuration (`larder.toml` at the repository root), on free ports, in front of
    /// a fresh stand-in backend.
    pub async fn demo(store: StoreKind, origin: OriginConfig) -> Harness {
        let path = plugins::workspace_root().join("larder.toml");
        let config = Config::load(&path, &EnvOverrides::default()).expect("demo config is valid");
        Self::start(config, store, origin, install_example_plugins).await
    }

    /// Like [`Harness::demo`], but does not wait for the store to come up (for tests of a
    /// store that is down).
    pub async fn demo_without_waiting(store: StoreKind, origin: OriginConfig) -> Harness {
        let path = plugins::workspace_root().join("larder.toml");
        let config = Config::load(&path, &EnvOverrides::default()).expect("demo config is valid");
        Self::start_inner(config, store, origin, install_example_plugins, false).await
    }

    /// `routes` (TOML `[[route]]` tables, may use any plugin installed by `install`).
    pub async fn with_routes(
        routes: &str,
        store: StoreKind,
        origin: OriginConfig,
        install: impl FnOnce(&Path),
    ) -> Harness {
        let config = Config::parse(Path::new("test.toml"), routes, &EnvOverrides::default())
            .expect("test config is valid");
        Self::start(config, store, origin, install).await
    }

    async fn start(
        config: Config,
        store: StoreKind,
        origin: OriginConfig,
        install: impl FnOnce(&Path),
    ) -> Harness {
        Self::start_inner(config, store, origin, install, true).await
    }

    async fn start_inner(
        mut config: Config,
        store: StoreKind,
        origin: OriginConfig,
        install: impl FnOnce(&Path),
        wait: bool,
    ) -> Harness {
        init_logs();
        let origin = Origin::start(origin).await.expect("start origin");
        let plugin_dir = tempfile::tempdir().expect("temp dir");
        install(plugin_dir.path());
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.server.upstream = origin.url().parse().unwrap();
        config.plugins.dir = plugin_dir.path().to_owned();
        config.redis = match store {
            StoreKind::Memory => None,
            StoreKind::Redis(url) => Some(RedisConfig {
                url,
                prefix: "larder:".into(),
                timeout: Duration::from_millis(200),
            }),
        };
        let gateway = larder::start(config).await.expect("gateway starts");
        let harness = Harness {
            origin,
            gateway,
            plugin_dir,
        };
        if wait {
            harness.wait_for_store().await;
        }
        harness
    }

    /// Waits (bounded) until the store reports up, so the first request of a test caches.
    async fn wait_for_store(&self) {
        for _ in 0..200 {
            let health = http::get(&format!("{}/health", self.gateway.admin_url())).await;
            if health.json()["store"]["up"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the store did not come up within 5 s");
    }

    /// `http://gateway/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway.url(), path)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("{}{}", self.gateway.admin_url(), path)
    }

    pub async fn get(&self, path: &str) -> http::Reply {
        http::get(&self.url(path)).await
    }

    /// Upstream requests for `GET path` so far.
    pub fn upstream_gets(&self, path: &str) -> u64 {
        self.origin.count("GET", path)
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
        self.origin.shutdown().await;
    }
}

/// Test logs go to the test's output when `LARDER_TEST_LOG` is set (e.g. `debug`).
fn init_logs() {
    if let Ok(filter) = std::env::var("LARDER_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}
