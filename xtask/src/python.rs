//! The Python policies, found in their folders, and their build.
//!
//! Every directory of `plugins/python/` with an `app.py` is a policy (the SDK, `larder-policy`,
//! has none); so is every one of `tests/python-plugins/` (hostile policies for the tests, which
//! have no tests of their own). `plugins/python/build.py` builds one into a component with componentize-py,
//! which it installs at the pinned version into a virtual environment under `target/python/`,
//! and writes the component through a temporary file and a rename, as the Rust plugins are
//! installed, so a gateway watching the directory never loads half a file.
//!
//! componentize-py's output differs from build to build of the same sources, and each new file
//! is a new plugin version that a gateway compiles again (about 20 s for CPython): so a policy
//! is rebuilt only when its inputs changed (its modules, the SDK, the WIT, the build script and
//! its pins), which a stamp next to the component records.

use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The folder of the Python policies and their SDK, relative to the workspace root.
pub const FOLDER: &str = "plugins/python";
/// The folder of the Python policies the tests use.
pub const TEST_FOLDER: &str = "tests/python-plugins";
/// Where their components are written, relative to the workspace root.
pub const OUT_DIR: &str = "target/python";
/// The virtual environment `build.py` makes, relative to the workspace root.
pub const VENV: &str = "target/python/venv";

/// A Python policy: its folder's name, which names its component (`<name>.wasm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonPolicy {
    pub name: String,
    pub dir: PathBuf,
    /// Under `plugins/python/` (with tests of its own), not `tests/python-plugins/`.
    pub shipped: bool,
}

/// Every Python policy of the workspace at `root`: the shipped ones, then the tests', each
/// sorted by name.
pub fn discover(root: &Path) -> Vec<PythonPolicy> {
    let mut all = Vec::new();
    for (folder, shipped) in [(FOLDER, true), (TEST_FOLDER, false)] {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        let mut found: Vec<PythonPolicy> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|dir| dir.join("app.py").is_file())
            .filter_map(|dir| {
                let name = dir.file_name()?.to_str()?.to_owned();
                Some(PythonPolicy { name, dir, shipped })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        all.extend(found);
    }
    all
}

/// Where policy `name` is built: `<root>/target/python/<name>.wasm`.
pub fn component_path(root: &Path, name: &str) -> PathBuf {
    root.join(OUT_DIR).join(format!("{name}.wasm"))
}

/// Builds `policy` with `build.py` unless the component is there and its inputs unchanged;
/// returns the component's path.
pub fn build(root: &Path, policy: &PythonPolicy) -> anyhow::Result<PathBuf> {
    let out = component_path(root, &policy.name);
    let stamp = out.with_extension("inputs");
    let digest = format!("{:016x}\n", inputs_digest(root, policy)?);
    if out.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&digest) {
        return Ok(out);
    }
    let status = Command::new(python()?)
        .arg(root.join(FOLDER).join("build.py"))
        .arg(&policy.dir)
        .arg(&out)
        .status()
        .context("running plugins/python/build.py")?;
    if !status.success() {
        bail!("building the Python policy {} failed", policy.name);
    }
    std::fs::write(&stamp, digest)?;
    Ok(out)
}

/// The tests of the SDK (`python -m pytest` in its folder, in the build's virtual environment,
/// with the test requirements installed first), then of each policy (`build.py --test`): one
/// pytest process per policy, since every policy's module is named `app`.
pub fn pytest(root: &Path) -> anyhow::Result<()> {
    let folder = root.join(FOLDER);
    let venv_python = root.join(VENV).join("bin/python");
    if !venv_python.exists() {
        bail!(
            "{} is missing: build a Python policy first (`cargo xtask plugins`)",
            venv_python.display()
        );
    }
    let requirements = folder.join("requirements-test.txt");
    let installed = Command::new(&venv_python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(&requirements)
        .status()?;
    if !installed.success() {
        bail!("installing {} failed", requirements.display());
    }
    let sdk = Command::new(&venv_python)
        .current_dir(folder.join("larder-policy"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()?;
    if !sdk.success() {
        bail!("the Python SDK's tests failed");
    }
    for policy in discover(root).into_iter().filter(|p| p.shipped) {
        let tested = Command::new(python()?)
            .arg(folder.join("build.py"))
            .arg("--test")
            .arg(&policy.dir)
            .arg("-q")
            .status()?;
        if !tested.success() {
            bail!("the tests of the Python policy {} failed", policy.name);
        }
    }
    Ok(())
}

/// The Python that runs `build.py`: `python3` (3.10 or later, with `venv`).
fn python() -> anyhow::Result<&'static str> {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "Python policies need python3 (3.10 or later) with the venv module (Debian: `apt-get install python3 python3-venv`)"
        );
    }
    Ok("python3")
}

/// A digest of what a build of `policy` reads: its modules (not its tests), the SDK, the WIT
/// file, the build script and its pins.
fn inputs_digest(root: &Path, policy: &PythonPolicy) -> anyhow::Result<u64> {
    let folder = root.join(FOLDER);
    let mut files = Vec::new();
    python_files(&policy.dir, &mut files)?;
    python_files(&folder.join("larder-policy/src"), &mut files)?;
    files.extend([
        root.join("wit/policy.wit"),
        folder.join("build.py"),
        folder.join("requirements-build.txt"),
    ]);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        hasher.write(file.to_string_lossy().as_bytes());
        hasher.write(&bytes);
    }
    Ok(hasher.finish())
}

/// The `.py` files under `dir`, but not under `tests/` or a hidden or cache folder.
fn python_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !(name == "tests" || name == "__pycache__" || name.starts_with('.')) {
                python_files(&path, out)?;
            }
        } else if name.ends_with(".py") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_a_folder_with_an_app_and_the_sdk_is_not_one() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let found = discover(root);
        let shipped = |name: &str| found.iter().find(|p| p.name == name).map(|p| p.shipped);
        assert_eq!(shipped("analysis-policy"), Some(true), "{found:?}");
        assert_eq!(shipped("sandbox-probe"), Some(false), "{found:?}");
        assert_eq!(shipped("larder-policy"), None, "{found:?}");
    }

    #[test]
    fn the_inputs_digest_changes_with_a_module_and_not_with_a_test() {
        let tmp = std::env::temp_dir().join(format!("xtask-python-{}", std::process::id()));
        let policy_dir = tmp.join(FOLDER).join("p");
        let sdk = tmp.join(FOLDER).join("larder-policy/src/larder_policy");
        for dir in [policy_dir.join("tests"), sdk.clone(), tmp.join("wit")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        for (file, text) in [
            (policy_dir.join("app.py"), "A = 1\n"),
            (policy_dir.join("tests/test_app.py"), "def test(): pass\n"),
            (sdk.join("__init__.py"), ""),
            (tmp.join("wit/policy.wit"), "package a:b;\n"),
            (tmp.join(FOLDER).join("build.py"), ""),
            (tmp.join(FOLDER).join("requirements-build.txt"), ""),
        ] {
            std::fs::write(file, text).unwrap();
        }
        let policy = PythonPolicy {
            name: "p".into(),
            dir: policy_dir.clone(),
            shipped: true,
        };
        let before = inputs_digest(&tmp, &policy).unwrap();
        std::fs::write(policy_dir.join("tests/test_app.py"), "# edited\n").unwrap();
        assert_eq!(inputs_digest(&tmp, &policy).unwrap(), before);
        std::fs::write(policy_dir.join("app.py"), "A = 2\n").unwrap();
        assert_ne!(inputs_digest(&tmp, &policy).unwrap(), before);
        std::fs::remove_dir_all(tmp).unwrap();
    }
}
