//! Conditional headers (`proxy::conditional`): never a panic on any `If-None-Match`,
//! `If-Modified-Since`, `ETag` or `Last-Modified`; a list naming the response's tag (strongly or
//! weakly, among others) matches; a date at or after `Last-Modified` matches and an earlier
//! one does not; freshening is idempotent and keeps the stored body's length.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use proptest::prelude::*;

use super::{CASES, header_value};
use crate::proxy::conditional;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max),
        "(W/)?\"[a-z0-9,]{0,6}\"?( ?, ?(W/)?\"[a-z0-9]{0,4}\")*".prop_map(String::into_bytes),
    ]
}

fn map(pairs: &[(header::HeaderName, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let Some(v) = header_value(value) {
            h.append(name.clone(), v);
        }
    }
    h
}

/// An entity tag as an origin writes it: quoted, with no quote or space inside (commas are allowed).
fn etag() -> impl Strategy<Value = String> {
    "[!#-~]{0,8}".prop_map(|t| format!("\"{t}\""))
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_preconditions_never_panic(
        inm in proptest::option::of(bytes(40)),
        ims in proptest::option::of(bytes(40)),
        etag in proptest::option::of(bytes(20)),
        last_modified in proptest::option::of(bytes(40)),
    ) {
        let mut req = Vec::new();
        if let Some(v) = &inm { req.push((header::IF_NONE_MATCH, v.as_slice())); }
        if let Some(v) = &ims { req.push((header::IF_MODIFIED_SINCE, v.as_slice())); }
        let mut resp = Vec::new();
        if let Some(v) = &etag { resp.push((header::ETAG, v.as_slice())); }
        if let Some(v) = &last_modified { resp.push((header::LAST_MODIFIED, v.as_slice())); }
        let _ = conditional::is_not_modified(&Method::GET, &map(&req), StatusCode::OK, &map(&resp));
    }

    #[test]
    fn a_list_naming_the_tag_matches(
        tag in etag(),
        others in proptest::collection::vec(etag(), 0..4),
        at in any::<prop::sample::Index>(),
        weak_in_list in any::<bool>(),
        weak_in_response in any::<bool>(),
    ) {
        let mut list = others.clone();
        let listed = if weak_in_list { format!("W/{tag}") } else { tag.clone() };
        list.insert(at.index(others.len() + 1), listed);
        let stored = if weak_in_response { format!("W/{tag}") } else { tag.clone() };
        let req = map(&[(header::IF_NONE_MATCH, list.join(", ").as_bytes())]);
        let resp = map(&[(header::ETAG, stored.as_bytes())]);
        prop_assert!(conditional::is_not_modified(&Method::GET, &req, StatusCode::OK, &resp));
        // Only GET and HEAD, and only a success, are answered 304.
        prop_assert!(!conditional::is_not_modified(&Method::POST, &req, StatusCode::OK, &resp));
        prop_assert!(!conditional::is_not_modified(&Method::GET, &req, StatusCode::NOT_FOUND, &resp));
        // A list of other tags does not match.
        if !others.contains(&tag) {
            let req = map(&[(header::IF_NONE_MATCH, others.join(", ").as_bytes())]);
            prop_assert!(!conditional::is_not_modified(&Method::GET, &req, StatusCode::OK, &resp));
        }
    }

    #[test]
    fn a_date_matches_from_the_last_modification_on(
        modified in 0u64..4_000_000_000, delta in -100_000i64..100_000,
    ) {
        let since = modified.saturating_add_signed(delta);
        let req = map(&[(header::IF_MODIFIED_SINCE, date(since).as_bytes())]);
        let resp = map(&[(header::LAST_MODIFIED, date(modified).as_bytes())]);
        prop_assert_eq!(
            conditional::is_not_modified(&Method::GET, &req, StatusCode::OK, &resp),
            since >= modified
        );
    }

    #[test]
    fn freshening_is_idempotent_and_keeps_the_length(
        stored in proptest::collection::vec(("[a-z]{1,3}", bytes(10)), 0..6),
        update in proptest::collection::vec(("[a-z]{1,3}", bytes(10)), 0..6),
        length in any::<u32>(), update_length in any::<u32>(),
    ) {
        let build = |pairs: &[(String, Vec<u8>)], len: u32| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                if let (Ok(n), Some(v)) = (header::HeaderName::try_from(format!("x-{n}")), header_value(v)) {
                    h.append(n, v);
                }
            }
            h.insert(header::CONTENT_LENGTH, len.into());
            h
        };
        let (stored, update) = (build(&stored, length), build(&update, update_length));
        let mut once = stored.clone();
        conditional::freshen(&mut once, &update);
        let mut twice = once.clone();
        conditional::freshen(&mut twice, &update);
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(&once[header::CONTENT_LENGTH], &stored[header::CONTENT_LENGTH]);
        for name in update.keys().filter(|n| **n != header::CONTENT_LENGTH) {
            let got: Vec<_> = once.get_all(name).iter().collect();
            let want: Vec<_> = update.get_all(name).iter().collect();
            prop_assert_eq!(got, want);
        }
    }
}
