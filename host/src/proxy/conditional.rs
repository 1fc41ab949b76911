//! Conditional requests, in both directions.
//!
//! - **Client to Larder** (RFC 9111 section 4.3.2): a client that already holds a response
//!   sends `If-None-Match` or `If-Modified-Since`; when the response Larder is about to send
//!   matches, the client gets `304 Not Modified` without the body.
//! - **Larder to origin** (section 4.3.1): a stale entry with a validator (`ETag`,
//!   `Last-Modified`) is revalidated with a conditional request; a `304` from the origin
//!   freshens the stored entry (section 4.3.4: its header fields are updated from the 304's),
//!   which then serves again without the body crossing the network.
//!
//! A fill never forwards the client's own conditionals: the origin's 304 to one client's
//! validators is no answer for the others waiting on that fill, nor something to store.

use std::time::SystemTime;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

/// Whether the client's preconditions say it already holds `headers`' representation, so it
/// should get a 304 (RFC 9110 section 13.2.2: `If-None-Match` first, `If-Modified-Since` only
/// without it, both for GET and HEAD and a 2xx response only).
pub fn is_not_modified(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    headers: &HeaderMap,
) -> bool {
    if !(*method == Method::GET || *method == Method::HEAD) || !status.is_success() {
        return false;
    }
    if request.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|list| list.trim() == "*" || etags(list).any(|tag| weak_eq(tag, etag)));
    }
    let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_date)
    else {
        return false;
    };
    // The stored response's Last-Modified, else its Date (RFC 9111 section 4.3.2).
    let modified = headers
        .get(header::LAST_MODIFIED)
        .or_else(|| headers.get(header::DATE))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_date);
    modified.is_some_and(|modified| modified <= since)
}

/// Turns `response` into the 304 that stands for it: the header fields a 304 carries
/// (RFC 9110 section 15.4.5) plus Larder's own, and no body.
pub fn not_modified(response: Response<Body>) -> Response<Body> {
    const KEPT: [HeaderName; 7] = [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
    ];
    let (mut parts, _) = response.into_parts();
    let mut headers = HeaderMap::with_capacity(KEPT.len() + 2);
    for name in KEPT
        .iter()
        .chain([&header::AGE, &HeaderName::from_static("cache-status")])
    {
        for value in parts.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    parts.status = StatusCode::NOT_MODIFIED;
    parts.headers = headers;
    Response::from_parts(parts, Body::empty())
}

/// Removes the client's conditional and range header fields from a request that fills the
/// cache: the fill must fetch the whole, current representation.
pub fn strip_client_conditionals(headers: &mut HeaderMap) {
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::RANGE,
    ] {
        headers.remove(name);
    }
}

/// Adds the validators of a stored response to a revalidation request; `false` when it has
/// none (then the request is an ordinary fetch).
pub fn add_validators(request: &mut HeaderMap, stored: &HeaderMap) -> bool {
    let mut any = false;
    if let Some(etag) = stored.get(header::ETAG) {
        request.insert(header::IF_NONE_MATCH, etag.clone());
        any = true;
    }
    if let Some(modified) = stored.get(header::LAST_MODIFIED) {
        request.insert(header::IF_MODIFIED_SINCE, modified.clone());
        any = true;
    }
    any
}

/// Whether a stored response can be revalidated at all.
pub fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED)
}

/// Updates a stored response's header fields from a 304 (RFC 9111 section 3.2): each field the
/// 304 carries replaces the stored one, except `Content-Length` (the 304 has no body; the
/// stored body is unchanged) and the fields that describe that body's encoding.
pub fn freshen(stored: &mut HeaderMap, update: &HeaderMap) {
    for name in update.keys() {
        if *name == header::CONTENT_LENGTH
            || *name == header::CONTENT_ENCODING
            || *name == header::CONTENT_RANGE
            || *name == header::TRANSFER_ENCODING
        {
            continue;
        }
        stored.remove(name);
        for value in update.get_all(name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

/// The entity tags of an `If-None-Match` list, as written (with `W/` and quotes).
fn etags(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return None;
        }
        let start = rest;
        let body = rest.strip_prefix("W/").unwrap_or(rest);
        let offset = start.len() - body.len();
        let end = match body.strip_prefix('"') {
            // A quoted tag ends at the next quote (entity tags hold no quotes, but commas).
            Some(inner) => inner.find('"').map_or(body.len(), |i| i + 2),
            // Not a valid tag: skip to the next comma.
            None => body.find(',').unwrap_or(body.len()),
        };
        let (tag, after) = start.split_at(offset + end);
        rest = after;
        Some(tag.trim())
    })
}

