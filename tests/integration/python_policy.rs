//! The gateway serving the Python port of `analysis-policy` (`plugins/python/analysis-policy`)
//! on the demo's routes passes the same end-to-end checks as with the Rust policy: repositories
//! never share entries, private answers are never stored, and an analyze purges exactly its
//! repository and the aggregates. (Whether it decides each case as the Rust policy does is
//! `cli::the_python_port_of_analysis_policy_passes_the_same_cases`.)
//!
//! One gateway for all three: loading a Python component compiles CPython's WebAssembly, about
//! 15 s of a core the first time (the code cache keeps it after that).

use larder_tests::gateway::{Harness, StoreKind, demo_config, install_python_analysis_policy};
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;

use crate::{caching, invalidation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_policy_keys_purges_and_keeps_private_answers_out_as_the_rust_one_does() {
    let redis = RedisServer::start();
    // A fresh CPython instance's first call takes a few milliseconds, more than the demo's
    // 5 ms deadline allows on a busy machine (the call would fail open and the request pass
    // uncached): the checks here are about decisions, not speed.
    let config = demo_config().replace("deadline_ms = 5", "deadline_ms = 200");
    assert!(config.contains("deadline_ms = 200"));
    let h = Harness::with_routes(
        &config,
        StoreKind::Redis(redis.url()),
        OriginConfig::zero_delay(),
        install_python_analysis_policy,
    )
    .await;
    // In this order: the first counts the store's entries, which the others add to.
    caching::private_answers_are_never_stored(&h, &redis).await;
    caching::two_repositories_have_two_entries(&h).await;
    invalidation::an_analyze_purges_exactly_its_repository(&h).await;
    let plugins = larder_tests::http::get(&h.admin("/plugins")).await.json();
    let policy = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "analysis-policy")
        .unwrap();
    assert!(
        policy["size"].as_u64().unwrap() > 10_000_000,
        "the Python component (CPython inside) served: {policy}"
    );
    assert_eq!(policy["errors"], 0, "{policy}");
    h.stop().await;
}
