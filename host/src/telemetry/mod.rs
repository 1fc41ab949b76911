//! What the gateway counts, for the people who run it: `GET /metrics` (Prometheus text),
//! `GET /stats` (JSON, with hit ratio and the upstream time the cache saved) and the dashboard
//! that draws `/stats`.
//!
//! Counting must not slow the hot path. Every handle a request touches is registered once, when
//! a snapshot is built ([`RouteTelemetry`], per route and with its plugin's version), so a
//! request does a few relaxed atomic adds: no map lookup, no allocation. Rare events (a plugin
//! error, a reload, a purge) register their handle when they happen.
//!
//! Each gateway owns its recorder instead of installing the process-global one: two gateways
//! in one process (the tests run several) count apart, and `/stats` reads exactly its own.

mod class;
mod route;
mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use class::Class;
pub use route::{RouteCounts, RouteTelemetry, Served};
pub use stats::{ReloadStats, RouteStats, Stats};

/// Latency buckets in seconds: from a 50 µs hit to a 10 s upstream.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Routes that matched no route are counted under this name.
pub const UNROUTED: &str = "(no route)";

/// The gateway's counters and the recorder behind `/metrics`.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    started: Instant,
    /// `/stats` counts per route name; they outlive reloads, so a route keeps its history.
    routes: Mutex<Vec<(String, Arc<RouteCounts>)>>,
    pub(crate) unrouted: RouteTelemetry,
    pub(crate) store_lookup: Histogram,
    pub(crate) store_write: Histogram,
    reloads: Mutex<ReloadStats>,
    invalidations: [AtomicU64; 3],
    invalidated_entries: AtomicU64,
}

/// The kinds of invalidation, for `larder_invalidations_total{kind}`.
#[derive(Debug, Clone, Copy)]
pub enum InvalidationKind {
    Tag = 0,
    Key = 1,
    Prefix = 2,
}

