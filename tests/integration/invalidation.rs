//! A re-analysis makes exactly that repository's cached views (and the aggregates over all
//! repositories) disappear, at once, and a slow fill that straddles it never writes the old
//! analysis back.

use std::time::Duration;

use larder::store::contract;
use larder::store::redis::RedisStore;
use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const VIEWS: [&str; 3] = ["", "/ai-features", "/tech-stack"];

async fn an_analyze_invalidates_that_repository_and_the_aggregates(store: StoreKind) {
    let h = Harness::demo(store, OriginConfig::zero_delay()).await;
    an_analyze_purges_exactly_its_repository(&h).await;
    h.stop().await;
}

/// Every view of repositories 1, 2 and 10 and the aggregates are cached; an analyze of 1
/// leaves exactly 2 and 10 (also run with the Python policy, `python_policy.rs`).
pub(crate) async fn an_analyze_purges_exactly_its_repository(h: &Harness) {
    let mut paths: Vec<String> = Vec::new();
    for id in [1, 2, 10] {
        for view in VIEWS {
            paths.push(format!("/api/v1/repositories/{id}{view}"));
        }
    }
    paths.push("/api/v1/insights".into());
    paths.push("/api/v1/repositories".into());
    for p in &paths {
        h.get(p).await;
        assert!(h.get(p).await.is_hit(), "{p} should be cached");
    }
    let before = h.get("/api/v1/repositories/1").await.json()["analysis_version"].clone();

    let analyze =
        http::post(&h.url("/api/v1/repositories/1/actions/analyze?feature_type=complexity")).await;
    assert_eq!(analyze.status, 200);
    assert!(analyze.cache_status().contains("fwd=method"));
    assert!(
        analyze
            .cache_status()
            .contains("detail=\"purged repo:1, all-repos\""),
        "the write says what it purged: {}",
        analyze.cache_status()
    );

    for p in &paths {
        let r = h.get(p).await;
        let repo_one = p.starts_with("/api/v1/repositories/1/") || p == "/api/v1/repositories/1";
        let aggregate = p == "/api/v1/insights" || p == "/api/v1/repositories";
        if repo_one || aggregate {
            assert!(!r.is_hit(), "{p} must be invalidated: {}", r.cache_status());
        } else {
            assert!(r.is_hit(), "{p} must survive: {}", r.cache_status());
        }
    }
    let after = h.get("/api/v1/repositories/1").await.json()["analysis_version"].clone();
    assert_ne!(before, after, "the new analysis is served");
    assert_eq!(h.upstream_gets("/api/v1/repositories/2"), 1);
    assert_eq!(h.upstream_gets("/api/v1/repositories/10"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyze_invalidates_exactly_its_repository_on_redis() {
    let redis = RedisServer::start();
    an_analyze_invalidates_that_repository_and_the_aggregates(StoreKind::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyze_invalidates_exactly_its_repository_in_memory() {
    an_analyze_invalidates_that_repository_and_the_aggregates(StoreKind::Memory).await;
}

async fn a_fill_that_straddles_an_analyze_is_not_stored(store: StoreKind) {
    let h = Harness::demo(store, OriginConfig::zero_delay()).await;
    let path = "/api/v1/repositories/4";
    h.origin.hold(path);
    let url = h.url(path);
    let slow = tokio::spawn(async move { http::get(&url).await });
    assert!(
        h.origin.wait_until_waiting(1, Duration::from_secs(5)).await,
        "the fill reached the upstream"
    );
    // The repository is re-analysed while the old analysis is on its way back.
    let analyze = http::post(&h.url("/api/v1/repositories/4/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    h.origin.release(path);
    let old = slow.await.unwrap();
    assert_eq!(old.json()["analysis_version"], 1);
    assert!(
        old.cache_status().contains("purged-during-fill"),
        "{}",
        old.cache_status()
    );

    let next = h.get(path).await;
    assert!(
        !next.is_hit(),
        "the old analysis was written back: {}",
        next.cache_status()
    );
    assert_eq!(next.json()["analysis_version"], 2);
    assert!(h.get(path).await.is_hit());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resurrection_on_redis() {
    let redis = RedisServer::start();
    a_fill_that_straddles_an_analyze_is_not_stored(StoreKind::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resurrection_in_memory() {
    a_fill_that_straddles_an_analyze_is_not_stored(StoreKind::Memory).await;
}

/// A `RedisStore` on `redis` under `prefix`, once it is connected (at most 2 s).
async fn connected_store(redis: &RedisServer, prefix: &str) -> RedisStore {
    let store = RedisStore::start(&larder::config::RedisConfig {
        url: redis.url(),
        prefix: prefix.into(),
        timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..100 {
        if larder::store::Storage::health(&store).up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_meets_the_storage_contract() {
    let redis = RedisServer::start();
    let store = connected_store(&redis, "contract:").await;
    contract::stores_and_finds(&store).await;
    contract::tag_purge_is_exact(&store).await;
    contract::a_fill_that_straddles_a_purge_is_not_stored(&store).await;
    contract::soft_purge_leaves_a_stale_entry(&store).await;
    contract::prefix_purge_reaches_longer_keys_only(&store).await;
    // A purge is one write per tag, whatever the number of entries: no scan, no KEYS.
    assert!(redis.keys("contract:tag:*").len() > 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_hit_is_one_round_trip_with_or_without_explicit_tags() {
    use larder::store::key::tag_id;
    use larder::store::{ObjectKey, Storage};

    let redis = RedisServer::start();
    let store = connected_store(&redis, "trips:").await;
    let entry = |tags| contract::entry(bytes::Bytes::from_static(b"{}"), tags);
    // A route whose entries carry only their implicit tags (key and prefixes), and one whose
    // entries also carry a tag of the policy's.
    let plain = ObjectKey::derive("plain", &["repo", "1"], &[]);
    let tagged = ObjectKey::derive("tagged", &["repo", "1"], &[]);
    let mut tagged_tags = tagged.implicit_tags.clone();
    tagged_tags.push(tag_id("repo:1"));
    store
        .store(&plain, entry(plain.implicit_tags.clone()))
        .await
        .unwrap();
    store.store(&tagged, entry(tagged_tags)).await.unwrap();
    // The first lookup of each route learns which kind it is (and the second of the tagged
    // one loads the script into Redis).
    assert!(store.lookup(&plain).await.unwrap().is_some());
    assert!(store.lookup(&tagged).await.unwrap().is_some());
    assert!(store.lookup(&tagged).await.unwrap().is_some());

    let (mget, evalsha, get) = (
        redis.calls("mget"),
        redis.calls("evalsha"),
        redis.calls("get"),
    );
    for _ in 0..10 {
        assert!(store.lookup(&plain).await.unwrap().is_some());
    }
    assert_eq!(redis.calls("mget") - mget, 10, "one MGET per plain hit");
    assert_eq!(redis.calls("evalsha") - evalsha, 0);
    assert_eq!(redis.calls("get") - get, 0);

    let (mget, evalsha) = (redis.calls("mget"), redis.calls("evalsha"));
    for _ in 0..10 {
        assert!(store.lookup(&tagged).await.unwrap().is_some());
    }
    assert_eq!(
        redis.calls("evalsha") - evalsha,
        10,
        "one script call per tagged hit"
    );
    // The script's own MGET of the tokens, and nothing else.
    assert_eq!(redis.calls("mget") - mget, 10);

    // Both still see their purges: the key of the plain entry, the policy's tag of the other.
    store.purge(&[plain.implicit_tags[0]], false).await.unwrap();
    assert!(store.lookup(&plain).await.unwrap().is_none());
    store.purge(&[tag_id("repo:1")], false).await.unwrap();
    assert!(store.lookup(&tagged).await.unwrap().is_none());
}

/// A team's own policy for the tech-stack view adds its purge to the shipped policy's analyze
/// route (`also_invalidate`): an analyze purges what both policies name, the tech-stack view only
/// when the analyze asks for `feature_type=tech_stack`, and lookups keep one policy per route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_route_purges_what_each_of_its_policies_names() {
    let analyze = "path = \"/api/v1/repositories/{id}/actions/analyze\"\nmethods = [\"POST\"]\nplugin = \"analysis-policy\"\n";
    let tech_stack =
        "path = \"/api/v1/repositories/{id}/tech-stack\"\nplugin = \"analysis-policy\"";
    let demo = larder_tests::gateway::demo_config();
    assert!(demo.contains(analyze) && demo.contains(tech_stack));
    let config = demo
        .replace(
            analyze,
            &format!("{analyze}also_invalidate = [\"tech-stack-purge\"]\n"),
        )
        .replace(
            tech_stack,
            &tech_stack.replace("analysis-policy", "tech-stack-purge"),
        );
    let h = Harness::with_routes(
        &config,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        |dir| {
            larder_tests::gateway::install_example_plugins(dir);
            larder_tests::plugins::install("tech-stack-purge", dir, "tech-stack-purge");
        },
    )
    .await;
    let paths = [
        "/api/v1/repositories/1",
        "/api/v1/repositories/1/tech-stack",
        "/api/v1/repositories/2/tech-stack",
    ];
    for path in paths {
        h.get(path).await;
        assert!(h.get(path).await.is_hit(), "{path}");
    }

    // An analyze that is not about the tech stack: the shipped policy's purges only.
    let r = http::post(&h.url("/api/v1/repositories/1/actions/analyze")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.cache_status().contains("purged repo:1, all-repos\""),
        "{}",
        r.cache_status()
    );
    let hits: Vec<bool> = hits_now(&h, &paths).await;
    assert_eq!(hits, [false, true, true]);

    // One about the tech stack: the union, the team's tag included.
    let r =
        http::post(&h.url("/api/v1/repositories/1/actions/analyze?feature_type=tech_stack")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.cache_status()
            .contains("purged repo:1, all-repos, tech-stack:1\""),
        "{}",
        r.cache_status()
    );
    let hits: Vec<bool> = hits_now(&h, &paths).await;
    assert_eq!(hits, [false, false, true]);
    assert_eq!(h.upstream_gets("/api/v1/repositories/1/tech-stack"), 2);

    // One of the policies fails (traps): what it would purge stays, the other's purges happen,
    // and the write's status says what failed.
    for path in paths {
        h.get(path).await;
    }
    let r =
        http::post(&h.url("/api/v1/repositories/1/actions/analyze?feature_type=tech_stack&fail=1"))
            .await;
    assert_eq!(r.status, 200);
    assert!(
        r.cache_status().contains("detail=\"plugin-trap\""),
        "{}",
        r.cache_status()
    );
    let hits: Vec<bool> = hits_now(&h, &paths).await;
    assert_eq!(hits, [false, true, true]);
    h.stop().await;
}

/// Whether each of `paths` is a hit now (each read once, in order).
async fn hits_now(h: &Harness, paths: &[&str]) -> Vec<bool> {
    let mut hits = Vec::with_capacity(paths.len());
    for path in paths {
        hits.push(h.get(path).await.is_hit());
    }
    hits
}

/// A store is one round trip when the instance knows its tags' tokens, and a wrong guess (another
/// instance purged the tag, or the token was evicted) never writes an entry that a purge should
/// have kept out, or brings back one it invalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_guesses_its_tokens_wrong_writes_nothing_wrong() {
    use larder::store::key::tag_id;
    use larder::store::tags::now_us;
    use larder::store::{ObjectKey, Standing, Storage, StoreOutcome};

    let redis = RedisServer::start();
    let a = connected_store(&redis, "guess:").await;
    let b = connected_store(&redis, "guess:").await;
    let key = |n: &str| ObjectKey::derive("r", &["repo", "7", n], &[]);
    let entry = |k: &ObjectKey, body: &'static str, started: u64| {
        let mut tags = k.implicit_tags.clone();
        tags.push(tag_id("repo:7"));
        let mut e = contract::entry(bytes::Bytes::from_static(body.as_bytes()), tags);
        e.meta.fill_started_us = started;
        e
    };
    async fn found(s: &RedisStore, k: &ObjectKey) -> Option<(bytes::Bytes, Standing)> {
        s.lookup(k)
            .await
            .unwrap()
            .map(|f| (f.entry.body, f.standing))
    }

    // A learns the tokens of the tag and the prefixes; its next store is one script call.
    let first = key("first");
    let stored = a.store(&first, entry(&first, "1", now_us())).await;
    assert_eq!(stored.unwrap(), StoreOutcome::Stored);
    let (evalsha, set) = (redis.calls("evalsha"), redis.calls("set"));
    let known = key("known");
    a.lookup(&known).await.unwrap();
    let stored = a.store(&known, entry(&known, "2", now_us())).await;
    assert_eq!(stored.unwrap(), StoreOutcome::Stored);
    assert_eq!(redis.calls("evalsha") - evalsha, 1, "one round trip");
    // Each of its four tags' tokens (the key, two prefixes, `repo:7`) and the entry: all set
    // from inside the script.
    assert_eq!(redis.calls("set") - set, 4 + 1);
    assert_eq!(found(&a, &known).await.unwrap().1, Standing::Current);

    // B purges the tag (hard, then soft) while fills of A are in flight: A still guesses the
    // old token, and neither fill is stored, not even as stale.
    for soft in [false, true] {
        let started = now_us();
        b.purge(&[tag_id("repo:7")], soft).await.unwrap();
        let late = key(if soft { "late-soft" } else { "late-hard" });
        let stored = a.store(&late, entry(&late, "old", started)).await;
        assert_eq!(
            stored.unwrap(),
            StoreOutcome::PurgedDuringFill,
            "soft {soft}"
        );
        assert!(found(&a, &late).await.is_none(), "soft {soft}");
    }
    // A fill that started after the purges is stored with the new token, and holds.
    let after = key("after");
    let stored = a.store(&after, entry(&after, "new", now_us())).await;
    assert_eq!(stored.unwrap(), StoreOutcome::Stored);
    assert_eq!(found(&b, &after).await.unwrap().1, Standing::Current);

    // The tag's token is evicted: A's store creates a fresh one rather than writing back the
    // token it remembers, so the entries that recorded the old one stay invalid.
    assert!(!redis.keys("guess:tag:*").is_empty());
    let _: () = ::redis::cmd("DEL")
        .arg(format!("guess:tag:{}", tag_id("repo:7")))
        .query(&mut redis.conn())
        .unwrap();
    let again = key("again");
    let stored = a.store(&again, entry(&again, "3", now_us())).await;
    assert_eq!(stored.unwrap(), StoreOutcome::Stored);
    assert_eq!(found(&b, &again).await.unwrap().1, Standing::Current);
    assert!(
        found(&b, &after).await.is_none(),
        "brought back by a remembered token"
    );
    assert!(found(&b, &known).await.is_none());

    // A token A learns from its miss's lookup (on a route whose entries carry only their
    // implicit tags, looked up with one MGET) may itself be newer than the fill: A does not
    // write its guess, the two steps refuse the fill, and no script runs.
    let raced = ObjectKey::derive("plain", &["repo", "8"], &[]);
    let started = now_us();
    b.purge(&[raced.implicit_tags[0]], false).await.unwrap();
    assert!(a.lookup(&raced).await.unwrap().is_none());
    let evalsha = redis.calls("evalsha");
    let mut old = contract::entry(
        bytes::Bytes::from_static(b"old"),
        raced.implicit_tags.clone(),
    );
    old.meta.fill_started_us = started;
    let stored = a.store(&raced, old).await;
    assert_eq!(stored.unwrap(), StoreOutcome::PurgedDuringFill);
    assert_eq!(redis.calls("evalsha"), evalsha);

    // A token this version cannot read (an older version's): the fill is refused, the token is
    // replaced as by a hard purge now, and a later fill is stored.
    let tag_key = format!("guess:tag:{}", tag_id("repo:7"));
    let _: () = ::redis::cmd("SET")
        .arg(&tag_key)
        .arg("v0-token")
        .query(&mut redis.conn())
        .unwrap();
    let older = key("older");
    let started = now_us();
    let stored = a.store(&older, entry(&older, "1", started)).await;
    assert_eq!(stored.unwrap(), StoreOutcome::PurgedDuringFill);
    let replaced: String = ::redis::cmd("GET")
        .arg(&tag_key)
        .query(&mut redis.conn())
        .unwrap();
    assert!(
        larder::store::tags::Token::decode(replaced.as_bytes())
            .is_some_and(|t| t.hard_us >= started),
        "{replaced}"
    );
    let stored = a.store(&older, entry(&older, "2", now_us())).await;
    assert_eq!(stored.unwrap(), StoreOutcome::Stored);
    assert_eq!(found(&b, &older).await.unwrap().1, Standing::Current);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_is_a_miss_and_is_deleted() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let path = "/api/v1/repositories/5";
    h.get(path).await;
    let keys = redis.keys("larder:obj:repository:*");
    assert_eq!(keys.len(), 1);
    let mut conn = redis.conn();
    let _: () = ::redis::cmd("SET")
        .arg(&keys[0])
        .arg("LRD1 not really an entry")
        .query(&mut conn)
        .unwrap();
    let r = h.get(path).await;
    assert_eq!(r.status, 200);
    assert!(!r.is_hit());
    assert_eq!(r.json()["id"], 5);
    assert_eq!(h.upstream_gets(path), 2);
    assert!(
        h.get(path).await.is_hit(),
        "re-stored after the corrupt value"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyze_through_one_gateway_invalidates_for_another_sharing_redis() {
    let redis = RedisServer::start();
    let a = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let b = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let path = "/api/v1/repositories/6";
    a.get(path).await;
    assert!(b.get(path).await.is_hit(), "B reads what A stored");

    let analyze = http::post(&a.url("/api/v1/repositories/6/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    let after = b.get(path).await;
    assert!(
        !after.is_hit(),
        "B must not serve what A's analyze invalidated"
    );
    assert_eq!(b.upstream_gets(path), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_purge_is_exact_and_needs_the_token() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let paths = [
        "/api/v1/repositories/1",
        "/api/v1/repositories/2",
        "/api/v1/repositories/10",
    ];
    for p in paths {
        h.get(p).await;
    }
    let body = serde_json::json!({ "tags": ["repo:1"] });

    let anonymous = http::send("POST", &h.admin("/purge"), &[], &body.to_string()).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").is_some());
    let wrong = http::send(
        "POST",
        &h.admin("/purge"),
        &[("authorization", "Bearer nope")],
        &body.to_string(),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(
        h.get(paths[0]).await.is_hit(),
        "a refused purge purges nothing"
    );

    // Three more entries of repository 1 (other views), one of repository 2.
    for p in [
        "/api/v1/repositories/1/ai-features",
        "/api/v1/repositories/1/tech-stack",
        "/api/v1/repositories/1?fields=name",
        "/api/v1/repositories/2/tech-stack",
    ] {
        h.get(p).await;
    }
    let purged = h.admin_post("/purge", &body).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.json()["purged"]["tags"], 1);
    assert_eq!(purged.json()["entries"], 4, "{}", purged.text());
    assert!(!h.get(paths[0]).await.is_hit());
    assert!(h.get(paths[1]).await.is_hit());
    assert!(h.get(paths[2]).await.is_hit());

    // By key prefix within a route: every view of repository 2 on that route.
    let by_prefix =
        serde_json::json!({ "prefixes": [{ "route": "repository", "parts": ["repo", "2"] }] });
    assert_eq!(h.admin_post("/purge", &by_prefix).await.status, 200);
    assert!(!h.get(paths[1]).await.is_hit());
    assert!(h.get(paths[2]).await.is_hit());

    let bad = h
        .admin_post(
            "/purge",
            &serde_json::json!({ "keys": [{ "route": "nope", "parts": ["x"] }] }),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("no route named"), "{}", bad.text());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_purge_refuses_and_says_how_to_set_one() {
    let h = Harness::demo_with_env(StoreKind::Memory, OriginConfig::zero_delay(), |env| {
        env.admin_token = None
    })
    .await;
    let r = h
        .admin_post("/purge", &serde_json::json!({ "tags": ["repo:1"] }))
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("LARDER_ADMIN_TOKEN"), "{}", r.text());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_fetches_through_the_cache() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let paths: Vec<String> = (1..=8)
        .map(|i| format!("/api/v1/repositories/{i}"))
        .collect();
    let r = h
        .admin_post(
            "/warm",
            &serde_json::json!({ "paths": paths, "concurrency": 3 }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 8);
    assert!(results.iter().all(|x| x["status"] == 200));
    for p in &paths {
        assert!(h.get(p).await.is_hit(), "{p} was warmed");
        assert_eq!(h.upstream_gets(p), 1);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_surrogate_keys_tag_entries_for_the_standard_policy() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let tagged = "/api/v1/echo?cache_control=max-age%3D60&surrogate_key=team-a%20docs&body=1";
    let other = "/api/v1/echo?cache_control=max-age%3D60&surrogate_key=team-b&body=2";
    for p in [tagged, other] {
        h.get(p).await;
        assert!(h.get(p).await.is_hit());
    }
    let purge = h
        .admin_post("/purge", &serde_json::json!({ "tags": ["docs"] }))
        .await;
    assert_eq!(purge.status, 200);
    assert!(!h.get(tagged).await.is_hit());
    assert!(h.get(other).await.is_hit());
    h.stop().await;
}

// One resource, one identity: the backend reads `/repositories/01` as repository 1, so every
// spelling of a repository shares its entries, its tag and its invalidation.

const AI_FEATURES: &str = "/api/v1/repositories/1/ai-features";

/// A demo gateway on a fresh Redis; the server is returned to outlive the test's requests.
async fn demo_on_redis() -> (RedisServer, Harness) {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    (redis, h)
}

fn version(reply: &http::Reply) -> serde_json::Value {
    reply.json()["analysis_version"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_repository_id_shares_one_entry() {
    let (_redis, h) = demo_on_redis().await;
    let first = h.get("/api/v1/repositories/01/ai-features").await;
    assert_eq!(first.status, 200);
    assert!(!first.is_hit());

    for spelling in ["1", "001"] {
        let r = h
            .get(&format!("/api/v1/repositories/{spelling}/ai-features"))
            .await;
        assert!(
            r.is_hit(),
            "{spelling} is repository 1: {}",
            r.cache_status()
        );
        assert_eq!(r.json()["repository_id"], 1);
    }
    assert_eq!(
        h.origin.total(),
        1,
        "one upstream request for three spellings"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyze_through_one_spelling_invalidates_every_spelling() {
    let (_redis, h) = demo_on_redis().await;
    let views = [
        AI_FEATURES,
        "/api/v1/repositories/001/tech-stack",
        "/api/v1/repositories/1",
    ];
    for p in views {
        h.get(p).await;
        assert!(h.get(p).await.is_hit(), "{p} should be cached");
    }
    let before = version(&h.get(AI_FEATURES).await);

    let analyze = http::post(&h.url("/api/v1/repositories/01/actions/analyze")).await;
    assert_eq!(analyze.status, 200, "{}", analyze.text());

    for p in [
        AI_FEATURES,
        "/api/v1/repositories/1/tech-stack",
        "/api/v1/repositories/0001",
    ] {
        let r = h.get(p).await;
        assert!(!r.is_hit(), "{p} must be invalidated: {}", r.cache_status());
        assert_ne!(version(&r), before, "{p} serves the new analysis");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_purge_of_the_canonical_tag_reaches_every_spelling() {
    let (_redis, h) = demo_on_redis().await;
    for p in [
        "/api/v1/repositories/01",
        "/api/v1/repositories/01/ai-features",
    ] {
        h.get(p).await;
        assert!(h.get(p).await.is_hit(), "{p} should be cached");
    }
    let purged = h
        .admin_post("/purge", &serde_json::json!({ "tags": ["repo:1"] }))
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.json()["entries"], 2, "{}", purged.text());
    for p in [
        "/api/v1/repositories/01",
        "/api/v1/repositories/1/ai-features",
    ] {
        assert!(!h.get(p).await.is_hit(), "{p} was purged");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_repeated_slashes_and_escapes_name_the_same_entry() {
    let (_redis, h) = demo_on_redis().await;
    let odd = h.get("/api/v1/repositories//1/./ai-features").await;
    assert_eq!(odd.status, 200, "{}", odd.text());
    assert!(!odd.is_hit());
    // The upstream was sent the normal form: what the cache keyed is what it answered.
    assert_eq!(h.upstream_gets(AI_FEATURES), 1);

    for spelling in [
        AI_FEATURES,
        "/api/v1/repositories/%31/ai-features",
        "/api/v1/repositories/2/../1/ai-features",
        "/api/v1/repositories/1/%2e/ai-features",
    ] {
        let r = h.get(spelling).await;
        assert!(r.is_hit(), "{spelling}: {}", r.cache_status());
    }
    assert_eq!(h.origin.total(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_the_backend_refuses_pass_uncached() {
    let (_redis, h) = demo_on_redis().await;
    for _ in 0..2 {
        let r = h.get("/api/v1/repositories/abc/ai-features").await;
        assert_eq!(r.status, 400, "the backend's answer: {}", r.text());
        assert!(
            r.cache_status().contains("fwd=bypass") && r.cache_status().contains("bad-param"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(
        h.upstream_gets("/api/v1/repositories/abc/ai-features"),
        2,
        "never cached"
    );

    // `+1` is repository 1 to some parsers, but this backend refuses it: the cache must not
    // answer it with repository 1's entry.
    h.get(AI_FEATURES).await;
    let plus = h.get("/api/v1/repositories/+1/ai-features").await;
    assert!(!plus.is_hit(), "{}", plus.cache_status());
    assert_eq!(plus.status, 400, "{}", plus.text());
    assert!(
        plus.cache_status().contains("bad-param"),
        "{}",
        plus.cache_status()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_climb_above_the_root_or_mangle_escapes_are_refused() {
    let (_redis, h) = demo_on_redis().await;
    for (path, detail) in [
        ("/../../etc/passwd", "path-above-root"),
        (
            "/api/v1/repositories/1/../../../../../etc/passwd",
            "path-above-root",
        ),
        ("/api/%2e%2e/%2E%2E/%2e%2e/etc/passwd", "path-above-root"),
        ("/api/v1/repositories/%zz/ai-features", "path-bad-escape"),
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["source"], "larder", "{path}");
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {}",
            r.text()
        );
        assert!(
            r.cache_status().contains("fwd=bypass")
                && r.cache_status().contains(&format!("detail=\"{detail}\"")),
            "{path}: {}",
            r.cache_status()
        );
    }
    assert_eq!(h.origin.total(), 0, "nothing was forwarded");
    h.stop().await;
}
