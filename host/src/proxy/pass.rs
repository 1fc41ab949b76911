//! Forwarding uncached: a request no route matches, one its policy passes, one whose policy
//! failed on a route that fails open, one the cache cannot answer (a method other than GET or
//! HEAD, a GET with content, a range of a body too large to store). The upstream's answer goes
//! back as it came, with its `Cache-Status`.

use std::time::Duration;

use axum::body::Body;
use http::Response;

use super::Exchange;
use super::cache_status::CacheStatus;
use super::respond::{respond, upstream_failed};

impl Exchange {
    /// Forwards without caching; `status` says why.
    pub(super) async fn pass_through(
        &self,
        body: Body,
        timeout: Duration,
        status: CacheStatus,
    ) -> Response<Body> {
        match self
            .forward(self.parts.headers.clone(), body, timeout)
            .await
        {
            Ok(r) => {
                let (rparts, rbody) = r.into_parts();
                let status = status.fwd_status(rparts.status.as_u16());
                respond(rparts, Body::new(rbody), &status, None)
            }
            Err(e) => upstream_failed(&e, status),
        }
    }
}
