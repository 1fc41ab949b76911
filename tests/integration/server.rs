//! The proxy listener: connections are spread over worker threads (`server.workers`), which
//! share one cache and keep one Redis connection each; stopping lets a request in flight finish
//! and accepts nothing new.

use std::time::Duration;

use larder_tests::gateway::{Harness, StoreKind, install_example_plugins};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const WORKERS: usize = 3;

/// The demo configuration with `workers` proxy threads.
fn demo_with_workers(workers: usize) -> String {
    let demo = std::fs::read_to_string(larder_tests::plugins::workspace_root().join("larder.toml"))
        .expect("larder.toml");
    demo.replacen("[server]\n", &format!("[server]\nworkers = {workers}\n"), 1)
}

/// Redis's client connections, without `asking` (one connection for all the test's questions:
/// a connection per question could still be listed after it closed).
fn redis_clients(asking: &mut ::redis::Connection) -> usize {
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query(asking)
        .expect("CLIENT LIST");
    list.lines().count() - 1
}

#[tokio::test(flavor = "multi_thread")]
async fn every_worker_serves_hits_from_the_one_cache_over_a_connection_of_its_own() {
    let redis = RedisServer::start();
    let h = Harness::with_routes(
        &demo_with_workers(WORKERS),
        StoreKind::Redis(redis.url()),
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&body=shared";
    // A new connection per request: the listener hands them to the workers in turn.
    let mut statuses = Vec::new();
    for _ in 0..3 * WORKERS {
        let reply = http::get_with(&h.url(path), &[("connection", "close")]).await;
        assert_eq!(reply.status, 200);
        statuses.push(reply.is_hit());
    }
    assert_eq!(h.upstream_gets("/api/v1/echo"), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|hit| **hit).count(), 3 * WORKERS - 1);

    // The shared connection (`redis.connections = 1`) and one per worker, made at its first
    // lookup: not one per request.
    let expected = 1 + WORKERS;
    let mut asking = redis.conn();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while redis_clients(&mut asking) != expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(redis_clients(&mut asking), expected);
    for _ in 0..WORKERS {
        let reply = http::get_with(&h.url(path), &[("connection", "close")]).await;
        assert!(reply.is_hit(), "{}", reply.cache_status());
    }
    assert_eq!(redis_clients(&mut asking), expected);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_finishes_the_request_in_flight_and_accepts_no_more() {
    let h = Harness::with_routes(
        &demo_with_workers(2),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    let slow = h.url("/api/v1/echo?delay_ms=400&body=slow");
    let addr = h.gateway.addr;
    let in_flight = tokio::spawn(async move { http::get(&slow).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.origin_count("GET", "/api/v1/echo") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        h.origin_count("GET", "/api/v1/echo"),
        1,
        "the request is in flight"
    );

    let Harness {
        gateway, origin, ..
    } = h;
    gateway.stop().await;
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], "slow");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a stopped gateway accepts no connection"
    );
    origin.shutdown().await;
}
