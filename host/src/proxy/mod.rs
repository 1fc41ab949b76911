//! The request path. `docs/request-path.md` draws it, phase by phase, and names the file of
//! each; in the order a request meets them:
//!
//! - `normalize.rs`: one spelling per path, before anything reads it.
//! - this file: [`handle_from`] takes a request; `Exchange::run` matches its route
//!   ([`crate::routes`]) and dispatches it: no route, a write, a POST, a read the policy passes
//!   or looks up.
//! - `policy.rs`: calling the route's policy, and what its failure does; `decisions.rs`: reusing
//!   an `on-request` answer.
//! - `post.rs`: a POST looked up by its body's digest.
//! - `lookup.rs`: the store lookup (following `Vary`, `vary.rs`), and where it leads.
//! - `hit.rs`: answering from the store, fresh or stale.
//! - `coalesce.rs`: one fill per entry; `fill_task.rs`: fills in tasks of their own (a miss's
//!   first request, a background refresh); `fleet.rs`: one fill per entry across the instances
//!   sharing a Redis.
//! - `fill.rs`: the miss: upstream (revalidating, `conditional.rs`) and reading the body.
//! - `storing.rs`: `on-response` and the write to the store.
//! - `write.rs`: unsafe methods: upstream, `on-invalidate`, the purge (`invalidate.rs`).
//! - `pass.rs`: forwarding uncached.
//! - `upstream.rs`: the upstream client; every upstream request is sent, timed and cleaned there.
//! - `respond.rs`: `304`, ranges (`range.rs`), `Cache-Status` (`cache_status.rs`), errors.
//!
//! Failure rules: a plugin failure proxies the request uncached (or answers 502 on a route
//! configured `fail = "closed"`); a store failure is a miss, or a skipped write; only the
//! upstream's own failure reaches the client, as 502 or 504.

pub mod body;
pub mod cache_status;
pub mod coalesce;
pub mod conditional;
pub mod decisions;
mod fill;
mod fill_task;
mod fleet;
mod hit;
pub mod invalidate;
mod lookup;
pub mod normalize;
mod pass;
mod policy;
mod post;
pub mod range;
mod respond;
mod storing;
pub mod upstream;
pub mod vary;
mod write;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Body;
use http::{Method, Request, Response};

use crate::gateway::{Gateway, Snapshot};
use crate::policy::sandbox::Limits;
use crate::policy::{PluginError, convert};
use crate::routes::is_unsafe;
use crate::store::ObjectKey;
use crate::store::key::Digest;
use crate::telemetry::{Class, RouteTelemetry, Served};
use cache_status::{CacheStatus, Forward};
use decisions::Decided;
use policy::{PolicyCall, PolicyRequest};
use post::PostBody;

/// Handles one request of the gateway's own (a warm-up): no client connection, so no
/// `X-Forwarded-For`.
pub async fn handle(gw: Arc<Gateway>, req: Request<Body>) -> Response<Body> {
    handle_from(gw, None, req).await
}

/// Handles one client request from `peer`, the connection's remote address.
pub async fn handle_from(
    gw: Arc<Gateway>,
    peer: Option<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let snapshot = gw.snapshot();
    let request_id = gw.request_id();
    let (mut parts, body) = req.into_parts();
    // One spelling per path: what is routed, keyed and forwarded is the normal form.
    if let Err(e) = normalize::uri(&mut parts.uri) {
        return normalize::refused(&gw, started, e);
    }
    // One set of fields: what is keyed, shown to the policy and forwarded is what remains.
    let peer = peer.map(|p| p.ip());
    upstream::admit(
        &mut parts.headers,
        peer,
        &snapshot.config.server.trusted_proxies,
    );
    let mut cx = Exchange::new(gw, snapshot, request_id, peer, parts);
    let response = cx.run(body).await;
    let elapsed = started.elapsed();
    let cache_status = response
        .headers()
        .get("cache-status")
        .map_or(&b""[..], |v| v.as_bytes());
    let (class, collapsed) = Class::of_cache_status(cache_status);
    let telemetry = cx.telemetry();
    let saved_us = cx.saved_us.load(Ordering::Relaxed);
    telemetry.served(Served {
        class,
        collapsed,
        fleet: collapsed && Class::fleet_collapsed(cache_status),
        elapsed,
        bytes: http_body::Body::size_hint(response.body()).exact(),
        saved_us,
    });
    if tracing::enabled!(tracing::Level::DEBUG) {
        let key = cx.key.get().map(|d| d.to_string());
        tracing::debug!(
            request_id,
            method = %cx.parts.method,
            path = cx.parts.uri.path(),
            route = cx.route.map(|i| cx.snapshot.routes.routes()[i].config.name.as_str()),
            plugin = &*telemetry.plugin,
            key = key.as_deref(),
            status = response.status().as_u16(),
            cache = class.as_str(),
            cache_status = std::str::from_utf8(cache_status).unwrap_or(""),
            upstream_us = cx.upstream_us.load(Ordering::Relaxed),
            saved_us,
            elapsed_us = elapsed.as_micros() as u64,
            "request"
        );
    }
    response
}

