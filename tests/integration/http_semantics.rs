//! RFC 9111 in the host, with the `standard` policy: the origin's `Vary` selects stored
//! variants, clients' validators get 304s, stale entries are revalidated with the stored
//! validators (a 304 from the origin freshens the entry without a body), and byte ranges are
//! served from stored responses. The origin's echo endpoint sets the headers each test asks
//! for and numbers its answers (`serial`), which tells a stored answer from a new one.

use std::time::Duration;

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http::{self, Reply};
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

const ECHO: &str = "/api/v1/echo";

fn serial(r: &Reply) -> u64 {
    r.json()["serial"]
        .as_u64()
        .expect("an echo body has a serial")
}

async fn get(h: &Harness, path: &str, headers: &[(&str, &str)]) -> Reply {
    http::get_with(&h.url(path), headers).await
}

/// Requests that wait for another request's fill take its response only when it is the
/// variant they select: a waiter whose `Accept` differs goes upstream for its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_a_collapsed_response_only_of_its_own_variant() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&vary=Accept&delay_ms=400&body=w";
    let request = |accept: &'static str| {
        let url = h.url(path);
        tokio::spawn(async move { http::get_with(&url, &[("accept", accept)]).await })
    };
    let leader = request("text/csv");
    // The others arrive while the leader's fill is under way: the origin has its request and
    // takes 400 ms to answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.upstream_gets(ECHO) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let same = request("text/csv");
    let other = request("application/json");
    let (leader, same, other) = (
        leader.await.unwrap(),
        same.await.unwrap(),
        other.await.unwrap(),
    );
    assert!(
        same.cache_status().ends_with("collapsed"),
        "{}",
        same.cache_status()
    );
    assert_eq!(serial(&same), serial(&leader));
    assert!(
        !other.cache_status().contains("collapsed"),
        "{}",
        other.cache_status()
    );
    assert_ne!(serial(&other), serial(&leader));
    assert_eq!(h.upstream_gets(ECHO), 2, "one fill per variant");
    // Both variants were stored.
    let json = get(&h, path, &[("accept", "application/json")]).await;
    assert!(json.is_hit(), "{}", json.cache_status());
    assert_eq!(serial(&json), serial(&other));
    h.stop().await;
}

/// A response that varies on `Accept-Language` and is in one language is also the answer for
/// a client whose first choice is that language: its variant misses, the language's entry hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_in_one_language_answers_clients_who_prefer_it() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path =
        "/api/v1/echo?cache_control=max-age%3D60&vary=Accept-Language&content_language=de&body=l";
    let first = get(&h, path, &[("accept-language", "en;q=0.5, de")]).await;
    assert!(!first.is_hit(), "{}", first.cache_status());
    let german = get(&h, path, &[("accept-language", "de, fr;q=0.5")]).await;
    assert!(german.is_hit(), "{}", german.cache_status());
    assert_eq!(serial(&german), serial(&first));
    let french = get(&h, path, &[("accept-language", "fr")]).await;
    assert!(!french.is_hit(), "{}", french.cache_status());
    assert_eq!(h.upstream_gets(ECHO), 2);
    h.stop().await;
}

