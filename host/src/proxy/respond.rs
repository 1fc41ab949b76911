//! The answer's last steps: a `304 Not Modified` for a conditional request the answer
//! satisfies (`conditional.rs`), the range a `Range` request asked for (`range.rs`), the fields
//! every answer carries (`Cache-Status`, and `Age` for one from the cache), and the JSON body of
//! the gateway's own errors.

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::cache_status::{CacheStatus, Forward};
use super::upstream::UpstreamError;
use super::{Exchange, boxed, conditional, range};

impl Exchange {
    /// A looked-up request's `response` as the request asked for it: `304` when its
    /// conditionals hold, else the range it asked for (see [`Exchange::ranged`]).
    pub(super) async fn as_asked(&self, response: Response<Body>) -> Response<Body> {
        if conditional::is_not_modified(
            &self.parts.method,
            &self.parts.headers,
            response.status(),
            response.headers(),
        ) {
            return conditional::not_modified(response);
        }
        if self.parts.headers.contains_key(header::RANGE) {
            boxed(self.ranged(response)).await
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
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn respond(
    parts: http::response::Parts,
    body: Body,
    status: &CacheStatus,
    age: Option<u64>,
) -> Response<Body> {
    let mut response = Response::from_parts(parts, body);
    finish(&mut response, status, age);
    response
}

pub(super) fn finish(response: &mut Response<Body>, status: &CacheStatus, age: Option<u64>) {
    let headers = response.headers_mut();
    headers.insert("cache-status", status.header_value());
    if let Some(age) = age {
        headers.insert(header::AGE, HeaderValue::from(age));
    }
}

pub(super) fn upstream_failed(e: &UpstreamError, status: CacheStatus) -> Response<Body> {
    tracing::warn!(error = %e, "upstream failed");
    error_response(e.status(), &status.detail(e.as_str()), &e.to_string())
}

pub(super) fn error_response(
    code: StatusCode,
    status: &CacheStatus,
    message: &str,
) -> Response<Body> {
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
