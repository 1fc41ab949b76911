//! `larder plugin new`'s layouts, names and files, without building anything.

use super::*;

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
        lang: Lang::Rust,
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
        lang: Lang::Rust,
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

/// `plugin new docs --dir plugins/docs` in a workspace whose members are `plugins/*`, with
/// the SDK and `more` in its manifest.
fn new_member(more: &str) -> (tempfile::TempDir, Created) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("plugins")).unwrap();
    std::fs::write(
        tmp.path().join("Cargo.toml"),
        format!("[workspace]\nmembers = [\"plugins/*\"]\n[workspace.dependencies]\nlarder-sdk = {{ path = \"sdk\" }}\n{more}"),
    )
    .unwrap();
    let args = NewArgs {
        name: "docs".into(),
        dir: Some("plugins/docs".into()),
        sdk: None,
        lang: Lang::Rust,
    };
    let created = new_plugin(&args, tmp.path()).unwrap();
    (tmp, created)
}

#[test]
fn a_crate_in_a_workspace_with_the_sdk_joins_it() {
    let (_tmp, created) = new_member("");
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

#[test]
fn a_member_of_a_workspace_with_a_plugin_profile_builds_with_it() {
    let (_tmp, created) =
        new_member("\n[profile.plugin]\ninherits = \"release\"\nopt-level = \"s\"\n");
    assert_eq!(
        created.build,
        "cargo build --profile plugin --target wasm32-wasip2"
    );
    assert_eq!(
        created.wasm,
        PathBuf::from("../../target/wasm32-wasip2/plugin/docs.wasm")
    );
    for file in ["README.md", "src/lib.rs"] {
        let text = std::fs::read_to_string(created.dir.join(file)).unwrap();
        assert!(
            text.contains("cargo build --profile plugin --target wasm32-wasip2")
                && text.contains("target/wasm32-wasip2/plugin/docs.wasm")
                && !text.contains("--release"),
            "{file}: {text}"
        );
    }
}

/// A Larder checkout as a Python policy needs it, in a temporary directory: the SDK's
/// package, the build script, and a Cargo workspace whose `plugins/*` members exclude
/// `plugins/python`, as this repository's do.
fn fake_checkout() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let sdk = tmp
        .path()
        .join("plugins/python/larder-policy/src/larder_policy");
    std::fs::create_dir_all(&sdk).unwrap();
    std::fs::write(sdk.join("__init__.py"), "").unwrap();
    std::fs::write(tmp.path().join("plugins/python/build.py"), "").unwrap();
    std::fs::write(
        tmp.path().join("Cargo.toml"),
        "[workspace]\nmembers = [\"plugins/*\"]\nexclude = [\"plugins/python\"]\n",
    )
    .unwrap();
    tmp
}

