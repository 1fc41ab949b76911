//! Miss, then hit: the gateway answers repeat requests from the store without the upstream,
//! with the right body for the right repository, on Redis and on the memory store alike.

use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const AI: &str = "/api/v1/repositories/1/ai-features";

async fn miss_then_hit(store: StoreKind) {
    let h = Harness::demo(store, OriginConfig::fast()).await;

    let t = Instant::now();
    let first = h.get(AI).await;
    let miss_time = t.elapsed();
    assert_eq!(first.status, 200);
    assert_eq!(
        first.cache_status(),
        "larder; fwd=miss; fwd-status=200; stored"
    );

    let t = Instant::now();
    let second = h.get(AI).await;
    let hit_time = t.elapsed();
    assert!(second.is_hit(), "{}", second.cache_status());
    assert!(
        second.cache_status().contains("ttl=1"),
        "{}",
        second.cache_status()
    );
    assert_eq!(second.body, first.body);
    assert!(second.header("age").is_some());
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert_eq!(
        h.upstream_gets(AI),
        1,
        "the hit must not reach the upstream"
    );
    // The 1.2 s endpoint: a hit is more than 80% faster than the miss.
    assert!(miss_time >= Duration::from_millis(1200));
    assert!(
        hit_time.as_secs_f64() < miss_time.as_secs_f64() * 0.2,
        "hit {hit_time:?} vs miss {miss_time:?}"
    );

    // HEAD is answered from the stored GET, without a body.
    let head = larder_tests::http::send("HEAD", &h.url(AI), &[], "").await;
    assert!(head.is_hit());
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );
    assert_eq!(h.upstream_gets(AI), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_request_is_a_hit_without_the_upstream_on_redis() {
    let redis = RedisServer::start();
    miss_then_hit(StoreKind::Redis(redis.url())).await;
    // What is cached is readable by an operator, and no client material is in the key.
    let keys = redis.keys("larder:obj:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("larder:obj:ai-features:"), "{keys:?}");
    assert!(!keys[0].contains("/api"), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_request_is_a_hit_without_the_upstream_in_memory() {
    miss_then_hit(StoreKind::Memory).await;
}

async fn repositories_never_share_entries(store: StoreKind) {
    let h = Harness::demo(store, OriginConfig::zero_delay()).await;
    two_repositories_have_two_entries(&h).await;
    h.stop().await;
}

/// Repositories 1 and 2, and repository 1 on another route, are three entries (also run with
/// the Python policy, `python_policy.rs`).
pub(crate) async fn two_repositories_have_two_entries(h: &Harness) {
    for path in ["/api/v1/repositories/1", "/api/v1/repositories/2"] {
        assert!(!h.get(path).await.is_hit());
    }
    let one = h.get("/api/v1/repositories/1").await;
    let two = h.get("/api/v1/repositories/2").await;
    assert!(one.is_hit() && two.is_hit());
    assert_eq!(one.json()["id"], 1);
    assert_eq!(two.json()["id"], 2);
    // Same repository id on another route is another entry.
    let tech = h.get("/api/v1/repositories/1/tech-stack").await;
    assert!(!tech.is_hit());
    assert_ne!(tech.body, one.body);
    assert_eq!(h.upstream_gets("/api/v1/repositories/1"), 1);
    assert_eq!(h.upstream_gets("/api/v1/repositories/2"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_keys_never_collide_on_redis() {
    let redis = RedisServer::start();
    repositories_never_share_entries(StoreKind::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_keys_never_collide_in_memory() {
    repositories_never_share_entries(StoreKind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_never_cached() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    private_answers_are_never_stored(&h, &redis).await;
    h.stop().await;
}

/// Requests with `Authorization` or `Cookie` go upstream every time, and nothing they got is
/// in the store (also run with the Python policy, `python_policy.rs`).
pub(crate) async fn private_answers_are_never_stored(h: &Harness, redis: &RedisServer) {
    let path = "/api/v1/repositories/3";
    for (header, value) in [
        ("authorization", "Bearer alice-token"),
        ("cookie", "session=bob"),
    ] {
        for _ in 0..2 {
            let r = larder_tests::http::get_with(&h.url(path), &[(header, value)]).await;
            assert_eq!(r.status, 200);
            assert!(
                r.cache_status().contains("fwd=bypass"),
                "{}",
                r.cache_status()
            );
        }
    }
    assert_eq!(h.upstream_gets(path), 4);
    // ...and a private answer never lands in the store for an anonymous request to find.
    let anonymous = h.get(path).await;
    assert!(!anonymous.is_hit());
    assert!(redis.keys("larder:obj:repository:*").len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_route_are_proxied_untouched() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    for _ in 0..2 {
        let r = h.get("/api/v1/health").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.cache_status(),
            "larder; fwd=bypass; fwd-status=200; detail=\"no-route\""
        );
    }
    assert_eq!(h.upstream_gets("/api/v1/health"), 2);
    // An upstream 404 passes through with its status.
    let missing = h.get("/api/v1/repositories/9999").await;
    assert_eq!(missing.status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_policy_follows_the_origins_cache_control() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let cached = "/api/v1/echo?cache_control=max-age%3D60&body=a";
    let first = h.get(cached).await;
    let second = h.get(cached).await;
    assert!(
        !first.is_hit() && second.is_hit(),
        "{}",
        second.cache_status()
    );
    assert_eq!(first.body, second.body);

    for cc in ["no-store", "private%2C%20max-age%3D60", "max-age%3D0"] {
        let path = format!("/api/v1/echo?cache_control={cc}&body=b");
        let a = h.get(&path).await;
        let b = h.get(&path).await;
        assert!(!a.is_hit() && !b.is_hit(), "{cc}: {}", b.cache_status());
        assert_ne!(a.body, b.body, "{cc}: served twice by the origin");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_store_plugins_and_routes() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let health = larder_tests::http::get(&h.admin("/health")).await.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"]["kind"], "redis");
    assert_eq!(health["store"]["up"], true);
    let plugins: Vec<&str> = health["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(plugins, ["analysis-policy", "standard"]);
    assert_eq!(health["plugins"][0]["version"].as_str().unwrap().len(), 12);
    assert!(health["routes"].as_array().unwrap().len() >= 6);
    h.stop().await;
}

/// One proxy thread, so that every request meets the same table of reused decisions.
const ONE_WORKER: &str = "[server]\nworkers = 1\n";

/// A route's `(plugin_calls, plugin_decisions_reused)` from `/stats`.
async fn plugin_work(h: &Harness, route: &str) -> (u64, u64) {
    let stats = larder_tests::http::get(&h.admin("/stats")).await.json();
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
async fn an_identical_request_reuses_the_policys_decision_and_any_other_header_is_decided_afresh() {
    let config =
        std::fs::read_to_string(larder_tests::plugins::workspace_root().join("larder.toml"))
            .unwrap()
            .replacen("[server]\n", ONE_WORKER, 1);
    let h = Harness::with_routes(
        &config,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        larder_tests::gateway::install_example_plugins,
    )
    .await;
    let path = "/api/v1/repositories/5";
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let url = h.url(path);
        async move { larder_tests::http::get_with(&url, headers).await }
    };

    // The miss calls on-request and on-response; the two hits reuse the miss's decision.
    assert!(!get(&[]).await.is_hit());
    assert!(get(&[]).await.is_hit());
    assert!(get(&[]).await.is_hit());
    assert_eq!(plugin_work(&h, "repository").await, (2, 2));

    // A credential changes the answer (`pass`): decided by the policy, not taken from the
    // anonymous request's decision; and the same credential again reuses that `pass`.
    for reused in [2, 3] {
        let r = get(&[("authorization", "Bearer alice")]).await;
        assert!(
            r.cache_status().contains("fwd=bypass"),
            "{}",
            r.cache_status()
        );
        assert_eq!(plugin_work(&h, "repository").await, (3, reused));
    }
    let r = get(&[("authorization", "Bearer bob")]).await;
    assert!(
        r.cache_status().contains("fwd=bypass"),
        "{}",
        r.cache_status()
    );
    assert_eq!(plugin_work(&h, "repository").await, (4, 3));

    // Any header, even one the policy ignores, makes another request: decided afresh, and
    // still the same entry.
    assert!(get(&[("x-trace", "1")]).await.is_hit());
    assert_eq!(plugin_work(&h, "repository").await, (5, 3));
    assert_eq!(h.upstream_gets(path), 4, "one fill, three passes");
    h.stop().await;
}

/// Header fields that trace a request (`plugins.hidden_headers`: by default `x-request-id`,
/// `traceparent` and the like, which clients send new with every request) are not shown to the
/// policy: a request that differs from an earlier one only in them reuses its decision. A key
/// that varies on such a field still keeps one entry per value, and is decided every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_differing_only_in_hidden_fields_reuses_the_decision() {
    let routes = "[[route]]\nname = \"repository\"\npath = \"/api/v1/repositories/{id}\"\nplugin = \"policy\"\n\n[[route]]\nname = \"traced\"\npath = \"/api/v2/repositories/{id}\"\nplugin = \"policy\"\n[route.settings]\nvary = \"x-request-id\"\n";
    let install =
        |dir: &std::path::Path| larder_tests::plugins::install("analysis-policy", dir, "policy");
    let h = Harness::with_routes(
        &format!("{ONE_WORKER}\n{routes}"),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install,
    )
    .await;
    let get =
        |h: &Harness, path: &'static str, headers: &'static [(&'static str, &'static str)]| {
            let url = h.url(path);
            async move { larder_tests::http::get_with(&url, headers).await }
        };
    let repo = "/api/v1/repositories/5";
    assert!(!get(&h, repo, &[("x-request-id", "r1")]).await.is_hit());
    assert_eq!(plugin_work(&h, "repository").await, (2, 0));
    for (i, traced) in [
        &[("x-request-id", "r2")][..],
        &[("x-request-id", "r3"), ("traceparent", "00-4bf9-00f0-01")][..],
        &[][..],
    ]
    .into_iter()
    .enumerate()
    {
        assert!(get(&h, repo, traced).await.is_hit(), "{traced:?}");
        assert_eq!(
            plugin_work(&h, "repository").await,
            (2, i as u64 + 1),
            "{traced:?}"
        );
    }

    // Varying on a hidden field: one entry per value, each request decided by the policy.
    let path = "/api/v2/repositories/5";
    for (id, hit, upstream) in [("a", false, 1), ("a", true, 1), ("b", false, 2)] {
        let r = get(
            &h,
            path,
            if id == "a" {
                &[("x-request-id", "a")]
            } else {
                &[("x-request-id", "b")]
            },
        )
        .await;
        assert_eq!(r.is_hit(), hit, "{id}: {}", r.cache_status());
        assert_eq!(h.upstream_gets(path), upstream, "{id}");
    }
    assert_eq!(plugin_work(&h, "traced").await, (5, 0));
    h.stop().await;

    // The list is the operator's: here `traceparent` is shown, and a field of theirs is not.
    let h = Harness::with_routes(
        &format!("{ONE_WORKER}\n[plugins]\nhidden_headers = [\"X-Request-Id\", \"x-session-nonce\"]\n\n{routes}"),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install,
    )
    .await;
    assert!(!get(&h, repo, &[("x-session-nonce", "1")]).await.is_hit());
    assert!(
        get(&h, repo, &[("x-session-nonce", "2"), ("x-request-id", "r")])
            .await
            .is_hit()
    );
    assert_eq!(plugin_work(&h, "repository").await, (2, 1));
    assert!(
        get(&h, repo, &[("traceparent", "00-4bf9-00f0-01")])
            .await
            .is_hit()
    );
    assert_eq!(
        plugin_work(&h, "repository").await,
        (3, 1),
        "traceparent is shown"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_logs_is_called_for_every_request() {
    let config = format!(
        "{ONE_WORKER}\n[[route]]\nname = \"echo\"\npath = \"/api/v1/echo\"\nplugin = \"chatty\"\n"
    );
    let h = Harness::with_routes(
        &config,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        |dir: &std::path::Path| larder_tests::plugins::install("chatty", dir, "chatty"),
    )
    .await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&body=chatty";
    assert!(!h.get(path).await.is_hit());
    for _ in 0..3 {
        assert!(h.get(path).await.is_hit());
    }
    // Four on-request calls and the miss's on-response: the log line of each call is written.
    assert_eq!(plugin_work(&h, "echo").await, (5, 0));
    h.stop().await;
}

/// A policy's key can name request fields (`vary` in its cache key; the analysis policy's
/// `vary` setting): one entry per value, a field sent on several lines counts as their
/// comma-joined value (as HTTP combines them), and an absent field is a value of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_names_a_request_field_keeps_one_entry_per_value() {
    let config = "[[route]]\nname = \"repository\"\npath = \"/api/v1/repositories/{id}\"\nplugin = \"policy\"\n[route.settings]\nvary = \"x-tenant\"\n";
    let h = Harness::with_routes(
        config,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        |dir: &std::path::Path| larder_tests::plugins::install("analysis-policy", dir, "policy"),
    )
    .await;
    let path = "/api/v1/repositories/3";
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let url = h.url(path);
        async move { larder_tests::http::get_with(&url, headers).await }
    };
    for (headers, hit, upstream) in [
        (&[("x-tenant", "a")][..], false, 1),
        (&[("x-tenant", "a")][..], true, 1),
        (&[("x-tenant", "b")][..], false, 2),
        (&[][..], false, 3),
        (&[][..], true, 3),
        (&[("x-tenant", "a"), ("x-tenant", "b")][..], false, 4),
        (&[("x-tenant", "a, b")][..], true, 4),
        (&[("x-tenant", "b")][..], true, 4),
    ] {
        let r = get(headers).await;
        assert_eq!(r.is_hit(), hit, "{headers:?}: {}", r.cache_status());
        assert_eq!(h.upstream_gets(path), upstream, "{headers:?}");
    }
    h.stop().await;
}
