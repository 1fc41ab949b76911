//! Larder on a Redis Cluster (3 masters started by the test): entries, tag tokens and purges
//! spread over all masters; a purge reaches every instance's memory tier through pub/sub; and a
//! failed master costs only the requests whose entry or tags live on it (they go to the
//! upstream), while entries kept entirely on the other masters still hit. Also the connection
//! settings of a single Redis: user and password, database number, prefix, several
//! connections.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_cluster::RedisCluster;
use larder_tests::redis_server::RedisServer;

const REPOS: u32 = 90;

fn repo(id: u32) -> String {
    format!("/api/v1/repositories/{id}")
}

/// For each cached repository: its id and the masters its entry and its tags' tokens live on.
fn dependencies(cluster: &RedisCluster) -> Vec<(u64, BTreeSet<usize>)> {
    let owners = cluster.slot_owners();
    let mut out = Vec::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let mut conn = node.conn();
        for key in node.keys("larder:obj:repository:*") {
            let value: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
            let entry = larder::store::Entry::decode(value.into()).expect("a readable entry");
            let body: serde_json::Value = serde_json::from_slice(&entry.body).unwrap();
            let mut nodes = BTreeSet::from([cluster.node_of(&owners, &key)]);
            for (tag, _) in &entry.tags {
                nodes.insert(cluster.node_of(&owners, &format!("larder:tag:{{{tag}}}")));
            }
            out.push((body["id"].as_u64().unwrap(), nodes));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_caches_invalidates_and_survives_a_failed_master() {
    let t0 = Instant::now();
    let mut cluster = RedisCluster::start(3);
    println!("cluster of 3 masters up in {:?}", t0.elapsed());
    let origin = OriginConfig {
        repositories: REPOS,
        // Long enough for concurrent requests to meet on one fill.
        ai_features_delay: Duration::from_millis(300),
        ..OriginConfig::zero_delay()
    };
    let h = Harness::demo(StoreKind::Redis(cluster.url()), origin.clone()).await;

    // Caching: every repository misses once, then hits; the origin saw each once.
    for id in 1..=REPOS {
        let r = h.get(&repo(id)).await;
        assert_eq!(r.status, 200);
        assert!(r.cache_status().contains("stored"), "{}", r.cache_status());
    }
    for id in 1..=REPOS {
        let r = h.get(&repo(id)).await;
        assert!(r.is_hit(), "{id}: {}", r.cache_status());
        assert_eq!(r.json()["id"], id);
        assert_eq!(h.upstream_gets(&repo(id)), 1);
    }
    // ... on all three masters, entries and tag tokens alike (tokens with their counters in one
    // slot: a hash tag).
    for node in &cluster.nodes {
        let entries = node.keys("larder:obj:*").len();
        let tokens = node.keys("larder:tag:{*}").len();
        println!(
            "master {}: {entries} entries, {tokens} tag tokens",
            node.port
        );
        assert!(
            entries > 5 && tokens > 5,
            "{entries} entries, {tokens} tokens"
        );
    }
    let deps = dependencies(&cluster);
    assert_eq!(deps.len(), REPOS as usize);

    // Tag invalidation: an analyze and an admin purge, each making exactly its repository miss.
    // B is given one seed only: it learns the other masters from the cluster, and follows
    // invalidations through any of them.
    let one_seed = format!("redis+cluster://127.0.0.1:{}", cluster.nodes[1].port);
    let b = Harness::demo(StoreKind::Tiered(one_seed), origin.clone()).await;
    b.get(&repo(8)).await;
    assert!(b.get(&repo(8)).await.is_hit(), "B reads what A stored");
    assert!(b.get(&repo(8)).await.is_hit(), "then from its memory tier");

    // One fill across the instances: concurrent cold requests over both make one upstream
    // request, through a fill lease on the cluster (each instance has an origin of its own
    // here: their counts add up).
    let ai = "/api/v1/repositories/2/ai-features";
    let herd: Vec<_> = (0..40)
        .map(|i| {
            let url = if i % 2 == 0 { h.url(ai) } else { b.url(ai) };
            tokio::spawn(async move { http::get(&url).await })
        })
        .collect();
    let mut fleet = 0;
    for r in herd {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.cache_status());
        fleet += usize::from(r.cache_status().contains("detail=\"fleet\""));
    }
    assert_eq!(h.upstream_gets(ai) + b.upstream_gets(ai), 1, "one fill");
    assert_eq!(fleet, 1, "the other instance answered from that fill");

    // Every subscription is dropped (a proxy or a failover would): B subscribes again, to its
    // seed or a master it learnt, and empties its tier, which may have missed purges.
    let emptied = b.memory_tier().await["emptied"].as_u64().unwrap();
    for node in &cluster.nodes {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut node.conn())
            .unwrap();
    }
    let t = Instant::now();
    loop {
        let tier = b.memory_tier().await;
        if tier["emptied"].as_u64().unwrap() > emptied && tier["hearing"] == true {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "B never subscribed again: {tier}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let analyze = http::post(&h.url("/api/v1/repositories/5/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    let analyze = http::post(&h.url("/api/v1/repositories/8/actions/analyze")).await;
    assert_eq!(analyze.status, 200);
    let purge = h
        .admin_post("/purge", &serde_json::json!({"tags": ["repo:7"]}))
        .await;
    assert_eq!(purge.status, 200, "{}", purge.text());
    // The analyze reached the other instance's memory tier through the cluster's pub/sub.
    let t = Instant::now();
    while b.get(&repo(8)).await.is_hit() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "B's memory tier kept serving a purged entry"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        b.upstream_gets(&repo(8)),
        1,
        "B went upstream after the analyze"
    );
    b.stop().await;
    for id in [5, 7] {
        let r = h.get(&repo(id)).await;
        assert!(!r.is_hit(), "{id} was purged: {}", r.cache_status());
        assert_eq!(h.upstream_gets(&repo(id)), 2);
    }
    assert!(
        h.get(&repo(6)).await.is_hit(),
        "repository 6 was not purged"
    );

    // A failed master: pick the one that leaves most repositories on each side.
    let deps = dependencies(&cluster);
    let victim = (0..cluster.nodes.len())
        .max_by_key(|&v| {
            let on = deps.iter().filter(|(_, n)| n.contains(&v)).count();
            on.min(deps.len() - on)
        })
        .unwrap();
    let kept: Vec<u32> = deps
        .iter()
        .filter(|(_, n)| !n.contains(&victim))
        .map(|(id, _)| *id as u32)
        .collect();
    let lost: Vec<u32> = deps
        .iter()
        .filter(|(_, n)| n.contains(&victim))
        .map(|(id, _)| *id as u32)
        .collect();
    println!(
        "killing master {}: {} repositories depend on it, {} do not",
        cluster.nodes[victim].port,
        lost.len(),
        kept.len()
    );
    assert!(!kept.is_empty() && !lost.is_empty());
    cluster.kill(victim);

    let killed_at = Instant::now();
    let mut first_pass_hits = 0;
    for round in 0..4 {
        if round == 2 {
            // By now the cluster has declared the master failed (node timeout 1 s): the
            // others still answer for their slots.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
        }
        for id in 1..=REPOS {
            let before = h.upstream_gets(&repo(id));
            let r = h.get(&repo(id)).await;
            assert_eq!(r.status, 200, "{id}: {}", r.cache_status());
            assert_eq!(r.json()["id"], id);
            if lost.contains(&id) {
                assert!(!r.is_hit(), "{id} depends on the dead master");
                assert_eq!(h.upstream_gets(&repo(id)), before + 1, "{id}");
            } else if round == 0 {
                first_pass_hits += usize::from(r.is_hit());
            } else {
                assert!(r.is_hit(), "round {round}, {id}: {}", r.cache_status());
            }
        }
    }
    println!(
        "after the kill: {first_pass_hits} of {} unaffected repositories hit in the first pass, all of them in the next three ({:?})",
        kept.len(),
        killed_at.elapsed()
    );
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["store"]["up"], false, "{health}");
    let detail = health["store"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&cluster.nodes[victim].port.to_string()),
        "{health}"
    );
    assert!(health["store"]["errors"].as_u64().unwrap() >= 1, "{health}");
    h.stop().await;
    println!("whole test: {:?}", t0.elapsed());
}