fn python(name: &str, dir: Option<&str>, sdk: Option<&Path>) -> NewArgs {
    NewArgs {
        name: name.into(),
        dir: dir.map(PathBuf::from),
        sdk: sdk.map(Path::to_owned),
        lang: Lang::Python,
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// The placeholders of the templates; none may be left in a generated file.
const PLACEHOLDERS: &[&str] = &[
    "__NAME__",
    "__TYPE__",
    "__LIB__",
    "__WASM__",
    "__TEST__",
    "__BUILD__",
    "__INSTALL__",
    "__WHERE__",
];

#[test]
fn a_standalone_python_policy_names_the_checkout_by_absolute_paths() {
    let checkout = fake_checkout();
    let tmp = tempfile::tempdir().unwrap();
    let root = checkout.path().canonicalize().unwrap();
    let created = new_plugin(
        &python("my-policy", None, Some(checkout.path())),
        tmp.path(),
    )
    .unwrap();
    assert_eq!(
        created.dir,
        tmp.path().canonicalize().unwrap().join("my-policy")
    );
    assert_eq!(
        created.files,
        [
            "app.py",
            "tests/test_app.py",
            "cases.toml",
            "pyproject.toml",
            "README.md",
            ".gitignore"
        ]
        .map(PathBuf::from)
    );
    let script = root.join("plugins/python/build.py");
    let script = script.display();
    assert_eq!(created.test, format!("python3 {script} --test ."));
    assert_eq!(created.build, format!("python3 {script} . my-policy.wasm"));
    assert_eq!(created.wasm, PathBuf::from("my-policy.wasm"));
    assert_eq!(created.workspace, None);
    assert_eq!(created.sdk, Some(root.join("plugins/python/larder-policy")));

    let doc: toml::Table = toml::from_str(&read(&created.dir, "pyproject.toml")).unwrap();
    let sdk_src = root.join("plugins/python/larder-policy/src");
    assert_eq!(
        doc["tool"]["pytest"]["ini_options"]["pythonpath"],
        toml::Value::Array(vec![".".into(), sdk_src.to_str().unwrap().into()])
    );
    let app = read(&created.dir, "app.py");
    assert!(
        app.contains("class MyPolicy(larder_policy.Policy):"),
        "{app}"
    );
    assert!(
        app.contains("\nPolicy = larder_policy.export(MyPolicy)\n"),
        "{app}"
    );
    assert!(read(&created.dir, "tests/test_app.py").contains("from app import MyPolicy"));
    let readme = read(&created.dir, "README.md");
    for command in [&created.test, &created.build] {
        assert!(readme.contains(command.as_str()), "{command}: {readme}");
    }
    assert!(readme.contains("larder plugin test my-policy.wasm cases.toml"));
    let cases: toml::Table = toml::from_str(&read(&created.dir, "cases.toml")).unwrap();
    assert!(cases["case"].as_array().is_some_and(|c| c.len() > 3));
    for file in &created.files {
        let text = read(&created.dir, file.to_str().unwrap());
        for placeholder in PLACEHOLDERS {
            assert!(
                !text.contains(placeholder),
                "{placeholder} left in {file:?}"
            );
        }
    }

    // What `larder plugin new` prints next: the README's commands.
    let next = created.to_string();
    for line in [
        created.test.clone(),
        created.build.clone(),
        "larder plugin check my-policy.wasm".into(),
        "larder plugin test my-policy.wasm cases.toml".into(),
    ] {
        assert!(next.contains(&format!("\n  {line}")), "{line}: {next}");
    }
    assert!(next.contains("a standalone Python policy"), "{next}");
}

#[test]
fn sdk_names_the_checkout_or_its_python_sdk_and_nothing_else() {
    let checkout = fake_checkout();
    let tmp = tempfile::tempdir().unwrap();
    let project = checkout.path().join("plugins/python/larder-policy");
    let created = new_plugin(&python("a", None, Some(&project)), tmp.path()).unwrap();
    assert_eq!(created.sdk, Some(project.canonicalize().unwrap()));
    for wrong in [
        checkout.path().join("plugins/python"),
        checkout.path().join("plugins/python/larder-policy/src"),
        tmp.path().to_owned(),
    ] {
        let err = new_plugin(&python("b", None, Some(&wrong)), tmp.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a Larder checkout with the Python SDK"),
            "{err}"
        );
    }
    assert!(!tmp.path().join("b").exists());
}

#[test]
fn a_python_policy_beside_the_sdk_uses_it_by_relative_paths() {
    let checkout = fake_checkout();
    let root = checkout.path().canonicalize().unwrap();
    let created = new_plugin(
        &python("docs", Some("plugins/python/docs"), None),
        checkout.path(),
    )
    .unwrap();
    assert_eq!(created.workspace, Some(root.clone()));
    assert_eq!(created.test, "python3 ../build.py --test .");
    assert_eq!(
        created.build,
        "python3 ../build.py . ../../../target/python/docs.wasm"
    );
    let doc: toml::Table = toml::from_str(&read(&created.dir, "pyproject.toml")).unwrap();
    assert_eq!(
        doc["tool"]["pytest"]["ini_options"]["pythonpath"],
        toml::Value::Array(vec![".".into(), "../larder-policy/src".into()])
    );
    assert!(!created.dir.join(".gitignore").exists());
    assert!(read(&created.dir, "README.md").contains("`cargo xtask plugins` builds it"));
    // Also with --sdk naming the same checkout; another checkout is refused.
    new_plugin(
        &python("more", Some("plugins/python/more"), Some(checkout.path())),
        checkout.path(),
    )
    .unwrap();
    let other = fake_checkout();
    let err = new_plugin(
        &python("third", Some("plugins/python/third"), Some(other.path())),
        checkout.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("whose SDK it uses"), "{err}");
}

#[test]
fn a_python_policy_is_refused_where_cargo_looks_for_crates() {
    let checkout = fake_checkout();
    let err = new_plugin(&python("docs", Some("plugins/docs"), None), checkout.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("members of the Cargo workspace") && err.contains("--dir plugins/python/docs"),
        "{err}"
    );
    assert!(!checkout.path().join("plugins/docs").exists());
}

#[test]
fn a_python_policy_is_never_written_over_anything_either() {
    let checkout = fake_checkout();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("taken"), "mine").unwrap();
    let err = new_plugin(&python("taken", None, Some(checkout.path())), tmp.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(read(tmp.path(), "taken"), "mine");
    let err = new_plugin(
        &python("x", Some("missing/x"), Some(checkout.path())),
        tmp.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not exist: create it first"), "{err}");
}

#[test]
fn the_language_is_rust_unless_python_is_asked_for() {
    use clap::Parser;
    let parse = |args: &[&str]| {
        let cli = crate::cli::Cli::try_parse_from(["larder", "plugin", "new"].iter().chain(args))?;
        match cli.command {
            crate::cli::Command::Plugin {
                command: crate::cli::PluginCommand::New(args),
            } => Ok::<_, clap::Error>(args),
            _ => unreachable!("`plugin new` parses as New"),
        }
    };
    assert_eq!(parse(&["p"]).unwrap().lang, Lang::Rust);
    let args = parse(&["p", "--lang", "python", "--dir", "d", "--sdk", "s"]).unwrap();
    assert_eq!(args.lang, Lang::Python);
    assert_eq!(args.dir, Some(PathBuf::from("d")));
    assert_eq!(args.sdk, Some(PathBuf::from("s")));
    let err = parse(&["p", "--lang", "go"]).unwrap_err().to_string();
    assert!(err.contains("possible values: rust, python"), "{err}");
}
