//! The plugin's name: it becomes the crate's name, its library's name (with `_` for `-`) and
//! the `<name>.wasm` file routes refer to, so it must be valid as all three.

use anyhow::bail;

/// The crate's library is `name` with `_` for `-`: it must not be a keyword or a crate every
/// program already has, and must not shadow the SDK.
const RESERVED: &[&str] = &[
    // Rust's keywords, strict and reserved.
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    // Crates every program already has, and the SDK and its bindings.
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "larder_sdk",
    "wit_bindgen",
];

/// Checks a plugin name; the error says what a valid one looks like.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    const RULE: &str =
        "use lower-case ASCII letters, digits and `-`, starting with a letter (e.g. `my-policy`)";
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        bail!("the plugin name is empty: {RULE}");
    };
    if !first.is_ascii_lowercase() {
        bail!("invalid plugin name {name:?}: it must start with a lower-case letter; {RULE}");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        bail!("invalid plugin name {name:?}: {bad:?} is not allowed; {RULE}");
    }
    if name.ends_with('-') || name.contains("--") {
        bail!("invalid plugin name {name:?}: `-` only between letters or digits; {RULE}");
    }
    if name.len() > 64 {
        bail!("invalid plugin name {name:?}: longer than 64 characters");
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        bail!("invalid plugin name {name:?}: reserved in Rust; pick another, e.g. `{name}-policy`");
    }
    Ok(())
}

/// `my-policy` -> `MyPolicy`.
pub(super) fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_a_reason() {
        for ok in ["my-policy", "a", "docs2", "x-1-y"] {
            validate_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("My-Policy", "must start with a lower-case letter"),
            ("9lives", "must start with a lower-case letter"),
            ("my_policy", "'_' is not allowed"),
            ("my policy", "' ' is not allowed"),
            ("../x", "must start"),
            ("a/b", "'/' is not allowed"),
            ("ends-", "`-` only between"),
            ("a--b", "`-` only between"),
            ("test", "reserved"),
            ("larder-sdk", "reserved"),
            ("self", "reserved"),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("my-policy"), "MyPolicy");
        assert_eq!(type_name("docs2"), "Docs2");
    }
}
