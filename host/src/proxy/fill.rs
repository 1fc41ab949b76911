//! The miss: the request goes upstream, without the client's conditionals and, when a stale
//! entry is at hand, with its validators; a `304` freshens that entry, a failure (or a 5xx)
//! falls back on it within its `stale-if-error` window; otherwise the body is read whole so it
//! can be stored (`storing.rs`). What cannot be stored (a HEAD's body, one too large) is
//! streamed to the client as it comes.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header;
use http::{Method, Response, StatusCode};

use super::Exchange;
use super::body::{self, Buffered};
use super::cache_status::{CacheStatus, Forward};
use super::coalesce::Shared;
use super::conditional;
use super::hit::Stale;
use super::policy::PolicyCall;
use super::respond::{content_length, finish, respond, upstream_failed};
use super::storing::stored_fields;
use super::upstream::UpstreamError;
use crate::config::RouteConfig;
use crate::store::ObjectKey;
use crate::store::key::Digest;
use crate::store::redis::Lease;

/// Whether requests collapsed onto a fill may be given its response.
pub(super) enum Share {
    No,
    /// Yes, as the given variant (`None`: the response does not vary).
    As(Option<Digest>),
}

/// A fill to run.
pub(super) struct Miss {
    pub(super) object: ObjectKey,
    /// What the request's `Cache-Status` says so far: a miss, or a stale entry.
    pub(super) status: CacheStatus,
    /// The stale entry the fill revalidates, and falls back on if the upstream fails.
    pub(super) stale: Option<Stale>,
    /// The request's body, forwarded.
    pub(super) body: Body,
    /// The fleet lease this fill holds (`fleet.rs`), for the store to end with its write.
    pub(super) lease: Option<Lease>,
}

/// What a fill hands its store besides the response.
pub(super) struct FillStart {
    /// When the fill started: a tag purged since keeps its result out of the store (no
    /// resurrection).
    pub(super) started_us: u64,
    /// See [`Miss::lease`].
    pub(super) lease: Option<Lease>,
}

/// What a fill produced.
pub(super) enum Filled {
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
    pub(super) fn complete(
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

    /// Whether the fill stored its response.
    pub(super) fn stored(&self) -> bool {
        matches!(self, Filled::Complete { status, .. } if status.is_stored())
    }

    pub(super) fn shareable(&self) -> Option<Arc<Shared>> {
        match self {
            Filled::Complete { shared, .. } => shared.clone(),
            Filled::Other(_) => None,
        }
    }

    pub(super) fn into_response(self) -> Response<Body> {
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

impl Exchange {
    /// The miss path: upstream, policy, store, respond. A `stale` entry is revalidated with its
    /// validators, and served instead if the upstream fails within its stale-if-error window.
    pub(super) async fn fill(&self, policy: &PolicyCall<'_>, miss: Miss) -> Filled {
        let Miss {
            object,
            status,
            mut stale,
            body,
            lease,
        } = miss;
        let route = &policy.route.config;
        let start = FillStart {
            started_us: crate::store::tags::now_us(),
            lease,
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
        let upstream = match self.forward(headers, body, route.upstream_timeout).await {
            Ok(r) => r,
            Err(e) => {
                return self
                    .stale_if_error(stale)
                    .unwrap_or_else(|| Filled::Other(upstream_failed(&e, status)));
            }
        };
        let (mut rparts, rbody) = upstream.into_parts();
        let status = status.fwd_status(rparts.status.as_u16());

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
                && let Some(r) = self.stale_if_error(stale)
            {
                return r;
            }
            match self.read_body(route, rparts, rbody, status.clone()).await {
                Ok((parts, bytes)) => {
                    rparts = parts;
                    bytes
                }
                Err(other) => return other,
            }
        };
        self.store_response(policy, &object, rparts, bytes, status, start)
            .await
    }

    /// Reads an upstream body to store it; a body that cannot be stored (a HEAD's, one over
    /// `max_object_size`) or that fails is answered as it is, as the `Err`, and so is a range of
    /// a body too large to store, which the origin is asked for.
    async fn read_body(
        &self,
        route: &RouteConfig,
        rparts: http::response::Parts,
        rbody: hyper::body::Incoming,
        status: CacheStatus,
    ) -> Result<(http::response::Parts, Bytes), Filled> {
        let max = self.snapshot.config.cache.max_object_size;
        if self.parts.method == Method::GET
            && self.parts.headers.contains_key(header::RANGE)
            && content_length(&rparts.headers).is_some_and(|n| n > max as u64)
        {
            // Too large to store, so the range cannot be served from the cache: let the
            // origin serve it (a client resuming a 1 GiB download wants its range, not the
            // whole body again).
            drop(rbody);
            let status = CacheStatus::forward(Forward::Miss).detail("range-too-large");
            return Err(Filled::Other(
                self.pass_through(Body::empty(), route.upstream_timeout, status)
                    .await,
            ));
        }
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
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::Response;
    use http::header::{self, HeaderValue};

    use super::super::cache_status::{CacheStatus, Forward};
    use super::super::hit::collapsed;
    use super::{Filled, Share};

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