async fn vary_selects_variants(store: StoreKind) {
    let h = Harness::demo(store, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&vary=Accept-Language&body=v";
    let en = get(&h, path, &[("accept-language", "en, de")]).await;
    let fr = get(&h, path, &[("accept-language", "fr")]).await;
    assert!(!en.is_hit() && !fr.is_hit(), "{}", fr.cache_status());
    assert_ne!(serial(&en), serial(&fr));

    // Each request is answered with its own variant; order and case of the ranges do not
    // matter.
    let en_again = get(&h, path, &[("accept-language", "DE,en")]).await;
    let fr_again = get(&h, path, &[("accept-language", "fr")]).await;
    assert!(en_again.is_hit(), "{}", en_again.cache_status());
    assert!(fr_again.is_hit(), "{}", fr_again.cache_status());
    assert_eq!(serial(&en_again), serial(&en));
    assert_eq!(serial(&fr_again), serial(&fr));
    // A request without the field is a variant of its own.
    let none = get(&h, path, &[]).await;
    assert!(!none.is_hit(), "{}", none.cache_status());
    assert_eq!(h.upstream_gets(ECHO), 3);

    // `Vary: *` is never served from the cache.
    let star = "/api/v1/echo?cache_control=max-age%3D60&vary=*&body=s";
    let a = get(&h, star, &[]).await;
    let b = get(&h, star, &[]).await;
    assert!(!b.is_hit(), "{}", b.cache_status());
    assert!(
        a.cache_status().contains("vary-star"),
        "{}",
        a.cache_status()
    );
    assert_ne!(serial(&a), serial(&b));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_selects_variants_in_redis() {
    let redis = RedisServer::start();
    vary_selects_variants(StoreKind::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_selects_variants_in_memory() {
    vary_selects_variants(StoreKind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_of_the_key_reaches_every_variant() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&vary=Accept&surrogate_key=doc&body=p";
    for accept in ["text/html", "application/json"] {
        get(&h, path, &[("accept", accept)]).await;
        assert!(get(&h, path, &[("accept", accept)]).await.is_hit());
    }
    let purged = h
        .admin_post("/purge", &serde_json::json!({ "tags": ["doc"] }))
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    for accept in ["text/html", "application/json"] {
        let r = get(&h, path, &[("accept", accept)]).await;
        assert!(!r.is_hit(), "{accept}: {}", r.cache_status());
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_validators_are_answered_304_from_the_cache() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&etag=%22v1%22\
                &last_modified=Tue%2C%2001%20Jan%202030%2000%3A00%3A00%20GMT&body=c";
    let first = get(&h, path, &[("if-none-match", "\"v1\"")]).await;
    // The fill fetched the whole response (the client's validator was not forwarded), stored
    // it, and answered this client 304.
    assert_eq!(first.status, 304, "{}", first.cache_status());
    assert!(first.body.is_empty());
    assert!(first.cache_status().contains("stored"));

    let matching = get(&h, path, &[("if-none-match", "W/\"x\", \"v1\"")]).await;
    assert_eq!(matching.status, 304);
    assert!(matching.is_hit());
    assert_eq!(matching.header("etag"), Some("\"v1\""));
    assert!(matching.header("content-type").is_none());

    let other = get(&h, path, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(other.status, 200);
    assert!(other.is_hit());
    assert!(!other.body.is_empty());

    let since = get(
        &h,
        path,
        &[("if-modified-since", "Wed, 02 Jan 2030 00:00:00 GMT")],
    )
    .await;
    assert_eq!(since.status, 304);
    let before = get(
        &h,
        path,
        &[("if-modified-since", "Mon, 31 Dec 2029 00:00:00 GMT")],
    )
    .await;
    assert_eq!(before.status, 200);
    assert_eq!(h.upstream_gets(ECHO), 1);
    h.stop().await;
}

async fn stale_entries_are_revalidated_with_their_validators(store: StoreKind) {
    let h = Harness::demo(store, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D1&etag=%22v1%22&body=r";
    let first = get(&h, path, &[]).await;
    assert!(first.cache_status().contains("stored"));
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Stale: the gateway asks the origin with If-None-Match, the origin answers 304, and the
    // stored body (the first answer's) is served and stored again, fresh.
    let revalidated = get(&h, path, &[]).await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(
        revalidated.cache_status(),
        "larder; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(serial(&revalidated), serial(&first));
    assert_eq!(h.upstream_gets(ECHO), 2);

    let hit = get(&h, path, &[]).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(serial(&hit), serial(&first));
    assert_eq!(h.upstream_gets(ECHO), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entries_are_revalidated_in_redis() {
    let redis = RedisServer::start();
    stale_entries_are_revalidated_with_their_validators(StoreKind::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entries_are_revalidated_in_memory() {
    stale_entries_are_revalidated_with_their_validators(StoreKind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_are_served_from_stored_responses() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&body=0123456789";
    let whole = get(&h, path, &[]).await;
    let len = whole.body.len();

    let head = get(&h, path, &[("range", "bytes=0-4")]).await;
    assert_eq!(head.status, 206);
    assert!(head.is_hit());
    assert_eq!(head.body, whole.body.slice(0..5));
    let content_range = format!("bytes 0-4/{len}");
    assert_eq!(head.header("content-range"), Some(content_range.as_str()));

    let tail = get(&h, path, &[("range", "bytes=-3")]).await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, whole.body.slice(len - 3..));

    let past = get(&h, path, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(past.status, 416);

    // If-Range with another validator: the whole response.
    let changed = get(
        &h,
        path,
        &[("range", "bytes=0-4"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, whole.body);
    assert_eq!(h.upstream_gets(ECHO), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_overrides_cache_control() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=no-store&cdn_cache_control=max-age%3D60&body=d";
    let first = get(&h, path, &[]).await;
    let second = get(&h, path, &[]).await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert_eq!(serial(&first), serial(&second));
    // An invalid targeted field is ignored as a whole: Cache-Control rules again.
    let invalid = "/api/v1/echo?cache_control=no-store&cdn_cache_control=max-age%3D%2260%22&body=e";
    get(&h, invalid, &[]).await;
    assert!(!get(&h, invalid, &[]).await.is_hit());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_posts_are_cached_by_their_body() {
    let redis = RedisServer::start();
    let h = Harness::demo(StoreKind::Redis(redis.url()), OriginConfig::zero_delay()).await;
    let url = h.url("/api/v1/embeddings");
    let post = |body: &'static str| {
        let url = url.clone();
        async move { http::send("POST", &url, &[("content-type", "application/json")], body).await }
    };
    let first = post(r#"{"text":"fn main() {}"}"#).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    let again = post(r#"{"text":"fn main() {}"}"#).await;
    assert!(again.is_hit(), "{}", again.cache_status());
    assert_eq!(again.body, first.body);
    // Another body is another entry.
    let other = post(r#"{"text":"fn other() {}"}"#).await;
    assert!(!other.is_hit(), "{}", other.cache_status());
    assert_ne!(other.body, first.body);
    assert_eq!(h.origin_count("POST", "/api/v1/embeddings"), 2);

    // A body over `cache.max_request_body` (64 KiB) is forwarded uncached, whole.
    let big = format!(r#"{{"text":"{}"}}"#, "x ".repeat(40_000));
    for _ in 0..2 {
        let r = http::send("POST", &url, &[], &big).await;
        assert_eq!(r.status, 200);
        assert!(!r.is_hit(), "{}", r.cache_status());
        assert_eq!(r.json()["tokens"], 40_000);
    }
    // POSTs on routes without `cache_post` are never looked up: analyze is not cached.
    let analyze = "/api/v1/repositories/1/actions/analyze";
    for _ in 0..2 {
        let r = http::send("POST", &h.url(analyze), &[], "").await;
        assert!(
            r.cache_status().contains("fwd=method"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(h.origin_count("POST", analyze), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_a_body_too_large_to_store_comes_from_the_origin() {
    const CONFIG: &str = r#"
[cache]
max_object_size = 65536

[[route]]
name = "blob"
path = "/api/v1/blob"
plugin = "standard"
"#;
    let h = Harness::with_routes(
        CONFIG,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        larder_tests::gateway::install_example_plugins,
    )
    .await;
    // 1 MiB with Content-Length: over max_object_size, so never stored.
    let path = "/api/v1/blob?bytes=1048576&length=true";
    let r = get(&h, path, &[("range", "bytes=100-109")]).await;
    assert_eq!(r.status, 206, "{}", r.cache_status());
    assert_eq!(r.body.len(), 10);
    assert_eq!(r.header("content-range"), Some("bytes 100-109/1048576"));
    assert!(
        r.cache_status().contains("range-too-large"),
        "{}",
        r.cache_status()
    );
    // Without a range, the whole body streams through.
    let whole = get(&h, path, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len(), 1_048_576);
    assert!(
        whole.cache_status().contains("too-large"),
        "{}",
        whole.cache_status()
    );

    // Without a length the gateway learns it is too large while reading: what it read so far
    // and the rest stream through, whole, and nothing is stored.
    let chunked = "/api/v1/blob?bytes=200000";
    let upstream = h.upstream_gets("/api/v1/blob");
    for n in 1..=2 {
        let r = get(&h, chunked, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 200_000);
        assert!(r.body.iter().all(|&b| b == b'x'));
        assert!(
            r.cache_status().contains("too-large"),
            "{}",
            r.cache_status()
        );
        assert_eq!(h.upstream_gets("/api/v1/blob"), upstream + n);
    }

    // A HEAD that misses is answered by the origin's HEAD, and stores nothing: a body it never
    // saw cannot be served to a GET.
    let small = "/api/v1/blob?bytes=100";
    let head = http::send("HEAD", &h.url(small), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.cache_status().contains("detail=\"head\""),
        "{}",
        head.cache_status()
    );
    let first = get(&h, small, &[]).await;
    assert!(!first.is_hit(), "{}", first.cache_status());
    assert_eq!(first.body.len(), 100);
    assert!(get(&h, small, &[]).await.is_hit());
    h.stop().await;
}

/// RFC 9111 section 4.4: an unsafe request invalidates what its target URI caches, whichever
/// methods the target's route lists. The `echo` route lists only GET and HEAD; a DELETE, PUT or
/// PATCH of the same URI still reaches the `standard` policy's `on-invalidate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_path_whose_route_lists_only_lookups_invalidates_it() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D600&body=w";
    for method in ["DELETE", "PUT", "PATCH"] {
        let before = get(&h, path, &[]).await;
        assert!(get(&h, path, &[]).await.is_hit(), "{method}: stored first");
        let write = http::send(method, &h.url(path), &[], "").await;
        assert_eq!(write.status, 200, "{method}: {}", write.cache_status());
        assert!(
            write.cache_status().contains("fwd=method"),
            "{}",
            write.cache_status()
        );
        let after = get(&h, path, &[]).await;
        assert!(
            !after.is_hit(),
            "{method} left {path} cached: {}",
            after.cache_status()
        );
        assert_ne!(serial(&after), serial(&before), "{method}");
    }
    h.stop().await;
}

/// The write's invalidation belongs to the write, not to the client: a client that hangs up
/// while the backend analyses does not keep the old analysis cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_during_an_analyze_does_not_cancel_its_purge() {
    use tokio::io::AsyncWriteExt;
    let origin = OriginConfig {
        analyze_delay: Duration::from_millis(300),
        ..OriginConfig::zero_delay()
    };
    let h = Harness::demo(StoreKind::Memory, origin).await;
    let view = "/api/v1/repositories/3/ai-features";
    let old = h.get(view).await.json()["analysis_version"].clone();
    assert!(h.get(view).await.is_hit());

    let addr = h.url("").trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(
            b"POST /api/v1/repositories/3/actions/analyze HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(socket); // the client gives up while the backend works

    // The backend finishes its analysis; shortly after, the view is no longer the old one.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.origin.analysis_version(3) == old.as_u64() {
        assert!(
            std::time::Instant::now() < deadline,
            "the analyze never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = h.get(view).await;
    assert!(!after.is_hit(), "{}", after.cache_status());
    assert_ne!(after.json()["analysis_version"], old);
    h.stop().await;
}

/// A write whose answer never came (the upstream timed out after it had the request) may
/// well have happened: it invalidates as if it had succeeded, and the client gets 504. When the
/// backend finishes later, the write is invalidated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_times_out_upstream_invalidates_anyway() {
    let demo = std::fs::read_to_string(larder_tests::plugins::workspace_root().join("larder.toml"))
        .unwrap();
    let config = demo.replace(
        "methods = [\"POST\"]\nplugin = \"analysis-policy\"\n",
        "methods = [\"POST\"]\nplugin = \"analysis-policy\"\nupstream_timeout_ms = 100\n",
    );
    assert_ne!(config, demo, "the analyze route's timeout is set");
    let origin = OriginConfig {
        analyze_delay: Duration::from_millis(400),
        ..OriginConfig::zero_delay()
    };
    let h = Harness::with_routes(
        &config,
        StoreKind::Memory,
        origin,
        larder_tests::gateway::install_example_plugins,
    )
    .await;
    let view = "/api/v1/repositories/4";
    let old = h.get(view).await.json()["analysis_version"].clone();
    assert!(h.get(view).await.is_hit());

    let analyze = http::post(&h.url("/api/v1/repositories/4/actions/analyze")).await;
    assert_eq!(analyze.status, 504, "{}", analyze.text());
    assert!(
        analyze.cache_status().contains("upstream-timeout"),
        "{}",
        analyze.cache_status()
    );
    // Purged at once, before the backend even finished: the next read goes upstream.
    let during = h.get(view).await;
    assert!(!during.is_hit(), "{}", during.cache_status());

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.origin.analysis_version(4) == old.as_u64() {
        assert!(
            std::time::Instant::now() < deadline,
            "the analyze never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `during` cached the old analysis (read before the backend finished). The upstream
    // request was followed past the client's timeout: its late answer purges again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = h.get(view).await;
        if r.json()["analysis_version"] != old {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old analysis stayed cached after the backend finished: {}",
            r.cache_status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}

// ---- what the origin is sent is what the cache keys on --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_client_names_in_connection_selects_no_variant() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&vary=Accept-Language&body=hop";
    // `Connection` makes `Accept-Language` hop-by-hop: the origin never sees it, so what it
    // answers is its answer to a request without one.
    let hidden = get(
        &h,
        path,
        &[("accept-language", "fr"), ("connection", "accept-language")],
    )
    .await;
    assert!(
        hidden.cache_status().contains("stored"),
        "{}",
        hidden.cache_status()
    );

    let french = get(&h, path, &[("accept-language", "fr")]).await;
    assert!(!french.is_hit(), "{}", french.cache_status());
    assert_ne!(serial(&french), serial(&hidden));
    let without = get(&h, path, &[]).await;
    assert!(without.is_hit(), "{}", without.cache_status());
    assert_eq!(serial(&without), serial(&hidden));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_a_body_is_forwarded_uncached() {
    let h = Harness::demo(StoreKind::Memory, OriginConfig::zero_delay()).await;
    let path = "/api/v1/echo?cache_control=max-age%3D60&body=get-body";
    let url = h.url(path);
    // The key cannot say what the body asked for: neither answered from the cache nor stored.
    let with_body = http::send("GET", &url, &[], r#"{"query": "a"}"#).await;
    assert_eq!(with_body.status, 200);
    let status = with_body.cache_status();
    assert!(
        status.contains("fwd=bypass") && status.contains("request-body"),
        "{status}"
    );

    let plain = get(&h, path, &[]).await;
    assert!(!plain.is_hit(), "{}", plain.cache_status());
    assert_ne!(serial(&plain), serial(&with_body));
    assert!(get(&h, path, &[]).await.is_hit());
    let with_body_again = http::send("GET", &url, &[], r#"{"query": "b"}"#).await;
    assert!(
        !with_body_again.is_hit(),
        "{}",
        with_body_again.cache_status()
    );
    assert_eq!(h.upstream_gets(ECHO), 3);
    h.stop().await;
}

/// Starts an origin that answers `/api/v1/echo` with the forwarding fields it was sent (as a
/// JSON object, `null` for a field it did not get), never cacheable; returns its URL.
async fn forwarding_recorder() -> String {
    async fn record(headers: ::http::HeaderMap) -> axum::response::Response {
        let field = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let seen = serde_json::json!({
            "x-forwarded-for": field("x-forwarded-for"),
            "x-forwarded-host": field("x-forwarded-host"),
            "x-forwarded-proto": field("x-forwarded-proto"),
            "forwarded": field("forwarded"),
            "x-real-ip": field("x-real-ip"),
        });
        axum::response::IntoResponse::into_response((
            [("cache-control", "no-store")],
            axum::Json(seen),
        ))
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the recording origin");
    let addr = listener.local_addr().expect("local addr");
    let app = axum::Router::new().route(ECHO, axum::routing::any(record));
    // Runs until the test's runtime ends.
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A gateway in front of `origin` whose `[server]` section adds `server`, with the `standard`
/// policy on `/api/v1/echo`.
async fn gateway_before(origin: &str, server: &str) -> (larder::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugin dir");
    larder_tests::gateway::install_example_plugins(&plugins);
    let config = dir.path().join("larder.toml");
    let text = format!(
        "[server]\n{server}\n\n[[route]]\nname = \"echo\"\npath = \"{ECHO}\"\nplugin = \"standard\"\n"
    );
    std::fs::write(&config, text).expect("write the config");
    let env = larder::config::EnvOverrides {
        upstream: Some(origin.into()),
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        plugin_dir: Some(plugins.display().to_string()),
        ..Default::default()
    };
    let config = larder::config::Config::load(&config, &env).expect("the config is valid");
    (larder::start(config).await.expect("gateway starts"), dir)
}

/// A client that claims to be a proxy, and to have been reached over TLS as `evil.example`.
const FORGED: &[(&str, &str)] = &[
    ("x-forwarded-for", "203.0.113.9"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "https"),
    ("forwarded", "for=203.0.113.9;host=evil.example;proto=https"),
    ("x-real-ip", "203.0.113.9"),
];

/// `GET url` over HTTP/2 with prior knowledge: the request has an authority, no `Host`.
async fn get_h2(url: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let mut req = ::http::Request::get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client
        .request(req.body(Full::default()).expect("request"))
        .await
        .expect("an HTTP/2 answer");
    assert_eq!(resp.version(), ::http::Version::HTTP_2);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_fields_are_written_by_the_gateway_not_the_client() {
    let origin = forwarding_recorder().await;
    let (gateway, _dir) = gateway_before(&origin, "").await;
    let url = format!("{}{ECHO}", gateway.url());
    // The client's `Host` (`127.0.0.1:<port>`), as HTTP/1.1 sends it and HTTP/2 its authority.
    let host = gateway.addr.to_string();
    let own = serde_json::json!({
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-host": host,
        "x-forwarded-proto": "http",
        "forwarded": null,
        "x-real-ip": null,
    });
    let seen = http::get_with(&url, FORGED).await;
    assert_eq!(seen.status, 200, "{}", seen.text());
    assert_eq!(seen.json(), own);
    assert_eq!(get_h2(&url, FORGED).await, own);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarding_fields_are_kept_and_extended() {
    let origin = forwarding_recorder().await;
    let (gateway, _dir) = gateway_before(&origin, r#"trusted_proxies = ["127.0.0.0/8"]"#).await;
    let seen = http::get_with(&format!("{}{ECHO}", gateway.url()), FORGED).await;
    assert_eq!(
        seen.json(),
        serde_json::json!({
            "x-forwarded-for": "203.0.113.9, 127.0.0.1",
            "x-forwarded-host": "evil.example",
            "x-forwarded-proto": "https",
            "forwarded": "for=203.0.113.9;host=evil.example;proto=https",
            "x-real-ip": "203.0.113.9",
        })
    );
    gateway.stop().await;
}
