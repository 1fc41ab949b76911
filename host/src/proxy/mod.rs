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
//!            └─ unsafe method (to any route's path): upstream ─► (2xx/3xx, or outcome
//!                 unknown) on-invalidate ─► purge ─► respond, in a task of its own
//! ```
//!
//! Failure rules: a plugin failure proxies the request uncached (or answers 502 on a route
//! configured `fail = "closed"`); a store failure is a miss, or a skipped write; only the
//! upstream's own failure reaches the client, as 502 or 504.

pub mod body;
pub mod cache_status;
pub mod coalesce;
pub mod conditional;
pub mod decisions;
pub mod invalidate;
pub mod normalize;
pub mod range;
pub mod upstream;
pub mod vary;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use larder_bindings::types::{CacheKey, RequestDecision, ResponseDecision, StoreDirective};

use crate::config::{FailMode, RouteConfig, TierOutage};
use crate::gateway::{Gateway, Snapshot};
use crate::policy::sandbox::Limits;
use crate::policy::{Plugin, PluginError, convert};
use crate::routes::{RouteMatch, is_unsafe};
use crate::store::key::{Digest, tag_id};
use crate::store::{
    Entry, EntryMeta, Found, NewEntry, ObjectKey, Standing, Storage, StoreError, StoreOutcome,
    now_ms,
};
use crate::telemetry::{Class, RouteTelemetry, Served};
use body::Buffered;
use cache_status::{CacheStatus, Forward};
use coalesce::{Role, Shared};
use decisions::{Decided, Reuse};
use upstream::UpstreamError;
use vary::Vary;

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
    /// Time spent waiting for upstream response headers.
    upstream_us: AtomicU64,
}

/// A POST body read whole, and its digest (64 hex digits of BLAKE3).
#[derive(Clone)]
struct PostBody {
    bytes: Bytes,
    digest: String,
}

/// The route's policy, as the fill needs it.
struct PolicyCall<'a> {
    route: &'a RouteConfig,
    plugin: &'a Arc<Plugin>,
    limits: Limits,
    req: PolicyRequest<'a>,
}

/// The request as the policy sees it, built when a call first needs it: a hit answered with a
/// reused decision (see [`decisions`]) never does.
enum PolicyRequest<'a> {
    Built(larder_bindings::types::Request),
    Lazy {
        parts: &'a http::request::Parts,
        matched: &'a RouteMatch<'a>,
        built: OnceLock<larder_bindings::types::Request>,
    },
}

