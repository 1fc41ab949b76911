//! Phase 3 and 5 of a request: looking a response up, and storing one.
//!
//! [`Storage`] is the contract; [`redis::RedisStore`] is the production implementation and
//! [`memory::MemoryStore`] the embedded one (used when no Redis is configured) that doubles as
//! the reference: the same tests run against both. The gateway holds a [`Store`], an enum over
//! the two, so the hot path makes static calls and no boxed futures.
//!
//! Layout (Redis, prefix `larder:` by default):
//! - `larder:obj:<route>:<digest>`: one entry ([`entry::Entry`]: metadata and body in one
//!   value), expiring after its fresh life plus its longest stale window.
//! - `larder:tag:<tag-digest>`: a tag's generation token ([`tags`]), for explicit tags, exact
//!   keys and key prefixes alike; `larder:cnt:<tag-digest>` counts the entries stored with it.
//!   On a Redis Cluster the digest is a hash tag (`larder:tag:{<tag-digest>}`), so a tag's
//!   token and counter share a slot ([`cluster`]).
//! - `larder:invalidations`: the pub/sub channel purges are announced on, for the instances'
//!   memory tiers ([`tiered::TieredStore`], `cache.memory_tier_bytes`); the message is a
//!   [`tiered::Announcement`].
//! - `larder:ack:<id>`: how many memory tiers applied announcement `<id>`, which the purging
//!   instance waits for; gone after a minute.
//! - `larder:lease:<route>:<digest>`: the lease of the one fill of an entry in flight across
//!   the fleet, then for two seconds how it ended; `larder:fills`: the channel a fill's end is
//!   announced on ([`redis::Lease`]).

pub mod cluster;
pub mod entry;
pub mod key;
pub mod memory;
pub mod pending;
pub mod redis;
pub mod tags;
pub mod tiered;

use std::future::Future;

pub use entry::{Entry, EntryMeta};
pub use key::{ObjectKey, TagId};
pub use tags::Standing;

/// A usable entry found by a lookup.
#[derive(Debug)]
pub struct Found {
    pub entry: Entry,
    /// `Current`, or `SoftPurged` (usable only as stale). Invalid entries are never returned.
    pub standing: Standing,
}

/// A response to store, before its tags' tokens are known.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub meta: EntryMeta,
    /// Explicit and implicit tags.
    pub tags: Vec<TagId>,
    /// The fleet lease of the fill that produced it, for a Redis store to end with the write
    /// (`redis/lease.rs`); other stores ignore it.
    pub lease: Option<redis::Lease>,
}

/// What became of a store request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    /// One of the entry's tags was purged after its upstream request started: storing it would
    /// bring back what the purge removed.
    PurgedDuringFill,
}

/// Why the store could not answer. Callers treat every error as a miss (lookups) or a skipped
/// write (stores): the store is an accelerator, never a dependency of an answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(&'static str),
    #[error("store operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A Redis URL or cluster list that cannot be used (caught by the config check first).
    #[error("redis config: {0}")]
    Config(String),
    /// A purge Redis did not acknowledge: kept pending, applied as soon as Redis answers
    /// (see [`pending`]); until then nothing is served from Redis.
    #[error("purge kept pending until redis answers ({0})")]
    PurgePending(Box<StoreError>),
}

impl StoreError {
    /// Whether this is a purge kept pending (it will be applied) rather than lost.
    pub fn is_pending(&self) -> bool {
        matches!(self, StoreError::PurgePending(_))
    }
}

/// Health as shown by `GET /health`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreHealth {
    pub kind: &'static str,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_tier: Option<TierHealth>,
    /// Failed store operations since start.
    pub errors: u64,
    /// Tags of purges Redis has not acknowledged yet; while any is pending, nothing is served
    /// from Redis.
    pub pending_purges: usize,
    /// The pending set overflowed: nothing is served from the cache until Redis answers and
    /// every entry is dropped.
    pub pending_overflow: bool,
}