/// What an overflowing pending set owes (every entry dropped) reaches every master of a
/// cluster: a `SCAN` sees one node's keys, so each master is scanned on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_pending_set_drops_every_entry_on_every_master() {
    use larder::config::RedisConfig;
    use larder::store::contract::entry;
    use larder::store::key::tag_id;
    use larder::store::pending::PendingPurges;
    use larder::store::redis::RedisStore;
    use larder::store::{ObjectKey, Storage};

    let cluster = RedisCluster::start(3);
    let store = RedisStore::start_with(
        &RedisConfig {
            url: cluster.url(),
            timeout: Duration::from_millis(300),
            ..Default::default()
        },
        PendingPurges::open(None, 1),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.health().up {
        assert!(Instant::now() < deadline, "{:?}", store.health());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let keys: Vec<ObjectKey> = (0..24)
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
    let holding = |cluster: &RedisCluster| {
        cluster
            .nodes
            .iter()
            .filter(|n| !n.keys("larder:obj:*").is_empty())
            .count()
    };
    assert_eq!(holding(&cluster), 3, "24 entries spread over every master");

    // The whole cluster hangs (shorter than its node timeout, so no node is declared failed):
    // a purge of two tags cannot land, and one pending purge is the limit.
    for node in &cluster.nodes {
        node.pause();
    }
    let e = store
        .purge(&[tag_id("repo:0"), tag_id("repo:1")], false)
        .await
        .unwrap_err();
    for node in &cluster.nodes {
        node.resume();
    }
    assert!(e.is_pending(), "{e}");
    assert!(store.health().pending_overflow);

    let deadline = Instant::now() + Duration::from_secs(10);
    while store.pending().any() {
        assert!(Instant::now() < deadline, "never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for key in &keys {
        assert!(store.lookup(key).await.unwrap().is_none());
    }
    assert_eq!(holding(&cluster), 0, "no master kept an entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_database_prefix_and_connections_are_used() {
    use larder::config::RedisConfig;
    use larder::store::{Storage, contract};

    let redis = RedisServer::start_with(&["--requirepass", "admin-pw"]);
    let admin_url = format!("redis://:admin-pw@127.0.0.1:{}", redis.port);
    let mut admin = redis::Client::open(admin_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "larder",
            "on",
            ">larder-pw",
            "~app1:*",
            "&*",
            "+@all",
        ])
        .query(&mut admin)
        .unwrap();
    let store = larder::store::redis::RedisStore::start(&RedisConfig {
        url: format!("redis://larder:larder-pw@127.0.0.1:{}/3", redis.port),
        prefix: "app1:".into(),
        timeout: Duration::from_millis(500),
        connections: 3,
        ..RedisConfig::default()
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !store.health().up {
        assert!(Instant::now() < deadline, "{:?}", store.health());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    contract::stores_and_finds(&store).await;
    // Many lookups, so every one of the three connections carries some.
    let key = larder::store::ObjectKey::derive("r", &["repo", "1"], &[]);
    for _ in 0..30 {
        assert!(store.lookup(&key).await.unwrap().is_some());
    }
    contract::tag_purge_is_exact(&store).await;
    contract::soft_purge_leaves_a_stale_entry(&store).await;

    let mut db = |n: u8| {
        let _: () = redis::cmd("SELECT").arg(n).query(&mut admin).unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut admin).unwrap();
        keys
    };
    let in_3 = db(3);
    assert!(in_3.iter().any(|k| k.starts_with("app1:obj:")), "{in_3:?}");
    assert!(in_3.iter().any(|k| k.starts_with("app1:tag:")), "{in_3:?}");
    assert!(in_3.iter().all(|k| k.starts_with("app1:")), "{in_3:?}");
    assert_eq!(db(0), Vec::<String>::new(), "nothing in database 0");
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let ours = clients
        .lines()
        // Command connections: the fill news' subscription (`flags=P`) comes on top.
        .filter(|l| l.contains("user=larder") && !l.contains("flags=P"))
        .count();
    assert_eq!(ours, 3, "{clients}");

    // A wrong password is an error in /health, not a crash.
    let wrong = larder::store::redis::RedisStore::start(&RedisConfig {
        url: format!("redis://larder:nope@127.0.0.1:{}/3", redis.port),
        timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = wrong.health();
    assert!(!health.up, "{health:?}");
}
