//! The `larder` binary as operators and policy authors meet it: a bad config is refused with
//! file, line and problem; `plugin check`, `plugin run` and `plugin test` work on real
//! components.

use std::process::{Command, Output};

use larder_tests::plugins;
use larder_tests::process::binary as larder_binary;

fn larder(args: &[&str]) -> Output {
    Command::new(larder_binary())
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run larder")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bad_config_is_refused_with_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_typo = 1\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    for command in ["serve", "check-config"] {
        let out = larder(&[command, "--config", path]);
        assert!(!out.status.success(), "{command} accepted a bad config");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{path}:3:1: unknown field `listen_typo`")),
            "{command}: {err}"
        );
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let out = larder(&["serve", "--config", "/nonexistent/larder.toml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read config file /nonexistent/larder.toml"));
}

#[test]
fn a_route_whose_plugin_is_missing_is_refused_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    let path = dir.path().join("larder.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[route]]\nname = \"r\"\npath = \"/x\"\nplugin = \"nope\"\n",
    )
    .unwrap();
    // Both commands refuse it, naming the line and the plugin.
    let refused = |expected: &str| {
        for command in ["serve", "check-config"] {
            let out = larder(&[command, "--config", path.to_str().unwrap()]);
            assert!(!out.status.success(), "{command} accepted it");
            let err = stderr(&out);
            assert!(err.contains(expected), "{command}: {err}");
        }
    };
    refused(
        "larder.toml:8: route \"r\" uses plugin \"nope\", which is not loaded: no nope.wasm in",
    );

    // A plugin that `also_invalidate` names is checked the same way, at its own line.
    plugins::install("standard", &dir.path().join("plugins"), "standard");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "plugin = \"nope\"\n",
        "methods = [\"POST\"]\nplugin = \"standard\"\nalso_invalidate = [\"gone\"]\n",
    );
    std::fs::write(&path, config).unwrap();
    refused(
        "larder.toml:10: route \"r\" uses plugin \"gone\", which is not loaded: no gone.wasm in",
    );
}

