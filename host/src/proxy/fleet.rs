//! One fill per entry across the fleet: the instances sharing a Redis coalesce their misses the
//! way one instance's requests do (`coalesce.rs`), through a fill lease in Redis
//! ([`crate::store::redis::Lease`]).
//!
//! A miss's first request in this instance claims the entry's lease. The instance that wins
//! fills as usual, then ends the lease with the outcome, announced if another instance waits
//! (in the entry's write, when that is one script on a single Redis). The others wait for that
//! announcement (polling the lease meanwhile) and answer from the store, as a request
//! collapsed onto another's fill (`Cache-Status: ...; collapsed; detail="fleet"`); their own
//! followers get the same answer. A waiter goes upstream on its own when:
//!
//! - the fill ended without storing (not cacheable, too large, failed, overtaken by a purge: the
//!   no-resurrection rule keeps a purged result out of the store, so out of every waiter's
//!   answer), or the stored entry is not the variant its request selects;
//! - the holder vanished (died, or stalled past its lease): then one waiter takes the lease
//!   over, and the others wait for it;
//! - its wait reaches the route's upstream timeout;
//! - Redis does not answer: one store timeout at most, then this instance fills alone.

use std::time::{Duration, Instant};

use http::Response;

use super::Exchange;
use super::cache_status::CacheStatus;
use super::fill::{Filled, Miss, Share};
use super::policy::PolicyCall;
use crate::store::key::Digest;
use crate::store::redis::{Claim, ClaimMode};
use crate::store::{ObjectKey, Standing, now_ms};

/// How often a waiter looks at the lease when no news comes (news of a lost subscription, or a
/// holder that died, reaches it no later than this).
const POLL: Duration = Duration::from_millis(50);

impl Exchange {
    /// Fills `miss` (whose fills coalesce under `fill_id`) once across the fleet: this instance
    /// fills if it wins the lease, otherwise answers from the fill of the instance that did.
    pub(super) async fn fill_once_in_fleet(
        &self,
        policy: &PolicyCall<'_>,
        miss: Miss,
        fill_id: Digest,
    ) -> Filled {
        let Some(redis) = self
            .gw
            .store
            .shared_redis()
            .filter(|_| policy.route.config.fleet_coalescing)
        else {
            return self.fill(policy, miss).await;
        };
        let key = redis.lease_key(&miss.object.route, fill_id);
        let deadline = Instant::now() + policy.route.config.upstream_timeout;
        let watch = redis.watch_fill(&key);
        let mut mode = ClaimMode::New;
        loop {
            let news = watch.next(POLL);
            match redis.claim_fill(&key, mode).await {
                // Redis cannot coordinate now: fill alone, as one instance would.
                Err(_) => break,
                Ok(Claim::Won(lease)) => {
                    // Free while waiting: its holder vanished (a forced claim is not a
                    // takeover: the holder finished, its entry did not fit this request).
                    if mode == ClaimMode::Wait {
                        self.telemetry().lease_taken_over();
                    }
                    let miss = Miss {
                        lease: Some(lease.clone()),
                        ..miss
                    };
                    let filled = redis.renewing(&lease, self.fill(policy, miss)).await;
                    if lease.ended_by_store() {
                        return filled;
                    }
                    // The waiters learn the outcome from Redis; this client need not wait for
                    // that round trip.
                    let (gw, stored) = (self.gw.clone(), filled.stored());
                    tokio::spawn(async move {
                        if let Some(redis) = gw.store.shared_redis() {
                            redis.finish_fill(lease, stored).await;
                        }
                    });
                    return filled;
                }
                Ok(Claim::Stored) => {
                    if let Some(filled) = self
                        .answer_from_fleet_fill(&miss.object, &miss.status)
                        .await
                    {
                        return filled;
                    }
                    // Purged since, or another variant: this request needs a fill of its own.
                    mode = ClaimMode::Force;
                    continue;
                }
                Ok(Claim::Unstorable) => break,
                Ok(Claim::Held) => mode = ClaimMode::Wait,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = tokio::time::timeout(left, news).await;
        }
        self.fill(policy, miss).await
    }

    /// The entry another instance's fill stored, as this request's answer: fresh and current,
    /// and the variant this request selects; `None` otherwise.
    async fn answer_from_fleet_fill(
        &self,
        object: &ObjectKey,
        status: &CacheStatus,
    ) -> Option<Filled> {
        let (variant, found) = self.lookup(object).await;
        let found = found.ok()??;
        let now = now_ms();
        if found.standing != Standing::Current || found.entry.meta.ttl_left(now) <= 0 {
            return None;
        }
        let entry = found.entry;
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = entry.status;
        parts.headers = entry.headers;
        let status = status
            .clone()
            .fwd_status(entry.status.as_u16())
            .collapsed()
            .detail("fleet");
        let variant = variant.map(|v: ObjectKey| v.digest);
        Some(Filled::complete(
            parts,
            entry.body,
            status,
            Some(entry.meta.age(now)),
            Share::As(variant),
        ))
    }
}
