//! The request as a policy sees it, and the checks on what a policy answers.
//!
//! A policy's answer is checked before the host acts on it: an empty key, a zero TTL, an
//! oversized tag list is a malformed answer, treated like a trap (the request proxies
//! uncached), never half-obeyed.

use larder_bindings::types::{
    Header, Invalidation, InvalidationTarget, Param, Request, RequestDecision, Response,
    ResponseDecision,
};

use crate::config::RouteConfig;
use crate::routes::RouteMatch;

/// Limits on what a policy may ask for, so one bad plugin cannot bloat Redis.
const MAX_KEY_PARTS: usize = 32;
const MAX_KEY_BYTES: usize = 4096;
const MAX_TAGS: usize = 64;
const MAX_TAG_BYTES: usize = 256;
const MAX_INVALIDATIONS: usize = 256;
/// A vary entry names a request header; real names are short.
const MAX_VARY_NAME_BYTES: usize = 256;
/// A `pass` / `no-store` reason is a short word (`Cache-Status` shows its first 128 bytes).
const MAX_REASON_BYTES: usize = 1024;

/// Builds the policy's view of a request: every header field but those the route hides.
pub fn request(parts: &http::request::Parts, matched: &RouteMatch<'_>) -> Request {
    let config = &matched.route.config;
    Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: shown_headers(&parts.headers, |name| matched.route.shows(name)),
        route_name: config.name.clone(),
        route_pattern: config.path.clone(),
        params: matched
            .params
            .iter()
            .map(|(name, value)| Param {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        settings: settings(config),
    }
}

/// A route's `[route.settings]` as the policy sees them, in `request.settings` and
/// `check-settings`.
pub fn settings(route: &RouteConfig) -> Vec<Param> {
    route
        .settings
        .iter()
        .map(|(name, value)| Param {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// Builds the policy's view of an upstream response.
pub fn response(
    status: http::StatusCode,
    headers_in: &http::HeaderMap,
    body_size: Option<u64>,
) -> Response {
    Response {
        status: status.as_u16(),
        headers: headers(headers_in),
        body_size,
    }
}

fn headers(map: &http::HeaderMap) -> Vec<Header> {
    shown_headers(map, |_| true)
}

fn shown_headers(map: &http::HeaderMap, shows: impl Fn(&http::HeaderName) -> bool) -> Vec<Header> {
    map.iter()
        .filter(|(name, _)| shows(name))
        .map(|(name, value)| Header {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
}

pub fn check_request_decision(d: &RequestDecision) -> Result<(), String> {
    match d {
        RequestDecision::Pass(reason) => check_reason(reason),
        RequestDecision::Lookup(key) => {
            check_parts(&key.parts)?;
            if key.vary.len() > MAX_KEY_PARTS {
                return Err(format!(
                    "{} vary headers (at most {MAX_KEY_PARTS})",
                    key.vary.len()
                ));
            }
            for name in &key.vary {
                if name.len() > MAX_VARY_NAME_BYTES {
                    return Err(format!(
                        "vary entry of {} bytes (at most {MAX_VARY_NAME_BYTES})",
                        name.len()
                    ));
                }
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(format!("vary entry {name:?} is not a header name"));
                }
            }
            Ok(())
        }
    }
}

pub fn check_response_decision(d: &ResponseDecision) -> Result<(), String> {
    match d {
        ResponseDecision::NoStore(reason) => check_reason(reason),
        ResponseDecision::Store(s) => {
            if s.tags.len() > MAX_TAGS {
                return Err(format!("{} tags (at most {MAX_TAGS})", s.tags.len()));
            }
            for tag in &s.tags {
                check_tag(tag)?;
            }
            Ok(())
        }
    }
}

pub fn check_invalidations(list: &[Invalidation]) -> Result<(), String> {
    if list.len() > MAX_INVALIDATIONS {
        return Err(format!(
            "{} invalidations (at most {MAX_INVALIDATIONS})",
            list.len()
        ));
    }
    for inv in list {
        match &inv.target {
            InvalidationTarget::Tag(tag) => check_tag(tag)?,
            InvalidationTarget::Key(k) | InvalidationTarget::Prefix(k) => check_parts(&k.parts)?,
        }
    }
    Ok(())
}

fn check_parts(parts: &[String]) -> Result<(), String> {
    if parts.is_empty() {
        return Err("empty key (a key needs at least one part)".into());
    }
    if parts.len() > MAX_KEY_PARTS {
        return Err(format!(
            "{} key parts (at most {MAX_KEY_PARTS})",
            parts.len()
        ));
    }
    let bytes: usize = parts.iter().map(String::len).sum();
    if bytes > MAX_KEY_BYTES {
        return Err(format!("key of {bytes} bytes (at most {MAX_KEY_BYTES})"));
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<(), String> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(format!(
            "reason of {} bytes (at most {MAX_REASON_BYTES})",
            reason.len()
        ));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
        return Err(format!("tag of {} bytes (1 to {MAX_TAG_BYTES})", tag.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use larder_bindings::types::{CacheKey, KeyRef, StoreDirective};

    #[test]
    fn an_empty_key_is_malformed() {
        let d = RequestDecision::Lookup(CacheKey {
            parts: vec![],
            vary: vec![],
        });
        assert!(
            check_request_decision(&d)
                .unwrap_err()
                .contains("empty key")
        );
    }

    #[test]
    fn a_zero_ttl_is_a_store_to_revalidate() {
        let d = ResponseDecision::Store(StoreDirective {
            ttl: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            tags: vec![],
        });
        assert!(check_response_decision(&d).is_ok());
    }

    #[test]
    fn a_bad_vary_name_is_malformed() {
        let d = RequestDecision::Lookup(CacheKey {
            parts: vec!["a".into()],
            vary: vec!["not a header".into()],
        });
        assert!(check_request_decision(&d).is_err());
    }

    #[test]
    fn reasonable_answers_pass() {
        let d = RequestDecision::Lookup(CacheKey {
            parts: vec!["repo".into(), "1".into()],
            vary: vec!["accept".into()],
        });
        assert!(check_request_decision(&d).is_ok());
        let inv = vec![Invalidation {
            target: InvalidationTarget::Prefix(KeyRef {
                route: None,
                parts: vec!["repo".into()],
            }),
            soft: false,
        }];
        assert!(check_invalidations(&inv).is_ok());
    }

    #[test]
    fn oversized_reasons_and_vary_names_are_malformed() {
        let long = "x".repeat(MAX_REASON_BYTES + 1);
        let err = check_request_decision(&RequestDecision::Pass(long.clone())).unwrap_err();
        assert!(err.contains("reason of 1025 bytes"), "{err}");
        assert!(check_response_decision(&ResponseDecision::NoStore(long)).is_err());
        assert!(check_request_decision(&RequestDecision::Pass("method".into())).is_ok());
        let d = RequestDecision::Lookup(CacheKey {
            parts: vec!["a".into()],
            vary: vec!["x".repeat(60 << 10)],
        });
        let err = check_request_decision(&d).unwrap_err();
        assert!(err.contains("vary entry of 61440 bytes"), "{err}");
    }
}
