//! `larder plugin new`: a policy crate that builds on the first try.
//!
//! Why a generator and not a page of instructions: a policy crate has four details that each
//! break the first build when wrong, and none of them is about caching. The crate type must be
//! `cdylib` (or no `.wasm` comes out); the SDK must be found (by the workspace, or by path from
//! anywhere else); the crate must belong to exactly one workspace (inside a workspace whose
//! members do not list it, cargo refuses to build it; outside, it needs a `[workspace]` table of
//! its own); and the dependency versions must be ones the SDK builds with. The generator gets
//! those right, and the code it writes shows the four decisions a policy makes (key, TTL, tags,
//! invalidation) with comments and native tests, so an author starts by editing, not by
//! reading.
//!
//! Two layouts:
//! - **member**: the new directory is matched by the `members` of an enclosing workspace that
//!   has `larder-sdk` in `[workspace.dependencies]` (this repository's `plugins/NAME`): the
//!   crate inherits the SDK, lints and versions from it.
//! - **standalone**: anywhere else. The crate is its own workspace, depends on the SDK by path
//!   (`--sdk`, or found next to the current directory or the `larder` binary), gets a size-
//!   optimised release profile, and a copy of the SDK workspace's `Cargo.lock`, so it resolves
//!   the versions the SDK was tested with, offline.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

const LIB_TEMPLATE: &str = include_str!("scaffold/lib.rs.tmpl");
const README_TEMPLATE: &str = include_str!("scaffold/README.md.tmpl");

/// Arguments of `larder plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and `-`, starting with a letter. It is the
    /// crate's name and the `<name>.wasm` file routes refer to (`plugin = "<name>"`).
    pub name: String,
    /// The directory to create (default: `./<name>`). It must not exist.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The larder-sdk crate (`plugins/sdk` of a Larder checkout) for a crate outside the
    /// Larder workspace. Default: found from the current directory or the `larder` binary.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// What `new` created.
#[derive(Debug)]
pub struct Created {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// Where `cargo build --release --target wasm32-wasip2` puts the component, relative to
    /// `dir`.
    pub wasm: PathBuf,
    /// The workspace the crate joined, or `None` for a standalone crate.
    pub workspace: Option<PathBuf>,
    /// The SDK a standalone crate depends on.
    pub sdk: Option<PathBuf>,
}

impl std::fmt::Display for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "created {}", self.dir.display())?;
        for file in &self.files {
            writeln!(f, "  {}", file.display())?;
        }
        match (&self.workspace, &self.sdk) {
            (Some(ws), _) => writeln!(f, "a member of the workspace at {}", ws.display())?,
            (None, Some(sdk)) => writeln!(
                f,
                "a standalone crate, using the larder-sdk at {}",
                sdk.display()
            )?,
            (None, None) => {}
        }
        writeln!(f, "\nnext:")?;
        writeln!(f, "  cd {}", self.dir.display())?;
        writeln!(f, "  cargo test")?;
        writeln!(f, "  cargo build --release --target wasm32-wasip2")?;
        writeln!(f, "  larder plugin check {}", self.wasm.display())?;
        write!(
            f,
            "  larder plugin run {} --route '/items/{{id}}' --path /items/42 --header 'X-Tenant: acme' --status 200",
            self.wasm.display()
        )
    }
}

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
    // The crate's library is `name` with `_` for `-`: it must not be a keyword or a crate every
    // program already has, and must not shadow the SDK.
    const RESERVED: &[&str] = &[
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
        "std",
        "core",
        "alloc",
        "test",
        "proc_macro",
        "larder_sdk",
        "wit_bindgen",
    ];
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        bail!("invalid plugin name {name:?}: reserved in Rust; pick another, e.g. `{name}-policy`");
    }
    Ok(())
}

