//! `larder plugin new`: a policy crate (or, with `--lang python`, a Python policy folder; see
//! [`python`]) that builds on the first try.
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
//!
//! Both languages share the name's rules, the directory's (created last, never over anything)
//! and the search for a Larder checkout.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

mod manifest;
mod name;
mod python;
mod workspace;

use manifest::{member_manifest, standalone_manifest};
use name::type_name;
pub use name::validate_name;
use workspace::{Workspace, enclosing_workspace, find_sdk, sdk_at, sdk_workspace_lock};

const LIB_TEMPLATE: &str = include_str!("plugin_new/lib.rs.tmpl");
const README_TEMPLATE: &str = include_str!("plugin_new/README.md.tmpl");

/// Arguments of `larder plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and `-`, starting with a letter. It is the
    /// crate's (or folder's) name and the `<name>.wasm` file routes refer to
    /// (`plugin = "<name>"`).
    pub name: String,
    /// The directory to create (default: `./<name>`). It must not exist.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rust: the larder-sdk crate (`plugins/sdk` of a Larder checkout, or the checkout) for a
    /// crate outside the Larder workspace. Python: the Larder checkout (or its
    /// `plugins/python/larder-policy`) whose SDK and build script the policy uses. Default:
    /// found from the current directory or the `larder` binary.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
    /// The policy's language: a Rust crate, or a Python folder (`app.py`, its tests,
    /// `cases.toml`) built with the checkout's `plugins/python/build.py`.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
}

/// The language of a new policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

/// What `new` created.
#[derive(Debug)]
pub struct Created {
    pub lang: Lang,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The command that runs the policy's unit tests (in `dir`).
    pub test: String,
    /// The command that builds the component (in `dir`).
    pub build: String,
    /// Where [`Created::build`] puts the component, relative to `dir`.
    pub wasm: PathBuf,
    /// The workspace the crate joined (Rust), or the Larder checkout the folder is part of
    /// (Python); `None` when it stands alone.
    pub workspace: Option<PathBuf>,
    /// The SDK a standalone crate or folder uses.
    pub sdk: Option<PathBuf>,
}

impl std::fmt::Display for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "created {}", self.dir.display())?;
        for file in &self.files {
            writeln!(f, "  {}", file.display())?;
        }
        match (self.lang, &self.workspace, &self.sdk) {
            (Lang::Rust, Some(ws), _) => {
                writeln!(f, "a member of the workspace at {}", ws.display())?
            }
            (Lang::Rust, None, Some(sdk)) => writeln!(
                f,
                "a standalone crate, using the larder-sdk at {}",
                sdk.display()
            )?,
            (Lang::Python, Some(checkout), _) => writeln!(
                f,
                "a Python policy of the Larder checkout at {}: `cargo xtask plugins` builds it too",
                checkout.display()
            )?,
            (Lang::Python, None, Some(sdk)) => writeln!(
                f,
                "a standalone Python policy, using the larder_policy SDK at {}",
                sdk.display()
            )?,
            (_, None, None) => {}
        }
        writeln!(f, "\nnext:")?;
        writeln!(f, "  cd {}", self.dir.display())?;
        writeln!(f, "  {}", self.test)?;
        writeln!(f, "  {}", self.build)?;
        writeln!(f, "  larder plugin check {}", self.wasm.display())?;
        match self.lang {
            Lang::Rust => write!(
                f,
                "  larder plugin run {} --route '/items/{{id}}' --path /items/42 --header 'X-Tenant: acme' --status 200",
                self.wasm.display()
            ),
            Lang::Python => write!(f, "  larder plugin test {} cases.toml", self.wasm.display()),
        }
    }
}

