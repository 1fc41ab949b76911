//! A gateway as a real OS process: the `larder` binary built by `cargo xtask build`
//! (`target/release/larder`), started with `larder serve --config FILE` the way a deployment
//! starts it, and killed when dropped.
//!
//! Tests that need several instances which can die independently (a kill is a real SIGKILL, each
//! instance has its own memory tier and its own connections to Redis) use this rather than
//! [`crate::gateway::Harness`], which runs the gateway inside the test process.
//!
//! The binary is not rebuilt here: building it from inside `cargo test` would wait on the lock
//! that the running `cargo test` holds on `target/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::gateway::{ADMIN_TOKEN, install_example_plugins};
use crate::http::Reply;
use crate::plugins::workspace_root;

/// How long a gateway may take from spawn to answering `/health` (it compiles its plugins
/// first; two cores may be busy with other tests).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `larder serve` process with its own temp dir (config, plugin directory, log).
pub struct GatewayProcess {
    child: Option<Child>,
    /// The child's process id.
    pub pid: u32,
    /// A name for messages (`"gateway A"`).
    pub name: String,
    /// The proxy port.
    pub port: u16,
    /// The admin port (`/health`, purges).
    pub admin_port: u16,
    dir: tempfile::TempDir,
}

/// The `larder` binary that `cargo xtask build` builds: the one in the target directory of the
/// running test executable (`target/release/larder`; under `cargo xtask coverage`, the
/// instrumented one of its own target directory), else `target/release/larder`.
///
/// Checked once per process to be newer than every source it is built from: a test must not
/// pass or fail on a gateway built before the change it tests.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            // The test executable is `<target>/<profile>/deps/<name>-<hash>`.
            let beside = std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.parent()?.join("larder")));
            let bin = beside
                .filter(|b| b.exists())
                .unwrap_or_else(|| workspace_root().join("target/release/larder"));
            assert_fresh(&bin);
            bin
        })
        .clone()
}

