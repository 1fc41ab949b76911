//! The policy interface across its versions, and settings checked at load.
//!
//! Plugins built against `larder:policy@0.1.0` keep loading and deciding as they did: the
//! original 0.1.0 (importing only `log`) and the later 0.1.0 that also imports
//! `request-body-digest`. They are real components built from the repository's history and
//! checked in under `tests/fixtures/` (see its README for the commits and the command). A
//! 0.2.0 policy checks each route's settings once, at load: a setting it refuses keeps the
//! gateway from starting, and valid settings keep decisions reusable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use larder::config::{Config, EnvOverrides};
use larder::policy::WitVersion;
use larder::policy::sandbox::Limits;
use larder::policy::types::{
    CacheKey, Invalidation, InvalidationTarget, Param, Request, RequestDecision, Response,
    ResponseDecision, StoreDirective,
};
use larder::policy::{Plugin, PluginEngine};
use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::origin::OriginConfig;
use larder_tests::{http, plugins};

/// The WIT's types have no `PartialEq` in the host: compare what they print.
macro_rules! assert_same {
    ($a:expr, $b:expr $(,)?) => {
        assert_eq!(format!("{:?}", $a), format!("{:?}", $b))
    };
}

const LIMITS: Limits = Limits {
    deadline: Duration::from_millis(50),
    memory: 16 * 1024 * 1024,
};

/// `analysis-policy` as of the first commit: `larder:policy@0.1.0`, importing only `log`.
fn original_0_1_0() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/policy-0.1.0.wasm")
}

/// `analysis-policy` as of the last 0.1.0 commit: also imports `request-body-digest`.
fn later_0_1_0() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/policy-0.1.0-body-digest.wasm")
}