/// `my-policy` -> `MyPolicy`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Creates the crate. `cwd` is the directory relative paths are resolved against, and where
/// the SDK is looked for first.
pub fn new_plugin(args: &NewArgs, cwd: &Path) -> anyhow::Result<Created> {
    validate_name(&args.name)?;
    let dir = absolute(cwd, args.dir.as_deref().unwrap_or(Path::new(&args.name)));
    if dir.exists() || dir.symlink_metadata().is_ok() {
        bail!(
            "{} already exists: `larder plugin new` never overwrites; choose another name or --dir",
            dir.display()
        );
    }
    let parent = dir
        .parent()
        .with_context(|| format!("{} has no parent directory", dir.display()))?;
    if !parent.is_dir() {
        bail!(
            "{} does not exist: create it first, or choose another --dir",
            parent.display()
        );
    }
    let parent = parent
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", parent.display()))?;
    let dir = parent.join(dir.file_name().context("--dir has no final component")?);

    let lib = args.name.replace('-', "_");
    let layout = match enclosing_workspace(&dir)? {
        Some(ws) if ws.has_member(&dir) => {
            if !ws.has_sdk {
                bail!(
                    "{} would be a member of the workspace {}, which has no `larder-sdk` in [workspace.dependencies]: add `larder-sdk = {{ path = \".../plugins/sdk\" }}` there, or choose a --dir outside that workspace",
                    dir.display(),
                    ws.manifest.display()
                );
            }
            if args.sdk.is_some() {
                bail!(
                    "--sdk applies to a crate outside a workspace; {} joins the workspace {}, which names its larder-sdk itself",
                    dir.display(),
                    ws.manifest.display()
                );
            }
            Layout::Member(ws)
        }
        _ => {
            let sdk = match &args.sdk {
                Some(p) => sdk_at(&absolute(cwd, p)).with_context(|| {
                    format!(
                        "--sdk {}: not the larder-sdk crate (expected plugins/sdk of a Larder checkout, or the checkout)",
                        p.display()
                    )
                })?,
                None => find_sdk(cwd)?,
            };
            Layout::Standalone { sdk }
        }
    };

    let (manifest, wasm, where_) = match &layout {
        Layout::Member(ws) => {
            let target = ws.root().join("target");
            (
                member_manifest(&args.name, ws),
                relative(&dir, &target)
                    .join("wasm32-wasip2/release")
                    .join(format!("{lib}.wasm")),
                format!(
                    "It is a member of the workspace at `{}`, and gets the SDK from it.",
                    relative(&dir, ws.root()).display()
                ),
            )
        }
        Layout::Standalone { sdk } => (
            standalone_manifest(&args.name, sdk),
            PathBuf::from("target/wasm32-wasip2/release").join(format!("{lib}.wasm")),
            format!(
                "It is a workspace of its own and uses the SDK at `{}` (see `Cargo.toml`).",
                sdk.display()
            ),
        ),
    };
    let wasm_str = wasm.to_string_lossy();
    let substitute = |t: &str| {
        t.replace("__NAME__", &args.name)
            .replace("__TYPE__", &type_name(&args.name))
            .replace("__LIB__", &lib)
            .replace("__WASM__", &wasm_str)
            .replace("__WHERE__", &where_)
    };

    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), manifest),
        ("src/lib.rs".into(), substitute(LIB_TEMPLATE)),
        ("README.md".into(), substitute(README_TEMPLATE)),
    ];
    if let Layout::Standalone { sdk } = &layout {
        files.push((".gitignore".into(), "/target\n".into()));
        // The SDK's workspace lock pins the versions the SDK is built and tested with; cargo
        // keeps the entries this crate needs and drops the rest on the first build.
        if let Some(lock) = sdk_workspace_lock(sdk) {
            files.push(("Cargo.lock".into(), lock));
        }
    }

    // Create the directory last thing before writing, and remove it if a write fails, so a
    // failure never leaves a half-made crate that the next attempt would refuse to overwrite.
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let written = (|| -> anyhow::Result<()> {
        std::fs::create_dir(dir.join("src"))?;
        for (path, text) in &files {
            std::fs::write(dir.join(path), text)
                .with_context(|| format!("cannot write {}", dir.join(path).display()))?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(Created {
        dir,
        files: files.into_iter().map(|(p, _)| p).collect(),
        wasm,
        workspace: match &layout {
            Layout::Member(ws) => Some(ws.root().to_owned()),
            Layout::Standalone { .. } => None,
        },
        sdk: match layout {
            Layout::Member(_) => None,
            Layout::Standalone { sdk } => Some(sdk),
        },
    })
}

enum Layout {
    Member(Workspace),
    Standalone { sdk: PathBuf },
}

/// The nearest `Cargo.toml` above a directory that has a `[workspace]` table.
struct Workspace {
    manifest: PathBuf,
    members: Vec<String>,
    exclude: Vec<String>,
    has_sdk: bool,
    has_package: bool,
    has_lints: bool,
}

impl Workspace {
    fn root(&self) -> &Path {
        self.manifest
            .parent()
            .expect("a manifest is in a directory")
    }

    /// Whether the workspace's `members` (exact paths or `dir/*` globs) cover `dir`.
    fn has_member(&self, dir: &Path) -> bool {
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

fn enclosing_workspace(dir: &Path) -> anyhow::Result<Option<Workspace>> {
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
            manifest,
        }));
    }
    Ok(None)
}

fn member_manifest(name: &str, ws: &Workspace) -> String {
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
# A WebAssembly component: `cargo build --release --target wasm32-wasip2` makes
# target/wasm32-wasip2/release/{lib}.wasm (in the workspace's target directory).
crate-type = ["cdylib"]

[dependencies]
# The guest SDK: the `Policy` trait, `export_policy!` and the decision builders. It generates
# the WIT bindings itself, so no `wit-bindgen` dependency is needed here.
larder-sdk.workspace = true
{lints}"#,
        lib = name.replace('-', "_")
    )
}

