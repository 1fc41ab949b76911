//! The hit path's own costs, one by one: the policy call (the example `analysis-policy` in a
//! wasmtime instance reused between calls, as the gateway does, against the same decision made
//! by native Rust, and against reusing the decision of an identical request), the path's
//! normalisation, the storage key's derivation, an entry's encoding and decoding (with the zstd
//! body of a Redis value), and counting a request for `/stats` and `/metrics`.
//!
//! `cargo bench --bench figures -- hot_path` (criterion; about a minute).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use larder::policy::PluginEngine;
use larder::policy::sandbox::Limits;
use larder::proxy::decisions::{Decided, Decisions, Reuse};
use larder::store::entry::Entry;
use larder::store::key::tag_id;
use larder::store::tags::Token;
use larder::store::{EntryMeta, ObjectKey};
use larder::telemetry::{Class, Served, Telemetry};
use larder_bindings::types::{CacheKey, Header, Param, Request, RequestDecision};
use larder_tests::plugins;

fn request() -> Request {
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.into(),
    };
    Request {
        method: "GET".into(),
        path: "/api/v1/repositories/1/ai-features".into(),
        query: None,
        headers: vec![
            header("host", "localhost:8359"),
            header("accept", "application/json"),
            header("accept-encoding", "gzip, br"),
            header("user-agent", "scat-web/2.3"),
            header("x-request-id", "5f0c3e1a"),
        ],
        route_name: "ai-features".into(),
        route_pattern: "/api/v1/repositories/{id}/ai-features".into(),
        params: vec![Param {
            name: "id".into(),
            value: "1".into(),
        }],
        settings: vec![Param {
            name: "ttl".into(),
            value: "1800".into(),
        }],
    }
}

/// What `analysis-policy` decides for this request, in native Rust: the baseline the plugin
/// call is measured against.
fn native_policy(req: &Request) -> RequestDecision {
    if req
        .headers
        .iter()
        .any(|h| h.name == "authorization" || h.name == "cookie")
    {
        return RequestDecision::Pass("credentials".into());
    }
    // The id in its canonical form, as the plugin's `Digits<u64>` gives it.
    let id = req
        .params
        .iter()
        .find(|p| p.name == "id")
        .and_then(|p| p.value.parse::<u64>().ok())
        .map(|id| id.to_string());
    RequestDecision::Lookup(CacheKey {
        parts: vec![
            "repo".into(),
            id.unwrap_or_default(),
            req.route_name.clone(),
            req.query.clone().unwrap_or_default(),
        ],
        vary: vec![],
    })
}

fn policy_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let engine = PluginEngine::new().unwrap();
    let bytes = std::fs::read(plugins::path("analysis-policy")).unwrap();
    let plugin = engine.load("analysis-policy", &bytes).unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(5),
        memory: 16 * 1024 * 1024,
    };
    let req = request();
    // Same answer from both.
    let wasm = runtime
        .block_on(plugin.on_request(0, limits, &req))
        .unwrap();
    let parts = |d: &RequestDecision| match d {
        RequestDecision::Lookup(k) => k.parts.clone(),
        RequestDecision::Pass(r) => vec![r.clone()],
    };
    assert_eq!(parts(&wasm), parts(&native_policy(&req)));

    let mut group = c.benchmark_group("policy on-request (the one call a hit makes)");
    group.bench_function("analysis-policy, wasm, reused instance", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(plugin.on_request(0, limits, &req).await.unwrap()) })
    });
    group.bench_function("native Rust, same decision", |b| {
        b.iter(|| black_box(native_policy(black_box(&req))))
    });
    // What a hit pays instead of the call (and the key derivation) when an identical request
    // came before: encoding the request and finding its decision in the thread's table.
    let decisions = Decisions::new(1 << 20);
    let config = larder::config::Config::parse(
        std::path::Path::new("bench.toml"),
        "[[route]]\nname = \"ai-features\"\npath = \"/x\"\nplugin = \"p\"\n",
        &larder::config::EnvOverrides::default(),
    )
    .unwrap();
    let table =
        larder::routes::RouteTable::new(&config.routes, &config.plugins.hidden_headers).unwrap();
    let route = &table.routes()[0];
    let http_parts = http_request(&req);
    let decided = Decided::Lookup(ObjectKey::derive("ai-features", &parts(&wasm), &[]));
    match decisions.find(route, &http_parts) {
        Reuse::Missing(key) => decisions.remember(key, decided.clone()),
        _ => unreachable!("a fresh table"),
    }
    group.bench_function("decision reused for an identical request", |b| {
        b.iter(|| match decisions.find(route, black_box(&http_parts)) {
            Reuse::Found(found) => black_box(found),
            _ => unreachable!("remembered above"),
        })
    });
    group.finish();
}

