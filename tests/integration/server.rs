//! The listeners: the proxy's connections are spread over worker threads (`server.workers`), which
//! share one cache and keep one Redis connection each; stopping lets a request in flight finish
//! and accepts nothing new; both listeners hold clients to the same timeouts.

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

/// Redis's command connections (not the subscriptions, `flags=P`), without `asking` (one
/// connection for all the test's questions: a connection per question could still be listed
/// after it closed).
fn redis_clients(asking: &mut ::redis::Connection) -> usize {
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query(asking)
        .expect("CLIENT LIST");
    list.lines().filter(|l| !l.contains("flags=P")).count() - 1
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

/// The demo configuration with `keys` added to its `[server]` section.
fn demo_with_server(keys: &str) -> String {
    demo_with_workers(2).replacen("[server]\n", &format!("[server]\n{keys}\n"), 1)
}

/// The proxy listener's connection counts in `/stats`.
async fn connection_stats(h: &Harness) -> serde_json::Value {
    http::get(&h.admin("/stats")).await.json()["connections"].clone()
}

/// Reads from `tcp` until the gateway closes it (end of stream or reset), or `deadline`;
/// returns what it read, or `None` if it was still open at `deadline`.
async fn read_until_closed(
    tcp: &mut tokio::net::TcpStream,
    deadline: tokio::time::Instant,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Waits for the gateway to close each of `held` (opened at the instant beside it), at most
/// `timeout` and 5 s more; returns how many were still open then, and how many it closed
/// earlier than `timeout` after they were opened (less 50 ms of timer slack).
async fn closed_after(
    held: Vec<(tokio::time::Instant, tokio::net::TcpStream)>,
    timeout: Duration,
) -> (usize, usize) {
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(5);
    let closings = held.into_iter().map(|(opened, mut tcp)| async move {
        let closed = read_until_closed(&mut tcp, deadline).await;
        (closed.is_some(), opened.elapsed())
    });
    let closings = futures_util::future::join_all(closings).await;
    let open = closings.iter().filter(|(closed, _)| !closed).count();
    let early = closings
        .iter()
        .filter(|(_, after)| *after < timeout - Duration::from_millis(50))
        .count();
    (open, early)
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_holding_half_sent_requests_are_closed_after_the_header_timeout_while_others_are_served()
 {
    const HELD: usize = 300;
    let timeout = Duration::from_millis(1500);
    let h = Harness::with_routes(
        &demo_with_server(&format!("header_read_timeout_ms = {}", timeout.as_millis())),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    // Three ways to hold a connection without finishing a request: half a request line and
    // headers, nothing at all, half of the HTTP/2 preface.
    let openings: [&[u8]; 3] = [
        b"GET /api/v1/echo?body=held HTTP/1.1\r\nhost: localhost\r\nx-slow: ",
        b"",
        b"PRI * HTTP/2.0\r\n",
    ];
    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(h.gateway.addr)
            .await
            .expect("connect");
        tcp.write_all(openings[i % 3]).await.unwrap();
        held.push((tokio::time::Instant::now(), tcp));
    }

    // Meanwhile other clients are answered, each promptly.
    for i in 0..30 {
        let asked = std::time::Instant::now();
        let reply = http::get_with(
            &h.url(&format!("/api/v1/echo?body=normal-{i}")),
            &[("connection", "close")],
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
    }

    // Every held connection is closed by the gateway, none before its time.
    let (open, early) = closed_after(held, timeout).await;
    assert_eq!(open, 0, "{open} of {HELD} held connections still open");
    assert_eq!(early, 0, "connections closed before the header timeout");
    assert_eq!(h.get("/api/v1/echo?body=after").await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_connection_limit_a_new_connection_is_closed_and_counted() {
    let h = Harness::with_routes(
        &demo_with_server("max_connections = 4"),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(h.gateway.addr)
                .await
                .unwrap(),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while connection_stats(&h).await["open"] != 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(connection_stats(&h).await["open"], 4);

    // The fifth is accepted and closed at once (told 503 if its socket takes it in time).
    let mut fifth = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    let answer = read_until_closed(
        &mut fifth,
        tokio::time::Instant::now() + Duration::from_secs(2),
    )
    .await
    .expect("the connection over the limit is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
    let stats = connection_stats(&h).await;
    assert_eq!(
        (stats["refused"].as_u64(), stats["max"].as_u64()),
        (Some(1), Some(4)),
        "{stats}"
    );
    let metrics = http::get(&h.admin("/metrics")).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "larder_client_connections_refused_total 1"),
        "{metrics}"
    );

    // Once one closes, new clients are served again.
    held.pop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while connection_stats(&h).await["open"] != 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = http::get_with(
        &h.url("/api/v1/echo?body=again"),
        &[("connection", "close")],
    )
    .await;
    assert_eq!(reply.status, 200);
    drop(held);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    use http_body_util::{BodyExt, Empty};
    let idle = Duration::from_millis(800);
    let h = Harness::with_routes(
        &demo_with_server(&format!("idle_timeout_ms = {}", idle.as_millis())),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    let (mut send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = ::http::Request::get(h.url("/api/v1/echo?body=h2"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.expect("HTTP/2 request");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let idle_from = std::time::Instant::now();

    tokio::time::timeout(idle + Duration::from_secs(5), connection)
        .await
        .expect("the idle connection is closed")
        .unwrap()
        .ok();
    assert!(idle_from.elapsed() >= idle - Duration::from_millis(50));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_body_sent_too_slowly_is_answered_408() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::with_routes(
        &demo_with_server("body_read_timeout_ms = 300"),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    // The embeddings route reads POST bodies to key them (`cache_post`); this one never ends.
    let mut tcp = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    tcp.write_all(
        b"POST /api/v1/embeddings HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"text\": \"slo",
    )
    .await
    .unwrap();
    let sent = std::time::Instant::now();
    let answer = read_until_closed(
        &mut tcp,
        tokio::time::Instant::now() + Duration::from_secs(5),
    )
    .await
    .expect("the slow request is answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_read_timeout_ms"), "{answer}");
    assert!(sent.elapsed() >= Duration::from_millis(250));
    assert_eq!(h.origin_count("POST", "/api/v1/embeddings"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_body_that_breaks_its_framing_is_answered_400_and_sent_nowhere() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::with_routes(
        &demo_with_workers(2),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    // A chunked body whose second chunk size is not hexadecimal: the body cannot be read, so
    // it can be neither digested nor forwarded.
    let mut tcp = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    tcp.write_all(
        b"POST /api/v1/embeddings HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"tex\r\nzz\r\n",
    )
    .await
    .unwrap();
    let answer = read_until_closed(
        &mut tcp,
        tokio::time::Instant::now() + Duration::from_secs(5),
    )
    .await
    .expect("the broken request is answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("request-body"), "{answer}");
    assert!(
        answer.contains("reading the request body failed"),
        "{answer}"
    );
    assert_eq!(h.origin_count("POST", "/api/v1/embeddings"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_has_the_same_timeouts_and_a_connection_limit_of_its_own() {
    use tokio::io::AsyncWriteExt;
    const ADMIN_CONNECTIONS: usize = 64;
    const OPENED: usize = ADMIN_CONNECTIONS + 6;
    let timeout = Duration::from_millis(3000);
    let h = Harness::with_routes(
        &demo_with_server(&format!("header_read_timeout_ms = {}", timeout.as_millis())),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install_example_plugins,
    )
    .await;
    let admin = h.gateway.admin_addr;
    let mut held = Vec::with_capacity(OPENED);
    for _ in 0..OPENED {
        let mut tcp = tokio::net::TcpStream::connect(admin)
            .await
            .expect("connect");
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
            .await
            .ok();
        held.push((tokio::time::Instant::now(), tcp));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Those past the limit are closed at once. (The tests' shared HTTP client may keep an idle
    // connection or two of its own to this listener, which count too.)
    let mut refused = Vec::new();
    let mut admitted = Vec::new();
    for (i, (opened, mut tcp)) in held.into_iter().enumerate() {
        let soon = tokio::time::Instant::now() + Duration::from_millis(10);
        match read_until_closed(&mut tcp, soon).await {
            Some(answer) => {
                let answer = String::from_utf8_lossy(&answer).into_owned();
                assert!(
                    answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
                    "{answer}"
                );
                refused.push(i);
            }
            None => admitted.push((opened, tcp)),
        }
    }
    assert!(
        (OPENED - ADMIN_CONNECTIONS..=OPENED - ADMIN_CONNECTIONS + 4).contains(&refused.len())
            && refused.iter().all(|i| *i >= ADMIN_CONNECTIONS - 4),
        "refused: {refused:?}"
    );

    // The others are closed after the header timeout, none before it.
    let (open, early) = closed_after(admitted, timeout).await;
    assert_eq!(open, 0, "{open} held admin connections still open");
    assert_eq!(
        early, 0,
        "admin connections closed before the header timeout"
    );

    // And the admin API answers again.
    let reply = http::get(&h.admin("/health")).await;
    assert_eq!(reply.status, 200);
    h.stop().await;
}
