//! The Redis store: shared by every gateway instance, surviving restarts.
//!
//! Redis is an accelerator here, never a dependency of an answer: every operation has a short
//! timeout, and after a failure a breaker skips Redis for a moment, so a dead or hung Redis costs
//! at most one timeout to the few requests that meet it, then nothing until it is back. The
//! connection is made in the background: the gateway starts and serves while Redis is down, and
//! begins caching as soon as it answers.
//!
//! On a Redis Cluster ([`super::cluster`]) the same operations go through the redis crate's
//! cluster connection, each touching one slot, and the breaker is kept per master: a failed
//! master costs the requests that need it, not the others.
//!
//! A hit costs two round trips: the entry, then the tokens of its tags (whose names the entry
//! holds); on a single Redis usually one. A store costs two: the tags' tokens (creating missing
//! ones), then the entry; on a single Redis usually one, when the tokens are known. A purge
//! replaces its tags' tokens, then announces itself on `<prefix>invalidations` (pub/sub) for the
//! instances' memory tiers ([`super::tiered`]).
//!
//! Purges are the exception to "an accelerator, never a dependency": the breaker never refuses
//! one, and one that Redis does not acknowledge is kept pending ([`super::pending`]), retried
//! in the background, and meanwhile this store answers no lookup.
//!
//! # Layout
//!
//! Each file holds one of the guarantees `docs/invalidation.md` states:
//!
//! - this file: the store's state, its Redis key names (the wire format shared with every other
//!   instance) and the [`Storage`] operations, read top to bottom;
//! - `lookup.rs`: **tokens checked on every hit**, in one round trip where possible;
//! - `fill.rs`: **no resurrection**: a fill overtaken by a purge is not stored; in one round
//!   trip when `known_tokens.rs` knows its tags' tokens;
//! - `purge.rs`: **acknowledged announcements**: a purge returns once every memory tier has it;
//! - `drain.rs`: **pending purges** applied as soon as Redis answers;
//! - `scripts.rs` (and the `.lua` files): the two atomic steps, and what each guarantees;
//! - `breaker.rs`: **an accelerator, never a dependency**: timeouts and the breakers;
//! - `connect.rs`: connecting in the background (single, cluster, TLS, per worker);
//! - `subscription.rs`: what the memory tier's subscription needs from this store;
//! - `lease.rs` and `fill_news.rs`: **one fill per entry across the fleet**: fill leases, and
//!   the news of fills that ended.

mod breaker;
mod connect;
mod drain;
mod fill;
mod fill_news;
mod known_tokens;
mod lease;
mod lookup;
mod purge;
mod scripts;
mod subscription;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

pub use fill_news::FillWatch;
pub use lease::{Claim, ClaimMode, LEASE, Lease, LeaseKey};
pub use subscription::SubscriptionTargets;

use self::breaker::{Breaker, Node};
use self::connect::Connector;
use self::fill::Known;
use super::cluster::{Conn, Target, Topology};
use super::entry::Entry;
use super::key::{ObjectKey, TagId};
use super::pending::PendingPurges;
use super::tags::{self, Token};
use super::{Found, NewEntry, Standing, Storage, StoreError, StoreHealth, StoreOutcome};
use crate::config::RedisConfig;

/// How long a purge marker outlives the purge when no entry extends it: fills in flight at the
/// time of a purge must find the marker, and they rarely take more than minutes.
const PURGE_MARKER_TTL_SECS: u64 = 86_400;
/// Extra life of a tag token beyond the entries that reference it.
const TOKEN_MARGIN_SECS: u64 = 60;

pub struct RedisStore {
    shared: Arc<Shared>,
    purge_script: redis::Script,
    lookup_script: redis::Script,
    store_script: redis::Script,
    lease_script: redis::Script,
    /// Routes whose last entry looked up carried tags beyond its implicit ones: their lookups
    /// use the lookup script ([`scripts::LOOKUP_SCRIPT`]); the others one `MGET`.
    tagged_routes: RwLock<HashSet<String>>,
    /// Identifies this process in invalidation messages, so it can skip its own.
    instance: u64,
}

