//! Where the new crate stands: inside a workspace that will build it as a member, or on its
//! own, with a larder-sdk found on disk.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The nearest `Cargo.toml` above a directory that has a `[workspace]` table.
pub(super) struct Workspace {
    pub(super) manifest: PathBuf,
    members: Vec<String>,
    exclude: Vec<String>,
    pub(super) has_sdk: bool,
    pub(super) has_package: bool,
    pub(super) has_lints: bool,
    /// The workspace defines `[profile.plugin]` (Larder's own does: release, optimised for
    /// size): its members build with it.
    pub(super) has_plugin_profile: bool,
}

impl Workspace {
    pub(super) fn root(&self) -> &Path {
        self.manifest
            .parent()
            .expect("a manifest is in a directory")
    }

    /// Whether the workspace's `members` (exact paths or `dir/*` globs) cover `dir`.
    pub(super) fn has_member(&self, dir: &Path) -> bool {
        let Ok(rel) = dir.strip_prefix(self.root()) else {
            return false;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let matches = |pattern: &String| {
            let pattern = pattern.trim_end_matches('/');
            match pattern.strip_suffix("/*") {
                Some(prefix) => rel
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|r| !r.is_empty() && !r.contains('/')),
                None => pattern == rel,
            }
        };
        self.members.iter().any(matches) && !self.exclude.iter().any(matches)
    }
}

/// The workspace `dir` would be built in, if any: the nearest manifest above it with a
/// `[workspace]` table.
pub(super) fn enclosing_workspace(dir: &Path) -> anyhow::Result<Option<Workspace>> {
    for ancestor in dir.ancestors().skip(1) {
        let manifest = ancestor.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = toml::from_str(&text)
            .with_context(|| format!("cannot parse {}", manifest.display()))?;
        let Some(ws) = doc.get("workspace").and_then(|w| w.as_table()) else {
            continue;
        };
        let list = |key: &str| -> Vec<String> {
            ws.get(key)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        return Ok(Some(Workspace {
            members: list("members"),
            exclude: list("exclude"),
            has_sdk: ws
                .get("dependencies")
                .and_then(|d| d.get("larder-sdk"))
                .is_some(),
            has_package: ws.get("package").is_some(),
            has_lints: ws.get("lints").is_some(),
            has_plugin_profile: doc.get("profile").and_then(|p| p.get("plugin")).is_some(),
            manifest,
        }));
    }
    Ok(None)
}

/// `dir` itself if it is the larder-sdk crate, or its `plugins/sdk`.
pub(super) fn sdk_at(dir: &Path) -> Option<PathBuf> {
    [dir.to_owned(), dir.join("plugins/sdk")]
        .into_iter()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|text| {
                toml::from_str::<toml::Table>(&text).is_ok_and(|doc| {
                    doc.get("package")
                        .and_then(|p| p.get("name"))
                        .and_then(|n| n.as_str())
                        == Some("larder-sdk")
                })
            })
        })
        .and_then(|d| d.canonicalize().ok())
}

/// The SDK of the Larder checkout that holds `cwd` or the running binary.
pub(super) fn find_sdk(cwd: &Path) -> anyhow::Result<PathBuf> {
    match find_above(cwd, sdk_at) {
        Some(sdk) => Ok(sdk),
        None => bail!(
            "cannot find the larder-sdk crate (looked above {} and the larder binary): pass --sdk PATH, the plugins/sdk directory of a Larder checkout",
            cwd.display()
        ),
    }
}

/// What `at` finds first in `cwd` or one of its ancestors, else in the running binary's
/// (a `larder` built in a checkout, `target/release/larder`, finds that checkout).
fn find_above<T>(cwd: &Path, at: impl Fn(&Path) -> Option<T>) -> Option<T> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok());
    std::iter::once(cwd.to_owned())
        .chain(exe)
        .find_map(|start| start.ancestors().find_map(&at))
}

/// A Larder checkout, as a Python policy needs it: the SDK package `larder_policy` and the
/// script that builds and tests policies (in a virtual environment under its `target/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PythonSdk {
    /// The checkout's root, canonical.
    pub(super) checkout: PathBuf,
}

impl PythonSdk {
    /// Where the Python policies and their SDK live.
    pub(super) fn folder(&self) -> PathBuf {
        self.checkout.join("plugins/python")
    }

