//! Purges: replace the tags' tokens, announce it to every instance, wait until every memory tier
//! has it.
//!
//! A purge is the one operation Redis is a dependency of: the breaker never refuses one, and
//! one that Redis does not acknowledge (the tokens or the announcement) is kept pending
//! (`drain.rs`, [`crate::store::pending`]). Once [`RedisStore::purge_acknowledged`] returns Ok,
//! nothing purged is served anywhere: Redis holds the new tokens, and every memory tier has
//! acknowledged the announcement or has stopped answering (see `docs/invalidation.md`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::breaker::Gate;
use super::{PURGE_MARKER_TTL_SECS, RedisStore};
use crate::store::StoreError;
use crate::store::cluster::Conn;
use crate::store::key::TagId;
use crate::store::tiered::Announcement;

impl RedisStore {
    /// Replaces `tags`' tokens and announces it; Ok only when Redis took both. The breaker is
    /// not asked: a purge is never skipped.
    pub(super) async fn purge_acknowledged(
        &self,
        tags: &[TagId],
        soft: bool,
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut affected = 0u64;
        for tag in tags {
            // The token and the counter: one slot (a hash tag) in a cluster.
            let tag_key = self.tag_key(tag);
            let gate = self.gate(&tag_key);
            let mut conn = self.conn_unguarded()?;
            let mut invocation = self.purge_script.key(tag_key);
            invocation
                .key(self.count_key(tag))
                .arg(now)
                .arg(if soft { "1" } else { "0" })
                .arg(format!("{:x}", rand::random::<u64>()))
                .arg(PURGE_MARKER_TTL_SECS)
                .arg(format!("{:x}", rand::random::<u64>()));
            let n: i64 = self
                .guarded(&gate, invocation.invoke_async(&mut conn))
                .await?;
            affected += n.max(0) as u64;
        }
        self.shared.known.forget(tags);
        // Tell every instance, for its in-process state. The purge above is what makes the
        // entries invalid in Redis; an announcement that Redis did not take keeps the purge
        // pending, so it is made and announced again.
        self.announce(soft, tags.to_vec(), false).await?;
        Ok(affected)
    }

    /// Announces a purge of `tags` (or, with `flush`, of everything) to every instance's memory
    /// tier, and waits until they have applied it ([`RedisStore::await_acks`]).
    pub(super) async fn announce(
        &self,
        soft: bool,
        tags: Vec<TagId>,
        flush: bool,
    ) -> Result<(), StoreError> {
        let announcement = Announcement {
            instance: self.instance,
            soft,
            tags,
            flush,
            ack: rand::random::<u64>() | 1,
        };
        let receivers = self.publish(announcement.encode()).await?;
        self.await_acks(announcement.ack, receivers).await;
        Ok(())
    }

    /// Publishes `message` on the invalidation channel; answers how many subscribers got it.
    /// On a cluster any node will do (PUBLISH reaches every node's subscribers), so it goes to
    /// the first node whose breaker is closed.
    async fn publish(&self, message: String) -> Result<u64, StoreError> {
        let channel = self.channel();
        if !self.cluster() {
            let gate = Gate::Shared(&self.shared.breaker);
            let mut conn = self.conn_unguarded()?;
            let receivers: i64 = self
                .guarded(
                    &gate,
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&message)
                        .query_async(&mut conn),
                )
                .await?;
            return Ok(receivers.max(0) as u64);
        }
        let nodes = self.shared.topology.load().nodes.clone();
        let mut last = StoreError::Unavailable("no cluster node to publish on");
        for node in nodes {
            let Ok(Conn::Cluster(mut conn)) = self.conn_unguarded() else {
                continue;
            };
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: node.addr.host.clone(),
                port: node.addr.port,
            });
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&channel).arg(&message);
            match self
                .guarded(&node.breaker, conn.route_command(cmd, routing))
                .await
            {
                Ok(receivers) => {
                    tracing::debug!(node = %node.addr, ?receivers, "purge announced");
                    // A cluster counts only the subscribers of the node it was published on.
                    return Ok(redis::from_redis_value::<i64>(receivers)
                        .unwrap_or(0)
                        .max(0) as u64);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Waits until the `receivers` subscribers of announcement `ack` have applied it, at most
    /// the tiers' trust window ([`RedisStore::set_ack_wait`]). Each memory tier applies an
    /// announcement, then counts itself on `<prefix>ack:<id>` ([`RedisStore::acknowledge`]);
    /// normally all have within a millisecond. A tier that has not by the end of the window
    /// heard nothing on its subscription since before the announcement, so it has stopped
    /// answering by then ([`crate::store::tiered`]). Either way, once this returns, no tier
    /// serves what was purged.
    async fn await_acks(&self, ack: u64, receivers: u64) {
        let wait = Duration::from_millis(self.shared.ack_wait_ms.load(Ordering::Relaxed));
        if receivers == 0 || wait.is_zero() {
            return;
        }
        let key = self.ack_key(ack);
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_micros(200);
        loop {
            let acked: Option<u64> = match self.conn_unguarded() {
                Ok(mut conn) => self
                    .guarded(
                        &self.shared.breaker,
                        redis::cmd("GET").arg(&key).query_async(&mut conn),
                    )
                    .await
                    .unwrap_or(None),
                Err(_) => None,
            };
            if acked.unwrap_or(0) >= receivers {
                return;
            }
            if tokio::time::Instant::now() + pause >= deadline {
                tokio::time::sleep_until(deadline).await;
                tracing::debug!(
                    receivers,
                    acked,
                    "not every tier acknowledged a purge; waited out their trust window"
                );
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// How long a purge waits for every memory tier to acknowledge it: the tiers' trust window
    /// (`cache.memory_tier_trust_ms`), after which a tier that did not has stopped answering.
    pub fn set_ack_wait(&self, wait: Duration) {
        self.shared
            .ack_wait_ms
            .store(wait.as_millis() as u64, Ordering::Relaxed);
    }
}