/// Panics unless `bin` exists and is newer than the gateway's sources.
fn assert_fresh(bin: &Path) {
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo xtask build` first",
                bin.display()
            )
        });
    let root = workspace_root();
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = [
        "host/src",
        "host/bindings",
        "wit",
        "host/Cargo.toml",
        "Cargo.lock",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        } else if let Ok(modified) = meta.modified()
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            newest = Some((modified, path));
        }
    }
    if let Some((modified, source)) = newest {
        assert!(
            modified <= built,
            "{} is older than {}: run `cargo xtask build` (or `cargo build --release -p larder`) first",
            bin.display(),
            source.display()
        );
    }
}

impl GatewayProcess {
    /// Writes `config` to `<dir>/larder.toml` and runs `larder serve` on it, with the example
    /// plugins in `<dir>/plugins`. In `config`, `{dir}` stands for the process's own temp dir
    /// (for a state directory, say). Ports, upstream, Redis, plugin directory and admin token come
    /// from the environment overrides a deployment uses (`LARDER_LISTEN`, `LARDER_ADMIN_LISTEN`,
    /// `LARDER_UPSTREAM`, `REDIS_URL`, `LARDER_PLUGIN_DIR`, `LARDER_ADMIN_TOKEN`). Stdout and
    /// stderr go to `<dir>/larder.log`; `LARDER_TEST_LOG` sets the process's `LARDER_LOG`.
    ///
    /// Returns once `GET /health` on the admin port answers 200.
    pub async fn start(name: &str, config: &str, upstream: &str, redis_url: &str) -> Self {
        let filter = std::env::var("LARDER_TEST_LOG").unwrap_or_else(|_| "info".into());
        Self::launch(name, config, upstream, redis_url, &filter, false).await
    }

    /// [`GatewayProcess::start`], with `LARDER_LOG` set to `filter` and the log in JSON lines
    /// (`LARDER_LOG_FORMAT=json`), for tests of what the log says.
    pub async fn start_logging(
        name: &str,
        config: &str,
        upstream: &str,
        redis_url: &str,
        filter: &str,
    ) -> Self {
        Self::launch(name, config, upstream, redis_url, filter, true).await
    }

    async fn launch(
        name: &str,
        config: &str,
        upstream: &str,
        redis_url: &str,
        filter: &str,
        json: bool,
    ) -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir(&plugin_dir).expect("plugin dir");
        install_example_plugins(&plugin_dir);
        let text = config.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(config_path(dir.path()), text).expect("write config");

        // A port free a moment ago can be taken before the child binds it: try others.
        let mut last_log = String::new();
        for _ in 0..5 {
            let (port, admin_port) = (crate::free_port(), crate::free_port());
            let child = spawn(
                dir.path(),
                &plugin_dir,
                port,
                admin_port,
                upstream,
                redis_url,
                (filter, json),
            );
            let mut process = GatewayProcess {
                pid: child.id(),
                child: Some(child),
                name: name.to_owned(),
                port,
                admin_port,
                dir,
            };
            if process.wait_until_healthy().await {
                return process;
            }
            last_log = process.log();
            // The child exited (kill() reaps it); its temp dir is reused for the next try.
            process.kill();
            dir = std::mem::replace(&mut process.dir, tempfile::tempdir().expect("temp dir"));
        }
        panic!("{name} did not start on any of 5 port pairs; its last log:\n{last_log}");
    }

    /// Polls `/health` until it answers 200 (true) or the child exits (false); panics with the
    /// log when neither happens within [`START_TIMEOUT`].
    async fn wait_until_healthy(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(reply) = request("GET", &self.admin("/health"), Duration::from_secs(1)).await
                && reply.status == 200
            {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer /health within {START_TIMEOUT:?}; its log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `http://127.0.0.1:<admin port><path>`.
    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// `/health` as JSON; `None` when it does not answer within a second.
    pub async fn health(&self) -> Option<serde_json::Value> {
        let reply = request("GET", &self.admin("/health"), Duration::from_secs(1))
            .await
            .ok()?;
        serde_json::from_slice(&reply.body).ok()
    }

    /// The process's temp dir (config, plugins, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default()
    }

    /// Kills the process (SIGKILL: as abrupt as a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl GatewayProcess {
    /// Ends the process as an operator would (SIGTERM) and waits up to 10 s for its graceful
    /// exit (about 2 s), then kills it. An instrumented build writes its coverage profile only on such an
    /// exit, so what a process test ran counts in `cargo xtask coverage`.
    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.kill();
        } else {
            self.terminate();
        }
        // The temp dir goes with us: keep the log of a failed test in `target/artifacts/`, and
        // show its end.
        if std::thread::panicking() {
            let log = self.log();
            let kept = workspace_root().join("target/artifacts").join(format!(
                "{}-{}.log",
                self.name.replace(' ', "-"),
                self.pid
            ));
            let saved = std::fs::create_dir_all(kept.parent().unwrap_or(Path::new(".")))
                .and_then(|()| std::fs::write(&kept, &log));
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            eprintln!(
                "--- last lines of {} (pid {}; whole log {}) ---\n{}",
                self.name,
                self.pid,
                match saved {
                    Ok(()) => kept.display().to_string(),
                    Err(e) => format!("not kept: {e}"),
                },
                tail.join("\n")
            );
        }
    }
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("larder.toml")
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("larder.log")
}

fn spawn(
    dir: &Path,
    plugin_dir: &Path,
    port: u16,
    admin_port: u16,
    upstream: &str,
    redis_url: &str,
    (log_filter, json): (&str, bool),
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir))
        .expect("open log");
    let log_err = log.try_clone().expect("clone log handle");
    let mut cmd = Command::new(binary());
    cmd.arg("serve")
        .arg("--config")
        .arg(config_path(dir))
        .current_dir(dir)
        // Only what this test sets: the developer's shell may export any of these.
        .env_remove("LARDER_CONFIG")
        .env_remove("LARDER_LOG_FORMAT")
        .env("LARDER_LISTEN", format!("127.0.0.1:{port}"))
        .env("LARDER_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("LARDER_UPSTREAM", upstream)
        .env("REDIS_URL", redis_url)
        .env("LARDER_PLUGIN_DIR", plugin_dir)
        .env("LARDER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LARDER_LOG", log_filter)
        // Plain text in the log file.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if json {
        cmd.env("LARDER_LOG_FORMAT", "json");
    }
    cmd.spawn().expect("spawn larder")
}

/// Sends `sig` (`-STOP`, `-CONT`, ...) to `child` with kill(1): a test's fault, applied to a
/// real process. Panics when the signal cannot be sent.
pub fn signal(child: &Child, sig: &str) {
    let pid = child.id().to_string();
    let ok = Command::new("kill")
        .args([sig, &pid])
        .status()
        .map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "kill {sig} {pid}");
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// Sends a bodiless request and reads the reply whole within `timeout`. Unlike
/// [`crate::http::send`], a refused or dropped connection is an `Err`, not a panic: processes
/// under test die and hang on purpose.
pub async fn request(method: &str, url: &str, timeout: Duration) -> Result<Reply, String> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad request: {e}"))?;
    let exchange = async {
        let resp = client().request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}
