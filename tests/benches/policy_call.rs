//! What one policy call costs, alone: the Rust `analysis-policy` against its Python port, each
//! called in turn on one thread with the request a browser sends for a repository (a dozen
//! header fields, a unique `x-request-id` per call, so nothing is reused), and the response the
//! backend gives. Host and guest together: taking an idle instance, converting the request,
//! the guest's work, checking its answer. The load harness (`tests/load/run.sh`) gives the
//! figure under load, where calls also wait for a worker thread.
//!
//! `cargo bench --bench figures -- policy_call` (about half a minute with a warm code cache;
//! the first run compiles the Python policy, 10 to 20 s more).

use std::path::Path;
use std::time::{Duration, Instant};

use larder::policy::sandbox::Limits;
use larder::policy::types::{Header, Param, Request, Response};
use larder::policy::{Plugin, PluginEngine};
use larder_tests::plugins;

const CALLS: usize = 4_000;
const WARM_UP: usize = 200;

/// The gateway's defaults.
const LIMITS: Limits = Limits {
    deadline: Duration::from_millis(5),
    memory: 16 * 1024 * 1024,
};

fn pair(name: &str, value: &str) -> Param {
    Param {
        name: name.into(),
        value: value.into(),
    }
}

fn headers(fields: &[(&str, &str)]) -> Vec<Header> {
    fields
        .iter()
        .map(|(name, value)| Header {
            name: (*name).into(),
            value: (*value).into(),
        })
        .collect()
}

/// The demo's `repository` route, as a browser asks it; `n` makes the request id unique.
fn request(n: usize) -> Request {
    let id = format!("{n:016x}");
    let fields = [
        ("host", "scat.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://scat.example.com/repositories/1"),
        ("sec-fetch-dest", "empty"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-origin"),
        ("connection", "keep-alive"),
        ("priority", "u=0"),
        ("x-request-id", &id),
    ];
    Request {
        method: "GET".into(),
        path: "/api/v1/repositories/1".into(),
        query: None,
        headers: headers(&fields),
        route_name: "repository".into(),
        route_pattern: "/api/v1/repositories/{id}".into(),
        params: vec![pair("id", "1")],
        settings: vec![pair("ttl", "1800")],
    }
}

fn response() -> Response {
    Response {
        status: 200,
        headers: headers(&[
            ("content-type", "application/json"),
            ("content-length", "2950"),
            ("date", "Tue, 01 Dec 2026 12:00:00 GMT"),
            ("server", "uvicorn"),
        ]),
        body_size: Some(2950),
    }
}

fn load(engine: &PluginEngine, path: &Path) -> Plugin {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    engine
        .load("analysis-policy", &bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Mean, median and 99th percentile of `times`, in µs.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|d| us(*d)).sum::<f64>() / times.len() as f64;
    format!(
        "mean {mean:6.1} µs, p50 {:6.1}, p99 {:6.1}",
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100])
    )
}

async fn measure(name: &str, plugin: &Plugin) {
    let resp = response();
    // An instance's first call pages in what the interpreter touches: milliseconds for Python,
    // past the deadline. The warm-up is allowed that.
    let warm_up = Limits {
        deadline: Duration::from_secs(1),
        ..LIMITS
    };
    for n in 0..WARM_UP {
        plugin
            .on_request(n as u64, warm_up, &request(n))
            .await
            .unwrap();
    }
    let (mut on_request, mut on_response) = (Vec::new(), Vec::new());
    // A call that fails (over the deadline: a new instance's first call, or a preempted one)
    // is timed all the same, and counted.
    let mut failed = 0;
    for n in WARM_UP..WARM_UP + CALLS {
        let req = request(n);
        let t = Instant::now();
        failed += usize::from(plugin.on_request(n as u64, LIMITS, &req).await.is_err());
        on_request.push(t.elapsed());
        let t = Instant::now();
        let answered = plugin
            .on_response(n as u64, LIMITS, &req, &resp, None)
            .await;
        failed += usize::from(answered.is_err());
        on_response.push(t.elapsed());
    }
    println!("{name:7} on-request:  {}", summary(on_request));
    println!("{name:7} on-response: {}", summary(on_response));
    if failed > 0 {
        println!("{name:7} {failed} calls failed (over the deadline)");
    }
}

pub fn run() {
    let engine = PluginEngine::with_code_cache(
        Some(&larder::config::default_code_cache()),
        larder::policy::code_cache::DEFAULT_BUDGET,
    )
    .expect("an engine");
    let rust = load(&engine, &plugins::path("analysis-policy"));
    let python = load(&engine, &plugins::python_path("analysis-policy"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("{CALLS} calls each, one thread, after {WARM_UP} to warm up:");
    runtime.block_on(async {
        // Twice each, alternating, so that neither has the machine to itself.
        for _ in 0..2 {
            measure("Rust", &rust).await;
            measure("Python", &python).await;
        }
    });
}