/// The same request as the gateway receives it.
fn http_request(req: &Request) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method(req.method.as_str())
        .uri(req.path.as_str());
    for h in &req.headers {
        b = b.header(h.name.as_str(), h.value.as_str());
    }
    b.body(()).unwrap().into_parts().0
}

/// What every request pays before routing: one scan of a path that is normal already (no
/// allocation), against rewriting one that is not.
fn path_normalisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("path normalisation");
    group.bench_function("already normal (scan only)", |b| {
        b.iter(|| {
            black_box(larder::proxy::normalize::path(black_box(
                "/api/v1/repositories/1/ai-features",
            )))
        })
    });
    group.bench_function("rewritten (//, ., %31)", |b| {
        b.iter(|| {
            black_box(larder::proxy::normalize::path(black_box(
                "/api/v1/repositories//%31/./ai-features",
            )))
        })
    });
    group.finish();
}

fn key_derivation(c: &mut Criterion) {
    c.bench_function("storage key from the policy's parts", |b| {
        b.iter(|| {
            black_box(ObjectKey::derive(
                black_box("ai-features"),
                black_box(&["repo", "1", "ai-features", ""]),
                &[],
            ))
        })
    });
}

fn entry(body_len: usize) -> Entry {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("content-length", body_len.into());
    headers.insert("date", "Thu, 26 Nov 2026 18:00:00 GMT".parse().unwrap());
    let mut json = String::from("{\"features\":[");
    let mut i = 0;
    while json.len() < body_len - 40 {
        json.push_str(&format!(
            "{{\"name\":\"feature-{i}\",\"complexity\":{},\"files\":{}}},",
            i % 17,
            i % 101
        ));
        i += 1;
    }
    json.push_str("{}]}");
    let k = ObjectKey::derive("ai-features", &["repo", "1", "ai-features", ""], &[]);
    let mut tags: Vec<_> = k
        .implicit_tags
        .iter()
        .map(|t| (*t, Token::new_unpurged()))
        .collect();
    tags.push((tag_id("repo:1"), Token::new_unpurged()));
    Entry {
        status: http::StatusCode::OK,
        headers,
        body: Bytes::from(json),
        meta: EntryMeta {
            stored_at_ms: 1_795_700_000_000,
            fill_started_us: 1_795_700_000_000_000,
            initial_age: 0,
            ttl: 1800,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            keep: 0,
            vary_marker: false,
        },
        tags,
    }
}

fn entry_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("entry codec (the Redis value)");
    for len in [2 * 1024, 64 * 1024] {
        let e = entry(len);
        let encoded = Bytes::from(e.encode());
        println!(
            "{len}-byte JSON body: a {}-byte value ({:.1}x smaller)",
            encoded.len(),
            len as f64 / encoded.len() as f64
        );
        group.bench_function(format!("encode, {} KiB body", len / 1024), |b| {
            b.iter(|| black_box(e.encode()))
        });
        group.bench_function(format!("decode, {} KiB body", len / 1024), |b| {
            b.iter(|| black_box(Entry::decode(encoded.clone()).unwrap()))
        });
    }
    group.finish();
}

/// What counting one answered request costs: reading its class off `Cache-Status`, and the
/// route's counters and histograms (for `/stats` and `/metrics`).
fn telemetry(c: &mut Criterion) {
    let t = Telemetry::new();
    let route = t.route("repository", "analysis-policy", "2020001eafb6");
    let status = http::HeaderValue::from_static("larder; hit; ttl=1790");
    c.bench_function("count one request (class, counters, histogram)", |b| {
        b.iter(|| {
            let (class, collapsed) = Class::of_cache_status(black_box(status.as_bytes()));
            route.served(Served {
                class,
                collapsed,
                fleet: collapsed && Class::fleet_collapsed(status.as_bytes()),
                elapsed: Duration::from_micros(80),
                bytes: Some(2048),
                saved_us: 1_200_000,
            });
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = policy_call, path_normalisation, key_derivation, entry_codec, telemetry
}
/// What `criterion_main!` would do, as a function the bench binary's `main` calls.
pub fn run() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