    /// The SDK's project, `plugins/python/larder-policy`.
    pub(super) fn project(&self) -> PathBuf {
        self.folder().join("larder-policy")
    }

    /// What goes on the tests' path for `import larder_policy`.
    pub(super) fn src(&self) -> PathBuf {
        self.project().join("src")
    }

    /// `plugins/python/build.py`.
    pub(super) fn build_script(&self) -> PathBuf {
        self.folder().join("build.py")
    }

    /// Whether `dir` is a Larder checkout with the Python SDK and its build script.
    fn is_checkout(dir: &Path) -> bool {
        dir.join("plugins/python/build.py").is_file()
            && dir
                .join("plugins/python/larder-policy/src/larder_policy/__init__.py")
                .is_file()
    }
}

/// The checkout at `dir`: `dir` itself, or `dir` is its `plugins/python/larder-policy`.
pub(super) fn python_sdk_at(dir: &Path) -> Option<PythonSdk> {
    let dir = dir.canonicalize().ok()?;
    if PythonSdk::is_checkout(&dir) {
        return Some(PythonSdk { checkout: dir });
    }
    let checkout = dir.ancestors().nth(3)?;
    (PythonSdk::is_checkout(checkout) && dir == checkout.join("plugins/python/larder-policy")).then(
        || PythonSdk {
            checkout: checkout.to_owned(),
        },
    )
}

/// The checkout that holds `cwd` or the running binary, for its Python SDK.
pub(super) fn find_python_sdk(cwd: &Path) -> anyhow::Result<PythonSdk> {
    match find_above(cwd, python_sdk_at) {
        Some(sdk) => Ok(sdk),
        None => bail!(
            "cannot find a Larder checkout with the Python SDK (looked above {} and the larder binary): pass --sdk PATH, the root of a Larder checkout or its plugins/python/larder-policy",
            cwd.display()
        ),
    }
}

/// The `Cargo.lock` of the workspace the SDK belongs to, if any.
pub(super) fn sdk_workspace_lock(sdk: &Path) -> Option<String> {
    sdk.ancestors()
        .skip(1)
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| {
                toml::from_str::<toml::Table>(&t).is_ok_and(|doc| doc.contains_key("workspace"))
            })
        })
        .and_then(|root| std::fs::read_to_string(root.join("Cargo.lock")).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_match_exact_paths_and_one_level_globs() {
        let ws = Workspace {
            manifest: PathBuf::from("/w/Cargo.toml"),
            members: vec!["host".into(), "plugins/*".into()],
            exclude: vec!["plugins/old".into()],
            has_sdk: true,
            has_package: true,
            has_lints: true,
            has_plugin_profile: false,
        };
        assert!(ws.has_member(Path::new("/w/plugins/new")));
        assert!(ws.has_member(Path::new("/w/host")));
        assert!(!ws.has_member(Path::new("/w/plugins/old")));
        assert!(!ws.has_member(Path::new("/w/plugins/a/b")));
        assert!(!ws.has_member(Path::new("/w/elsewhere")));
        assert!(!ws.has_member(Path::new("/other/plugins/new")));
    }

    #[test]
    fn the_python_sdk_is_found_from_the_checkout_or_its_project_and_nowhere_else() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let checkout = root.canonicalize().unwrap();
        for dir in [
            root.clone(),
            root.join("plugins/python/larder-policy"),
            root.join("plugins/python/larder-policy/"),
        ] {
            assert_eq!(
                python_sdk_at(&dir).map(|sdk| sdk.checkout),
                Some(checkout.clone()),
                "{}",
                dir.display()
            );
        }
        for dir in [
            root.join("plugins"),
            root.join("plugins/python"),
            root.join("plugins/python/analysis-policy"),
            root.join("plugins/sdk"),
            root.join("nonexistent"),
        ] {
            assert_eq!(python_sdk_at(&dir), None, "{}", dir.display());
        }
        let sdk = find_python_sdk(&root.join("plugins/python/analysis-policy")).unwrap();
        assert_eq!(sdk.checkout, checkout);
        assert!(sdk.src().join("larder_policy/__init__.py").is_file());
        assert!(sdk.build_script().is_file());
    }
}