/// What every view of the store shares with its background tasks (connecting, following the
/// slot map, draining pending purges), which hold it weakly and end with it.
struct Shared {
    prefix: String,
    timeout: Duration,
    target: Target,
    /// The connections (`redis.connections`), used round-robin; set once all are made.
    conns: OnceLock<Box<[Conn]>>,
    next: AtomicUsize,
    /// The breaker of a single Redis. For a cluster, it covers connecting and what no node can
    /// be blamed for; each node has its own ([`Node`]).
    breaker: Breaker,
    /// A cluster's slot map with a breaker per master (empty for a single Redis).
    topology: ArcSwap<Topology<Node>>,
    /// Failed operations since start (timeouts, refused connections, error replies such as
    /// OOM, READONLY or NOAUTH).
    errors: AtomicU64,
    /// How a proxy worker makes its own connection (a single Redis only): see `connect.rs`.
    local: Option<(redis::Client, redis::aio::ConnectionManagerConfig)>,
    /// Purges Redis has not acknowledged yet; while any is, lookups are refused.
    pending: Arc<PendingPurges>,
    /// How long a purge waits for the memory tiers' acknowledgements (ms).
    ack_wait_ms: AtomicU64,
    /// This instance's requests waiting for other instances' fills (`fill_news.rs`).
    waiting: fill_news::Waiting,
    /// Tag tokens last seen, for stores in one round trip (`known_tokens.rs`).
    known: known_tokens::KnownTokens,
}

impl Shared {
    /// Counts a failed operation and opens `breaker`.
    fn failed(&self, breaker: &Breaker, e: &StoreError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        breaker.failed(e, self.errors.load(Ordering::Relaxed));
    }
}

impl RedisStore {
    /// Creates the store and starts connecting in the background; never fails and never waits.
    /// Purges Redis does not take are kept pending in memory only (the gateway uses
    /// [`RedisStore::start_with`] and a journal).
    pub fn start(config: &RedisConfig) -> Result<Self, StoreError> {
        let pending = PendingPurges::open(None, crate::config::defaults::MAX_PENDING_PURGES);
        Self::start_with(config, pending)
    }

    /// [`RedisStore::start`], with `pending` holding the purges an earlier run left unapplied
    /// (see [`super::pending`]).
    pub fn start_with(config: &RedisConfig, pending: PendingPurges) -> Result<Self, StoreError> {
        let target = config.target().map_err(StoreError::Config)?;
        let connector = Connector::new(&target, config.timeout)?;
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            target: target.clone(),
            conns: OnceLock::new(),
            next: AtomicUsize::new(0),
            // Failing until the first answer: `/health` says "connecting" until then.
            breaker: Breaker::new(None, Some("connecting".into())),
            topology: ArcSwap::from_pointee(Topology::empty()),
            errors: AtomicU64::new(0),
            local: connector.for_workers(),
            pending: Arc::new(pending),
            ack_wait_ms: AtomicU64::new(crate::config::defaults::MEMORY_TIER_TRUST_MS),
            waiting: fill_news::Waiting::default(),
            known: known_tokens::KnownTokens::default(),
        });
        let count = config.connections.max(1);
        tracing::info!(
            redis = %config.display_url(),
            cluster = target.is_cluster(),
            connections = count,
            "connecting to redis in the background"
        );
        connector.spawn(Arc::downgrade(&shared), count);
        let instance = rand::random();
        tokio::spawn(drain::drain_pending(Arc::downgrade(&shared), instance));
        let store = Self::view(shared, instance);
        tokio::spawn(fill_news::follow(
            Arc::downgrade(&store.shared),
            store.subscription_targets(),
            store.fills_channel(),
        ));
        Ok(store)
    }

    /// A store over `shared`, as this process's instance `instance`.
    fn view(shared: Arc<Shared>, instance: u64) -> Self {
        Self {
            shared,
            purge_script: redis::Script::new(scripts::PURGE_SCRIPT),
            lookup_script: redis::Script::new(scripts::LOOKUP_SCRIPT),
            store_script: redis::Script::new(scripts::STORE_SCRIPT),
            lease_script: redis::Script::new(scripts::LEASE_SCRIPT),
            tagged_routes: RwLock::new(HashSet::new()),
            instance,
        }
    }

    /// Purges not yet acknowledged by Redis.
    pub fn pending(&self) -> &PendingPurges {
        &self.shared.pending
    }

    /// This process's id in invalidation announcements.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    fn cluster(&self) -> bool {
        self.shared.target.is_cluster()
    }
}

