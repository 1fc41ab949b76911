//! Purges that Redis has not acknowledged yet: kept, journaled, and applied when it answers.
//!
//! A purge is the gateway's promise that what a write changed is never served again. When
//! Redis cannot take it (down, paused, restarting, a timeout), dropping it would break that
//! promise for the rest of the entries' lives once Redis is back. So the Redis store keeps the
//! purge here instead, and:
//!
//! - **retries it** in the background with a short backoff until Redis acknowledges it
//!   (token replaced and announced to every instance);
//! - **serves nothing from Redis** while any purge is pending: the entries it would
//!   invalidate are still valid there, and this instance cannot tell which ones they are
//!   without reading them (the memory tier was purged at once, so it keeps serving);
//! - **journals it** in the state directory (`cache.state_dir`), so a gateway restarted
//!   during an outage still applies it;
//! - is **bounded**: past `cache.max_pending_purges` tags the set *overflows*: the instance
//!   serves nothing from the cache at all, and once Redis answers it drops every entry under
//!   the store's prefix (and tells every instance's memory tier to drop its own) instead of
//!   replaying tags it could not keep.
//!
//! The journal is a small text file rewritten whole (temporary file, fsync, rename) on every
//! change: `h <tag> <purged_at_us>` or `s <tag> <purged_at_us>` lines, and `overflow` when
//! the set overflowed. A journal that cannot be read is treated as an overflow: losing a
//! purge is the one outcome this module exists to prevent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::TagId;
use super::key::Digest;

/// A pending purge of one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub soft: bool,
    /// When the purge was asked for (µs since the epoch); a later one of the same tag replaces
    /// it, and a hard one is never turned soft.
    pub at_us: u64,
}

/// What the drainer is to apply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub hard: Vec<(TagId, u64)>,
    pub soft: Vec<(TagId, u64)>,
    /// Drop every entry: the set overflowed.
    pub flush: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.hard.is_empty() && self.soft.is_empty() && !self.flush
    }
}

#[derive(Default)]
struct State {
    tags: HashMap<TagId, Pending>,
    overflow: bool,
}

/// The pending set of one Redis store.
pub struct PendingPurges {
    state: Mutex<State>,
    /// Whether anything is pending: the only thing a lookup reads, one relaxed load.
    any: AtomicBool,
    overflow: AtomicBool,
    max: usize,
    journal: Option<PathBuf>,
    /// Serialises journal writes, so the last writer writes the latest state.
    writing: Mutex<()>,
    /// Woken when a purge is added.
    pub added: tokio::sync::Notify,
}

/// The journal's file name in the state directory; the store's key prefix is part of it, so
/// gateways sharing a state directory for different Redis prefixes keep separate journals.
pub fn journal_path(state_dir: &Path, prefix: &str) -> PathBuf {
    let safe: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    state_dir.join(format!("pending-purges-{safe}"))
}

impl PendingPurges {
    /// An empty set of at most `max` tags, journaled at `journal` (none: not journaled), and
    /// what an earlier process left in that journal.
    pub fn open(journal: Option<PathBuf>, max: usize) -> Self {
        let set = Self {
            state: Mutex::new(State::default()),
            any: AtomicBool::new(false),
            overflow: AtomicBool::new(false),
            max: max.max(1),
            journal,
            writing: Mutex::new(()),
            added: tokio::sync::Notify::new(),
        };
        if let Some(path) = &set.journal {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let mut state = set.lock();
                    match parse(&text) {
                        Some(loaded) => *state = loaded,
                        None => {
                            tracing::error!(journal = %path.display(), "the journal of pending purges cannot be read; every cached entry will be dropped when Redis answers");
                            state.overflow = true;
                        }
                    }
                    if state.tags.len() > set.max {
                        state.tags.clear();
                        state.overflow = true;
                    }
                    set.publish(&state);
                    if !state.tags.is_empty() || state.overflow {
                        tracing::warn!(
                            tags = state.tags.len(),
                            overflow = state.overflow,
                            "purges left pending by an earlier run; nothing is served from Redis until they are applied"
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(journal = %path.display(), error = %e, "cannot read the journal of pending purges; every cached entry will be dropped when Redis answers");
                    let mut state = set.lock();
                    state.overflow = true;
                    set.publish(&state);
                }
            }
        }
        set
    }

