//! Phase 0 of a request: one spelling per path, before anything looks at it.
//!
//! `/api/v1/repositories//1/./ai-features`, `/api/v1/repositories/%31/ai-features` and
//! `/api/v1/repositories/1/ai-features` name one resource. If the router, the policy and the
//! cache key saw three texts while the upstream saw one resource, a purge through one spelling
//! would leave the others cached, and a path with `..` could be keyed as one resource and served
//! by the upstream as another. So the path is normalised once, at the door, and the normal form
//! is what is routed, given to the policy, keyed, *and forwarded upstream*: the cache's view
//! and the upstream's are the same by construction. The query is left untouched (its meaning
//! is the application's).
//!
//! The normal form (RFC 3986 section 6.2.2, plus merged slashes):
//!
//! 1. a percent-encoded unreserved character (`ALPHA DIGIT - . _ ~`, section 2.3) is decoded:
//!    `%31` is `1`, `%7e` is `~`;
//! 2. every other percent-encoding is kept, with upper-case hex digits: `%2f` is `%2F` (an
//!    encoded `/` stays data, never becomes a separator);
//! 3. a byte that origin-form does not allow raw (`"`, `{`, `|`, `\`, non-ASCII UTF-8, ...:
//!    accepted by the HTTP parser for compatibility) is percent-encoded, as browsers send it;
//! 4. repeated slashes are merged: `//` is `/` (a trailing `/` is kept: `/a/` is not `/a`);
//! 5. dot segments are removed (section 5.2.4), after step 1, so `%2E%2E` is `..` too.
//!
//! A request target that is not a path (`*`, an authority), a `%` not followed by two hex
//! digits, and `..` segments that climb above the root are refused with 400 and a JSON error,
//! `Cache-Status: larder; fwd=bypass; detail="path-..."`: there is no resource to name, and
//! guessing one (clamping `/../etc/passwd` to `/etc/passwd`) would forward a path the client
//! did not ask for.
//!
//! A path that is normal already, as nearly all are, costs one scan of its bytes and no
//! allocation; only a path that needs rewriting is copied.

use std::borrow::Cow;
use std::time::Instant;

use axum::body::Body;
use http::uri::{PathAndQuery, Uri};
use http::{Response, StatusCode};

use super::cache_status::{CacheStatus, Forward};
use crate::gateway::Gateway;
use crate::telemetry::{Class, Served};

/// Why a request's path has no normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The request target is not an absolute path (`OPTIONS *`, `CONNECT host:port`).
    #[error("the request target is not an absolute path (origin-form, RFC 9112 section 3.2.1)")]
    NotOriginForm,
    /// A `%` that is not followed by two hex digits.
    #[error("the path has a '%' that is not followed by two hex digits")]
    BadEscape,
    /// More `..` segments than there are segments before them.
    #[error("the path's '..' segments climb above the root")]
    AboveRoot,
}

impl PathError {
    /// The `Cache-Status` detail.
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "path-not-origin-form",
            PathError::BadEscape => "path-bad-escape",
            PathError::AboveRoot => "path-above-root",
        }
    }
}

/// Rewrites `uri` to its normal form in place: the path normalised, the query as it was, the
/// scheme and authority of an absolute-form target kept. A normal URI is left untouched (and
/// nothing is allocated).
pub fn uri(uri: &mut Uri) -> Result<(), PathError> {
    let path = match path(uri.path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    let mut target = path;
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    // Only bytes a path allows are written, and the query was parsed from a valid URI, so both
    // conversions succeed; were they to fail, refusing is the safe answer.
    parts.path_and_query =
        Some(PathAndQuery::try_from(target).map_err(|_| PathError::NotOriginForm)?);
    *uri = Uri::from_parts(parts).map_err(|_| PathError::NotOriginForm)?;
    Ok(())
}

/// The 400 answer for a path without a normal form, counted with the unrouted requests.
pub(super) fn refused(gw: &Gateway, started: Instant, error: PathError) -> Response<Body> {
    let status = CacheStatus::forward(Forward::Bypass).detail(error.as_str());
    tracing::debug!(error = %error, "request path refused");
    let response = super::respond::error_response(
        StatusCode::BAD_REQUEST,
        &status,
        &format!("bad request path: {error}"),
    );
    gw.telemetry.unrouted.served(Served {
        class: Class::Pass,
        collapsed: false,
        fleet: false,
        elapsed: started.elapsed(),
        bytes: http_body::Body::size_hint(response.body()).exact(),
        saved_us: 0,
    });
    response
}

/// The normal form of `path`: borrowed when it is normal already.
pub fn path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if scan(path.as_bytes())? {
        Ok(Cow::Borrowed(path))
    } else {
        rewrite(path.as_bytes()).map(Cow::Owned)
    }
}