#[test]
fn plugin_check_accepts_a_policy_and_explains_a_bad_file() {
    let good = plugins::path("analysis-policy");
    let out = larder(&["plugin", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok")
            && text.contains("larder:policy@0.2.0")
            && text.contains("check-settings"),
        "{text}"
    );
    // A component built against the older interface says so.
    let old = plugins::workspace_root().join("tests/fixtures/policy-0.1.0.wasm");
    let out = larder(&["plugin", "check", old.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("larder:policy@0.1.0") && !text.contains("check-settings"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"").unwrap();
    let out = larder(&["plugin", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not a valid WebAssembly component") && err.contains("wasm32-wasip2"),
        "{err}"
    );
}

/// The development tools hold a policy to the gateway's default memory limit (16 MiB), so a
/// policy that passes them fits the gateway; `--memory-limit` matches a config that raises it.
#[test]
fn plugin_run_holds_a_policy_to_the_gateways_memory_limit() {
    let hog = plugins::path("memory-hog");
    let run = |extra: &[&str]| {
        let mut args = vec!["plugin", "run", hog.to_str().unwrap(), "--path", "/x"];
        args.extend_from_slice(extra);
        larder(&args)
    };
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("grew past its memory limit of 16777216 bytes"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--memory-limit", "33554432"]);
    assert!(
        stderr(&out).contains("grew past its memory limit of 33554432 bytes"),
        "{}",
        stderr(&out)
    );
    // More than an instance's slot in the gateway's pool holds is refused, as the config is.
    let out = run(&["--memory-limit", "67108865"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--memory-limit"), "{}", stderr(&out));
}

#[test]
fn plugin_run_prints_the_decisions() {
    let plugin = plugins::path("analysis-policy");
    let out = larder(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--route",
        "/api/v1/repositories/{id}/ai-features",
        "--route-name",
        "ai-features",
        "--path",
        "/api/v1/repositories/42/ai-features",
        "--setting",
        "ttl=1800",
        "--status",
        "200",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = json["on_request"]["lookup"]["parts"].as_array().unwrap();
    assert!(parts.iter().any(|p| p == "42"), "{json}");
    assert_eq!(json["on_response"]["store"]["ttl"], 1800);
    assert_eq!(
        json["on_response"]["store"]["tags"],
        serde_json::json!(["repo:42"])
    );

    let out = larder(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--path",
        "/api/v1/repositories/42",
        "--route",
        "/api/v1/repositories/{id}",
        "--header",
        "Authorization: Bearer x",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["on_request"]["pass"].is_string(), "{json}");

    // A passed request never reaches on-response in the gateway, nor here.
    let out = larder(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--path",
        "/api/v1/repositories/42",
        "--route",
        "/api/v1/repositories/{id}",
        "--header",
        "Authorization: Bearer x",
        "--status",
        "200",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["on_request"]["pass"].is_string(), "{json}");
    assert!(json["on_response"].get("store").is_none(), "{json}");
    assert!(json["on_response"]["not_called"].is_string(), "{json}");

    let out = larder(&[
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--method",
        "POST",
        "--path",
        "/api/v1/repositories/42/actions/analyze",
        "--route",
        "/api/v1/repositories/{id}/actions/analyze",
        "--status",
        "200",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tags: Vec<&str> = json["on_invalidate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["target"]["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["repo:42", "all-repos"], "{json}");
}

/// Runs analysis-policy's cases file against `plugin` and asserts that every case passes.
fn passes_the_analysis_cases(plugin: &std::path::Path) {
    let cases = plugins::workspace_root().join("plugins/analysis-policy/cases.toml");
    let out = larder(&[
        "plugin",
        "test",
        plugin.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    let total = std::fs::read_to_string(&cases)
        .unwrap()
        .lines()
        .filter(|l| *l == "[[case]]")
        .count();
    assert!(total >= 30, "{total} cases");
    assert!(
        stdout.ends_with(&format!("{total} passed, 0 failed\n")),
        "{stdout}"
    );
}

#[test]
fn the_python_port_of_analysis_policy_passes_the_same_cases() {
    passes_the_analysis_cases(&plugins::python_path("analysis-policy"));
}

#[test]
fn plugin_test_checks_a_policy_against_its_cases_file() {
    let plugin = plugins::path("analysis-policy");
    passes_the_analysis_cases(&plugin);

    // Wrong expectations fail, each difference named by its path, and the command exits 1.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        r#"
[defaults]
route = "ai-features"
pattern = "/api/v1/repositories/{id}/ai-features"

[[case]]
name = "right"
path = "/api/v1/repositories/7/ai-features"
expect.on_request = { lookup = { parts = ["repo", "7", "ai-features", ""] } }

[[case]]
name = "wrong ttl"
path = "/api/v1/repositories/7/ai-features"
response = { status = 200 }
expect.on_response = { store = { ttl = 60, tags = ["repo:7"] } }

[[case]]
name = "a call the gateway would not make"
path = "/api/v1/repositories/7/ai-features"
headers = { authorization = "Bearer t" }
response = { status = 200 }
expect.on_response = { store = {} }
"#,
    )
    .unwrap();
    let out = larder(&[
        "plugin",
        "test",
        plugin.to_str().unwrap(),
        wrong.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for line in [
        "ok    right",
        "FAIL  wrong ttl",
        "      on_response.store.ttl: expected 60, got 1800",
        "FAIL  a call the gateway would not make",
        "      on_response: not called: on-request passed the request",
        "1 passed, 2 failed",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("on_response.store.tags"),
        "only what differs is shown: {stdout}"
    );
    assert!(
        stderr(&out).contains("2 of 3 cases failed"),
        "{}",
        stderr(&out)
    );

    // A malformed cases file is refused with its line.
    std::fs::write(&wrong, "[[case]]\nname = \"x\"\npath = 7\n").unwrap();
    let out = larder(&[
        "plugin",
        "test",
        plugin.to_str().unwrap(),
        wrong.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("wrong.toml: not a cases file") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn sighup_reloads_and_sigterm_stops_gracefully() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir(&plugin_dir).unwrap();
    std::fs::copy(plugins::path("standard"), plugin_dir.join("standard.wasm")).unwrap();
    let path = dir.path().join("larder.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[plugins]\ndir = \"plugins\"\nwatch = false\n\n[[route]]\nname = \"all\"\npath = \"/{*rest}\"\nplugin = \"standard\"\n",
    )
    .unwrap();
    let mut child = Command::new(larder_binary())
        .args(["serve", "--config", path.to_str().unwrap()])
        .env_remove("REDIS_URL")
        .env("LARDER_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
                && line.contains(needle)
            {
                return;
            }
        }
        panic!("no log line containing {needle:?}");
    };
    wait_for("larder listening");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("reloaded");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("shutting down");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Runs `larder plugin new ARGS` in `cwd`.
fn plugin_new(cwd: &std::path::Path, args: &[&str]) -> Output {
    Command::new(larder_binary())
        .args(["plugin", "new"])
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run larder plugin new")
}

/// Points `<dir>/target` at one build directory shared by every run of the scaffold tests, so
/// the SDK and wit-bindgen are compiled once per checkout, not once per run. (The generated
/// crates differ only in their own small library.)
fn share_target_dir(dir: &std::path::Path) {
    let shared = plugins::workspace_root().join("target/scaffold-test");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, dir.join("target")).unwrap();
}

/// Runs a shell command line as a plugin author would type it, in `cwd`, with this build's
/// `larder` first on the PATH; panics with its output if it fails.
fn sh(cwd: &std::path::Path, line: &str) -> String {
    let bin = larder_binary();
    let bin_dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", line]).current_dir(cwd).env("PATH", path);
    // The outer `cargo test` (or `cargo llvm-cov`, with its instrumenting flags and wrapper)
    // sets variables meant for its own build.
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "LLVM_PROFILE_FILE",
        "CARGO_BUILD_TARGET",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "`{line}` failed in {}:\n{}{}",
        cwd.display(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `cargo ...` and `larder ...` lines of the README's "Test, build, try" block.
fn readme_commands(readme: &str) -> Vec<String> {
    readme_lines(readme)
        .into_iter()
        .filter(|l| l.starts_with("cargo ") || l.starts_with("larder "))
        .collect()
}

/// The command lines of the README's "Test, build, try" block, without their comments.
fn readme_lines(readme: &str) -> Vec<String> {
    let section = readme
        .split("## Test, build, try")
        .nth(1)
        .expect("README has a \"Test, build, try\" section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    block
        .lines()
        .map(|l| l.split(" # ").next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn plugin_new_scaffolds_a_crate_that_builds_checks_and_decides_outside_the_workspace() {
    // A temporary directory: outside this workspace, so the crate must be a workspace of its
    // own and find the SDK by itself (here next to the `larder` binary, in this checkout).
    let tmp = tempfile::tempdir().unwrap();
    let out = plugin_new(tmp.path(), &["shop-items"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("created") && stdout.contains("larder plugin check"),
        "{stdout}"
    );
    let dir = tmp.path().join("shop-items");
    share_target_dir(&dir);

    // Every command the generated README documents, verbatim: the native tests, the wasm
    // build, `plugin check`, and three `plugin run`s whose decisions we check.
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert!(
        commands
            .iter()
            .any(|c| c == "cargo build --release --target wasm32-wasip2"),
        "{commands:?}"
    );
    let mut runs = Vec::new();
    for line in &commands {
        let stdout = sh(&dir, line);
        if line.starts_with("larder plugin check") {
            assert!(
                stdout.contains("ok") && stdout.contains("larder:policy@0.2.0"),
                "{stdout}"
            );
        }
        if line.starts_with("larder plugin run") {
            runs.push(serde_json::from_str::<serde_json::Value>(&stdout).unwrap());
        }
    }
    let [ok, not_found, put] = &runs[..] else {
        panic!("expected three `larder plugin run` lines in the README: {commands:?}");
    };
    assert_eq!(
        ok["on_request"]["lookup"]["parts"],
        serde_json::json!(["item", "42", "acme", ""]),
        "{ok}"
    );
    assert_eq!(ok["on_response"]["store"]["ttl"], 300, "{ok}");
    assert_eq!(
        ok["on_response"]["store"]["tags"],
        serde_json::json!(["item:42", "tenant:acme"]),
        "{ok}"
    );
    assert_eq!(
        not_found["on_request"]["lookup"]["parts"],
        serde_json::json!(["item", "42", "public", ""]),
        "{not_found}"
    );
    assert_eq!(not_found["on_response"]["store"]["ttl"], 30, "{not_found}");
    assert_eq!(
        put["on_invalidate"],
        serde_json::json!([{ "target": { "tag": "item:42" }, "soft": false }]),
        "{put}"
    );

    // Generating again over it is refused, and leaves it alone.
    let out = plugin_new(tmp.path(), &["shop-items"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert!(dir.join("src/lib.rs").is_file());
}

#[test]
fn plugin_new_python_scaffolds_a_policy_that_tests_builds_and_decides_outside_the_workspace() {
    // As the Rust scaffold's test, for `--lang python`: outside this workspace, the folder finds
    // the Python SDK and build.py in this checkout (next to the `larder` binary), and every
    // command of its README works from the folder, as written.
    let tmp = tempfile::tempdir().unwrap();
    let out = plugin_new(tmp.path(), &["shop-items", "--lang", "python"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("created") && stdout.contains("build.py --test ."),
        "{stdout}"
    );
    let dir = tmp.path().join("shop-items");
    let script = plugins::workspace_root()
        .canonicalize()
        .unwrap()
        .join("plugins/python/build.py");
    let script = script.display();
    let commands = readme_lines(&std::fs::read_to_string(dir.join("README.md")).unwrap());
    assert_eq!(
        commands,
        [
            format!("python3 {script} --test ."),
            format!("python3 {script} . shop-items.wasm"),
            "larder plugin check shop-items.wasm".into(),
            "larder plugin test shop-items.wasm cases.toml".into(),
        ]
    );
    for line in &commands {
        // (Loading a Python component compiles CPython's WebAssembly, about 15 s: `plugin
        // check` does, and keeps the code in the code cache, from which `plugin test` loads.)
        let stdout = sh(&dir, line);
        if line.starts_with("larder plugin check") {
            assert!(stdout.contains("shop-items.wasm: ok"), "{stdout}");
        }
        // (`sh` fails on a non-zero exit: a failing test or case.)
        if line.ends_with("--test .") {
            assert!(stdout.contains(" passed"), "{stdout}");
        }
        if line.starts_with("larder plugin test") {
            assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
        }
    }
    assert!(dir.join("shop-items.wasm").is_file());

    // Generating again over it is refused, and leaves it alone.
    let out = plugin_new(tmp.path(), &["shop-items", "--lang", "python"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert!(dir.join("app.py").is_file());
}

#[test]
fn plugin_new_in_a_workspace_makes_a_member_that_builds() {
    // A workspace laid out like this repository's: `plugins/*` members, the SDK a workspace
    // dependency. The generated crate must inherit from it, not start a workspace of its own.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sdk = plugins::workspace_root().join("plugins/sdk");
    std::fs::create_dir(root.join("plugins")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"3\"\nmembers = [\"plugins/*\"]\n\n\
             [workspace.package]\nversion = \"0.1.0\"\nedition = \"2024\"\nrust-version = \"1.95\"\nlicense = \"Apache-2.0\"\npublish = false\n\n\
             [workspace.dependencies]\nlarder-sdk = {{ path = {:?} }}\n\n\
             [workspace.lints.rust]\nunsafe_code = \"deny\"\n\n\
             # The standalone scaffold's profile, so both tests share compiled dependencies.\n\
             [profile.release]\nopt-level = \"s\"\ndebug = false\nstrip = \"debuginfo\"\n",
            sdk.to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(
        plugins::workspace_root().join("Cargo.lock"),
        root.join("Cargo.lock"),
    )
    .unwrap();
    share_target_dir(root);

    let out = plugin_new(root, &["docs", "--dir", "plugins/docs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a member of the workspace"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let dir = root.join("plugins/docs");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("larder-sdk.workspace = true") && !manifest.contains("[workspace]"),
        "{manifest}"
    );
    sh(&dir, "cargo build --release --target wasm32-wasip2");
    let check = sh(
        &dir,
        "larder plugin check ../../target/wasm32-wasip2/release/docs.wasm",
    );
    assert!(check.contains("ok"), "{check}");
}

#[test]
fn plugin_new_refuses_bad_names_and_an_unknown_sdk() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, why) in [
        ("My_Policy", "must start with a lower-case letter"),
        ("my_policy", "'_' is not allowed"),
        ("../escape", "must start with a lower-case letter"),
        ("test", "reserved"),
    ] {
        let out = plugin_new(tmp.path(), &[name]);
        assert!(!out.status.success(), "{name} accepted");
        assert!(stderr(&out).contains(why), "{name}: {}", stderr(&out));
    }
    let out = plugin_new(tmp.path(), &["fine", "--sdk", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not the larder-sdk crate"),
        "{}",
        stderr(&out)
    );
    // Nothing was created by the refusals.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// `plugin check` on a file; its stderr, after asserting that it failed.
fn check_fails(file: &std::path::Path) -> String {
    let out = larder(&["plugin", "check", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{} accepted", file.display());
    stderr(&out)
}

/// A built plugin with every occurrence of `from` replaced by `to` (same length): what a
/// plugin built against another version of the WIT looks like to the gateway.
fn patched(name: &str, from: &str, to: &str, dir: &std::path::Path) -> std::path::PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(plugins::path(name)).unwrap();
    let mut found = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
    {
        bytes[i + at..i + at + from.len()].copy_from_slice(to.as_bytes());
        i += at + from.len();
        found += 1;
    }
    assert!(found > 0, "{from} not in {name}");
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn loading_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();

    // A core module: what a wasm32-unknown-unknown or wasm32-wasip1 build makes.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = check_fails(&core);
    assert!(
        err.contains("core WebAssembly module, not a component")
            && err.contains("cargo build --release --target wasm32-wasip2")
            && err.contains("wasm-tools component new"),
        "{err}"
    );

    // Not WebAssembly at all, and WebAssembly text.
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, b"(component)").unwrap();
    assert!(check_fails(&text).contains("WebAssembly text"));
    let json = dir.path().join("json.wasm");
    std::fs::write(&json, b"{\"not\": \"wasm\"}").unwrap();
    assert!(check_fails(&json).contains("magic bytes"));

    // A component that exports nothing.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let err = check_fails(&empty);
    assert!(
        err.contains("does not export `larder:policy/policy@0.2.0` (it exports nothing")
            && err.contains("larder_sdk::export_policy!"),
        "{err}"
    );

    // Built against a newer WIT: the export, or the host import, of another version.
    let newer = patched(
        "standard",
        "larder:policy/policy@0.2.0",
        "larder:policy/policy@0.9.0",
        dir.path(),
    );
    let err = check_fails(&newer);
    assert!(
        err.contains("exports `larder:policy/policy@0.9.0`, a version of the larder:policy WIT this gateway does not know (it loads 0.2.0 and 0.1.0)")
            && err.contains("rebuild it with the larder-sdk of this gateway"),
        "{err}"
    );
    let newer_host = patched(
        "analysis-policy",
        "larder:policy/host@0.2.0",
        "larder:policy/host@0.9.0",
        dir.path(),
    );
    let err = check_fails(&newer_host);
    assert!(
        err.contains(
            "imports `larder:policy/host@0.9.0`, but this gateway provides the larder:policy WIT in versions 0.2.0 and 0.1.0"
        ),
        "{err}"
    );
}

#[test]
fn a_panic_at_call_time_is_explained_with_its_message() {
    let out = larder(&[
        "plugin",
        "run",
        plugins::path("panic").to_str().unwrap(),
        "--path",
        "/boom",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    // The SDK's panic hook logs the message through the host; the error says what it means.
    assert!(
        err.contains("panic plugin: deliberate panic in on_request for /boom"),
        "{err}"
    );
    assert!(
        err.contains("trapped: the policy panicked") && err.contains("larder plugin run"),
        "{err}"
    );
}

#[test]
fn out_of_file_descriptors_the_listener_backs_off_says_so_once_and_recovers() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir(&plugin_dir).unwrap();
    std::fs::copy(plugins::path("standard"), plugin_dir.join("standard.wasm")).unwrap();
    let path = dir.path().join("larder.toml");
    // A connection limit far above what the process may open: accepting runs out of file
    // descriptors first.
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_connections = 10000\n\n[plugins]\ndir = \"plugins\"\nwatch = false\n\n[[route]]\nname = \"all\"\npath = \"/{*rest}\"\nplugin = \"standard\"\n",
    )
    .unwrap();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -S -n 96 && exec \"$0\" serve --config \"$1\"",
            larder_binary().to_str().unwrap(),
            path.to_str().unwrap(),
        ])
        .env_remove("REDIS_URL")
        .env("LARDER_LOG", "info")
        .env("LARDER_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(json) = serde_json::from_str(&line) {
                let _ = tx.send(json);
            }
        }
    });
    let message =
        |line: &serde_json::Value| line["fields"]["message"].as_str().unwrap_or("").to_owned();
    // Log lines until `until` matches one (returned last), or until `deadline`.
    let lines_until = |until: &dyn Fn(&serde_json::Value) -> bool, deadline: Instant| {
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                let done = until(&line);
                seen.push(line);
                if done {
                    break;
                }
            }
        }
        seen
    };
    let started = lines_until(
        &|l| message(l) == "larder listening",
        Instant::now() + Duration::from_secs(20),
    );
    assert!(
        started
            .iter()
            .any(|l| message(l).contains("above half the open-file limit")),
        "the operator is told the limit is too high: {started:?}"
    );
    let addr = started
        .last()
        .and_then(|l| l["fields"]["addr"].as_str())
        .expect("the listening line names the address")
        .to_owned();

    // Far more connections than descriptors: the rest wait in the listener's backlog.
    let held: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let during = lines_until(&|_| false, Instant::now() + Duration::from_secs(2));
    let failures = during
        .iter()
        .filter(|l| message(l).contains("accept failed"))
        .count();
    assert_eq!(failures, 1, "said once, not at every retry: {during:?}");

    // The clients leave: the gateway accepts again and serves.
    drop(held);
    let recovered = lines_until(
        &|l| message(l).contains("accepting connections again"),
        Instant::now() + Duration::from_secs(10),
    );
    assert!(
        recovered
            .last()
            .is_some_and(|l| message(l).contains("accepting connections again")),
        "{recovered:?}"
    );
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(
        b"GET /health-of-the-listener HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 "), "{answer:?}");

    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn plugin_install_checks_the_component_and_names_it_as_routes_do() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    // cargo writes the crate `analysis-policy` as `analysis_policy.wasm`.
    let built = plugins::path("analysis-policy");
    assert!(
        built.ends_with("analysis_policy.wasm"),
        "{}",
        built.display()
    );
    let out = larder(&[
        "plugin",
        "install",
        built.to_str().unwrap(),
        "--dir",
        dir_arg,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains("(routes: plugin = \"analysis-policy\")"),
        "{stdout}"
    );
    let installed = dir.path().join("analysis-policy.wasm");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&built).unwrap()
    );

    // Under another name, and over an existing file.
    let out = larder(&[
        "plugin",
        "install",
        built.to_str().unwrap(),
        "--dir",
        dir_arg,
        "--name",
        "team-policy",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("team-policy.wasm").is_file());

    // A file the gateway would refuse is refused with its reason, and nothing is written.
    let bad = dir.path().join("not_a_plugin.txt");
    std::fs::write(&bad, "hello").unwrap();
    let out = larder(&["plugin", "install", bad.to_str().unwrap(), "--dir", dir_arg]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a valid WebAssembly"),
        "{}",
        stderr(&out)
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "analysis-policy.wasm",
            "not_a_plugin.txt",
            "team-policy.wasm"
        ]
    );

    // A name a route could not use is refused.
    let out = larder(&[
        "plugin",
        "install",
        built.to_str().unwrap(),
        "--dir",
        dir_arg,
        "--name",
        "../escape",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be a plugin name"),
        "{}",
        stderr(&out)
    );
}
