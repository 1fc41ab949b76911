//! Purging a tag that 100,000 entries carry: how long the purge takes and how long Redis was
//! blocked at most (its SLOWLOG, recording every command during the purge).
//!
//! `cargo bench --bench figures -- purge` (about half a minute on 2 cores, most of it
//! filling the store). The store is the real `RedisStore` against a `redis-server` the bench
//! starts on a free port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder::config::RedisConfig;
use larder::store::key::tag_id;
use larder::store::redis::RedisStore;
use larder::store::{EntryMeta, NewEntry, ObjectKey, Storage, now_ms, tags};
use larder_tests::redis_server::RedisServer;

const ENTRIES: usize = 100_000;
const CONCURRENCY: usize = 64;

fn entry(key: &ObjectKey) -> NewEntry {
    let mut tags = key.implicit_tags.clone();
    tags.push(tag_id("big"));
    NewEntry {
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
        body: Bytes::from_static(&[b'x'; 200]),
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
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn run() {
    let redis = RedisServer::start();
    let store = Arc::new(
        RedisStore::start(&RedisConfig {
            url: redis.url(),
            prefix: "larder:".into(),
            timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap(),
    );
    while !store.health().up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let t = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (w..ENTRIES).step_by(CONCURRENCY) {
                    let key = ObjectKey::derive("bench", &["item", &i.to_string()], &[]);
                    store.store(&key, entry(&key)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let filled = t.elapsed();
    let mut conn = redis.conn();
    let dbsize: u64 = ::redis::cmd("DBSIZE").query(&mut conn).unwrap();
    println!(
        "stored {ENTRIES} entries tagged `big` in {:.1} s ({:.0}/s); {dbsize} Redis keys",
        filled.as_secs_f64(),
        ENTRIES as f64 / filled.as_secs_f64()
    );

    let sample = ObjectKey::derive("bench", &["item", "12345"], &[]);
    assert!(store.lookup(&sample).await.unwrap().is_some());

    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    let _: () = ::redis::cmd("SLOWLOG")
        .arg("RESET")
        .query(&mut conn)
        .unwrap();
    let t = Instant::now();
    let affected = store.purge(&[tag_id("big")], false).await.unwrap();
    let purge = t.elapsed();
    assert_eq!(
        affected, ENTRIES as u64,
        "the purge counts the entries it invalidated"
    );
    // Entries: id, time, duration (µs), arguments, client address, client name.
    let entries: Vec<Vec<::redis::Value>> = ::redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(128)
        .query(&mut conn)
        .unwrap();
    let slowest = entries
        .iter()
        .filter_map(|e| {
            let micros: u64 = ::redis::from_redis_value_ref(e.get(2)?).ok()?;
            let args: Vec<String> = ::redis::from_redis_value_ref(e.get(3)?).ok()?;
            Some((0, 0, micros, args))
        })
        .filter(|(_, _, _, cmd)| {
            !cmd.first()
                .is_some_and(|c| c.eq_ignore_ascii_case("slowlog"))
        })
        .max_by_key(|e| e.2);
    println!(
        "purge of the tag ({affected} entries): {:.2} ms end to end; longest Redis command during it: {} µs ({})",
        purge.as_secs_f64() * 1000.0,
        slowest.as_ref().map(|e| e.2).unwrap_or(0),
        slowest
            .map(|e| e.3.iter().take(2).cloned().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );

    let t = Instant::now();
    let mut still = 0;
    for i in (0..ENTRIES).step_by(1000) {
        let key = ObjectKey::derive("bench", &["item", &i.to_string()], &[]);
        if store.lookup(&key).await.unwrap().is_some() {
            still += 1;
        }
    }
    println!(
        "after the purge: {still} of 100 sampled entries still served (checked in {:.1} ms)",
        t.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(still, 0);
}
