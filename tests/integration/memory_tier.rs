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

/// The demo config with `lines` added to its `[cache]` section.
fn demo_with_cache(lines: &str) -> String {
    let demo = std::fs::read_to_string(larder_tests::plugins::workspace_root().join("larder.toml"))
        .unwrap();
    demo.replacen("[cache]\n", &format!("[cache]\n{lines}\n"), 1)
}

async fn tiered_with(redis: &RedisServer, cache_lines: &str) -> Harness {
    Harness::with_routes(
        &demo_with_cache(cache_lines),
        StoreKind::Tiered(redis.url()),
        OriginConfig::zero_delay(),
        larder_tests::gateway::install_example_plugins,
    )
    .await
}

/// Waits (bounded) until `/health` says whether the tier can hear purges.
async fn wait_until_hearing(h: &Harness, hearing: bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tier = h.memory_tier().await;
        if tier["hearing"] == hearing {
            return tier;
        }
        assert!(
            Instant::now() < deadline,
            "hearing never became {hearing}: {tier}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With `memory_tier_outage = "serve"`, the tier keeps answering hot keys through a Redis
/// that hangs, for as long as it hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_come_from_the_memory_tier_while_redis_hangs_when_availability_is_chosen() {
    let redis = RedisServer::start();
    let h = tiered_with(
        &redis,
        "memory_tier_outage = \"serve\"\nmemory_tier_trust_ms = 200",
    )
    .await;
    let first = h.get(REPO).await;
    assert!(first.cache_status().contains("stored"));
    assert_eq!(h.memory_tier().await["entries"], 1);

    // Redis stopped (SIGSTOP) for longer than the trust window: the tier answers without
    // waiting for it.
    redis.pause();
    wait_until_hearing(&h, false).await;
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

/// By default the tier answers only while its invalidation subscription was verified within
/// the trust window: a Redis that hangs (as a connection silently dropped by a NAT would look)
/// stops it from answering, `/health` says `degraded`, and it answers again once it hears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_that_cannot_hear_purges_stops_answering() {
    let redis = RedisServer::start();
    let h = tiered_with(&redis, "memory_tier_trust_ms = 300").await;
    h.get(REPO).await;
    assert!(h.get(REPO).await.is_hit());
    assert_eq!(wait_until_hearing(&h, true).await["entries"], 1);

    redis.pause();
    let tier = wait_until_hearing(&h, false).await;
    assert_eq!(tier["entries"], 1, "the tier still holds the entry: {tier}");
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["status"], "degraded", "{health}");
    let r = h.get(REPO).await;
    assert_eq!(r.status, 200);
    assert!(
        !r.is_hit(),
        "served from a tier that cannot hear: {}",
        r.cache_status()
    );
    assert_eq!(h.upstream_gets(REPO), 2);
    assert!(h.memory_tier().await["bypassed"].as_u64().unwrap() >= 1);

    redis.resume();
    wait_until_hearing(&h, true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.get(REPO).await.is_hit() {
        assert!(Instant::now() < deadline, "caching never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

/// Two instances with tiers; Redis hangs while an analyze goes through A. A's purge is kept
/// pending, and A answers the write only once B's tier has stopped trusting itself: no read
/// through B that starts after the write's answer sees the old analysis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyze_during_a_redis_hang_is_not_undone_by_another_instances_tier() {
    let redis = RedisServer::start();
    let a = tiered_with(&redis, "memory_tier_trust_ms = 300").await;
    let b = tiered_with(&redis, "memory_tier_trust_ms = 300").await;
    let view = "/api/v1/repositories/6/ai-features";
    b.get(view).await;
    assert!(b.get(view).await.is_hit());

    redis.pause();
    let analyze = http::post(&a.url("/api/v1/repositories/6/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    assert!(
        analyze.cache_status().contains("invalidation-pending"),
        "{}",
        analyze.cache_status()
    );
    let new = analyze.json()["analysis_version"].clone();
    // B's own backend (each harness has its own): re-analysed as A's was.
    b.origin.reanalyze(6);
    for _ in 0..5 {
        let r = b.get(view).await;
        assert_eq!(r.status, 200);
        assert!(
            !r.is_hit(),
            "B served its tier's old analysis: {}",
            r.cache_status()
        );
        assert_eq!(r.json()["analysis_version"], new);
    }
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = http::get(&a.admin("/health")).await.json();
        if health["store"]["pending_purges"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never applied its purge: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until_hearing(&b, true).await;
    let r = b.get(view).await;
    assert_eq!(r.json()["analysis_version"], new, "{}", r.cache_status());
    a.stop().await;
    b.stop().await;
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
    // The tier's subscription, and the fill news' if it was made by now.
    assert!((1..=2).contains(&killed), "{killed}");

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

/// The invalidation channel is read defensively: messages that are not announcements are
/// ignored without losing the subscription, and another instance's flush (what it owes when
/// its pending purges overflowed) empties this tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_announcements_are_ignored_and_a_flush_empties_the_tier() {
    let redis = RedisServer::start();
    let h = tiered(&redis).await;
    h.get(REPO).await;
    assert!(h.get(REPO).await.is_hit());
    let tier = h.memory_tier().await;
    assert_eq!(tier["entries"], 1, "{tier}");
    let emptied = tier["emptied"].as_u64().unwrap();

    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("*invalidations")
        .query(&mut redis.conn())
        .unwrap();
    let [channel] = &channels[..] else {
        panic!("one invalidation channel: {channels:?}");
    };
    let publish = |text: &str| {
        let listeners: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(text)
            .query(&mut redis.conn())
            .unwrap();
        assert_eq!(listeners, 1, "the gateway's tier hears {channel}");
    };
    for garbage in ["", "hello", "zz:h:", "1:x:", "1:h:not-a-digest", "\u{fffd}"] {
        publish(garbage);
    }
    // Announcements are applied in order: once the flush has emptied the tier, every message
    // before it was read.
    publish("1:f:");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tier = h.memory_tier().await;
        if tier["entries"] == 0 {
            assert_eq!(
                tier["emptied"].as_u64().unwrap(),
                emptied,
                "emptied by the flush, not by a lost subscription: {tier}"
            );
            assert_eq!(tier["subscribed"], true, "{tier}");
            break;
        }
        assert!(Instant::now() < deadline, "the flush never arrived: {tier}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The flush empties the tier, not Redis: the next read is a hit, from Redis, and the tier
    // takes it again.
    assert!(h.get(REPO).await.is_hit());
    assert_eq!(h.memory_tier().await["entries"], 1);
    assert_eq!(h.upstream_gets(REPO), 1);
    h.stop().await;
}