/// `unreserved` (RFC 3986 section 2.3): never needs encoding, and is decoded when encoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A byte `pchar` allows raw (RFC 3986 section 3.3: unreserved, sub-delims, `:`, `@`), or the
/// segment separator. A table: the scan asks it for every byte of every path.
fn is_raw(b: u8) -> bool {
    const RAW: [bool; 256] = {
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            table[i] = b.is_ascii_alphanumeric();
            i += 1;
        }
        let others = b"-._~!$&'()*+,;=:@/";
        let mut j = 0;
        while j < others.len() {
            table[others[j] as usize] = true;
            j += 1;
        }
        table
    };
    RAW[usize::from(b)]
}

/// The escape at `bytes[i]` (a `%`): its decoded byte, or an error if it is not `%XX`.
fn escape(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    match (bytes.get(i + 1).copied(), bytes.get(i + 2).copied()) {
        (Some(h), Some(l)) => match (crate::routes::hex(h), crate::routes::hex(l)) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(PathError::BadEscape),
        },
        _ => Err(PathError::BadEscape),
    }
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Whether `path` is normal already (the fast path: no allocation); an error for a path that
/// has no normal form whatever is rewritten.
fn scan(path: &[u8]) -> Result<bool, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut normal = true;
    let mut segment_start = 1;
    let mut i = 1;
    while i < path.len() {
        match path[i] {
            b'/' => {
                let segment = &path[segment_start..i];
                if segment.is_empty() || is_dot_segment(segment) {
                    normal = false;
                }
                segment_start = i + 1;
            }
            b'%' => {
                let decoded = escape(path, i)?;
                let lower = |b: u8| b.is_ascii_lowercase();
                if is_unreserved(decoded) || lower(path[i + 1]) || lower(path[i + 2]) {
                    normal = false;
                }
                i += 2;
            }
            b if !is_raw(b) => normal = false,
            _ => {}
        }
        i += 1;
    }
    if is_dot_segment(&path[segment_start..]) {
        normal = false;
    }
    Ok(normal)
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xF)]));
}

