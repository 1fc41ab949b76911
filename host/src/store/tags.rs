//! Invalidation by generation tokens: why a purge of 100,000 entries costs one write.
//!
//! Every tag (explicit, exact-key or key-prefix) has a *token* in the store. An entry records the
//! tokens of all its tags as they were when it was stored. A purge replaces a tag's token; from
//! then on, every entry that recorded the old token no longer matches and is treated as a miss.
//! Nothing is scanned or deleted: the orphaned entries expire by TTL or are evicted.
//!
//! Three properties follow, and are pinned down by the tests below:
//! - **No resurrection.** A fill records when it started. When it is about to be stored it reads
//!   its tags' tokens; a token purged at or after the fill started refuses the store. A purge that
//!   lands between that read and the write changes the token, so the entry fails validation on
//!   its first read. A response fetched before a re-analysis is never served after it.
//! - **Eviction-safe.** A token evicted or expired from Redis reads as missing, and an entry whose
//!   token is missing is invalid: losing index data costs misses, never stale answers.
//! - **Soft purge.** A token remembers the time of the last hard purge and of the last purge of
//!   either kind. An entry stored after the last hard purge but before a soft one is *stale*,
//!   not gone.
//! - **Soft never undoes hard.** A token also carries a *lineage*, fixed when the token is
//!   created and kept by every purge. Only an entry that recorded a token of the current lineage
//!   can be judged soft-purged; a token lost (evicted) and created anew has a new lineage, so
//!   entries that its loss invalidated stay invalid through any later soft purge. A soft purge
//!   that finds no token at all counts as a hard one: whatever the lost token guarded is gone.
//!
//! Tokens are text (`<hard_us>.<any_us>.<nonce>.<lineage>`) so that an operator can read them
//! with `redis-cli GET` and a Lua script can update them atomically.

use std::time::{SystemTime, UNIX_EPOCH};

/// One tag's generation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Token {
    /// Microseconds since the Unix epoch of the last hard purge (0: never).
    pub hard_us: u64,
    /// Microseconds since the Unix epoch of the last purge, hard or soft (0: never).
    pub any_us: u64,
    /// Random, so that a token recreated after eviction never equals an old one.
    pub nonce: u64,
    /// Random when the token is created, kept by every purge: tells a token that was purged
    /// from one that was lost and created again.
    pub lineage: u64,
}

/// How an entry stands against the current tokens of its tags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Standing {
    /// All tokens are as recorded.
    Current,
    /// Soft-purged after it was stored: usable as a stale entry only.
    SoftPurged,
    /// Hard-purged, or a token is gone: unusable.
    Invalid,
}

/// Why a fill may not be stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PurgedDuringFill;

impl Token {
    /// The token of a tag that has never been purged (or whose token was lost).
    pub fn new_unpurged() -> Self {
        Self {
            hard_us: 0,
            any_us: 0,
            nonce: rand::random(),
            lineage: rand::random(),
        }
    }

    /// The token after a purge at `now_us`, given the current one. With no current token (it
    /// was lost), even a soft purge is hard: the entries the lost token guarded are already
    /// invalid, and must stay so.
    pub fn purged(previous: Option<Token>, now_us: u64, soft: bool) -> Self {
        let (hard_us, lineage) = match previous {
            Some(t) if soft => (t.hard_us, t.lineage),
            Some(t) => (now_us, t.lineage),
            None => (now_us, rand::random()),
        };
        Self {
            hard_us,
            any_us: now_us,
            nonce: rand::random(),
            lineage,
        }
    }

    pub fn encode(&self) -> String {
        format!(
            "{}.{}.{:x}.{:x}",
            self.hard_us, self.any_us, self.nonce, self.lineage
        )
    }

    pub fn decode(text: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(text).ok()?;
        let mut it = text.split('.');
        let hard_us = it.next()?.parse().ok()?;
        let any_us = it.next()?.parse().ok()?;
        let nonce = u64::from_str_radix(it.next()?, 16).ok()?;
        let lineage = u64::from_str_radix(it.next()?, 16).ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Self {
            hard_us,
            any_us,
            nonce,
            lineage,
        })
    }
}

/// Judges an entry that recorded `recorded` (one per tag) against the `current` tokens of the
/// same tags, in the same order.
pub fn standing(recorded: &[Token], current: &[Option<Token>], fill_started_us: u64) -> Standing {
    debug_assert_eq!(recorded.len(), current.len());
    judge(
        recorded.iter().copied().zip(current.iter().copied()),
        fill_started_us,
    )
}

