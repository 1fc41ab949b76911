//! Hostile plugins (a loop, a memory hog, a panic, a malformed answer) never fail a request and
//! never slow down the routes of well-behaved plugins. Each is a real component built for
//! `wasm32-wasip2` from `tests/plugins/`.

use std::path::Path;
use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::origin::OriginConfig;
use larder_tests::{http, plugins};

const ROUTES: &str = r#"
[plugins]
deadline_ms = 5
memory_limit = 8388608

[[route]]
name = "loop"
path = "/api/v1/repositories/{id}"
plugin = "loop-forever"

[[route]]
name = "hog"
path = "/api/v1/repositories/{id}/tech-stack"
plugin = "memory-hog"
# Generous time, so that it is the memory limit that stops it.
deadline_ms = 500

[[route]]
name = "panic"
path = "/api/v1/repositories/{id}/ai-features"
plugin = "panic"

[[route]]
name = "bad-key"
path = "/api/v1/insights"
plugin = "bad-key"

[[route]]
name = "guarded"
path = "/api/v1/me"
plugin = "panic"
fail = "closed"

[[route]]
name = "good"
path = "/api/v1/repositories"
plugin = "analysis-policy"
"#;

fn install(dir: &Path) {
    for p in [
        "loop-forever",
        "memory-hog",
        "panic",
        "bad-key",
        "analysis-policy",
    ] {
        plugins::install(p, dir, p);
    }
}

async fn harness() -> Harness {
    Harness::with_routes(
        ROUTES,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugins_fail_open_with_the_reason() {
    let h = harness().await;
    for (path, detail) in [
        ("/api/v1/repositories/1", "plugin-deadline"),
        ("/api/v1/repositories/1/tech-stack", "plugin-memory"),
        ("/api/v1/repositories/1/ai-features", "plugin-trap"),
        ("/api/v1/insights", "plugin-malformed"),
    ] {
        let t = Instant::now();
        let r = h.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.cache_status(),
            format!("larder; fwd=bypass; fwd-status=200; detail=\"{detail}\""),
            "{path}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            t.elapsed()
        );
        assert!(!h.get(path).await.is_hit(), "{path}: never cached");
    }
    // Each failure is counted against the plugin's version.
    let plugins = http::get(&h.admin("/plugins")).await.json();
    for name in ["loop-forever", "memory-hog", "panic", "bad-key"] {
        let p = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        assert!(p["errors"].as_u64().unwrap() >= 2, "{name}: {p}");
    }
    // ... and shows in the metrics by kind, and in the stats as requests passed by error.
    let metrics = http::get(&h.admin("/metrics")).await.text();
    for (plugin, kind) in [
        ("loop-forever", "plugin-deadline"),
        ("memory-hog", "plugin-memory"),
        ("panic", "plugin-trap"),
        ("bad-key", "plugin-malformed"),
    ] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("larder_plugin_errors_total{")
                    && l.contains(&format!("plugin=\"{plugin}\""))
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .unwrap_or_else(|| panic!("no error count for {plugin}:\n{metrics}"));
        assert!(line.ends_with(" 2"), "{line}");
    }
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["total"]["error"], 8, "{stats}");
    assert_eq!(stats["total"]["hit"], 0, "{stats}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_configured_to_fail_closed_answers_502() {
    let h = harness().await;
    let r = http::get_with(&h.url("/api/v1/me"), &[("authorization", "Bearer x")]).await;
    assert_eq!(r.status, 502);
    assert!(
        r.cache_status().contains("plugin-trap"),
        "{}",
        r.cache_status()
    );
    assert_eq!(h.origin.count("GET", "/api/v1/me"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_do_not_hold_up_other_routes() {
    let h = harness().await;
    h.get("/api/v1/repositories").await;
    let hostile = [
        ("/api/v1/repositories/{}", "plugin-deadline"),
        ("/api/v1/repositories/{}/tech-stack", "plugin-memory"),
        ("/api/v1/repositories/{}/ai-features", "plugin-trap"),
        ("/api/v1/insights", "plugin-malformed"),
    ];
    // 16 requests to hostile plugins (a loop, a memory hog, a panic, a bad key), all at once...
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let (pattern, detail) = hostile[i % hostile.len()];
            let url = h.url(&pattern.replace("{}", &(i + 1).to_string()));
            tokio::spawn(async move { (http::get(&url).await, detail) })
        })
        .collect();
    // ...while a well-behaved route keeps answering from the cache.
    for _ in 0..50 {
        let r = h.get("/api/v1/repositories").await;
        assert!(r.is_hit(), "{}", r.cache_status());
    }
    for r in requests {
        let (reply, detail) = r.await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(
            reply.cache_status().contains(detail),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(h.upstream_gets("/api/v1/repositories"), 1);
    h.stop().await;
}