/// The normal form of a path that [`scan`] found not normal.
fn rewrite(path: &[u8]) -> Result<String, PathError> {
    // Steps 1 to 3: one spelling per byte. Only ASCII is written, so `char::from` is exact.
    let mut text = String::with_capacity(path.len() + 8);
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let decoded = escape(path, i)?;
            if is_unreserved(decoded) {
                text.push(char::from(decoded));
            } else {
                push_escape(&mut text, decoded);
            }
            i += 3;
        } else {
            if is_raw(b) {
                text.push(char::from(b));
            } else {
                push_escape(&mut text, b);
            }
            i += 1;
        }
    }

    // Steps 4 and 5: segments, without empty ones and dot segments. The text starts with '/'
    // (checked by `scan`), so the first split piece is the empty root and is skipped.
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = text.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" | "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            segment => kept.push(segment),
        }
        // `/a/`, `/a/.` and `/a/b/..` all end in a directory: RFC 3986 keeps the slash.
        trailing_slash = last && matches!(segment, "" | "." | "..");
    }
    let mut out = String::with_capacity(text.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(p: &str) -> String {
        path(p).unwrap_or_else(|e| panic!("{p}: {e}")).into_owned()
    }

    #[test]
    fn a_normal_path_is_borrowed_not_copied() {
        for p in [
            "/",
            "/api/v1/repositories/1/ai-features",
            "/a/",
            "/files/a%2Fb",
            "/q/%C3%A9t%C3%A9",
            "/a.b/..c/.../c.",
            "/sub-delims/!$&'()*+,;=:@",
        ] {
            assert!(matches!(path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn raw_bytes_are_pchar_and_the_separator() {
        for b in 0..=u8::MAX {
            let pchar = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
            assert_eq!(is_raw(b), pchar || b == b'/', "{b:#04x}");
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(normal("/a/./b"), "/a/b");
        assert_eq!(normal("/a/b/../c"), "/a/c");
        assert_eq!(
            normal("/api/v1/repositories/2/../1/ai-features"),
            "/api/v1/repositories/1/ai-features"
        );
        assert_eq!(normal("/a/b/.."), "/a/");
        assert_eq!(normal("/a/."), "/a/");
        assert_eq!(normal("/a/.."), "/");
        assert_eq!(normal("/."), "/");
        assert_eq!(normal("/./a"), "/a");
        // RFC 3986 section 5.4.2's examples that stay within the root.
        assert_eq!(normal("/b/c/./../../g"), "/g");
        assert_eq!(normal("/b/c/g;x=1/./y"), "/b/c/g;x=1/y");
        assert_eq!(normal("/b/c/g;x=1/../y"), "/b/c/y");
    }

    #[test]
    fn repeated_slashes_are_merged() {
        assert_eq!(
            normal("/api/v1/repositories//1/./ai-features"),
            "/api/v1/repositories/1/ai-features"
        );
        assert_eq!(normal("//a///b"), "/a/b");
        assert_eq!(normal("/a//"), "/a/");
        assert_eq!(normal("//"), "/");
        // Merged before `..` is applied: an empty segment is not a segment to climb out of.
        assert_eq!(normal("/a//../b"), "/b");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_the_rest_upper_cased() {
        assert_eq!(
            normal("/api/v1/repositories/%31/ai-features"),
            "/api/v1/repositories/1/ai-features"
        );
        assert_eq!(normal("/%7e%2D%2e%5F%41z"), "/~-._Az");
        assert_eq!(normal("/files/a%2fb"), "/files/a%2Fb");
        assert_eq!(normal("/q/%c3%a9"), "/q/%C3%A9");
        // Encoded dots are dots: `%2E%2E` is `..`.
        assert_eq!(normal("/a/b/%2E%2e/c"), "/a/c");
        // An encoded slash stays data, so it neither splits nor climbs.
        assert_eq!(normal("/a/..%2F/b"), "/a/..%2F/b");
        assert_eq!(normal("/a/%2E%2E%2Fb"), "/a/..%2Fb");
    }

    #[test]
    fn bytes_origin_form_does_not_allow_raw_are_encoded() {
        assert_eq!(normal("/search/{\"a\"}"), "/search/%7B%22a%22%7D");
        assert_eq!(normal("/a|b^c"), "/a%7Cb%5Ec");
        assert_eq!(normal("/a\\..\\b"), "/a%5C..%5Cb");
        assert_eq!(normal("/q/été"), "/q/%C3%A9t%C3%A9");
        assert_eq!(normal("/[x]"), "/%5Bx%5D");
        // Raw and encoded spellings meet.
        assert_eq!(normal("/q/%c3%a9"), normal("/q/é"));
    }

    #[test]
    fn paths_without_a_normal_form_are_refused() {
        for p in [
            "/../etc/passwd",
            "/a/../../b",
            "/..",
            "/%2e%2E/x",
            "/a/./../..",
        ] {
            assert_eq!(path(p), Err(PathError::AboveRoot), "{p}");
        }
        for p in ["/a%", "/a%2", "/a%zz", "/a%2g/b", "/%%41"] {
            assert_eq!(path(p), Err(PathError::BadEscape), "{p}");
        }
        for p in ["", "*", "a/b", "example.com:443"] {
            assert_eq!(path(p), Err(PathError::NotOriginForm), "{p:?}");
        }
    }

    #[test]
    fn normalising_is_idempotent() {
        for p in [
            "/api/v1/repositories//01/./ai-features",
            "/a/b/%2E%2e/c/%7e/",
            "/q/été/%2f",
            "/a/..%2F/b",
        ] {
            let once = normal(p);
            assert!(matches!(path(&once), Ok(Cow::Borrowed(_))), "{p} -> {once}");
        }
    }

    #[test]
    fn the_uri_keeps_its_query_and_authority() {
        let mut u: Uri = "/api/v1/repositories/%31/./ai-features?x=%2e&y=..//"
            .parse()
            .unwrap();
        uri(&mut u).unwrap();
        assert_eq!(u.path(), "/api/v1/repositories/1/ai-features");
        assert_eq!(u.query(), Some("x=%2e&y=..//"));

        let mut absolute: Uri = "http://example.com/a//b?q".parse().unwrap();
        uri(&mut absolute).unwrap();
        assert_eq!(absolute.to_string(), "http://example.com/a/b?q");

        let mut normal: Uri = "/a/b?c".parse().unwrap();
        uri(&mut normal).unwrap();
        assert_eq!(normal, "/a/b?c");

        let mut above: Uri = "/../etc/passwd".parse().unwrap();
        assert_eq!(uri(&mut above), Err(PathError::AboveRoot));
        let mut star: Uri = "*".parse().unwrap();
        assert_eq!(uri(&mut star), Err(PathError::NotOriginForm));
    }
}
