//! What the memory tier's invalidation subscription needs from the Redis store: where to
//! subscribe, and how to acknowledge an announcement once applied.
//!
//! The subscription itself, and the announcement's format, live with the memory tier
//! ([`crate::store::tiered`]); the acknowledgement is counted here, on the key the purging
//! instance polls ([`RedisStore::purge_acknowledged`] waits for it).

use std::sync::Weak;

use super::{RedisStore, Shared};
use crate::store::cluster::Target;

/// Where the invalidation subscription connects, in order of preference; see
/// [`RedisStore::subscription_targets`].
#[derive(Clone)]
pub struct SubscriptionTargets {
    shared: Weak<Shared>,
}

impl RedisStore {
    /// Where the invalidation subscription may connect: the single Redis, or every known
    /// cluster node (seeds first), since a cluster broadcasts `PUBLISH` to all its nodes.
    pub fn subscription_targets(&self) -> SubscriptionTargets {
        SubscriptionTargets {
            shared: std::sync::Arc::downgrade(&self.shared),
        }
    }

    /// Counts this instance's tier on announcement `ack`, which the purging instance waits for
    /// (`purge.rs`).
    pub async fn acknowledge(&self, ack: u64) {
        let key = self.ack_key(ack);
        let Ok(mut conn) = self.conn_unguarded() else {
            return;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(&key).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(60).ignore();
        let done: Result<(), _> = self
            .guarded(&self.shared.breaker, pipe.query_async(&mut conn))
            .await;
        if let Err(e) = done {
            tracing::debug!(error = %e, "could not acknowledge an invalidation");
        }
    }
}

impl SubscriptionTargets {
    /// Acknowledges announcement `ack` for this instance's tier, in the background.
    pub fn acknowledge(&self, ack: u64, instance: u64) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        tokio::spawn(async move { RedisStore::view(shared, instance).acknowledge(ack).await });
    }

    /// The URLs to try: the single Redis; or a cluster's seeds, then the other masters it
    /// reported (with the seeds' credentials).
    pub fn urls(&self) -> Vec<String> {
        let Some(shared) = self.shared.upgrade() else {
            return Vec::new();
        };
        match &shared.target {
            Target::Single(url) => vec![url.clone()],
            Target::Cluster(seeds) => {
                let mut urls = seeds.clone();
                let (scheme, creds) = seeds
                    .first()
                    .and_then(|s| s.split_once("://"))
                    .map(|(scheme, rest)| {
                        let creds = rest.rfind('@').map(|at| &rest[..=at]).unwrap_or("");
                        (scheme.to_owned(), creds.to_owned())
                    })
                    .unwrap_or(("redis".into(), String::new()));
                for node in &shared.topology.load().nodes {
                    let url = format!("{scheme}://{creds}{}", node.addr);
                    if !urls.contains(&url) {
                        urls.push(url);
                    }
                }
                urls
            }
        }
    }
}
