//! The embedded store: entries in this process, bounded by a byte budget.
//!
//! Used when no Redis is configured (a laptop, a single instance), as the memory tier in front
//! of Redis ([`super::tiered`]), and as the reference implementation of [`Storage`]: the same
//! contract tests run against it and against Redis.
//!
//! Entries live in a [`quick_cache`] cache weighted by [`Entry::weight`]. Its admission and
//! eviction are scan-resistant (S3-FIFO-style): a new entry enters a small probationary
//! ("cold") queue and reaches the main ("hot") queue only if it is requested again while there;
//! keys evicted recently are remembered (a "ghost" list) and go straight to the main queue when
//! they come back. So a crawl through thousands of repositories that are each requested once
//! does not push out the few that every user opens, as plain LRU or FIFO would. Gets take a
//! shard's read lock only, so hits on many threads do not serialise.
//!
//! Tag tokens and the per-tag counts sit beside the entries under one `RwLock`: a hit reads
//! them (read lock, no allocation), stores and purges write them. Every critical section is a
//! few hash-map operations and never spans an `.await`. Correctness does not depend on the
//! entry map and the token map changing together: an entry records its tags' tokens when it is
//! stored, and a lookup compares them with the current ones, so a purge that lands between a
//! store's check and its insert still invalidates that entry.
//!
//! Both tag maps stay bounded by what is held, not by what was ever stored: a tag that was
//! never purged has no token (it reads as [`UNPURGED`]), and a tag's count is the number of
//! held entries stored with it since its last purge, decreased as entries are evicted,
//! replaced or dropped. So a crawl through millions of keys leaves no trace once its entries
//! are gone; only purged tags keep their token.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::entry::Entry;
use super::key::{Digest, ObjectKey, TagId};
use super::tags::{self, Token};
use super::{Found, NewEntry, Standing, Storage, StoreError, StoreHealth, StoreOutcome, now_ms};

/// Default budget: 256 MiB of entries.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;

/// Each shard of the entry cache gets at least this much of the budget (an entry weighing more
/// than about a shard's budget is not kept), and there are at most [`MAX_SHARDS`].
const MIN_SHARD_BUDGET: usize = 32 * 1024 * 1024;
const MAX_SHARDS: usize = 16;

type Entries = quick_cache::sync::Cache<
    Digest,
    Arc<Slot>,
    ByWeight,
    BuildHasherDefault<DigestHasher>,
    Evicted,
>;

/// The token of a tag that was never purged here.
const UNPURGED: Token = Token {
    hard_us: 0,
    any_us: 0,
    nonce: 0,
    lineage: 0,
};

pub struct MemoryStore {
    entries: Entries,
    tags: RwLock<TagState>,
    budget: usize,
}

struct Slot {
    entry: Entry,
    expires_at_ms: u64,
    weight: u64,
}

#[derive(Default)]
struct TagState {
    tokens: HashMap<TagId, Token>,
    /// Entries stored per tag since its last purge.
    stored_since_purge: HashMap<TagId, u64>,
}

/// Weighs an entry by the bytes it holds (computed once, when it is stored).
#[derive(Clone, Copy)]
struct ByWeight;

impl quick_cache::Weighter<Digest, Arc<Slot>> for ByWeight {
    fn weight(&self, _key: &Digest, slot: &Arc<Slot>) -> u64 {
        slot.weight
    }
}

/// Collects what an insert pushed out (evicted, or replaced under the same key), so that its
/// tags' counts are decreased after the cache's shard lock is released.
#[derive(Clone, Copy)]
struct Evicted;

impl quick_cache::Lifecycle<Digest, Arc<Slot>> for Evicted {
    type RequestState = Vec<Arc<Slot>>;

    fn begin_request(&self) -> Self::RequestState {
        Vec::new()
    }

    fn on_evict(&self, state: &mut Self::RequestState, _key: Digest, slot: Arc<Slot>) {
        state.push(slot);
    }
}