/// The Redis keys, named in one place: every instance sharing the prefix reads and writes them,
/// including instances of the previous version during a rolling upgrade, so a change here is a
/// change of wire format (see the layout in [`super`]).
impl RedisStore {
    /// The channel invalidations are announced on.
    pub fn channel(&self) -> String {
        format!("{}invalidations", self.shared.prefix)
    }

    fn obj_key(&self, key: &ObjectKey) -> String {
        format!("{}obj:{}:{}", self.shared.prefix, key.route, key.digest)
    }

    /// A tag's token. In a cluster the tag is a hash tag, so that the token and its counter
    /// share a slot (the purge script and the store pipeline touch both).
    fn tag_key(&self, tag: &TagId) -> String {
        if self.cluster() {
            format!("{}tag:{{{}}}", self.shared.prefix, tag)
        } else {
            format!("{}tag:{}", self.shared.prefix, tag)
        }
    }

    fn count_key(&self, tag: &TagId) -> String {
        if self.cluster() {
            format!("{}cnt:{{{}}}", self.shared.prefix, tag)
        } else {
            format!("{}cnt:{}", self.shared.prefix, tag)
        }
    }

    /// The start of every token key on a single Redis (the lookup script appends the tag).
    fn tag_key_prefix(&self) -> String {
        format!("{}tag:", self.shared.prefix)
    }

    /// Every entry's key (for `SCAN`).
    fn obj_key_pattern(&self) -> String {
        format!("{}obj:*", self.shared.prefix)
    }

    /// Where the memory tiers count themselves on announcement `ack`.
    fn ack_key(&self, ack: u64) -> String {
        format!("{}ack:{ack:x}", self.shared.prefix)
    }
}

