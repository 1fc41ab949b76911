//! How the Redis store reaches Redis: one node or a cluster, plain or TLS, in the background.
//!
//! The gateway starts and serves while Redis is down: connections are made by a background task
//! that retries every half second, and until they are, every operation answers "not connected"
//! (a miss, or a purge kept pending). `redis::aio::ConnectionManager` (single node) and the
//! cluster connection reconnect by themselves after a loss; `redis.connections` of them are used
//! round-robin. `rediss://` and `rediss+cluster://` speak TLS through rustls.
//!
//! On a single Redis, each proxy worker also makes its own connection ([`LOCAL`]), so a lookup
//! wakes no thread but its own. On a cluster, a task keeps the slot map current, and with it
//! the per-master breakers (`breaker.rs`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::breaker::{Breaker, Node};
use super::{RedisStore, Shared};
use crate::store::StoreError;
use crate::store::cluster::{self, Conn, NodeAddr, Target, Topology};

/// How often connecting is tried again while Redis does not answer.
const RETRY: Duration = Duration::from_millis(500);

thread_local! {
    /// Each proxy worker's own connection to each store, made on the worker's runtime
    /// ([`crate::server`]): a multiplexed connection's task then runs on the thread of the
    /// requests that use it, so that a lookup's hand-over to it and back wakes no other thread
    /// (on a virtual machine, waking a sleeping core costs 20-40 µs, a Redis round trip's
    /// worth). `None` while it is being made. Entries of dropped stores are pruned.
    static LOCAL: std::cell::RefCell<Vec<(Weak<Shared>, Option<Conn>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// What connects the store: a client for its target, made (and checked) at start.
pub(super) enum Connector {
    Single {
        client: redis::Client,
        manager_config: redis::aio::ConnectionManagerConfig,
    },
    Cluster(redis::cluster::ClusterClient),
}

impl Connector {
    /// A client for `target`, whose operations time out after `timeout` (connecting gets at
    /// least 500 ms). Fails only on a URL the redis crate refuses.
    pub(super) fn new(target: &Target, timeout: Duration) -> Result<Self, StoreError> {
        // `rediss://` speaks rustls with ring; make it the process's provider unless one is
        // installed already (then that one serves).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connect_timeout = timeout.max(Duration::from_millis(500));
        Ok(match target {
            Target::Single(url) => Connector::Single {
                client: redis::Client::open(url.as_str())?,
                manager_config: manager_config(connect_timeout),
            },
            // Requests for a failed master are retried a little (a MOVED after a failover is
            // a retry too); the store's own timeout bounds what a request waits.
            Target::Cluster(nodes) => Connector::Cluster(
                redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(connect_timeout)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()?,
            ),
        })
    }

    /// How a proxy worker makes its own connection ([`LOCAL`]): a single Redis only.
    pub(super) fn for_workers(
        &self,
    ) -> Option<(redis::Client, redis::aio::ConnectionManagerConfig)> {
        match self {
            Connector::Single {
                client,
                manager_config,
            } => Some((client.clone(), manager_config.clone())),
            Connector::Cluster(_) => None,
        }
    }

    /// Starts making `count` connections for the store behind `weak`, in the background.
    pub(super) fn spawn(self, weak: Weak<Shared>, count: usize) {
        match self {
            Connector::Single {
                client,
                manager_config,
            } => tokio::spawn(connect_single(weak, client, manager_config, count)),
            Connector::Cluster(client) => tokio::spawn(connect_cluster(weak, client, count)),
        };
    }
}

impl RedisStore {
    /// A connection, unless Redis is unconnected or `gate`'s breaker is open.
    pub(super) fn conn(&self, gate: &Breaker) -> Result<Conn, StoreError> {
        if !gate.admit() {
            return Err(StoreError::Unavailable("breaker open after a failure"));
        }
        self.conn_unguarded()
    }

    /// A connection whatever the breaker says: for purges, which the breaker never refuses
    /// (a purge that fails is kept pending, it costs no request a timeout).
    pub(super) fn conn_unguarded(&self) -> Result<Conn, StoreError> {
        let conns = self
            .shared
            .conns
            .get()
            .ok_or(StoreError::Unavailable("not connected"))?;
        Ok(self.local_conn().unwrap_or_else(|| self.shared.pick(conns)))
    }

    /// On a proxy worker (a single-threaded runtime), the worker's own connection ([`LOCAL`]);
    /// the first call starts making it and, like every call until it is made, answers `None`.
    fn local_conn(&self) -> Option<Conn> {
        let (client, manager_config) = self.shared.local.as_ref()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        // Compared by address: a `Weak` made per call would bounce its count between cores.
        let ours = Arc::as_ptr(&self.shared);
        LOCAL.with_borrow_mut(|conns| {
            if let Some((_, conn)) = conns.iter().find(|(s, _)| s.as_ptr() == ours) {
                return conn.clone();
            }
            conns.retain(|(s, _)| s.strong_count() > 0);
            let this = Arc::downgrade(&self.shared);
            conns.push((this.clone(), None));
            let (client, manager_config) = (client.clone(), manager_config.clone());
            runtime.spawn(async move {
                let made = client
                    .get_connection_manager_with_config(manager_config)
                    .await;
                LOCAL.with_borrow_mut(|conns| {
                    let Some(at) = conns.iter().position(|(s, _)| s.ptr_eq(&this)) else {
                        return;
                    };
                    match made {
                        Ok(conn) => conns[at].1 = Some(Conn::Single(conn)),
                        // A later call tries again (the breaker paces them).
                        Err(e) => {
                            tracing::debug!(error = %e, "a worker's redis connection failed");
                            conns.remove(at);
                        }
                    }
                });
            });
            None
        })
    }
}

impl Shared {
    /// The next connection, round-robin.
    fn pick(&self, conns: &[Conn]) -> Conn {
        if conns.len() == 1 {
            return conns[0].clone();
        }
        conns[self.next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone()
    }
}

/// How a connection to a single Redis reconnects by itself.
fn manager_config(connect_timeout: Duration) -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(connect_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// Makes `count` connections with `connect`, retrying until all are made; each failure feeds
/// the shared breaker, so `/health` says why. `None` once the store is gone.
async fn connect_all<F, Fut>(weak: &Weak<Shared>, count: usize, mut connect: F) -> Option<Vec<Conn>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Conn, redis::RedisError>>,
{
    let mut conns = Vec::with_capacity(count);
    loop {
        let shared = weak.upgrade()?;
        while conns.len() < count {
            match connect().await {
                Ok(conn) => conns.push(conn),
                Err(e) => {
                    shared.failed(&shared.breaker, &StoreError::Redis(e));
                    break;
                }
            }
        }
        if conns.len() == count {
            return Some(conns);
        }
        drop(shared);
        tokio::time::sleep(RETRY).await;
    }
}

/// Connects `count` managers to a single Redis, retrying until it answers.
async fn connect_single(
    weak: Weak<Shared>,
    client: redis::Client,
    manager_config: redis::aio::ConnectionManagerConfig,
    count: usize,
) {
    let (client, manager_config) = (&client, &manager_config);
    let connect = move || {
        let manager_config = manager_config.clone();
        async move {
            let conn = client.get_connection_manager_with_config(manager_config);
            conn.await.map(Conn::Single)
        }
    };
    let Some(conns) = connect_all(&weak, count, connect).await else {
        return;
    };
    let Some(shared) = weak.upgrade() else { return };
    let _ = shared.conns.set(conns.into_boxed_slice());
    shared.breaker.recovered();
    tracing::info!(connections = count, "redis connected");
}

/// Connects `count` cluster connections, then keeps the slot map (and so the per-node breakers)
/// current: every 5 s, and every second while a node fails. The connections are put to use
/// once the first slot map is known, so that the first operations find their node's breaker.
async fn connect_cluster(weak: Weak<Shared>, client: redis::cluster::ClusterClient, count: usize) {
    let client = &client;
    let connect = move || async move { client.get_async_connection().await.map(Conn::Cluster) };
    let Some(conns) = connect_all(&weak, count, connect).await else {
        return;
    };
    let mut conn = conns[0].clone();
    let mut unpublished = Some(conns);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if let Some(ranges) = cluster_slots(&shared, &mut conn).await {
            shared.update_topology(&ranges);
            if let Some(conns) = unpublished.take() {
                let count = conns.len();
                let _ = shared.conns.set(conns.into_boxed_slice());
                shared.breaker.recovered();
                tracing::info!(connections = count, "redis cluster connected");
            }
        }
        let failing = shared
            .topology
            .load()
            .nodes
            .iter()
            .any(|n| n.breaker.failing());
        drop(shared);
        let pause = if failing || unpublished.is_some() {
            1_000
        } else {
            5_000
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// The cluster's slot ranges and their masters, as `CLUSTER SLOTS` answers on `conn`; `None`
/// when it does not answer in time or readably.
async fn cluster_slots(shared: &Shared, conn: &mut Conn) -> Option<Vec<(u16, u16, NodeAddr)>> {
    let reply: Result<Result<redis::Value, _>, _> = tokio::time::timeout(
        shared.timeout.max(Duration::from_millis(500)),
        redis::cmd("CLUSTER").arg("SLOTS").query_async(conn),
    )
    .await;
    match reply {
        Ok(Ok(value)) => cluster::parse_cluster_slots(&value, "127.0.0.1"),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "CLUSTER SLOTS failed");
            None
        }
        Err(_) => None,
    }
}

impl Shared {
    /// Publishes the slot map `ranges`: masters already known keep their breaker, new ones get
    /// a closed one. A change of masters is logged.
    fn update_topology(&self, ranges: &[(u16, u16, NodeAddr)]) {
        let previous = self.topology.load();
        let next = Topology::build(
            ranges,
            &previous,
            |n: &Node| &n.addr,
            |addr| Node {
                addr: addr.clone(),
                breaker: Breaker::new(Some(addr.to_string()), None),
            },
        );
        if next.nodes.len() != previous.nodes.len()
            || next
                .nodes
                .iter()
                .zip(previous.nodes.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b))
        {
            let masters: Vec<String> = next.nodes.iter().map(|n| n.addr.to_string()).collect();
            tracing::info!(?masters, "redis cluster slot map");
        }
        self.topology.store(Arc::new(next));
    }
}
