//! What the operator sees: `/stats` and `/metrics` count exactly what clients were told, per
//! route, with the hit ratio and the upstream waiting the cache saved; reloads and purges are
//! counted; the store's state shows.

use std::time::Duration;

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const REPO: &str = "/api/v1/repositories/7";

fn route<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {stats}"))
}

/// The value of the sample line `name{labels}` in Prometheus text (labels in any order).
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = rest.rsplit_once(' ')?;
        let all = labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")));
        (set.starts_with('{') && all).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_count_what_clients_were_told() {
    let redis = RedisServer::start();
    // Every repository document takes 100 ms upstream: three hits save about 300 ms.
    let origin = OriginConfig::zero_delay().with_non_ai_delays(Duration::from_millis(100));
    let h = Harness::demo(StoreKind::Redis(redis.url()), origin).await;

    let miss = h.get(REPO).await;
    assert!(miss.cache_status().contains("fwd=miss"));
    for _ in 0..3 {
        assert!(h.get(REPO).await.is_hit());
    }
    let unrouted = h.get("/not-a-route").await;
    assert!(unrouted.cache_status().contains("fwd=bypass"));

    let stats = http::get(&h.admin("/stats")).await.json();
    let repo = route(&stats, "repository");
    assert_eq!(repo["requests"], 4, "{repo}");
    assert_eq!(repo["hit"], 3);
    assert_eq!(repo["miss"], 1);
    assert_eq!(repo["hit_ratio"], 0.75);
    assert_eq!(repo["upstream_requests"], 1);
    let body = miss.body.len() as u64;
    assert_eq!(repo["bytes_from_cache"], 3 * body);
    assert_eq!(repo["bytes_from_upstream"], body);
    let saved = repo["upstream_time_saved_ms"].as_f64().unwrap();
    // A fill's time ends at the entry's `stored_at`, kept in whole milliseconds: each hit's
    // saving may read up to 1 ms short of the fill's 100 ms (CI once saw 299.979 ms).
    assert!(
        (297.0..3000.0).contains(&saved),
        "three hits of a 100 ms fill saved {saved} ms"
    );
    let (hit_ms, miss_ms) = (
        repo["hit_latency_ms"].as_f64().unwrap(),
        repo["miss_latency_ms"].as_f64().unwrap(),
    );
    assert!(hit_ms < miss_ms && miss_ms >= 100.0, "{repo}");
    // on-request for each of the four, on-response for the miss; a hit on a proxy thread that
    // has seen the same request reuses its decision instead of calling on-request.
    let calls = repo["plugin_calls"].as_u64().unwrap();
    let reused = repo["plugin_decisions_reused"].as_u64().unwrap();
    assert_eq!((calls + reused, calls >= 2), (5, true), "{repo}");
    assert_eq!(route(&stats, "(no route)")["pass"], 1);
    assert_eq!(stats["total"]["requests"], 5);
    assert_eq!(stats["store"]["kind"], "redis");
    assert_eq!(stats["status"], "ok");
    assert!(
        stats["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "analysis-policy")
    );

    let metrics = http::get(&h.admin("/metrics")).await;
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = metrics.text();
    let requests = |cache| {
        sample(
            &m,
            "larder_requests_total",
            &[("route", "repository"), ("cache", cache)],
        )
    };
    assert_eq!(requests("hit"), Some(3.0), "{m}");
    assert_eq!(requests("miss"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "larder_request_duration_seconds_count",
            &[("route", "repository"), ("cache", "hit")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            "larder_plugin_call_duration_seconds_count",
            &[("plugin", "analysis-policy")]
        ),
        Some(calls as f64)
    );
    assert_eq!(
        sample(
            &m,
            "larder_plugin_decisions_reused_total",
            &[("plugin", "analysis-policy")]
        ),
        Some(reused as f64)
    );
    assert_eq!(
        sample(
            &m,
            "larder_response_bytes_total",
            &[("route", "repository"), ("source", "cache")]
        ),
        Some((3 * body) as f64)
    );
    assert_eq!(
        sample(&m, "larder_store_up", &[("kind", "redis")]),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "larder_store_operation_duration_seconds_count",
            &[("op", "lookup")]
        )
        .unwrap()
            >= 4.0
    );
    // As in `/stats`: each hit's saving may read up to 1 ms short of the fill's 100 ms.
    assert!(
        sample(
            &m,
            "larder_upstream_saved_seconds",
            &[("route", "repository")]
        )
        .unwrap()
            >= 0.297
    );

    // A write that invalidates, a reload: both counted.
    let analyze = http::post(&h.url("/api/v1/repositories/7/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    assert!(!h.get(REPO).await.is_hit());
    let reload = h.reload().await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["invalidations"]["tags"], 2, "repo:7 and all-repos");
    assert!(stats["invalidations"]["entries"].as_u64().unwrap() >= 1);
    assert_eq!(stats["reloads"]["ok"], 1);
    assert!(stats["reloads"]["last_at"].as_u64().is_some());
    assert_eq!(
        route(&stats, "repository")["miss"],
        2,
        "history survives the reload"
    );
    let m = http::get(&h.admin("/metrics")).await.text();
    assert_eq!(
        sample(&m, "larder_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "larder_invalidations_total", &[("kind", "tag")]),
        Some(2.0)
    );

    // Redis gone: the store shows down, requests still succeed.
    drop(redis);
    let r = h.get("/api/v1/repositories/8").await;
    assert_eq!(r.status, 200);
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["status"], "degraded", "{}", stats["store"]);
    let m = http::get(&h.admin("/metrics")).await.text();
    assert_eq!(
        sample(&m, "larder_store_up", &[("kind", "redis")]),
        Some(0.0)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_is_counted_with_its_reason() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    std::fs::write(h.config_path(), "[[route]]\nname = 1\n").unwrap();
    let reload = h.reload().await;
    assert_eq!(reload.status, 422);
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["reloads"]["failed"], 1);
    let error = stats["reloads"]["last_error"].as_str().unwrap();
    assert!(error.contains("larder.toml:2"), "{error}");
    h.stop().await;
}

/// The demo gateway that also answers to `larder-admin.internal`.
async fn demo_with_admin_host() -> Harness {
    let demo = std::fs::read_to_string(larder_tests::plugins::workspace_root().join("larder.toml"))
        .expect("larder.toml");
    let config = demo.replacen(
        "[server]\n",
        "[server]\nadmin_hosts = [\"larder-admin.internal\"]\n",
        1,
    );
    Harness::with_routes(
        &config,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        larder_tests::gateway::install_example_plugins,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_over_the_admin_api_needs_the_token() {
    let h = demo_with_admin_host().await;
    let reload = h.admin("/plugins/reload");
    let anonymous = http::post(&reload).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert!(anonymous.header("www-authenticate").is_some());
    let guessed = format!("Bearer {}x", larder_tests::gateway::ADMIN_TOKEN);
    let wrong = http::send("POST", &reload, &[("authorization", &guessed)], "").await;
    assert_eq!(wrong.status, 401);
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["reloads"]["ok"], 0, "nothing reloaded");

    assert_eq!(h.reload().await.status, 200);
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["reloads"]["ok"], 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_configured_reload_is_refused_and_says_how_to_enable_it() {
    let h = Harness::demo_with_env(StoreKind::Memory, OriginConfig::zero_delay(), |env| {
        env.admin_token = None;
    })
    .await;
    let reload = http::post(&h.admin("/plugins/reload")).await;
    assert_eq!(reload.status, 403);
    let text = reload.text();
    assert!(
        text.contains("LARDER_ADMIN_TOKEN") && text.contains("SIGHUP"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_only_to_its_own_hosts_and_origins() {
    let h = demo_with_admin_host().await;
    let port = h.gateway.admin_addr.port();
    let auth = format!("Bearer {}", larder_tests::gateway::ADMIN_TOKEN);
    let purge = r#"{"tags": ["repo:1"]}"#;
    let json = ("content-type", "application/json");

    // A page whose name was rebound to this address sends its own name as Host: every
    // endpoint refuses it, reads too, and even with the token.
    let rebound = format!("evil.example:{port}");
    for path in ["/", "/health", "/stats", "/metrics", "/plugins"] {
        let r = http::get_with(&h.admin(path), &[("host", &rebound)]).await;
        assert_eq!(r.status, 403, "GET {path}: {}", r.text());
    }
    for path in ["/plugins/reload", "/purge"] {
        let r = http::send(
            "POST",
            &h.admin(path),
            &[("host", &rebound), ("authorization", &auth), json],
            purge,
        )
        .await;
        assert_eq!(r.status, 403, "POST {path}: {}", r.text());
        assert!(r.text().contains("server.admin_hosts"), "{}", r.text());
    }

    // A cross-site page's requests carry its Origin: refused, with or without the token.
    for origin in ["http://evil.example", "null"] {
        for path in ["/plugins/reload", "/purge"] {
            let r = http::send(
                "POST",
                &h.admin(path),
                &[("origin", origin), ("authorization", &auth), json],
                purge,
            )
            .await;
            assert_eq!(r.status, 403, "{origin} POST {path}: {}", r.text());
        }
        let r = http::get_with(&h.admin("/stats"), &[("origin", origin)]).await;
        assert_eq!(r.status, 403, "{origin} GET /stats");
    }
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["reloads"]["ok"], 0, "nothing reloaded");
    assert_eq!(stats["invalidations"]["tags"], 0, "nothing purged");

    // Loopback names, addresses and the configured name, with the dashboard's own Origin.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("larder-admin.internal:{port}"),
    ] {
        let own = format!("http://{host}");
        let r = http::get_with(&h.admin("/health"), &[("host", &host)]).await;
        assert_eq!(r.status, 200, "GET /health as {host}");
        let r = http::send(
            "POST",
            &h.admin("/purge"),
            &[
                ("host", &host),
                ("origin", &own),
                ("authorization", &auth),
                json,
            ],
            purge,
        )
        .await;
        assert_eq!(r.status, 200, "POST /purge as {host}: {}", r.text());
    }
    let r = http::send(
        "POST",
        &h.admin("/plugins/reload"),
        &[
            ("origin", "http://localhost:8360"),
            ("authorization", &auth),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    h.stop().await;
}

/// At `LARDER_LOG=debug` every request gets one log line with what an operator needs to follow
/// it: route, plugin, key digest, status, cache outcome, `Cache-Status` and timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_debug_every_request_is_logged_once_with_its_route_key_and_outcome() {
    use larder_tests::origin::Origin;
    use larder_tests::process::GatewayProcess;

    let origin = Origin::start(OriginConfig::zero_delay())
        .await
        .expect("start origin");
    let redis = RedisServer::start();
    let demo = larder_tests::gateway::demo_config();
    let gw = GatewayProcess::start_logging(
        "gateway",
        &demo,
        &origin.url(),
        &redis.url(),
        "larder=debug",
    )
    .await;
    // Answering `/health` is not yet reaching Redis: wait for that, so that the first request
    // stores and the second hits.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.health().await.is_some_and(|h| h["store"]["up"] == true) {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..2 {
        let r = http::get(&gw.url(REPO)).await;
        assert_eq!(r.status, 200);
    }
    let lines: Vec<serde_json::Value> = gw
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| {
            l["fields"]["message"] == "request" && l["fields"]["path"] == REPO
        })
        .collect();
    assert_eq!(lines.len(), 2, "one line per request:\n{}", gw.log());
    for (line, cache) in lines.iter().zip(["miss", "hit"]) {
        let f = &line["fields"];
        assert_eq!(line["level"], "DEBUG", "{line}");
        assert_eq!(f["method"], "GET", "{line}");
        assert_eq!(f["route"], "repository", "{line}");
        assert_eq!(f["plugin"], "analysis-policy", "{line}");
        assert_eq!(f["status"], 200, "{line}");
        assert_eq!(f["cache"], cache, "{line}");
        assert!(
            f["key"].as_str().is_some_and(|k| k.len() >= 16),
            "a key digest: {line}"
        );
        assert!(
            f["cache_status"].as_str().unwrap().starts_with("larder;"),
            "{line}"
        );
        assert!(f["elapsed_us"].as_u64().is_some(), "{line}");
    }
    assert_eq!(
        lines[0]["fields"]["key"], lines[1]["fields"]["key"],
        "the hit found the miss's key"
    );
    // The upstream wait is the request's own, also when a fill or a write made its upstream
    // request in a task of its own; a hit waited for nothing.
    assert!(lines[0]["fields"]["upstream_us"].as_u64().unwrap() > 0);
    assert_eq!(lines[1]["fields"]["upstream_us"], 0);
    let analyze = "/api/v1/repositories/7/actions/analyze";
    assert_eq!(http::post(&gw.url(analyze)).await.status, 200);
    let log = gw.log();
    let write = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "request" && l["fields"]["path"] == analyze)
        .unwrap_or_else(|| panic!("the write's line:\n{log}"));
    assert_eq!(write["fields"]["method"], "POST", "{write}");
    assert!(
        write["fields"]["upstream_us"].as_u64().unwrap() > 0,
        "{write}"
    );
}
