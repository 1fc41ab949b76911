//! Unsafe methods: the write is forwarded, then `on-invalidate` says what it made wrong and
//! that is purged (`invalidate.rs`), before the client gets its answer.
//!
//! In a task of its own, on an owned copy of the exchange: a client that hangs up while the
//! upstream works does not cancel the invalidation. A write whose outcome is unknown (the
//! upstream timed out, or the connection broke, after the request was sent) may have happened,
//! so it invalidates as if it had succeeded.

use std::time::{Duration, Instant};

use axum::body::Body;
use http::header::HeaderMap;
use http::{Response, StatusCode};

use super::Exchange;
use super::cache_status::{CacheStatus, Forward};
use super::invalidate;
use super::policy::{PolicyCall, PolicyRequest};
use super::respond::{content_length, error_response, respond, upstream_failed};
use super::upstream::UpstreamError;
use crate::config::TierOutage;
use crate::policy::convert;

/// How long the upstream request of a write that timed out for its client is followed, so
/// that it is invalidated again when the backend finishes it.
const WRITE_FOLLOW_UP: Duration = Duration::from_secs(600);

impl Exchange {
    /// Forwards a write and invalidates what it made wrong, in a task of its own (see the
    /// module docs); answers what that task answers.
    pub(super) async fn write_through(
        &self,
        policy: &PolicyCall<'_>,
        body: Body,
    ) -> Response<Body> {
        let mut cx = self.detached(self.parts.method.clone());
        let (route, plugin, limits, req) = (
            policy.route.clone(),
            policy.plugin.clone(),
            policy.limits,
            policy.req.get().clone(),
        );
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let policy = PolicyCall {
                route: &route,
                plugin: &plugin,
                limits,
                req: PolicyRequest::Built(req),
            };
            cx.write(&policy, body, answer).await;
        });
        match answered.await {
            Ok(response) => response,
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
        answer: tokio::sync::oneshot::Sender<Response<Body>>,
    ) {
        let route = &policy.route.config;
        let status = CacheStatus::forward(Forward::Method);
        let mut call = {
            let (gw, parts, peer) = (
                self.gw.clone(),
                self.detached(self.parts.method.clone()).parts,
                self.peer,
            );
            let limit = route.upstream_timeout.max(WRITE_FOLLOW_UP);
            tokio::spawn(async move { gw.upstream.send(&parts, peer, body, limit).await })
        };
        let mut timed_out = false;
        let upstream = self
            .timed(async {
                match tokio::time::timeout(route.upstream_timeout, &mut call).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(e)) => Err(UpstreamError::Lost(e.to_string())),
                    Err(_) => {
                        timed_out = true;
                        Err(UpstreamError::Timeout(route.upstream_timeout))
                    }
                }
            })
            .await;
        let response = self.written(policy, upstream, status).await;
        let _ = answer.send(response);
        if !timed_out {
            return;
        }
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
                let (rparts, rbody) = r.into_parts();
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

    /// Calls `on-invalidate` of the route's policy and of those its `also_invalidate` names,
    /// and purges the union of what they name; answers `status` with what happened. A policy
    /// that fails purges nothing, the others still do.
    async fn invalidate(
        &self,
        policy: &PolicyCall<'_>,
        resp: &larder_bindings::types::Response,
        status: CacheStatus,
    ) -> CacheStatus {
        let route = &policy.route.config;
        let req = policy.req.get();
        let mut failed = None;
        let mut list = match self
            .ask(
                policy
                    .plugin
                    .on_invalidate(self.request_id, policy.limits, req, resp),
            )
            .await
        {
            Ok(list) => list,
            Err(e) => {
                // The write is done: a policy configured to fail closed has nothing to refuse.
                self.plugin_error(&e, Some(policy.plugin), route);
                failed = Some(e.as_str());
                Vec::new()
            }
        };
        for (name, _) in &route.also_invalidate {
            // Loaded: a snapshot missing one is refused (`Snapshot::check`).
            let Some(plugin) = self.snapshot.plugins.get(name) else {
                continue;
            };
            let called = Instant::now();
            let more = plugin
                .on_invalidate(self.request_id, policy.limits, req, resp)
                .await;
            self.telemetry().plugin_call(called.elapsed());
            match more {
                Ok(more) => list.extend(more),
                Err(e) => {
                    plugin.count_error();
                    self.gw
                        .telemetry
                        .plugin_error(name, &plugin.version, e.as_str());
                    tracing::warn!(request_id = self.request_id, plugin = %name, kind = e.as_str(), "also_invalidate: {e}");
                    failed = failed.or(Some(e.as_str()));
                }
            }
        }
        let status = match failed {
            Some(kind) => status.detail(kind),
            None => status,
        };
        if list.is_empty() {
            return status;
        }
        match invalidate::apply(&self.gw, &self.snapshot, &route.name, &list).await {
            Ok(purged) => {
                tracing::debug!(
                    request_id = self.request_id,
                    tags = purged.generations,
                    entries = purged.entries,
                    "invalidated"
                );
                status.detail(&purged_detail(&list))
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
}

/// What a write purged, for its `Cache-Status`: `detail="purged repo:42, all-repos"`, keys and
/// prefixes as `key a/b` and `prefix a/`, soft purges marked `(soft)`. The field keeps its first
/// 128 characters.
fn purged_detail(list: &[larder_bindings::types::Invalidation]) -> String {
    use larder_bindings::types::InvalidationTarget;
    use std::fmt::Write;

    let mut text = String::from("purged");
    for (i, invalidation) in list.iter().enumerate() {
        text.push_str(if i == 0 { " " } else { ", " });
        let _ = match &invalidation.target {
            InvalidationTarget::Tag(tag) => write!(text, "{tag}"),
            InvalidationTarget::Key(k) => write!(text, "key {}", k.parts.join("/")),
            InvalidationTarget::Prefix(k) => write!(text, "prefix {}/", k.parts.join("/")),
        };
        if invalidation.soft {
            text.push_str(" (soft)");
        }
        if text.len() > 128 {
            break;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use larder_bindings::types::{Invalidation, InvalidationTarget, KeyRef};

    #[test]
    fn a_writes_cache_status_names_what_it_purged() {
        let tag = |t: &str, soft| Invalidation {
            target: InvalidationTarget::Tag(t.into()),
            soft,
        };
        let key = KeyRef {
            route: None,
            parts: vec!["repo".into(), "1".into()],
        };
        let list = [
            tag("repo:42", false),
            tag("all-repos", true),
            Invalidation {
                target: InvalidationTarget::Prefix(key),
                soft: false,
            },
        ];
        assert_eq!(
            super::purged_detail(&list),
            "purged repo:42, all-repos (soft), prefix repo/1/"
        );
    }
}
