//! Plugins and routes change without a restart and without a failed request; a broken plugin
//! file is refused with its reason and the previous version keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::origin::OriginConfig;
use larder_tests::{http, plugins};

const CONFIG: &str = r#"
[[route]]
name = "repository"
path = "/api/v1/repositories/{id}"
plugin = "policy"
"#;

const PATH: &str = "/api/v1/repositories/1";

fn with_policy(plugin: &'static str) -> impl FnOnce(&Path) {
    move |dir: &Path| plugins::install(plugin, dir, "policy")
}

/// A gateway whose one route's policy is `analysis-policy`, installed as `policy.wasm`.
async fn gateway() -> Harness {
    Harness::with_routes(
        CONFIG,
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        with_policy("analysis-policy"),
    )
    .await
}

/// Replaces `policy.wasm` the way an editor or `cargo xtask` does: write aside, rename in place.
fn replace_policy(h: &Harness, bytes: &[u8]) {
    let tmp = h.plugin_dir().join(".policy.wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, h.plugin_dir().join("policy.wasm")).unwrap();
}

async fn policy_version(h: &Harness) -> serde_json::Value {
    let plugins = http::get(&h.admin("/plugins")).await.json();
    plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "policy")
        .cloned()
        .unwrap()
}

/// Polls until `check` holds for a fresh GET of `path`, or panics after 10 s.
async fn eventually(h: &Harness, path: &str, what: &str, check: impl Fn(&http::Reply) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = h.get(path).await;
        if check(&r) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last Cache-Status {}",
            r.cache_status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_file_takes_effect_without_a_restart() {
    let h = gateway().await;
    h.get(PATH).await;
    assert!(h.get(PATH).await.is_hit());
    let before = policy_version(&h).await;

    // The panicking plugin replaces it: the watcher picks it up, requests fail open.
    replace_policy(&h, &std::fs::read(plugins::path("panic")).unwrap());
    eventually(&h, PATH, "the new plugin serves", traps).await;
    let after = policy_version(&h).await;
    assert_ne!(before["version"], after["version"]);
    assert_eq!(after["routes"], serde_json::json!(["repository"]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_plugin_file_is_refused_and_the_previous_version_keeps_serving() {
    let h = gateway().await;
    h.get(PATH).await;
    let good = policy_version(&h).await;
    for (what, bytes) in [
        ("an empty (just truncated) file", Vec::new()),
        ("half a component", {
            let b = std::fs::read(plugins::path("standard")).unwrap();
            b[..b.len() / 2].to_vec()
        }),
        ("text", b"(component)".to_vec()),
    ] {
        replace_policy(&h, &bytes);
        let reload = h.reload().await;
        assert_eq!(reload.status, 200, "{what}: {}", reload.text());
        let now = policy_version(&h).await;
        assert_eq!(
            now["version"], good["version"],
            "{what}: the good version keeps serving"
        );
        let error = now["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("not a valid WebAssembly component"),
            "{what}: {error}"
        );
        assert!(h.get(PATH).await.is_hit(), "{what}");
    }
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["status"], "degraded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_directory_that_cannot_be_read_keeps_every_plugin_serving() {
    let h = gateway().await;
    h.get(PATH).await;
    let good = policy_version(&h).await;

    // An editor's hidden copy beside the plugin is not a plugin: nothing loads or refuses it.
    std::fs::write(h.plugin_dir().join(".policy.wasm"), b"half-written").unwrap();
    let reload = h.reload().await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(reload.json()["refused"], serde_json::json!([]));
    assert!(policy_version(&h).await["last_error"].is_null());

    // A link that leads nowhere is refused on its own, by name; the directory is still read.
    std::os::unix::fs::symlink(
        "/nonexistent/policy.wasm",
        h.plugin_dir().join("dangling.wasm"),
    )
    .unwrap();
    let reload = h.reload().await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let refused = reload.json()["refused"].clone();
    assert_eq!(refused.as_array().map(Vec::len), Some(1), "{refused}");
    assert!(
        refused[0]
            .as_str()
            .unwrap()
            .starts_with("dangling: plugin dangling: cannot read"),
        "{refused}"
    );
    assert!(policy_version(&h).await["last_error"].is_null());
    std::fs::remove_file(h.plugin_dir().join("dangling.wasm")).unwrap();

    // The directory goes away (a volume unmounted, a deploy swapping it): the reload keeps
    // every plugin, and says why.
    let aside = h.plugin_dir().with_extension("aside");
    std::fs::rename(h.plugin_dir(), &aside).unwrap();
    let reload = h.reload().await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let refused = reload.json()["refused"].to_string();
    assert!(
        refused.contains("cannot read plugin directory"),
        "{refused}"
    );
    assert_eq!(policy_version(&h).await["version"], good["version"]);
    let plugins = http::get(&h.admin("/plugins")).await.json();
    let whole_dir = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "*")
        .expect("the directory's error is listed");
    assert!(
        whole_dir["last_error"]
            .as_str()
            .unwrap()
            .contains("plugins"),
        "{whole_dir}"
    );
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["status"], "degraded");
    assert!(h.get(PATH).await.is_hit(), "the policy keeps serving");

    // Back in place, the next reload is clean.
    std::fs::rename(&aside, h.plugin_dir()).unwrap();
    let reload = h.reload().await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(reload.json()["refused"], serde_json::json!([]));
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["status"], "ok", "{health}");
    assert!(h.get(PATH).await.is_hit());
    h.stop().await;
}

/// Whether the serving policy is the panicking one (its requests fail open as `plugin-trap`).
fn traps(r: &http::Reply) -> bool {
    r.status == 200 && r.cache_status().contains("plugin-trap")
}

fn serves(r: &http::Reply) -> bool {
    r.status == 200 && !r.cache_status().contains("plugin-trap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_directory_replaced_by_a_deploy_is_watched_again() {
    let h = gateway().await;
    eventually(&h, PATH, "the first policy serves", serves).await;
    let dir = h.plugin_dir();
    let base = dir.parent().unwrap().to_owned();

    // A deploy renames the old directory away and a new one into its place: no signal, no
    // reload request; the new directory's plugin serves.
    let next = base.join("plugins.next");
    std::fs::create_dir(&next).unwrap();
    plugins::install("panic", &next, "policy");
    std::fs::rename(&dir, base.join("plugins.old")).unwrap();
    std::fs::rename(&next, &dir).unwrap();
    eventually(&h, PATH, "the new directory's plugin serves", traps).await;
    // And a plugin changed in the new directory is noticed, as in the old one.
    replace_policy(
        &h,
        &std::fs::read(plugins::path("analysis-policy")).unwrap(),
    );
    eventually(&h, PATH, "a change in the new directory is noticed", serves).await;

    // A deploy that swaps a symlink: the directory becomes a link to a release folder, then
    // the link is renamed over by one to the next release.
    let v1 = base.join("release-1");
    std::fs::rename(&dir, &v1).unwrap();
    std::os::unix::fs::symlink(&v1, &dir).unwrap();
    let v2 = base.join("release-2");
    std::fs::create_dir(&v2).unwrap();
    plugins::install("panic", &v2, "policy");
    let link = base.join("plugins.link");
    std::os::unix::fs::symlink(&v2, &link).unwrap();
    std::fs::rename(&link, &dir).unwrap();
    eventually(&h, PATH, "the swapped link's release serves", traps).await;
    replace_policy(
        &h,
        &std::fs::read(plugins::path("analysis-policy")).unwrap(),
    );
    eventually(
        &h,
        PATH,
        "a change in the linked release is noticed",
        serves,
    )
    .await;

    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["status"], "ok", "{health}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_directory_moved_in_the_config_file_is_watched_where_it_now_is() {
    // The plugin directory as the config file names it (not from the environment).
    let h = Harness::with_routes_and_env(
        &format!("[plugins]\ndir = \"plugins\"\n\n{CONFIG}"),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        with_policy("analysis-policy"),
        |env| env.plugin_dir = None,
    )
    .await;
    eventually(&h, PATH, "the first policy serves", serves).await;
    let moved = h.plugin_dir().with_file_name("plugins-b");
    std::fs::create_dir(&moved).unwrap();
    plugins::install("panic", &moved, "policy");

    // The config file now names the other directory: the watched config reloads, and the
    // watches move there.
    let config = format!("[plugins]\ndir = \"plugins-b\"\n\n{CONFIG}");
    let tmp = h.config_path().with_extension("tmp");
    std::fs::write(&tmp, config).unwrap();
    std::fs::rename(&tmp, h.config_path()).unwrap();
    eventually(&h, PATH, "the moved directory's plugin serves", traps).await;
    let tmp = moved.join(".policy.wasm.tmp");
    std::fs::write(
        &tmp,
        std::fs::read(plugins::path("analysis-policy")).unwrap(),
    )
    .unwrap();
    std::fs::rename(&tmp, moved.join("policy.wasm")).unwrap();
    eventually(
        &h,
        PATH,
        "a change in the moved directory is noticed",
        serves,
    )
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_to_the_config_file_takes_effect() {
    let h = gateway().await;
    let insights = "/api/v1/insights";
    assert!(h.get(insights).await.cache_status().contains("no-route"));
    let mut text = std::fs::read_to_string(h.config_path()).unwrap();
    text.push_str(
        "\n[[route]]\nname = \"insights\"\npath = \"/api/v1/insights\"\nplugin = \"policy\"\n",
    );
    std::fs::write(h.config_path(), text).unwrap();
    eventually(&h, insights, "the new route serves", |r| r.is_hit()).await;

    // A broken config is refused; the running routes stay.
    std::fs::write(h.config_path(), "[[route]]\nname = 1\n").unwrap();
    let reload = h.reload().await;
    assert_eq!(reload.status, 422);
    assert!(
        reload.text().contains("larder.toml:2:8"),
        "{}",
        reload.text()
    );
    assert!(h.get(insights).await.is_hit());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_policy_refuses_are_refused_at_reload_and_the_previous_config_keeps_serving() {
    let settings = |text: &str| format!("{CONFIG}[route.settings]\n{text}\n");
    let h = Harness::with_routes(
        &settings("ttl = 600"),
        StoreKind::Memory,
        OriginConfig::zero_delay(),
        with_policy("analysis-policy"),
    )
    .await;
    h.get(PATH).await;
    assert!(h.get(PATH).await.is_hit());
    let good = policy_version(&h).await;

    let refused = |what: &'static str, reason: &'static str| {
        let h = &h;
        let good = &good;
        async move {
            let reload = h.reload().await;
            assert_eq!(reload.status, 422, "{what}: {}", reload.text());
            let body = reload.json();
            let error = body["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(
                    "larder.toml:5: route \"repository\": plugin \"policy\" refused the route's settings: "
                ) && error.contains(reason),
                "{what}: {error}"
            );
            assert_eq!(body["kept"], "the running configuration and plugins");
            // The client sees the previous configuration: its entry, its plugin.
            assert!(h.get(PATH).await.is_hit(), "{what}");
            assert_eq!(
                policy_version(h).await["version"],
                good["version"],
                "{what}: the previous version keeps serving"
            );
        }
    };

    // A value the policy cannot read, and a misspelt name.
    std::fs::write(h.config_path(), settings("ttl = \"ten minutes\"")).unwrap();
    refused(
        "a bad value",
        "setting `ttl` = \"ten minutes\" is not a valid u32",
    )
    .await;
    std::fs::write(h.config_path(), settings("tll = 600")).unwrap();
    refused("a misspelt name", "unknown setting `tll`").await;

    // A new plugin file that does not read the running settings is refused with them.
    std::fs::write(h.config_path(), settings("ttl = 600")).unwrap();
    replace_policy(&h, &std::fs::read(plugins::path("standard")).unwrap());
    refused("a plugin that does not know `ttl`", "unknown setting `ttl`").await;

    // Fixed: the reload goes through.
    replace_policy(
        &h,
        &std::fs::read(plugins::path("analysis-policy")).unwrap(),
    );
    std::fs::write(h.config_path(), settings("ttl = 60")).unwrap();
    let reload = h.reload().await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert!(h.get(PATH).await.is_hit());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_plugins_reload_under_load() {
    let h = Arc::new(
        Harness::with_routes(
            CONFIG,
            StoreKind::Memory,
            OriginConfig::zero_delay(),
            with_policy("analysis-policy"),
        )
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (h, stop, ok, failed) = (h.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = h.get(&format!("/api/v1/repositories/{}", i + 1)).await;
                    if r.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let versions = [
        std::fs::read(plugins::path("standard")).unwrap(),
        std::fs::read(plugins::path("analysis-policy")).unwrap(),
    ];
    for i in 0..20 {
        replace_policy(&h, &versions[i % 2]);
        let reload = h.reload().await;
        assert_eq!(reload.status, 200, "{}", reload.text());
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 20);
}
