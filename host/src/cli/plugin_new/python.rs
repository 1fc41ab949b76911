//! `larder plugin new NAME --lang python`: a policy folder for componentize-py.
//!
//! What breaks a Python policy's first build or test is, again, not caching: `pytest` must
//! find the SDK (`larder_policy` is not on PyPI: it lives in a Larder checkout), the build needs
//! the pinned componentize-py in a virtual environment, the module must be `app` and bind
//! `Policy`, and the component is built against the checkout's WIT. `plugins/python/build.py`
//! of the checkout does the environment, the staging and the build (and, with `--test`, the
//! tests), so the folder needs only its code, the SDK's path in `pyproject.toml`, and a README
//! whose commands name that script.
//!
//! Two layouts:
//! - **in the checkout**: the folder is `plugins/python/NAME` of a Larder checkout, beside the
//!   SDK: paths are relative, and `cargo xtask plugins` builds it with the other Python
//!   policies, into `target/python/NAME.wasm`.
//! - **standalone**: anywhere else, with the checkout from `--sdk` or found from the current
//!   directory or the `larder` binary: the SDK and the build script by absolute path, the
//!   component built into the folder.
//!
//! A Python folder where a Cargo workspace's `members` would look for a crate is refused:
//! cargo would then fail to load that workspace.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::name::type_name;
use super::workspace::{PythonSdk, enclosing_workspace, find_python_sdk, python_sdk_at};
use super::{NewArgs, absolute, relative};

const APP_TEMPLATE: &str = include_str!("app.py.tmpl");
const TEST_TEMPLATE: &str = include_str!("test_app.py.tmpl");
const CASES_TEMPLATE: &str = include_str!("cases.toml.tmpl");
const README_TEMPLATE: &str = include_str!("README.py.md.tmpl");

/// Capitalised names that `app.py` and `tests/test_app.py` already use at module level
/// (imports, the `Policy` export, Python's capitalised keywords): a policy class of the same
/// name would shadow one, so it gets a `Policy` suffix instead (`request` -> `RequestPolicy`).
const TAKEN: &[&str] = &[
    "None",
    "True",
    "False",
    "Policy",
    "Sequence",
    "U32",
    "CacheKey",
    "Invalidation",
    "Request",
    "RequestDecision",
    "Response",
    "ResponseDecision",
    "Store",
    "StoreDirective",
];

/// `my-policy` -> `MyPolicy`, unless the templates use that name already.
pub(super) fn class_name(name: &str) -> String {
    let class = type_name(name);
    if TAKEN.contains(&class.as_str()) {
        class + "Policy"
    } else {
        class
    }
}

/// Where the folder stands, and what its files and commands refer to.
pub(super) struct Python {
    pub(super) sdk: PythonSdk,
    /// The folder is `plugins/python/<name>` of `sdk`'s checkout.
    pub(super) in_checkout: bool,
    /// `build.py`, as the folder's commands name it (a shell word).
    script: String,
    /// `python3 <build.py> --test .`, run in the folder.
    pub(super) test: String,
    /// `python3 <build.py> . <wasm>`, run in the folder.
    pub(super) build: String,
    /// Where `build` writes the component, relative to the folder.
    pub(super) wasm: PathBuf,
}

/// The checkout the folder `dir` (absolute, canonical parent) uses, and its commands.
pub(super) fn layout(args: &NewArgs, cwd: &Path, dir: &Path) -> anyhow::Result<Python> {
    if let Some(ws) = enclosing_workspace(dir)?
        && ws.has_member(dir)
    {
        bail!(
            "{} is matched by the members of the Cargo workspace {}, which would then fail to load (a Python policy has no Cargo.toml): choose a --dir outside them{}",
            dir.display(),
            ws.manifest.display(),
            if python_sdk_at(ws.root()).is_some() {
                format!(", e.g. --dir plugins/python/{}", args.name)
            } else {
                String::new()
            }
        );
    }
    let beside_the_sdk = dir
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
        .and_then(python_sdk_at)
        .filter(|sdk| dir.parent() == Some(sdk.folder().as_path()));
    let given = match &args.sdk {
        Some(p) => Some(python_sdk_at(&absolute(cwd, p)).with_context(|| {
            format!(
                "--sdk {}: not a Larder checkout with the Python SDK (expected the checkout, or its plugins/python/larder-policy)",
                p.display()
            )
        })?),
        None => None,
    };
    let (sdk, in_checkout) = match (beside_the_sdk, given) {
        (Some(here), Some(given)) if here != given => bail!(
            "--sdk names the checkout {}, but {} is in the checkout {}, whose SDK it uses",
            given.checkout.display(),
            dir.display(),
            here.checkout.display()
        ),
        (Some(here), _) => (here, true),
        (None, Some(given)) => (given, false),
        (None, None) => (find_python_sdk(cwd)?, false),
    };
    let (script, wasm) = if in_checkout {
        (
            relative(dir, &sdk.build_script()),
            relative(dir, &sdk.checkout.join("target/python")).join(format!("{}.wasm", args.name)),
        )
    } else {
        (
            sdk.build_script(),
            PathBuf::from(format!("{}.wasm", args.name)),
        )
    };
    let script = shell_word(&script.to_string_lossy());
    Ok(Python {
        test: format!("python3 {script} --test ."),
        build: format!("python3 {script} . {}", shell_word(&wasm.to_string_lossy())),
        sdk,
        in_checkout,
        script,
        wasm,
    })
}

