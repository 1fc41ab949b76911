//! The request path, phase by phase.
//!
//! ```text
//! client ─► route ─► on-request ─► lookup ──hit──► respond from the store
//!            │          │            │ └─stale, in its stale-while-revalidate window──►
//!            │          │            │      respond stale, refresh once in the background
//!            │          pass         miss/stale
//!            │          │            ▼
//!            │          │       coalesce: the first miss fills, the others wait for it
//!            │          │            ▼
//!            │          └──────► upstream ─► on-response ─► store ─► respond
//!            │                       └─fails, in the stale-if-error window──► respond stale
//!            │
//!            ├─ no route: upstream, untouched
//!            └─ unsafe method: upstream ─► (2xx/3xx) on-invalidate ─► purge ─► respond
//! ```
//!
//! Failure rules: a plugin failure proxies the request uncached (or answers 502 on a route
//! configured `fail = "closed"`); a store failure is a miss, or a skipped write; only the
//! upstream's own failure reaches the client, as 502 or 504.

pub mod body;
pub mod cache_status;
pub mod coalesce;
pub mod invalidate;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use larder_bindings::types::{CacheKey, RequestDecision, ResponseDecision, StoreDirective};

use crate::config::{FailMode, RouteConfig};
use crate::gateway::{Gateway, Snapshot};
use crate::policy::sandbox::Limits;
use crate::policy::{Plugin, PluginError, convert};
use crate::store::key::tag_id;
use crate::store::{
    Entry, EntryMeta, NewEntry, ObjectKey, Standing, Storage, StoreOutcome, now_ms,
};
use body::Buffered;
use cache_status::{CacheStatus, Forward};
use coalesce::{Role, Shared};
use upstream::UpstreamError;

/// Handles one client request.
pub async fn handle(gw: Arc<Gateway>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let snapshot = gw.snapshot();
    let request_id = gw.request_id();
    let (parts, body) = req.into_parts();
    let mut cx = Exchange {
        gw,
        snapshot,
        request_id,
        parts,
    };
    let response = cx.run(body).await;
    tracing::debug!(
        request_id,
        method = %cx.parts.method,
        path = cx.parts.uri.path(),
        status = response.status().as_u16(),
        cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// One request's trip through the phases. It owns its handles on the gateway and the snapshot,
/// so a background refresh can carry on with the same snapshot after the client has its answer.
struct Exchange {
    gw: Arc<Gateway>,
    snapshot: Arc<Snapshot>,
    request_id: u64,
    parts: http::request::Parts,
}

/// The route's policy, as the fill needs it.
struct PolicyCall<'a> {
    route: &'a RouteConfig,
    plugin: &'a Arc<Plugin>,
    limits: Limits,
    req: &'a larder_bindings::types::Request,
}

/// Why a stale entry is served.
#[derive(Clone, Copy)]
enum StaleReason {
    WhileRevalidate,
    SoftPurged,
    IfError,
}

impl StaleReason {
    fn as_str(self) -> &'static str {
        match self {
            StaleReason::WhileRevalidate => "stale-while-revalidate",
            StaleReason::SoftPurged => "soft-purged",
            StaleReason::IfError => "stale-if-error",
        }
    }
}

/// A usable entry that is not fresh: expired, or soft-purged.
struct Stale {
    entry: Entry,
    /// Seconds past its freshness (0 for a soft-purged entry that was still fresh).
    past: u64,
}

impl Stale {
    fn within(&self, window: u32) -> bool {
        window > 0 && self.past <= u64::from(window)
    }
}

