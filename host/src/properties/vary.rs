//! `Vary` and the `Accept-*` normalisation (`proxy::vary`): never a panic; `Vary` fields come
//! out lower-case, sorted and unique, and survive the Vary marker's round trip; normalising a
//! request field twice is normalising it once, so two requests that differ only in spelling
//! (case, order, spaces, weights of zero) select one variant.

use http::header::{self, HeaderMap, HeaderName};
use proptest::prelude::*;

use super::{CASES, header_value};
use crate::proxy::vary::{self, Vary};
use crate::store::ObjectKey;

/// List-like header text: tokens, weights, commas and spaces, sometimes anything.
fn list_text() -> impl Strategy<Value = Vec<u8>> {
    let item = prop_oneof![
        "[A-Za-z*-]{0,6}",
        "[a-z]{1,5};q=(0|0\\.0|1|0\\.5|x)",
        "[a-z]{1,3} ; Q = 0",
        Just(String::new()),
        Just(" ".to_owned()),
        Just(";q=1".to_owned()),
    ];
    prop_oneof![
        3 => proptest::collection::vec(item, 0..6).prop_map(|i| i.join(",").into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..30),
    ]
}

fn field() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        Just(header::ACCEPT_ENCODING),
        Just(header::ACCEPT_LANGUAGE),
        Just(header::ACCEPT),
        Just(HeaderName::from_static("x-tenant")),
    ]
}

fn request(field: &HeaderName, values: &[Vec<u8>]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        if let Some(v) = header_value(v) {
            h.append(field.clone(), v);
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn vary_fields_are_canonical_and_survive_the_marker(
        values in proptest::collection::vec(list_text(), 0..3),
    ) {
        let headers = request(&header::VARY, &values);
        match Vary::of(&headers) {
            Vary::Fields(fields) => {
                prop_assert!(!fields.is_empty());
                prop_assert!(
                    fields.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
                    "{fields:?}"
                );
                let mut marker = HeaderMap::new();
                marker.insert(header::VARY, vary::marker_header(&fields));
                prop_assert_eq!(Vary::of(&marker), Vary::Fields(fields));
            }
            Vary::None | Vary::Star => {}
        }
    }

    #[test]
    fn normalising_a_request_field_twice_is_normalising_it_once(
        field in field(),
        values in proptest::collection::vec(list_text(), 0..3),
    ) {
        let once = vary::normalised(&field, &request(&field, &values));
        let again = vary::normalised(&field, &request(&field, &[once.clone().into_bytes()]));
        prop_assert_eq!(&again, &once, "{:?}", values);
        // And the variant keys agree: a request carrying the normal form selects the variant
        // the original selected.
        let base = ObjectKey::derive("r", &["p"], &[]);
        let fields = [field.clone()];
        prop_assert_eq!(
            vary::variant_key(&base, &fields, &request(&field, &values)).digest,
            vary::variant_key(&base, &fields, &request(&field, &[once.into_bytes()])).digest
        );
    }

    #[test]
    fn the_order_and_case_of_languages_do_not_select_a_variant(
        langs in proptest::collection::vec("[a-zA-Z]{1,3}(-[a-zA-Z]{2})?", 1..5),
        seed in any::<u64>(),
    ) {
        let mut shuffled = langs.clone();
        let n = shuffled.len();
        shuffled.rotate_left((seed as usize) % n);
        let upper: Vec<String> = shuffled.iter().map(|l| l.to_ascii_uppercase()).collect();
        let a = request(&header::ACCEPT_LANGUAGE, &[langs.join(", ").into_bytes()]);
        let b = request(&header::ACCEPT_LANGUAGE, &[upper.join(",").into_bytes()]);
        prop_assert_eq!(
            vary::normalised(&header::ACCEPT_LANGUAGE, &a),
            vary::normalised(&header::ACCEPT_LANGUAGE, &b)
        );
    }

    #[test]
    fn language_preferences_never_panic_and_are_lower_case(
        values in proptest::collection::vec(list_text(), 0..3),
    ) {
        let req = request(&header::ACCEPT_LANGUAGE, &values);
        if let Some(lang) = vary::preferred_language(&req) {
            prop_assert!(!lang.is_empty() && lang != "*");
            prop_assert_eq!(lang.to_ascii_lowercase(), lang);
        }
        let resp = request(&header::CONTENT_LANGUAGE, &values);
        if let Some(lang) = vary::content_language(&resp) {
            prop_assert!(!lang.is_empty() && !lang.contains(','));
        }
    }
}

/// Found by `normalising_a_request_field_twice_is_normalising_it_once`: an `Accept-Encoding`
/// item with an empty coding (`;q=1`) normalised to an empty string, which a second pass
/// dropped, so `;q=1, gzip` and `gzip` selected different variants.
#[test]
fn an_empty_coding_is_no_coding() {
    let field = header::ACCEPT_ENCODING;
    let with_empty = request(&field, &[b";q=1, gzip".to_vec()]);
    let plain = request(&field, &[b"gzip".to_vec()]);
    assert_eq!(vary::normalised(&field, &with_empty), "gzip");
    assert_eq!(
        vary::normalised(&field, &with_empty),
        vary::normalised(&field, &plain)
    );
}
