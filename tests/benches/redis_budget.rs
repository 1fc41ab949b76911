//! The seed deployment's Redis budget: the cache of a typical deployment, 10,000 analysis
//! entries (the repository and ai-features documents of 5,000 repositories from the stand-in
//! backend), must fit in 100 MB of Redis `used_memory`.
//!
//! `cargo bench --bench figures -- redis_budget` (about ten seconds). Fills the cache
//! through the gateway (the demo config, `analysis-policy`) in front of a `redis-server` the
//! bench starts, then reads Redis's own figures: `used_memory` before and after, the number of
//! keys, and the bytes of the stored values against the bodies' bytes (the compression ratio).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const REPOS: u32 = 5_000;
const WORKERS: u32 = 32;
const BUDGET: u64 = 100 * 1000 * 1000;

fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn run() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    let before = used_memory(&mut conn);
    let origin = OriginConfig {
        repositories: REPOS,
        ..OriginConfig::zero_delay()
    };
    let h = Arc::new(Harness::demo(StoreKind::Redis(redis.url()), origin).await);

    let body_bytes = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (h, body_bytes, stored) = (h.clone(), body_bytes.clone(), stored.clone());
            tokio::spawn(async move {
                for id in (1 + w..=REPOS).step_by(WORKERS as usize) {
                    for view in ["", "/ai-features"] {
                        let r =
                            http::get(&h.url(&format!("/api/v1/repositories/{id}{view}"))).await;
                        assert_eq!(r.status, 200);
                        body_bytes.fetch_add(r.body.len() as u64, Ordering::Relaxed);
                        if r.cache_status().contains("stored") {
                            stored.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let fill = t.elapsed();
    let after = used_memory(&mut conn);

    let keys: Vec<String> = redis.keys("larder:obj:*");
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("STRLEN").arg(k);
    }
    let lengths: Vec<u64> = pipe.query(&mut conn).unwrap();
    let value_bytes: u64 = lengths.iter().sum();
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();

    let entries = stored.load(Ordering::Relaxed);
    let bodies = body_bytes.load(Ordering::Relaxed);
    let used = after.saturating_sub(before);
    println!(
        "{entries} entries stored in {:.1} s ({} entry values, {dbsize} Redis keys in all)",
        fill.as_secs_f64(),
        keys.len()
    );
    println!(
        "bodies {:.1} MB -> stored values {:.1} MB (compression ratio {:.1}x, headers and metadata included)",
        bodies as f64 / 1e6,
        value_bytes as f64 / 1e6,
        bodies as f64 / value_bytes as f64
    );
    println!(
        "Redis used_memory: {:.1} MB before, {:.1} MB after: {:.1} MB for the cache (budget {} MB)",
        before as f64 / 1e6,
        after as f64 / 1e6,
        used as f64 / 1e6,
        BUDGET / 1_000_000
    );
    assert_eq!(entries, u64::from(REPOS) * 2);
    assert!(used < BUDGET, "the cache needs {used} bytes");
    if let Ok(h) = Arc::try_unwrap(h) {
        h.stop().await;
    }
}
