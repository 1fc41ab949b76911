//! A gateway under test: the real `larder` library serving real HTTP on loopback, in front of
//! the stand-in backend, with real plugin components, and Redis or the memory store.

use std::path::Path;
use std::time::Duration;

use larder::config::{Config, EnvOverrides};

use crate::origin::{Origin, OriginConfig};
use crate::{http, plugins};

/// Which store the gateway uses.
#[derive(Debug, Clone)]
pub enum StoreKind {
    Memory,
    Redis(String),
    /// Redis behind a memory tier of 8 MiB.
    Tiered(String),
}

pub struct Harness {
    pub origin: Origin,
    pub gateway: larder::Running,
    /// Holds the config file and the plugin directory.
    dir: tempfile::TempDir,
}

/// The admin token every test gateway is started with (`LARDER_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub fn demo_config() -> String {
    std::fs::read_to_string(plugins::workspace_root().join("larder.toml")).expect("larder.toml")
}

/// Installs the Python port of `analysis-policy` (`plugins/python/analysis-policy`) under the
/// Rust policy's name, and `standard`: the demo's routes then run the Python policy.
pub fn install_python_analysis_policy(dir: &Path) {
    std::fs::copy(
        plugins::python_path("analysis-policy"),
        dir.join("analysis-policy.wasm"),
    )
    .expect("copy the Python analysis-policy");
    plugins::install("standard", dir, "standard");
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
        Self::start(&demo_config(), store, origin, install_example_plugins, true).await
    }

    /// Like [`Harness::demo`], with the environment overrides changed by `tweak` (e.g. no admin
    /// token).
    pub async fn demo_with_env(
        store: StoreKind,
        origin: OriginConfig,
        tweak: impl FnOnce(&mut EnvOverrides),
    ) -> Harness {
        Self::start_with(
            &demo_config(),
            store,
            origin,
            install_example_plugins,
            true,
            tweak,
        )
        .await
    }

    /// Like [`Harness::demo`], but does not wait for the store to come up (for tests of a
    /// store that is down).
    pub async fn demo_without_waiting(store: StoreKind, origin: OriginConfig) -> Harness {
        Self::start(
            &demo_config(),
            store,
            origin,
            install_example_plugins,
            false,
        )
        .await
    }

    /// A gateway configured by `config` (TOML; `[[route]]`s may use any plugin that `install`
    /// puts into the plugin directory).
    pub async fn with_routes(
        config: &str,
        store: StoreKind,
        origin: OriginConfig,
        install: impl FnOnce(&Path),
    ) -> Harness {
        Self::start(config, store, origin, install, true).await
    }

    /// Like [`Harness::with_routes`], with the environment overrides changed by `tweak` (e.g.
    /// no plugin directory, so that the config file's counts).
    pub async fn with_routes_and_env(
        config: &str,
        store: StoreKind,
        origin: OriginConfig,
        install: impl FnOnce(&Path),
        tweak: impl FnOnce(&mut EnvOverrides),
    ) -> Harness {
        Self::start_with(config, store, origin, install, true, tweak).await
    }

    /// Writes the config into a temp dir, as a deployment would, and points it at the test's
    /// origin, ports and Redis through the environment overrides, which reloads keep.
    async fn start(
        config: &str,
        store: StoreKind,
        origin: OriginConfig,
        install: impl FnOnce(&Path),
        wait: bool,
    ) -> Harness {
        Self::start_with(config, store, origin, install, wait, |_| {}).await
    }

    async fn start_with(
        config: &str,
        store: StoreKind,
        origin: OriginConfig,
        install: impl FnOnce(&Path),
        wait: bool,
        tweak: impl FnOnce(&mut EnvOverrides),
    ) -> Harness {
        init_logs();
        let origin = Origin::start(origin).await.expect("start origin");
        let dir = tempfile::tempdir().expect("temp dir");
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir(&plugin_dir).unwrap();
        install(&plugin_dir);
        let mut text = config.to_owned();
        let tiered = matches!(store, StoreKind::Tiered(_));
        let redis_url = match store {
            StoreKind::Memory => None,
            StoreKind::Redis(url) | StoreKind::Tiered(url) => {
                if tiered {
                    let tier = "memory_tier_bytes = 8388608\n";
                    text = match text.find("[cache]\n") {
                        Some(at) => format!("{}{tier}{}", &text[..at + 8], &text[at + 8..]),
                        None => format!("{text}\n[cache]\n{tier}"),
                    };
                }
                // Generous: two cores run many tests at once; a slow answer must not turn a
                // hit into a miss.
                text.push_str("\n[redis]\ntimeout_ms = 500\n");
                Some(url)
            }
        };
        let config_path = dir.path().join("larder.toml");
        std::fs::write(&config_path, &text).unwrap();
        let mut env = EnvOverrides {
            redis_url,
            upstream: Some(origin.url()),
            listen: Some("127.0.0.1:0".into()),
            admin_listen: Some("127.0.0.1:0".into()),
            plugin_dir: Some(plugin_dir.display().to_string()),
            admin_token: Some(ADMIN_TOKEN.into()),
            // The state directory defaults to one beside the config, in the test's temp dir.
            state_dir: None,
        };
        tweak(&mut env);
        let config = Config::load(&config_path, &env).expect("test config is valid");
        let gateway = larder::start(config).await.expect("gateway starts");
        let harness = Harness {
            origin,
            gateway,
            dir,
        };
        if wait {
            harness.wait_for_store().await;
        }
        harness
    }

    /// The gateway's plugin directory.
    pub fn plugin_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("plugins")
    }

    /// The gateway's config file.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("larder.toml")
    }

    /// Waits (bounded) until the store reports up (and a memory tier is subscribed to
    /// invalidations), so the first request of a test caches.
    async fn wait_for_store(&self) {
        for _ in 0..200 {
            let health = http::get(&format!("{}/health", self.gateway.admin_url())).await;
            let store = &health.json()["store"];
            let tier = &store["memory_tier"];
            if store["up"] == true && (tier.is_null() || tier["subscribed"] == true) {
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

    /// Requests the origin served for `method` and `path`.
    pub fn origin_count(&self, method: &str, path: &str) -> u64 {
        self.origin.count(method, path)
    }

    /// The memory tier's state from `/health` (`entries`, `subscribed`, `emptied`, ...).
    pub async fn memory_tier(&self) -> serde_json::Value {
        let health = http::get(&format!("{}/health", self.gateway.admin_url())).await;
        health.json()["store"]["memory_tier"].clone()
    }

    /// `POST` to the admin API with the admin token and a JSON body.
    pub async fn admin_post(&self, path: &str, body: &serde_json::Value) -> http::Reply {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        http::send(
            "POST",
            &self.admin(path),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body.to_string(),
        )
        .await
    }

    /// `POST /plugins/reload` with the admin token (the endpoint needs it).
    pub async fn reload(&self) -> http::Reply {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        http::send(
            "POST",
            &self.admin("/plugins/reload"),
            &[("authorization", &auth)],
            "",
        )
        .await
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
