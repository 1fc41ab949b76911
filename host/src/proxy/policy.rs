//! Calling the route's policy, and what its failure does.
//!
//! Every call goes through [`Exchange::ask`], which times and counts it. Every failure goes
//! through [`Exchange::plugin_error`] (counted and logged), and, where the request can still be
//! refused, [`Exchange::fails_closed`]: a route configured `fail = "closed"` answers 502, any
//! other goes on uncached. `on-invalidate` fails after the write is done, so it only counts.
//!
//! A safe request's `on-request` answer may be that of an identical earlier request
//! (`decisions.rs`), without a call; the request the policy would be shown is then built only if
//! a later call (`on-response`, on a miss) needs it.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Body;
use http::{Response, StatusCode};
use larder_bindings::types::RequestDecision;

use super::Exchange;
use super::cache_status::{CacheStatus, Forward};
use super::decisions::{Decided, Reuse};
use super::respond::error_response;
use crate::config::{FailMode, RouteConfig};
use crate::policy::sandbox::Limits;
use crate::policy::{Plugin, PluginError, convert};
use crate::routes::{Route, RouteMatch};

/// The route's policy, as the phases after `on-request` need it.
pub(super) struct PolicyCall<'a> {
    /// The route; work that outlives the request (fills, writes) takes its own `Arc` of it.
    pub(super) route: &'a Arc<Route>,
    pub(super) plugin: &'a Arc<Plugin>,
    pub(super) limits: Limits,
    pub(super) req: PolicyRequest<'a>,
}

/// The request as the policy sees it, built when a call first needs it: a hit answered with a
/// reused decision (see [`super::decisions`]) never does.
pub(super) enum PolicyRequest<'a> {
    Built(larder_bindings::types::Request),
    Lazy {
        parts: &'a http::request::Parts,
        matched: &'a RouteMatch<'a>,
        built: OnceLock<larder_bindings::types::Request>,
    },
}

impl PolicyRequest<'_> {
    pub(super) fn get(&self) -> &larder_bindings::types::Request {
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

impl Exchange {
    /// Makes one policy call: counts its time, and its error if it failed.
    pub(super) async fn ask<T>(
        &self,
        call: impl Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        let called = Instant::now();
        let result = call.await;
        let telemetry = self.telemetry();
        telemetry.plugin_call(called.elapsed());
        if let Err(e) = &result {
            self.gw
                .telemetry
                .plugin_error(&telemetry.plugin, &telemetry.version, e.as_str());
        }
        result
    }

    /// `on-request` for a safe request, or the answer an identical earlier request got (see
    /// [`super::decisions`]); with the request the policy was shown when it was called.
    pub(super) async fn decide(
        &self,
        matched: &RouteMatch<'_>,
        plugin: &Arc<Plugin>,
        limits: Limits,
    ) -> Result<(Decided, Option<larder_bindings::types::Request>), PluginError> {
        let decisions = &self.snapshot.decisions;
        let reuse = match decisions.find(matched.route, &self.parts) {
            Reuse::Found(decided) => {
                self.telemetry().decision_reused();
                return Ok((decided, None));
            }
            reuse => reuse,
        };
        let req = convert::request(&self.parts, matched);
        let (decision, facts) = self
            .ask(plugin.on_request_with_body(self.request_id, limits, &req, None))
            .await?;
        // A key that varies on a field the policy is not shown holds that field's value, which
        // the next request with the same reuse key may not share.
        let mut reusable = facts.repeatable;
        let decided = match decision {
            RequestDecision::Pass(reason) => Decided::Pass(reason.into()),
            RequestDecision::Lookup(key) => {
                reusable &= key.vary.iter().all(|name| {
                    http::HeaderName::from_bytes(name.as_bytes())
                        .is_ok_and(|name| matched.route.shows(&name))
                });
                Decided::Lookup(self.object_key(&matched.route.config.name, &key))
            }
        };
        if let Reuse::Missing(request_key) = reuse
            && reusable
        {
            decisions.remember(request_key, decided.clone());
        }
        Ok((decided, Some(req)))
    }

    /// Counts and logs a policy's failure on `route`. `plugin` is `None` when the route's
    /// plugin is not loaded.
    pub(super) fn plugin_error(
        &self,
        e: &PluginError,
        plugin: Option<&Arc<Plugin>>,
        route: &RouteConfig,
    ) {
        match plugin {
            Some(p) => p.count_error(),
            // Not loaded: no call was made, so none was counted.
            None => self
                .gw
                .telemetry
                .plugin_error(&route.plugin, "", e.as_str()),
        }
        tracing::warn!(
            request_id = self.request_id,
            kind = e.as_str(),
            fail = ?route.fail,
            "{e}"
        );
    }

    /// [`Exchange::plugin_error`], then the 502 a route configured `fail = "closed"` answers
    /// with; `None` on any other route, whose request goes on uncached.
    pub(super) fn fails_closed(
        &self,
        e: &PluginError,
        plugin: Option<&Arc<Plugin>>,
        route: &RouteConfig,
    ) -> Option<Response<Body>> {
        self.plugin_error(e, plugin, route);
        (route.fail == FailMode::Closed).then(|| plugin_closed(e))
    }

    /// A request whose policy failed before anything was looked up: 502 on a route that fails
    /// closed, else upstream uncached.
    pub(super) async fn plugin_failed(
        &self,
        e: PluginError,
        plugin: Option<&Arc<Plugin>>,
        route: &RouteConfig,
        body: Body,
    ) -> Response<Body> {
        if let Some(closed) = self.fails_closed(&e, plugin, route) {
            return closed;
        }
        let status = CacheStatus::forward(Forward::Bypass).detail(e.as_str());
        self.pass_through(body, route.upstream_timeout, status)
            .await
    }
}

fn plugin_closed(e: &PluginError) -> Response<Body> {
    let status = CacheStatus::forward(Forward::Bypass).detail(e.as_str());
    error_response(
        StatusCode::BAD_GATEWAY,
        &status,
        "the route's cache policy failed and the route is configured to fail closed",
    )
}
