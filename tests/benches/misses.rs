//! Misses against the slow endpoint: what the gateway adds to one miss, and how soon a herd of
//! concurrent requests for one cold key is answered.
//!
//! `cargo bench --bench figures -- misses` (bounded: about 30 s, most of it the origin's
//! 1.2 s delay). The demo configuration in front of the stand-in backend with its realistic
//! 1,200 ms AI-features endpoint, Redis behind a memory tier, both on loopback.
//!
//! - **Miss overhead**: for each of 7 repositories, the endpoint is requested from the origin
//!   directly and then, cold, through the gateway; the figure is the median of the differences.
//! - **Herd**: 50 clients, each on its own already-open connection, ask for one cold key at
//!   once; the figure is the time from the first request sent to the last answer received, and
//!   the origin must have been asked once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;
use tokio::sync::Barrier;

const HERD: usize = 50;
const ROUNDS: u64 = 7;

fn ai(id: u64) -> String {
    format!("/api/v1/repositories/{id}/ai-features")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Opens `n` keep-alive connections to the gateway (the test client pools them), so the herd
/// measures the gateway rather than 50 TCP handshakes.
async fn open_connections(h: &Harness, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = h.url("/api/v1/health");
            tokio::spawn(async move { http::get(&url).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Sends `HERD` requests for `path` together; answers (first sent -> last answered, all 200).
async fn herd(h: &Harness, path: &str) -> (Duration, bool) {
    let start = Arc::new(Barrier::new(HERD));
    let tasks: Vec<_> = (0..HERD)
        .map(|_| {
            let url = h.url(path);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let sent = Instant::now();
                let reply = http::get(&url).await;
                (sent, Instant::now(), reply.status == 200)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(HERD);
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let first_sent = results.iter().map(|r| r.0).min().unwrap();
    let last_answered = results.iter().map(|r| r.1).max().unwrap();
    (
        last_answered - first_sent,
        results.iter().all(|(_, _, ok)| *ok),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn run() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Tiered(redis.url()), OriginConfig::fast()).await;
    let origin = h.origin.url();

    let mut overheads = Vec::new();
    let mut direct = Vec::new();
    for id in 1..=ROUNDS {
        let t = Instant::now();
        let reply = http::get(&format!("{origin}{}", ai(id))).await;
        assert_eq!(reply.status, 200);
        let to_origin = t.elapsed();
        let t = Instant::now();
        let reply = h.get(&ai(id)).await;
        let through = t.elapsed();
        assert!(reply.cache_status().contains("fwd=miss"), "{reply:?}");
        direct.push(to_origin);
        overheads.push(through.saturating_sub(to_origin));
    }
    println!(
        "miss: origin directly {:.1} ms (median of {ROUNDS}), the gateway adds {:.2} ms (median), {:.2} ms at most",
        median(direct).as_secs_f64() * 1e3,
        median(overheads.clone()).as_secs_f64() * 1e3,
        overheads.iter().max().unwrap().as_secs_f64() * 1e3,
    );

    open_connections(&h, HERD).await;
    let mut spans = Vec::new();
    for id in 20..20 + ROUNDS {
        let path = ai(id);
        let (span, all_ok) = herd(&h, &path).await;
        assert!(all_ok, "every request of the herd is answered 200");
        assert_eq!(h.upstream_gets(&path), 1, "one upstream request per herd");
        spans.push(span);
    }
    println!(
        "herd: {HERD} concurrent requests for one cold key answered {:.1} ms after the first was sent (median of {ROUNDS}; {:.1} ms at most); 1 upstream request each",
        median(spans.clone()).as_secs_f64() * 1e3,
        spans.iter().max().unwrap().as_secs_f64() * 1e3,
    );
    h.stop().await;
}
