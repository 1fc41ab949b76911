//! Fills in tasks of their own: the fill of a miss's first request (the others wait for it,
//! `coalesce.rs`), and the refresh of a stale entry that is answered meanwhile.
//!
//! A task runs on an owned copy of the exchange and holds its own `Arc` of the route, so it
//! completes whatever happens to the client that caused it, on that client's snapshot.

use axum::body::Body;

use super::Exchange;
use super::cache_status::{CacheStatus, Forward};
use super::coalesce::Role;
use super::fill::{Filled, Miss};
use super::hit::Stale;
use super::policy::{PolicyCall, PolicyRequest};
use crate::store::key::Digest;
use crate::store::{ObjectKey, Standing, now_ms};

impl Exchange {
    /// Refreshes `object` from the upstream after the client got its stale answer. The refresh
    /// is an ordinary coalesced fill: while it (or any other fill of the entry) is in flight,
    /// no second one starts, however many clients are served stale meanwhile.
    ///
    /// The refresh revalidates with `stale`'s validators when it has any.
    pub(super) fn refresh_in_background(
        &self,
        policy: &PolicyCall<'_>,
        object: &ObjectKey,
        fill_id: Digest,
        stale: Stale,
    ) {
        let Role::Leader(leader) = self.gw.coalescer.join(&object.route, fill_id) else {
            return;
        };
        let miss = Miss {
            object: object.clone(),
            status: CacheStatus::forward(Forward::Stale).detail("background-refresh"),
            stale: Some(stale),
            body: Body::empty(),
            lease: None,
        };
        self.detached_fill(policy, miss, Task::Refresh, move |f| {
            leader.publish(f.shareable())
        });
    }

    /// Runs a fill in a task of its own, on an owned copy of this exchange (as a GET, or as the
    /// POST it looks up), so it completes whatever happens to the client that caused it;
    /// `done` sees the result first.
    pub(super) fn detached_fill(
        &self,
        policy: &PolicyCall<'_>,
        miss: Miss,
        task: Task,
        done: impl FnOnce(&Filled) + Send + 'static,
    ) -> tokio::task::JoinHandle<Option<Filled>> {
        let method = if self.post.is_some() {
            http::Method::POST
        } else {
            http::Method::GET
        };
        let cx = self.detached(method);
        let (route, plugin, limits, req) = (
            policy.route.clone(),
            policy.plugin.clone(),
            policy.limits,
            policy.req.get().clone(),
        );
        tokio::spawn(async move {
            let policy = PolicyCall {
                route: &route,
                plugin: &plugin,
                limits,
                req: PolicyRequest::Built(req),
            };
            let filled = match task {
                Task::Refresh => {
                    if let (_, Ok(Some(found))) = cx.lookup(&miss.object).await
                        && found.standing == Standing::Current
                        && found.entry.meta.ttl_left(now_ms()) > 0
                    {
                        return None;
                    }
                    cx.fill(&policy, miss).await
                }
                Task::Leader(fill_id) => cx.fill_once_in_fleet(&policy, miss, fill_id).await,
            };
            done(&filled);
            Some(filled)
        })
    }
}

/// What a detached fill is for.
pub(super) enum Task {
    /// The fill of a miss's first request in this instance, coalesced under the digest across
    /// the fleet (`fleet.rs`).
    Leader(Digest),
    /// A background refresh. It first looks the entry up again and does nothing (answers `None`)
    /// if it is fresh: a refresh that finished between this request's lookup and its claim on
    /// the fill must not be followed by a second one.
    Refresh,
}