impl Exchange {
    async fn run(&mut self, body: Body) -> Response<Body> {
        let snapshot = self.snapshot.clone();
        let default_timeout = snapshot.config.server.upstream_timeout;
        let Some(matched) = snapshot
            .routes
            .find(&self.parts.method, self.parts.uri.path())
        else {
            let status = CacheStatus::forward(Forward::Bypass).detail("no-route");
            return self.pass_through(body, default_timeout, status).await;
        };
        let route = &matched.route.config;
        let limits = Limits {
            deadline: route.deadline,
            memory: snapshot.config.plugins.memory_limit,
        };
        let Some(plugin) = snapshot.plugins.get(&route.plugin) else {
            let e = PluginError::NotLoaded {
                plugin: route.plugin.clone(),
            };
            return self.plugin_failed(e, None, route, body).await;
        };
        let policy_req = convert::request(&self.parts, &matched);
        let policy = PolicyCall {
            route,
            plugin,
            limits,
            req: &policy_req,
        };

        if is_unsafe(&self.parts.method) {
            return self.write_through(&policy, body).await;
        }

        let key = match plugin
            .on_request(self.request_id, limits, &policy_req)
            .await
        {
            Err(e) => return self.plugin_failed(e, Some(plugin), route, body).await,
            Ok(RequestDecision::Pass(reason)) => {
                let status = CacheStatus::forward(Forward::Bypass).detail(&reason);
                return self
                    .pass_through(body, route.upstream_timeout, status)
                    .await;
            }
            Ok(RequestDecision::Lookup(_))
                if self.parts.method != Method::GET && self.parts.method != Method::HEAD =>
            {
                let status = CacheStatus::forward(Forward::Method);
                return self
                    .pass_through(body, route.upstream_timeout, status)
                    .await;
            }
            Ok(RequestDecision::Lookup(key)) => key,
        };
        let object = self.object_key(&route.name, &key);

        let mut status = CacheStatus::forward(Forward::Miss);
        let mut stale = None;
        match self.gw.store.lookup(&object).await {
            Ok(Some(found)) => {
                let now = now_ms();
                let ttl_left = found.entry.meta.ttl_left(now);
                let soft_purged = found.standing == Standing::SoftPurged;
                if !soft_purged && ttl_left > 0 {
                    return self.serve_hit(found.entry, now, None);
                }
                let candidate = Stale {
                    past: u64::try_from(-ttl_left).unwrap_or(0),
                    entry: found.entry,
                };
                if candidate.within(candidate.entry.meta.stale_while_revalidate) {
                    self.refresh_in_background(&policy, object);
                    let reason = if soft_purged {
                        StaleReason::SoftPurged
                    } else {
                        StaleReason::WhileRevalidate
                    };
                    return self.serve_hit(candidate.entry, now, Some(reason));
                }
                status = CacheStatus::forward(Forward::Stale);
                stale = Some(candidate);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(request_id = self.request_id, error = %e, "lookup failed; treating as a miss");
                status = status.detail("store-unavailable");
            }
        }
        if self.parts.method == Method::GET {
            match self.gw.coalescer.join(&object.route, object.digest) {
                Role::Leader(leader) => {
                    let fill =
                        self.detached_fill(&policy, object, status, stale, body, false, move |f| {
                            leader.publish(f.shareable())
                        });
                    return match fill.await {
                        Ok(Some(filled)) => filled.into_response(),
                        // The fill task panicked. (Its route lookup cannot fail: the task
                        // runs on this request's snapshot.)
                        _ => error_response(
                            StatusCode::BAD_GATEWAY,
                            &CacheStatus::forward(Forward::Miss).detail("fill-failed"),
                            "the fill for this request failed",
                        ),
                    };
                }
                Role::Follower(follower) => {
                    let wait = tokio::time::timeout(route.upstream_timeout, follower.wait()).await;
                    if let Ok(Some(shared)) = wait {
                        return collapsed(&shared);
                    }
                    // Not shareable, or the wait ran out: upstream on our own.
                }
            }
        }
        self.fill(&policy, object, status, stale, body)
            .await
            .into_response()
    }

    fn object_key(&self, route: &str, key: &CacheKey) -> ObjectKey {
        let values: Vec<String> = key
            .vary
            .iter()
            .map(|name| {
                let mut joined = String::new();
                for v in self.parts.headers.get_all(name.as_str()) {
                    if !joined.is_empty() {
                        joined.push_str(", ");
                    }
                    joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
                joined
            })
            .collect();
        let vary: Vec<(&str, &str)> = key
            .vary
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(String::as_str))
            .collect();
        ObjectKey::derive(route, &key.parts, &vary)
    }

