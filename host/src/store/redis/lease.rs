//! Fill leases: one upstream request per entry across every instance sharing this Redis.
//!
//! Within one instance, concurrent misses for an entry already wait for one fill
//! (`proxy/coalesce.rs`). Across instances the lease does the same: the first instance to miss
//! takes `<prefix>fill-lease:<route>:<digest>` (`SET` only if free, with a short expiry its
//! holder renews while the fill runs); the others wait for the fill to land and answer from the
//! store (`proxy/fleet.rs`). When the fill ends the holder replaces its lease by the outcome
//! (`done:stored` or `done:unstorable`, kept two seconds) and, if another instance waits for
//! it, publishes the lease's name on `<prefix>fills` ([`super::fill_news`]), so waiters learn at
//! once; they also poll the lease, so a lost message costs a poll interval, never an answer.
//!
//! Who waits: a claim that finds the lease held marks it (the holder's id gets a `+`), and only
//! a marked lease's end is announced. Most misses are nobody else's (a new key, one instance),
//! and a message per miss that every instance receives and drops cost about 14% of the misses a
//! gateway answers (`tests/load/miss.sh`). The key's name differs from the `<prefix>lease:` of
//! earlier releases, whose scripts do not know the mark: during a rolling upgrade each release
//! keeps to its own leases and fills a cold key once, rather than a marked lease outliving a
//! holder that cannot end it.
//!
//! A holder that dies or stalls stops renewing: its lease expires within [`LEASE`], and one
//! waiting instance takes over. Every step is one round trip through the breaker and the
//! store's timeout: when Redis is slow or down, instances fill on their own at once. A miss
//! costs its instance one round trip more than a fill without the fleet (the claim: on a single
//! Redis the store's script also ends the lease when the entry is written in one round trip,
//! otherwise ending it is a second); a waiting instance one per poll; a hit none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::RedisStore;
use crate::store::StoreError;
use crate::store::key::Digest;

/// How long a lease lives unless renewed: how long a holder that died holds up the waiters.
pub const LEASE: Duration = Duration::from_millis(3000);
/// How often the holder renews its lease while its fill runs.
const RENEW_EVERY: Duration = Duration::from_millis(1000);
/// How long the outcome of a finished fill stays readable for waiters that poll.
const OUTCOME_LIFE: Duration = Duration::from_millis(2000);

/// The Redis key of one entry's fill lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseKey(pub(super) String);

/// What a claim found.
pub enum Claim {
    /// The lease is this instance's: it fills the entry.
    Won(Lease),
    /// Another instance is filling the entry.
    Held,
    /// The last fill stored the entry (within the last [`OUTCOME_LIFE`]): look it up.
    Stored,
    /// The last fill ended without storing it (not cacheable, too large, failed, purged).
    Unstorable,
}

/// Which leases a claim may take besides a free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    /// A new miss: also the outcome of an unstorable fill (that fill was for other requests).
    New,
    /// A waiter: only a free lease (its holder finished long ago, or died).
    Wait,
    /// A waiter that found no usable entry where a fill was stored (purged since, or another
    /// variant): any outcome.
    Force,
}

impl ClaimMode {
    fn as_str(self) -> &'static str {
        match self {
            ClaimMode::New => "new",
            ClaimMode::Wait => "wait",
            ClaimMode::Force => "force",
        }
    }
}

/// A lease this instance holds, until it is finished (a lease dropped unfinished expires within
/// [`LEASE`]). [`RedisStore::renewing`] keeps it while the fill runs.
///
/// A fill that stores on a single Redis ends its lease in the store's script (the entry, then
/// the outcome, announced if waited for, in one round trip); the fill carries a clone of its lease
/// to the store for that (`NewEntry::lease`), and [`Lease::ended_by_store`] tells its holder
/// that [`RedisStore::finish_fill`] has nothing left to do.
#[derive(Debug, Clone)]
pub struct Lease {
    key: LeaseKey,
    holder: String,
    ended_by_store: Arc<AtomicBool>,
}

impl Lease {
    /// Whether the store that wrote this lease's entry also ended the lease (or found it lost
    /// to another holder, who will).
    pub fn ended_by_store(&self) -> bool {
        self.ended_by_store.load(Ordering::Relaxed)
    }
}

/// What the store script needs to end a lease with `done:stored`: its key, its holder, the
/// outcome's life in ms and the fill news channel.
pub(super) struct StoredOutcome<'a> {
    pub(super) lease: &'a Lease,
    pub(super) life_ms: String,
    pub(super) channel: String,
}

