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
//! - **Hearing**: L1 answers only while the subscription was verified within
//!   `cache.memory_tier_trust_ms` (about a second): a heartbeat (`PING` on the subscription
//!   connection) runs four times per window, and the connection has TCP keepalive. A
//!   subscription that died silently, or a Redis that is paused or unreachable, stops L1 from
//!   answering within the window; lookups then go to Redis, or to the upstream.
//!
//! With `cache.memory_tier_outage = "serve"`, L1 keeps answering through an outage instead: hot
//! keys stay served while Redis is down, at the price of serving entries that another
//! instance purged meanwhile until the subscription is back (then L1 is emptied).

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
use crate::config::TierOutage;

pub struct TieredStore {
    l1: Arc<MemoryStore>,
    l2: RedisStore,
    link: Arc<Link>,
    outage: TierOutage,
    /// Lookups that skipped L1 because it could not hear purges.
    bypassed: AtomicU64,
}

/// The state of the invalidation subscription, shared with the task that follows it.
struct Link {
    /// Times L1 was emptied because the invalidation subscription (re)connected.
    resets: AtomicU64,
    subscribed: AtomicBool,
    /// When the subscription was last verified (ms since the epoch; 0: never).
    verified_at_ms: AtomicU64,
    /// How recent a verification must be for L1 to be trusted.
    trust_ms: u64,
}

impl Link {
    /// Whether a purge made anywhere would have reached L1 by now: the subscription answered a
    /// heartbeat within the trust window. Read on every lookup: two relaxed loads and the clock.
    fn hearing(&self) -> bool {
        let at = self.verified_at_ms.load(Ordering::Relaxed);
        at != 0 && now_ms().saturating_sub(at) <= self.trust_ms
    }

    fn verified(&self) {
        self.verified_at_ms.store(now_ms(), Ordering::Relaxed);
    }
}

impl TieredStore {
    /// Puts a memory tier of `budget` bytes in front of `l2` and subscribes to invalidations,
    /// checking the subscription with a heartbeat four times per `trust` window.
    pub fn start(l2: RedisStore, budget: usize, trust: Duration, outage: TierOutage) -> Self {
        let l1 = Arc::new(MemoryStore::new(budget));
        let link = Arc::new(Link {
            resets: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            verified_at_ms: AtomicU64::new(0),
            trust_ms: trust.as_millis() as u64,
        });
        tokio::spawn(subscribe(
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

/// How the subscription's TCP connection notices a peer that vanished without closing it (a
/// NAT or load balancer dropping an idle connection): keepalive probes after 5 s of silence,
/// and unacknowledged data abandoned after `trust` (the heartbeat notices first).
fn subscription_tcp(trust: Duration) -> redis::io::tcp::TcpSettings {
    use redis::io::tcp::socket2::TcpKeepalive;
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(
            TcpKeepalive::new()
                .with_time(Duration::from_secs(5))
                .with_interval(Duration::from_secs(1))
                .with_retries(3),
        )
        .set_user_timeout(trust.max(Duration::from_secs(1)))
}

/// Follows the invalidation channel for as long as the tier exists, reconnecting after a loss
/// and emptying the tier each time it is subscribed again. A heartbeat (`PING` on the
/// subscription itself) every quarter of the trust window verifies that it still hears: one
/// unanswered within half the window counts as a loss. On a Redis Cluster any node will do,
/// since `PUBLISH` reaches the subscribers of every node: a lost subscription moves on to the
/// next node.
async fn subscribe(
    targets: SubscriptionTargets,
    channel: String,
    me: u64,
    l1: std::sync::Weak<MemoryStore>,
    link: Arc<Link>,
) {
    let trust = Duration::from_millis(link.trust_ms);
    let beat = trust / 4;
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
        let connected = tokio::time::timeout(trust.max(Duration::from_secs(1)), async {
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?
                .set_tcp_settings(subscription_tcp(trust));
            let client = redis::Client::open(info)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                let Some(tier) = l1.upgrade() else { return };
                // Announcements made while unsubscribed are lost: start again from Redis.
                link.resets.fetch_add(1, Ordering::Relaxed);
                tier.clear();
                drop(tier);
                link.subscribed.store(true, Ordering::Relaxed);
                link.verified();
                tracing::info!(%channel, node = %super::cluster::redact(&url), "subscribed to invalidations; memory tier emptied");
                logged_down = false;
                // Reconnect to the same node first.
                attempt -= 1;
                let lost = follow(pubsub, me, &targets, &l1, &link, beat).await;
                link.subscribed.store(false, Ordering::Relaxed);
                // Known lost: stop trusting the tier now, not at the end of the window.
                link.verified_at_ms.store(0, Ordering::Relaxed);
                match lost {
                    None => return,
                    Some(why) => {
                        tracing::warn!(why, "invalidation subscription lost; reconnecting")
                    }
                }
            }
            Ok(Err(e)) if !logged_down => {
                tracing::warn!(error = %e, "cannot subscribe to invalidations; retrying");
                logged_down = true;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies announcements and sends heartbeats until the subscription is lost (`Some(why)`) or
/// the tier is gone (`None`).
async fn follow(
    pubsub: redis::aio::PubSub,
    me: u64,
    targets: &SubscriptionTargets,
    l1: &std::sync::Weak<MemoryStore>,
    link: &Link,
    beat: Duration,
) -> Option<&'static str> {
    let (mut sink, mut messages) = pubsub.split();
    let mut heartbeat = tokio::time::interval(beat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Some("connection closed");
                };
                let tier = l1.upgrade()?;
                let Ok(text) = message.get_payload::<String>() else {
                    continue;
                };
                tracing::debug!(%text, "invalidation announcement");
                let Some(a) = Announcement::decode(&text) else {
                    tracing::warn!(%text, "unreadable invalidation announcement");
                    continue;
                };
                // This instance's own purges reached its tier before they were announced.
                if a.instance != me {
                    if a.flush {
                        tier.clear();
                    } else {
                        let _ = tier.purge(&a.tags, a.soft).await;
                    }
                }
                if a.ack != 0 {
                    targets.acknowledge(a.ack, me);
                }
            }
            _ = heartbeat.tick() => {
                l1.upgrade()?;
                match tokio::time::timeout(beat * 2, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => link.verified(),
                    Ok(Err(_)) => return Some("heartbeat failed"),
                    Err(_) => return Some("heartbeat unanswered"),
                }
            }
        }
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
