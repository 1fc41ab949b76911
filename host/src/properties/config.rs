//! The config loader (`Config::parse`): never a panic on any file, however mangled: the
//! operator gets a `file:line:column` error or a config. The inputs are the demo config with
//! values replaced by values of every TOML type and extreme numbers, with bytes inserted and
//! cut, and arbitrary text.

use std::path::Path;

use proptest::prelude::*;

use crate::config::{Config, EnvOverrides};

/// TOML parsing and validation are slower than a header: fewer cases.
const CASES: u32 = 500;

const DEMO: &str = include_str!("../../../larder.toml");

/// Keys the demo does not set, to be added with arbitrary values.
const EXTRA: &[(&str, &str)] = &[
    ("server", "workers"),
    ("server", "max_connections"),
    ("server", "header_read_timeout_ms"),
    ("server", "idle_timeout_ms"),
    ("server", "http2_keepalive_ms"),
    ("server", "body_read_timeout_ms"),
    ("server", "admin_hosts"),
    ("server", "trusted_proxies"),
    ("cache", "revalidate_keep_s"),
    ("cache", "max_request_body"),
    ("cache", "memory_tier_bytes"),
    ("cache", "memory_tier_outage"),
    ("cache", "memory_tier_trust_ms"),
    ("cache", "max_pending_purges"),
    ("plugins", "memory_limit"),
    ("plugins", "decision_cache_bytes"),
    ("plugins", "code_cache_bytes"),
    ("plugins", "hidden_headers"),
    ("plugins", "watch"),
    ("redis", "url"),
    ("redis", "prefix"),
    ("redis", "timeout_ms"),
    ("redis", "connections"),
    ("redis", "cluster"),
];

/// A TOML value of any type, with the numbers a validator must range-check. (One long list of
/// alternatives: a table, read down rather than through.)
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(u32::MAX as i64 + 1),
            any::<i64>()
        ]
        .prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"\"".to_owned()),
        Just("\"0.0.0.0:0\"".to_owned()),
        Just("\"redis://[::1]:0/99\"".to_owned()),
        Just("\"/{a}/{b}/{*rest}\"".to_owned()),
        Just("\"/{\"".to_owned()),
        Just("[]".to_owned()),
        Just("[1, \"a\"]".to_owned()),
        Just("{}".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    /// Replaces the value of the n-th `key = value` line.
    Value(prop::sample::Index, String),
    /// Adds `key = value` in its section.
    Add(usize, String),
    /// Inserts text at a character position.
    Insert(prop::sample::Index, String),
    /// Removes a run of characters.
    Cut(prop::sample::Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), value()).prop_map(|(i, v)| Edit::Value(i, v)),
        2 => (0..EXTRA.len(), value()).prop_map(|(k, v)| Edit::Add(k, v)),
        1 => (any::<prop::sample::Index>(), "\\PC{0,6}|[\\[\\]=\"\n{}]").prop_map(|(i, s)| Edit::Insert(i, s)),
        1 => (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Edit::Cut(i, n)),
    ]
}

fn apply(text: String, edit: &Edit) -> String {
    match edit {
        Edit::Value(i, v) => {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let assignments: Vec<usize> = (0..lines.len())
                .filter(|&n| !lines[n].starts_with('#') && lines[n].contains(" = "))
                .collect();
            if !assignments.is_empty() {
                let n = assignments[i.index(assignments.len())];
                let key = lines[n].split(" = ").next().unwrap_or("").to_owned();
                lines[n] = format!("{key} = {v}");
            }
            lines.join("\n")
        }
        Edit::Add(k, v) => {
            let (section, key) = EXTRA[*k];
            let header = format!("[{section}]\n");
            match text.find(&header) {
                Some(at) => {
                    let at = at + header.len();
                    format!("{}{key} = {v}\n{}", &text[..at], &text[at..])
                }
                None => format!("{text}\n{header}{key} = {v}\n"),
            }
        }
        Edit::Insert(i, s) => {
            let chars: Vec<char> = text.chars().collect();
            let at = i.index(chars.len() + 1);
            chars[..at]
                .iter()
                .chain(s.chars().collect::<Vec<_>>().iter())
                .chain(chars[at..].iter())
                .collect()
        }
        Edit::Cut(i, n) => {
            let chars: Vec<char> = text.chars().collect();
            let at = i.index(chars.len() + 1);
            let end = (at + n).min(chars.len());
            chars[..at].iter().chain(chars[end..].iter()).collect()
        }
    }
}

fn parse(text: &str) {
    let env = EnvOverrides::default();
    match Config::parse(Path::new("/nonexistent/larder.toml"), text, &env) {
        Ok(_) => {}
        // An error names a line of the file.
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn an_edited_config_never_panics(edits in proptest::collection::vec(edit(), 1..5)) {
        let text = edits.iter().fold(DEMO.to_owned(), apply);
        parse(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        parse(&text);
    }

    #[test]
    fn a_multi_byte_character_anywhere_never_panics(
        at in any::<prop::sample::Index>(),
        c in "[é€😀]",
    ) {
        let text = apply(DEMO.to_owned(), &Edit::Insert(at, c));
        parse(&text);
    }
}

#[test]
fn the_demo_config_parses() {
    Config::parse(Path::new("larder.toml"), DEMO, &EnvOverrides::default()).unwrap();
}
