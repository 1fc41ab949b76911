//! Phase 6 (writes): turning a policy's invalidations into purges.
//!
//! Runs before the write's response goes back to the client, so a client that re-reads right
//! after its write never sees what the write made wrong. It runs in a task of its own (see
//! `Exchange::write_through`), so a client that hangs up does not cancel it. A purge Redis does
//! not take is kept pending by the store and applied when Redis answers
//! ([`crate::store::pending`]).

use larder_bindings::types::{Invalidation, InvalidationTarget};

use crate::gateway::{Gateway, Snapshot};
use crate::store::key::{key_tag, prefix_invalidation, tag_id};
use crate::store::{Storage, StoreError, TagId};
use crate::telemetry::InvalidationKind;

/// What a purge did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Purged {
    /// Tag generations changed (explicit tags, keys, prefixes).
    pub generations: usize,
    /// Entries stored with those tags since their previous purge (see [`Storage::purge`]).
    pub entries: u64,
}

/// Purges what `list` names.
pub async fn apply(
    gw: &Gateway,
    snapshot: &Snapshot,
    current_route: &str,
    list: &[Invalidation],
) -> Result<Purged, StoreError> {
    let (hard, soft) = resolve(snapshot, current_route, list);
    let mut entries = 0;
    let mut failed = None;
    // Both, even when the first is not acknowledged: each is then kept pending on its own.
    for (tags, is_soft) in [(&hard, false), (&soft, true)] {
        if tags.is_empty() {
            continue;
        }
        match gw.store.purge(tags, is_soft).await {
            Ok(n) => entries += n,
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    count(gw, list, entries);
    match failed {
        Some(e) => Err(e),
        None => Ok(Purged {
            generations: hard.len() + soft.len(),
            entries,
        }),
    }
}

/// Counts applied purges by kind, for `/metrics` and `/stats`.
fn count(gw: &Gateway, list: &[Invalidation], entries: u64) {
    let mut by_kind = [0usize; 3];
    for inv in list {
        let kind = match inv.target {
            InvalidationTarget::Tag(_) => InvalidationKind::Tag,
            InvalidationTarget::Key(_) => InvalidationKind::Key,
            InvalidationTarget::Prefix(_) => InvalidationKind::Prefix,
        };
        by_kind[kind as usize] += 1;
    }
    for kind in [
        InvalidationKind::Tag,
        InvalidationKind::Key,
        InvalidationKind::Prefix,
    ] {
        gw.telemetry.invalidated(kind, by_kind[kind as usize]);
    }
    gw.telemetry.invalidated_entries(entries);
}

/// Splits `list` into (hard, soft) tag ids. Keys and prefixes on a route that does not exist
/// are skipped with a warning: they could match nothing.
pub fn resolve(
    snapshot: &Snapshot,
    current_route: &str,
    list: &[Invalidation],
) -> (Vec<TagId>, Vec<TagId>) {
    let (mut hard, mut soft) = (Vec::new(), Vec::new());
    for inv in list {
        let out = if inv.soft { &mut soft } else { &mut hard };
        match &inv.target {
            InvalidationTarget::Tag(tag) => out.push(tag_id(tag)),
            InvalidationTarget::Key(k) | InvalidationTarget::Prefix(k) => {
                let route = k.route.as_deref().unwrap_or(current_route);
                if snapshot.routes.named(route).is_none() {
                    tracing::warn!(route, "invalidation names an unknown route; skipped");
                    continue;
                }
                match &inv.target {
                    InvalidationTarget::Key(_) => out.push(key_tag(route, &k.parts)),
                    _ => out.extend(prefix_invalidation(route, &k.parts)),
                }
            }
        }
    }
    hard.sort();
    hard.dedup();
    soft.sort();
    soft.dedup();
    (hard, soft)
}
