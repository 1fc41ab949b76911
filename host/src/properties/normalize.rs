//! Path normalisation (`proxy::normalize`): never a panic; the normal form is normal (a second
//! pass leaves it as it is, borrowed), has no dot segments and no empty segment, and is written
//! only in bytes origin-form allows raw or as upper-case percent-escapes.

use std::borrow::Cow;

use proptest::prelude::*;

use super::CASES;
use crate::proxy::normalize::{self, PathError};

/// Path-like text: segments made of the pieces that need work (dots, escapes, slashes, raw
/// bytes), and sometimes anything.
fn path_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just("%2f".to_owned()),
        Just("%7E".to_owned()),
        Just("%".to_owned()),
        Just("%g1".to_owned()),
        "[a-z0-9]{1,3}",
        "[\"{}|\\\\^` ]",
        "\\PC",
        (any::<u8>()).prop_map(|b| format!("%{b:02x}")),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..12).prop_map(|p| format!("/{}", p.concat())),
        "\\PC{0,30}",
    ]
}

fn allowed_raw(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES * 2))]

    #[test]
    fn a_normal_path_is_normal(text in path_text()) {
        let Ok(normal) = normalize::path(&text) else {
            return Ok(());
        };
        let normal = normal.into_owned();
        // Idempotent: the normal form is normal already, so it comes back borrowed.
        match normalize::path(&normal) {
            Ok(Cow::Borrowed(again)) => prop_assert_eq!(again, normal.as_str()),
            other => prop_assert!(false, "{text:?} -> {normal:?} -> {other:?}"),
        }
        prop_assert!(normal.starts_with('/'), "{text:?} -> {normal:?}");
        let segments: Vec<&str> = normal[1..].split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            prop_assert!(
                *segment != "." && *segment != "..",
                "{text:?} -> {normal:?}: a dot segment"
            );
            // Only the last segment may be empty (a trailing slash, or the root).
            prop_assert!(
                !segment.is_empty() || i == segments.len() - 1,
                "{text:?} -> {normal:?}: an empty segment"
            );
        }
        let bytes = normal.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = &normal[i + 1..i + 3];
                prop_assert!(
                    hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                    "{text:?} -> {normal:?}: escape %{hex}"
                );
                let decoded = u8::from_str_radix(hex, 16).unwrap();
                prop_assert!(
                    !(decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded)),
                    "{text:?} -> {normal:?}: %{hex} is unreserved and should be decoded"
                );
                i += 3;
            } else {
                prop_assert!(allowed_raw(bytes[i]), "{text:?} -> {normal:?}: raw byte {}", bytes[i]);
                i += 1;
            }
        }
    }

    #[test]
    fn what_is_refused_is_refused_for_a_reason(text in path_text()) {
        match normalize::path(&text) {
            Ok(_) => {}
            Err(PathError::BadEscape) => prop_assert!(text.contains('%'), "{text:?}"),
            Err(PathError::AboveRoot) => prop_assert!(
                text.contains("..") || text.to_ascii_lowercase().contains("%2e"),
                "{text:?}"
            ),
            Err(PathError::NotOriginForm) => prop_assert!(!text.starts_with('/'), "{text:?}"),
        }
    }

    #[test]
    fn a_uri_keeps_its_query_and_gets_the_normal_path(
        text in path_text(),
        query in proptest::option::of("[a-z0-9=&%/.]{0,12}"),
    ) {
        let target = match &query {
            Some(q) => format!("{text}?{q}"),
            None => text.clone(),
        };
        let Ok(mut uri) = target.parse::<http::Uri>() else {
            return Ok(());
        };
        let before = uri.clone();
        match normalize::uri(&mut uri) {
            Ok(()) => {
                let path = normalize::path(before.path()).unwrap();
                prop_assert_eq!(uri.path(), &*path);
                prop_assert_eq!(uri.query(), before.query());
            }
            Err(e) => prop_assert_eq!(Err(e), normalize::path(before.path()).map(|_| ())),
        }
    }
}
