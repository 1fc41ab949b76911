//! Hostile plugins (a loop, a memory hog, a panic, a malformed answer) never fail a request and
//! never slow down the routes of well-behaved plugins. Each is a real component built for
//! `wasm32-wasip2` from `tests/plugins/`.

use std::path::Path;
use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::origin::OriginConfig;
use larder_tests::{http, plugins};

const ROUTES: &str = r#"
[plugins]
deadline_ms = 5
memory_limit = 8388608

[[route]]
name = "loop"
path = "/api/v1/repositories/{id}"
plugin = "loop-forever"

[[route]]
name = "hog"
path = "/api/v1/repositories/{id}/tech-stack"
plugin = "memory-hog"
# Generous time, so that it is the memory limit that stops it.
deadline_ms = 500

[[route]]
name = "panic"
path = "/api/v1/repositories/{id}/ai-features"
plugin = "panic"

[[route]]
name = "bad-key"
path = "/api/v1/insights"
plugin = "bad-key"

[[route]]
name = "guarded"
path = "/api/v1/me"
plugin = "panic"
fail = "closed"

[[route]]
name = "good"
path = "/api/v1/repositories"
plugin = "analysis-policy"
"#;

fn install(dir: &Path) {
    for p in [
        "loop-forever",
        "memory-hog",
        "panic",
        "bad-key",
        "analysis-policy",
    ] {
        plugins::install(p, dir, p);
    }
}