impl InvalidationKind {
    fn as_str(self) -> &'static str {
        match self {
            InvalidationKind::Tag => "tag",
            InvalidationKind::Key => "key",
            InvalidationKind::Prefix => "prefix",
        }
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let store_lookup = register_histogram(
            &recorder,
            "larder_store_operation_duration_seconds",
            &[("op", "lookup")],
        );
        let store_write = register_histogram(
            &recorder,
            "larder_store_operation_duration_seconds",
            &[("op", "store")],
        );
        let mut telemetry = Self {
            unrouted: RouteTelemetry::placeholder(),
            recorder,
            handle,
            started: Instant::now(),
            routes: Mutex::default(),
            store_lookup,
            store_write,
            reloads: Mutex::default(),
            invalidations: Default::default(),
            invalidated_entries: AtomicU64::new(0),
        };
        telemetry.unrouted = telemetry.route(UNROUTED, "", "");
        telemetry
    }

    /// The handles of one route of a snapshot: `plugin` at `version` serves it.
    pub fn route(&self, name: &str, plugin: &str, version: &str) -> RouteTelemetry {
        let counts = {
            let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            match routes.iter().find(|(n, _)| n == name) {
                Some((_, counts)) => counts.clone(),
                None => {
                    let counts = Arc::new(RouteCounts::default());
                    routes.push((name.to_owned(), counts.clone()));
                    counts
                }
            }
        };
        RouteTelemetry::new(self, counts, name, plugin, version)
    }

    pub(crate) fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    pub(crate) fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Histogram {
        register_histogram(&self.recorder, name, labels)
    }

    /// A plugin call failed (`kind` is the error's short name, e.g. `plugin-trap`).
    pub fn plugin_error(&self, plugin: &str, version: &str, kind: &str) {
        self.counter(
            "larder_plugin_errors_total",
            &[("plugin", plugin), ("version", version), ("kind", kind)],
        )
        .increment(1);
    }

    /// Sets `larder_plugin_log_dropped_total` for `plugin` at `version` to `total`: the log
    /// lines its calls wrote past the sandbox's bounds since it was loaded. The plugin counts
    /// them (see `policy::sandbox::LogBudget`); `/metrics` copies the count when it renders,
    /// so a call does no more than a relaxed add.
    pub fn plugin_log_dropped(&self, plugin: &str, version: &str, total: u64) {
        self.counter(
            "larder_plugin_log_dropped_total",
            &[("plugin", plugin), ("version", version)],
        )
        .absolute(total);
    }

    /// A reload published a snapshot; `refused` lists plugin files it did not take.
    pub fn reloaded(&self, refused: &[String]) {
        let result = if refused.is_empty() { "ok" } else { "refused" };
        self.counter("larder_reloads_total", &[("result", result)])
            .increment(1);
        let mut r = self.reloads.lock().unwrap_or_else(PoisonError::into_inner);
        r.ok += 1;
        r.last_at = Some(unix_now());
        if !refused.is_empty() {
            r.refused += 1;
            r.last_error = Some(refused.join("; "));
            r.last_error_at = r.last_at;
        }
    }

    /// A reload was refused as a whole; the previous snapshot keeps serving.
    pub fn reload_failed(&self, error: &str) {
        self.counter("larder_reloads_total", &[("result", "failed")])
            .increment(1);
        let mut r = self.reloads.lock().unwrap_or_else(PoisonError::into_inner);
        r.failed += 1;
        r.last_error = Some(error.to_owned());
        r.last_error_at = Some(unix_now());
    }

    /// Purges of `n` targets of `kind` were applied.
    pub fn invalidated(&self, kind: InvalidationKind, n: usize) {
        if n == 0 {
            return;
        }
        self.invalidations[kind as usize].fetch_add(n as u64, Ordering::Relaxed);
        self.counter("larder_invalidations_total", &[("kind", kind.as_str())])
            .increment(n as u64);
    }

    /// Entries a purge reached (see `Storage::purge`'s count).
    pub fn invalidated_entries(&self, n: u64) {
        self.invalidated_entries.fetch_add(n, Ordering::Relaxed);
        self.counter("larder_invalidated_entries_total", &[])
            .increment(n);
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The Prometheus exposition text. Call [`Telemetry::set_gauges`] first for the
    /// point-in-time values.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets: run periodically (the gateway
    /// does every few seconds), or samples pile up between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Every route's counts, in registration order.
    pub fn route_counts(&self) -> Vec<(String, Arc<RouteCounts>)> {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn reload_stats(&self) -> ReloadStats {
        self.reloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Invalidated targets by kind (tags, keys, prefixes) and entries reached.
    pub fn invalidation_counts(&self) -> ([u64; 3], u64) {
        (
            self.invalidations
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed)),
            self.invalidated_entries.load(Ordering::Relaxed),
        )
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

fn register_histogram(
    recorder: &PrometheusRecorder,
    name: &'static str,
    labels: &[(&'static str, &str)],
) -> Histogram {
    recorder.register_histogram(&key(name, labels), &METADATA)
}

/// Every metric's name, unit and help text, as `/metrics` shows them.
const DESCRIPTIONS: &[(&str, Option<metrics::Unit>, &str)] = &[
    (
        "larder_requests_total",
        None,
        "Client requests by route and cache outcome (hit, stale, miss, pass, error: passed because the policy failed).",
    ),
    (
        "larder_request_duration_seconds",
        Some(metrics::Unit::Seconds),
        "Time to the response's header, by route and cache outcome.",
    ),
    (
        "larder_upstream_duration_seconds",
        Some(metrics::Unit::Seconds),
        "Time from sending a request upstream to its response header, by route.",
    ),
    (
        "larder_response_bytes_total",
        Some(metrics::Unit::Bytes),
        "Response body bytes by route and source (cache, upstream); streamed bodies of unknown length are not counted.",
    ),
    (
        "larder_upstream_saved_seconds",
        Some(metrics::Unit::Seconds),
        "Upstream time the cache saved: for every answer from the cache, how long its fill took.",
    ),
    (
        "larder_coalesced_total",
        None,
        "Requests that waited for another request's fill and were given its response.",
    ),
    (
        "larder_fleet_collapsed_total",
        None,
        "Requests answered from the fill of another instance sharing the Redis store, by route.",
    ),
    (
        "larder_lease_takeovers_total",
        None,
        "Fill leases taken over from an instance that vanished mid-fill (each costs one more upstream request), by route.",
    ),
    (
        "larder_plugin_call_duration_seconds",
        Some(metrics::Unit::Seconds),
        "Policy plugin calls by plugin and version.",
    ),
    (
        "larder_plugin_decisions_reused_total",
        None,
        "Requests answered with the on-request decision of an identical earlier request instead of a plugin call, by plugin and version.",
    ),
    (
        "larder_plugin_errors_total",
        None,
        "Failed policy plugin calls by plugin, version and kind.",
    ),
    (
        "larder_plugin_log_dropped_total",
        None,
        "Log lines policy plugins wrote past the bounds (16 a call, 100 a second per plugin after a burst of 200), dropped, by plugin and version.",
    ),
    (
        "larder_reloads_total",
        None,
        "Reloads by result: ok, refused (published, but a plugin file was refused), failed (nothing published).",
    ),
    (
        "larder_invalidations_total",
        None,
        "Invalidated targets by kind (tag, key, prefix), from writes and /purge.",
    ),
    (
        "larder_store_operation_duration_seconds",
        Some(metrics::Unit::Seconds),
        "Store (Redis, memory tier) lookups and stores, as the request path waited for them.",
    ),
    (
        "larder_store_errors_total",
        None,
        "Failed store operations since start.",
    ),
    (
        "larder_store_up",
        None,
        "1 while the store answers, 0 while it is down or its circuit breaker is open.",
    ),
    (
        "larder_memory_tier_bytes",
        Some(metrics::Unit::Bytes),
        "Bytes held by the memory tier.",
    ),
    (
        "larder_memory_tier_hearing",
        None,
        "1 while the memory tier's invalidation subscription was verified within cache.memory_tier_trust_ms (only then does the tier answer, unless memory_tier_outage = \"serve\").",
    ),
    (
        "larder_memory_tier_bypassed_total",
        None,
        "Lookups that skipped the memory tier because it could not hear purges.",
    ),
    (
        "larder_pending_purges",
        None,
        "Tags of purges Redis has not acknowledged yet; while above 0, nothing is served from Redis.",
    ),
    (
        "larder_pending_purges_overflow",
        None,
        "1 when the pending purges overflowed cache.max_pending_purges: nothing is served from the cache until Redis answers and every entry is dropped.",
    ),
    (
        "larder_client_connections",
        None,
        "Client connections open on the proxy listener.",
    ),
    (
        "larder_client_connections_max",
        None,
        "The proxy listener's connection limit (server.max_connections).",
    ),
    (
        "larder_client_connections_refused_total",
        None,
        "Client connections closed at once because the limit was reached.",
    ),
    (
        "larder_accept_errors_total",
        None,
        "Failed accepts on the proxy listener (e.g. EMFILE); the accept loop backs off.",
    ),
    (
        "larder_fills_in_flight",
        None,
        "Upstream fills (misses and refreshes) in flight that other requests may wait for.",
    ),
];

fn describe(recorder: &PrometheusRecorder) {
    // `describe_counter` serves every kind: the exporter keys descriptions by name.
    for &(name, unit, text) in DESCRIPTIONS {
        recorder.describe_counter(name.into(), unit, text.into());
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