fn load(path: &Path) -> Plugin {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    PluginEngine::new()
        .unwrap()
        .load("old", &bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn param(name: &str, value: &str) -> Param {
    Param {
        name: name.into(),
        value: value.into(),
    }
}

fn request(method: &str, route: &str, id: Option<&str>) -> Request {
    Request {
        method: method.into(),
        path: match id {
            Some(id) => format!("/api/v1/repositories/{id}"),
            None => "/api/v1/embeddings".into(),
        },
        query: None,
        headers: vec![],
        route_name: route.into(),
        route_pattern: "/api/v1/repositories/{id}".into(),
        params: id.map(|id| param("id", id)).into_iter().collect(),
        settings: vec![],
    }
}

fn response(status: u16) -> Response {
    Response {
        status,
        headers: vec![],
        body_size: None,
    }
}

fn lookup(parts: &[&str]) -> RequestDecision {
    RequestDecision::Lookup(CacheKey {
        parts: parts.iter().map(|p| (*p).to_owned()).collect(),
        vary: vec![],
    })
}

fn store(ttl: u32, tag: &str) -> ResponseDecision {
    ResponseDecision::Store(StoreDirective {
        ttl,
        stale_while_revalidate: 0,
        stale_if_error: 0,
        tags: vec![tag.into()],
    })
}

fn purge(tag: &str) -> Invalidation {
    Invalidation {
        target: InvalidationTarget::Tag(tag.into()),
        soft: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_built_against_the_original_0_1_0_loads_and_decides_as_it_did() {
    let plugin = load(&original_0_1_0());
    assert_same!(plugin.wit_version(), WitVersion::V0_1);

    // Its key keeps the id as written (the canonical ids came later, in 0.2.0's SDK).
    let get = request("GET", "repository", Some("01"));
    assert_same!(
        plugin.on_request(1, LIMITS, &get).await.unwrap(),
        lookup(&["repo", "01", "repository", ""])
    );
    let mut with_credentials = get.clone();
    with_credentials
        .headers
        .push(larder::policy::types::Header {
            name: "authorization".into(),
            value: "Bearer t".into(),
        });
    assert_same!(
        plugin
            .on_request(2, LIMITS, &with_credentials)
            .await
            .unwrap(),
        RequestDecision::Pass("credentials".into())
    );
    // Before POST-by-digest: any POST passes, whatever the host offers.
    let post = request("POST", "embeddings", None);
    let (decision, facts) = plugin
        .on_request_with_body(3, LIMITS, &post, Some(&"ab".repeat(32)))
        .await
        .unwrap();
    assert_same!(decision, RequestDecision::Pass("method".into()));
    assert!(!facts.body_digest_asked);

    assert_same!(
        plugin
            .on_response(4, LIMITS, &get, &response(200), None)
            .await
            .unwrap(),
        store(1800, "repo:01")
    );
    let mut tuned = get.clone();
    tuned.settings.push(param("ttl", "600"));
    assert_same!(
        plugin
            .on_response(5, LIMITS, &tuned, &response(200), None)
            .await
            .unwrap(),
        store(600, "repo:01")
    );
    assert_same!(
        plugin
            .on_response(6, LIMITS, &get, &response(500), None)
            .await
            .unwrap(),
        ResponseDecision::NoStore("status".into())
    );
    let analyze = request("POST", "analyze", Some("01"));
    assert_same!(
        plugin
            .on_invalidate(7, LIMITS, &analyze, &response(202))
            .await
            .unwrap(),
        [purge("repo:01"), purge("all-repos")]
    );

    // 0.1.0 has no `check-settings`: any settings are accepted, as before.
    assert_same!(
        plugin
            .check_settings(LIMITS, "repository", &[param("ttl", "soon")])
            .await
            .unwrap(),
        Ok::<(), String>(())
    );
    assert_same!(plugin.error_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_built_against_the_later_0_1_0_still_gets_the_body_digest() {
    let plugin = load(&later_0_1_0());
    assert_same!(plugin.wit_version(), WitVersion::V0_1);
    let digest = "ab".repeat(32);
    let post = request("POST", "embeddings", None);
    let (decision, facts) = plugin
        .on_request_with_body(1, LIMITS, &post, Some(&digest))
        .await
        .unwrap();
    assert_same!(decision, lookup(&["embeddings", &digest]));
    assert!(facts.body_digest_asked && !facts.repeatable);
    let (decision, _) = plugin
        .on_request_with_body(2, LIMITS, &post, None)
        .await
        .unwrap();
    assert_same!(decision, RequestDecision::Pass("method".into()));
    assert_same!(
        plugin
            .on_request(3, LIMITS, &request("GET", "repository", Some("01")))
            .await
            .unwrap(),
        lookup(&["repo", "1", "repository", ""])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_a_0_1_0_policy_and_does_not_check_its_settings() {
    let old = original_0_1_0();
    // A setting 0.2.0's analysis-policy would refuse: a 0.1.0 plugin is not asked, so the
    // gateway starts, and the plugin falls back to its default TTL as it always did.
    let config = "[[route]]\nname = \"repository\"\npath = \"/api/v1/repositories/{id}\"\nplugin = \"old\"\n[route.settings]\nttl = \"soon\"\n";
    let h = Harness::with_routes(
        config,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        move |dir: &Path| {
            std::fs::copy(&old, dir.join("old.wasm")).unwrap();
        },
    )
    .await;
    let path = "/api/v1/repositories/01";
    assert!(!h.get(path).await.is_hit());
    let hit = h.get(path).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(h.upstream_gets(path), 1);
    let plugins = http::get(&h.admin("/plugins")).await.json();
    assert_eq!(plugins[0]["name"], "old");
    assert_eq!(plugins[0]["last_error"], serde_json::Value::Null);
    h.stop().await;
}

/// A route of `plugin` with these settings, as a deployment's config file.
fn config_with(plugin: &str, settings: &str) -> String {
    format!(
        "[[route]]\nname = \"repository\"\npath = \"/api/v1/repositories/{{id}}\"\nplugin = \"{plugin}\"\n[route.settings]\n{settings}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_the_policy_refuses_keeps_the_gateway_from_starting() {
    for (settings, reason) in [
        (
            "ttl = \"ten minutes\"",
            "setting `ttl` = \"ten minutes\" is not a valid u32",
        ),
        ("tll = 600", "unknown setting `tll`"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir(&plugin_dir).unwrap();
        plugins::install("analysis-policy", &plugin_dir, "policy");
        let path = dir.path().join("larder.toml");
        std::fs::write(&path, config_with("policy", settings)).unwrap();
        let env = EnvOverrides {
            upstream: Some("http://127.0.0.1:9".into()),
            listen: Some("127.0.0.1:0".into()),
            admin_listen: Some("127.0.0.1:0".into()),
            plugin_dir: Some(plugin_dir.display().to_string()),
            ..EnvOverrides::default()
        };
        let config = Config::load(&path, &env).expect("the file itself is valid");
        let Err(e) = larder::start(config).await else {
            panic!("{settings}: the gateway started");
        };
        let e = format!("{e:#}");
        assert!(
            e.contains("larder.toml:4: route \"repository\": plugin \"policy\" refused the route's settings: ")
                && e.contains(reason),
            "{e}"
        );
    }
}

/// A route's `(plugin_calls, plugin_decisions_reused)` from `/stats`.
async fn plugin_work(h: &Harness, route: &str) -> (u64, u64) {
    let stats = http::get(&h.admin("/stats")).await.json();
    let r = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {stats}"))
        .clone();
    (
        r["plugin_calls"].as_u64().unwrap(),
        r["plugin_decisions_reused"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_valid_settings_decisions_are_reused() {
    // One proxy thread, so that every request meets the same table of reused decisions.
    let config = format!(
        "[server]\nworkers = 1\n\n{}",
        config_with(
            "policy",
            "ttl = 600\nnot_found_ttl = 30\nstale_while_revalidate = 60\nsoft_purge = true\nview = \"summary\""
        )
    );
    let h = Harness::with_routes(
        &config,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        |dir: &Path| plugins::install("analysis-policy", dir, "policy"),
    )
    .await;
    let path = "/api/v1/repositories/5";
    assert!(!h.get(path).await.is_hit());
    assert!(h.get(path).await.is_hit());
    assert!(h.get(path).await.is_hit());
    // The miss calls on-request and on-response; the hits reuse the miss's decision.
    assert_eq!(plugin_work(&h, "repository").await, (2, 2));
    h.stop().await;
}
