//! A 1 GiB response through the gateway: the body is larger than `max_object_size`, so the
//! gateway streams it through without storing it, and memory stays bounded.
//!
//! `cargo bench --bench figures -- large_body` (a few seconds). The gateway, the stand-in
//! backend (which streams the body in 64 KiB chunks, without `Content-Length`, marked
//! cacheable) and the client (which counts and drops the bytes) all run in this process, so
//! the peak RSS printed bounds the gateway's own.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::origin::OriginConfig;

const CONFIG: &str = r#"
[[route]]
name = "blob"
path = "/api/v1/blob"
plugin = "standard"
"#;

const SIZE: u64 = 1 << 30;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn run() {
    let h = Harness::with_routes(
        CONFIG,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        larder_tests::gateway::install_example_plugins,
    )
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let url = h.url(&format!("/api/v1/blob?bytes={SIZE}"));

    // Warm up (connections, allocator), then reset the peak so it covers the download only.
    let warm = h.url("/api/v1/blob?bytes=1048576");
    let r = client.get(warm.parse().unwrap()).await.unwrap();
    r.into_body().collect().await.unwrap();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");

    let t = Instant::now();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            received += data.len() as u64;
        }
    }
    let elapsed = t.elapsed();
    let peak = status_kib("VmHWM:");
    assert_eq!(received, SIZE, "the whole body arrived");
    assert!(
        cache_status.contains("too-large"),
        "not stored: {cache_status}"
    );

    println!("1 GiB through the gateway (max_object_size 8 MiB): {cache_status}");
    println!(
        "  {:.2} s, {:.0} MiB/s",
        elapsed.as_secs_f64(),
        SIZE as f64 / 1048576.0 / elapsed.as_secs_f64()
    );
    println!(
        "  RSS before {before} KiB, peak during {peak} KiB (+{} KiB) for the whole process",
        peak.saturating_sub(before)
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.stop().await;
}
