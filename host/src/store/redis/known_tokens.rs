//! The tag tokens this instance last saw in Redis, so that a store can usually be one round trip.
//!
//! A store records its tags' current tokens in the entry. Without knowing them, it takes two
//! round trips: read (and create) the tokens, then write the entry. Knowing them, it writes the
//! entry with the tokens it expects in one script that checks them atomically
//! ([`super::scripts::STORE_SCRIPT`]): the entry is written only if every token is still the one
//! it records, so a stale guess costs the second round trip, never a wrong entry.
//!
//! What is remembered: the tokens a miss's lookup read (the key's implicit tags, fetched with the
//! entry that was not there), and those a store found or created. A purge by this instance
//! forgets its tags; other instances' purges are not followed (the store's check catches them).
//! Bounded: at most [`CAPACITY`] tags, the least used evicted first.

use crate::store::key::TagId;
use crate::store::tags::Token;

/// Tags remembered. A few MiB at most; a fleet's working set of tags is usually far smaller.
const CAPACITY: usize = 32_768;

pub(super) struct KnownTokens {
    tokens: quick_cache::sync::Cache<TagId, Token>,
}

impl Default for KnownTokens {
    fn default() -> Self {
        Self {
            tokens: quick_cache::sync::Cache::new(CAPACITY),
        }
    }
}

impl KnownTokens {
    /// The token `tag` had when last seen, if it had one.
    pub(super) fn get(&self, tag: &TagId) -> Option<Token> {
        self.tokens.get(tag)
    }

    /// `tag` was seen with `token` (`None`: it had none).
    pub(super) fn saw(&self, tag: TagId, token: Option<Token>) {
        match token {
            Some(token) => self.tokens.insert(tag, token),
            None => {
                self.tokens.remove(&tag);
            }
        }
    }

    /// `tags` were purged: their tokens changed.
    pub(super) fn forget(&self, tags: &[TagId]) {
        for tag in tags {
            self.tokens.remove(tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::tag_id;

    #[test]
    fn remembers_what_it_saw_and_forgets_what_was_purged() {
        let known = KnownTokens::default();
        let (a, b) = (tag_id("a"), tag_id("b"));
        let t = Token::new_unpurged();
        known.saw(a, Some(t));
        known.saw(b, Some(t));
        assert_eq!(known.get(&a), Some(t));
        known.saw(b, None);
        assert_eq!(known.get(&b), None, "a tag seen without a token has none");
        known.forget(&[a]);
        assert_eq!(known.get(&a), None);
    }
}
