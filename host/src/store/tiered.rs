//! The memory tier: a byte-budgeted [`MemoryStore`] (L1) in front of Redis (L2).
//!
//! A hit in L1 costs no Redis round trip. What keeps it correct is invalidation reaching every
//! instance's L1, not only this one's:
//!
//! - **Purges** go to both tiers here, and Redis announces each one on its
//!   `<prefix>invalidations` channel ([`super::redis::Announcement`]); every instance subscribes
//!   and applies the announcements of the others to its own L1 within milliseconds.
//! - **Missed announcements**: when the subscription is (re)established, L1 is emptied, since
//!   announcements made while it was down are lost (pub/sub does not queue). So an instance cut
//!   off from Redis while others purged starts again from Redis, which has the truth.
//! - **Fills** are stored in L2 first and copied to L1 unless L2 refused them as overtaken by a
//!   purge; an entry read from L2 is copied to L1 with its original fill time, so a purge that
//!   arrived in between refuses the copy (the memory store's no-resurrection rule).
//! - **Freshness**: an L1 entry lives no longer than its own freshness and stale windows; a
//!   stale one is looked up in L2 too, since another instance may have refreshed it.
//!
//! While Redis is down, L1 keeps serving what it has and stores new fills, so a Redis outage
//! does not empty the cache of hot keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use super::memory::MemoryStore;
use super::redis::{Announcement, RedisStore, SubscriptionTargets};
use super::{
    Found, NewEntry, ObjectKey, Standing, Storage, StoreError, StoreHealth, StoreOutcome, TagId,
    TierHealth, now_ms,
};

pub struct TieredStore {
    l1: Arc<MemoryStore>,
    l2: RedisStore,
    /// Times L1 was emptied because the invalidation subscription (re)connected.
    resets: Arc<AtomicU64>,
    subscribed: Arc<AtomicBool>,
}

impl TieredStore {
    /// Puts a memory tier of `budget` bytes in front of `l2` and subscribes to invalidations.
    pub fn start(l2: RedisStore, budget: usize) -> Self {
        let l1 = Arc::new(MemoryStore::new(budget));
        let resets = Arc::new(AtomicU64::new(0));
        let subscribed = Arc::new(AtomicBool::new(false));
        tokio::spawn(subscribe(
            l2.subscription_targets(),
            l2.channel(),
            l2.instance(),
            Arc::downgrade(&l1),
            resets.clone(),
            subscribed.clone(),
        ));
        Self {
            l1,
            l2,
            resets,
            subscribed,
        }
    }

    /// Times the memory tier was emptied after the subscription (re)connected.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

/// Follows the invalidation channel for as long as the tier exists, reconnecting after a loss
/// and emptying the tier each time it is subscribed again. On a Redis Cluster any node will do,
/// since `PUBLISH` reaches the subscribers of every node: a lost subscription moves on to the
/// next node.
async fn subscribe(
    targets: SubscriptionTargets,
    channel: String,
    me: u64,
    l1: std::sync::Weak<MemoryStore>,
    resets: Arc<AtomicU64>,
    subscribed: Arc<AtomicBool>,
) {
    let mut logged_down = false;
    let mut attempt = 0usize;
    loop {
        if l1.strong_count() == 0 {
            return;
        }
        let urls = targets.urls();
        let Some(url) = urls.get(attempt % urls.len().max(1)).cloned() else {
            return;
        };
        attempt += 1;
        let connected = tokio::time::timeout(Duration::from_secs(2), async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(mut pubsub)) => {
                let Some(tier) = l1.upgrade() else { return };
                tier.clear();
                drop(tier);
                resets.fetch_add(1, Ordering::Relaxed);
                subscribed.store(true, Ordering::Relaxed);
                tracing::info!(%channel, node = %super::cluster::redact(&url), "subscribed to invalidations; memory tier emptied");
                logged_down = false;
                // Reconnect to the same node first.
                attempt -= 1;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Some(tier) = l1.upgrade() else { return };
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    tracing::debug!(%text, "invalidation announcement");
                    match Announcement::decode(&text) {
                        Some(a) if a.instance != me => {
                            let _ = tier.purge(&a.tags, a.soft).await;
                        }
                        Some(_) => {}
                        None => tracing::warn!(%text, "unreadable invalidation announcement"),
                    }
                }
                subscribed.store(false, Ordering::Relaxed);
                tracing::warn!("invalidation subscription lost; reconnecting");
            }
            Ok(Err(e)) if !logged_down => {
                tracing::warn!(error = %e, "cannot subscribe to invalidations; retrying");
                logged_down = true;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Storage for TieredStore {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        let local = self.l1.lookup(key).await?;
        if let Some(found) = &local
            && found.standing == Standing::Current
            && found.entry.meta.ttl_left(now_ms()) > 0
        {
            return Ok(local);
        }
        let found = match self.l2.lookup(key).await {
            Ok(found) => found,
            // Redis down: what L1 has, fresh or stale, is better than nothing.
            Err(e) => return if local.is_some() { Ok(local) } else { Err(e) },
        };
        if let Some(f) = &found
            && f.standing == Standing::Current
        {
            let copy = NewEntry {
                status: f.entry.status,
                headers: f.entry.headers.clone(),
                body: f.entry.body.clone(),
                meta: f.entry.meta,
                tags: f.entry.tags.iter().map(|(tag, _)| *tag).collect(),
            };
            let _ = self.l1.store(key, copy).await;
        }
        Ok(found)
    }

    async fn store(&self, key: &ObjectKey, entry: NewEntry) -> Result<StoreOutcome, StoreError> {
        let outcome = self.l2.store(key, entry.clone()).await;
        if !matches!(outcome, Ok(StoreOutcome::PurgedDuringFill)) {
            let _ = self.l1.store(key, entry).await;
        }
        outcome
    }

    /// Counts what Redis counted: it holds every instance's entries, L1 only copies.
    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        self.l1.purge(tags, soft).await?;
        self.l2.purge(tags, soft).await
    }

    fn health(&self) -> StoreHealth {
        let (entries, bytes) = self.l1.usage();
        StoreHealth {
            memory_tier: Some(TierHealth {
                entries,
                bytes,
                budget: self.l1.budget(),
                subscribed: self.subscribed.load(Ordering::Relaxed),
                emptied: self.resets(),
            }),
            ..self.l2.health()
        }
    }
}
