//! Byte ranges served from whole responses (RFC 9110 section 14).
//!
//! Larder stores whole responses only (a fill never forwards `Range`), and answers a client's
//! single-range request from them: `bytes=0-99`, `bytes=100-`, `bytes=-100`. `If-Range` is
//! honoured with a strong comparison. Several ranges in one request, or a range the cache
//! cannot evaluate, get the whole response, which RFC 9110 permits; a range that starts past
//! the end gets 416.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

/// What to answer a request's `Range` with.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The whole response (no range, or one the cache does not serve).
    Whole,
    /// `206` with these bytes, first to last inclusive.
    Partial { first: usize, last: usize },
    /// `416`: the range starts past the end.
    Unsatisfiable,
}

/// Decides how to answer `request`'s range, given the 200 response about to be sent whose body
/// has `len` bytes.
pub fn answer(method: &Method, request: &HeaderMap, response: &HeaderMap, len: usize) -> Answer {
    if *method != Method::GET {
        return Answer::Whole;
    }
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Answer::Whole;
    };
    if let Some(if_range) = request.get(header::IF_RANGE)
        && !if_range_matches(if_range, response)
    {
        return Answer::Whole;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Answer::Whole;
    };
    if spec.contains(',') {
        return Answer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Answer::Whole;
    };
    let number = |s: &str| -> Option<usize> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().unwrap_or(usize::MAX))
    };
    match (number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(suffix)) if first.trim().is_empty() => {
            if suffix == 0 || len == 0 {
                return Answer::Unsatisfiable;
            }
            Answer::Partial {
                first: len.saturating_sub(suffix),
                last: len - 1,
            }
        }
        (Some(first), last) if last.is_some() || spec.trim().ends_with('-') => {
            if first >= len {
                return Answer::Unsatisfiable;
            }
            let last = last.map_or(len - 1, |l| l.min(len - 1));
            if last < first {
                return Answer::Whole;
            }
            Answer::Partial { first, last }
        }
        _ => Answer::Whole,
    }
}

/// `If-Range`: an entity tag, compared strongly, or a date equal to `Last-Modified`.
fn if_range_matches(if_range: &HeaderValue, response: &HeaderMap) -> bool {
    let Ok(if_range) = if_range.to_str().map(str::trim) else {
        return false;
    };
    if if_range.starts_with('"') || if_range.starts_with("W/") {
        let etag = response.get(header::ETAG).and_then(|v| v.to_str().ok());
        return !if_range.starts_with("W/") && etag.is_some_and(|e| e.trim() == if_range);
    }
    response
        .get(header::LAST_MODIFIED)
        .is_some_and(|lm| lm.as_bytes() == if_range.as_bytes())
}

/// Applies `answer` to a 200 response's parts and body.
pub fn apply(answer: Answer, headers: &mut HeaderMap, body: Bytes) -> (StatusCode, Bytes) {
    let len = body.len();
    match answer {
        Answer::Whole => (StatusCode::OK, body),
        Answer::Partial { first, last } => {
            let range = format!("bytes {first}-{last}/{len}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&range).expect("digits make a header value"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(last - first + 1));
            (StatusCode::PARTIAL_CONTENT, body.slice(first..=last))
        }
        Answer::Unsatisfiable => {
            let range = format!("bytes */{len}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&range).expect("digits make a header value"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(range: &'static str, len: usize) -> Answer {
        let mut req = HeaderMap::new();
        req.insert(header::RANGE, HeaderValue::from_static(range));
        answer(&Method::GET, &req, &HeaderMap::new(), len)
    }

    #[test]
    fn single_ranges_are_served() {
        assert_eq!(ask("bytes=0-1", 10), Answer::Partial { first: 0, last: 1 });
        assert_eq!(ask("bytes=1-", 10), Answer::Partial { first: 1, last: 9 });
        assert_eq!(ask("bytes=-1", 10), Answer::Partial { first: 9, last: 9 });
        assert_eq!(ask("bytes=-20", 10), Answer::Partial { first: 0, last: 9 });
        assert_eq!(
            ask("bytes=5-100", 10),
            Answer::Partial { first: 5, last: 9 }
        );
    }

    #[test]
    fn what_is_not_served_gets_the_whole_or_416() {
        assert_eq!(ask("bytes=10-", 10), Answer::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 10), Answer::Unsatisfiable);
        assert_eq!(ask("bytes=0-1,3-4", 10), Answer::Whole);
        assert_eq!(ask("items=0-1", 10), Answer::Whole);
        assert_eq!(ask("bytes=5-2", 10), Answer::Whole);
        assert_eq!(ask("bytes=x-2", 10), Answer::Whole);
        assert_eq!(ask("bytes=-", 10), Answer::Whole);
    }

    #[test]
    fn if_range_must_match_strongly() {
        let mut req = HeaderMap::new();
        req.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        req.insert(header::IF_RANGE, HeaderValue::from_static("\"v1\""));
        let mut resp = HeaderMap::new();
        resp.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        assert_ne!(answer(&Method::GET, &req, &resp, 10), Answer::Whole);
        resp.insert(header::ETAG, HeaderValue::from_static("\"v2\""));
        assert_eq!(answer(&Method::GET, &req, &resp, 10), Answer::Whole);
        resp.insert(header::ETAG, HeaderValue::from_static("W/\"v1\""));
        assert_eq!(answer(&Method::GET, &req, &resp, 10), Answer::Whole);
    }

    #[test]
    fn a_partial_answer_describes_its_slice() {
        let mut h = HeaderMap::new();
        let (status, body) = apply(
            Answer::Partial { first: 2, last: 4 },
            &mut h,
            Bytes::from_static(b"0123456789"),
        );
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, "234");
        assert_eq!(h["content-range"], "bytes 2-4/10");
        assert_eq!(h["content-length"], "3");
    }
}