async fn harness() -> Harness {
    Harness::with_routes(
        ROUTES,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        install,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugins_fail_open_with_the_reason() {
    let h = harness().await;
    for (path, detail) in [
        ("/api/v1/repositories/1", "plugin-deadline"),
        ("/api/v1/repositories/1/tech-stack", "plugin-memory"),
        ("/api/v1/repositories/1/ai-features", "plugin-trap"),
        ("/api/v1/insights", "plugin-malformed"),
    ] {
        let t = Instant::now();
        let r = h.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.cache_status(),
            format!("larder; fwd=bypass; fwd-status=200; detail=\"{detail}\""),
            "{path}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            t.elapsed()
        );
        assert!(!h.get(path).await.is_hit(), "{path}: never cached");
    }
    // Each failure is counted against the plugin's version.
    let plugins = http::get(&h.admin("/plugins")).await.json();
    for name in ["loop-forever", "memory-hog", "panic", "bad-key"] {
        let p = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        assert!(p["errors"].as_u64().unwrap() >= 2, "{name}: {p}");
    }
    // ... and shows in the metrics by kind, and in the stats as requests passed by error.
    let metrics = http::get(&h.admin("/metrics")).await.text();
    for (plugin, kind) in [
        ("loop-forever", "plugin-deadline"),
        ("memory-hog", "plugin-memory"),
        ("panic", "plugin-trap"),
        ("bad-key", "plugin-malformed"),
    ] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("larder_plugin_errors_total{")
                    && l.contains(&format!("plugin=\"{plugin}\""))
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .unwrap_or_else(|| panic!("no error count for {plugin}:\n{metrics}"));
        assert!(line.ends_with(" 2"), "{line}");
    }
    let stats = http::get(&h.admin("/stats")).await.json();
    assert_eq!(stats["total"]["error"], 8, "{stats}");
    assert_eq!(stats["total"]["hit"], 0, "{stats}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_configured_to_fail_closed_answers_502() {
    let h = harness().await;
    let r = http::get_with(&h.url("/api/v1/me"), &[("authorization", "Bearer x")]).await;
    assert_eq!(r.status, 502);
    assert!(
        r.cache_status().contains("plugin-trap"),
        "{}",
        r.cache_status()
    );
    assert_eq!(h.origin.count("GET", "/api/v1/me"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_do_not_hold_up_other_routes() {
    let h = harness().await;
    h.get("/api/v1/repositories").await;
    let hostile = [
        ("/api/v1/repositories/{}", "plugin-deadline"),
        ("/api/v1/repositories/{}/tech-stack", "plugin-memory"),
        ("/api/v1/repositories/{}/ai-features", "plugin-trap"),
        ("/api/v1/insights", "plugin-malformed"),
    ];
    // 16 requests to hostile plugins (a loop, a memory hog, a panic, a bad key), all at once...
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let (pattern, detail) = hostile[i % hostile.len()];
            let url = h.url(&pattern.replace("{}", &(i + 1).to_string()));
            tokio::spawn(async move { (http::get(&url).await, detail) })
        })
        .collect();
    // ...while a well-behaved route keeps answering from the cache.
    for _ in 0..50 {
        let r = h.get("/api/v1/repositories").await;
        assert!(r.is_hit(), "{}", r.cache_status());
    }
    for r in requests {
        let (reply, detail) = r.await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(
            reply.cache_status().contains(detail),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(h.upstream_gets("/api/v1/repositories"), 1);
    h.stop().await;
}

/// A gateway process's resident memory, from `/proc/<pid>/status`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// The config of the flood test: the `flood` plugin on one route, enough memory for it to build
/// its oversized answers (so that it is the host's bounds that refuse them, not the memory
/// limit), and a deadline that lets it write all its lines.
const FLOOD_ROUTES: &str = r#"
[plugins]
deadline_ms = 1000
memory_limit = 33554432

[[route]]
name = "repositories"
path = "/api/v1/repositories"
plugin = "standard"

[[route]]
name = "flood"
path = "/api/v1/repositories/{id}"
plugin = "flood"
"#;

/// `tests/plugins/flood` writes 2,000 log lines per call and answers with a 1 MiB key, 10,000
/// tags, a 60 KiB vary name, a 1 MiB or 8 MiB pass reason, or 100,000 aliased 64 KiB tags.
/// Every request still succeeds from the upstream; the lines past the bounds are dropped and
/// counted; the gateway's log and memory stay small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_plugin_is_bounded_in_what_it_writes_and_hands_over() {
    use larder_tests::origin::Origin;
    use larder_tests::process::{self, GatewayProcess};

    let origin = Origin::start(OriginConfig::zero_delay())
        .await
        .expect("start origin");
    // A gateway process (its own log file and memory), started on the well-behaved route; the
    // flood route comes with a reload, once the plugin is in its plugin directory.
    let first = FLOOD_ROUTES
        .split("\n[[route]]\nname = \"flood\"")
        .next()
        .unwrap();
    let redis = larder_tests::redis_server::RedisServer::start();
    let mut gw = GatewayProcess::start("gateway", first, &origin.url(), &redis.url()).await;
    plugins::install("flood", &gw.dir().join("plugins"), "flood");
    std::fs::write(gw.dir().join("larder.toml"), FLOOD_ROUTES).unwrap();
    let reload = http::send(
        "POST",
        &gw.admin("/plugins/reload"),
        &[(
            "authorization",
            &format!("Bearer {}", larder_tests::gateway::ADMIN_TOKEN),
        )],
        "",
    )
    .await;
    assert_eq!(reload.status, 200, "{}", reload.text());

    let answers = [
        ("?key", "plugin-malformed"),
        ("?tags", "plugin-malformed"),
        ("?vary", "plugin-malformed"),
        ("?reason", "plugin-malformed"),
        ("?copy", "plugin-malformed"),
        ("", "plugin-malformed"),
    ];
    let timeout = Duration::from_secs(10);
    // Warm up (instances, the pool's slots, the allocator) before the first measure.
    for (query, _) in answers {
        let url = gw.url(&format!("/api/v1/repositories/1{query}"));
        let r = process::request("GET", &url, timeout).await.unwrap();
        assert_eq!(r.status, 200, "{url}");
    }
    let log_before = gw.log().len();
    let rss_before = resident_kib(gw.pid);

    const REQUESTS: usize = 120;
    let started = Instant::now();
    for i in 0..REQUESTS {
        let (query, detail) = answers[i % answers.len()];
        // (The stand-in backend has repositories 1 to 50; nothing is cached, ids may repeat.)
        let url = gw.url(&format!("/api/v1/repositories/{}{query}", i % 50 + 1));
        let r = process::request("GET", &url, timeout).await.unwrap();
        assert_eq!(r.status, 200, "{url}: fails open, the upstream answers");
        assert!(!r.body.is_empty(), "{url}: the upstream's body");
        let status = r.cache_status();
        assert!(status.contains(detail), "{url}: {status}");
    }
    let took = started.elapsed();

    // Each call (on-request, and on-response for the answers that get that far) tried to
    // write 2,000 lines: the gateway wrote at most its share, and counted the rest.
    let metrics = process::request("GET", &gw.admin("/metrics"), timeout)
        .await
        .unwrap()
        .text();
    let dropped: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("larder_plugin_log_dropped_total{") && l.contains("plugin=\"flood\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no dropped-lines count for flood:\n{metrics}"));
    let calls = REQUESTS as u64;
    assert!(
        dropped >= calls * (2_000 - 16),
        "{dropped} lines dropped over {calls} requests"
    );
    let stats = process::request("GET", &gw.admin("/stats"), timeout)
        .await
        .unwrap()
        .json();
    let flood = stats["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "flood")
        .unwrap_or_else(|| panic!("no flood plugin in {stats}"));
    assert!(
        flood["log_lines_dropped"].as_u64().unwrap() >= dropped,
        "{flood}"
    );

    // What the gateway wrote meanwhile: the plugin's lines at its rate (a burst of 200, then
    // 100 a second), one warning per failed call, and the summaries. Unbounded, the plugin
    // alone would have written some 240,000 lines (about 20 MiB).
    let written = gw.log().len() - log_before;
    let lines = gw.log()[log_before..].lines().count();
    let allowed_lines = 200 + 100 * (took.as_secs() as usize + 1) + 3 * REQUESTS;
    assert!(
        lines <= allowed_lines && written < 512 * 1024,
        "{lines} lines ({written} bytes) written in {took:?} (at most {allowed_lines} lines)"
    );
    let flood_lines = gw.log()[log_before..]
        .lines()
        .filter(|l| l.contains("flood: on-"))
        .count();
    assert!(
        flood_lines <= 200 + 100 * (took.as_secs() as usize + 1),
        "{flood_lines} of the plugin's lines in {took:?}"
    );

    // Nor does it grow the gateway: the copies out of the guest are bounded (4 MiB a lift),
    // and failed instances give their memory back to the pool.
    let rss_after = resident_kib(gw.pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB over {REQUESTS} requests"
    );
    gw.kill();
    origin.shutdown().await;
}

/// `tests/python-plugins/sandbox-probe`, compiled once for the tests that call it. Compiling
/// CPython's component takes seconds: call it off the async threads, as the gateway does.
fn python_probe() -> &'static larder::policy::Plugin {
    static PROBE: std::sync::OnceLock<larder::policy::Plugin> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| {
        let bytes = std::fs::read(plugins::python_path("sandbox-probe")).unwrap();
        let engine = larder::policy::PluginEngine::new().unwrap();
        engine
            .load("sandbox-probe", &bytes)
            .expect("the probe loads")
    })
}

/// The Python SDK has componentize-py's runtime build the SDK's own `Request` and `Header` for
/// the host's records (`larder_policy.export`), saving a conversion per call. The runtime looks
/// its record classes up after importing the policy's module, which is what makes this work; a
/// componentize-py that looked them up earlier would still serve (the SDK converts what it is
/// given) but slower, and fails this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_policy_receives_the_sdks_own_request_objects_from_the_runtime() {
    use larder::policy::sandbox::Limits;
    use larder_bindings::types::{Header, Request, RequestDecision};

    let plugin = tokio::task::spawn_blocking(python_probe).await.unwrap();
    let request = Request {
        method: "GET".into(),
        path: "/records".into(),
        query: None,
        headers: vec![Header {
            name: "accept".into(),
            value: "*/*".into(),
        }],
        route_name: "probe".into(),
        route_pattern: "/records".into(),
        params: vec![],
        settings: vec![],
    };
    let limits = Limits {
        deadline: Duration::from_secs(5),
        memory: 32 << 20,
    };
    let decision = plugin.on_request(1, limits, &request).await.unwrap();
    let RequestDecision::Pass(built) = decision else {
        panic!("the probe passes with the classes it was given: {decision:?}");
    };
    assert_eq!(
        built,
        "larder_policy.messages.Request;larder_policy.messages.Header"
    );
}

