//! `Range` (`proxy::range`): never a panic; a satisfiable range lies within the body, and the
//! 206 carries exactly its bytes with a `Content-Range` that describes them.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use proptest::prelude::*;

use super::{CASES, header_value};
use crate::proxy::range::{Answer, answer, apply};

fn request(range: &[u8], if_range: Option<&[u8]>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = header_value(range) {
        h.insert(header::RANGE, v);
    }
    if let Some(v) = if_range.and_then(header_value) {
        h.insert(header::IF_RANGE, v);
    }
    h
}

/// Range-like text: mostly the grammar's pieces, sometimes anything.
fn range_text() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        (0u64..300).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999999999".to_owned()),
        Just(String::new()),
        Just(" ".to_owned()),
    ];
    prop_oneof![
        (num.clone(), num.clone(), "[ ,-]{0,2}")
            .prop_map(|(a, b, sep)| format!("bytes={a}-{b}{sep}")),
        (num.clone(), num).prop_map(|(a, b)| format!(" bytes= {a} - {b} ")),
        "\\PC{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_range_headers_never_panic(
        range in proptest::collection::vec(any::<u8>(), 0..40),
        if_range in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        len in 0usize..1000,
    ) {
        let req = request(&range, if_range.as_deref());
        let a = answer(&Method::GET, &req, &HeaderMap::new(), len);
        let body = Bytes::from(vec![7u8; len]);
        let _ = apply(a, &mut HeaderMap::new(), body);
    }

    #[test]
    fn a_satisfiable_range_lies_within_the_body(text in range_text(), len in 0usize..300) {
        let req = request(text.as_bytes(), None);
        let body: Bytes = (0..len).map(|i| i as u8).collect::<Vec<u8>>().into();
        let a = answer(&Method::GET, &req, &HeaderMap::new(), len);
        let mut headers = HeaderMap::new();
        match a {
            Answer::Partial { first, last } => {
                prop_assert!(first <= last && last < len, "{text:?} on {len}: {first}-{last}");
                let (status, slice) = apply(a, &mut headers, body.clone());
                prop_assert_eq!(status, StatusCode::PARTIAL_CONTENT);
                prop_assert_eq!(&slice[..], &body[first..=last]);
                prop_assert_eq!(
                    headers[header::CONTENT_RANGE].to_str().unwrap(),
                    format!("bytes {first}-{last}/{len}")
                );
                prop_assert_eq!(
                    headers[header::CONTENT_LENGTH].to_str().unwrap(),
                    slice.len().to_string()
                );
            }
            Answer::Whole => {
                let (status, whole) = apply(a, &mut headers, body.clone());
                prop_assert_eq!(status, StatusCode::OK);
                prop_assert_eq!(whole, body);
            }
            Answer::Unsatisfiable => {
                let (status, empty) = apply(a, &mut headers, body);
                prop_assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
                prop_assert!(empty.is_empty());
            }
        }
    }

    #[test]
    fn a_well_formed_single_range_is_served_exactly(
        first in 0usize..400, span in 0usize..400, len in 1usize..300,
    ) {
        let last = first + span;
        let req = request(format!("bytes={first}-{last}").as_bytes(), None);
        let a = answer(&Method::GET, &req, &HeaderMap::new(), len);
        if first >= len {
            prop_assert_eq!(a, Answer::Unsatisfiable);
        } else {
            prop_assert_eq!(a, Answer::Partial { first, last: last.min(len - 1) });
        }
    }
}