/// [`standing`] over (recorded, current) pairs, for callers that hold them in another shape (the
/// memory store reads current tokens from its map as it goes, allocating nothing).
pub fn judge(
    pairs: impl IntoIterator<Item = (Token, Option<Token>)>,
    fill_started_us: u64,
) -> Standing {
    let mut result = Standing::Current;
    for (was, now) in pairs {
        match now {
            Some(now) if now == was => {}
            // Changed by a soft purge after the fill started, and no hard purge since: stale.
            // A token of another lineage was lost and created again since: invalid.
            Some(now)
                if now.lineage == was.lineage
                    && now.hard_us < fill_started_us
                    && now.any_us >= fill_started_us =>
            {
                result = Standing::SoftPurged
            }
            _ => return Standing::Invalid,
        }
    }
    result
}

/// Whether a fill that started at `fill_started_us` may be stored, given its tags' tokens read
/// just before the write.
pub fn may_store(current: &[Token], fill_started_us: u64) -> Result<(), PurgedDuringFill> {
    if current.iter().any(|t| t.any_us >= fill_started_us) {
        Err(PurgedDuringFill)
    } else {
        Ok(())
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_as_text() {
        let t = Token::purged(None, 1_700_000_000_000_000, false);
        assert_eq!(Token::decode(t.encode().as_bytes()), Some(t));
        assert_eq!(Token::decode(b"1.2"), None);
        assert_eq!(Token::decode(b"1.2.3"), None);
        assert_eq!(Token::decode(b"1.2.3.4.5"), None);
        assert_eq!(Token::decode(b"garbage"), None);
    }

    #[test]
    fn an_untouched_entry_is_current() {
        let t = Token::new_unpurged();
        assert_eq!(standing(&[t], &[Some(t)], 10), Standing::Current);
    }

    #[test]
    fn a_hard_purge_after_the_store_invalidates() {
        let t = Token::new_unpurged();
        let purged = Token::purged(Some(t), 20, false);
        assert_eq!(standing(&[t], &[Some(purged)], 10), Standing::Invalid);
    }

    #[test]
    fn a_soft_purge_after_the_store_makes_it_stale() {
        let t = Token::new_unpurged();
        let soft = Token::purged(Some(t), 20, true);
        assert_eq!(standing(&[t], &[Some(soft)], 10), Standing::SoftPurged);
        // ...but a hard purge that followed still wins.
        let hard = Token::purged(Some(soft), 30, false);
        assert_eq!(standing(&[t], &[Some(hard)], 10), Standing::Invalid);
    }

    #[test]
    fn a_lost_token_invalidates() {
        let t = Token::new_unpurged();
        assert_eq!(standing(&[t], &[None], 10), Standing::Invalid);
        // Recreated after eviction: a new nonce, never purged, still not the recorded token.
        assert_eq!(
            standing(&[t], &[Some(Token::new_unpurged())], 10),
            Standing::Invalid
        );
    }

    /// A hard purge, then the token is evicted: a soft purge must not bring the hard-purged
    /// entry back as stale, whether it finds no token or one created again by a later store.
    #[test]
    fn soft_never_undoes_hard_when_the_token_was_lost() {
        let stored_with = Token::new_unpurged();
        // The token is gone; the soft purge finds nothing.
        let soft = Token::purged(None, 20, true);
        assert_eq!(
            standing(&[stored_with], &[Some(soft)], 10),
            Standing::Invalid
        );
        // The token was created again by another entry's store, then soft-purged.
        let recreated = Token::new_unpurged();
        let soft = Token::purged(Some(recreated), 20, true);
        assert_eq!(
            standing(&[stored_with], &[Some(soft)], 10),
            Standing::Invalid
        );
        // ...while an entry of the recreated token is only stale.
        assert_eq!(
            standing(&[recreated], &[Some(soft)], 10),
            Standing::SoftPurged
        );
    }

    #[test]
    fn a_purge_during_the_fill_refuses_the_store() {
        let before = Token::purged(None, 5, false);
        assert_eq!(may_store(&[before], 10), Ok(()));
        let during = Token::purged(Some(before), 12, false);
        assert_eq!(may_store(&[before, during], 10), Err(PurgedDuringFill));
        let soft_during = Token::purged(Some(before), 12, true);
        assert_eq!(may_store(&[soft_during], 10), Err(PurgedDuringFill));
    }

    #[test]
    fn one_bad_tag_among_many_decides() {
        let a = Token::new_unpurged();
        let b = Token::new_unpurged();
        let b2 = Token::purged(Some(b), 20, false);
        assert_eq!(
            standing(&[a, b], &[Some(a), Some(b2)], 10),
            Standing::Invalid
        );
    }
}
