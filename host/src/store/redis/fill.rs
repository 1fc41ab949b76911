//! The write side of a fill: reading (and creating) the tokens an entry records.
//!
//! No resurrection: a fill records when it started, and before its entry is written it reads its
//! tags' tokens; a token purged at or after that refuses the store (`tags::may_store`). Reading
//! a token also creates it where missing and makes it outlive the entry, since an entry whose
//! token is gone is invalid. Each tag's counter counts the entry, for the purge's answer.
//!
//! When this instance knows the tokens (`known_tokens.rs`), the read and the write are one
//! script ([`super::scripts::STORE_SCRIPT`]) that writes the entry only if the tokens are still
//! the ones it records; otherwise they are two round trips.

use super::breaker::Breaker;
use super::lease::Lease;
use super::{PURGE_MARKER_TTL_SECS, RedisStore};
use crate::store::StoreError;
use crate::store::cluster::Conn;
use crate::store::entry::Entry;
use crate::store::key::TagId;
use crate::store::tags::{self, Token};

/// What a store's first round trip did, when its tags' tokens were known.
pub(super) enum Known {
    /// The entry is written: every token was the one it records.
    Stored,
    /// Nothing written: each tag's token as it was before (as [`RedisStore::take_tokens`]
    /// answers them); the tokens were created and counted as that would have.
    Changed(Vec<Option<Vec<u8>>>),
    /// Not tried (a cluster, no tags, or a guess that could not be stored anyway): nothing was
    /// read or written.
    Unknown,
}

impl RedisStore {
    /// Writes `entry` in one round trip if its tags' tokens are the ones last seen (or none
    /// where none was seen: this fill creates them, with `fresh`), which it then records, and
    /// then ends the fill's `lease` if it has one. On a single Redis only, on `conn` through
    /// `obj_gate`; the entry lives `life` seconds, its tokens at least `token_life`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_if_known(
        &self,
        obj_key: &str,
        entry: &mut Entry,
        fresh: &[Token],
        (life, token_life): (u64, u64),
        lease: Option<&Lease>,
        obj_gate: &Breaker,
        conn: &mut Conn,
    ) -> Result<Known, StoreError> {
        if self.cluster() || entry.tags.is_empty() {
            return Ok(Known::Unknown);
        }
        for ((tag, token), fresh) in entry.tags.iter_mut().zip(fresh) {
            *token = self.shared.known.get(tag).unwrap_or(*fresh);
        }
        let guessed: Vec<Token> = entry.tags.iter().map(|(_, t)| *t).collect();
        if tags::may_store(&guessed, entry.meta.fill_started_us).is_err() {
            // Purged since the fill started, if the guess is right: let the two steps decide.
            return Ok(Known::Unknown);
        }
        let mut invocation = self.store_script.key(obj_key);
        for (tag, _) in &entry.tags {
            invocation.key(self.tag_key(tag)).key(self.count_key(tag));
        }
        invocation.arg(entry.encode()).arg(life).arg(token_life);
        for (recorded, fresh) in guessed.iter().zip(fresh) {
            invocation.arg(recorded.encode()).arg(fresh.encode());
        }
        let outcome = lease.map(|lease| self.stored_outcome(lease));
        if let Some(outcome) = &outcome {
            invocation
                .key(outcome.key())
                .arg(outcome.holder())
                .arg(&outcome.life_ms)
                .arg(&outcome.channel);
        }
        let mut reply: Vec<Option<Vec<u8>>> = self
            .guarded(obj_gate, invocation.invoke_async(conn))
            .await?;
        if reply.len() != 1 + guessed.len() {
            return Err(StoreError::Unavailable(
                "the store script answered a wrong number of values",
            ));
        }
        if reply[0].as_deref() == Some(b"1") {
            for ((tag, _), token) in entry.tags.iter().zip(guessed) {
                self.shared.known.saw(*tag, Some(token));
            }
            if let Some(outcome) = outcome {
                outcome.ended();
            }
            return Ok(Known::Stored);
        }
        reply.remove(0);
        Ok(Known::Changed(reply))
    }

    /// Each tag's token as it was before this fill (`None` where there was none and `fresh`'s
    /// was set), every token now living `token_life` seconds at least. On a single Redis one
    /// pipeline on `conn`, through `obj_gate`; on a cluster one per tag, through its master's
    /// breaker.
    pub(super) async fn take_tokens(
        &self,
        tags: &[TagId],
        fresh: &[Token],
        token_life: u64,
        obj_gate: &Breaker,
        conn: &mut Conn,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        if !self.cluster() {
            let pipe = self.tag_pipeline(tags, fresh, token_life);
            return self.guarded(obj_gate, pipe.query_async(conn)).await;
        }
        // One pipeline per tag: its token and counter share a slot, other tags do not.
        let per_tag = tags.iter().zip(fresh).map(|(tag, token)| {
            let pipe = self.tag_pipeline(
                std::slice::from_ref(tag),
                std::slice::from_ref(token),
                token_life,
            );
            let gate = self.gate(&self.tag_key(tag));
            async move {
                let mut conn = self.conn(&gate)?;
                let mut prev: Vec<Option<Vec<u8>>> =
                    self.guarded(&gate, pipe.query_async(&mut conn)).await?;
                Ok::<_, StoreError>(prev.pop().flatten())
            }
        });
        futures_util::future::try_join_all(per_tag).await
    }

    /// One pipeline reading (creating where missing) each tag's token and counting the entry;
    /// answers the tokens that were there before. Each tag's commands touch only its two keys,
    /// which share a slot in a cluster.
    fn tag_pipeline(&self, tags: &[TagId], fresh: &[Token], token_life: u64) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (tag, token) in tags.iter().zip(fresh) {
            let k = self.tag_key(tag);
            pipe.cmd("SET")
                .arg(&k)
                .arg(token.encode())
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(token_life);
            pipe.cmd("EXPIRE")
                .arg(&k)
                .arg(token_life)
                .arg("GT")
                .ignore();
            // Count the entry for the purge's answer; the counter lives as long as the token.
            let c = self.count_key(tag);
            pipe.cmd("INCR").arg(&c).ignore();
            pipe.cmd("EXPIRE")
                .arg(&c)
                .arg(token_life)
                .arg("NX")
                .ignore();
            pipe.cmd("EXPIRE")
                .arg(&c)
                .arg(token_life)
                .arg("GT")
                .ignore();
        }
        pipe
    }

    /// Replaces tokens this version cannot read with a token purged now (see the `store`
    /// operation in `mod.rs`, which refuses the fill that found them).
    pub(super) async fn replace_unreadable_tokens(&self, tags: &[TagId]) {
        let token = Token::purged(None, tags::now_us(), false).encode();
        for tag in tags {
            let key = self.tag_key(tag);
            let gate = self.gate(&key);
            let Ok(mut conn) = self.conn(&gate) else {
                return;
            };
            let mut set = redis::cmd("SET");
            set.arg(&key)
                .arg(&token)
                .arg("EX")
                .arg(PURGE_MARKER_TTL_SECS);
            if let Err(e) = self.guarded(&gate, set.query_async::<()>(&mut conn)).await {
                tracing::debug!(error = %e, "could not replace an unreadable tag token");
            }
        }
    }
}
