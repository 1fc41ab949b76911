//! The embedded store: entries in this process, bounded by a byte budget.
//!
//! Used when no Redis is configured (a laptop, a single instance), and as the reference
//! implementation of [`Storage`]. A `std::sync::Mutex` guards the maps: every critical section is
//! a few hash-map operations and never spans an `.await`, so an async mutex would only add cost.
//! Eviction is oldest-stored first once the budget is exceeded (the memory tier of the
//! performance work will bring a smarter admission policy).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::entry::Entry;
use super::key::{Digest, ObjectKey, TagId};
use super::tags::{self, Token};
use super::{Found, NewEntry, Standing, Storage, StoreError, StoreHealth, StoreOutcome, now_ms};

/// Default budget: 256 MiB of entries.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;

pub struct MemoryStore {
    inner: Mutex<Inner>,
    budget: usize,
}

struct Slot {
    entry: Entry,
    expires_at_ms: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(String, Digest), Slot>,
    tokens: HashMap<TagId, Token>,
    /// Entries stored per tag since its last purge.
    stored_since_purge: HashMap<TagId, u64>,
    /// Insertion order, for eviction; may hold keys already replaced or removed.
    order: VecDeque<(String, Digest)>,
    bytes: usize,
}

impl MemoryStore {
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            budget,
        }
    }

    /// Drops every entry (the memory tier does after missing invalidations). Tag tokens stay:
    /// they only ever make entries invalid.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.stored_since_purge.clear();
        inner.order.clear();
        inner.bytes = 0;
    }

    /// Entries held and the bytes they weigh.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still consistent (every
        // operation is a single insert/remove), so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn remove(&mut self, id: &(String, Digest)) {
        if let Some(slot) = self.entries.remove(id) {
            self.bytes -= slot.entry.weight();
        }
    }

    fn evict_to(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            self.remove(&id);
        }
        // Keep the order queue from growing without bound through replaced keys.
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order.retain(|id| entries.contains_key(id));
        }
    }
}

impl Storage for MemoryStore {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        let id = (key.route.clone(), key.digest);
        let now = now_ms();
        let mut inner = self.lock();
        let Some(slot) = inner.entries.get(&id) else {
            return Ok(None);
        };
        if slot.expires_at_ms <= now {
            inner.remove(&id);
            return Ok(None);
        }
        let recorded: Vec<Token> = slot.entry.tags.iter().map(|(_, t)| *t).collect();
        let current: Vec<Option<Token>> = slot
            .entry
            .tags
            .iter()
            .map(|(tag, _)| inner.tokens.get(tag).copied())
            .collect();
        match tags::standing(&recorded, &current, slot.entry.meta.fill_started_us) {
            Standing::Invalid => {
                inner.remove(&id);
                Ok(None)
            }
            standing => Ok(Some(Found {
                entry: slot.entry.clone(),
                standing,
            })),
        }
    }

    async fn store(&self, key: &ObjectKey, new: NewEntry) -> Result<StoreOutcome, StoreError> {
        let id = (key.route.clone(), key.digest);
        let mut inner = self.lock();
        let tokens: Vec<Token> = new
            .tags
            .iter()
            .map(|tag| *inner.tokens.entry(*tag).or_insert_with(Token::new_unpurged))
            .collect();
        if tags::may_store(&tokens, new.meta.fill_started_us).is_err() {
            return Ok(StoreOutcome::PurgedDuringFill);
        }
        for tag in &new.tags {
            *inner.stored_since_purge.entry(*tag).or_default() += 1;
        }
        let entry = Entry {
            status: new.status,
            headers: new.headers,
            body: new.body,
            meta: new.meta,
            tags: new.tags.into_iter().zip(tokens).collect(),
        };
        let expires_at_ms = new.meta.stored_at_ms + new.meta.storage_lifetime_secs() * 1000;
        inner.remove(&id);
        inner.bytes += entry.weight();
        inner.entries.insert(
            id.clone(),
            Slot {
                entry,
                expires_at_ms,
            },
        );
        inner.order.push_back(id);
        inner.evict_to(self.budget);
        Ok(StoreOutcome::Stored)
    }

    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        let now = tags::now_us();
        let mut inner = self.lock();
        let mut affected = 0;
        for tag in tags {
            let previous = inner.tokens.get(tag).copied();
            inner
                .tokens
                .insert(*tag, Token::purged(previous, now, soft));
            affected += inner.stored_since_purge.remove(tag).unwrap_or(0);
        }
        Ok(affected)
    }

    fn health(&self) -> StoreHealth {
        let inner = self.lock();
        StoreHealth {
            kind: "memory",
            up: true,
            detail: Some(format!(
                "{} entries, {} of {} bytes",
                inner.entries.len(),
                inner.bytes,
                self.budget
            )),
            memory_tier: None,
            errors: 0,
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

    #[tokio::test]
    async fn the_budget_evicts_oldest_first() {
        let s = MemoryStore::new(2000);
        let mut keys = Vec::new();
        for i in 0..10 {
            let k = ObjectKey::derive("r", &["k", &i.to_string()], &[]);
            let e = NewEntry {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::from(vec![b'x'; 500]),
                meta: crate::store::EntryMeta {
                    stored_at_ms: now_ms(),
                    fill_started_us: tags::now_us(),
                    initial_age: 0,
                    ttl: 60,
                    stale_while_revalidate: 0,
                    stale_if_error: 0,
                    keep: 0,
                    vary_marker: false,
                },
                tags: k.implicit_tags.clone(),
            };
            s.store(&k, e).await.unwrap();
            keys.push(k);
        }
        assert!(s.lock().bytes <= 2000);
        assert!(s.lookup(&keys[0]).await.unwrap().is_none());
        assert!(s.lookup(&keys[9]).await.unwrap().is_some());
    }
}
