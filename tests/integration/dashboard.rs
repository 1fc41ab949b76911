//! The dashboard in a real browser: headless Chromium, driven through chromedriver (W3C
//! WebDriver, `larder_tests::webdriver`), opens the
//! admin listener's page while the gateway has served traffic, shows the numbers `/stats`
//! gives, and purges through its form. A screenshot is saved to
//! `target/artifacts/dashboard.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`cargo xtask test` installs them when run as
//! root, as CI does). Without them the test fails and says so; set `LARDER_SKIP_BROWSER=1` to
//! skip it deliberately.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use larder_tests::gateway::{ADMIN_TOKEN, Harness, StoreKind};
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::RedisServer;
use larder_tests::webdriver::Browser;
use larder_tests::{free_port, http, plugins};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process in a process group of its own, which holds the browsers it starts:
/// the whole group is killed on drop, so a failed test leaves no Chromium behind.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, port }
    }

    async fn browser(&self) -> Browser {
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1400"],
            }
        });
        Browser::open(&format!("http://127.0.0.1:{}", self.port), capabilities).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it gives a value (bounded).
async fn eventually<T, F: AsyncFn() -> Option<T>>(what: &str, check: F) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An attribute (or, for `None`, the text) of the element `css` selects, read in one script
/// call: the page re-renders its tables on every poll, so a found element may be gone by the
/// time a second command reads it.
async fn read(c: &Browser, css: &str, attribute: Option<&str>) -> Option<String> {
    let script = "const el = document.querySelector(arguments[0]);
                  if (!el) throw new Error('no element ' + arguments[0]);
                  return arguments[1] === null ? el.textContent : el.getAttribute(arguments[1]);";
    let value = c.execute(script, vec![css.into(), attribute.into()]).await;
    value.as_str().map(str::to_owned)
}

async fn text(c: &Browser, css: &str) -> String {
    read(c, css, None).await.unwrap_or_default()
}

async fn data_value(c: &Browser, css: &str) -> Option<String> {
    read(c, css, Some("data-value")).await
}

/// The page's percentage for a ratio, as its script formats it.
fn pct(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn browser_installed() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    if std::env::var_os("LARDER_SKIP_BROWSER").is_some() {
        eprintln!("LARDER_SKIP_BROWSER is set and chromium is missing: dashboard test skipped");
        return false;
    }
    panic!(
        "the dashboard test needs {CHROMIUM} and {CHROMEDRIVER}: `apt-get install chromium chromium-driver` \
         (cargo xtask test does it as root), or set LARDER_SKIP_BROWSER=1 to skip this test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_stats_and_purges() {
    if !browser_installed() {
        return;
    }
    let redis = RedisServer::start();
    let origin = OriginConfig::zero_delay().with_non_ai_delays(Duration::from_millis(40));
    let h = Harness::demo(StoreKind::Redis(redis.url()), origin).await;
    // Traffic: repository 1 three times, repository 2 twice, the insights twice.
    for (path, times) in [
        ("/api/v1/repositories/1", 3),
        ("/api/v1/repositories/2", 2),
        ("/api/v1/insights", 2),
    ] {
        for _ in 0..times {
            assert_eq!(h.get(path).await.status, 200);
        }
    }

    let driver = Driver::start().await;
    let c = driver.browser().await;
    c.goto(&h.admin("/?interval=300")).await;
    eventually("the first poll", async || {
        data_value(&c, "#hit-ratio").await.filter(|v| !v.is_empty())
    })
    .await;

    // The numbers on the page are /stats' (no traffic since, so they hold still).
    let stats = http::get(&h.admin("/stats")).await.json();
    let total = &stats["total"];
    let ratio = total["hit_ratio"].as_f64().unwrap();
    assert_eq!(ratio, 0.5714, "4 of 7 lookups answered from the cache");
    assert_eq!(text(&c, "#hit-ratio").await, pct(ratio));
    assert_eq!(
        data_value(&c, "#hit-ratio").await.unwrap(),
        ratio.to_string()
    );
    assert_eq!(text(&c, "#requests").await, total["requests"].to_string());
    assert_eq!(
        data_value(&c, "#time-saved").await.unwrap(),
        total["upstream_time_saved_ms"].to_string()
    );
    for route in stats["routes"].as_array().unwrap() {
        if route["requests"] == 0 {
            continue;
        }
        let name = route["route"].as_str().unwrap();
        let row = format!("tr[data-route=\"{name}\"]");
        for field in ["requests", "hit", "miss", "stale", "pass"] {
            assert_eq!(
                text(&c, &format!("{row} td.{field}")).await,
                route[field].to_string(),
                "{name}.{field}"
            );
        }
    }
    assert_eq!(text(&c, "tr[data-route=\"repository\"] td.hit").await, "3");
    let plugin = stats["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "analysis-policy")
        .unwrap();
    assert_eq!(
        data_value(&c, "tr[data-plugin=\"analysis-policy\"] td.version").await,
        plugin["version"].as_str().map(str::to_owned)
    );
    assert_eq!(text(&c, "#store-status").await, "redis up");

    // Purge repository 1's entries through the form.
    c.send_keys(&c.find("#purge-token").await, ADMIN_TOKEN)
        .await;
    c.click(&c.find("#purge-kind option[value=\"tag\"]").await)
        .await;
    c.send_keys(&c.find("#purge-value").await, "repo:1").await;
    c.click(&c.find("#purge-submit").await).await;
    let status = eventually("the purge's answer", async || {
        read(&c, "#purge-result", Some("data-status")).await
    })
    .await;
    assert_eq!(status, "200");
    let result = text(&c, "#purge-result").await;
    assert!(result.starts_with("purged: "), "{result}");
    // It took effect: repository 1 is fetched again, repository 2 is still a hit.
    let again = h.get("/api/v1/repositories/1").await;
    assert!(
        again.cache_status().contains("fwd=miss"),
        "{}",
        again.cache_status()
    );
    assert_eq!(h.upstream_gets("/api/v1/repositories/1"), 2);
    assert!(h.get("/api/v1/repositories/2").await.is_hit());
    // And the page shows the purge and the new counts on its next poll.
    eventually("the purge on the page", async || {
        let shown = text(&c, "#invalidations").await;
        shown.starts_with("1 tags").then_some(())
    })
    .await;
    eventually("the new request count", async || {
        (text(&c, "#requests").await == "9").then_some(())
    })
    .await;

    // Traffic while the page polls, so that the chart has something to draw; then keep a
    // picture of the page.
    for round in 0..12 {
        for id in 1..=3 {
            h.get(&format!("/api/v1/repositories/{id}")).await;
        }
        if round % 3 == 0 {
            h.get(&format!("/api/v1/repositories/{}", 10 + round)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.execute("window.scrollTo(0, 0)", vec![]).await;
    let png = c.screenshot().await;
    let dir = plugins::workspace_root().join("target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    assert!(png.len() > 10_000, "a screenshot of a drawn page");
    c.close().await;
    h.stop().await;
}