/// The folder's files.
pub(super) fn files(args: &NewArgs, dir: &Path, py: &Python) -> Vec<(PathBuf, String)> {
    let name = &args.name;
    let install = format!("python3 {} . <plugin dir>/{name}.wasm", py.script);
    let (sdk_src, where_) = if py.in_checkout {
        (
            relative(dir, &py.sdk.src()),
            format!(
                "It lives in the Larder checkout, beside the SDK (`{}`): `cargo xtask plugins` builds it too, into `target/python/{name}.wasm`.",
                relative(dir, &py.sdk.project()).display()
            ),
        )
    } else {
        (
            py.sdk.src(),
            format!(
                "It uses the Python SDK (`larder_policy`) and the build script of the Larder checkout at `{}` (see `pyproject.toml`): change the paths if the checkout moves.",
                py.sdk.checkout.display()
            ),
        )
    };
    let wasm = py.wasm.to_string_lossy();
    let substitute = |t: &str| {
        t.replace("__NAME__", name)
            .replace("__TYPE__", &class_name(name))
            .replace("__WASM__", &wasm)
            .replace("__TEST__", &py.test)
            .replace("__BUILD__", &py.build)
            .replace("__INSTALL__", &install)
            .replace("__WHERE__", &where_)
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        ("app.py".into(), substitute(APP_TEMPLATE)),
        ("tests/test_app.py".into(), substitute(TEST_TEMPLATE)),
        ("cases.toml".into(), substitute(CASES_TEMPLATE)),
        ("pyproject.toml".into(), pyproject(name, &sdk_src)),
        ("README.md".into(), substitute(README_TEMPLATE)),
    ];
    if !py.in_checkout {
        files.push((
            ".gitignore".into(),
            "__pycache__/\n.pytest_cache/\n/*.wasm\n".into(),
        ));
    }
    files
}

/// The project: its name, and the path pytest needs for `import app` and `import larder_policy`.
fn pyproject(name: &str, sdk_src: &Path) -> String {
    // A TOML string, quoted and escaped by the TOML writer (a path may hold `"` or `\`).
    let sdk_src = toml::Value::String(sdk_src.to_string_lossy().into_owned());
    format!(
        r#"# {name}: a Larder cache policy (the module `app`), built into a component by the Larder
# checkout's plugins/python/build.py (see README.md).
[project]
name = "{name}"
version = "0.1.0"
description = "A Larder cache policy."
requires-python = ">=3.10"
dependencies = ["larder-policy"]

[tool.pytest.ini_options]
# The policy, and the SDK from the Larder checkout, not an installed copy: the build bundles the
# same one.
pythonpath = [".", {sdk_src}]
testpaths = ["tests"]
"#
    )
}

/// `word` as one word of a POSIX shell command line: as it is when it is plain, else quoted.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_avoid_the_names_the_templates_use() {
        assert_eq!(class_name("my-policy"), "MyPolicy");
        assert_eq!(class_name("request"), "RequestPolicy");
        assert_eq!(class_name("policy"), "PolicyPolicy");
        assert_eq!(class_name("none"), "NonePolicy");
        assert_eq!(class_name("u32"), "U32Policy");
        // Every capitalised name the templates import is taken.
        for template in [APP_TEMPLATE, TEST_TEMPLATE] {
            for line in imported(template) {
                for name in line.split([',', ' ', '(', ')']).filter(|n| !n.is_empty()) {
                    if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                        assert!(TAKEN.contains(&name), "{name} is imported but not taken");
                    }
                }
            }
        }
    }

    /// The names after `import` in `template`'s import statements, one string per statement.
    fn imported(template: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = template.lines();
        while let Some(line) = lines.next() {
            let Some((_, names)) = line.split_once(" import ") else {
                continue;
            };
            if !line.trim_start().starts_with("from ") {
                continue;
            }
            let mut names = names.to_owned();
            if names.starts_with('(') {
                for more in lines.by_ref() {
                    names.push_str(more);
                    if more.contains(')') {
                        break;
                    }
                }
            }
            out.push(names);
        }
        out
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("/w/plugins/python/build.py"),
            "/w/plugins/python/build.py"
        );
        assert_eq!(shell_word("../build.py"), "../build.py");
        assert_eq!(shell_word("/my dir/build.py"), "'/my dir/build.py'");
        assert_eq!(shell_word("/it's/build.py"), r"'/it'\''s/build.py'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn the_sdk_path_is_a_toml_string_whatever_it_holds() {
        let text = pyproject("p", Path::new(r#"/a "quoted" \dir/src"#));
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            doc["tool"]["pytest"]["ini_options"]["pythonpath"][1].as_str(),
            Some(r#"/a "quoted" \dir/src"#)
        );
    }
}
