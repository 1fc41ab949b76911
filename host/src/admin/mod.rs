//! The admin listener: the dashboard, health, metrics, stats, plugins, reload, purge, warm.
//! Bind it to loopback or a private network. Every endpoint answers only to an allowed `Host`
//! and refuses a foreign `Origin`; the mutating ones (reload, purge, warm) also need the admin
//! token (see [`guard`]).

mod dashboard;
mod guard;
pub(crate) mod purge;
mod stats;

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;

use crate::gateway::{Gateway, Snapshot};
use crate::server::connection::Connections;
use crate::store::{Storage, StoreHealth};

/// The admin API of `gw`; `connections` are the proxy listener's, for `/stats` and `/metrics`.
pub fn router(gw: Arc<Gateway>, connections: Arc<Connections>) -> axum::Router {
    axum::Router::new()
        .route("/", get(dashboard::page))
        .route("/metrics", get(stats::metrics))
        .route("/stats", get(stats::stats))
        .route("/health", get(health))
        .route("/plugins", get(plugins))
        .route("/plugins/reload", post(reload))
        .route("/purge", post(purge::purge))
        .route("/warm", post(purge::warm))
        .layer(axum::Extension(connections))
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            guard::same_site,
        ))
        .with_state(gw)
}

#[derive(Serialize)]
struct Health {
    /// `ok`, or `degraded` when the store is down, purges are pending, the memory tier cannot
    /// hear purges, or a plugin file was refused. The gateway serves in both: a degraded
    /// gateway proxies what it cannot cache.
    status: &'static str,
    store: StoreHealth,
    plugins: Vec<PluginInfo>,
    routes: Vec<RouteInfo>,
}

#[derive(Serialize)]
struct PluginInfo {
    name: String,
    /// Content hash of the loaded file (absent when no version loaded).
    version: Option<String>,
    size: Option<usize>,
    /// Unix seconds.
    loaded_at: Option<u64>,
    routes: Vec<String>,
    /// Failed calls of the loaded version.
    errors: u64,
    /// Log lines the loaded version's calls wrote past the bounds (see `policy::sandbox`).
    log_lines_dropped: u64,
    /// Why the latest file was refused, if it was.
    last_error: Option<String>,
}

#[derive(Serialize)]
struct RouteInfo {
    name: String,
    path: String,
    methods: Vec<String>,
    plugin: String,
}

fn plugin_infos(snapshot: &Snapshot) -> Vec<PluginInfo> {
    let routes_of = |name: &str| -> Vec<String> {
        snapshot
            .routes
            .routes()
            .iter()
            .filter(|r| r.config.plugin == name)
            .map(|r| r.config.name.clone())
            .collect()
    };
    let mut out: Vec<PluginInfo> = snapshot
        .plugins
        .plugins()
        .map(|p| PluginInfo {
            name: p.name.to_string(),
            version: Some(p.version.clone()),
            size: Some(p.size),
            loaded_at: p
                .loaded_at
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            routes: routes_of(&p.name),
            errors: p.error_count(),
            log_lines_dropped: p.log_lines_dropped(),
            last_error: snapshot.plugins.errors().get(&*p.name).cloned(),
        })
        .collect();
    for (name, error) in snapshot.plugins.errors() {
        if snapshot.plugins.get(name).is_none() {
            out.push(PluginInfo {
                name: name.clone(),
                version: None,
                size: None,
                loaded_at: None,
                routes: routes_of(name),
                errors: 0,
                log_lines_dropped: 0,
                last_error: Some(error.clone()),
            });
        }
    }
    out
}

async fn health(State(gw): State<Arc<Gateway>>) -> Json<Health> {
    let snapshot = gw.snapshot();
    let store = gw.store.health();
    let degraded = store.degraded() || !snapshot.plugins.errors().is_empty();
    Json(Health {
        status: if degraded { "degraded" } else { "ok" },
        store,
        plugins: plugin_infos(&snapshot),
        routes: snapshot
            .routes
            .routes()
            .iter()
            .map(|r| RouteInfo {
                name: r.config.name.clone(),
                path: r.config.path.clone(),
                methods: r.config.methods.iter().map(|m| m.to_string()).collect(),
                plugin: r.config.plugin.clone(),
            })
            .collect(),
    })
}

async fn plugins(State(gw): State<Arc<Gateway>>) -> Json<Vec<PluginInfo>> {
    Json(plugin_infos(&gw.snapshot()))
}

/// `POST /plugins/reload`: mutating, so it needs the admin token (`SIGHUP` needs none: whoever
/// can signal the process can restart it anyway).
async fn reload(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> axum::response::Response {
    if let Err((status, message)) = guard::authorize(&gw, &headers) {
        return guard::refuse(status, message);
    }
    match crate::reload::reload(&gw).await {
        Ok(report) => (StatusCode::OK, Json(serde_json::json!(report))).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                serde_json::json!({ "error": format!("{e:#}"), "kept": "the running configuration and plugins" }),
            ),
        )
            .into_response(),
    }
}
