//! The memory tier in front of Redis: hits without Redis, and invalidations that reach every
//! instance's tier through Redis pub/sub; a tier whose subscription was lost starts empty when
//! it is back, since it may have missed purges.

use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const REPO: &str = "/api/v1/repositories/6";

async fn tiered(redis: &RedisServer) -> Harness {
    Harness::demo(StoreKind::Tiered(redis.url()), OriginConfig::zero_delay()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_come_from_the_memory_tier_while_redis_hangs() {
    let redis = RedisServer::start();
    let h = tiered(&redis).await;
    let first = h.get(REPO).await;
    assert!(first.cache_status().contains("stored"));
    assert_eq!(h.memory_tier().await["entries"], 1);

    // Redis stopped (SIGSTOP): the tier answers without waiting for it.
    redis.pause();
    let t = Instant::now();
    for _ in 0..20 {
        let r = h.get(REPO).await;
        assert!(r.is_hit(), "{}", r.cache_status());
        assert_eq!(r.body, first.body);
    }
    let elapsed = t.elapsed();
    redis.resume();
    // 20 hits, none of which waited for the 500 ms Redis timeout of the test config.
    assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
    assert_eq!(h.upstream_gets(REPO), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyze_through_one_gateway_empties_the_others_memory_tier() {
    let redis = RedisServer::start();
    let a = tiered(&redis).await;
    let b = tiered(&redis).await;
    a.get(REPO).await;
    assert!(b.get(REPO).await.is_hit(), "B reads what A stored");
    assert!(b.get(REPO).await.is_hit(), "then from its own tier");
    assert_eq!(b.memory_tier().await["entries"], 1);

    let analyze = http::post(&a.url("/api/v1/repositories/6/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    // The purge reaches B's tier through pub/sub, within milliseconds.
    let t = Instant::now();
    loop {
        let r = b.get(REPO).await;
        if !r.is_hit() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "B's memory tier kept serving a purged entry"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "purge reached the other instance's tier in {:?}",
        t.elapsed()
    );
    assert_eq!(
        b.upstream_gets(REPO),
        1,
        "B went upstream after the analyze"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_empties_the_tier_when_it_returns() {
    let redis = RedisServer::start();
    let h = tiered(&redis).await;
    h.get(REPO).await;
    assert_eq!(h.memory_tier().await["entries"], 1);
    let emptied = h.memory_tier().await["emptied"].as_u64().unwrap();

    // Drop the gateway's subscription, as a network cut would: purges made meanwhile by
    // other instances would be lost to it.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(killed, 1);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tier = h.memory_tier().await;
        if tier["emptied"].as_u64().unwrap() > emptied && tier["subscribed"] == true {
            assert_eq!(tier["entries"], 0, "{tier}");
            break;
        }
        assert!(Instant::now() < deadline, "never resubscribed: {tier}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Redis still has the entry: a hit, now copied to the tier again.
    assert!(h.get(REPO).await.is_hit());
    assert_eq!(h.memory_tier().await["entries"], 1);
    assert_eq!(h.upstream_gets(REPO), 1);
    h.stop().await;
}
