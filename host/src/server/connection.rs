//! The listeners' limits on client connections: how many may be open at once, how long
//! one may take to send its first request, and how long it may sit idle.
//!
//! hyper bounds the rest itself: an HTTP/1.1 request's headers (`header_read_timeout`, which it
//! also counts while a keep-alive connection waits for its next request) and HTTP/2 keep-alive
//! pings. What it leaves open is here: hyper-util's protocol detection reads a connection's
//! first bytes with no timeout (a client that connects and sends nothing, or half of the HTTP/2
//! preface, would be held for ever), and an HTTP/2 connection has no idle limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ServerConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP server both listeners use: HTTP/1.1 or HTTP/2 (prior knowledge), hyper's header
/// read timeout and HTTP/2 keep-alive pings.
pub fn http(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive);
    http
}

/// Serves one connection in a task of its own, holding `slot` until it closes: closed at once
/// when no request came within the header read timeout, shut down gracefully when it has been
/// idle for the idle timeout or when `stopping` turns true. `service` must count its requests
/// in `activity` ([`Activity::begin`]); the task holds `stopping` until it ends, so whoever
/// sends on its channel can wait for every connection to close.
pub fn spawn<S, B>(
    http: &auto::Builder<TokioExecutor>,
    tcp: TcpStream,
    slot: Slot,
    activity: Arc<Activity>,
    limits: Limits,
    service: S,
    mut stopping: watch::Receiver<bool>,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let connection = http.serve_connection(TokioIo::new(tcp), service);
    let connection = connection.into_owned();
    tokio::spawn(async move {
        let _slot = slot;
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = stopping.wait_for(|s| *s), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                expiry = activity.expired(&limits), if !closing => match expiry {
                    // Nothing in flight and nothing owed: close at once.
                    Expiry::NoRequest => {
                        tracing::debug!("no request within the header read timeout; closed");
                        break;
                    }
                    Expiry::Idle => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                },
            }
        }
    });
}

/// The client connections open, counted against `server.max_connections`.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    refused: AtomicU64,
    accept_errors: AtomicU64,
}

/// What `/stats` and `/metrics` show of the proxy listener.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConnectionStats {
    /// Client connections open now.
    pub open: usize,
    /// `server.max_connections`.
    pub max: usize,
    /// Connections closed at once because `max` were open.
    pub refused: u64,
    /// Failed accepts (out of file descriptors and the like).
    pub accept_errors: u64,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
        })
    }

    /// A place for a new connection, held until it closes; `None` (and counted) when `max`
    /// are open. Only the accept loop calls it, so the count cannot pass `max` between the
    /// check and the increment (closing connections only lower it).
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        if self.open.load(Ordering::Relaxed) >= self.max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Slot(self.clone()))
    }

    pub fn accept_failed(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.load(Ordering::Relaxed),
            max: self.max,
            refused: self.refused.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
        }
    }
}

/// One open connection's place in [`Connections`]; dropping it frees the place.
#[derive(Debug)]
pub struct Slot(Arc<Connections>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The limits every connection is held to, from `[server]` at start.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_keepalive: Option<Duration>,
}

impl Limits {
    pub fn of(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            http2_keepalive: server.http2_keepalive,
        }
    }
}

/// One connection's requests in flight, and since when it has had none. Atomics, not a
/// `Cell`: the connection's task must be `Send` even on a single-threaded runtime.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Requests started so far.
    started: AtomicU64,
    /// Milliseconds from `opened` to the end of the latest request.
    idle_since_ms: AtomicU64,
}

/// A request in flight on its connection; dropping it (the response's head is ready) ends it.
/// A response body still streaming after that counts as idle time: closing an idle connection
/// is graceful, so that body is still finished.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            let ms = self.0.opened.elapsed().as_millis() as u64;
            self.0.idle_since_ms.store(ms, Ordering::Relaxed);
        }
    }
}

/// Why a connection's time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request within the header read timeout of opening: close it, nothing is in flight.
    NoRequest,
    /// No request in flight for the idle timeout: shut it down gracefully.
    Idle,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Returns when the connection has overrun a limit. Requests come and go without waking
    /// it (that would cost every request), so it looks again at least once per idle timeout:
    /// an idle connection's deadline is an idle timeout after its last request ended, so it
    /// is never passed unseen.
    pub async fn expired(&self, limits: &Limits) -> Expiry {
        loop {
            let now = Instant::now();
            let mut next = now + limits.idle_timeout;
            if self.in_flight.load(Ordering::Relaxed) == 0 {
                let (due, expiry) = if self.started.load(Ordering::Relaxed) == 0 {
                    (self.opened + limits.header_read_timeout, Expiry::NoRequest)
                } else {
                    let idle = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
                    (self.opened + idle + limits.idle_timeout, Expiry::Idle)
                };
                if due <= now {
                    return expiry;
                }
                next = next.min(due);
            }
            tokio::time::sleep_until(next).await;
        }
    }
}

/// Failed accepts in a row: the accept loop waits longer after each, up to a second, and logs
/// the first and the recovery rather than every failure (out of file descriptors, the listener
/// stays readable, and a loop that retried at once would spin and flood the log).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// How long to wait after this failure.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(%error, "accept failed; retrying with backoff until it succeeds");
        }
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(5 << self.failures.min(8)).min(Duration::from_secs(1))
    }

    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// Errors that concern one connection only (it was reset before it was accepted): accept the
/// next at once.
pub fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short real times: the host crate's tests run without tokio's paused clock.
    const LIMITS: Limits = Limits {
        header_read_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(200),
        http2_keepalive: None,
    };

    #[test]
    fn over_the_limit_a_connection_is_refused_and_counted_until_one_closes() {
        let connections = Connections::new(2);
        let a = connections.admit().unwrap();
        let _b = connections.admit().unwrap();
        assert!(connections.admit().is_none());
        let stats = connections.stats();
        assert_eq!((stats.open, stats.refused), (2, 1));
        drop(a);
        let _c = connections.admit().expect("a place freed");
        assert_eq!(connections.stats().open, 2);
    }

    #[tokio::test]
    async fn a_connection_without_a_request_expires_after_the_header_timeout() {
        let activity = Activity::new();
        assert_eq!(activity.expired(&LIMITS).await, Expiry::NoRequest);
        let waited = activity.opened.elapsed();
        assert!(waited >= LIMITS.header_read_timeout && waited < LIMITS.idle_timeout);
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_once_its_requests_have_ended() {
        let activity = Activity::new();
        let request = activity.begin();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(&LIMITS).await }
        });
        tokio::time::sleep(LIMITS.idle_timeout * 2).await;
        assert!(!waiting.is_finished(), "a request in flight is not idle");
        let ended = Instant::now();
        drop(request);
        assert_eq!(waiting.await.unwrap(), Expiry::Idle);
        assert!(ended.elapsed() >= LIMITS.idle_timeout);
    }

    #[test]
    fn backoff_grows_to_a_second() {
        let mut backoff = Backoff::default();
        let error = std::io::Error::other("too many open files");
        let waits: Vec<_> = (0..12).map(|_| backoff.failed(&error)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(waits[11], Duration::from_secs(1));
        backoff.succeeded();
        assert_eq!(backoff.failed(&error), Duration::from_millis(10));
    }
}
