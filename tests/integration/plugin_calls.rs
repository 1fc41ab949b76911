//! Plugin instances are reused between calls, safely: every call gets a fresh budget and its
//! own request's inputs, an instance whose call failed is dropped, none serves forever, and a
//! burst leaves only as many idle instances as the pool's bounds allow.

use std::time::Duration;

use larder::policy::PluginEngine;
use larder::policy::plugin::{IDLE_MEMORY, MAX_IDLE, MIN_IDLE, REUSE_CALLS};
use larder::policy::sandbox::Limits;
use larder_bindings::types::{Header, Param, Request, RequestDecision};
use larder_tests::plugins;

const LIMITS: Limits = Limits {
    deadline: Duration::from_millis(5),
    memory: 16 * 1024 * 1024,
};

fn request(method: &str, path: &str, route: &str) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: None,
        headers: vec![],
        route_name: route.into(),
        route_pattern: path.into(),
        params: vec![Param {
            name: "id".into(),
            value: "1".into(),
        }],
        settings: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_serves_many_calls_then_is_replaced() {
    let engine = PluginEngine::new().unwrap();
    let bytes = std::fs::read(plugins::path("analysis-policy")).unwrap();
    let plugin = engine.load("analysis-policy", &bytes).unwrap();
    let req = request("GET", "/api/v1/repositories/1", "repository");
    // More calls than an instance may serve: each within its own fresh deadline budget.
    // Sequential calls share one instance; it is dropped after REUSE_CALLS calls (the load's
    // trial call counts as the first instance's first), and the next call makes a new one.
    let mut retired = 0;
    for i in 0..(2 * REUSE_CALLS as u64 + 10) {
        let d = plugin.on_request(i, LIMITS, &req).await.unwrap();
        assert!(matches!(d, RequestDecision::Lookup(_)), "call {i}");
        match plugin.idle_instances() {
            1 => {}
            0 => retired += 1,
            n => panic!("{n} idle instances after sequential calls"),
        }
    }
    assert_eq!(retired, 2, "two instances served their {REUSE_CALLS} calls");
    assert_eq!(plugin.error_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_instance_does_not_see_the_previous_calls_body_digest() {
    let engine = PluginEngine::new().unwrap();
    let bytes = std::fs::read(plugins::path("analysis-policy")).unwrap();
    let plugin = engine.load("analysis-policy", &bytes).unwrap();
    let post = request("POST", "/api/v1/embeddings", "embeddings");
    let (d, facts) = plugin
        .on_request_with_body(1, LIMITS, &post, Some("ab12"))
        .await
        .unwrap();
    assert!(facts.body_digest_asked && matches!(d, RequestDecision::Lookup(_)));
    assert!(!facts.repeatable, "the answer depends on the body's digest");
    // The same instance, the next request: no digest offered, none seen.
    let (d, facts) = plugin
        .on_request_with_body(2, LIMITS, &post, None)
        .await
        .unwrap();
    assert!(!facts.body_digest_asked);
    assert!(
        matches!(d, RequestDecision::Pass(ref r) if r == "method"),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_call_failed_is_dropped() {
    let engine = PluginEngine::new().unwrap();
    for hostile in ["panic", "loop-forever"] {
        let bytes = std::fs::read(plugins::path(hostile)).unwrap();
        let plugin = engine.load(hostile, &bytes).unwrap();
        let idle_after_load = plugin.idle_instances();
        let req = request("GET", "/x", "x");
        assert!(plugin.on_request(1, LIMITS, &req).await.is_err());
        assert!(
            plugin.idle_instances() <= idle_after_load.saturating_sub(1),
            "{hostile}: the failed instance went back to the pool"
        );
        assert!(plugin.on_request(2, LIMITS, &req).await.is_err());
        assert_eq!(plugin.idle_instances(), 0, "{hostile}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_decided_from_the_request_alone_is_repeatable() {
    let engine = PluginEngine::new().unwrap();
    let bytes = std::fs::read(plugins::path("analysis-policy")).unwrap();
    let plugin = engine.load("analysis-policy", &bytes).unwrap();
    let get = request("GET", "/api/v1/repositories/1", "repository");
    let (d, facts) = plugin
        .on_request_with_body(1, LIMITS, &get, None)
        .await
        .unwrap();
    assert!(matches!(d, RequestDecision::Lookup(_)), "{d:?}");
    assert!(facts.repeatable && !facts.body_digest_asked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_past_its_memory_limit_is_told_what_it_asked_for_and_what_to_raise() {
    use larder::policy::PluginError;
    let engine = PluginEngine::new().unwrap();
    let bytes = std::fs::read(plugins::path("memory-hog")).unwrap();
    let plugin = engine.load("memory-hog", &bytes).unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(500),
        memory: 8 * 1024 * 1024,
    };
    let req = request("GET", "/api/v1/repositories/1", "repository");
    let err = plugin.on_request(1, limits, &req).await.unwrap_err();
    let message = err.to_string();
    match err {
        PluginError::MemoryExceeded { limit, wanted, .. } => {
            assert_eq!(limit, 8 * 1024 * 1024);
            assert!(wanted > limit, "{message}");
        }
        other => panic!("not a memory error: {other}"),
    }
    assert!(
        message.contains("grew past its memory limit of 8388608 bytes (it asked for ")
            && message.contains("raise `plugins.memory_limit` (at most 67108864 bytes)"),
        "{message}"
    );
}

/// Calls of the `slow` plugin that overlap: each works `spin` million loops (long enough to
/// yield on several epoch ticks) and first holds `hold_mib` MiB.
async fn overlapping_calls(hold_mib: u32, calls: usize) -> usize {
    let engine = PluginEngine::new().unwrap();
    let bytes = std::fs::read(plugins::path("slow")).unwrap();
    let plugin = std::sync::Arc::new(engine.load("slow", &bytes).unwrap());
    let limits = Limits {
        deadline: Duration::from_secs(5),
        memory: 64 * 1024 * 1024,
    };
    let slow = |spin: u32| {
        let mut req = request("GET", "/x", "x");
        req.headers = vec![
            Header {
                name: "x-spin".into(),
                value: spin.to_string(),
            },
            Header {
                name: "x-hold-mib".into(),
                value: hold_mib.to_string(),
            },
        ];
        req
    };
    // Enough work for a call to straddle several 1 ms ticks, measured on this machine.
    let mut spin = 1;
    loop {
        let t = std::time::Instant::now();
        let d = plugin.on_request(0, limits, &slow(spin)).await.unwrap();
        assert!(
            matches!(d, RequestDecision::Pass(ref r) if r == "slow"),
            "{d:?}"
        );
        if t.elapsed() >= Duration::from_millis(10) {
            break;
        }
        spin *= 2;
    }
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let (plugin, req) = (plugin.clone(), slow(spin));
            tokio::spawn(async move { plugin.on_request(i as u64, limits, &req).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(plugin.error_count(), 0);
    plugin.idle_instances()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_burst_of_overlapping_calls_a_bounded_number_of_instances_stay_idle() {
    // Small instances (a Rust guest's megabyte): the pool keeps its maximum, not the burst.
    assert_eq!(overlapping_calls(0, 3 * MAX_IDLE).await, MAX_IDLE);
    // Instances of 13 MiB or so (a Python guest's size): as many as fit in the idle budget,
    // which here is the floor.
    let fit = IDLE_MEMORY / (13 << 20);
    assert_eq!(fit.clamp(MIN_IDLE, MAX_IDLE), MIN_IDLE);
    assert_eq!(overlapping_calls(12, 3 * MAX_IDLE).await, MIN_IDLE);
    // In between, between the bounds.
    let idle = overlapping_calls(3, 3 * MAX_IDLE).await;
    assert!(MIN_IDLE < idle && idle < MAX_IDLE, "{idle}");
}