impl StoredOutcome<'_> {
    pub(super) fn key(&self) -> &str {
        &self.lease.key.0
    }

    pub(super) fn holder(&self) -> &str {
        &self.lease.holder
    }

    /// The script ran: the lease is ended (or was not this instance's any more).
    pub(super) fn ended(&self) {
        self.lease.ended_by_store.store(true, Ordering::Relaxed);
    }
}

impl RedisStore {
    /// The lease of the fill of `digest` on `route`.
    pub fn lease_key(&self, route: &str, digest: Digest) -> LeaseKey {
        LeaseKey(format!("{}fill-lease:{route}:{digest}", self.shared.prefix))
    }

    /// Takes the lease if no other instance holds it (and `mode` allows), or says why not.
    pub async fn claim_fill(&self, key: &LeaseKey, mode: ClaimMode) -> Result<Claim, StoreError> {
        let holder = format!("{:x}.{:x}", self.instance, rand::random::<u64>());
        let lease_ms = LEASE.as_millis().to_string();
        // A new miss usually finds the lease free: a plain `SET NX` takes it, at a fraction of
        // the script's cost to Redis. The script decides only when it was not free.
        let taken = mode == ClaimMode::New && self.take_if_free(key, &holder, &lease_ms).await?;
        let args = ["claim", &holder, &lease_ms, mode.as_str()];
        let outcome = if taken {
            1
        } else {
            self.lease_op(key, &args).await?
        };
        Ok(match outcome {
            1 => Claim::Won(Lease {
                key: key.clone(),
                holder,
                ended_by_store: Arc::default(),
            }),
            2 => Claim::Stored,
            3 => Claim::Unstorable,
            _ => Claim::Held,
        })
    }

    /// How the store script ends `lease` when it writes the lease's entry (single Redis only:
    /// in a cluster the lease and the entry live in different slots).
    pub(super) fn stored_outcome<'a>(&self, lease: &'a Lease) -> StoredOutcome<'a> {
        StoredOutcome {
            lease,
            life_ms: OUTCOME_LIFE.as_millis().to_string(),
            channel: self.fills_channel(),
        }
    }

    /// Ends `lease` with its fill's outcome and tells the waiting instances. Best effort: a
    /// waiter that does not hear it finds the outcome by polling, or the lease expired.
    pub async fn finish_fill(&self, lease: Lease, stored: bool) {
        let outcome = if stored {
            "done:stored"
        } else {
            "done:unstorable"
        };
        let life = OUTCOME_LIFE.as_millis().to_string();
        let channel = self.fills_channel();
        let args = ["finish", &lease.holder, outcome, &life, &channel];
        if let Err(e) = self.lease_op(&lease.key, &args).await {
            tracing::debug!(lease = %lease.key.0, error = %e, "could not finish a fill lease");
        }
    }

    /// `SET key holder NX PX lease_ms`: whether the lease was free and is now `holder`'s.
    async fn take_if_free(
        &self,
        key: &LeaseKey,
        holder: &str,
        lease_ms: &str,
    ) -> Result<bool, StoreError> {
        let gate = self.gate(&key.0);
        let mut conn = self.conn(&gate)?;
        let mut set = redis::cmd("SET");
        set.arg(&key.0)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms);
        let reply: Option<String> = self.guarded(&gate, set.query_async(&mut conn)).await?;
        Ok(reply.is_some())
    }

    /// Runs `work` (the fill) while holding `lease`, renewing it every [`RENEW_EVERY`] for as
    /// long as the work takes (most fills end before the first renewal). A renewal that fails
    /// is tried again at the next beat: the lease has [`LEASE`] to live, three beats.
    pub async fn renewing<T>(&self, lease: &Lease, work: impl Future<Output = T>) -> T {
        let lease_ms = LEASE.as_millis().to_string();
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                () = tokio::time::sleep(RENEW_EVERY) => {
                    let args = ["renew", lease.holder.as_str(), &lease_ms];
                    if let Err(e) = self.lease_op(&lease.key, &args).await {
                        tracing::debug!(lease = %lease.key.0, error = %e, "could not renew a fill lease");
                    }
                }
            }
        }
    }

    /// Runs one step of the lease script ([`super::scripts::LEASE_SCRIPT`]).
    async fn lease_op(&self, key: &LeaseKey, args: &[&str]) -> Result<i64, StoreError> {
        let gate = self.gate(&key.0);
        let mut conn = self.conn(&gate)?;
        let mut invocation = self.lease_script.key(&key.0);
        for arg in args {
            invocation.arg(*arg);
        }
        self.guarded(&gate, invocation.invoke_async(&mut conn))
            .await
    }
}
