//! The lookup, and where it leads: an answer from the store (`hit.rs`), a wait for another
//! request's fill of the same entry (`coalesce.rs`), or a fill (`fill_task.rs`, `fill.rs`).

use axum::body::Body;
use http::{Method, Response, StatusCode};
use larder_bindings::types::CacheKey;

use super::cache_status::{CacheStatus, Forward};
use super::coalesce::{Role, Shared};
use super::fill::Miss;
use super::fill_task::Task;
use super::hit::{Stored, collapsed};
use super::policy::PolicyCall;
use super::respond::error_response;
use super::vary::{self, Vary};
use super::{Exchange, boxed};
use crate::store::{Found, ObjectKey, Storage, StoreError};

impl Exchange {
    /// The lookup and what follows it, up to the response, for a request the policy looks up
    /// under `base`.
    #[warn(clippy::large_futures)]
    pub(super) async fn cached(
        &self,
        policy: &PolicyCall<'_>,
        base: ObjectKey,
        body: Body,
    ) -> Response<Body> {
        let _ = self.key.set(base.digest);
        let (variant, found) = self.lookup(&base).await;
        // Fills of one variant coalesce with each other, not with another variant's.
        let fill_id = variant.as_ref().unwrap_or(&base).digest;
        let (status, stale) = match found {
            Ok(Some(found)) => match self.answer_from_store(policy, &base, fill_id, found) {
                Stored::Answer(response) => return response,
                Stored::Stale(stale) => (CacheStatus::forward(Forward::Stale), Some(stale)),
            },
            Ok(None) => (CacheStatus::forward(Forward::Miss), None),
            Err(e) => {
                tracing::debug!(request_id = self.request_id, error = %e, "lookup failed; treating as a miss");
                let status = CacheStatus::forward(Forward::Miss).detail("store-unavailable");
                (status, None)
            }
        };
        if self.parts.method == Method::GET || self.post.is_some() {
            match self.gw.coalescer.join(&base.route, fill_id) {
                Role::Leader(leader) => {
                    let miss = Miss {
                        object: base,
                        status,
                        stale,
                        body,
                        lease: None,
                    };
                    let task = Task::Leader(fill_id);
                    let fill = self
                        .detached_fill(policy, miss, task, move |f| leader.publish(f.shareable()));
                    return match fill.await {
                        Ok(Some(filled)) => filled.into_response(),
                        // The fill task panicked. (It answers `None` only when told to give way
                        // to a fresh entry, which a leader's fill is not.)
                        _ => error_response(
                            StatusCode::BAD_GATEWAY,
                            &CacheStatus::forward(Forward::Miss).detail("fill-failed"),
                            "the fill for this request failed",
                        ),
                    };
                }
                Role::Follower(follower) => {
                    let timeout = policy.route.config.upstream_timeout;
                    let wait = tokio::time::timeout(timeout, follower.wait()).await;
                    if let Ok(Some(shared)) = wait
                        && self.selects(&base, &shared)
                    {
                        return collapsed(&shared);
                    }
                    // Not shareable, another variant, or the wait ran out: upstream on our
                    // own.
                }
            }
        }
        let miss = Miss {
            object: base,
            status,
            stale,
            body,
            lease: None,
        };
        boxed(self.fill(policy, miss)).await.into_response()
    }

    /// Looks `base` up, following a Vary marker to the variant this request selects; returns
    /// that variant's key when there was a marker.
    pub(super) async fn lookup(
        &self,
        base: &ObjectKey,
    ) -> (Option<ObjectKey>, Result<Option<Found>, StoreError>) {
        let looked_up = std::time::Instant::now();
        let found = self.gw.store.lookup(base).await;
        self.gw
            .telemetry
            .store_lookup
            .record(looked_up.elapsed().as_secs_f64());
        let found = match found {
            Ok(Some(found)) if found.entry.meta.vary_marker => found,
            other => return (None, other),
        };
        match Vary::of(&found.entry.headers) {
            Vary::Fields(fields) => {
                let variant = vary::variant_key(base, &fields, &self.parts.headers);
                let mut found = self.gw.store.lookup(&variant).await;
                if let Ok(None) = found
                    && let Some(lang) = vary::preferred_language(&self.parts.headers)
                    && let Some(alias) =
                        vary::language_key(base, &fields, &self.parts.headers, &lang)
                {
                    found = self.gw.store.lookup(&alias).await;
                }
                (Some(variant), found)
            }
            Vary::None | Vary::Star => (None, Ok(None)),
        }
    }

    /// Whether a response shared by another request's fill is the variant this request selects.
    fn selects(&self, base: &ObjectKey, shared: &Shared) -> bool {
        match Vary::of(&shared.headers) {
            Vary::None => true,
            Vary::Star => false,
            Vary::Fields(fields) => {
                shared.variant == Some(vary::variant_key(base, &fields, &self.parts.headers).digest)
            }
        }
    }

    /// The storage key of the policy's `key` on `route`: its parts, and the values of the
    /// request fields it varies on.
    pub(super) fn object_key(&self, route: &str, key: &CacheKey) -> ObjectKey {
        let values: Vec<String> = key
            .vary
            .iter()
            .map(|name| {
                let mut joined = String::new();
                for v in self.parts.headers.get_all(name.as_str()) {
                    if !joined.is_empty() {
                        joined.push_str(", ");
                    }
                    joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
                joined
            })
            .collect();
        let vary: Vec<(&str, &str)> = key
            .vary
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(String::as_str))
            .collect();
        ObjectKey::derive(route, &key.parts, &vary)
    }
}
