//! The Lua scripts the Redis store runs, each doing in one atomic step what would otherwise
//! take two round trips or leave a window between a read and a write.
//!
//! The code is in the `.lua` files beside this one (each with a header naming its `KEYS` and
//! `ARGV`); what each script guarantees is said here, where the Rust code that calls it can link
//! to it.

/// Replaces a tag's token atomically, and takes the count of entries stored with the tag since
/// its previous purge. A soft purge keeps the time of the last hard purge, and every purge keeps
/// the token's lineage ([`crate::store::tags`]); a token that is missing or unreadable (evicted,
/// or written by an older version) is replaced as by a hard purge, with a new lineage, so a soft
/// purge never brings back what a hard purge or the token's loss invalidated.
/// ARGV: now_us, soft ('1'/'0'), nonce, marker TTL, a fresh lineage.
pub(super) const PURGE_SCRIPT: &str = include_str!("purge.lua");

/// A hit in one round trip (single Redis only): the entry's value and the current tokens of the
/// tags recorded in it. The script reads the tag ids at their fixed place in the value's header
/// (see `entry.rs`: `n_tags` at byte 43, then `tag:[u8;16] token_len:u8 token` each); a value it
/// cannot read is answered alone, and the host decodes it (a corrupt value is then deleted).
/// `ARGV[1]` is the token key prefix (`<prefix>tag:`). Answer: `{value, token...}`, or nil.
/// Not for a cluster, where the tokens live in other slots.
///
/// Routes whose entries carry only implicit tags (their key and its prefixes, which the host
/// derives from the key before it asks) need no script: one `MGET` of the value and those tags'
/// tokens answers it, and costs Redis about half the CPU of the script (which copies the value
/// into Lua and formats each tag's key). The store learns per route which kind it serves
/// ([`super::RedisStore`]'s lookup); a wrong guess costs one more round trip, never a wrong
/// answer.
pub(super) const LOOKUP_SCRIPT: &str = include_str!("lookup.lua");

/// A store in one round trip, when the host knows (or guesses) its tags' current tokens
/// ([`super::known_tokens`]): reads and creates each tag's token and counts the entry as the
/// store pipeline does, then writes the entry only if every token is the one the entry records,
/// all in one atomic step. So a store it writes is exactly one the two-step path would have
/// written (the host checked the recorded tokens against the fill's start before it asked); when
/// a token differs it writes nothing and answers the tokens it found, and the host goes on as
/// the two-step path does after its first round trip. Single Redis only: a tag's token lives in
/// its own slot in a cluster. A fill that holds a fleet lease (`lease.rs`) ends it in the same
/// step once the entry is written, as the lease script's `finish` does: the outcome
/// `done:stored` replaces the lease if this instance still holds it, and is announced. KEYS: the
/// entry, then each tag's token and counter, then the lease if any. ARGV: the value, its life,
/// the tokens' life, then per tag the recorded token and a fresh one, then with a lease its
/// holder, the outcome's life and the fill news channel. Answer: `{written ('1'/'0'), previous
/// token...}`.
pub(super) const STORE_SCRIPT: &str = include_str!("store.lua");

/// A fill lease's three steps (`lease.rs`), each one atomic read and write of the lease key, so
/// that two instances never both take a lease, and a holder whose lease expired and was taken
/// over neither renews nor ends the new holder's. ARGV: the step, the holder's id, then the
/// step's own (see the file's header).
pub(super) const LEASE_SCRIPT: &str = include_str!("lease.lua");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::tag_id;
    use crate::store::tags::Token;

    /// The lookup script reads tag ids at fixed offsets of the value: pin them.
    #[test]
    fn the_lookup_script_reads_the_entry_layout() {
        let mut entry = crate::store::entry::tests::sample();
        entry
            .tags
            .push((tag_id("all-repos"), Token::new_unpurged()));
        let value = entry.encode();
        assert!(LOOKUP_SCRIPT.contains("'LRD2'") && value.starts_with(b"LRD2"));
        // Lua's 1-based bytes 44-45 are n_tags, then each tag at 46, 46 + 17 + token_len, ...
        assert_eq!(u16::from_le_bytes([value[43], value[44]]), 2);
        assert_eq!(value[45..61], entry.tags[0].0.0);
        let next = 45 + 17 + usize::from(value[61]);
        assert_eq!(value[next..next + 16], entry.tags[1].0.0);
    }

    /// The purge script takes the token's form from `tags.rs`: a token it wrote must read back.
    #[test]
    fn the_purge_script_writes_tokens_in_the_form_tags_reads() {
        assert!(PURGE_SCRIPT.contains(r"'^(%d+)%.%d+%.%x+%.(%x+)$'"));
        let text = Token::purged(None, 1_000, false).encode();
        let fields: Vec<&str> = text.split('.').collect();
        assert_eq!(fields.len(), 4, "{text}");
        assert!(
            fields[..2]
                .iter()
                .all(|f| f.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(
            fields[2..]
                .iter()
                .all(|f| f.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
