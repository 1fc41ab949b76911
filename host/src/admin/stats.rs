//! `GET /metrics` (Prometheus text) and `GET /stats` (JSON, what the dashboard draws).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Serialize;

use super::{PluginInfo, plugin_infos};
use crate::gateway::Gateway;
use crate::server::connection::{ConnectionStats, Connections};
use crate::store::{Storage, StoreHealth};
use crate::telemetry::{ReloadStats, Stats};

#[derive(Serialize)]
pub struct StatsPage {
    /// `ok`, or `degraded` (as in `/health`).
    status: &'static str,
    #[serde(flatten)]
    stats: Stats,
    store: StoreHealth,
    plugins: Vec<PluginInfo>,
    reloads: ReloadStats,
    invalidations: Invalidations,
    /// Upstream fills in flight that other requests may wait for.
    fills_in_flight: usize,
    /// The proxy listener's client connections: open, the limit, refused over it, failed
    /// accepts.
    connections: ConnectionStats,
}

#[derive(Serialize)]
struct Invalidations {
    tags: u64,
    keys: u64,
    prefixes: u64,
    /// Entries the purges reached (an upper bound: see `POST /purge`).
    entries: u64,
}

pub async fn stats(
    State(gw): State<Arc<Gateway>>,
    Extension(connections): Extension<Arc<Connections>>,
) -> Json<StatsPage> {
    let snapshot = gw.snapshot();
    let t = &gw.telemetry;
    let store = gw.store.health();
    let ([tags, keys, prefixes], entries) = t.invalidation_counts();
    Json(StatsPage {
        status: if store.up && snapshot.plugins.errors().is_empty() {
            "ok"
        } else {
            "degraded"
        },
        stats: Stats::of(&t.route_counts(), t.uptime().as_secs()),
        store,
        plugins: plugin_infos(&snapshot),
        reloads: t.reload_stats(),
        invalidations: Invalidations {
            tags,
            keys,
            prefixes,
            entries,
        },
        fills_in_flight: gw.coalescer.in_flight(),
        connections: connections.stats(),
    })
}

pub async fn metrics(
    State(gw): State<Arc<Gateway>>,
    Extension(connections): Extension<Arc<Connections>>,
) -> impl IntoResponse {
    let t = &gw.telemetry;
    let c = connections.stats();
    t.gauge("larder_client_connections", &[]).set(c.open as f64);
    t.gauge("larder_client_connections_max", &[])
        .set(c.max as f64);
    t.counter("larder_client_connections_refused_total", &[])
        .absolute(c.refused);
    t.counter("larder_accept_errors_total", &[])
        .absolute(c.accept_errors);
    let store = gw.store.health();
    t.gauge("larder_store_up", &[("kind", store.kind)])
        .set(if store.up { 1.0 } else { 0.0 });
    t.counter("larder_store_errors_total", &[("kind", store.kind)])
        .absolute(store.errors);
    if let Some(tier) = &store.memory_tier {
        t.gauge("larder_memory_tier_bytes", &[])
            .set(tier.bytes as f64);
        t.gauge("larder_memory_tier_entries", &[])
            .set(tier.entries as f64);
        t.gauge("larder_memory_tier_subscribed", &[])
            .set(if tier.subscribed { 1.0 } else { 0.0 });
        t.gauge("larder_memory_tier_hearing", &[])
            .set(if tier.hearing { 1.0 } else { 0.0 });
        t.counter("larder_memory_tier_bypassed_total", &[])
            .absolute(tier.bypassed);
    }
    t.gauge("larder_pending_purges", &[])
        .set(store.pending_purges as f64);
    t.gauge("larder_pending_purges_overflow", &[])
        .set(if store.pending_overflow { 1.0 } else { 0.0 });
    t.gauge("larder_fills_in_flight", &[])
        .set(gw.coalescer.in_flight() as f64);
    t.gauge("larder_uptime_seconds", &[])
        .set(t.uptime().as_secs_f64());
    let snapshot = gw.snapshot();
    for p in snapshot.plugins.plugins() {
        t.gauge(
            "larder_plugin_loaded",
            &[("plugin", &p.name), ("version", &p.version)],
        )
        .set(1.0);
        t.gauge("larder_plugin_idle_instances", &[("plugin", &p.name)])
            .set(p.idle_instances() as f64);
        t.plugin_log_dropped(&p.name, &p.version, p.log_lines_dropped());
    }
    t.gauge("larder_plugin_refused", &[])
        .set(snapshot.plugins.errors().len() as f64);
    t.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.render(),
    )
}
