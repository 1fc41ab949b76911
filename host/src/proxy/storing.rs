//! Storing a fill's response: `on-response` says whether and how (TTL, windows, tags), and the
//! entry is written under the object's key, or, for a response that varies, under its
//! variant's key behind a Vary marker. A store that fails is a skipped write; a purge that
//! overtook the fill keeps the response from being stored or shared.

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use larder_bindings::types::{ResponseDecision, StoreDirective};

use super::Exchange;
use super::cache_status::CacheStatus;
use super::conditional;
use super::fill::{FillStart, Filled, Share};
use super::policy::PolicyCall;
use super::vary::{self, Vary};
use crate::policy::convert;
use crate::store::key::tag_id;
use crate::store::{EntryMeta, NewEntry, ObjectKey, Storage, StoreError, StoreOutcome, now_ms};

impl Exchange {
    /// Asks `on-response` about the response a fill read whole, and stores it as the policy
    /// says; the fill's result, for its requester and those collapsed onto it.
    pub(super) async fn store_response(
        &self,
        policy: &PolicyCall<'_>,
        object: &ObjectKey,
        rparts: http::response::Parts,
        bytes: Bytes,
        status: CacheStatus,
        start: FillStart,
    ) -> Filled {
        let route = &policy.route.config;
        let policy_resp =
            convert::response(rparts.status, &rparts.headers, Some(bytes.len() as u64));
        let decision = self
            .ask(policy.plugin.on_response(
                self.request_id,
                policy.limits,
                policy.req.get(),
                &policy_resp,
                self.post.as_ref().map(|p| p.digest.as_str()),
            ))
            .await;
        let directive = match decision {
            Err(e) => {
                if let Some(closed) = self.fails_closed(&e, Some(policy.plugin), route) {
                    return Filled::Other(closed);
                }
                return Filled::complete(rparts, bytes, status.detail(e.as_str()), None, Share::No);
            }
            Ok(ResponseDecision::NoStore(reason)) => {
                return Filled::complete(rparts, bytes, status.detail(&reason), None, Share::No);
            }
            Ok(ResponseDecision::Store(d)) => d,
        };
        if directive.ttl == 0
            && (self.snapshot.config.cache.revalidate_keep == 0
                || !conditional::has_validator(&rparts.headers))
        {
            // Stale from the start and impossible to revalidate: pointless to store.
            let status = status.detail("not-revalidatable");
            return Filled::complete(rparts, bytes, status, None, Share::No);
        }
        self.store_entry(object, rparts, bytes, status, start, directive)
            .await
    }

    /// Writes the entry `directive` describes, and says whether collapsed requests may share it.
    /// A response that does not vary is one write, which also ends the fill's lease; the writes
    /// of a varying one leave that to the fill's end (`fleet.rs`).
    async fn store_entry(
        &self,
        object: &ObjectKey,
        rparts: http::response::Parts,
        bytes: Bytes,
        status: CacheStatus,
        start: FillStart,
        directive: StoreDirective,
    ) -> Filled {
        let (mut entry, age) =
            self.new_entry(&rparts, bytes.clone(), object, start.started_us, directive);
        let storing = Instant::now();
        let (outcome, variant) = match Vary::of(&rparts.headers) {
            Vary::Star => {
                let status = status.detail("vary-star");
                return Filled::complete(rparts, bytes, status, None, Share::No);
            }
            Vary::None => {
                entry.lease = start.lease;
                (self.gw.store.store(object, entry).await, None)
            }
            Vary::Fields(fields) => {
                let variant = vary::variant_key(object, &fields, &self.parts.headers);
                (
                    self.store_variant(object, &variant, &fields, entry).await,
                    Some(variant.digest),
                )
            }
        };
        self.gw
            .telemetry
            .store_write
            .record(storing.elapsed().as_secs_f64());
        // Collapsed requests may share what the policy stored, even when the store itself
        // failed; never what a purge overtook.
        let (status, share) = match outcome {
            Ok(StoreOutcome::Stored) => (status.stored(), true),
            Ok(StoreOutcome::PurgedDuringFill) => (status.detail("purged-during-fill"), false),
            Err(e) => {
                tracing::debug!(request_id = self.request_id, error = %e, "store failed");
                (status.detail("store-unavailable"), true)
            }
        };
        let share = if share { Share::As(variant) } else { Share::No };
        Filled::complete(rparts, bytes, status, Some(age), share)
    }

    /// Stores a response that varies: a Vary marker under the object's key, then the response
    /// under its variant's key (and, varying on `Accept-Language`, under its language's key:
    /// see [`vary::language_key`]). Both carry the entry's tags and fill time, so a purge reaches
    /// both and a purge during the fill stops both.
    async fn store_variant(
        &self,
        object: &ObjectKey,
        variant: &ObjectKey,
        fields: &[http::HeaderName],
        entry: NewEntry,
    ) -> Result<StoreOutcome, StoreError> {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(header::VARY, vary::marker_header(fields));
        let marker = NewEntry {
            status: entry.status,
            headers,
            body: Bytes::new(),
            meta: EntryMeta {
                vary_marker: true,
                ..entry.meta
            },
            tags: entry.tags.clone(),
            lease: None,
        };
        if self.gw.store.store(object, marker).await? == StoreOutcome::PurgedDuringFill {
            return Ok(StoreOutcome::PurgedDuringFill);
        }
        if let Some(lang) = vary::content_language(&entry.headers)
            && let Some(alias) = vary::language_key(object, fields, &self.parts.headers, &lang)
        {
            self.gw.store.store(&alias, entry.clone()).await?;
        }
        self.gw.store.store(variant, entry).await
    }

    fn new_entry(
        &self,
        rparts: &http::response::Parts,
        body: Bytes,
        object: &ObjectKey,
        fill_started_us: u64,
        d: StoreDirective,
    ) -> (NewEntry, u64) {
        let initial_age = rparts
            .headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            // A list (`7200, 0`) counts by its first member.
            .and_then(|v| v.split(',').next()?.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let headers = stored_fields(&rparts.headers, body.len());
        let keep = if conditional::has_validator(&headers) {
            self.snapshot.config.cache.revalidate_keep
        } else {
            0
        };
        let mut tags = object.implicit_tags.clone();
        tags.extend(d.tags.iter().map(|t| tag_id(t)));
        let entry = NewEntry {
            status: rparts.status,
            headers,
            body,
            meta: EntryMeta {
                stored_at_ms: now_ms(),
                fill_started_us,
                initial_age,
                ttl: d.ttl,
                stale_while_revalidate: d.stale_while_revalidate,
                stale_if_error: d.stale_if_error,
                keep,
                vary_marker: false,
            },
            tags,
            lease: None,
        };
        (entry, u64::from(initial_age))
    }
}

/// The fields a stored copy of a response keeps: the origin's (as `upstream.rs` passes them), less
/// `Age` (an entry's age is counted from its `initial_age`) and `Set-Cookie` (a cookie set for
/// one client must never be replayed to another, whatever the policy), with the body's length.
/// Requests collapsed onto a fill are given the same: they are answered as the cache would
/// answer them.
pub(super) fn stored_fields(origin: &HeaderMap, body_len: usize) -> HeaderMap {
    let mut headers = origin.clone();
    headers.remove(header::AGE);
    headers.remove(header::SET_COOKIE);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    headers
}