/// Creates the crate, or the Python folder. `cwd` is the directory relative paths are resolved
/// against, and where the SDK is looked for first.
pub fn new_plugin(args: &NewArgs, cwd: &Path) -> anyhow::Result<Created> {
    validate_name(&args.name)?;
    let dir = new_dir(args, cwd)?;
    if args.lang == Lang::Python {
        return new_python(args, cwd, dir);
    }
    let layout = layout(args, cwd, &dir)?;
    let build = build(&layout);
    let (wasm, files) = files(args, &dir, &layout);
    write(&dir, &files)?;
    Ok(Created {
        lang: Lang::Rust,
        dir,
        files: files.into_iter().map(|(p, _)| p).collect(),
        test: "cargo test".to_owned(),
        build: build.command.to_owned(),
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

/// A Python policy's folder: see [`python`].
fn new_python(args: &NewArgs, cwd: &Path, dir: PathBuf) -> anyhow::Result<Created> {
    let py = python::layout(args, cwd, &dir)?;
    let files = python::files(args, &dir, &py);
    write(&dir, &files)?;
    Ok(Created {
        lang: Lang::Python,
        files: files.into_iter().map(|(p, _)| p).collect(),
        workspace: py.in_checkout.then(|| py.sdk.checkout.clone()),
        sdk: (!py.in_checkout).then(|| py.sdk.project()),
        dir,
        test: py.test,
        build: py.build,
        wasm: py.wasm,
    })
}

enum Layout {
    Member(Workspace),
    Standalone { sdk: PathBuf },
}

/// How the component is built, and the profile directory it lands in.
struct Build {
    command: &'static str,
    profile_dir: &'static str,
}

/// A member of a workspace with a `plugin` profile (Larder's own) builds with it; anything else
/// with `release`, which the standalone manifest optimises for size. (A member's size comes
/// from its workspace's profiles, which a member cannot set.)
fn build(layout: &Layout) -> Build {
    match layout {
        Layout::Member(ws) if ws.has_plugin_profile => Build {
            command: "cargo build --profile plugin --target wasm32-wasip2",
            profile_dir: "plugin",
        },
        _ => Build {
            command: "cargo build --release --target wasm32-wasip2",
            profile_dir: "release",
        },
    }
}

/// The directory to create: absolute, in an existing parent (canonical), and not there yet.
fn new_dir(args: &NewArgs, cwd: &Path) -> anyhow::Result<PathBuf> {
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
    Ok(parent.join(dir.file_name().context("--dir has no final component")?))
}

/// A member of the workspace whose `members` cover `dir` (which must name the SDK), else a
/// standalone crate with the SDK from `--sdk` or found on disk.
fn layout(args: &NewArgs, cwd: &Path, dir: &Path) -> anyhow::Result<Layout> {
    if let Some(ws) = enclosing_workspace(dir)?
        && ws.has_member(dir)
    {
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
        return Ok(Layout::Member(ws));
    }
    let sdk = match &args.sdk {
        Some(p) => sdk_at(&absolute(cwd, p)).with_context(|| {
            format!(
                "--sdk {}: not the larder-sdk crate (expected plugins/sdk of a Larder checkout, or the checkout)",
                p.display()
            )
        })?,
        None => find_sdk(cwd)?,
    };
    Ok(Layout::Standalone { sdk })
}

/// The crate's files, and where its component will be built (relative to `dir`).
fn files(args: &NewArgs, dir: &Path, layout: &Layout) -> (PathBuf, Vec<(PathBuf, String)>) {
    let lib = args.name.replace('-', "_");
    let build = build(layout);
    let out_dir = format!("wasm32-wasip2/{}", build.profile_dir);
    let (manifest, wasm, where_) = match layout {
        Layout::Member(ws) => {
            let target = ws.root().join("target");
            (
                member_manifest(&args.name, ws),
                relative(dir, &target)
                    .join(&out_dir)
                    .join(format!("{lib}.wasm")),
                format!(
                    "It is a member of the workspace at `{}`, and gets the SDK from it.",
                    relative(dir, ws.root()).display()
                ),
            )
        }
        Layout::Standalone { sdk } => (
            standalone_manifest(&args.name, sdk),
            PathBuf::from("target")
                .join(&out_dir)
                .join(format!("{lib}.wasm")),
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
            .replace("__BUILD__", build.command)
            .replace("__WHERE__", &where_)
    };

    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), manifest),
        ("src/lib.rs".into(), substitute(LIB_TEMPLATE)),
        ("README.md".into(), substitute(README_TEMPLATE)),
    ];
    if let Layout::Standalone { sdk } = layout {
        files.push((".gitignore".into(), "/target\n".into()));
        // The SDK's workspace lock pins the versions the SDK is built and tested with; cargo
        // keeps the entries this crate needs and drops the rest on the first build.
        if let Some(lock) = sdk_workspace_lock(sdk) {
            files.push(("Cargo.lock".into(), lock));
        }
    }
    (wasm, files)
}

/// Create the directory last thing before writing, and remove it if a write fails, so a
/// failure never leaves a half-made crate that the next attempt would refuse to overwrite.
fn write(dir: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let written = (|| -> anyhow::Result<()> {
        for (path, text) in files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e);
    }
    Ok(())
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
mod tests;
