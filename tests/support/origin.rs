//! The stand-in Source Code Analysis Tool ("SCAT"): the slow REST backend Larder sits in front of.
//!
//! Gateway tests need an origin they can reason about, so this one is deterministic and observable:
//!
//! - **Deterministic answers.** Every analysis body is derived from `(repository id, analysis
//!   version)` with a tiny hash, so the same question gets byte-identical answers until the
//!   repository is re-analysed (`POST .../actions/analyze`), and then a different one. A test can
//!   tell a stale cached body from a fresh one by its `analysis_version`.
//! - **Realistic latency.** Each endpoint family sleeps for a configurable delay
//!   ([`OriginConfig`]); the AI features endpoint is the slow one the gateway exists for.
//! - **Counted requests.** Every request outside `/_origin/*` is counted per method and path
//!   ([`Origin::count`]), so a test can assert "served from cache" as "the origin saw nothing".
//! - **Holds.** [`Origin::hold`] parks answers (after counting the request and producing the
//!   body) until [`Origin::release`], which lets a test re-analyse a repository while a slow
//!   cache fill is still in flight; the parked fill then delivers the pre-re-analysis version.
//! - **No caching headers.** Like the real backend, analysis answers carry no `Cache-Control`:
//!   freshness is the gateway policy's decision. Only `/api/v1/echo` sets caching headers, on
//!   request, for tests of plain HTTP caching.
//!
//! # Endpoints
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | GET | `/api/v1/health` | `{"status": "ok", ...}` |
//! | GET | `/api/v1/repositories?page=&per_page=` | repository list |
//! | GET | `/api/v1/repositories/{id}` | one repository with its `complexity_analysis` |
//! | GET | `/api/v1/repositories/{id}/ai-features` | AI-derived features (slow) |
//! | GET | `/api/v1/repositories/{id}/tech-stack` | tech stack, FTE estimate, complexity scoring |
//! | POST | `/api/v1/repositories/{id}/actions/analyze?feature_type=` | bumps `analysis_version` |
//! | GET | `/api/v1/insights` | aggregates; `insights_version` = sum of all versions |
//! | POST | `/api/v1/embeddings` `{"text": ...}` | 16-dimension vector derived from the text |
//! | GET | `/api/v1/me` | user derived from `Authorization`; 401 without it |
//! | any | `/api/v1/echo?status=&cache_control=&vary=&content_language=&etag=&last_modified=&set_cookie=&body=&delay_ms=` | generic answer for HTTP caching tests |
//! | GET | `/_origin/counts` | `{"GET /api/v1/insights": 3, ...}` (not counted itself) |
//! | POST | `/_origin/reset` | resets the counts (not counted itself) |
//!
//! Errors are JSON: `{"error": {"code": "...", "message": "..."}}`; unknown repository ids are
//! 404, non-numeric ids 400, malformed bodies and query strings 400.
//!
//! # Layout
//!
//! - `state`: what the origin remembers (analysis versions, request counts, holds).
//! - `analysis`: the deterministic generator of analysis bodies.
//! - `routes`: the axum router, the counting/holding middleware and the handlers.

pub mod analysis;
mod routes;
mod state;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use state::Shared;

/// How the stand-in backend behaves: how many repositories it knows and how slow each endpoint
/// family is.
///
/// [`Default`] gives the realistic demo values; tests usually start from [`OriginConfig::fast`]
/// or [`OriginConfig::zero_delay`] and set the one delay they are testing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginConfig {
    /// Repositories `1..=repositories` exist; other ids answer 404.
    pub repositories: u32,
    /// Delay of the repository list and of a single repository.
    pub repository_delay: Duration,
    /// Delay of `/repositories/{id}/tech-stack`.
    pub tech_stack_delay: Duration,
    /// Delay of `/insights`.
    pub insights_delay: Duration,
    /// Delay of `/repositories/{id}/ai-features`, the slow endpoint the gateway exists for.
    pub ai_features_delay: Duration,
    /// Delay of `POST /embeddings`.
    pub embeddings_delay: Duration,
    /// How long `POST .../actions/analyze` works before the new version exists and it answers.
    /// The analysis runs to its end even if the caller hangs up meanwhile, as a real backend's
    /// job does.
    pub analyze_delay: Duration,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            repositories: 50,
            repository_delay: Duration::from_millis(150),
            tech_stack_delay: Duration::from_millis(400),
            insights_delay: Duration::from_millis(600),
            ai_features_delay: Duration::from_millis(1200),
            embeddings_delay: Duration::from_millis(800),
            analyze_delay: Duration::ZERO,
        }
    }
}

