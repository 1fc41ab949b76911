//! The new crate's `Cargo.toml`, for each layout.

use std::path::Path;

use super::workspace::Workspace;

/// A member of `ws`: the SDK, and whatever the workspace shares, come from it.
pub(super) fn member_manifest(name: &str, ws: &Workspace) -> String {
    let package = if ws.has_package {
        "version.workspace = true\nedition.workspace = true\nrust-version.workspace = true\nlicense.workspace = true\npublish.workspace = true\n"
    } else {
        "version = \"0.1.0\"\nedition = \"2024\"\npublish = false\n"
    };
    let lints = if ws.has_lints {
        "\n[lints]\nworkspace = true\n"
    } else {
        ""
    };
    format!(
        r#"[package]
name = "{name}"
description = "A Larder cache policy."
{package}
[lib]
# A WebAssembly component: see README.md for the command that builds it, and where it lands
# (in the workspace's target directory).
crate-type = ["cdylib"]

[dependencies]
# The guest SDK: the `Policy` trait, `export_policy!` and the decision builders. It generates
# the WIT bindings itself, so no `wit-bindgen` dependency is needed here.
larder-sdk.workspace = true
{lints}"#
    )
}

/// A workspace of its own, depending on the SDK at `sdk` by path, with a size-optimised
/// release profile.
pub(super) fn standalone_manifest(name: &str, sdk: &Path) -> String {
    let sdk = sdk.to_string_lossy().replace('\\', "/");
    format!(
        r#"[package]
name = "{name}"
description = "A Larder cache policy."
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A WebAssembly component: `cargo build --release --target wasm32-wasip2` makes
# target/wasm32-wasip2/release/{lib}.wasm.
crate-type = ["cdylib"]

[dependencies]
# The guest SDK: the `Policy` trait, `export_policy!` and the decision builders. It generates
# the WIT bindings itself, so no `wit-bindgen` dependency is needed here. A path into a Larder
# checkout (`larder plugin new --sdk` chooses another): change it if the checkout moves.
larder-sdk = {{ path = "{sdk}" }}

# A workspace of its own, so this crate builds wherever it lives, even inside another project.
[workspace]

# Policies are small: optimise for size and drop the standard library's debug info
# (a few MB -> ~100 KB), which also makes the gateway's compile of the component faster.
[profile.release]
opt-level = "s"
debug = false
strip = "debuginfo"
"#,
        lib = name.replace('-', "_")
    )
}
