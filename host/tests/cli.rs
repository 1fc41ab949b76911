//! The `larder` binary as operators and policy authors meet it: a bad config is refused with
//! file, line and problem; `plugin check` and `plugin run` work on real components.

// Shared with the end-to-end tests; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/support/plugins.rs"]
mod plugins;

use std::process::{Command, Output};

fn larder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_larder"))
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
    let out = larder(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "larder.toml:8: route \"r\" uses plugin \"nope\", which is not loaded: no nope.wasm in"
        ),
        "{err}"
    );
}

#[test]
fn plugin_check_accepts_a_policy_and_explains_a_bad_file() {
    let good = plugins::path("analysis-policy");
    let out = larder(&["plugin", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok") && text.contains("larder:policy@0.1.0"),
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_larder"))
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
