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

/// Requests succeed from the upstream while Redis answers with an error, which `/health`
/// shows and counts.
async fn error_replies_are_survived(url: String, expect: &str) {
    let h = Harness::demo_without_waiting(StoreKind::Redis(url), OriginConfig::zero_delay()).await;
    let mut made = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let health = loop {
        for _ in 0..5 {
            let r = h.get(PATH).await;
            made += 1;
            assert_eq!(r.status, 200, "{}", r.cache_status());
            assert_eq!(r.json()["id"], 7);
            assert!(!r.is_hit(), "{}", r.cache_status());
        }
        let health = http::get(&h.admin("/health")).await.json();
        if health["store"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(expect))
        {
            break health;
        }
        assert!(Instant::now() < deadline, "no {expect:?} in {health}");
        // Past the breaker's window, the next requests meet the error again.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["store"]["errors"].as_u64().unwrap() >= 1, "{health}");
    // Not one request was answered from Redis or lost: all reached the upstream.
    assert_eq!(h.upstream_gets(PATH), made);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_with_noeviction_is_survived() {
    let redis = RedisServer::start_with(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    error_replies_are_survived(redis.url(), "OOM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_replica_is_survived() {
    let dead = larder_tests::free_port().to_string();
    let redis = RedisServer::start_with(&["--replicaof", "127.0.0.1", &dead]);
    error_replies_are_survived(redis.url(), "read only replica").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_survived() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = redis.url().replace("redis://", "redis://:wrong@");
    error_replies_are_survived(url, "authentication failed").await;
}

/// Under `maxmemory` with `allkeys-lru`, Redis evicts entries and tag tokens alike. Neither may
/// break invalidation: an evicted entry is a miss, and an entry whose token was evicted is
/// invalid (never served with a generation it cannot prove), so after a purge of `repo:7` no
/// entry of repository 7 is served, however the evictions fell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_eviction_never_breaks_invalidation() {
    use larder::config::RedisConfig;
    use larder::store::key::tag_id;
    use larder::store::redis::RedisStore;
    use larder::store::{EntryMeta, NewEntry, ObjectKey, Storage, now_ms, tags};

    let redis =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let store = RedisStore::start(&RedisConfig {
        url: redis.url(),
        prefix: "larder:".into(),
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    while !store.health().up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    const N: usize = 6_000;
    let key = |i: usize| ObjectKey::derive("r", &["item", &i.to_string()], &[]);
    let body = bytes::Bytes::from(vec![b'x'; 1024]);
    for i in 0..N {
        let k = key(i);
        let mut tags = k.implicit_tags.clone();
        tags.push(tag_id(&format!("repo:{}", i % 50)));
        let entry = NewEntry {
            status: ::http::StatusCode::OK,
            headers: ::http::HeaderMap::new(),
            body: body.clone(),
            meta: EntryMeta {
                stored_at_ms: now_ms(),
                fill_started_us: tags::now_us(),
                initial_age: 0,
                ttl: 3600,
                stale_while_revalidate: 0,
                stale_if_error: 0,
                keep: 0,
                vary_marker: false,
            },
            tags,
            lease: None,
        };
        store.store(&k, entry).await.unwrap();
    }
    let evicted: u64 = {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut redis.conn())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("evicted_keys:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    assert!(evicted > 0, "the test must make Redis evict");

    store.purge(&[tag_id("repo:7")], false).await.unwrap();
    let (mut served, mut served_of_7) = (0, 0);
    for i in 0..N {
        if store.lookup(&key(i)).await.unwrap().is_some() {
            served += 1;
            if i % 50 == 7 {
                served_of_7 += 1;
            }
        }
    }
    println!("{evicted} keys evicted; {served} of {N} entries still served");
    assert_eq!(served_of_7, 0, "a purged entry was served after evictions");
    assert!(served > 0, "eviction kept some entries");
}

/// Waits (bounded) until `/health` shows no pending purge.
async fn wait_until_no_purge_is_pending(h: &Harness) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = http::get(&h.admin("/health")).await.json();
        if health["store"]["pending_purges"] == 0 && health["store"]["up"] == true {
            return health;
        }
        assert!(Instant::now() < deadline, "purges still pending: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A purge Redis cannot take while it hangs is kept pending, not dropped: nothing is served
/// from Redis until it is applied, and it is applied as soon as Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_redis_did_not_take_is_applied_when_it_answers() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let old = h.get(PATH).await.json()["analysis_version"].clone();
    assert!(h.get(PATH).await.is_hit());

    redis.pause();
    let analyze = http::post(&h.url("/api/v1/repositories/7/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    assert!(
        analyze.cache_status().contains("invalidation-pending"),
        "{}",
        analyze.cache_status()
    );
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["store"]["pending_purges"], 2, "{health}"); // repo:7, all-repos
    assert_eq!(health["status"], "degraded", "{health}");

    redis.resume();
    // Every read from now on sees the new analysis, including those racing the retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = h.get(PATH).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.json()["analysis_version"], old, "{}", r.cache_status());
        let health = http::get(&h.admin("/health")).await.json();
        if health["store"]["pending_purges"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the purge was never applied: {health}"
        );
    }
    wait_until_no_purge_is_pending(&h).await;
    let r = h.get(PATH).await;
    assert_ne!(r.json()["analysis_version"], old);
    h.stop().await;
}

/// The breaker skips Redis for lookups after a failure, but never skips a purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_never_refuses_a_purge() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let old = h.get(PATH).await.json()["analysis_version"].clone();
    assert!(h.get(PATH).await.is_hit());

    // One timeout opens the breaker for a second.
    redis.pause();
    assert!(!h.get(PATH).await.is_hit());
    redis.resume();
    let analyze = http::post(&h.url("/api/v1/repositories/7/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    assert!(
        !analyze.cache_status().contains("invalidation-failed"),
        "{}",
        analyze.cache_status()
    );
    wait_until_no_purge_is_pending(&h).await;
    // Once the breaker closes, what Redis serves is the new analysis.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let r = h.get(PATH).await;
        assert_ne!(r.json()["analysis_version"], old, "{}", r.cache_status());
    }
    h.stop().await;
}

/// A gateway restarted while Redis was down still applies the purges it owed: they are
/// journaled in its state directory, and it serves nothing from Redis until they are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_purges_survive_a_gateway_restart() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let with_state = |env: &mut larder::config::EnvOverrides| {
        env.state_dir = Some(state_dir.clone());
    };
    let first = Harness::demo_with_env(
        StoreKind::Redis(redis.url()),
        OriginConfig::zero_delay(),
        with_state,
    )
    .await;
    first.get(PATH).await;
    assert!(first.get(PATH).await.is_hit());

    redis.kill();
    let analyze = http::post(&first.url("/api/v1/repositories/7/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    assert!(analyze.cache_status().contains("invalidation-pending"));
    first.stop().await;
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        1,
        "the pending purge is journaled"
    );

    // Redis comes back with the stored entry; a new gateway process-state reads the journal.
    redis.start_again();
    let second = Harness::demo_with_env(
        StoreKind::Redis(redis.url()),
        OriginConfig::zero_delay(),
        |env| env.state_dir = Some(state.path().display().to_string()),
    )
    .await;
    let r = second.get(PATH).await;
    assert!(
        !r.is_hit(),
        "the purged entry was served: {}",
        r.cache_status()
    );
    assert_eq!(second.upstream_gets(PATH), 1);
    wait_until_no_purge_is_pending(&second).await;
    assert!(
        std::fs::read_dir(state.path()).unwrap().next().is_none(),
        "an applied journal is removed"
    );
    second.stop().await;
}

/// Tokens evicted under `allkeys-lru` (here deleted, as an eviction would) never turn a hard
/// purge into a soft one: a later soft purge of the tag leaves the hard-purged entry gone,
/// whether it finds no token at all or one that a newer entry created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purge_never_brings_back_what_a_hard_purge_removed() {
    use larder::config::RedisConfig;
    use larder::store::contract::entry;
    use larder::store::key::tag_id;
    use larder::store::redis::RedisStore;
    use larder::store::{ObjectKey, Standing, Storage};

    let redis = RedisServer::start();
    let store = RedisStore::start(&RedisConfig {
        url: redis.url(),
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    while !store.health().up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tag = tag_id("repo:1");
    let token_key = format!("larder:tag:{tag}");
    let stored = |name: &str| {
        let key = ObjectKey::derive("r", &["repo", name], &[]);
        let mut tags = key.implicit_tags.clone();
        tags.push(tag);
        (key, entry(bytes::Bytes::from_static(b"x"), tags))
    };
    let evict = || {
        let _: i64 = redis::cmd("DEL")
            .arg(&token_key)
            .query(&mut redis.conn())
            .unwrap();
    };

    // No token at all when the soft purge comes.
    let (old, e) = stored("old");
    store.store(&old, e).await.unwrap();
    store.purge(&[tag], false).await.unwrap();
    evict();
    store.purge(&[tag], true).await.unwrap();
    assert!(store.lookup(&old).await.unwrap().is_none());

    // A token created again by a newer entry's store, then soft-purged.
    let (older, e) = stored("older");
    store.store(&older, e).await.unwrap();
    store.purge(&[tag], false).await.unwrap();
    evict();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let (newer, e) = stored("newer");
    store.store(&newer, e).await.unwrap();
    store.purge(&[tag], true).await.unwrap();
    assert!(store.lookup(&older).await.unwrap().is_none());
    assert_eq!(
        store.lookup(&newer).await.unwrap().map(|f| f.standing),
        Some(Standing::SoftPurged)
    );
}

/// Past `max_pending_purges`, the pending set cannot say what it lost: nothing is served
/// from the cache, and when Redis answers every entry is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_pending_set_drops_every_entry_when_redis_answers() {
    use larder::config::RedisConfig;
    use larder::store::contract::entry;
    use larder::store::key::tag_id;
    use larder::store::pending::PendingPurges;
    use larder::store::redis::RedisStore;
    use larder::store::{ObjectKey, Storage};

    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = RedisStore::start_with(
        &RedisConfig {
            url: redis.url(),
            timeout: Duration::from_millis(300),
            ..Default::default()
        },
        PendingPurges::open(None, 1),
    )
    .unwrap();
    while !store.health().up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let keys: Vec<ObjectKey> = (0..3)
        .map(|i| ObjectKey::derive("r", &["repo", &i.to_string()], &[]))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let mut tags = key.implicit_tags.clone();
        tags.push(tag_id(&format!("repo:{i}")));
        store
            .store(key, entry(bytes::Bytes::from_static(b"x"), tags))
            .await
            .unwrap();
    }
    assert!(store.lookup(&keys[2]).await.unwrap().is_some());

    redis.kill();
    let e = store
        .purge(&[tag_id("repo:0"), tag_id("repo:1")], false)
        .await
        .unwrap_err();
    assert!(e.is_pending(), "{e}");
    assert!(store.pending().overflowed());
    assert!(store.health().pending_overflow);

    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.pending().any() {
        assert!(Instant::now() < deadline, "never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Repository 2 was never purged, but its entry went with the others.
    for key in &keys {
        assert!(store.lookup(key).await.unwrap().is_none());
    }
    assert!(redis.keys("larder:obj:*").is_empty());
}