    /// Whether any purge is pending (cheap: for every lookup).
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Whether the set overflowed: nothing may be served from the cache until it drains.
    pub fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::Relaxed)
    }

    /// Tags pending.
    pub fn len(&self) -> usize {
        self.lock().tags.len()
    }

    pub fn is_empty(&self) -> bool {
        !self.any()
    }

    /// Keeps a purge of `tags` made at `at_us`, and journals it. Returns once the journal is
    /// written (or failed to be: then the purge is still kept in memory, and logged).
    pub async fn add(&self, tags: &[TagId], soft: bool, at_us: u64) {
        {
            let mut state = self.lock();
            for tag in tags {
                if state.overflow {
                    break;
                }
                let merged = match state.tags.get(tag) {
                    Some(p) => Pending {
                        soft: soft && p.soft,
                        at_us: at_us.max(p.at_us),
                    },
                    None if state.tags.len() >= self.max => {
                        tracing::error!(
                            max = self.max,
                            "too many pending purges: serving nothing from the cache until Redis answers, then dropping every entry"
                        );
                        state.tags.clear();
                        state.overflow = true;
                        break;
                    }
                    None => Pending { soft, at_us },
                };
                state.tags.insert(*tag, merged);
            }
            self.publish(&state);
        }
        self.added.notify_one();
        self.write_journal().await;
    }

    /// What is pending now.
    pub fn batch(&self) -> Batch {
        let state = self.lock();
        let mut batch = Batch {
            flush: state.overflow,
            ..Batch::default()
        };
        for (tag, p) in &state.tags {
            let list = if p.soft {
                &mut batch.soft
            } else {
                &mut batch.hard
            };
            list.push((*tag, p.at_us));
        }
        batch
    }

    /// Forgets what `done` applied, unless a newer purge of the same tag came meanwhile.
    pub async fn applied(&self, done: &Batch) {
        {
            let mut state = self.lock();
            for (tag, at_us) in done.hard.iter().chain(&done.soft) {
                if state.tags.get(tag).is_some_and(|p| p.at_us <= *at_us) {
                    state.tags.remove(tag);
                }
            }
            if done.flush {
                state.overflow = false;
            }
            self.publish(&state);
        }
        self.write_journal().await;
    }

    fn publish(&self, state: &State) {
        self.overflow.store(state.overflow, Ordering::Relaxed);
        self.any
            .store(state.overflow || !state.tags.is_empty(), Ordering::Relaxed);
    }

    // Held for map operations only, never across an await or a file write.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites the journal with the current state, off the async threads.
    async fn write_journal(&self) {
        let Some(path) = self.journal.clone() else {
            return;
        };
        // The state is read under the writing lock, so concurrent writers finish with the
        // newest state on disk whatever order they run in.
        let text = {
            let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
            render(&self.lock())
        };
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &text)).await;
        let error = match written {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(%error, "cannot write the journal of pending purges; they are kept in memory only");
    }
}

fn render(state: &State) -> String {
    let mut text = String::with_capacity(state.tags.len() * 52 + 16);
    if state.overflow {
        text.push_str("overflow\n");
    }
    for (tag, p) in &state.tags {
        let kind = if p.soft { 's' } else { 'h' };
        text.push_str(&format!("{kind} {tag} {}\n", p.at_us));
    }
    text
}

/// Reads a journal; `None` if any line is not understood.
fn parse(text: &str) -> Option<State> {
    let mut state = State::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line == "overflow" {
            state.overflow = true;
            continue;
        }
        let mut fields = line.split(' ');
        let soft = match fields.next()? {
            "h" => false,
            "s" => true,
            _ => return None,
        };
        let tag = parse_digest(fields.next()?)?;
        let at_us = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        state.tags.insert(tag, Pending { soft, at_us });
    }
    Some(state)
}

/// A tag id from its 32 hex digits.
pub fn parse_digest(hex: &str) -> Option<Digest> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Digest(id))
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if text.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::tag_id;

    #[tokio::test]
    async fn a_pending_purge_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "larder:");
        let set = PendingPurges::open(Some(path.clone()), 10);
        assert!(!set.any());
        set.add(&[tag_id("repo:1"), tag_id("all-repos")], false, 5)
            .await;
        set.add(&[tag_id("repo:2")], true, 6).await;
        drop(set);

        let again = PendingPurges::open(Some(path.clone()), 10);
        assert!(again.any() && !again.overflowed());
        let mut batch = again.batch();
        batch.hard.sort();
        let mut expected = vec![(tag_id("repo:1"), 5), (tag_id("all-repos"), 5)];
        expected.sort();
        assert_eq!(batch.hard, expected);
        assert_eq!(batch.soft, vec![(tag_id("repo:2"), 6)]);

        again.applied(&batch).await;
        assert!(!again.any());
        assert!(!path.exists(), "an empty set leaves no journal");
    }

    #[tokio::test]
    async fn hard_wins_over_soft_and_a_newer_purge_outlives_an_older_drain() {
        let set = PendingPurges::open(None, 10);
        let tag = tag_id("repo:1");
        set.add(&[tag], true, 1).await;
        set.add(&[tag], false, 2).await;
        set.add(&[tag], true, 3).await;
        let batch = set.batch();
        assert_eq!(batch.hard, vec![(tag, 3)]);
        assert!(batch.soft.is_empty());
        // Another purge of the tag arrives while the batch is being applied.
        set.add(&[tag], false, 4).await;
        set.applied(&batch).await;
        assert!(set.any());
        assert_eq!(set.batch().hard, vec![(tag, 4)]);
    }

    #[tokio::test]
    async fn overflow_keeps_the_promise_by_flushing() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "p:");
        let set = PendingPurges::open(Some(path.clone()), 2);
        set.add(&[tag_id("a"), tag_id("b")], false, 1).await;
        assert!(!set.overflowed());
        set.add(&[tag_id("c")], false, 2).await;
        assert!(set.overflowed() && set.any());
        let batch = set.batch();
        assert!(batch.flush);
        // Survives a restart too.
        assert!(PendingPurges::open(Some(path.clone()), 2).overflowed());
        set.applied(&batch).await;
        assert!(!set.any() && !set.overflowed());
    }

    #[test]
    fn an_unreadable_journal_counts_as_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "p:");
        std::fs::write(&path, "h not-a-tag 12\n").unwrap();
        let set = PendingPurges::open(Some(path), 10);
        assert!(set.overflowed() && set.any());
    }
}