impl OriginConfig {
    /// Every endpoint answers at once except AI features, which keeps its realistic 1200 ms: the
    /// shape of a test showing that the gateway hides the slow endpoint.
    pub fn fast() -> Self {
        Self {
            ai_features_delay: Duration::from_millis(1200),
            ..Self::zero_delay()
        }
    }

    /// Every endpoint answers at once.
    pub fn zero_delay() -> Self {
        Self {
            repositories: 50,
            repository_delay: Duration::ZERO,
            tech_stack_delay: Duration::ZERO,
            insights_delay: Duration::ZERO,
            ai_features_delay: Duration::ZERO,
            embeddings_delay: Duration::ZERO,
            analyze_delay: Duration::ZERO,
        }
    }

    /// Sets every delay except the AI features one (the `--delay-ms` of `scat-origin`).
    pub fn with_non_ai_delays(self, delay: Duration) -> Self {
        Self {
            repository_delay: delay,
            tech_stack_delay: delay,
            insights_delay: delay,
            embeddings_delay: delay,
            ..self
        }
    }
}

/// Starts the origin on `listener` and serves it in a background task until
/// [`Origin::shutdown`] or until the returned handle is dropped.
pub async fn spawn(listener: TcpListener, config: OriginConfig) -> Origin {
    let addr = listener
        .local_addr()
        .expect("a bound TcpListener always knows its local address");
    let shared = Arc::new(Shared::new(config));
    let (stop, mut stopped) = watch::channel(false);
    let app = routes::router(Arc::clone(&shared));
    let task = tokio::spawn(async move {
        // `wait_for` also returns when the sender is dropped, so a dropped `Origin` stops too.
        let signal = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::error!(%error, "scat origin stopped serving");
        }
    });
    tracing::debug!(%addr, "scat origin listening");
    Origin {
        addr,
        shared,
        stop,
        task: Some(task),
    }
}

/// A running stand-in backend. Stops (gracefully, in the background) when dropped.
#[derive(Debug)]
pub struct Origin {
    /// The address the origin listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Origin {
    /// Binds `127.0.0.1:0` and starts an origin there: the usual start of a test.
    pub async fn start(config: OriginConfig) -> io::Result<Origin> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Ok(spawn(listener, config).await)
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (a wildcard bind address becomes loopback).
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            ip if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        format!("http://{addr}")
    }

    /// The configuration the origin was started with.
    pub fn config(&self) -> &OriginConfig {
        &self.shared.config
    }

    /// Requests served for exactly this method and path (query string excluded), e.g.
    /// `count("GET", "/api/v1/repositories/7")`. The method is case-insensitive.
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.shared.count(method, path)
    }

    /// Requests served on every method and path (outside `/_origin/*`).
    pub fn total(&self) -> u64 {
        self.shared.total()
    }

    /// Forgets all counts (analysis versions are kept).
    pub fn reset_counts(&self) {
        self.shared.reset_counts();
    }

    /// Parks every request whose path starts with `path_prefix` until [`Origin::release`].
    ///
    /// The request is counted and its answer produced from the state at arrival, then the answer
    /// waits: after a re-analysis, a parked fill delivers the old `analysis_version`. Prefixes are
    /// plain string prefixes (`/api/v1/repositories/1` also holds `/api/v1/repositories/12`).
    /// Re-analysis triggers (paths containing `/actions/`) are never held, so a test can
    /// re-analyse a repository while its fill is parked.
    pub fn hold(&self, path_prefix: &str) {
        self.shared.hold(path_prefix);
    }

    /// Lets the requests parked by `hold(path_prefix)` go on, and stops holding new ones.
    pub fn release(&self, path_prefix: &str) {
        self.shared.release(path_prefix);
    }

    /// Releases every hold.
    pub fn release_all(&self) {
        self.shared.release_all();
    }

    /// How many requests are parked by holds right now.
    pub fn waiting(&self) -> usize {
        self.shared.waiting()
    }

    /// Waits until at least `requests` requests are parked by holds; `false` if that did not
    /// happen within `timeout`.
    pub async fn wait_until_waiting(&self, requests: usize, timeout: Duration) -> bool {
        self.shared.wait_until_waiting(requests, timeout).await
    }

    /// The current analysis version of repository `id` (`None` if it does not exist).
    pub fn analysis_version(&self, id: u64) -> Option<u64> {
        self.shared.version(id)
    }

    /// Re-analyses repository `id` without an HTTP request (not counted); returns the new
    /// version, `None` if the repository does not exist.
    pub fn reanalyze(&self, id: u64) -> Option<u64> {
        self.shared.reanalyze(id)
    }

    /// Stops accepting connections, releases every hold and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "scat origin task failed");
        }
    }

    fn signal_stop(&self) {
        self.stop.send_replace(true);
        // A parked request would otherwise keep graceful shutdown waiting forever.
        self.shared.release_all();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
