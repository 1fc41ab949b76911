//! `Cache-Control` and `CDN-Cache-Control` (`larder_sdk::cache_control`, the parser every
//! policy built with the SDK runs on the origin's headers): never a panic on any field value;
//! what a directive list says survives being written out and read again, in both the lenient
//! `Cache-Control` form and the strict Structured Fields form of targeted fields; repeated
//! directives keep their first value; delta-seconds saturate at 2^31; HTTP dates read back
//! the instant they were written for.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::CASES;
use sdk::{CacheControl, DELTA_SECONDS_MAX, parse_age, parse_delta_seconds, parse_http_date};

/// The SDK's parser, compiled here from its source rather than through a dependency on
/// `larder-sdk`: that crate's `wit-bindgen` macro would change the features of proc-macro
/// crates wasmtime's macros share and build wasmtime a second time (see `cargo xtask test`).
/// The file is self-contained (it uses nothing else of the SDK).
#[path = "../../../plugins/sdk/src/cache_control.rs"]
#[allow(dead_code)]
mod sdk;

fn seconds() -> impl Strategy<Value = Option<u32>> {
    proptest::option::of(prop_oneof![
        0u32..1000,
        Just(DELTA_SECONDS_MAX),
        0..DELTA_SECONDS_MAX
    ])
}

fn cache_control() -> impl Strategy<Value = CacheControl> {
    (
        any::<[bool; 7]>(),
        (seconds(), seconds(), seconds(), seconds()),
    )
        .prop_map(|(f, (max_age, s_maxage, swr, sie))| CacheControl {
            no_store: f[0],
            no_cache: f[1],
            private: f[2],
            public: f[3],
            must_revalidate: f[4],
            proxy_revalidate: f[5],
            must_understand: f[6],
            max_age,
            s_maxage,
            stale_while_revalidate: swr,
            stale_if_error: sie,
        })
}

/// The directives of `cc`, as an origin would write them.
fn render(cc: &CacheControl) -> String {
    let flags = [
        (cc.no_store, "no-store"),
        (cc.no_cache, "no-cache"),
        (cc.private, "private"),
        (cc.public, "public"),
        (cc.must_revalidate, "must-revalidate"),
        (cc.proxy_revalidate, "proxy-revalidate"),
        (cc.must_understand, "must-understand"),
    ];
    let numbers = [
        (cc.max_age, "max-age"),
        (cc.s_maxage, "s-maxage"),
        (cc.stale_while_revalidate, "stale-while-revalidate"),
        (cc.stale_if_error, "stale-if-error"),
    ];
    flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .chain(
            numbers
                .iter()
                .filter_map(|(n, name)| n.map(|n| format!("{name}={n}"))),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Field-value-like text: directive pieces, sometimes anything.
fn field_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("max-age"),
        Just("s-maxage"),
        Just("no-cache"),
        Just("private"),
        Just("public"),
        Just("stale-if-error"),
        Just("MAX-AGE"),
        Just("="),
        Just(","),
        Just(";"),
        Just(" "),
        Just("\""),
        Just("?1"),
        Just("?0"),
        Just("-1"),
        Just("99999999999999999999"),
        Just("1.5"),
        Just(":aGk=:"),
        Just("("),
        Just(")"),
        Just("*"),
        Just("60"),
    ];
    prop_oneof![
        3 => proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat()),
        1 => "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_fields_never_panic(values in proptest::collection::vec(field_text(), 0..3)) {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let lenient = CacheControl::parse(values.iter().copied());
        let targeted = CacheControl::parse_targeted(values.iter().copied());
        for cc in std::iter::once(&lenient).chain(targeted.as_ref()) {
            for n in [cc.max_age, cc.s_maxage, cc.stale_while_revalidate, cc.stale_if_error]
                .into_iter()
                .flatten()
            {
                prop_assert!(n <= DELTA_SECONDS_MAX, "{values:?}: {n}");
            }
        }
    }

    #[test]
    fn directives_survive_a_round_trip(cc in cache_control()) {
        let text = render(&cc);
        prop_assert_eq!(&CacheControl::parse([text.as_str()]), &cc, "{}", text);
        prop_assert_eq!(CacheControl::parse_targeted([text.as_str()]), Some(cc), "{}", text);
    }

    #[test]
    fn the_first_value_of_a_directive_wins(a in cache_control(), b in cache_control()) {
        let (ta, tb) = (render(&a), render(&b));
        let both = CacheControl::parse([ta.as_str(), tb.as_str()]);
        prop_assert_eq!(both.max_age, a.max_age.or(b.max_age));
        prop_assert_eq!(both.s_maxage, a.s_maxage.or(b.s_maxage));
        prop_assert_eq!(both.stale_if_error, a.stale_if_error.or(b.stale_if_error));
        prop_assert_eq!(both.no_store, a.no_store || b.no_store);
        prop_assert_eq!(both.private, a.private || b.private);
    }

    #[test]
    fn delta_seconds_saturate(n in any::<u128>(), pad in "[ ]{0,2}") {
        let text = format!("{pad}{n}{pad}");
        let expected = u32::try_from(n.min(u128::from(DELTA_SECONDS_MAX))).unwrap();
        prop_assert_eq!(parse_delta_seconds(&text), Some(expected));
        prop_assert_eq!(parse_age(&format!("{n}, 5")), Some(expected));
    }

    #[test]
    fn arbitrary_seconds_and_dates_never_panic(text in "\\PC{0,40}") {
        if let Some(n) = parse_delta_seconds(&text) {
            prop_assert!(n <= DELTA_SECONDS_MAX);
        }
        let _ = parse_age(&text);
        let _ = parse_http_date(&text);
    }

    #[test]
    fn an_http_date_reads_back_its_instant(secs in 0u64..253_402_300_799) {
        let text = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        prop_assert_eq!(parse_http_date(&text), Some(secs as i64), "{}", text);
        prop_assert_eq!(parse_http_date(&text.to_ascii_lowercase()), Some(secs as i64));
    }
}
