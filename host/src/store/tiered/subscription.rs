//! The memory tier's ear: the subscription to `<prefix>invalidations`, and whether L1 can be
//! trusted now.
//!
//! L1 may answer only while a purge made anywhere would have reached it. Pub/sub does not queue,
//! so a subscription that died silently would let L1 serve what other instances purged: a
//! heartbeat on the subscription itself proves, four times per trust window, that it still
//! hears, and L1 is emptied each time it subscribes again. Each announcement is applied, then
//! acknowledged, so the purging instance can wait for every tier before it answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use super::Announcement;
use crate::store::memory::MemoryStore;
use crate::store::redis::SubscriptionTargets;
use crate::store::{Storage, now_ms};

/// The state of the invalidation subscription, shared with the task that follows it.
pub(super) struct Link {
    /// Times L1 was emptied because the invalidation subscription (re)connected.
    pub(super) resets: AtomicU64,
    pub(super) subscribed: AtomicBool,
    /// When the subscription was last verified (ms since the epoch; 0: never).
    pub(super) verified_at_ms: AtomicU64,
    /// How recent a verification must be for L1 to be trusted.
    trust_ms: u64,
}

impl Link {
    /// Not subscribed yet: L1 is not trusted until the first heartbeat within `trust`.
    pub(super) fn new(trust: Duration) -> Self {
        Self {
            resets: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            verified_at_ms: AtomicU64::new(0),
            trust_ms: trust.as_millis() as u64,
        }
    }

    /// Whether a purge made anywhere would have reached L1 by now: the subscription answered a
    /// heartbeat within the trust window. Read on every lookup: two relaxed loads and the clock.
    pub(super) fn hearing(&self) -> bool {
        let at = self.verified_at_ms.load(Ordering::Relaxed);
        at != 0 && now_ms().saturating_sub(at) <= self.trust_ms
    }

    fn verified(&self) {
        self.verified_at_ms.store(now_ms(), Ordering::Relaxed);
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
pub(super) async fn subscribe(
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
                tracing::info!(%channel, node = %crate::store::cluster::redact(&url), "subscribed to invalidations; memory tier emptied");
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
