//! The memory tier: a byte-budgeted [`MemoryStore`] (L1) in front of Redis (L2).
//!
//! A hit in L1 costs no Redis round trip. What keeps it correct is invalidation reaching every
//! instance's L1, not only this one's:
//!
//! - **Purges** go to both tiers here, and Redis announces each one on its
//!   `<prefix>invalidations` channel ([`Announcement`]); every instance subscribes
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
//! - **Hearing**: L1 answers only while the subscription was verified within
//!   `cache.memory_tier_trust_ms` (about a second): a heartbeat (`PING` on the subscription
//!   connection) runs four times per window, and the connection has TCP keepalive. A
//!   subscription that died silently, or a Redis that is paused or unreachable, stops L1 from
//!   answering within the window; lookups then go to Redis, or to the upstream.
//!
//! With `cache.memory_tier_outage = "serve"`, L1 keeps answering through an outage instead: hot
//! keys stay served while Redis is down, at the price of serving entries that another
//! instance purged meanwhile until the subscription is back (then L1 is emptied).
//!
//! # Layout
//!
//! - this file: the tier itself, the [`Storage`] operations over L1 and L2;
//! - `subscription.rs`: following the invalidation channel, the heartbeat, and whether L1 can
//!   be trusted now;
//! - `announcement.rs`: the announcement's wire format, written by the Redis store and read
//!   here.

mod announcement;
mod subscription;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use announcement::Announcement;

use self::subscription::Link;
use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::{
    Found, NewEntry, ObjectKey, Standing, Storage, StoreError, StoreHealth, StoreOutcome, TagId,
    TierHealth, now_ms,
};
use crate::config::TierOutage;

pub struct TieredStore {
    l1: Arc<MemoryStore>,
    l2: RedisStore,
    link: Arc<Link>,
    outage: TierOutage,
    /// Lookups that skipped L1 because it could not hear purges.
    bypassed: AtomicU64,
}

impl TieredStore {
    /// The Redis behind the tier (for what only the shared store can do: fill leases).
    pub fn redis(&self) -> &RedisStore {
        &self.l2
    }

    /// Puts a memory tier of `budget` bytes in front of `l2` and subscribes to invalidations,
    /// checking the subscription with a heartbeat four times per `trust` window.
    pub fn start(l2: RedisStore, budget: usize, trust: Duration, outage: TierOutage) -> Self {
        let l1 = Arc::new(MemoryStore::new(budget));
        let link = Arc::new(Link::new(trust));
        tokio::spawn(subscription::subscribe(
            l2.subscription_targets(),
            l2.channel(),
            l2.instance(),
            Arc::downgrade(&l1),
            link.clone(),
        ));
        Self {
            l1,
            l2,
            link,
            outage,
            bypassed: AtomicU64::new(0),
        }
    }

    /// Times the memory tier was emptied after the subscription (re)connected.
    pub fn resets(&self) -> u64 {
        self.link.resets.load(Ordering::Relaxed)
    }

    /// Whether L1 may answer now.
    fn trusted(&self) -> bool {
        self.outage == TierOutage::Serve || self.link.hearing()
    }
}

impl Storage for TieredStore {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        if self.l2.pending().overflowed() {
            // Purges were lost track of: nothing cached may be served until they are made up.
            return Ok(None);
        }
        let trusted = self.trusted();
        let local = if trusted {
            self.l1.lookup(key).await?
        } else {
            self.bypassed.fetch_add(1, Ordering::Relaxed);
            None
        };
        if let Some(found) = &local
            && found.standing == Standing::Current
            && found.entry.meta.ttl_left(now_ms()) > 0
        {
            return Ok(local);
        }
        // An L1 reset (the subscription reconnected) between here and the copy below could
        // be undone by the copy: copy only if none happened.
        let resets = self.resets();
        let found = match self.l2.lookup(key).await {
            Ok(found) => found,
            // Redis down: what L1 has, fresh or stale, is better than nothing.
            Err(e) => return if local.is_some() { Ok(local) } else { Err(e) },
        };
        if let Some(f) = &found
            && f.standing == Standing::Current
            && trusted
            && self.resets() == resets
        {
            let copy = NewEntry {
                status: f.entry.status,
                headers: f.entry.headers.clone(),
                body: f.entry.body.clone(),
                meta: f.entry.meta,
                tags: f.entry.tags.iter().map(|(tag, _)| *tag).collect(),
                lease: None,
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

    /// Counts what Redis counted: it holds every instance's entries, L1 only copies. L1 is
    /// purged first and always; Redis's purge may be kept pending ([`super::pending`]).
    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        self.l1.purge(tags, soft).await?;
        self.l2.purge(tags, soft).await
    }

    fn health(&self) -> StoreHealth {
        let (entries, bytes) = self.l1.usage();
        let verified = self.link.verified_at_ms.load(Ordering::Relaxed);
        StoreHealth {
            memory_tier: Some(TierHealth {
                entries,
                bytes,
                budget: self.l1.budget(),
                subscribed: self.link.subscribed.load(Ordering::Relaxed),
                hearing: self.link.hearing(),
                verified_ms_ago: (verified != 0).then(|| now_ms().saturating_sub(verified)),
                bypassed: self.bypassed.load(Ordering::Relaxed),
                emptied: self.resets(),
            }),
            ..self.l2.health()
        }
    }
}
