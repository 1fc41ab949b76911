//! News of finished fills: the subscription to `<prefix>fills`, on which a lease's holder
//! publishes the lease's name when its fill ends (`lease.rs`), and the instances waiting for it.
//!
//! Waiting instances also poll the lease, so this is the fast path only: a message lost while
//! the subscription reconnects costs a waiter one poll interval. The subscription is made when
//! the store starts, on the single Redis or on any cluster node (a cluster broadcasts `PUBLISH`
//! to every node's subscribers), and lives as long as the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::lease::LeaseKey;
use super::{RedisStore, Shared, SubscriptionTargets};

/// The instances' waiters, by lease.
#[derive(Default)]
pub(super) struct Waiting {
    by_lease: Mutex<HashMap<String, Weak<Notify>>>,
}

/// A waiter's registration: woken when the lease's fill is announced.
pub struct FillWatch {
    notify: Arc<Notify>,
}

impl FillWatch {
    /// Resolves when news of the fill arrives after this call, or after `poll`, whichever comes
    /// first. Create it *before* reading the lease: news that arrives between the read and the
    /// wait is not lost.
    pub fn next(&self, poll: Duration) -> impl Future<Output = ()> + '_ {
        let notified = self.notify.notified();
        async move {
            let _ = tokio::time::timeout(poll, notified).await;
        }
    }
}

impl RedisStore {
    /// Registers interest in news of `key`'s fill.
    pub fn watch_fill(&self, key: &LeaseKey) -> FillWatch {
        let mut by_lease = self
            .shared
            .waiting
            .by_lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = by_lease.get(&key.0).and_then(Weak::upgrade) {
            return FillWatch { notify };
        }
        // Forget the leases nobody waits for any more, before the map grows.
        if by_lease.len() >= 64 {
            by_lease.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        by_lease.insert(key.0.clone(), Arc::downgrade(&notify));
        FillWatch { notify }
    }

    /// The channel finished fills are announced on.
    pub(super) fn fills_channel(&self) -> String {
        format!("{}fills", self.shared.prefix)
    }
}

/// Wakes the waiters of the lease named `lease`.
fn announce(shared: &Shared, lease: &str) {
    let notify = shared
        .waiting
        .by_lease
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(lease)
        .and_then(Weak::upgrade);
    if let Some(notify) = notify {
        notify.notify_waiters();
    }
}

/// Follows `channel` for as long as the store exists, reconnecting (to the next node, on a
/// cluster) after a loss.
pub(super) async fn follow(shared: Weak<Shared>, targets: SubscriptionTargets, channel: String) {
    let mut attempt = 0usize;
    let mut pause = Duration::from_millis(200);
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        let urls = targets.urls();
        if let Some(url) = urls.get(attempt % urls.len().max(1)) {
            attempt += 1;
            let subscribed = tokio::time::timeout(Duration::from_secs(2), async {
                let client = redis::Client::open(url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match subscribed {
                Ok(Ok(pubsub)) => {
                    tracing::debug!(%channel, "subscribed to fill news");
                    attempt -= 1;
                    pause = Duration::from_millis(200);
                    let mut messages = pubsub.into_on_message();
                    loop {
                        // Wake now and then to notice a store that is gone.
                        let next =
                            tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
                        let Some(shared) = shared.upgrade() else {
                            return;
                        };
                        match next {
                            Ok(Some(message)) => {
                                if let Ok(lease) = message.get_payload::<String>() {
                                    announce(&shared, &lease);
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {}
                        }
                    }
                    tracing::debug!(%channel, "fill news subscription lost; reconnecting");
                }
                Ok(Err(e)) if pause == Duration::from_millis(200) => {
                    // Logged once per outage. Waiters poll meanwhile, a little later to learn.
                    tracing::warn!(%channel, error = %e, "cannot subscribe to fill news; retrying");
                }
                _ => {}
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