    /// Answers from a stored entry: fresh, or stale for `stale`'s reason.
    fn serve_hit(&self, entry: Entry, now: u64, stale: Option<StaleReason>) -> Response<Body> {
        let ttl = entry.meta.ttl_left(now);
        let age = entry.meta.age(now);
        let body = if self.parts.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(entry.body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers;
        let status = match stale {
            None => CacheStatus::hit(ttl),
            // A stale answer never claims freshness left.
            Some(reason) => CacheStatus::hit(ttl.min(0)).detail(reason.as_str()),
        };
        finish(&mut response, &status, Some(age));
        response
    }

    /// Refreshes `object` from the upstream after the client got its stale answer. The refresh
    /// is an ordinary coalesced fill: while it (or any other fill of the entry) is in flight,
    /// no second one starts, however many clients are served stale meanwhile.
    fn refresh_in_background(&self, policy: &PolicyCall<'_>, object: ObjectKey) {
        let Role::Leader(leader) = self.gw.coalescer.join(&object.route, object.digest) else {
            return;
        };
        let status = CacheStatus::forward(Forward::Stale).detail("background-refresh");
        self.detached_fill(
            policy,
            object,
            status,
            None,
            Body::empty(),
            true,
            move |f| leader.publish(f.shareable()),
        );
    }

    /// Runs a fill in a task of its own, on an owned copy of this exchange (as a GET), so it
    /// completes whatever happens to the client that caused it; `done` sees the result first.
    ///
    /// With `unless_fresh`, the task first looks the entry up again and does nothing if it is
    /// fresh: a refresh that finished between this request's lookup and its claim on the fill
    /// must not be followed by a second one.
    #[allow(clippy::too_many_arguments)]
    fn detached_fill(
        &self,
        policy: &PolicyCall<'_>,
        object: ObjectKey,
        status: CacheStatus,
        stale: Option<Stale>,
        body: Body,
        unless_fresh: bool,
        done: impl FnOnce(&Filled) + Send + 'static,
    ) -> tokio::task::JoinHandle<Option<Filled>> {
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(self.parts.uri.clone())
            .version(self.parts.version);
        if let Some(headers) = builder.headers_mut() {
            *headers = self.parts.headers.clone();
        }
        let (parts, _) = builder
            .body(())
            .expect("parts of a valid request make a valid request")
            .into_parts();
        let cx = Exchange {
            gw: self.gw.clone(),
            snapshot: self.snapshot.clone(),
            request_id: self.request_id,
            parts,
        };
        let (route_name, plugin, limits, req) = (
            policy.route.name.clone(),
            policy.plugin.clone(),
            policy.limits,
            policy.req.clone(),
        );
        tokio::spawn(async move {
            if unless_fresh
                && let Ok(Some(found)) = cx.gw.store.lookup(&object).await
                && found.standing == Standing::Current
                && found.entry.meta.ttl_left(now_ms()) > 0
            {
                return None;
            }
            let route = cx
                .snapshot
                .routes
                .routes()
                .iter()
                .find(|r| r.config.name == route_name)?;
            let policy = PolicyCall {
                route: &route.config,
                plugin: &plugin,
                limits,
                req: &req,
            };
            let filled = cx.fill(&policy, object, status, stale, body).await;
            done(&filled);
            Some(filled)
        })
    }

    /// The miss path: upstream, policy, store, respond. `stale` is served instead if the
    /// upstream fails within the entry's stale-if-error window.
    async fn fill(
        &self,
        policy: &PolicyCall<'_>,
        object: ObjectKey,
        status: CacheStatus,
        stale: Option<Stale>,
        body: Body,
    ) -> Filled {
        let route = policy.route;
        let fill_started_us = crate::store::tags::now_us();
        let serve_stale = |stale: Option<Stale>| {
            stale
                .filter(|s| s.within(s.entry.meta.stale_if_error))
                .map(|s| {
                    Filled::Other(self.serve_hit(s.entry, now_ms(), Some(StaleReason::IfError)))
                })
        };
        let upstream = match self
            .gw
            .upstream
            .send(&self.parts, body, route.upstream_timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return serve_stale(stale)
                    .unwrap_or_else(|| Filled::Other(upstream_failed(&e, status)));
            }
        };
        let (mut rparts, rbody) = upstream.into_parts();
        if rparts.status.is_server_error()
            && let Some(r) = serve_stale(stale)
        {
            return r;
        }
        let status = status.fwd_status(rparts.status.as_u16());
        upstream::strip_hop_by_hop(&mut rparts.headers);

        let max = self.snapshot.config.cache.max_object_size;
        if self.parts.method == Method::HEAD {
            let status = status.detail("head");
            return Filled::Other(respond(rparts, Body::new(rbody), &status, None));
        }
        if content_length(&rparts.headers).is_some_and(|n| n > max as u64) {
            let status = status.detail("too-large");
            return Filled::Other(respond(rparts, Body::new(rbody), &status, None));
        }
        let bytes =
            match tokio::time::timeout(route.upstream_timeout, body::buffer(rbody, max)).await {
                Err(_) => {
                    let e = UpstreamError::Timeout(route.upstream_timeout);
                    return Filled::Other(upstream_failed(&e, status));
                }
                Ok(Err(e)) => {
                    let e = UpstreamError::Body(e.to_string());
                    return Filled::Other(upstream_failed(&e, status));
                }
                Ok(Ok(Buffered::TooLarge(body))) => {
                    let status = status.detail("too-large");
                    return Filled::Other(respond(rparts, body, &status, None));
                }
                Ok(Ok(Buffered::Complete(bytes))) => bytes,
            };

        let policy_resp =
            convert::response(rparts.status, &rparts.headers, Some(bytes.len() as u64));
        let directive = match policy
            .plugin
            .on_response(self.request_id, policy.limits, policy.req, &policy_resp)
            .await
        {
            Err(e) => {
                policy.plugin.count_error();
                self.log_plugin_error(&e, route.fail);
                if route.fail == FailMode::Closed {
                    return Filled::Other(plugin_closed(&e));
                }
                return Filled::complete(rparts, bytes, status.detail(e.as_str()), None, false);
            }
            Ok(ResponseDecision::NoStore(reason)) => {
                return Filled::complete(rparts, bytes, status.detail(&reason), None, false);
            }
            Ok(ResponseDecision::Store(d)) => d,
        };

        let (entry, age) =
            self.new_entry(&rparts, bytes.clone(), &object, fill_started_us, directive);
        // Collapsed requests may share what the policy stored, even when the store itself
        // failed; never what a purge overtook.
        let (status, share) = match self.gw.store.store(&object, entry).await {
            Ok(StoreOutcome::Stored) => (status.stored(), true),
            Ok(StoreOutcome::PurgedDuringFill) => (status.detail("purged-during-fill"), false),
            Err(e) => {
                tracing::debug!(request_id = self.request_id, error = %e, "store failed");
                (status.detail("store-unavailable"), true)
            }
        };
        Filled::complete(rparts, bytes, status, Some(age), share)
    }