/// One request's trip through the phases. It owns its handles on the gateway and the snapshot,
/// so a background refresh can carry on with the same snapshot after the client has its answer.
struct Exchange {
    gw: Arc<Gateway>,
    snapshot: Arc<Snapshot>,
    request_id: u64,
    /// The client connection's remote address (`None` for the gateway's own requests).
    peer: Option<IpAddr>,
    parts: http::request::Parts,
    /// The body of a POST that is looked up by its digest: fills (and background refreshes)
    /// send it upstream again.
    post: Option<PostBody>,
    /// The matched route's index in the snapshot, once matched.
    route: Option<usize>,
    /// The cache key's digest, once the policy gave one (for the request log line).
    key: OnceLock<Digest>,
    /// For an answer from the cache: how long its entry's fill took (the waiting it saved).
    saved_us: AtomicU64,
    /// Time spent waiting for upstream response headers; shared with the exchanges detached
    /// from this one (a fill, a write), whose upstream requests are this request's.
    upstream_us: Arc<AtomicU64>,
}

impl Exchange {
    fn new(
        gw: Arc<Gateway>,
        snapshot: Arc<Snapshot>,
        request_id: u64,
        peer: Option<IpAddr>,
        parts: http::request::Parts,
    ) -> Self {
        Exchange {
            gw,
            snapshot,
            request_id,
            peer,
            parts,
            post: None,
            route: None,
            key: OnceLock::new(),
            saved_us: AtomicU64::new(0),
            upstream_us: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The matched route's counters (the unrouted ones before a match).
    fn telemetry(&self) -> &RouteTelemetry {
        match self.route {
            Some(i) => &self.snapshot.telemetry[i],
            None => &self.gw.telemetry.unrouted,
        }
    }

    /// Sends the request down its path: upstream untouched when no route matches; a write
    /// (`write.rs`) or a POST looked up by its body (`post.rs`) for an unsafe method; else the
    /// policy's decision (`policy.rs`), and a pass (`pass.rs`) or a lookup (`lookup.rs`).
    #[warn(clippy::large_futures)]
    async fn run(&mut self, body: Body) -> Response<Body> {
        let snapshot = self.snapshot.clone();
        let Some(matched) = snapshot
            .routes
            .find(&self.parts.method, self.parts.uri.path())
        else {
            let status = CacheStatus::forward(Forward::Bypass).detail("no-route");
            let timeout = snapshot.config.server.upstream_timeout;
            return boxed(self.pass_through(body, timeout, status)).await;
        };
        self.route = Some(matched.route.index);
        let route = matched.route;
        let limits = Limits {
            deadline: route.config.deadline,
            memory: snapshot.config.plugins.memory_limit,
        };
        let Some(plugin) = snapshot.plugins.get(&route.config.plugin) else {
            let e = PluginError::NotLoaded {
                plugin: route.config.plugin.clone(),
            };
            return boxed(self.plugin_failed(e, None, &route.config, body)).await;
        };
        if is_unsafe(&self.parts.method) {
            let policy = PolicyCall {
                route,
                plugin,
                limits,
                req: PolicyRequest::Built(convert::request(&self.parts, &matched)),
            };
            if self.parts.method == Method::POST
                && route.config.cache_post
                && route.config.methods.contains(&Method::POST)
            {
                return boxed(self.post_lookup(&policy, body)).await;
            }
            return boxed(self.write_through(&policy, body)).await;
        }
        let (decided, req) = match self.decide(&matched, plugin, limits).await {
            Ok(decided) => decided,
            Err(e) => {
                return boxed(self.plugin_failed(e, Some(plugin), &route.config, body)).await;
            }
        };
        let base = match self.looked_up_as(decided, &body) {
            Ok(base) => base,
            Err(status) => {
                let timeout = route.config.upstream_timeout;
                return boxed(self.pass_through(body, timeout, status)).await;
            }
        };
        let policy = PolicyCall {
            route,
            plugin,
            limits,
            req: match req {
                Some(req) => PolicyRequest::Built(req),
                None => PolicyRequest::Lazy {
                    parts: &self.parts,
                    matched: &matched,
                    built: OnceLock::new(),
                },
            },
        };
        let response = self.cached(&policy, base, body).await;
        self.as_asked(response).await
    }

    /// The key a safe request is looked up under, or, for a request that goes upstream
    /// uncached, its `Cache-Status`: the policy passed it, its method is not GET or HEAD, or it
    /// has content.
    fn looked_up_as(&self, decided: Decided, body: &Body) -> Result<ObjectKey, CacheStatus> {
        match decided {
            Decided::Pass(reason) => Err(CacheStatus::forward(Forward::Bypass).detail(&reason)),
            Decided::Lookup(_)
                if self.parts.method != Method::GET && self.parts.method != Method::HEAD =>
            {
                Err(CacheStatus::forward(Forward::Method))
            }
            // A GET or HEAD with content (RFC 9110 section 9.3.1: it has no defined meaning,
            // yet an origin may answer by it) is neither answered from the cache nor stored:
            // its key cannot say what the body asked for. It goes upstream as it came.
            Decided::Lookup(_) if !http_body::Body::is_end_stream(body) => {
                Err(CacheStatus::forward(Forward::Bypass).detail("request-body"))
            }
            Decided::Lookup(base) => Ok(base),
        }
    }

    /// An owned copy of this exchange as a `method` request, for work that must outlive the
    /// client's request (fills, refreshes, writes).
    fn detached(&self, method: Method) -> Exchange {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.parts.uri.clone())
            .version(self.parts.version);
        if let Some(headers) = builder.headers_mut() {
            *headers = self.parts.headers.clone();
        }
        let (parts, _) = builder
            .body(())
            .expect("parts of a valid request make a valid request")
            .into_parts();
        let mut cx = Exchange::new(
            self.gw.clone(),
            self.snapshot.clone(),
            self.request_id,
            self.peer,
            parts,
        );
        cx.post = self.post.clone();
        cx.route = self.route;
        cx.upstream_us = self.upstream_us.clone();
        cx
    }
}

/// Boxes a branch off the hit path, to be awaited.
///
/// An `async fn`'s future is as large as the largest future it awaits in place, and it is
/// moved whole: had `Exchange::run` awaited a fill or a POST lookup in place (each holds an
/// upstream request, a policy call and their state: about 5 KiB each, against under 5 KiB for
/// all of `run`), every request, hits included, would carry and copy that size. Boxed, a branch
/// costs one allocation, and only when it is taken; the other branches of `run` (a
/// pass-through, a failed policy, a write, a range) are boxed for the same reason, so that
/// none of them can become the largest state of every request.
///
/// `clippy::large_futures`, enabled on `run` and `Exchange::cached` with the threshold in
/// `clippy.toml` (4 KiB), refuses a future that large awaited in place there: it catches an
/// unboxed fill or POST lookup. The smaller branches stay under it, so their boxes are kept by
/// this comment, not by the lint.
fn boxed<F: Future>(future: F) -> Pin<Box<F>> {
    Box::pin(future)
}
