//! The read side of a hit: an entry and the current tokens of its tags, in as few round trips
//! as the deployment allows.
//!
//! Tokens are checked on every hit: an entry is served only if each of its tags' tokens is still
//! the one it recorded (`tags.rs`), so a purge made anywhere invalidates it at once, without a
//! scan. On a single Redis that costs one round trip: an `MGET` of the entry and its implicit
//! tags' tokens, or the lookup script ([`super::scripts::LOOKUP_SCRIPT`]) on routes whose
//! entries carry explicit tags. On a cluster, where tokens live in other slots, the entry comes
//! first, then each token from its own master.

use super::RedisStore;
use super::breaker::Gate;
use crate::store::StoreError;
use crate::store::entry::Entry;
use crate::store::key::ObjectKey;
use crate::store::tags::Token;

/// What a lookup's first round trip brought back.
pub(super) struct Fetched {
    pub(super) value: Option<Vec<u8>>,
    pub(super) tokens: FetchedTokens,
}

pub(super) enum FetchedTokens {
    /// None (a cluster, or no value).
    None,
    /// The tokens of the tags recorded in the value, in its order
    /// ([`super::scripts::LOOKUP_SCRIPT`]).
    Recorded(Vec<Option<Vec<u8>>>),
    /// The tokens of the key's implicit tags, in the key's order.
    Implicit(Vec<Option<Vec<u8>>>),
}

impl RedisStore {
    /// An entry's value and, on a single Redis, the current tokens of tags it is expected to
    /// carry, in one round trip: those recorded in the value (the lookup script) on a route
    /// whose entries carry explicit tags, else the key's implicit tags (one `MGET`). On a
    /// cluster the value alone.
    pub(super) async fn get_with_tokens(
        &self,
        obj_key: &str,
        key: &ObjectKey,
    ) -> Result<Fetched, StoreError> {
        if self.cluster() {
            return Ok(Fetched {
                value: self.get(obj_key.to_owned()).await?,
                tokens: FetchedTokens::None,
            });
        }
        let gate = Gate::Shared(&self.shared.breaker);
        let mut conn = self.conn(&gate)?;
        if !self.route_is_tagged(&key.route) {
            let mut mget = redis::cmd("MGET");
            mget.arg(obj_key);
            for tag in &key.implicit_tags {
                mget.arg(self.tag_key(tag));
            }
            let mut values: Vec<Option<Vec<u8>>> =
                self.guarded(&gate, mget.query_async(&mut conn)).await?;
            if values.len() != 1 + key.implicit_tags.len() {
                return Err(StoreError::Unavailable(
                    "MGET answered a wrong number of values",
                ));
            }
            let value = values.remove(0);
            if value.is_none() {
                // A miss, whose fill will store under these tags: remember their tokens, so
                // that the store can be one round trip (`known_tokens.rs`).
                for (tag, token) in key.implicit_tags.iter().zip(&values) {
                    let token = token.as_deref().and_then(Token::decode);
                    self.shared.known.saw(*tag, token);
                }
            }
            return Ok(Fetched {
                value,
                tokens: FetchedTokens::Implicit(values),
            });
        }
        let mut invocation = self.lookup_script.key(obj_key);
        invocation.arg(self.tag_key_prefix());
        let reply: Option<Vec<Option<Vec<u8>>>> = self
            .guarded(&gate, invocation.invoke_async(&mut conn))
            .await?;
        Ok(match reply {
            Some(mut values) if !values.is_empty() => Fetched {
                value: values.remove(0),
                tokens: FetchedTokens::Recorded(values),
            },
            _ => Fetched {
                value: None,
                tokens: FetchedTokens::None,
            },
        })
    }

    fn route_is_tagged(&self, route: &str) -> bool {
        self.tagged_routes
            .read()
            .map(|r| r.contains(route))
            .unwrap_or(true)
    }

    /// Remembers whether `route`'s entries carry explicit tags, for its next lookups.
    fn note_route(&self, route: &str, tagged: bool) {
        if self.route_is_tagged(route) == tagged {
            return;
        }
        let mut routes = self
            .tagged_routes
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if tagged {
            routes.insert(route.to_owned());
        } else {
            routes.remove(route);
        }
    }

    /// The current tokens of `entry`'s tags, in its order, from what the lookup fetched: read
    /// again on their own when it fetched none or not all of them.
    pub(super) async fn current_tokens(
        &self,
        key: &ObjectKey,
        entry: &Entry,
        fetched: FetchedTokens,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tagged = entry
            .tags
            .iter()
            .any(|(tag, _)| !key.implicit_tags.contains(tag));
        match fetched {
            FetchedTokens::Recorded(tokens) if tokens.len() == entry.tags.len() => {
                self.note_route(&key.route, tagged);
                Ok(tokens)
            }
            FetchedTokens::Implicit(tokens) if !tagged => Ok(entry
                .tags
                .iter()
                .map(|(tag, _)| {
                    key.implicit_tags
                        .iter()
                        .position(|t| t == tag)
                        .and_then(|i| tokens[i].clone())
                })
                .collect()),
            FetchedTokens::Implicit(_) => {
                self.note_route(&key.route, true);
                self.tokens(entry).await
            }
            _ => self.tokens(entry).await,
        }
    }

    /// The current tokens of `entry`'s tags, read on their own (a cluster, or a value the
    /// lookup script could not read).
    async fn tokens(&self, entry: &Entry) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tag_keys: Vec<String> = entry.tags.iter().map(|(t, _)| self.tag_key(t)).collect();
        if tag_keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.cluster() {
            // Tokens live in many slots: one GET each (concurrent, on the multiplexed
            // connection), each through its own node's breaker.
            return futures_util::future::try_join_all(tag_keys.into_iter().map(|k| self.get(k)))
                .await;
        }
        let gate = Gate::Shared(&self.shared.breaker);
        let mut conn = self.conn(&gate)?;
        self.guarded(
            &gate,
            redis::cmd("MGET").arg(&tag_keys).query_async(&mut conn),
        )
        .await
    }

    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let gate = self.gate(&key);
        let mut conn = self.conn(&gate)?;
        self.guarded(&gate, redis::cmd("GET").arg(&key).query_async(&mut conn))
            .await
    }

    /// Deletes `key` (a corrupt or invalidated entry) without waiting for it.
    pub(super) fn unlink_later(&self, key: String) {
        let gate = self.gate(&key);
        if let Ok(mut conn) = self.conn(&gate) {
            tokio::spawn(async move {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(key).query_async(&mut conn).await;
            });
        }
    }
}