    fn new_entry(
        &self,
        rparts: &http::response::Parts,
        body: Bytes,
        object: &ObjectKey,
        fill_started_us: u64,
        d: StoreDirective,
    ) -> (NewEntry, u64) {
        let mut headers = rparts.headers.clone();
        let initial_age = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        headers.remove(header::AGE);
        // A cookie set for one client must never be replayed to another, whatever the policy.
        headers.remove(header::SET_COOKIE);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let mut tags = object.implicit_tags.clone();
        tags.extend(d.tags.iter().map(|t| tag_id(t)));
        let entry = NewEntry {
            status: rparts.status,
            headers,
            body,
            meta: EntryMeta {
                stored_at_ms: now_ms(),
                fill_started_us,
                initial_age,
                ttl: d.ttl,
                stale_while_revalidate: d.stale_while_revalidate,
                stale_if_error: d.stale_if_error,
            },
            tags,
        };
        (entry, u64::from(initial_age))
    }

    /// Unsafe methods: forward, then let the policy say what the write invalidated.
    async fn write_through(&self, policy: &PolicyCall<'_>, body: Body) -> Response<Body> {
        let route = policy.route;
        let status = CacheStatus::forward(Forward::Method);
        let upstream = match self
            .gw
            .upstream
            .send(&self.parts, body, route.upstream_timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => return upstream_failed(&e, status),
        };
        let (mut rparts, rbody) = upstream.into_parts();
        let mut status = status.fwd_status(rparts.status.as_u16());
        upstream::strip_hop_by_hop(&mut rparts.headers);
        if rparts.status.is_success() || rparts.status.is_redirection() {
            let policy_resp = convert::response(
                rparts.status,
                &rparts.headers,
                content_length(&rparts.headers),
            );
            match policy
                .plugin
                .on_invalidate(self.request_id, policy.limits, policy.req, &policy_resp)
                .await
            {
                Err(e) => {
                    policy.plugin.count_error();
                    self.log_plugin_error(&e, route.fail);
                    status = status.detail(e.as_str());
                }
                Ok(list) if list.is_empty() => {}
                Ok(list) => {
                    match invalidate::apply(&self.gw, &self.snapshot, &route.name, &list).await {
                        Ok(n) => {
                            tracing::debug!(request_id = self.request_id, tags = n, "invalidated");
                        }
                        Err(e) => {
                            tracing::error!(request_id = self.request_id, error = %e, "invalidation failed");
                            status = status.detail("invalidation-failed");
                        }
                    }
                }
            }
        }
        respond(rparts, Body::new(rbody), &status, None)
    }

