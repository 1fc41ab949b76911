//! Pending purges: applying, as soon as Redis answers, the purges it did not take.
//!
//! While any purge is pending the store serves nothing from Redis (the entries it would
//! invalidate are still valid there), so applying them quickly is what ends the degradation. A
//! pending set that overflowed owes more: every entry under the prefix is dropped and every
//! memory tier told to drop its own ([`RedisStore::flush`]). See [`crate::store::pending`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::breaker::Node;
use super::{RedisStore, Shared};
use crate::store::StoreError;
use crate::store::cluster::Conn;
use crate::store::key::TagId;
use crate::store::pending::Batch;
use crate::store::tags;

/// Applies pending purges as soon as Redis answers: tried again every 25 ms at first, backing
/// off to every 250 ms, so that after an outage they land within a quarter of a second (plus a
/// timeout) of Redis answering.
pub(super) async fn drain_pending(weak: Weak<Shared>, instance: u64) {
    let mut delay = Duration::from_millis(25);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if !shared.pending.any() {
            delay = Duration::from_millis(25);
            let pending = shared.pending.clone();
            drop(shared);
            // Woken by a new pending purge; the timeout lets the task end with its store.
            let _ = tokio::time::timeout(Duration::from_secs(1), pending.added.notified()).await;
            continue;
        }
        let store = RedisStore::view(shared, instance);
        if let Err(e) = store.drain_once().await {
            tracing::debug!(error = %e, "pending purges not applied yet");
            drop(store);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }
}

impl RedisStore {
    /// Applies what is pending, oldest state first; Ok when all of it was acknowledged.
    async fn drain_once(&self) -> Result<(), StoreError> {
        let batch = self.shared.pending.batch();
        if batch.is_empty() {
            return Ok(());
        }
        if batch.flush {
            self.flush().await?;
        }
        for (soft, list) in [(false, &batch.hard), (true, &batch.soft)] {
            if !list.is_empty() {
                let tags: Vec<TagId> = list.iter().map(|(tag, _)| *tag).collect();
                self.purge_acknowledged(&tags, soft, tags::now_us()).await?;
            }
        }
        self.shared.pending.applied(&batch).await;
        log_drained(&batch);
        Ok(())
    }

    /// Drops every entry under the prefix on every master, and tells every instance to drop
    /// its memory tier: what a pending set that overflowed owes.
    async fn flush(&self) -> Result<(), StoreError> {
        let nodes: Vec<Option<Arc<Node>>> = if self.cluster() {
            self.shared
                .topology
                .load()
                .nodes
                .iter()
                .cloned()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let mut dropped = 0u64;
        for node in nodes {
            dropped += self.drop_entries(node.as_deref()).await?;
        }
        self.announce(false, Vec::new(), true).await?;
        tracing::warn!(
            dropped,
            "every cached entry dropped: the pending purges had overflowed"
        );
        Ok(())
    }

    /// Drops every entry under the prefix on `node` (or the single Redis); answers how many.
    async fn drop_entries(&self, node: Option<&Node>) -> Result<u64, StoreError> {
        let pattern = self.obj_key_pattern();
        let breaker = node.map_or(&self.shared.breaker, |n| &n.breaker);
        let mut dropped = 0u64;
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let mut conn = self.conn_unguarded()?;
            let (next, keys): (u64, Vec<String>) = match (node, &mut conn) {
                (Some(n), Conn::Cluster(c)) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: n.addr.host.clone(),
                        port: n.addr.port,
                    });
                    let value = self
                        .guarded(breaker, c.route_command(scan, routing))
                        .await?;
                    redis::from_redis_value(value)
                        .map_err(|_| StoreError::Unavailable("SCAN answered unreadably"))?
                }
                _ => self.guarded(breaker, scan.query_async(&mut conn)).await?,
            };
            for key in &keys {
                // One key a command: on a cluster they live in different slots.
                let _: i64 = self
                    .guarded(
                        breaker,
                        redis::cmd("UNLINK").arg(key).query_async(&mut conn),
                    )
                    .await?;
            }
            dropped += keys.len() as u64;
            cursor = next;
            if cursor == 0 {
                return Ok(dropped);
            }
        }
    }
}

fn log_drained(batch: &Batch) {
    tracing::info!(
        hard = batch.hard.len(),
        soft = batch.soft.len(),
        flush = batch.flush,
        "pending purges applied; serving from redis again"
    );
}
