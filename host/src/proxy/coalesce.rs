//! Request coalescing: concurrent misses for one key make one upstream request.
//!
//! The first miss for a key becomes the *leader*: it fills in a task of its own, so the fill
//! finishes for everyone even if the leader's client disconnects. Later misses for the same key
//! are *followers*: they wait (bounded by the route's upstream timeout) for the leader's result.
//! A result the policy stored is shared with them as it was stored (without the fields meant for
//! the leader's client alone, such as its `Set-Cookie`); anything else (not cacheable, too
//! large, an upstream failure, a leader that died) sends each follower upstream on its own, as
//! if there had been no leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::store::key::Digest;

/// A complete response that followers may be given.
#[derive(Debug, Clone)]
pub struct Shared {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub age: Option<u64>,
    /// The variant the leader's request selected, when the response varies (see
    /// [`super::vary`]): a follower whose own request selects another variant must not be
    /// given it.
    pub variant: Option<Digest>,
}

/// What the leader published: `Some` to share, `None` for "go upstream yourselves".
type Published = Option<Arc<Shared>>;

type FillId = (String, Digest);

/// The fills in flight.
#[derive(Default)]
pub struct Coalescer {
    // A std mutex: one map operation per request, never held across an await.
    fills: Mutex<HashMap<FillId, watch::Receiver<Option<Published>>>>,
}

/// The role a miss plays.
pub enum Role {
    Leader(Leader),
    Follower(Follower),
}

/// Publishes the fill's result; removes the fill from the table when dropped, published or not
/// (a leader that died wakes its followers, who then go upstream themselves).
pub struct Leader {
    coalescer: Arc<Coalescer>,
    id: FillId,
    tx: watch::Sender<Option<Published>>,
}

pub struct Follower {
    rx: watch::Receiver<Option<Published>>,
}

impl Coalescer {
    pub fn join(self: &Arc<Self>, route: &str, digest: Digest) -> Role {
        let id = (route.to_owned(), digest);
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = fills.get(&id) {
            return Role::Follower(Follower { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(None);
        fills.insert(id.clone(), rx);
        Role::Leader(Leader {
            coalescer: self.clone(),
            id,
            tx,
        })
    }

    /// Fills in flight (for `/health` and tests).
    pub fn in_flight(&self) -> usize {
        self.fills.lock().map(|f| f.len()).unwrap_or(0)
    }
}

impl Leader {
    pub fn publish(&self, shared: Published) {
        let _ = self.tx.send(Some(shared));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut fills = self
            .coalescer
            .fills
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        fills.remove(&self.id);
    }
}

impl Follower {
    /// The leader's shared response, or `None` when the follower must go upstream itself.
    pub async fn wait(mut self) -> Option<Arc<Shared>> {
        let published = self.rx.wait_for(Option::is_some).await.ok()?;
        published.clone().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"x"),
            age: None,
            variant: None,
        })
    }

    #[tokio::test]
    async fn followers_get_what_the_leader_shares() {
        let c = Arc::new(Coalescer::default());
        let Role::Leader(leader) = c.join("r", Digest([1; 16])) else {
            panic!("first is the leader")
        };
        let Role::Follower(f) = c.join("r", Digest([1; 16])) else {
            panic!("second follows")
        };
        assert!(matches!(c.join("r", Digest([2; 16])), Role::Leader(_)));
        leader.publish(Some(shared()));
        assert_eq!(f.wait().await.unwrap().body, "x");
        drop(leader);
        assert!(matches!(c.join("r", Digest([1; 16])), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_leader_that_dies_sends_its_followers_upstream() {
        let c = Arc::new(Coalescer::default());
        let Role::Leader(leader) = c.join("r", Digest([1; 16])) else {
            panic!()
        };
        let Role::Follower(f) = c.join("r", Digest([1; 16])) else {
            panic!()
        };
        drop(leader);
        assert!(f.wait().await.is_none());
        assert_eq!(c.in_flight(), 0);
    }
}
