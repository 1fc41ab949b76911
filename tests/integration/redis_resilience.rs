//! Redis is an accelerator, never a dependency: when it dies every request still succeeds from
//! the upstream, and caching resumes by itself when it comes back.

use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const PATH: &str = "/api/v1/repositories/7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_survive_a_redis_crash_and_caching_resumes_after_it() {
    let mut redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    h.get(PATH).await;
    assert!(h.get(PATH).await.is_hit());

    redis.kill();
    for _ in 0..20 {
        let r = h.get(PATH).await;
        assert_eq!(r.status, 200, "{}", r.cache_status());
        assert_eq!(r.json()["id"], 7);
        assert!(!r.is_hit());
    }
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["store"]["up"], false, "{health}");
    assert_eq!(health["status"], "degraded");
    // Writes still go through (their invalidation cannot be recorded, and says so).
    let analyze = http::post(&h.url("/api/v1/repositories/7/actions/analyze")).await;
    assert_eq!(analyze.status, 200);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = h.get(PATH).await;
        let b = h.get(PATH).await;
        assert_eq!((a.status, b.status), (200, 200));
        if b.is_hit() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume: {}",
            b.cache_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_and_serves_with_redis_down() {
    let port = larder_tests::free_port();
    let h = Harness::demo_without_waiting(
        StoreKind::Redis(format!("redis://127.0.0.1:{port}")),
        OriginConfig::zero_delay(),
    )
    .await;
    for _ in 0..3 {
        let r = h.get(PATH).await;
        assert_eq!(r.status, 200);
        assert!(!r.is_hit());
    }
    assert_eq!(h.upstream_gets(PATH), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_a_timeout_to_a_handful_of_requests_not_to_all() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    h.get(PATH).await;
    assert!(h.get(PATH).await.is_hit());

    redis.pause();
    // The harness gives Redis operations 500 ms; a request that waits for one is slow.
    let mut slow = 0;
    let t = Instant::now();
    for _ in 0..30 {
        let started = Instant::now();
        let r = h.get(PATH).await;
        assert_eq!(r.status, 200, "{}", r.cache_status());
        if started.elapsed() >= Duration::from_millis(400) {
            slow += 1;
        }
    }
    let windows = t.elapsed().as_millis() / 1000 + 1;
    assert!(
        slow as u128 <= windows,
        "{slow} of 30 requests waited for the hung Redis in {windows} breaker windows"
    );

    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = h.get(PATH).await;
        if r.is_hit() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume: {}",
            r.cache_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.stop().await;
}
