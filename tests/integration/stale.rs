//! Stale serving: a soft-purged or expired entry inside its stale-while-revalidate window is
//! answered at once while one background request refreshes it; inside its stale-if-error window
//! it stands in for a failing upstream.

use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const CONFIG: &str = r#"
[[route]]
name = "repository"
path = "/api/v1/repositories/{id}"
plugin = "analysis-policy"
[route.settings]
ttl = 1800
stale_while_revalidate = 600
soft_purge = true

[[route]]
name = "analyze"
path = "/api/v1/repositories/{id}/actions/analyze"
methods = ["POST"]
plugin = "analysis-policy"
[route.settings]
soft_purge = true

[[route]]
name = "echo"
path = "/api/v1/echo"
plugin = "standard"
upstream_timeout_ms = 300
"#;

async fn harness(store: StoreKind) -> Harness {
    Harness::with_routes(
        CONFIG,
        store,
        OriginConfig::zero_delay(),
        larder_tests::gateway::install_example_plugins,
    )
    .await
}

/// Waits (bounded) until the origin has served `n` GETs of `path`.
async fn until_upstream_gets(h: &Harness, path: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.upstream_gets(path) < n {
        assert!(
            Instant::now() < deadline,
            "the background refresh never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn soft_purge_serves_stale_once_then_fresh(store: StoreKind) {
    let h = harness(store).await;
    let path = "/api/v1/repositories/8";
    h.get(path).await;
    let analyze = http::post(&h.url("/api/v1/repositories/8/actions/analyze")).await;
    assert_eq!(analyze.status, 200);

    let stale = h.get(path).await;
    assert_eq!(
        stale.json()["analysis_version"],
        1,
        "the stale answer, at once"
    );
    assert!(
        stale.cache_status().contains("detail=\"soft-purged\""),
        "{}",
        stale.cache_status()
    );
    until_upstream_gets(&h, path, 2).await;
    // The refresh stores before it finishes; poll briefly for its entry.
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = loop {
        let r = h.get(path).await;
        if r.json()["analysis_version"] == 2 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "never refreshed: {}",
            r.cache_status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(fresh.cache_status().split("; ").nth(1), Some("hit"));
    assert!(
        !fresh.cache_status().contains("detail"),
        "{}",
        fresh.cache_status()
    );
    assert_eq!(h.upstream_gets(path), 2, "exactly one background refresh");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_serves_stale_once_then_fresh_on_redis() {
    let redis = RedisServer::start();
    soft_purge_serves_stale_once_then_fresh(StoreKind::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_serves_stale_once_then_fresh_in_memory() {
    soft_purge_serves_stale_once_then_fresh(StoreKind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_is_served_stale_while_one_request_revalidates() {
    let h = harness(StoreKind::Memory).await;
    // The origin takes 200 ms, so the refresh cannot finish before the clients below are
    // all answered.
    let path = "/api/v1/echo?cache_control=max-age%3D1%2C%20stale-while-revalidate%3D60\
                &delay_ms=200&body=s";
    let first = h.get(path).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Several clients at once: all answered from the stale entry, one refresh upstream.
    let replies = futures_join(&h, path, 5).await;
    for r in &replies {
        assert_eq!(r.body, first.body);
        assert!(
            r.cache_status().contains("stale-while-revalidate"),
            "{}",
            r.cache_status()
        );
    }
    until_upstream_gets(&h, "/api/v1/echo", 2).await;
    // The refresh takes the origin's 200 ms; until it is stored, clients still get the stale
    // answer (and start no second refresh).
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = loop {
        let r = h.get(path).await;
        if r.body != first.body || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(fresh.body, first.body, "the refreshed answer");
    assert!(fresh.is_hit(), "{}", fresh.cache_status());
    assert_eq!(h.upstream_gets("/api/v1/echo"), 2);
    h.stop().await;
}

async fn futures_join(h: &Harness, path: &str, n: usize) -> Vec<http::Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = h.url(path);
            tokio::spawn(async move { http::get(&url).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_stands_in_for_a_failing_upstream() {
    let h = harness(StoreKind::Memory).await;
    let path = "/api/v1/echo?cache_control=max-age%3D1%2C%20stale-if-error%3D60&body=e";
    let first = h.get(path).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.origin.hold("/api/v1/echo");
    let r = h.get(path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, first.body);
    assert!(
        r.cache_status().contains("stale-if-error"),
        "{}",
        r.cache_status()
    );
    h.origin.release_all();

    // Without a stale-if-error window the client gets the upstream's failure.
    let plain = "/api/v1/echo?cache_control=max-age%3D1&body=p";
    h.get(plain).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.origin.hold("/api/v1/echo");
    let r = h.get(plain).await;
    assert_eq!(r.status, 504, "{}", r.cache_status());
    h.origin.release_all();
    h.stop().await;
}
