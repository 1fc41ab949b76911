//! The admin JSON bodies (`POST /purge`, `POST /warm`): never a panic on any body (the bytes
//! come before the token is even looked at by the JSON extractor's caller), every well-formed
//! body is accepted, an unknown field is refused, and a path `/warm` accepts always builds the
//! request it is fetched with (the handler `expect`s it).

use proptest::prelude::*;
use serde_json::json;

use super::CASES;
use crate::admin::purge::{PurgeRequest, WarmRequest};

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn route_parts() -> impl Strategy<Value = serde_json::Value> {
    (text(), proptest::collection::vec(text(), 0..4))
        .prop_map(|(route, parts)| json!({ "route": route, "parts": parts }))
}

/// JSON-like bytes: fragments of the bodies' grammar, sometimes anything.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        proptest::collection::vec(
            prop_oneof![
                Just("{"),
                Just("}"),
                Just("["),
                Just("]"),
                Just(","),
                Just(":"),
                Just("\"tags\""),
                Just("\"keys\""),
                Just("\"paths\""),
                Just("\"soft\""),
                Just("\"route\""),
                Just("\"parts\""),
                Just("\"concurrency\""),
                Just("\"x\""),
                Just("1e999"),
                Just("-1"),
                Just("18446744073709551616"),
                Just("true"),
                Just("null"),
                Just("\"\\ud800\""),
            ],
            0..24,
        )
        .prop_map(|t| t.concat().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_bodies_never_panic(body in body_bytes()) {
        let _ = serde_json::from_slice::<PurgeRequest>(&body);
        let _ = serde_json::from_slice::<WarmRequest>(&body);
    }

    #[test]
    fn every_well_formed_purge_is_accepted(
        tags in proptest::option::of(proptest::collection::vec(text(), 0..4)),
        keys in proptest::option::of(proptest::collection::vec(route_parts(), 0..3)),
        prefixes in proptest::option::of(proptest::collection::vec(route_parts(), 0..3)),
        soft in proptest::option::of(any::<bool>()),
        unknown in "[a-z]{1,6}",
    ) {
        let mut body = serde_json::Map::new();
        if let Some(t) = tags { body.insert("tags".into(), json!(t)); }
        if let Some(k) = keys { body.insert("keys".into(), json!(k)); }
        if let Some(p) = prefixes { body.insert("prefixes".into(), json!(p)); }
        if let Some(s) = soft { body.insert("soft".into(), json!(s)); }
        let text = serde_json::Value::Object(body.clone()).to_string();
        prop_assert!(serde_json::from_str::<PurgeRequest>(&text).is_ok(), "{}", text);
        if !["tags", "keys", "prefixes", "soft"].contains(&unknown.as_str()) {
            body.insert(unknown, json!(1));
            let text = serde_json::Value::Object(body).to_string();
            prop_assert!(serde_json::from_str::<PurgeRequest>(&text).is_err(), "{}", text);
        }
    }

    #[test]
    fn every_well_formed_warm_is_accepted(
        paths in proptest::collection::vec(text(), 0..4),
        concurrency in proptest::option::of(any::<u64>()),
    ) {
        let body = match concurrency {
            Some(c) => json!({ "paths": paths, "concurrency": c }),
            None => json!({ "paths": paths }),
        };
        prop_assert!(serde_json::from_str::<WarmRequest>(&body.to_string()).is_ok(), "{}", body);
    }

    #[test]
    fn a_path_warm_accepts_builds_its_request(path in prop_oneof!["/\\PC{0,20}", "/[ -~]{0,20}"]) {
        // The handler's check, then its `expect`.
        if path.starts_with('/') && path.parse::<axum::http::Uri>().is_ok() {
            let request = axum::http::Request::get(path.as_str())
                .header("x-larder-warm", "1")
                .body(());
            prop_assert!(request.is_ok(), "{:?}", path);
        }
    }
}
