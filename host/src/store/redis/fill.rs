//! The write side of a fill: reading (and creating) the tokens an entry records.
//!
//! No resurrection: a fill records when it started, and before its entry is written it reads its
//! tags' tokens; a token purged at or after that refuses the store (`tags::may_store`). Reading
//! a token also creates it where missing and makes it outlive the entry, since an entry whose
//! token is gone is invalid. Each tag's counter counts the entry, for the purge's answer.

use super::breaker::Breaker;
use super::{PURGE_MARKER_TTL_SECS, RedisStore};
use crate::store::StoreError;
use crate::store::cluster::Conn;
use crate::store::key::TagId;
use crate::store::tags::{self, Token};

impl RedisStore {
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