/// Object digests are already uniformly random (BLAKE3 of the key): folding their bytes into a
/// word makes a good hash, with no SipHash round on every hit.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

impl MemoryStore {
    pub fn new(budget: usize) -> Self {
        let shards = (budget / MIN_SHARD_BUDGET).clamp(1, MAX_SHARDS);
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(budget as u64)
            // Sizes the maps up front; a few KiB per analysis document is typical.
            .estimated_items_capacity((budget / 8192).clamp(64, 65_536))
            .build()
            .expect("memory store options are valid");
        Self {
            entries: Entries::with_options(
                options,
                ByWeight,
                BuildHasherDefault::default(),
                Evicted,
            ),
            tags: RwLock::new(TagState::default()),
            budget,
        }
    }

    /// Drops every entry (the memory tier does after missing invalidations). Tag tokens stay:
    /// they only ever make entries invalid.
    pub fn clear(&self) {
        self.entries.clear();
        self.write_tags().stored_since_purge.clear();
    }

    /// Entries held and the bytes they weigh.
    pub fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.entries.weight() as usize)
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Removes `slot`, unless a store replaced it since it was read.
    fn remove(&self, digest: &Digest, slot: &Arc<Slot>) {
        if let Some((_, removed)) = self
            .entries
            .remove_if(digest, |current| Arc::ptr_eq(current, slot))
        {
            self.forget(&[removed]);
        }
    }

    /// Entries no longer held: each stops counting for the tags it was stored with (those not
    /// purged since, whose counts a purge already reset).
    fn forget(&self, gone: &[Arc<Slot>]) {
        if gone.is_empty() {
            return;
        }
        let mut state = self.write_tags();
        let TagState {
            tokens,
            stored_since_purge,
        } = &mut *state;
        for slot in gone {
            for (tag, recorded) in &slot.entry.tags {
                if tokens.get(tag).copied().unwrap_or(UNPURGED) != *recorded {
                    continue;
                }
                if let Some(count) = stored_since_purge.get_mut(tag) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        stored_since_purge.remove(tag);
                    }
                }
            }
        }
    }

    // A panic while holding a lock leaves maps that are still consistent (every operation is a
    // single insert or remove), so a poisoned lock is safe to reuse.
    fn read_tags(&self) -> std::sync::RwLockReadGuard<'_, TagState> {
        self.tags.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_tags(&self) -> std::sync::RwLockWriteGuard<'_, TagState> {
        self.tags.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bodies and header values arrive as slices of larger buffers (hyper's read buffer, a Redis
/// reply): kept as they are, a 1 KB entry can pin many KiB that its weight does not count, and
/// the budget stops bounding the process's memory. What the tier holds is copied into
/// allocations of its own, once, when it is stored.
fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // Always valid (the bytes of a valid value); kept shared if ever not.
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        owned.append(name.clone(), copy);
    }
    owned
}

