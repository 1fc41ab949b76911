//! A POST on a `cache_post` route: looked up by its body's digest when its policy asks.
//!
//! The body is read whole (at most `cache.max_request_body`, within
//! `server.body_read_timeout_ms`) and its digest offered to `on-request`. A policy that asked
//! for the digest and returned `lookup` has the request looked up under its key and the digest
//! (`lookup.rs`); its fills send the body upstream again. Anything else is an ordinary write
//! (`write.rs`).

use axum::body::Body;
use bytes::Bytes;
use http::{Response, StatusCode};
use larder_bindings::types::RequestDecision;

use super::Exchange;
use super::body::{self, Buffered};
use super::cache_status::{CacheStatus, Forward};
use super::policy::PolicyCall;
use super::respond::error_response;

/// A POST body read whole, and its digest (64 hex digits of BLAKE3).
#[derive(Clone)]
pub(super) struct PostBody {
    pub(super) bytes: Bytes,
    pub(super) digest: String,
}

impl Exchange {
    /// Reads the body, asks the policy with its digest, and looks the request up, or writes
    /// it (see the module docs).
    pub(super) async fn post_lookup(
        &mut self,
        policy: &PolicyCall<'_>,
        body: Body,
    ) -> Response<Body> {
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
        let decision = self
            .ask(policy.plugin.on_request_with_body(
                self.request_id,
                policy.limits,
                policy.req.get(),
                Some(&digest),
            ))
            .await;
        let route = &policy.route.config;
        match decision {
            Err(e) => {
                self.plugin_failed(e, Some(policy.plugin), route, Body::from(bytes))
                    .await
            }
            Ok((RequestDecision::Lookup(key), facts)) if facts.body_digest_asked => {
                let base = self
                    .object_key(&route.name, &key)
                    .variant(&[("body", &digest)]);
                self.post = Some(PostBody { bytes, digest });
                self.cached(policy, base, Body::empty()).await
            }
            Ok(_) => self.write_through(policy, Body::from(bytes)).await,
        }
    }
}
