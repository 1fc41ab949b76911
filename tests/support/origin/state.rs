//! What the origin remembers between requests: analysis versions, request counts and holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::Method;
use tokio::sync::watch;

use super::OriginConfig;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: OriginConfig,
    pub(crate) started: Instant,
    /// `versions[id - 1]` is repository `id`'s analysis version, starting at 1.
    versions: Vec<AtomicU64>,
    /// `"GET /api/v1/insights"` -> requests served. A std `Mutex`, not a tokio one: it is held
    /// for one map operation and across no await, so it never blocks a runtime thread for long,
    /// and counting must not add an await point (and thus reordering) to the request path.
    counts: Mutex<HashMap<String, u64>>,
    /// Path prefixes currently held. A watch channel lets parked requests sleep until the set
    /// changes instead of polling.
    holds: watch::Sender<BTreeSet<String>>,
    /// How many requests are parked right now, watched by `wait_until_waiting`.
    waiting: watch::Sender<usize>,
    echo_serial: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: OriginConfig) -> Self {
        let versions = (0..config.repositories)
            .map(|_| AtomicU64::new(1))
            .collect();
        Self {
            config,
            started: Instant::now(),
            versions,
            counts: Mutex::new(HashMap::new()),
            holds: watch::Sender::new(BTreeSet::new()),
            waiting: watch::Sender::new(0),
            echo_serial: AtomicU64::new(0),
        }
    }

    pub(crate) fn repositories(&self) -> u64 {
        self.versions.len() as u64
    }

    fn slot(&self, id: u64) -> Option<&AtomicU64> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.versions.get(index)
    }

    pub(crate) fn version(&self, id: u64) -> Option<u64> {
        self.slot(id).map(|version| version.load(Ordering::SeqCst))
    }

    pub(crate) fn reanalyze(&self, id: u64) -> Option<u64> {
        self.slot(id)
            .map(|version| version.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // A panic while holding the lock cannot leave a half-updated count, so keep going.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record(&self, method: &Method, path: &str) {
        *self.counts().entry(key(method.as_str(), path)).or_insert(0) += 1;
    }

    pub(crate) fn count(&self, method: &str, path: &str) -> u64 {
        self.counts().get(&key(method, path)).copied().unwrap_or(0)
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    pub(crate) fn counts_snapshot(&self) -> BTreeMap<String, u64> {
        self.counts()
            .iter()
            .map(|(key, count)| (key.clone(), *count))
            .collect()
    }

    pub(crate) fn reset_counts(&self) {
        self.counts().clear();
    }

    pub(crate) fn hold(&self, prefix: &str) {
        self.holds.send_modify(|held| {
            held.insert(prefix.to_owned());
        });
    }

    pub(crate) fn release(&self, prefix: &str) {
        self.holds.send_modify(|held| {
            held.remove(prefix);
        });
    }

    pub(crate) fn release_all(&self) {
        self.holds.send_modify(BTreeSet::clear);
    }

    pub(crate) fn waiting(&self) -> usize {
        *self.waiting.borrow()
    }

    pub(crate) async fn wait_until_waiting(&self, requests: usize, timeout: Duration) -> bool {
        let mut waiting = self.waiting.subscribe();
        let reached = tokio::time::timeout(timeout, async {
            // The sender lives in `self`, so this only ends when the count is reached.
            let _ = waiting.wait_for(|now| *now >= requests).await;
        });
        reached.await.is_ok()
    }

    /// Parks the (already answered) request while a hold covers `path`. Re-analysis triggers are never held: they
    /// are what a test fires while a fill is parked.
    pub(crate) async fn wait_while_held(&self, path: &str) {
        if path.contains("/actions/") {
            return;
        }
        let mut holds = self.holds.subscribe();
        if !is_held(&holds.borrow_and_update(), path) {
            return;
        }
        let _parked = Parked::new(&self.waiting);
        tracing::debug!(path, "request parked by a hold");
        // `wait_for` checks the current value first, so a release racing with this line is seen.
        // The returned borrow is dropped at once: it must not be held across an await.
        let _ = holds.wait_for(|held| !is_held(held, path)).await;
    }

    pub(crate) fn next_echo_serial(&self) -> u64 {
        self.echo_serial.fetch_add(1, Ordering::SeqCst) + 1
    }
}

fn key(method: &str, path: &str) -> String {
    format!("{} {path}", method.to_ascii_uppercase())
}

fn is_held(held: &BTreeSet<String>, path: &str) -> bool {
    held.iter().any(|prefix| path.starts_with(prefix.as_str()))
}

/// Counts a parked request, and uncounts it when it goes on or when the client gives up (the
/// request future is then dropped mid-wait).
struct Parked<'a>(&'a watch::Sender<usize>);

impl<'a> Parked<'a> {
    fn new(waiting: &'a watch::Sender<usize>) -> Self {
        waiting.send_modify(|now| *now += 1);
        Self(waiting)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|now| *now -= 1);
    }
}