    /// Forwards without caching.
    async fn pass_through(
        &self,
        body: Body,
        timeout: Duration,
        status: CacheStatus,
    ) -> Response<Body> {
        match self.gw.upstream.send(&self.parts, body, timeout).await {
            Ok(r) => {
                let (mut rparts, rbody) = r.into_parts();
                upstream::strip_hop_by_hop(&mut rparts.headers);
                let status = status.fwd_status(rparts.status.as_u16());
                respond(rparts, Body::new(rbody), &status, None)
            }
            Err(e) => upstream_failed(&e, status),
        }
    }

    async fn plugin_failed(
        &self,
        e: PluginError,
        plugin: Option<&Arc<Plugin>>,
        route: &RouteConfig,
        body: Body,
    ) -> Response<Body> {
        if let Some(p) = plugin {
            p.count_error();
        }
        self.log_plugin_error(&e, route.fail);
        if route.fail == FailMode::Closed {
            return plugin_closed(&e);
        }
        let status = CacheStatus::forward(Forward::Bypass).detail(e.as_str());
        self.pass_through(body, route.upstream_timeout, status)
            .await
    }

    fn log_plugin_error(&self, e: &PluginError, fail: FailMode) {
        tracing::warn!(
            request_id = self.request_id,
            kind = e.as_str(),
            fail = ?fail,
            "{e}"
        );
    }
}

/// What a fill produced.
enum Filled {
    /// Read whole; `share` when requests collapsed onto this fill may be given it.
    Complete {
        response: Arc<Shared>,
        status: CacheStatus,
        share: bool,
    },
    /// Streamed, an error, or a stale stand-in: for the requester alone.
    Other(Response<Body>),
}

impl Filled {
    fn complete(
        parts: http::response::Parts,
        body: Bytes,
        status: CacheStatus,
        age: Option<u64>,
        share: bool,
    ) -> Self {
        Filled::Complete {
            response: Arc::new(Shared {
                status: parts.status,
                headers: parts.headers,
                body,
                age,
            }),
            status,
            share,
        }
    }

    fn shareable(&self) -> Option<Arc<Shared>> {
        match self {
            Filled::Complete {
                response,
                share: true,
                ..
            } => Some(response.clone()),
            _ => None,
        }
    }

    fn into_response(self) -> Response<Body> {
        match self {
            Filled::Other(r) => r,
            Filled::Complete {
                response, status, ..
            } => shared_response(&response, &status),
        }
    }
}

fn shared_response(shared: &Shared, status: &CacheStatus) -> Response<Body> {
    let mut response = Response::new(Body::from(shared.body.clone()));
    *response.status_mut() = shared.status;
    *response.headers_mut() = shared.headers.clone();
    finish(&mut response, status, shared.age);
    response
}

/// The answer of a request that waited for another's fill.
fn collapsed(shared: &Shared) -> Response<Body> {
    let status = CacheStatus::forward(Forward::Miss)
        .fwd_status(shared.status.as_u16())
        .collapsed();
    shared_response(shared, &status)
}

fn is_unsafe(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn respond(
    parts: http::response::Parts,
    body: Body,
    status: &CacheStatus,
    age: Option<u64>,
) -> Response<Body> {
    let mut response = Response::from_parts(parts, body);
    finish(&mut response, status, age);
    response
}

fn finish(response: &mut Response<Body>, status: &CacheStatus, age: Option<u64>) {
    let headers = response.headers_mut();
    headers.insert("cache-status", status.header_value());
    if let Some(age) = age {
        headers.insert(header::AGE, HeaderValue::from(age));
    }
}

fn upstream_failed(e: &UpstreamError, status: CacheStatus) -> Response<Body> {
    tracing::warn!(error = %e, "upstream failed");
    error_response(e.status(), &status.detail(e.as_str()), &e.to_string())
}

fn plugin_closed(e: &PluginError) -> Response<Body> {
    let status = CacheStatus::forward(Forward::Bypass).detail(e.as_str());
    error_response(
        StatusCode::BAD_GATEWAY,
        &status,
        "the route's cache policy failed and the route is configured to fail closed",
    )
}

fn error_response(code: StatusCode, status: &CacheStatus, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message, "source": "larder" }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    finish(&mut response, status, None);
    response
}
