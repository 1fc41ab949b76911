//! `POST /purge` and `POST /warm`: invalidation and cache warming by an operator.
//!
//! Both are mutating, so both need the admin token (`Authorization: Bearer $LARDER_ADMIN_TOKEN`,
//! checked by [`super::guard::authorize`]); without a token configured they refuse and say how
//! to set one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use larder_bindings::types::{Invalidation, InvalidationTarget, KeyRef};
use serde::Deserialize;
use serde_json::json;

use super::guard::{authorize, refuse};
use crate::gateway::{Gateway, Snapshot};

/// The request body of a mutating endpoint, once the caller is authorised and the JSON parsed;
/// otherwise the refusal's status and message. `shape` shows a valid body in the 400 message.
fn admit<T>(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    what: &str,
    shape: &str,
) -> Result<T, (StatusCode, String)> {
    authorize(gw, headers).map_err(|(status, message)| (status, message.to_owned()))?;
    body.map(|Json(req)| req).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("bad {what} request: {}; expected {shape}", e.body_text()),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    keys: Vec<RouteParts>,
    #[serde(default)]
    prefixes: Vec<RouteParts>,
    /// Mark stale instead of removing.
    #[serde(default)]
    soft: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteParts {
    route: String,
    parts: Vec<String>,
}

pub async fn purge(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<PurgeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let shape = r#"{"tags": [..], "keys": [{"route": .., "parts": [..]}], "prefixes": [..], "soft": false}"#;
    let req = match admit(&gw, &headers, body, "purge", shape) {
        Ok(req) => req,
        Err((status, message)) => return refuse(status, message),
    };
    let snapshot = gw.snapshot();
    if let Err(message) = req.check(&snapshot) {
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    // The route only matters for keys and prefixes, which all name theirs.
    match crate::proxy::invalidate::apply(&gw, &snapshot, "", &req.invalidations()).await {
        Ok(purged) => {
            tracing::info!(
                tags = req.tags.len(),
                keys = req.keys.len(),
                prefixes = req.prefixes.len(),
                soft = req.soft,
                entries = purged.entries,
                "purged by the admin API"
            );
            Json(json!({
                "purged": { "tags": req.tags.len(), "keys": req.keys.len(), "prefixes": req.prefixes.len() },
                // Entries stored with these tags since their previous purge: what this purge
                // invalidated, counted once per purged tag an entry carries (an upper bound).
                "entries": purged.entries,
                "generations_changed": purged.generations,
                "soft": req.soft,
            }))
            .into_response()
        }
        Err(e) if e.is_pending() => {
            tracing::warn!(error = %e, "purge by the admin API kept pending");
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "pending": true,
                    "message": "Redis did not acknowledge the purge: it is kept pending and applied as soon as Redis answers; until then this instance serves nothing from Redis",
                    "soft": req.soft,
                })),
            )
                .into_response()
        }
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store did not take the purge: {e}; nothing was purged, try again"),
        ),
    }
}

impl PurgeRequest {
    /// Why the request cannot be applied, if it cannot: a key or prefix on a route `snapshot`
    /// does not have, or without parts, or nothing to purge at all.
    fn check(&self, snapshot: &Snapshot) -> Result<(), String> {
        for rp in self.keys.iter().chain(&self.prefixes) {
            if snapshot.routes.named(&rp.route).is_none() {
                return Err(format!("no route named {:?}", rp.route));
            }
            if rp.parts.is_empty() {
                return Err("key parts must not be empty".to_owned());
            }
        }
        if self.tags.is_empty() && self.keys.is_empty() && self.prefixes.is_empty() {
            return Err("nothing to purge: give tags, keys or prefixes".to_owned());
        }
        Ok(())
    }

    /// The request as the invalidations a policy would return: tags, then keys, then prefixes.
    fn invalidations(&self) -> Vec<Invalidation> {
        let key_ref = |rp: &RouteParts| KeyRef {
            route: Some(rp.route.clone()),
            parts: rp.parts.clone(),
        };
        self.tags
            .iter()
            .map(|t| InvalidationTarget::Tag(t.clone()))
            .chain(
                self.keys
                    .iter()
                    .map(|k| InvalidationTarget::Key(key_ref(k))),
            )
            .chain(
                self.prefixes
                    .iter()
                    .map(|k| InvalidationTarget::Prefix(key_ref(k))),
            )
            .map(|target| Invalidation {
                target,
                soft: self.soft,
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmRequest {
    paths: Vec<String>,
    /// Requests in flight at once (default 4, at most 32).
    concurrency: Option<usize>,
}

/// Fetches `paths` through the cache, as a client would, so they are stored before users ask.
pub async fn warm(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<WarmRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let shape = r#"{"paths": ["/.."], "concurrency": n}"#;
    let req = match admit(&gw, &headers, body, "warm", shape) {
        Ok(req) => req,
        Err((status, message)) => return refuse(status, message),
    };
    if req.paths.len() > 10_000 {
        return refuse(StatusCode::BAD_REQUEST, "at most 10000 paths per call");
    }
    if let Some(bad) = req
        .paths
        .iter()
        .find(|p| !p.starts_with('/') || p.parse::<axum::http::Uri>().is_err())
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("{bad:?} is not an absolute path"),
        );
    }
    let concurrency = req.concurrency.unwrap_or(4).clamp(1, 32);
    let results: Vec<serde_json::Value> = futures_util::stream::iter(req.paths)
        .map(|path| {
            let gw = gw.clone();
            async move {
                let request = axum::http::Request::get(path.as_str())
                    .header("x-larder-warm", "1")
                    .body(axum::body::Body::empty())
                    .expect("a checked path builds a request");
                let response = crate::proxy::handle(gw, request).await;
                let status = response.status().as_u16();
                let cache_status = response
                    .headers()
                    .get("cache-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                // Drain the body so the fill completes exactly as for a client.
                let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                json!({ "path": path, "status": status, "cache_status": cache_status })
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    Json(json!({ "results": results })).into_response()
}
