//! Answering from the store: a fresh entry; a stale one (expired, or soft-purged) within its
//! `stale-while-revalidate` window, while one refresh runs in the background; a stale one
//! within its `stale-if-error` window, in place of an upstream that failed; and, for requests
//! that waited for another's fill, that fill's response.

use std::sync::atomic::Ordering;

use axum::body::Body;
use http::{Method, Response};

use super::Exchange;
use super::cache_status::{CacheStatus, Forward};
use super::coalesce::Shared;
use super::fill::Filled;
use super::policy::PolicyCall;
use super::respond::finish;
use crate::store::key::Digest;
use crate::store::{Entry, Found, ObjectKey, Standing, now_ms};

/// Why a stale entry is served.
#[derive(Clone, Copy)]
pub(super) enum StaleReason {
    WhileRevalidate,
    SoftPurged,
    IfError,
}

impl StaleReason {
    fn as_str(self) -> &'static str {
        match self {
            StaleReason::WhileRevalidate => "stale-while-revalidate",
            StaleReason::SoftPurged => "soft-purged",
            StaleReason::IfError => "stale-if-error",
        }
    }
}

/// A usable entry that is not fresh: expired, or soft-purged.
pub(super) struct Stale {
    pub(super) entry: Entry,
    /// Seconds past its freshness (0 for a soft-purged entry that was still fresh).
    pub(super) past: u64,
}

impl Stale {
    pub(super) fn within(&self, window: u32) -> bool {
        window > 0 && self.past <= u64::from(window)
    }
}

/// What an entry the lookup found is good for.
pub(super) enum Stored {
    /// The answer: the entry, fresh or within its `stale-while-revalidate` window.
    Answer(Response<Body>),
    /// Not an answer: a stale entry, which a fill revalidates and may fall back on.
    Stale(Stale),
}

impl Exchange {
    /// Answers from what the lookup found of `base` if it may: fresh, or stale within its
    /// `stale-while-revalidate` window (then refreshed in the background, coalesced under
    /// `fill_id`).
    pub(super) fn answer_from_store(
        &self,
        policy: &PolicyCall<'_>,
        base: &ObjectKey,
        fill_id: Digest,
        found: Found,
    ) -> Stored {
        let now = now_ms();
        let ttl_left = found.entry.meta.ttl_left(now);
        let soft_purged = found.standing == Standing::SoftPurged;
        if !soft_purged && ttl_left > 0 {
            return Stored::Answer(self.serve_hit(found.entry, now, None));
        }
        let candidate = Stale {
            past: u64::try_from(-ttl_left).unwrap_or(0),
            entry: found.entry,
        };
        if !candidate.within(candidate.entry.meta.stale_while_revalidate) {
            return Stored::Stale(candidate);
        }
        let validators = Stale {
            entry: candidate.entry.clone(),
            past: candidate.past,
        };
        self.refresh_in_background(policy, base, fill_id, validators);
        let reason = if soft_purged {
            StaleReason::SoftPurged
        } else {
            StaleReason::WhileRevalidate
        };
        Stored::Answer(self.serve_hit(candidate.entry, now, Some(reason)))
    }

    /// Answers from a stored entry: fresh, or stale for `stale`'s reason.
    fn serve_hit(&self, entry: Entry, now: u64, stale: Option<StaleReason>) -> Response<Body> {
        let ttl = entry.meta.ttl_left(now);
        let age = entry.meta.age(now);
        let filled_in_us =
            (entry.meta.stored_at_ms * 1000).saturating_sub(entry.meta.fill_started_us);
        self.saved_us.store(filled_in_us, Ordering::Relaxed);
        let body = if self.parts.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(entry.body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers;
        let status = match stale {
            None => CacheStatus::hit(ttl),
            // A stale answer never claims freshness left.
            Some(reason) => CacheStatus::hit(ttl.min(0)).detail(reason.as_str()),
        };
        finish(&mut response, &status, Some(age));
        response
    }

    /// The answer of a fill whose upstream failed (or answered 5xx): `stale`, if it is within
    /// its `stale-if-error` window.
    pub(super) fn stale_if_error(&self, stale: Option<Stale>) -> Option<Filled> {
        stale
            .filter(|s| s.within(s.entry.meta.stale_if_error))
            .map(|s| Filled::Other(self.serve_hit(s.entry, now_ms(), Some(StaleReason::IfError))))
    }
}

fn shared_response(shared: &Shared, status: &CacheStatus) -> Response<Body> {
    let mut response = Response::new(Body::from(shared.body.clone()));
    *response.status_mut() = shared.status;
    *response.headers_mut() = shared.headers.clone();
    finish(&mut response, status, shared.age);
    response
}

/// The answer of a request that waited for another's fill.
pub(super) fn collapsed(shared: &Shared) -> Response<Body> {
    let status = CacheStatus::forward(Forward::Miss)
        .fwd_status(shared.status.as_u16())
        .collapsed();
    shared_response(shared, &status)
}
