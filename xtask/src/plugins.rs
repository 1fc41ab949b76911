//! The plugin crates, found in their folders rather than listed by hand.
//!
//! Every directory of `plugins/` and `tests/plugins/` that has a `Cargo.toml` is a crate built
//! for `wasm32-wasip2` (the root `Cargo.toml` makes them workspace members by the same globs).
//! Those whose manifest says `crate-type = ["cdylib"]` are plugins: components the gateway loads.
//! The one that is not is the SDK (`plugins/sdk`), the library every plugin links; it is built
//! and linted with them. So a new plugin (`larder plugin new NAME --dir plugins/NAME`, or a
//! hostile test plugin under `tests/plugins/`) is built, linted and found by the tests with no
//! list to edit.
//!
//! They build in the `plugin` profile of the root `Cargo.toml` (the `release` settings, optimised
//! for size), in a target directory of their own: a plugin build started from inside a running
//! `cargo test` (the test harness does that) must not wait for the lock of `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugins' target.
pub const WASM_TARGET: &str = "wasm32-wasip2";
/// The profile the plugins build in (`[profile.plugin]` in the root `Cargo.toml`).
pub const PROFILE: &str = "plugin";
/// The plugins' target directory, relative to the workspace root.
pub const TARGET_DIR: &str = "target/wasm";
/// The folders whose subdirectories are wasm crates, relative to the workspace root.
pub const FOLDERS: &[&str] = &["plugins", "tests/plugins"];

/// A crate built for `wasm32-wasip2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmCrate {
    /// The package name (`analysis-policy`).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Whether it is a plugin (a `cdylib`: a component), rather than the SDK.
    pub plugin: bool,
}

impl WasmCrate {
    /// Where the plugin's component is built: `<root>/target/wasm/wasm32-wasip2/plugin/<lib>.wasm`.
    pub fn component(&self, root: &Path) -> PathBuf {
        component_path(root, &self.name)
    }
}

/// Every wasm crate of the workspace at `root`, sorted by folder then name.
///
/// Panics on a manifest without a package name: a crate the build could not name is a broken
/// checkout, not a crate to skip.
pub fn discover(root: &Path) -> Vec<WasmCrate> {
    let mut crates = Vec::new();
    for folder in FOLDERS {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        let mut found: Vec<WasmCrate> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter_map(|dir| {
                let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
                let name = package_name(&manifest)
                    .unwrap_or_else(|| panic!("{}/Cargo.toml names no package", dir.display()));
                Some(WasmCrate {
                    name,
                    plugin: is_cdylib(&manifest),
                    dir,
                })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        crates.extend(found);
    }
    crates
}

/// The names of the plugins (not the SDK) of the workspace at `root`.
pub fn plugin_names(root: &Path) -> Vec<String> {
    discover(root)
        .into_iter()
        .filter(|c| c.plugin)
        .map(|c| c.name)
        .collect()
}

/// The directory the plugins' components are built into.
pub fn out_dir(root: &Path) -> PathBuf {
    root.join(TARGET_DIR).join(WASM_TARGET).join(PROFILE)
}

/// Where plugin crate `name` is built (`analysis-policy` -> `.../analysis_policy.wasm`).
pub fn component_path(root: &Path, name: &str) -> PathBuf {
    out_dir(root).join(format!("{}.wasm", name.replace('-', "_")))
}

/// `cargo <subcommand>` over every wasm crate, in the plugins' profile, target and target
/// directory: `build` builds them all (the SDK as a dependency and as a member), `clippy` lints
/// them. Runs in `root`, with the variables an outer `cargo` sets for its own build removed.
pub fn cargo(cargo: &str, subcommand: &str, root: &Path) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args([
        subcommand,
        "--profile",
        PROFILE,
        "--target",
        WASM_TARGET,
        "--target-dir",
        TARGET_DIR,
    ]);
    for c in discover(root) {
        cmd.args(["-p", &c.name]);
    }
    for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    cmd
}

/// The `name = "..."` of the manifest's `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name") {
            let value = value.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_owned());
        }
    }
    None
}

/// Whether the manifest declares a `cdylib` (`crate-type = ["cdylib"]` in `[lib]`).
fn is_cdylib(manifest: &str) -> bool {
    manifest.lines().map(str::trim).any(|line| {
        line.starts_with("crate-type") && line.contains("\"cdylib\"") && !line.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_workspace_plugins_are_found_and_the_sdk_is_not_one() {
        let crates = discover(&root());
        let sdk = crates.iter().find(|c| c.name == "larder-sdk");
        assert!(sdk.is_some_and(|c| !c.plugin), "{crates:?}");
        let plugins = plugin_names(&root());
        for name in ["analysis-policy", "standard", "loop-forever", "panic"] {
            assert!(plugins.iter().any(|p| p == name), "{name}: {plugins:?}");
        }
        assert!(!plugins.iter().any(|p| p == "larder-sdk"));
    }

    #[test]
    fn a_new_folder_with_a_manifest_is_a_plugin_with_no_list_to_edit() {
        let root = std::env::temp_dir().join(format!("xtask-discover-{}", std::process::id()));
        let add = |path: &str, manifest: &str| {
            let dir = root.join(path);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        };
        add(
            "tests/plugins/flood",
            "[package]\nname = \"flood\"\nversion.workspace = true\n\n[lib]\n\
             # A component.\ncrate-type = [\"cdylib\"]\n",
        );
        add(
            "plugins/sdk",
            "[package]\nname = \"larder-sdk\"\n\n[dependencies]\nname = \"not-this\"\n",
        );
        std::fs::create_dir_all(root.join("plugins/notes")).unwrap(); // no manifest: not a crate
        let found = discover(&root);
        std::fs::remove_dir_all(&root).unwrap();
        let names: Vec<(&str, bool)> = found.iter().map(|c| (c.name.as_str(), c.plugin)).collect();
        assert_eq!(names, [("larder-sdk", false), ("flood", true)]);
        assert_eq!(
            component_path(Path::new("/w"), "flood-two"),
            Path::new("/w/target/wasm/wasm32-wasip2/plugin/flood_two.wasm")
        );
    }
}
