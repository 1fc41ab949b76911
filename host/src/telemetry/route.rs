//! A route's counters: plain atomics for `/stats`, and the Prometheus handles for `/metrics`,
//! all registered when the snapshot is built so that a request only adds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::{Class, Telemetry};

/// What `/stats` reports for a route. Kept across reloads: a route's history survives a new
/// plugin version.
#[derive(Debug, Default)]
pub struct RouteCounts {
    pub(super) requests: [AtomicU64; 5],
    /// Summed time to the response header, per class, in microseconds.
    pub(super) latency_us: [AtomicU64; 5],
    pub(super) coalesced: AtomicU64,
    /// Of those, requests answered from another instance's fill.
    pub(super) fleet_collapsed: AtomicU64,
    /// Fill leases this instance took over from an instance that vanished mid-fill.
    pub(super) lease_takeovers: AtomicU64,
    pub(super) bytes_from_cache: AtomicU64,
    pub(super) bytes_from_upstream: AtomicU64,
    /// Summed fill time of the entries answered from the cache, in microseconds.
    pub(super) saved_us: AtomicU64,
    pub(super) upstream_us: AtomicU64,
    pub(super) upstream_calls: AtomicU64,
    pub(super) plugin_us: AtomicU64,
    pub(super) plugin_calls: AtomicU64,
    /// `on-request` answers reused for an identical request instead of a call.
    pub(super) decisions_reused: AtomicU64,
}

/// One request's facts, as the request path gathered them.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub class: Class,
    pub collapsed: bool,
    /// Collapsed onto another instance's fill.
    pub fleet: bool,
    /// Time to the response header.
    pub elapsed: Duration,
    /// Body length, when known before streaming.
    pub bytes: Option<u64>,
    /// For an answer from the cache: how long the entry's fill took, in microseconds.
    pub saved_us: u64,
}

/// The handles of one route in one snapshot.
pub struct RouteTelemetry {
    counts: Arc<RouteCounts>,
    requests: [Counter; 5],
    durations: [Histogram; 5],
    bytes_from_cache: Counter,
    bytes_from_upstream: Counter,
    saved: Gauge,
    coalesced: Counter,
    fleet_collapsed: Counter,
    lease_takeovers: Counter,
    upstream: Histogram,
    plugin_calls: Histogram,
    decisions_reused: Counter,
    pub plugin: Arc<str>,
    pub version: Arc<str>,
}

impl RouteTelemetry {
    pub(super) fn new(
        t: &Telemetry,
        counts: Arc<RouteCounts>,
        route: &str,
        plugin: &str,
        version: &str,
    ) -> Self {
        let by_class = |name: &'static str| Class::ALL.map(|c| (name, c.as_str()));
        Self {
            counts,
            requests: by_class("larder_requests_total")
                .map(|(name, class)| t.counter(name, &[("route", route), ("cache", class)])),
            durations: by_class("larder_request_duration_seconds")
                .map(|(name, class)| t.histogram(name, &[("route", route), ("cache", class)])),
            bytes_from_cache: t.counter(
                "larder_response_bytes_total",
                &[("route", route), ("source", "cache")],
            ),
            bytes_from_upstream: t.counter(
                "larder_response_bytes_total",
                &[("route", route), ("source", "upstream")],
            ),
            saved: t.gauge("larder_upstream_saved_seconds", &[("route", route)]),
            coalesced: t.counter("larder_coalesced_total", &[("route", route)]),
            fleet_collapsed: t.counter("larder_fleet_collapsed_total", &[("route", route)]),
            lease_takeovers: t.counter("larder_lease_takeovers_total", &[("route", route)]),
            upstream: t.histogram("larder_upstream_duration_seconds", &[("route", route)]),
            plugin_calls: t.histogram(
                "larder_plugin_call_duration_seconds",
                &[("plugin", plugin), ("version", version)],
            ),
            decisions_reused: t.counter(
                "larder_plugin_decisions_reused_total",
                &[("plugin", plugin), ("version", version)],
            ),
            plugin: plugin.into(),
            version: version.into(),
        }
    }

    /// Handles that count nowhere, until [`Telemetry::new`] replaces them.
    pub(super) fn placeholder() -> Self {
        Self {
            counts: Arc::default(),
            requests: std::array::from_fn(|_| Counter::noop()),
            durations: std::array::from_fn(|_| Histogram::noop()),
            bytes_from_cache: Counter::noop(),
            bytes_from_upstream: Counter::noop(),
            saved: Gauge::noop(),
            coalesced: Counter::noop(),
            fleet_collapsed: Counter::noop(),
            lease_takeovers: Counter::noop(),
            upstream: Histogram::noop(),
            plugin_calls: Histogram::noop(),
            decisions_reused: Counter::noop(),
            plugin: "".into(),
            version: "".into(),
        }
    }

    /// This instance took over the fill lease of an instance that vanished mid-fill.
    pub fn lease_taken_over(&self) {
        self.counts.lease_takeovers.fetch_add(1, Ordering::Relaxed);
        self.lease_takeovers.increment(1);
    }

    /// Counts one answered request.
    pub fn served(&self, s: Served) {
        let c = &self.counts;
        let i = s.class as usize;
        c.requests[i].fetch_add(1, Ordering::Relaxed);
        c.latency_us[i].fetch_add(micros(s.elapsed), Ordering::Relaxed);
        self.requests[i].increment(1);
        self.durations[i].record(s.elapsed.as_secs_f64());
        if s.collapsed {
            c.coalesced.fetch_add(1, Ordering::Relaxed);
            self.coalesced.increment(1);
        }
        if s.fleet {
            c.fleet_collapsed.fetch_add(1, Ordering::Relaxed);
            self.fleet_collapsed.increment(1);
        }
        if let Some(n) = s.bytes {
            if s.class.from_cache() {
                c.bytes_from_cache.fetch_add(n, Ordering::Relaxed);
                self.bytes_from_cache.increment(n);
            } else {
                c.bytes_from_upstream.fetch_add(n, Ordering::Relaxed);
                self.bytes_from_upstream.increment(n);
            }
        }
        if s.saved_us > 0 {
            c.saved_us.fetch_add(s.saved_us, Ordering::Relaxed);
            self.saved.increment(s.saved_us as f64 / 1e6);
        }
    }

    /// Counts one upstream request, timed to its response header.
    pub fn upstream(&self, took: Duration) {
        self.counts
            .upstream_us
            .fetch_add(micros(took), Ordering::Relaxed);
        self.counts.upstream_calls.fetch_add(1, Ordering::Relaxed);
        self.upstream.record(took.as_secs_f64());
    }

    /// Counts one plugin call.
    pub fn plugin_call(&self, took: Duration) {
        self.counts
            .plugin_us
            .fetch_add(micros(took), Ordering::Relaxed);
        self.counts.plugin_calls.fetch_add(1, Ordering::Relaxed);
        self.plugin_calls.record(took.as_secs_f64());
    }

    /// Counts an `on-request` answer reused instead of a call.
    pub fn decision_reused(&self) {
        self.counts.decisions_reused.fetch_add(1, Ordering::Relaxed);
        self.decisions_reused.increment(1);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
