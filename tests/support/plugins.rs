//! The real plugin components, built for `wasm32-wasip2` once per test process.
//!
//! `cargo xtask test` builds them before the tests run; when a test is run on its own with
//! `cargo test`, the first call here builds them (a no-op when they are up to date), with the
//! same command (`xtask::plugins`: every crate of `plugins/` and `tests/plugins/`, found in the
//! folders, in the `plugin` profile). The build uses its own target directory, so it does not
//! wait on the lock that the running `cargo test` holds on `target/`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_owned()
}

/// The plugin crates' names, after building them all.
fn built() -> &'static [String] {
    static BUILT: OnceLock<Vec<String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = xtask::plugins::cargo(&cargo, "build", &root)
            .arg("--quiet")
            .status()
            .expect("running cargo to build the plugins");
        assert!(
            status.success(),
            "building the plugins failed (is the wasm32-wasip2 target installed? `cargo xtask test` installs it)"
        );
        xtask::plugins::plugin_names(&root)
    })
}

/// The built component of plugin crate `name` (e.g. `"analysis-policy"`).
pub fn path(name: &str) -> PathBuf {
    assert!(
        built().iter().any(|p| p == name),
        "unknown plugin {name}: no crate of that name under plugins/ or tests/plugins/"
    );
    xtask::plugins::component_path(&workspace_root(), name)
}

/// Copies plugin `name` into `dir` as `<as_name>.wasm`.
pub fn install(name: &str, dir: &Path, as_name: &str) {
    std::fs::copy(path(name), dir.join(format!("{as_name}.wasm"))).expect("copy plugin");
}

/// The built component of the Python policy `name` (a folder of `plugins/python/` or
/// `tests/python-plugins/` with an `app.py`), built if its inputs changed since its last build
/// (`cargo xtask test` builds them all before the tests run).
pub fn python_path(name: &str) -> PathBuf {
    let root = workspace_root();
    let policy = xtask::python::discover(&root)
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("unknown Python policy {name}: no app.py in plugins/python/{name} or tests/python-plugins/{name}"));
    xtask::python::build(&root, &policy).expect("building the Python policy")
}