impl StoreHealth {
    /// Whether purges may currently be missed or delayed: Redis down, purges pending, or a
    /// memory tier that cannot hear other instances' purges.
    pub fn degraded(&self) -> bool {
        !self.up
            || self.pending_purges > 0
            || self.pending_overflow
            || self.memory_tier.as_ref().is_some_and(|t| !t.hearing)
    }
}

/// The memory tier's state, in `/health`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TierHealth {
    pub entries: usize,
    pub bytes: usize,
    pub budget: usize,
    /// Whether the invalidation subscription is up (while it is down, other instances' purges
    /// do not reach this tier; it is emptied when the subscription comes back).
    pub subscribed: bool,
    /// Whether the subscription was verified (a heartbeat answered on it) within
    /// `cache.memory_tier_trust_ms`: only then does the tier answer, unless
    /// `cache.memory_tier_outage = "serve"`.
    pub hearing: bool,
    /// Milliseconds since the subscription was last verified (absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_ms_ago: Option<u64>,
    /// Lookups that skipped the tier because it could not hear purges.
    pub bypassed: u64,
    /// Times the tier was emptied because the subscription (re)connected.
    pub emptied: u64,
}

/// A cache store: lookup, store, purge.
pub trait Storage: Send + Sync + 'static {
    /// The entry under `key`, if present and not invalidated. A corrupt value is deleted and
    /// reported as absent.
    fn lookup(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Found>, StoreError>> + Send;

    /// Stores `entry` under `key`, unless one of its tags was purged after
    /// `entry.meta.fill_started_us`.
    fn store(
        &self,
        key: &ObjectKey,
        entry: NewEntry,
    ) -> impl Future<Output = Result<StoreOutcome, StoreError>> + Send;

    /// Purges `tags`: hard (entries become invalid) or soft (entries become stale). Answers
    /// how many entries were stored with these tags since each tag's previous purge: an upper
    /// bound of the entries affected (an entry counts once per purged tag it carries, and
    /// entries that expired or were replaced meanwhile still count).
    fn purge(
        &self,
        tags: &[TagId],
        soft: bool,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn health(&self) -> StoreHealth;
}

/// The store the gateway uses.
pub enum Store {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
    /// Redis behind a memory tier.
    Tiered(tiered::TieredStore),
}

impl Store {
    /// The Redis every instance shares, where fill leases live (`redis/lease.rs`); `None` for
    /// the embedded store, whose instance is alone.
    pub fn shared_redis(&self) -> Option<&redis::RedisStore> {
        match self {
            Store::Memory(_) => None,
            Store::Redis(s) => Some(s),
            Store::Tiered(s) => Some(s.redis()),
        }
    }
}

impl Storage for Store {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        match self {
            Store::Memory(s) => s.lookup(key).await,
            Store::Redis(s) => s.lookup(key).await,
            Store::Tiered(s) => s.lookup(key).await,
        }
    }

    async fn store(&self, key: &ObjectKey, entry: NewEntry) -> Result<StoreOutcome, StoreError> {
        match self {
            Store::Memory(s) => s.store(key, entry).await,
            Store::Redis(s) => s.store(key, entry).await,
            Store::Tiered(s) => s.store(key, entry).await,
        }
    }

    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        match self {
            Store::Memory(s) => s.purge(tags, soft).await,
            Store::Redis(s) => s.purge(tags, soft).await,
            Store::Tiered(s) => s.purge(tags, soft).await,
        }
    }

    fn health(&self) -> StoreHealth {
        match self {
            Store::Memory(s) => s.health(),
            Store::Redis(s) => s.health(),
            Store::Tiered(s) => s.health(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    tags::now_us() / 1000
}

/// The contract both stores must meet, as executable checks: run against the memory store by its
/// unit tests and against a real `redis-server` by the integration tests.
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod contract {
    use super::*;
    use crate::store::key::tag_id;
    use bytes::Bytes;

    /// A 200 with `body`, fresh for 60 s, whose fill started now (for tests and benches).
    pub fn entry(body: Bytes, tags: Vec<TagId>) -> NewEntry {
        NewEntry {
            status: http::StatusCode::OK,
            headers: http::HeaderMap::new(),
            body,
            meta: EntryMeta {
                stored_at_ms: now_ms(),
                fill_started_us: tags::now_us(),
                initial_age: 0,
                ttl: 60,
                stale_while_revalidate: 0,
                stale_if_error: 0,
                keep: 0,
                vary_marker: false,
            },
            tags,
            lease: None,
        }
    }

    fn new_entry(body: &'static str, tags: Vec<TagId>, fill_started_us: u64) -> NewEntry {
        let mut e = entry(Bytes::from_static(body.as_bytes()), tags);
        e.meta.fill_started_us = fill_started_us;
        e
    }

    fn key(route: &str, parts: &[&str]) -> (ObjectKey, Vec<TagId>) {
        let k = ObjectKey::derive(route, parts, &[]);
        let mut tags = k.implicit_tags.clone();
        tags.push(tag_id(&format!("repo:{}", parts[1])));
        (k, tags)
    }

    async fn body_of(s: &impl Storage, k: &ObjectKey) -> Option<(Bytes, Standing)> {
        s.lookup(k)
            .await
            .unwrap()
            .map(|f| (f.entry.body, f.standing))
    }

    pub async fn stores_and_finds(s: &impl Storage) {
        let (k, tags) = key("r", &["repo", "1"]);
        assert!(body_of(s, &k).await.is_none());
        let outcome = s
            .store(&k, new_entry("one", tags, tags::now_us()))
            .await
            .unwrap();
        assert_eq!(outcome, StoreOutcome::Stored);
        assert_eq!(
            body_of(s, &k).await,
            Some((Bytes::from_static(b"one"), Standing::Current))
        );
    }

    pub async fn tag_purge_is_exact(s: &impl Storage) {
        let (k1, t1) = key("r", &["repo", "21"]);
        let (k2, t2) = key("r", &["repo", "22"]);
        let (k10, t10) = key("r", &["repo", "210"]);
        for (k, t) in [(&k1, t1), (&k2, t2), (&k10, t10)] {
            s.store(k, new_entry("x", t, tags::now_us())).await.unwrap();
        }
        assert_eq!(s.purge(&[tag_id("repo:21")], false).await.unwrap(), 1);
        // Counted since the previous purge: nothing new.
        assert_eq!(s.purge(&[tag_id("repo:21")], false).await.unwrap(), 0);
        assert!(body_of(s, &k1).await.is_none());
        assert!(body_of(s, &k2).await.is_some());
        assert!(body_of(s, &k10).await.is_some());
    }

    pub async fn a_fill_that_straddles_a_purge_is_not_stored(s: &impl Storage) {
        let (k, tags) = key("r", &["repo", "3"]);
        let started = tags::now_us();
        s.purge(&[tag_id("repo:3")], false).await.unwrap();
        let outcome = s.store(&k, new_entry("old", tags, started)).await.unwrap();
        assert_eq!(outcome, StoreOutcome::PurgedDuringFill);
        assert!(body_of(s, &k).await.is_none());
    }

    pub async fn soft_purge_leaves_a_stale_entry(s: &impl Storage) {
        let (k, tags) = key("r", &["repo", "4"]);
        s.store(&k, new_entry("x", tags, tags::now_us()))
            .await
            .unwrap();
        s.purge(&[tag_id("repo:4")], true).await.unwrap();
        assert_eq!(
            body_of(s, &k).await.map(|b| b.1),
            Some(Standing::SoftPurged)
        );
        s.purge(&[tag_id("repo:4")], false).await.unwrap();
        assert!(body_of(s, &k).await.is_none());
    }

    pub async fn prefix_purge_reaches_longer_keys_only(s: &impl Storage) {
        let (a, ta) = key("p", &["repo", "5", "view"]);
        let (b, tb) = key("p", &["repo", "55", "view"]);
        s.store(&a, new_entry("a", ta, tags::now_us()))
            .await
            .unwrap();
        s.store(&b, new_entry("b", tb, tags::now_us()))
            .await
            .unwrap();
        s.purge(&key::prefix_invalidation("p", &["repo", "5"]), false)
            .await
            .unwrap();
        assert!(body_of(s, &a).await.is_none());
        assert!(body_of(s, &b).await.is_some());
    }
}
