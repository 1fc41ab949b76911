//! Hot-reload figures: time from a plugin file being written to the new version serving (with
//! and without a compile), resident memory across 1,000 reloads, and failed requests during
//! 100 reloads under a steady loopback load.
//!
//! `cargo bench --bench figures -- reload` (bounded: about a minute). The gateway runs in
//! this process, so the RSS figures include the stand-in backend and the load generator; what
//! matters is the difference between the first reload and the thousandth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::origin::OriginConfig;
use larder_tests::{http, plugins};

const CONFIG: &str = r#"
[[route]]
name = "repository"
path = "/api/v1/repositories/{id}"
plugin = "policy"
"#;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `component` with a custom section appended: a distinct file (new hash, so a real compile)
/// with identical behaviour.
fn variant(component: &[u8], n: u64) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"larder-bench";
    let payload = n.to_le_bytes();
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn install(h: &Harness, bytes: &[u8]) {
    let tmp = h.plugin_dir().join(".policy.wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, h.plugin_dir().join("policy.wasm")).unwrap();
}

async fn version(h: &Harness) -> String {
    let plugins = http::get(&h.admin("/plugins")).await.json();
    plugins[0]["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Writes `bytes` and returns how long until the gateway serves it.
async fn write_and_wait(h: &Harness, bytes: &[u8]) -> Duration {
    let expected = larder::policy::engine::content_hash(bytes);
    let t = Instant::now();
    install(h, bytes);
    while version(h).await != expected {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "reload never happened"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.elapsed()
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (n={})",
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
pub async fn run() {
    let h = Arc::new(
        Harness::with_routes(
            CONFIG,
            StoreKind::Memory,
            OriginConfig::zero_delay(),
            |dir| plugins::install("analysis-policy", dir, "policy"),
        )
        .await,
    );
    let a = std::fs::read(plugins::path("analysis-policy")).unwrap();
    let b = std::fs::read(plugins::path("standard")).unwrap();
    println!(
        "plugin sizes: analysis-policy {} B, standard {} B",
        a.len(),
        b.len()
    );
    let seed = std::process::id() as u64 * 1_000_000;

    // 1. File written -> new version serving, through the directory watcher.
    let mut compiled = Vec::new();
    for i in 0..10 {
        compiled.push(write_and_wait(&h, &variant(&a, seed + i)).await);
    }
    println!(
        "write -> serving, new file (compile):   {}",
        summary(compiled)
    );
    let mut cached = Vec::new();
    for i in 0..10 {
        cached.push(write_and_wait(&h, if i % 2 == 0 { &b } else { &a }).await);
    }
    println!(
        "write -> serving, known file (cache):   {}",
        summary(cached)
    );
    println!(
        "  (both include the watcher's {} ms debounce)",
        larder::watch::QUIET.as_millis()
    );

    // 2. RSS across 1,000 forced reloads alternating two plugin versions.
    install(&h, &a);
    h.reload().await;
    let rss_1 = rss_kib();
    let t = Instant::now();
    for i in 0..1000 {
        install(&h, if i % 2 == 0 { &b } else { &a });
        let r = h.reload().await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let per_reload = t.elapsed() / 1000;
    let rss_1000 = rss_kib();
    println!(
        "RSS after 1 reload {} KiB, after 1,000 reloads {} KiB ({:+} KiB); {:.2} ms per forced reload",
        rss_1,
        rss_1000,
        rss_1000 as i64 - rss_1 as i64,
        per_reload.as_secs_f64() * 1000.0
    );

    // 3. 100 reloads under a steady load of 4 concurrent clients.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (h, stop, ok, failed) = (h.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = h.get(&format!("/api/v1/repositories/{}", i + 1)).await;
                    let counter = if r.status == 200 { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 0..100 {
        install(&h, if i % 2 == 0 { &b } else { &a });
        h.reload().await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    println!(
        "100 reloads under load: {} requests succeeded, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