impl Storage for RedisStore {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        if self.shared.pending.any() {
            // Entries a pending purge invalidates are still valid in Redis: serve none.
            return Err(StoreError::Unavailable("purges pending"));
        }
        let obj_key = self.obj_key(key);
        let fetched = self.get_with_tokens(&obj_key, key).await?;
        let Some(value) = fetched.value else {
            return Ok(None);
        };
        let entry = match Entry::decode(Bytes::from(value)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(key = %obj_key, error = %e, "deleting a corrupt cache entry");
                self.unlink_later(obj_key);
                return Ok(None);
            }
        };
        let current = self.current_tokens(key, &entry, fetched.tokens).await?;
        let current: Vec<Option<Token>> = current
            .iter()
            .map(|v| v.as_deref().and_then(Token::decode))
            .collect();
        let recorded: Vec<Token> = entry.tags.iter().map(|(_, t)| *t).collect();
        match tags::standing(&recorded, &current, entry.meta.fill_started_us) {
            Standing::Invalid => {
                self.unlink_later(obj_key);
                Ok(None)
            }
            standing => Ok(Some(Found { entry, standing })),
        }
    }

    async fn store(&self, key: &ObjectKey, new: NewEntry) -> Result<StoreOutcome, StoreError> {
        let obj_key = self.obj_key(key);
        let obj_gate = self.gate(&obj_key);
        let mut conn = self.conn(&obj_gate)?;
        let life = new.meta.storage_lifetime_secs().max(1);
        let token_life = life + TOKEN_MARGIN_SECS;
        let fill_started_us = new.meta.fill_started_us;
        let fresh: Vec<Token> = new.tags.iter().map(|_| Token::new_unpurged()).collect();
        let lease = new.lease;
        let mut entry = Entry {
            status: new.status,
            headers: new.headers,
            body: new.body,
            meta: new.meta,
            tags: new.tags.into_iter().zip(fresh.iter().copied()).collect(),
        };

        // Each tag's token as it was before this fill (`None` where there was none, and its
        // fresh one is now set), every token now outliving this entry: read with the entry's
        // write when the tokens are known (one round trip), else on their own.
        let previous = match self
            .store_if_known(
                &obj_key,
                &mut entry,
                &fresh,
                (life, token_life),
                lease.as_ref(),
                &obj_gate,
                &mut conn,
            )
            .await?
        {
            Known::Stored => return Ok(StoreOutcome::Stored),
            Known::Changed(previous) => previous,
            Known::Unknown => {
                let tags: Vec<TagId> = entry.tags.iter().map(|(tag, _)| *tag).collect();
                self.take_tokens(&tags, &fresh, token_life, &obj_gate, &mut conn)
                    .await?
            }
        };
        let mut unreadable = Vec::new();
        for ((tag, token), (prev, fresh)) in entry.tags.iter_mut().zip(previous.iter().zip(&fresh))
        {
            let current = match prev {
                None => Some(*fresh),
                Some(bytes) => Token::decode(bytes),
            };
            self.shared.known.saw(*tag, current);
            match current {
                Some(t) => *token = t,
                None => unreadable.push(*tag),
            }
        }
        if !unreadable.is_empty() {
            // A token we cannot read (written by an older version): refuse this fill rather
            // than guess, and replace the token as a hard purge now would, so that later fills
            // are stored and none that started before it is.
            self.replace_unreadable_tokens(&unreadable).await;
            return Ok(StoreOutcome::PurgedDuringFill);
        }
        let tokens: Vec<Token> = entry.tags.iter().map(|(_, t)| *t).collect();
        if tags::may_store(&tokens, fill_started_us).is_err() {
            return Ok(StoreOutcome::PurgedDuringFill);
        }
        let value = entry.encode();
        let _: () = self
            .guarded(
                &obj_gate,
                redis::cmd("SET")
                    .arg(&obj_key)
                    .arg(value)
                    .arg("EX")
                    .arg(life)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(StoreOutcome::Stored)
    }

    /// Applied and announced, or kept pending ([`StoreError::PurgePending`]) to be applied as
    /// soon as Redis answers.
    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        let now = tags::now_us();
        match self.purge_acknowledged(tags, soft, now).await {
            Ok(affected) => Ok(affected),
            Err(e) => {
                tracing::warn!(error = %e, tags = tags.len(), soft, "redis did not take a purge; kept pending until it does");
                self.shared.pending.add(tags, soft, now).await;
                Err(StoreError::PurgePending(Box::new(e)))
            }
        }
    }

    fn health(&self) -> StoreHealth {
        let mut detail = self.shared.breaker.error();
        if detail.is_none() && self.cluster() {
            let failing: Vec<String> = self
                .shared
                .topology
                .load()
                .nodes
                .iter()
                .filter_map(|n| n.breaker.error().map(|e| format!("{}: {e}", n.addr)))
                .collect();
            if !failing.is_empty() {
                detail = Some(failing.join("; "));
            }
        }
        StoreHealth {
            kind: if self.cluster() {
                "redis-cluster"
            } else {
                "redis"
            },
            up: self.shared.conns.get().is_some() && detail.is_none(),
            detail,
            memory_tier: None,
            errors: self.shared.errors.load(Ordering::Relaxed),
            pending_purges: self.shared.pending.len(),
            pending_overflow: self.shared.pending.overflowed(),
        }
    }
}