/// Weak comparison (RFC 9110 section 8.8.3.2): equal opaque tags, `W/` ignored.
fn weak_eq(a: &str, b: &str) -> bool {
    let opaque = |t: &str| {
        let t = t.trim();
        t.strip_prefix("W/").unwrap_or(t).to_owned()
    };
    let (a, b) = (opaque(a), opaque(b));
    a.starts_with('"') && a.len() >= 2 && a.ends_with('"') && a == b
}

fn parse_date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

/// A `Date` header value for now: a response without one gets it when Larder receives it
/// (RFC 9110 section 6.6.1), so its age can be computed later.
pub fn date_now() -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now()))
        .expect("an HTTP date is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn nm(req: &[(&'static str, &'static str)], resp: &[(&'static str, &'static str)]) -> bool {
        is_not_modified(&Method::GET, &headers(req), StatusCode::OK, &headers(resp))
    }

    #[test]
    fn if_none_match_compares_weakly_over_a_list() {
        let stored = [("etag", "W/\"abc\"")];
        assert!(nm(&[("if-none-match", "\"abc\"")], &stored));
        assert!(nm(&[("if-none-match", "\"x\", W/\"abc\"")], &stored));
        assert!(nm(&[("if-none-match", "*")], &stored));
        assert!(!nm(&[("if-none-match", "\"abcd\"")], &stored));
        assert!(!nm(&[("if-none-match", "abc")], &stored));
        // A comma inside a tag does not split it.
        assert!(nm(&[("if-none-match", "\"a,b\"")], &[("etag", "\"a,b\"")]));
        assert!(!nm(&[("if-none-match", "\"a\"")], &[("etag", "\"a,b\"")]));
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let stored = [
            ("etag", "\"v2\""),
            ("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ];
        let req = [
            ("if-none-match", "\"v1\""),
            ("if-modified-since", "Wed, 01 Jan 2031 00:00:00 GMT"),
        ];
        assert!(!nm(&req, &stored));
    }

    #[test]
    fn if_modified_since_uses_last_modified_then_date() {
        let lm = [("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT")];
        assert!(nm(
            &[("if-modified-since", "Tue, 01 Jan 2030 00:00:00 GMT")],
            &lm
        ));
        assert!(!nm(
            &[("if-modified-since", "Mon, 31 Dec 2029 23:59:59 GMT")],
            &lm
        ));
        let date = [("date", "Tue, 01 Jan 2030 00:00:00 GMT")];
        assert!(nm(
            &[("if-modified-since", "Wed, 02 Jan 2030 00:00:00 GMT")],
            &date
        ));
        assert!(!nm(&[("if-modified-since", "garbage")], &lm));
    }

    #[test]
    fn only_safe_methods_and_success_are_answered_304() {
        let req = headers(&[("if-none-match", "*")]);
        let resp = headers(&[("etag", "\"a\"")]);
        assert!(!is_not_modified(&Method::POST, &req, StatusCode::OK, &resp));
        assert!(!is_not_modified(
            &Method::GET,
            &req,
            StatusCode::NOT_FOUND,
            &resp
        ));
    }

    #[test]
    fn a_304_keeps_only_the_fields_it_may_carry() {
        let mut r = Response::new(Body::from("body"));
        *r.headers_mut() = headers(&[
            ("etag", "\"a\""),
            ("content-type", "text/plain"),
            ("content-length", "4"),
            ("cache-control", "max-age=60"),
            ("age", "3"),
            ("cache-status", "larder; hit"),
        ]);
        let r = not_modified(r);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let mut names: Vec<&str> = r.headers().keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["age", "cache-control", "cache-status", "etag"]);
    }

    #[test]
    fn freshening_replaces_fields_but_not_the_body_length() {
        let mut stored = headers(&[
            ("etag", "\"a\""),
            ("cache-control", "max-age=1"),
            ("content-length", "4"),
            ("x-kept", "yes"),
        ]);
        freshen(
            &mut stored,
            &headers(&[
                ("cache-control", "max-age=600"),
                ("content-length", "0"),
                ("x-new", "1"),
            ]),
        );
        assert_eq!(stored["cache-control"], "max-age=600");
        assert_eq!(stored["content-length"], "4");
        assert_eq!(stored["x-kept"], "yes");
        assert_eq!(stored["x-new"], "1");
    }

    #[test]
    fn validators_come_from_the_stored_response() {
        let mut req = headers(&[("if-none-match", "\"client\"")]);
        strip_client_conditionals(&mut req);
        assert!(req.is_empty());
        assert!(add_validators(
            &mut req,
            &headers(&[
                ("etag", "\"s\""),
                ("last-modified", "Tue, 01 Jan 2030 00:00:00 GMT")
            ])
        ));
        assert_eq!(req["if-none-match"], "\"s\"");
        assert!(req.contains_key("if-modified-since"));
        assert!(!add_validators(&mut HeaderMap::new(), &HeaderMap::new()));
    }
}
