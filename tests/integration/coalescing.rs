//! Concurrent misses for one key make one upstream request, and that fill does not depend on
//! the first client staying connected.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const AI: &str = "/api/v1/repositories/3/ai-features";

async fn concurrently(h: &Harness, path: &str, n: usize) -> Vec<http::Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = h.url(path);
            tokio::spawn(async move { http::get(&url).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cold_requests_make_one_upstream_request() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::fast()).await;
    let t = Instant::now();
    let replies = concurrently(&h, AI, 200).await;
    let took = t.elapsed();
    assert_eq!(h.upstream_gets(AI), 1);
    assert!(replies.iter().all(|r| r.status == 200));
    let bodies: HashSet<_> = replies.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), 1, "all 200 get the same body");
    let stored = replies
        .iter()
        .filter(|r| r.cache_status().ends_with("stored"))
        .count();
    assert_eq!(stored, 1, "one leader");
    assert!(
        replies.iter().all(|r| r.cache_status().ends_with("stored")
            || r.cache_status().ends_with("collapsed")
            || r.is_hit()),
        "{:?}",
        replies.iter().map(|r| r.cache_status()).collect::<Vec<_>>()
    );
    eprintln!("200 concurrent cold requests answered in {took:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_goes_on_when_the_first_client_leaves() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::fast()).await;
    let url = h.url(AI);
    let first = tokio::spawn(async move { http::get(&url).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.upstream_gets(AI) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let followers: Vec<_> = (0..5)
        .map(|_| {
            let url = h.url(AI);
            tokio::spawn(async move { http::get(&url).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort(); // the leader's client hangs up
    for f in followers {
        let r = f.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.cache_status().ends_with("collapsed") || r.is_hit(),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(h.upstream_gets(AI), 1);
    assert!(h.get(AI).await.is_hit(), "the abandoned fill was stored");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_answers_send_the_waiters_upstream_themselves() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=no-store&delay_ms=200&body=u";
    let replies = concurrently(&h, path, 5).await;
    assert!(replies.iter().all(|r| r.status == 200));
    let serials: HashSet<_> = replies
        .iter()
        .map(|r| r.header("x-origin-serial").unwrap().to_owned())
        .collect();
    assert_eq!(serials.len(), 5, "each got its own answer");
    assert_eq!(h.upstream_gets("/api/v1/echo"), 5);
    h.stop().await;
}