impl PolicyRequest<'_> {
    fn get(&self) -> &larder_bindings::types::Request {
        match self {
            PolicyRequest::Built(req) => req,
            PolicyRequest::Lazy {
                parts,
                matched,
                built,
            } => built.get_or_init(|| convert::request(parts, matched)),
        }
    }
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
            upstream_us: AtomicU64::new(0),
        }
    }

    /// The matched route's counters (the unrouted ones before a match).
    fn telemetry(&self) -> &RouteTelemetry {
        match self.route {
            Some(i) => &self.snapshot.telemetry[i],
            None => &self.gw.telemetry.unrouted,
        }
    }

    /// Counts an upstream request that was sent at `sent` and has its response header now.
    fn upstream_answered(&self, sent: Instant) {
        let took = sent.elapsed();
        self.upstream_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.telemetry().upstream(took);
    }

    /// Counts a plugin call that started at `called`, and its error if it failed.
    fn plugin_answered<T>(&self, called: Instant, result: &Result<T, PluginError>) {
        let telemetry = self.telemetry();
        telemetry.plugin_call(called.elapsed());
        if let Err(e) = result {
            self.gw
                .telemetry
                .plugin_error(&telemetry.plugin, &telemetry.version, e.as_str());
        }
    }

    async fn run(&mut self, body: Body) -> Response<Body> {
        let snapshot = self.snapshot.clone();
        let default_timeout = snapshot.config.server.upstream_timeout;
        let Some(matched) = snapshot
            .routes
            .find(&self.parts.method, self.parts.uri.path())
        else {
            let status = CacheStatus::forward(Forward::Bypass).detail("no-route");
            return Box::pin(self.pass_through(body, default_timeout, status)).await;
        };
        self.route = Some(matched.route.index);
        let route = &matched.route.config;
        let limits = Limits {
            deadline: route.deadline,
            memory: snapshot.config.plugins.memory_limit,
        };
        let Some(plugin) = snapshot.plugins.get(&route.plugin) else {
            let e = PluginError::NotLoaded {
                plugin: route.plugin.clone(),
            };
            return Box::pin(self.plugin_failed(e, None, route, body)).await;
        };
        if is_unsafe(&self.parts.method) {
            let policy = PolicyCall {
                route,
                plugin,
                limits,
                req: PolicyRequest::Built(convert::request(&self.parts, &matched)),
            };
            if self.parts.method == Method::POST
                && route.cache_post
                && route.methods.contains(&Method::POST)
            {
                return Box::pin(self.post_lookup(&policy, body)).await;
            }
            return Box::pin(self.write_through(&policy, body)).await;
        }

        let decisions = &snapshot.decisions;
        let (decided, req) = match decisions.find(matched.route.index, &self.parts) {
            Reuse::Found(decided) => {
                self.telemetry().decision_reused();
                (decided, None)
            }
            reuse => {
                let req = convert::request(&self.parts, &matched);
                let called = Instant::now();
                let result = plugin
                    .on_request_with_body(self.request_id, limits, &req, None)
                    .await;
                self.plugin_answered(called, &result);
                let (decided, facts) = match result {
                    Err(e) => {
                        return Box::pin(self.plugin_failed(e, Some(plugin), route, body)).await;
                    }
                    Ok((RequestDecision::Pass(reason), facts)) => {
                        (Decided::Pass(reason.into()), facts)
                    }
                    Ok((RequestDecision::Lookup(key), facts)) => {
                        (Decided::Lookup(self.object_key(&route.name, &key)), facts)
                    }
                };
                if let Reuse::Missing(request_key) = reuse
                    && facts.repeatable
                {
                    decisions.remember(request_key, decided.clone());
                }
                (decided, Some(req))
            }
        };
        let base = match decided {
            Decided::Pass(reason) => {
                let status = CacheStatus::forward(Forward::Bypass).detail(&reason);
                return Box::pin(self.pass_through(body, route.upstream_timeout, status)).await;
            }
            Decided::Lookup(_)
                if self.parts.method != Method::GET && self.parts.method != Method::HEAD =>
            {
                let status = CacheStatus::forward(Forward::Method);
                return Box::pin(self.pass_through(body, route.upstream_timeout, status)).await;
            }
            // A GET or HEAD with content (RFC 9110 section 9.3.1: it has no defined meaning,
            // yet an origin may answer by it) is neither answered from the cache nor stored:
            // its key cannot say what the body asked for. It goes upstream as it came.
            Decided::Lookup(_) if !http_body::Body::is_end_stream(&body) => {
                let status = CacheStatus::forward(Forward::Bypass).detail("request-body");
                return Box::pin(self.pass_through(body, route.upstream_timeout, status)).await;
            }
            Decided::Lookup(base) => base,
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
        if conditional::is_not_modified(
            &self.parts.method,
            &self.parts.headers,
            response.status(),
            response.headers(),
        ) {
            return conditional::not_modified(response);
        }
        if self.parts.headers.contains_key(header::RANGE) {
            Box::pin(self.ranged(response)).await
        } else {
            response
        }
    }

    /// Answers a `Range` request from a whole 200 response that is held in memory (from the
    /// cache, or a fill that read it to store it); anything else is sent whole.
    async fn ranged(&self, response: Response<Body>) -> Response<Body> {
        if response.status() != StatusCode::OK || !self.parts.headers.contains_key(header::RANGE) {
            return response;
        }
        let max = self.snapshot.config.cache.max_object_size as u64;
        let Some(len) = content_length(response.headers()).filter(|n| *n <= max) else {
            return response;
        };
        let answer = range::answer(
            &self.parts.method,
            &self.parts.headers,
            response.headers(),
            len as usize,
        );
        if answer == range::Answer::Whole {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        // A body held in memory: collecting it takes its one chunk, no copy.
        let Ok(collected) = http_body_util::BodyExt::collect(body).await else {
            return error_response(
                StatusCode::BAD_GATEWAY,
                &CacheStatus::forward(Forward::Miss).detail("body-failed"),
                "the response body failed",
            );
        };
        let (status, bytes) = range::apply(answer, &mut parts.headers, collected.to_bytes());
        parts.status = status;
        Response::from_parts(parts, Body::from(bytes))
    }

    /// A POST on a `cache_post` route: read the body (bounded), offer its digest to the
    /// policy, and look the request up by key and digest if the policy asked for the digest
    /// and returned `lookup`. Anything else is an ordinary write.
    async fn post_lookup(&mut self, policy: &PolicyCall<'_>, body: Body) -> Response<Body> {
        let limit = self.snapshot.config.cache.max_request_body;
        // A client sending its body slowly must not hold the request (and its connection) open.
        let timeout = self.snapshot.config.server.body_read_timeout;
        let bytes = match tokio::time::timeout(timeout, body::buffer(body, limit)).await {
            Ok(Ok(Buffered::Complete(bytes))) => bytes,
            Ok(Ok(Buffered::TooLarge(body))) => return self.write_through(policy, body).await,
            Ok(Err(e)) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &CacheStatus::forward(Forward::Method).detail("request-body"),
                    &format!("reading the request body failed: {e}"),
                );
            }
            Err(_) => {
                return error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    &CacheStatus::forward(Forward::Method).detail("request-body"),
                    &format!(
                        "the request body took longer than {} ms (server.body_read_timeout_ms)",
                        timeout.as_millis()
                    ),
                );
            }
        };
        let digest = blake3::hash(&bytes).to_hex().to_string();
        let called = Instant::now();
        let decision = policy
            .plugin
            .on_request_with_body(
                self.request_id,
                policy.limits,
                policy.req.get(),
                Some(&digest),
            )
            .await;
        self.plugin_answered(called, &decision);
        match decision {
            Err(e) => {
                self.plugin_failed(e, Some(policy.plugin), policy.route, Body::from(bytes))
                    .await
            }
            Ok((RequestDecision::Lookup(key), facts)) if facts.body_digest_asked => {
                let base = self
                    .object_key(&policy.route.name, &key)
                    .variant(&[("body", &digest)]);
                self.post = Some(PostBody { bytes, digest });
                self.cached(policy, base, Body::empty()).await
            }
            Ok(_) => self.write_through(policy, Body::from(bytes)).await,
        }
    }

    /// Phases 3 to 6 for a request the policy looks up under `base`.
    async fn cached(&self, policy: &PolicyCall<'_>, base: ObjectKey, body: Body) -> Response<Body> {
        let route = policy.route;
        let _ = self.key.set(base.digest);
        let mut status = CacheStatus::forward(Forward::Miss);
        let mut stale = None;
        let (variant, found) = self.lookup(&base).await;
        // Fills of one variant coalesce with each other, not with another variant's.
        let fill_id = variant.as_ref().unwrap_or(&base).digest;
        match found {
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
                    let validators = Stale {
                        entry: candidate.entry.clone(),
                        past: candidate.past,
                    };
                    self.refresh_in_background(policy, base, fill_id, validators);
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
        if self.parts.method == Method::GET || self.post.is_some() {
            match self.gw.coalescer.join(&base.route, fill_id) {
                Role::Leader(leader) => {
                    let fill =
                        self.detached_fill(policy, base, status, stale, body, false, move |f| {
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
                    if let Ok(Some(shared)) = wait
                        && self.selects(&base, &shared)
                    {
                        return collapsed(&shared);
                    }
                    // Not shareable, another variant, or the wait ran out: upstream on our
                    // own.
                }
            }
        }
        Box::pin(self.fill(policy, base, status, stale, body))
            .await
            .into_response()
    }

    /// Looks `base` up, following a Vary marker to the variant this request selects; returns
    /// that variant's key when there was a marker.
    async fn lookup(
        &self,
        base: &ObjectKey,
    ) -> (Option<ObjectKey>, Result<Option<Found>, StoreError>) {
        let looked_up = Instant::now();
        let found = self.gw.store.lookup(base).await;
        self.gw
            .telemetry
            .store_lookup
            .record(looked_up.elapsed().as_secs_f64());
        let found = match found {
            Ok(Some(found)) if found.entry.meta.vary_marker => found,
            other => return (None, other),
        };
        match Vary::of(&found.entry.headers) {
            Vary::Fields(fields) => {
                let variant = vary::variant_key(base, &fields, &self.parts.headers);
                let mut found = self.gw.store.lookup(&variant).await;
                if let Ok(None) = found
                    && let Some(lang) = vary::preferred_language(&self.parts.headers)
                    && let Some(alias) =
                        vary::language_key(base, &fields, &self.parts.headers, &lang)
                {
                    found = self.gw.store.lookup(&alias).await;
                }
                (Some(variant), found)
            }
            Vary::None | Vary::Star => (None, Ok(None)),
        }
    }

    /// Whether a response shared by another request's fill is the variant this request selects.
    fn selects(&self, base: &ObjectKey, shared: &Shared) -> bool {
        match Vary::of(&shared.headers) {
            Vary::None => true,
            Vary::Star => false,
            Vary::Fields(fields) => {
                shared.variant == Some(vary::variant_key(base, &fields, &self.parts.headers).digest)
            }
        }
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
        let filled_in_us =
            (entry.meta.stored_at_ms * 1000).saturating_sub(entry.meta.fill_started_us);
        self.saved_us.store(filled_in_us, Ordering::Relaxed);
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
    ///
    /// The refresh revalidates with `stale`'s validators when it has any.
    fn refresh_in_background(
        &self,
        policy: &PolicyCall<'_>,
        object: ObjectKey,
        fill_id: Digest,
        stale: Stale,
    ) {
        let Role::Leader(leader) = self.gw.coalescer.join(&object.route, fill_id) else {
            return;
        };
        let status = CacheStatus::forward(Forward::Stale).detail("background-refresh");
        self.detached_fill(
            policy,
            object,
            status,
            Some(stale),
            Body::empty(),
            true,
            move |f| leader.publish(f.shareable()),
        );
    }

    /// Runs a fill in a task of its own, on an owned copy of this exchange (as a GET, or as the
    /// POST it looks up), so it completes whatever happens to the client that caused it;
    /// `done` sees the result first.
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
        let method = if self.post.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let cx = self.detached(method);
        let (route_name, plugin, limits, req) = (
            policy.route.name.clone(),
            policy.plugin.clone(),
            policy.limits,
            policy.req.get().clone(),
        );
        tokio::spawn(async move {
            if unless_fresh
                && let (_, Ok(Some(found))) = cx.lookup(&object).await
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
                req: PolicyRequest::Built(req),
            };
            let filled = cx.fill(&policy, object, status, stale, body).await;
            done(&filled);
            Some(filled)
        })
    }

    /// The miss path: upstream, policy, store, respond. A `stale` entry is revalidated with its
    /// validators, and served instead if the upstream fails within its stale-if-error window.
    async fn fill(
        &self,
        policy: &PolicyCall<'_>,
        object: ObjectKey,
        status: CacheStatus,
        mut stale: Option<Stale>,
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
        let body = match &self.post {
            Some(post) => Body::from(post.bytes.clone()),
            None => body,
        };
        let mut headers = self.parts.headers.clone();
        conditional::strip_client_conditionals(&mut headers);
        let revalidating = self.parts.method == Method::GET
            && stale
                .as_ref()
                .is_some_and(|s| conditional::add_validators(&mut headers, &s.entry.headers));
        let sent = Instant::now();
        let upstream = self
            .gw
            .upstream
            .send_with(
                &self.parts,
                self.peer,
                headers,
                body,
                route.upstream_timeout,
            )
            .await;
        self.upstream_answered(sent);
        let upstream = match upstream {
            Ok(r) => r,
            Err(e) => {
                return serve_stale(stale)
                    .unwrap_or_else(|| Filled::Other(upstream_failed(&e, status)));
            }
        };
        let (mut rparts, rbody) = upstream.into_parts();
        let status = status.fwd_status(rparts.status.as_u16());
        from_upstream(&mut rparts.headers);

        let bytes = if rparts.status == StatusCode::NOT_MODIFIED
            && revalidating
            && let Some(Stale { entry, .. }) = stale.take()
        {
            // The stored response is still good: freshen its header fields from the 304 and
            // treat the result as the origin's answer.
            let mut headers = entry.headers;
            conditional::freshen(&mut headers, &rparts.headers);
            rparts.headers = headers;
            rparts.status = entry.status;
            entry.body
        } else {
            if rparts.status.is_server_error()
                && let Some(r) = serve_stale(stale)
            {
                return r;
            }
            let max = self.snapshot.config.cache.max_object_size as u64;
            if self.parts.method == Method::GET
                && self.parts.headers.contains_key(header::RANGE)
                && content_length(&rparts.headers).is_some_and(|n| n > max)
            {
                // Too large to store, so the range cannot be served from the cache: let the
                // origin serve it (a client resuming a 1 GiB download wants its range, not the
                // whole body again).
                drop(rbody);
                let status = CacheStatus::forward(Forward::Miss).detail("range-too-large");
                return Filled::Other(
                    self.pass_through(Body::empty(), route.upstream_timeout, status)
                        .await,
                );
            }
            match self.read_body(route, rparts, rbody, status.clone()).await {
                Ok((parts, bytes)) => {
                    rparts = parts;
                    bytes
                }
                Err(other) => return other,
            }
        };

        let policy_resp =
            convert::response(rparts.status, &rparts.headers, Some(bytes.len() as u64));
        let called = Instant::now();
        let decision = policy
            .plugin
            .on_response(
                self.request_id,
                policy.limits,
                policy.req.get(),
                &policy_resp,
                self.post.as_ref().map(|p| p.digest.as_str()),
            )
            .await;
        self.plugin_answered(called, &decision);
        let directive = match decision {
            Err(e) => {
                policy.plugin.count_error();
                self.log_plugin_error(&e, route.fail);
                if route.fail == FailMode::Closed {
                    return Filled::Other(plugin_closed(&e));
                }
                return Filled::complete(rparts, bytes, status.detail(e.as_str()), None, Share::No);
            }
            Ok(ResponseDecision::NoStore(reason)) => {
                return Filled::complete(rparts, bytes, status.detail(&reason), None, Share::No);
            }
            Ok(ResponseDecision::Store(d)) => d,
        };
        if directive.ttl == 0
            && (self.snapshot.config.cache.revalidate_keep == 0
                || !conditional::has_validator(&rparts.headers))
        {
            // Stale from the start and impossible to revalidate: pointless to store.
            let status = status.detail("not-revalidatable");
            return Filled::complete(rparts, bytes, status, None, Share::No);
        }

        let (entry, age) =
            self.new_entry(&rparts, bytes.clone(), &object, fill_started_us, directive);
        let storing = Instant::now();
        let (outcome, variant) = match Vary::of(&rparts.headers) {
            Vary::Star => {
                let status = status.detail("vary-star");
                return Filled::complete(rparts, bytes, status, None, Share::No);
            }
            Vary::None => (self.gw.store.store(&object, entry).await, None),
            Vary::Fields(fields) => {
                let variant = vary::variant_key(&object, &fields, &self.parts.headers);
                (
                    self.store_variant(&object, &variant, &fields, entry).await,
                    Some(variant.digest),
                )
            }
        };
        self.gw
            .telemetry
            .store_write
            .record(storing.elapsed().as_secs_f64());
        // Collapsed requests may share what the policy stored, even when the store itself
        // failed; never what a purge overtook.
        let (status, share) = match outcome {
            Ok(StoreOutcome::Stored) => (status.stored(), true),
            Ok(StoreOutcome::PurgedDuringFill) => (status.detail("purged-during-fill"), false),
            Err(e) => {
                tracing::debug!(request_id = self.request_id, error = %e, "store failed");
                (status.detail("store-unavailable"), true)
            }
        };
        let share = if share { Share::As(variant) } else { Share::No };
        Filled::complete(rparts, bytes, status, Some(age), share)
    }

    /// Reads an upstream body to store it; a body that cannot be stored (a HEAD's, one over
    /// `max_object_size`) or that fails is answered as it is, as the `Err`.
    async fn read_body(
        &self,
        route: &RouteConfig,
        rparts: http::response::Parts,
        rbody: hyper::body::Incoming,
        status: CacheStatus,
    ) -> Result<(http::response::Parts, Bytes), Filled> {
        let max = self.snapshot.config.cache.max_object_size;
        if self.parts.method == Method::HEAD {
            let status = status.detail("head");
            return Err(Filled::Other(respond(
                rparts,
                Body::new(rbody),
                &status,
                None,
            )));
        }
        if content_length(&rparts.headers).is_some_and(|n| n > max as u64) {
            let status = status.detail("too-large");
            return Err(Filled::Other(respond(
                rparts,
                Body::new(rbody),
                &status,
                None,
            )));
        }
        match tokio::time::timeout(route.upstream_timeout, body::buffer(rbody, max)).await {
            Err(_) => {
                let e = UpstreamError::Timeout(route.upstream_timeout);
                Err(Filled::Other(upstream_failed(&e, status)))
            }
            Ok(Err(e)) => {
                let e = UpstreamError::Body(e.to_string());
                Err(Filled::Other(upstream_failed(&e, status)))
            }
            Ok(Ok(Buffered::TooLarge(body))) => {
                let status = status.detail("too-large");
                Err(Filled::Other(respond(rparts, body, &status, None)))
            }
            Ok(Ok(Buffered::Complete(bytes))) => Ok((rparts, bytes)),
        }
    }

    /// Stores a response that varies: a Vary marker under the object's key, then the response
    /// under its variant's key (and, varying on `Accept-Language`, under its language's key:
    /// see [`vary::language_key`]). Both carry the entry's tags and fill time, so a purge reaches
    /// both and a purge during the fill stops both.
    async fn store_variant(
        &self,
        object: &ObjectKey,
        variant: &ObjectKey,
        fields: &[http::HeaderName],
        entry: NewEntry,
    ) -> Result<StoreOutcome, StoreError> {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(header::VARY, vary::marker_header(fields));
        let marker = NewEntry {
            status: entry.status,
            headers,
            body: Bytes::new(),
            meta: EntryMeta {
                vary_marker: true,
                ..entry.meta
            },
            tags: entry.tags.clone(),
        };
        if self.gw.store.store(object, marker).await? == StoreOutcome::PurgedDuringFill {
            return Ok(StoreOutcome::PurgedDuringFill);
        }
        if let Some(lang) = vary::content_language(&entry.headers)
            && let Some(alias) = vary::language_key(object, fields, &self.parts.headers, &lang)
        {
            self.gw.store.store(&alias, entry.clone()).await?;
        }
        self.gw.store.store(variant, entry).await
    }

    fn new_entry(
        &self,
        rparts: &http::response::Parts,
        body: Bytes,
        object: &ObjectKey,
        fill_started_us: u64,
        d: StoreDirective,
    ) -> (NewEntry, u64) {
        let initial_age = rparts
            .headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            // A list (`7200, 0`) counts by its first member.
            .and_then(|v| v.split(',').next()?.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let headers = stored_fields(&rparts.headers, body.len());
        let keep = if conditional::has_validator(&headers) {
            self.snapshot.config.cache.revalidate_keep
        } else {
            0
        };
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
                keep,
                vary_marker: false,
            },
            tags,
        };
        (entry, u64::from(initial_age))
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
        cx
    }

    /// Unsafe methods: forward, then let the policy say what the write invalidated.
    ///
    /// In a task of its own, on an owned copy of this exchange: a client that hangs up while
    /// the upstream works does not cancel the invalidation. A write whose outcome is unknown
    /// (the upstream timed out, or the connection broke, after the request was sent) may have
    /// happened, so it invalidates as if it had succeeded.
    async fn write_through(&self, policy: &PolicyCall<'_>, body: Body) -> Response<Body> {
        let Some(route_index) = self.route else {
            let status = CacheStatus::forward(Forward::Method);
            return self
                .pass_through(body, policy.route.upstream_timeout, status)
                .await;
        };
        let mut cx = self.detached(self.parts.method.clone());
        let (plugin, limits, req) = (
            policy.plugin.clone(),
            policy.limits,
            policy.req.get().clone(),
        );
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let snapshot = cx.snapshot.clone();
            let policy = PolicyCall {
                route: &snapshot.routes.routes()[route_index].config,
                plugin: &plugin,
                limits,
                req: PolicyRequest::Built(req),
            };
            cx.write(&policy, body, answer).await;
        });
        match answered.await {
            Ok((response, upstream_us)) => {
                self.upstream_us.store(upstream_us, Ordering::Relaxed);
                response
            }
            Err(_) => {
                tracing::error!(
                    request_id = self.request_id,
                    "a write's task ended without an answer"
                );
                let status = CacheStatus::forward(Forward::Method).detail("internal");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, &status, "internal error")
            }
        }
    }

    /// The write itself: upstream, then `on-invalidate` and the purge when the write succeeded
    /// (2xx, 3xx) or may have; the response goes to `answer`.
    ///
    /// A write the upstream does not answer within the route's timeout is not abandoned: the
    /// client gets its 504 (after the purge), and the upstream request goes on for up to
    /// [`WRITE_FOLLOW_UP`]. When it ends, the write is invalidated again, so that reads made
    /// between the timeout and the backend finishing its work cannot keep the old answer cached.
    async fn write(
        &mut self,
        policy: &PolicyCall<'_>,
        body: Body,
        answer: tokio::sync::oneshot::Sender<(Response<Body>, u64)>,
    ) {
        let route = policy.route;
        let status = CacheStatus::forward(Forward::Method);
        let sent = Instant::now();
        let mut call = {
            let (gw, parts, peer) = (
                self.gw.clone(),
                self.detached(self.parts.method.clone()).parts,
                self.peer,
            );
            let limit = route.upstream_timeout.max(WRITE_FOLLOW_UP);
            tokio::spawn(async move { gw.upstream.send(&parts, peer, body, limit).await })
        };
        let (upstream, follow) = match tokio::time::timeout(route.upstream_timeout, &mut call).await
        {
            Ok(Ok(result)) => (result, None),
            Ok(Err(e)) => (Err(UpstreamError::Lost(e.to_string())), None),
            Err(_) => (
                Err(UpstreamError::Timeout(route.upstream_timeout)),
                Some(call),
            ),
        };
        self.upstream_answered(sent);
        let response = self.written(policy, upstream, status).await;
        let _ = answer.send((response, self.upstream_us.load(Ordering::Relaxed)));
        let Some(call) = follow else { return };
        let late = match call.await {
            Ok(Ok(r)) => {
                let status = r.status();
                (status.is_success() || status.is_redirection())
                    .then(|| convert::response(status, r.headers(), content_length(r.headers())))
            }
            Ok(Err(e)) if e.outcome_unknown() => {
                Some(convert::response(e.status(), &HeaderMap::new(), None))
            }
            _ => None,
        };
        if let Some(resp) = late {
            tracing::info!(
                request_id = self.request_id,
                "a write that timed out ended upstream; invalidating again"
            );
            self.invalidate(policy, &resp, CacheStatus::forward(Forward::Method))
                .await;
        }
    }

    /// Invalidates for the write's outcome and makes the client's response.
    async fn written(
        &self,
        policy: &PolicyCall<'_>,
        upstream: Result<hyper::Response<hyper::body::Incoming>, UpstreamError>,
        status: CacheStatus,
    ) -> Response<Body> {
        let (rparts, rbody, mut status, upstream_status) = match upstream {
            Ok(r) => {
                let (mut rparts, rbody) = r.into_parts();
                from_upstream(&mut rparts.headers);
                let status = status.fwd_status(rparts.status.as_u16());
                let code = rparts.status;
                (Some(rparts), Some(rbody), status, code)
            }
            Err(e) if e.outcome_unknown() => {
                tracing::warn!(request_id = self.request_id, error = %e, "the outcome of a write is unknown; invalidating as if it succeeded");
                (None, None, status.detail(e.as_str()), e.status())
            }
            Err(e) => return upstream_failed(&e, status),
        };
        if upstream_status.is_success() || upstream_status.is_redirection() || rparts.is_none() {
            let policy_resp = match &rparts {
                Some(p) => convert::response(p.status, &p.headers, content_length(&p.headers)),
                // Unknown outcome: the policy sees the status the client gets, and no fields.
                None => convert::response(upstream_status, &HeaderMap::new(), None),
            };
            status = self.invalidate(policy, &policy_resp, status).await;
        }
        match (rparts, rbody) {
            (Some(rparts), Some(rbody)) => respond(rparts, Body::new(rbody), &status, None),
            _ => error_response(
                upstream_status,
                &status,
                "the upstream did not answer the write; what it invalidates was purged anyway",
            ),
        }
    }

    /// Calls `on-invalidate` and purges what it names; answers `status` with what happened.
    async fn invalidate(
        &self,
        policy: &PolicyCall<'_>,
        resp: &larder_bindings::types::Response,
        status: CacheStatus,
    ) -> CacheStatus {
        let route = policy.route;
        let called = Instant::now();
        let decision = policy
            .plugin
            .on_invalidate(self.request_id, policy.limits, policy.req.get(), resp)
            .await;
        self.plugin_answered(called, &decision);
        let list = match decision {
            Err(e) => {
                policy.plugin.count_error();
                self.log_plugin_error(&e, route.fail);
                return status.detail(e.as_str());
            }
            Ok(list) if list.is_empty() => return status,
            Ok(list) => list,
        };
        match invalidate::apply(&self.gw, &self.snapshot, &route.name, &list).await {
            Ok(purged) => {
                tracing::debug!(
                    request_id = self.request_id,
                    tags = purged.generations,
                    entries = purged.entries,
                    "invalidated"
                );
                status
            }
            Err(e) if e.is_pending() => {
                tracing::warn!(request_id = self.request_id, error = %e, "invalidation pending");
                self.outlast_tier_trust().await;
                status.detail("invalidation-pending")
            }
            Err(e) => {
                tracing::error!(request_id = self.request_id, error = %e, "invalidation failed");
                status.detail("invalidation-failed")
            }
        }
    }

    /// After a purge Redis did not take: waits out the memory tiers' trust window, so that by
    /// the time the client learns its write is done, every instance whose tier could not hear
    /// the purge has stopped answering from that tier (see [`crate::store::tiered`]).
    async fn outlast_tier_trust(&self) {
        let cache = &self.snapshot.config.cache;
        if cache.memory_tier_bytes > 0 && cache.memory_tier_outage == TierOutage::Bypass {
            // A verification is stamped in whole milliseconds: a few more cover the rounding.
            tokio::time::sleep(cache.memory_tier_trust + Duration::from_millis(5)).await;
        }
    }

    /// Forwards without caching.
    async fn pass_through(
        &self,
        body: Body,
        timeout: Duration,
        status: CacheStatus,
    ) -> Response<Body> {
        let sent = Instant::now();
        let upstream = self
            .gw
            .upstream
            .send(&self.parts, self.peer, body, timeout)
            .await;
        self.upstream_answered(sent);
        match upstream {
            Ok(r) => {
                let (mut rparts, rbody) = r.into_parts();
                from_upstream(&mut rparts.headers);
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
        match plugin {
            Some(p) => p.count_error(),
            // Not loaded: no call was made, so none was counted.
            None => self
                .gw
                .telemetry
                .plugin_error(&route.plugin, "", e.as_str()),
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

/// How long the upstream request of a write that timed out for its client is followed, so
/// that it is invalidated again when the backend finishes it.
const WRITE_FOLLOW_UP: Duration = Duration::from_secs(600);

/// Whether requests collapsed onto a fill may be given its response.
enum Share {
    No,
    /// Yes, as the given variant (`None`: the response does not vary).
    As(Option<Digest>),
}

/// What a fill produced.
enum Filled {
    /// Read whole.
    Complete {
        /// The origin's answer, for the request that filled: it keeps what was meant for that
        /// client alone (its `Set-Cookie`).
        response: Shared,
        status: CacheStatus,
        /// What requests collapsed onto the fill are given: the stored copy's fields (see
        /// [`stored_fields`]), never more; `None` sends them upstream themselves.
        shared: Option<Arc<Shared>>,
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
        share: Share,
    ) -> Self {
        let shared = match share {
            Share::No => None,
            Share::As(variant) => Some(Arc::new(Shared {
                status: parts.status,
                headers: stored_fields(&parts.headers, body.len()),
                body: body.clone(),
                age,
                variant,
            })),
        };
        Filled::Complete {
            response: Shared {
                status: parts.status,
                headers: parts.headers,
                body,
                age,
                variant: None,
            },
            status,
            shared,
        }
    }

    fn shareable(&self) -> Option<Arc<Shared>> {
        match self {
            Filled::Complete { shared, .. } => shared.clone(),
            Filled::Other(_) => None,
        }
    }

    fn into_response(self) -> Response<Body> {
        match self {
            Filled::Other(r) => r,
            Filled::Complete {
                response, status, ..
            } => {
                let mut answer = Response::new(Body::from(response.body));
                *answer.status_mut() = response.status;
                *answer.headers_mut() = response.headers;
                finish(&mut answer, &status, response.age);
                answer
            }
        }
    }
}

/// The fields a stored copy of a response keeps: the origin's (after [`from_upstream`]), less
/// `Age` (an entry's age is counted from its `initial_age`) and `Set-Cookie` (a cookie set for
/// one client must never be replayed to another, whatever the policy), with the body's length.
/// Requests collapsed onto a fill are given the same: they are answered as the cache would
/// answer them.
fn stored_fields(origin: &HeaderMap, body_len: usize) -> HeaderMap {
    let mut headers = origin.clone();
    headers.remove(header::AGE);
    headers.remove(header::SET_COOKIE);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    headers
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

/// What every upstream response goes through: hop-by-hop fields removed, and a `Date` added
/// when the origin sent none or an invalid one (RFC 9110 section 6.6.1), so the response's
/// age can be known.
fn from_upstream(headers: &mut HeaderMap) {
    upstream::strip_hop_by_hop(headers);
    let valid_date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| httpdate::parse_http_date(v.trim()).is_ok());
    if !valid_date {
        headers.insert(header::DATE, conditional::date_now());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapsed_requests_get_the_stored_fields_never_the_fillers_cookie() {
        let (mut parts, ()) = Response::new(()).into_parts();
        for (name, value) in [
            (header::CACHE_CONTROL, "max-age=60"),
            (header::SET_COOKIE, "session=the-filler"),
            (header::AGE, "5"),
        ] {
            parts.headers.insert(name, HeaderValue::from_static(value));
        }
        let status = CacheStatus::forward(Forward::Miss).fwd_status(200).stored();
        let filled = Filled::complete(
            parts,
            Bytes::from_static(b"body"),
            status,
            Some(5),
            Share::As(None),
        );

        let follower = collapsed(&filled.shareable().expect("a stored fill is shared"));
        assert_eq!(follower.headers().get(header::SET_COOKIE), None);
        assert_eq!(follower.headers()[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(follower.headers()[header::CONTENT_LENGTH], "4");
        assert_eq!(follower.headers()[header::AGE], "5");
        // The client whose request made the fill gets the cookie the origin set for it.
        let filler = filled.into_response();
        assert_eq!(filler.headers()[header::SET_COOKIE], "session=the-filler");
    }
}
