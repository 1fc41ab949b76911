//! The breaker: how a failing Redis (or one failing cluster master) costs at most one timeout.
//!
//! Redis is an accelerator, never a dependency of an answer. Every operation runs under the
//! store's timeout ([`RedisStore::guarded`]); a failure opens the breaker of the Redis (or the
//! master) that failed, and while it is open lookups and stores skip it and go to the upstream
//! uncached. Once a second one request probes, so a hung Redis costs one timeout per second, not
//! one per request. Purges never ask the breaker (see `purge.rs`): a purge is never skipped.
//!
//! A single Redis has one breaker. A cluster has one per master ([`Node`], kept in the slot map
//! by `connect.rs`), plus the shared one for connecting and for what no node can be blamed for:
//! a failed master costs the requests that need it, not the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::RedisStore;
use crate::store::cluster::NodeAddr;
use crate::store::{StoreError, now_ms};

/// How long Redis is skipped after a failure before one request probes it again.
const BREAKER_OPEN_MS: u64 = 1_000;

/// A persisting error is logged again at most this often.
const LOG_INTERVAL_MS: u64 = 60_000;

/// A cluster master and its breaker.
pub(super) struct Node {
    pub(super) addr: NodeAddr,
    pub(super) breaker: Breaker,
}

/// Skips Redis (or one cluster node) for a moment after a failure.
pub(super) struct Breaker {
    /// 0 when closed; else Redis is skipped until this time (ms since the epoch).
    open_until_ms: AtomicU64,
    failing: AtomicBool,
    /// Last error, for `/health` and for logging once per change.
    last_error: std::sync::Mutex<Option<String>>,
    /// When the current error was last logged (ms since the epoch).
    logged_at_ms: AtomicU64,
    /// The node's address in logs (`None` for a single Redis).
    name: Option<String>,
}

/// The breaker an operation answers to: the single Redis's, or the node's serving its key.
pub(super) enum Gate<'a> {
    Shared(&'a Breaker),
    Node(Arc<Node>),
}

impl std::ops::Deref for Gate<'_> {
    type Target = Breaker;
    fn deref(&self) -> &Breaker {
        match self {
            Gate::Shared(b) => b,
            Gate::Node(n) => &n.breaker,
        }
    }
}

impl RedisStore {
    /// The breaker for an operation on `key`.
    pub(super) fn gate(&self, key: &str) -> Gate<'_> {
        if !self.cluster() {
            return Gate::Shared(&self.shared.breaker);
        }
        match self.shared.topology.load().node_for(key.as_bytes()) {
            Some(node) => Gate::Node(node.clone()),
            None => Gate::Shared(&self.shared.breaker),
        }
    }

    /// Runs `op` with the timeout, feeding `gate`'s breaker.
    pub(super) async fn guarded<T>(
        &self,
        gate: &Breaker,
        op: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.shared.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(self.shared.timeout)),
        };
        match &result {
            Ok(_) => gate.recovered(),
            Err(e) => self.shared.failed(gate, e),
        }
        result
    }
}

impl Breaker {
    pub(super) fn new(name: Option<String>, error: Option<String>) -> Self {
        Self {
            open_until_ms: AtomicU64::new(0),
            failing: AtomicBool::new(error.is_some()),
            last_error: std::sync::Mutex::new(error),
            logged_at_ms: AtomicU64::new(0),
            name,
        }
    }

    /// Opens the breaker after `e`, the `errors`th failure since start, and logs it (once per
    /// change of error, and once a minute while it persists).
    pub(super) fn failed(&self, e: &StoreError, errors: u64) {
        let now = now_ms();
        self.open_until_ms
            .store(now + BREAKER_OPEN_MS, Ordering::Relaxed);
        let mut msg = e.to_string();
        // A pipeline repeats its error once per command: keep the message readable.
        if msg.len() > 240 {
            let mut cut = 240;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push_str("...");
        }
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        // Log once per change of error, and once a minute while it persists; not once per
        // request.
        let changed = !self.failing.swap(true, Ordering::Relaxed) || last.as_deref() != Some(&msg);
        if changed || now >= self.logged_at_ms.load(Ordering::Relaxed) + LOG_INTERVAL_MS {
            self.logged_at_ms.store(now, Ordering::Relaxed);
            match &self.name {
                None => tracing::warn!(
                    error = %msg,
                    errors,
                    "redis failing; requests go to the upstream uncached"
                ),
                Some(node) => tracing::warn!(
                    %node,
                    error = %msg,
                    errors,
                    "redis cluster node failing; requests for its slots go to the upstream uncached"
                ),
            }
        }
        *last = Some(msg);
    }

    /// Called after every successful operation: while Redis is healthy it costs one relaxed
    /// load, no write to a shared cache line.
    pub(super) fn recovered(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            self.open_until_ms.store(0, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            match &self.name {
                None => tracing::info!("redis answering; caching on"),
                Some(node) => tracing::info!(%node, "redis cluster node answering"),
            }
        }
    }

    /// The breaker. Closed (0): every request uses Redis. Open: none does until the window
    /// ends; then exactly one request probes (it wins the compare-exchange that opens the next
    /// window), so a hung Redis costs one timeout per window, not one per request.
    pub(super) fn admit(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = now_ms();
        now >= until
            && self
                .open_until_ms
                .compare_exchange(
                    until,
                    now + BREAKER_OPEN_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether the last operation through this breaker failed.
    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// The last error, while failing: for `/health`.
    pub(super) fn error(&self) -> Option<String> {
        self.last_error.lock().map(|l| l.clone()).unwrap_or(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_opens_the_breaker_and_a_success_closes_it() {
        let breaker = Breaker::new(None, None);
        assert!(breaker.admit() && !breaker.failing() && breaker.error().is_none());
        breaker.failed(&StoreError::Unavailable("connection refused"), 1);
        assert!(breaker.failing());
        assert!(breaker.error().unwrap().contains("connection refused"));
        // Open for a second: no request uses Redis meanwhile.
        assert!(!breaker.admit());
        assert!(!breaker.admit());
        breaker.recovered();
        assert!(breaker.admit() && !breaker.failing() && breaker.error().is_none());
    }

    #[test]
    fn after_the_open_window_exactly_one_request_probes() {
        let breaker = Breaker::new(None, None);
        breaker.failed(&StoreError::Unavailable("timed out"), 1);
        // As if the window had just ended.
        breaker.open_until_ms.store(now_ms() - 1, Ordering::Relaxed);
        let admitted = (0..10).filter(|_| breaker.admit()).count();
        assert_eq!(admitted, 1);
    }

    #[test]
    fn a_long_error_is_cut_to_a_readable_length_on_a_character_boundary() {
        // Three-byte characters after 0, 1 and 2 bytes of ASCII: one of the three puts byte
        // 240 inside a character.
        for lead in ["", "x", "xy"] {
            let long: &'static str =
                Box::leak(format!("{lead}{}", "€".repeat(200)).into_boxed_str());
            let breaker = Breaker::new(Some("127.0.0.1:7000".into()), None);
            breaker.failed(&StoreError::Unavailable(long), 3);
            let kept = breaker.error().unwrap();
            let full = StoreError::Unavailable(long).to_string();
            let cut = kept.strip_suffix("...").expect("marked as cut");
            assert!(cut.len() <= 240 && cut.len() > 236, "{} bytes", cut.len());
            assert!(full.starts_with(cut), "{kept}");
        }
    }
}