fn standalone_manifest(name: &str, sdk: &Path) -> String {
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

/// `dir` itself if it is the larder-sdk crate, or its `plugins/sdk`.
fn sdk_at(dir: &Path) -> Option<PathBuf> {
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
fn find_sdk(cwd: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok());
    let starts = std::iter::once(cwd.to_owned()).chain(exe);
    for start in starts {
        if let Some(sdk) = start.ancestors().find_map(sdk_at) {
            return Ok(sdk);
        }
    }
    bail!(
        "cannot find the larder-sdk crate (looked above {} and the larder binary): pass --sdk PATH, the plugins/sdk directory of a Larder checkout",
        cwd.display()
    )
}

/// The `Cargo.lock` of the workspace the SDK belongs to, if any.
fn sdk_workspace_lock(sdk: &Path) -> Option<String> {
    sdk.ancestors()
        .skip(1)
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| {
                toml::from_str::<toml::Table>(&t).is_ok_and(|doc| doc.contains_key("workspace"))
            })
        })
        .and_then(|root| std::fs::read_to_string(root.join("Cargo.lock")).ok())
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        cwd.join(p)
    }
}

/// `to` relative to `from` (both absolute, canonical).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
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

    #[test]
    fn members_match_exact_paths_and_one_level_globs() {
        let ws = Workspace {
            manifest: PathBuf::from("/w/Cargo.toml"),
            members: vec!["host".into(), "plugins/*".into()],
            exclude: vec!["plugins/old".into()],
            has_sdk: true,
            has_package: true,
            has_lints: true,
        };
        assert!(ws.has_member(Path::new("/w/plugins/new")));
        assert!(ws.has_member(Path::new("/w/host")));
        assert!(!ws.has_member(Path::new("/w/plugins/old")));
        assert!(!ws.has_member(Path::new("/w/plugins/a/b")));
        assert!(!ws.has_member(Path::new("/w/elsewhere")));
        assert!(!ws.has_member(Path::new("/other/plugins/new")));
    }

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative(Path::new("/w/plugins/new"), Path::new("/w/target")),
            PathBuf::from("../../target")
        );
        assert_eq!(
            relative(Path::new("/w"), Path::new("/w")),
            PathBuf::from(".")
        );
    }

    #[test]
    fn an_existing_directory_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("taken")).unwrap();
        std::fs::write(tmp.path().join("taken/keep.txt"), "mine").unwrap();
        let args = NewArgs {
            name: "taken".into(),
            dir: None,
            sdk: None,
        };
        let err = new_plugin(&args, tmp.path()).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("taken/keep.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_standalone_crate_names_the_sdk_and_is_its_own_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
        let args = NewArgs {
            name: "my-policy".into(),
            dir: None,
            sdk: Some(sdk.clone()),
        };
        let created = new_plugin(&args, tmp.path()).unwrap();
        let manifest = std::fs::read_to_string(created.dir.join("Cargo.toml")).unwrap();
        let doc: toml::Table = toml::from_str(&manifest).unwrap();
        assert!(doc.contains_key("workspace"), "{manifest}");
        assert_eq!(
            doc["dependencies"]["larder-sdk"]["path"].as_str(),
            Some(sdk.canonicalize().unwrap().to_str().unwrap())
        );
        assert_eq!(doc["lib"]["crate-type"][0].as_str(), Some("cdylib"));
        let lib = std::fs::read_to_string(created.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct MyPolicy;"));
        assert!(lib.contains("larder_sdk::export_policy!(MyPolicy);"));
        assert!(!lib.contains("__"), "a placeholder is left in src/lib.rs");
        let readme = std::fs::read_to_string(created.dir.join("README.md")).unwrap();
        assert!(readme.contains("target/wasm32-wasip2/release/my_policy.wasm"));
        assert!(!readme.contains("__NAME__") && !readme.contains("__WASM__"));
        assert!(created.dir.join("Cargo.lock").is_file());
    }

    #[test]
    fn a_crate_in_a_workspace_with_the_sdk_joins_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("plugins")).unwrap();
        std::fs::write(
            tmp.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"plugins/*\"]\n[workspace.dependencies]\nlarder-sdk = { path = \"sdk\" }\n",
        )
        .unwrap();
        let args = NewArgs {
            name: "docs".into(),
            dir: Some("plugins/docs".into()),
            sdk: None,
        };
        let created = new_plugin(&args, tmp.path()).unwrap();
        let manifest = std::fs::read_to_string(created.dir.join("Cargo.toml")).unwrap();
        let doc: toml::Table = toml::from_str(&manifest).unwrap();
        assert!(!doc.contains_key("workspace"), "{manifest}");
        assert_eq!(
            doc["dependencies"]["larder-sdk"]["workspace"].as_bool(),
            Some(true)
        );
        assert_eq!(
            created.wasm,
            PathBuf::from("../../target/wasm32-wasip2/release/docs.wasm")
        );
        assert!(!created.dir.join("Cargo.lock").exists());
    }
}