/// The sandbox does not depend on the guest's language: `tests/python-plugins/sandbox-probe`, a
/// Python policy (CPython in the component), tries to read a file the test made, list `/`,
/// connect to a port the test listens on, read the environment and both clocks, and finds
/// nothing; looping and allocating without bound, it is stopped by the deadline and the memory
/// limit like a Rust guest, and the plugin serves on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_policy_gets_no_files_sockets_environment_or_clock_and_is_held_to_its_limits() {
    use larder::policy::PluginError;
    use larder::policy::sandbox::Limits;
    use larder_bindings::types::{Param, Request, RequestDecision};

    let plugin = tokio::task::spawn_blocking(python_probe).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "readable outside the sandbox").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let request = |mode: Option<&str>| Request {
        method: "GET".into(),
        path: "/probe".into(),
        query: None,
        headers: vec![],
        route_name: "probe".into(),
        route_pattern: "/probe".into(),
        params: vec![],
        settings: [("file", secret.to_str().unwrap()), ("port", port.as_str())]
            .into_iter()
            .chain(mode.map(|m| ("mode", m)))
            .map(|(name, value)| Param {
                name: name.into(),
                value: value.into(),
            })
            .collect(),
    };
    let generous = Limits {
        deadline: Duration::from_secs(5),
        memory: 32 << 20,
    };

    let decision = plugin
        .on_request(1, generous, &request(None))
        .await
        .unwrap();
    let RequestDecision::Pass(found) = decision else {
        panic!("the probe passes with what it found: {decision:?}");
    };
    let found: std::collections::BTreeMap<&str, &str> = found
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert!(
        std::env::vars().count() > 0,
        "the test's own environment is not empty"
    );
    let expected = [
        ("clock", "0"),
        ("dir", "denied"),
        ("elapsed", "0"),
        ("env", "0"),
        ("file", "denied"),
        ("socket", "denied"),
    ];
    assert_eq!(found, expected.into_iter().collect(), "{found:?}");

    let started = Instant::now();
    let looping = Limits {
        deadline: Duration::from_millis(50),
        ..generous
    };
    let err = plugin
        .on_request(2, looping, &request(Some("loop")))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::DeadlineExceeded { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let err = plugin
        .on_request(3, generous, &request(Some("hog")))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::MemoryExceeded { .. }), "{err}");

    // A fresh instance serves the next call.
    let decision = plugin
        .on_request(4, generous, &request(None))
        .await
        .unwrap();
    assert!(matches!(decision, RequestDecision::Pass(_)), "{decision:?}");
    drop(listener);
}