impl Storage for MemoryStore {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        // The digest covers the route name, so it alone identifies the entry.
        let Some(slot) = self.entries.get(&key.digest) else {
            return Ok(None);
        };
        if slot.expires_at_ms <= now_ms() {
            self.remove(&key.digest, &slot);
            return Ok(None);
        }
        let standing = {
            let tags = self.read_tags();
            let pairs = slot.entry.tags.iter().map(|(tag, was)| {
                (
                    *was,
                    Some(tags.tokens.get(tag).copied().unwrap_or(UNPURGED)),
                )
            });
            tags::judge(pairs, slot.entry.meta.fill_started_us)
        };
        match standing {
            Standing::Invalid => {
                self.remove(&key.digest, &slot);
                Ok(None)
            }
            standing => Ok(Some(Found {
                entry: slot.entry.clone(),
                standing,
            })),
        }
    }

    async fn store(&self, key: &ObjectKey, new: NewEntry) -> Result<StoreOutcome, StoreError> {
        let tokens: Vec<Token> = {
            let mut tags = self.write_tags();
            let tokens: Vec<Token> = new
                .tags
                .iter()
                .map(|tag| tags.tokens.get(tag).copied().unwrap_or(UNPURGED))
                .collect();
            if tags::may_store(&tokens, new.meta.fill_started_us).is_err() {
                return Ok(StoreOutcome::PurgedDuringFill);
            }
            for tag in &new.tags {
                *tags.stored_since_purge.entry(*tag).or_default() += 1;
            }
            tokens
        };
        let expires_at_ms = new.meta.stored_at_ms + new.meta.storage_lifetime_secs() * 1000;
        let entry = Entry {
            status: new.status,
            headers: owned_headers(&new.headers),
            body: Bytes::copy_from_slice(&new.body),
            meta: new.meta,
            tags: new.tags.into_iter().zip(tokens).collect(),
        };
        let weight = entry.weight() as u64;
        let slot = Arc::new(Slot {
            entry,
            expires_at_ms,
            weight,
        });
        let gone = self.entries.insert_with_lifecycle(key.digest, slot);
        self.forget(&gone);
        Ok(StoreOutcome::Stored)
    }

    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        let now = tags::now_us();
        let mut state = self.write_tags();
        let mut affected = 0;
        for tag in tags {
            // Here a tag without a token was never purged (tokens are never dropped), so
            // its entries recorded `UNPURGED`: purge that, keeping its lineage.
            let previous = state.tokens.get(tag).copied().unwrap_or(UNPURGED);
            state
                .tokens
                .insert(*tag, Token::purged(Some(previous), now, soft));
            affected += state.stored_since_purge.remove(tag).unwrap_or(0);
        }
        Ok(affected)
    }

    fn health(&self) -> StoreHealth {
        let (entries, bytes) = self.usage();
        StoreHealth {
            kind: "memory",
            up: true,
            detail: Some(format!(
                "{entries} entries, {bytes} of {} bytes",
                self.budget
            )),
            memory_tier: None,
            errors: 0,
            pending_purges: 0,
            pending_overflow: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn meets_the_storage_contract() {
        let s = MemoryStore::new(DEFAULT_BUDGET);
        contract::stores_and_finds(&s).await;
        contract::tag_purge_is_exact(&s).await;
        contract::a_fill_that_straddles_a_purge_is_not_stored(&s).await;
        contract::soft_purge_leaves_a_stale_entry(&s).await;
        contract::prefix_purge_reaches_longer_keys_only(&s).await;
    }

    fn entry(bytes: usize, tags: Vec<TagId>) -> NewEntry {
        contract::entry(bytes::Bytes::from(vec![b'x'; bytes]), tags)
    }

    fn repo(i: usize) -> ObjectKey {
        ObjectKey::derive("r", &["repo", &i.to_string()], &[])
    }

    async fn store_repo(s: &MemoryStore, i: usize, bytes: usize) {
        let k = repo(i);
        let tags = k.implicit_tags.clone();
        s.store(&k, entry(bytes, tags)).await.unwrap();
    }

    /// A 1 KB body and a header cut from a 1 MiB buffer, as hyper's read buffer hands them out:
    /// what the tier holds is a copy of their own, so the buffer is not pinned behind a weight
    /// of 1 KB.
    #[tokio::test]
    async fn entries_hold_their_own_bytes_not_the_buffers_they_were_cut_from() {
        let s = MemoryStore::new(DEFAULT_BUDGET);
        let buffer = bytes::Bytes::from(vec![b'x'; 1 << 20]);
        let mut new = entry(0, Vec::new());
        new.body = buffer.slice(4096..5120);
        let value = HeaderValue::from_maybe_shared(buffer.slice(0..16)).unwrap();
        new.headers.insert("x-cut", value);
        s.store(&repo(1), new).await.unwrap();

        let found = s.lookup(&repo(1)).await.unwrap().expect("stored");
        let inside = |p: *const u8| buffer.as_ptr_range().contains(&p);
        assert_eq!(found.entry.body.len(), 1024);
        assert!(
            !inside(found.entry.body.as_ptr()),
            "the body still points into the buffer"
        );
        let header = found.entry.headers.get("x-cut").expect("kept");
        assert_eq!(header.as_bytes(), &[b'x'; 16]);
        assert!(
            !inside(header.as_bytes().as_ptr()),
            "the header still points into the buffer"
        );
    }

    #[tokio::test]
    async fn the_budget_bounds_the_bytes_held() {
        let s = MemoryStore::new(64 * 1024);
        for i in 0..500 {
            store_repo(&s, i, 1000).await;
        }
        let (entries, bytes) = s.usage();
        assert!(bytes <= 64 * 1024, "{bytes} bytes held");
        assert!(entries < 500 && entries > 30, "{entries} entries held");
    }

    #[tokio::test]
    async fn a_scan_of_one_time_keys_does_not_push_out_the_popular_ones() {
        // Room for about 50 entries (1,544 bytes each): 10 popular repositories, then a crawl of 2,000 others,
        // each stored once, while the popular ones keep being read.
        let s = MemoryStore::new(50 * 1544);
        for i in 0..10 {
            store_repo(&s, i, 1000).await;
        }
        for n in 0..2000 {
            store_repo(&s, 1000 + n, 1000).await;
            if n % 20 == 0 {
                for i in 0..10 {
                    s.lookup(&repo(i)).await.unwrap();
                }
            }
        }
        let mut kept = 0;
        for i in 0..10 {
            kept += usize::from(s.lookup(&repo(i)).await.unwrap().is_some());
        }
        assert_eq!(kept, 10, "popular entries kept through the crawl");
        // The crawl's own entries came and went: most of them are not held.
        let mut crawled = 0;
        for n in 0..2000 {
            crawled += usize::from(s.lookup(&repo(1000 + n)).await.unwrap().is_some());
        }
        assert!(crawled < 50, "{crawled} crawled entries held");
    }

    #[tokio::test]
    async fn the_tag_maps_hold_only_what_is_held() {
        let s = MemoryStore::new(64 * 1024);
        for i in 0..5000 {
            store_repo(&s, i, 1000).await;
        }
        let (entries, _) = s.usage();
        let tags = s.read_tags();
        // Two implicit tags per entry (its key, and the prefix "repo"); none ever purged.
        assert!(tags.tokens.is_empty());
        assert!(
            tags.stored_since_purge.len() <= entries + 1,
            "{} counts for {entries} entries",
            tags.stored_since_purge.len()
        );
        let prefix = crate::store::key::prefix_tag("r", &["repo"]);
        assert_eq!(
            tags.stored_since_purge.get(&prefix),
            Some(&(entries as u64))
        );
    }

    #[tokio::test]
    async fn a_purge_counts_the_entries_it_reaches() {
        let s = MemoryStore::new(DEFAULT_BUDGET);
        let tag = crate::store::key::tag_id("repo:1");
        let store = |i: usize| {
            let k = repo(i);
            let mut tags = k.implicit_tags.clone();
            tags.push(tag);
            (k, entry(10, tags))
        };
        for i in 0..5 {
            let (k, e) = store(i);
            s.store(&k, e).await.unwrap();
        }
        // Stored again under the same key: replaced, counted once.
        let (k, e) = store(0);
        s.store(&k, e).await.unwrap();
        assert_eq!(s.purge(&[tag], false).await.unwrap(), 5);
        assert_eq!(s.purge(&[tag], false).await.unwrap(), 0);
        for i in 0..5 {
            assert!(s.lookup(&repo(i)).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn an_expired_entry_is_not_found() {
        let s = MemoryStore::new(DEFAULT_BUDGET);
        let k = repo(1);
        let mut e = entry(10, k.implicit_tags.clone());
        e.meta.ttl = 1;
        e.meta.stored_at_ms -= 2_000;
        s.store(&k, e).await.unwrap();
        assert!(s.lookup(&k).await.unwrap().is_none());
        assert_eq!(s.usage().0, 0);
    }
}
