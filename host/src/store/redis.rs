//! The Redis store: shared by every gateway instance, surviving restarts.
//!
//! Redis is an accelerator here, never a dependency of an answer: every operation has a short
//! timeout, and after a failure a breaker skips Redis for a moment, so a dead or hung Redis costs
//! at most one timeout to the few requests that meet it, then nothing until it is back. The
//! connection is made in the background: the gateway starts and serves while Redis is down, and
//! begins caching as soon as it answers. `redis::aio::ConnectionManager` reconnects after a lost
//! connection by itself; `redis.connections` of them are used round-robin.
//!
//! On a Redis Cluster ([`super::cluster`]) the same operations go through the redis crate's
//! cluster connection, each touching one slot, and the breaker is kept per master: a failed
//! master costs the requests that need it, not the others.
//!
//! A hit costs two round trips: the entry, then the tokens of its tags (whose names the entry
//! holds). A store costs two: the tags' tokens (creating missing ones), then the entry. A purge
//! replaces its tags' tokens, then announces itself on `<prefix>invalidations` (pub/sub) for
//! the instances' memory tiers ([`super::tiered`]).
//!
//! Purges are the exception to "an accelerator, never a dependency": the breaker never refuses
//! one, and one that Redis does not acknowledge is kept pending ([`super::pending`]), retried
//! in the background, and meanwhile this store answers no lookup.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::cluster::{self, Conn, NodeAddr, Target, Topology};
use super::entry::Entry;
use super::key::{ObjectKey, TagId};
use super::pending::{Batch, PendingPurges};
use super::tags::{self, Token};
use super::tiered::Announcement;
use super::{Found, NewEntry, Standing, Storage, StoreError, StoreHealth, StoreOutcome, now_ms};
use crate::config::RedisConfig;

/// How long a purge marker outlives the purge when no entry extends it: fills in flight at the
/// time of a purge must find the marker, and they rarely take more than minutes.
const PURGE_MARKER_TTL_SECS: u64 = 86_400;
/// How long Redis is skipped after a failure before one request probes it again.
const BREAKER_OPEN_MS: u64 = 1_000;
/// Extra life of a tag token beyond the entries that reference it.
const TOKEN_MARGIN_SECS: u64 = 60;

/// Replaces a tag's token atomically, and takes the count of entries stored with the tag since
/// its previous purge. A soft purge keeps the time of the last hard purge, and every purge keeps
/// the token's lineage ([`tags`]); a token that is missing or unreadable (evicted, or written by
/// an older version) is replaced as by a hard purge, with a new lineage, so a soft purge never
/// brings back what a hard purge or the token's loss invalidated.
/// ARGV: now_us, soft ('1'/'0'), nonce, marker TTL, a fresh lineage.
const PURGE_SCRIPT: &str = r#"
local hard, lineage = ARGV[1], ARGV[5]
local old = redis.call('GET', KEYS[1])
if old then
  local h, l = string.match(old, '^(%d+)%.%d+%.%x+%.(%x+)$')
  if l then
    lineage = l
    if ARGV[2] == '1' then hard = h end
  end
end
redis.call('SET', KEYS[1], hard .. '.' .. ARGV[1] .. '.' .. ARGV[3] .. '.' .. lineage, 'EX', ARGV[4])
return tonumber(redis.call('GETDEL', KEYS[2]) or '0')
"#;

/// A hit in one round trip (single Redis only): the entry's value and the current tokens of the
/// tags recorded in it. The script reads the tag ids at their fixed place in the value's header
/// (see `entry.rs`: `n_tags` at byte 43, then `tag:[u8;16] token_len:u8 token` each); a value it
/// cannot read is answered alone, and the host decodes it (a corrupt value is then deleted).
/// ARGV[1] is the token key prefix (`<prefix>tag:`). Answer: `{value, token...}`, or nil.
/// Not for a cluster, where the tokens live in other slots.
///
/// Routes whose entries carry only implicit tags (their key and its prefixes, which the host
/// derives from the key before it asks) need no script: one `MGET` of the value and those tags'
/// tokens answers it, and costs Redis about half the CPU of the script (which copies the value
/// into Lua and formats each tag's key). The store learns per route which kind it serves
/// ([`RedisStore::lookup`]); a wrong guess costs one more round trip, never a wrong answer.
const LOOKUP_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if #v < 45 or string.sub(v, 1, 4) ~= 'LRD2' then return {v} end
local n = string.byte(v, 44) + 256 * string.byte(v, 45)
if n == 0 then return {v} end
local pos, keys, hex = 46, {}, string.rep('%02x', 16)
for i = 1, n do
  if pos + 16 > #v then return {v} end
  keys[i] = ARGV[1] .. string.format(hex, string.byte(v, pos, pos + 15))
  pos = pos + 17 + string.byte(v, pos + 16)
end
local out = redis.call('MGET', unpack(keys))
table.insert(out, 1, v)
return out
"#;

/// What a lookup's first round trip brought back.
struct Fetched {
    value: Option<Vec<u8>>,
    tokens: FetchedTokens,
}

enum FetchedTokens {
    /// None (a cluster, or no value).
    None,
    /// The tokens of the tags recorded in the value, in its order ([`LOOKUP_SCRIPT`]).
    Recorded(Vec<Option<Vec<u8>>>),
    /// The tokens of the key's implicit tags, in the key's order.
    Implicit(Vec<Option<Vec<u8>>>),
}

pub struct RedisStore {
    shared: Arc<Shared>,
    purge_script: redis::Script,
    lookup_script: redis::Script,
    /// Routes whose last entry looked up carried tags beyond its implicit ones: their lookups
    /// use [`LOOKUP_SCRIPT`]; the others one `MGET`.
    tagged_routes: RwLock<HashSet<String>>,
    /// Identifies this process in invalidation messages, so it can skip its own.
    instance: u64,
}

struct Shared {
    prefix: String,
    timeout: Duration,
    target: Target,
    /// The connections (`redis.connections`), used round-robin; set once all are made.
    conns: OnceLock<Box<[Conn]>>,
    next: AtomicUsize,
    /// The breaker of a single Redis. For a cluster, it covers connecting and what no node can
    /// be blamed for; each node has its own ([`Node`]).
    breaker: Breaker,
    /// A cluster's slot map with a breaker per master (empty for a single Redis).
    topology: ArcSwap<Topology<Node>>,
    /// Failed operations since start (timeouts, refused connections, error replies such as
    /// OOM, READONLY or NOAUTH).
    errors: AtomicU64,
    /// How a proxy worker makes its own connection (a single Redis only): see [`LOCAL`].
    local: Option<(redis::Client, redis::aio::ConnectionManagerConfig)>,
    /// Purges Redis has not acknowledged yet; while any is, lookups are refused.
    pending: Arc<PendingPurges>,
    /// How long a purge waits for the memory tiers' acknowledgements (ms).
    ack_wait_ms: AtomicU64,
}

thread_local! {
    /// Each proxy worker's own connection to each store, made on the worker's runtime
    /// ([`crate::server`]): a multiplexed connection's task then runs on the thread of the
    /// requests that use it, so that a lookup's hand-over to it and back wakes no other thread
    /// (on a virtual machine, waking a sleeping core costs 20-40 µs, a Redis round trip's
    /// worth). `None` while it is being made. Entries of dropped stores are pruned.
    static LOCAL: std::cell::RefCell<Vec<(Weak<Shared>, Option<Conn>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A cluster master and its breaker.
struct Node {
    addr: NodeAddr,
    breaker: Breaker,
}

/// Skips Redis (or one cluster node) for a moment after a failure.
struct Breaker {
    /// 0 when closed; else Redis is skipped until this time (ms since the epoch).
    open_until_ms: AtomicU64,
    failing: AtomicBool,
    /// Last error, for `/health` and for logging once per change.
    last_error: std::sync::Mutex<Option<String>>,
    /// When the current error was last logged (ms since the epoch).
    logged_at_ms: AtomicU64,
    /// The node's address in logs (`None` for a single Redis).
    name: Option<String>,
}

/// The breaker an operation answers to: the single Redis's, or the node's serving its key.
enum Gate<'a> {
    Shared(&'a Breaker),
    Node(Arc<Node>),
}

impl std::ops::Deref for Gate<'_> {
    type Target = Breaker;
    fn deref(&self) -> &Breaker {
        match self {
            Gate::Shared(b) => b,
            Gate::Node(n) => &n.breaker,
        }
    }
}

/// A persisting error is logged again at most this often.
const LOG_INTERVAL_MS: u64 = 60_000;

impl RedisStore {
    /// Creates the store and starts connecting in the background; never fails and never waits.
    /// Purges Redis does not take are kept pending in memory only (the gateway uses
    /// [`RedisStore::start_with`] and a journal).
    pub fn start(config: &RedisConfig) -> Result<Self, StoreError> {
        let pending = PendingPurges::open(None, crate::config::defaults::MAX_PENDING_PURGES);
        Self::start_with(config, pending)
    }

    /// [`RedisStore::start`], with `pending` holding the purges an earlier run left unapplied
    /// (see [`super::pending`]).
    pub fn start_with(config: &RedisConfig, pending: PendingPurges) -> Result<Self, StoreError> {
        let target = config.target().map_err(StoreError::Config)?;
        // `rediss://` speaks rustls with ring; make it the process's provider unless one is
        // installed already (then that one serves).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connect_timeout = config.timeout.max(Duration::from_millis(500));
        let manager_config = manager_config(connect_timeout);
        let single = match &target {
            Target::Single(url) => Some(redis::Client::open(url.as_str())?),
            Target::Cluster(_) => None,
        };
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            target: target.clone(),
            conns: OnceLock::new(),
            next: AtomicUsize::new(0),
            // Failing until the first answer: `/health` says "connecting" until then.
            breaker: Breaker::new(None, Some("connecting".into())),
            topology: ArcSwap::from_pointee(Topology::empty()),
            errors: AtomicU64::new(0),
            local: single
                .clone()
                .map(|client| (client, manager_config.clone())),
            pending: Arc::new(pending),
            ack_wait_ms: AtomicU64::new(crate::config::defaults::MEMORY_TIER_TRUST_MS),
        });
        let count = config.connections.max(1);
        tracing::info!(
            redis = %config.display_url(),
            cluster = target.is_cluster(),
            connections = count,
            "connecting to redis in the background"
        );
        let weak = Arc::downgrade(&shared);
        match target {
            Target::Single(_) => {
                if let Some(client) = single {
                    tokio::spawn(connect_single(weak, client, manager_config, count));
                }
            }
            Target::Cluster(nodes) => {
                // Requests for a failed master are retried a little (a MOVED after a failover is
                // a retry too); the store's own timeout bounds what a request waits.
                let client = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(connect_timeout)
                    .response_timeout(connect_timeout)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()?;
                tokio::spawn(connect_cluster(weak, client, count));
            }
        }
        let instance = rand::random();
        tokio::spawn(drain_pending(Arc::downgrade(&shared), instance));
        Ok(Self::view(shared, instance))
    }

    /// A store over `shared`, as this process's instance `instance`.
    fn view(shared: Arc<Shared>, instance: u64) -> Self {
        Self {
            shared,
            purge_script: redis::Script::new(PURGE_SCRIPT),
            lookup_script: redis::Script::new(LOOKUP_SCRIPT),
            tagged_routes: RwLock::new(HashSet::new()),
            instance,
        }
    }

    /// Purges not yet acknowledged by Redis.
    pub fn pending(&self) -> &PendingPurges {
        &self.shared.pending
    }

    /// Where the invalidation subscription may connect: the single Redis, or every known
    /// cluster node (seeds first), since a cluster broadcasts `PUBLISH` to all its nodes.
    pub fn subscription_targets(&self) -> SubscriptionTargets {
        SubscriptionTargets {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// This process's id in invalidation announcements.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The channel invalidations are announced on.
    pub fn channel(&self) -> String {
        format!("{}invalidations", self.shared.prefix)
    }

    fn cluster(&self) -> bool {
        self.shared.target.is_cluster()
    }

    fn obj_key(&self, key: &ObjectKey) -> String {
        format!("{}obj:{}:{}", self.shared.prefix, key.route, key.digest)
    }

    /// A tag's token. In a cluster the tag is a hash tag, so that the token and its counter
    /// share a slot (the purge script and the store pipeline touch both).
    fn tag_key(&self, tag: &TagId) -> String {
        if self.cluster() {
            format!("{}tag:{{{}}}", self.shared.prefix, tag)
        } else {
            format!("{}tag:{}", self.shared.prefix, tag)
        }
    }

    fn count_key(&self, tag: &TagId) -> String {
        if self.cluster() {
            format!("{}cnt:{{{}}}", self.shared.prefix, tag)
        } else {
            format!("{}cnt:{}", self.shared.prefix, tag)
        }
    }

    /// The breaker for an operation on `key`.
    fn gate(&self, key: &str) -> Gate<'_> {
        if !self.cluster() {
            return Gate::Shared(&self.shared.breaker);
        }
        match self.shared.topology.load().node_for(key.as_bytes()) {
            Some(node) => Gate::Node(node.clone()),
            None => Gate::Shared(&self.shared.breaker),
        }
    }

    /// A connection, unless Redis is unconnected or `gate`'s breaker is open.
    fn conn(&self, gate: &Breaker) -> Result<Conn, StoreError> {
        if !gate.admit() {
            return Err(StoreError::Unavailable("breaker open after a failure"));
        }
        self.conn_unguarded()
    }

    /// A connection whatever the breaker says: for purges, which the breaker never refuses
    /// (a purge that fails is kept pending, it costs no request a timeout).
    fn conn_unguarded(&self) -> Result<Conn, StoreError> {
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

    /// Runs `op` with the timeout, feeding `gate`'s breaker.
    async fn guarded<T>(
        &self,
        gate: &Breaker,
        op: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.shared.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(self.shared.timeout)),
        };
        match &result {
            Ok(_) => gate.recovered(),
            Err(e) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                gate.failed(e, self.shared.errors.load(Ordering::Relaxed));
            }
        }
        result
    }

    /// An entry's value and, on a single Redis, the current tokens of tags it is expected to
    /// carry, in one round trip: those recorded in the value ([`LOOKUP_SCRIPT`]) on a route
    /// whose entries carry explicit tags, else the key's implicit tags (one `MGET`). On a
    /// cluster the value alone.
    async fn get_with_tokens(&self, obj_key: &str, key: &ObjectKey) -> Result<Fetched, StoreError> {
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
            return Ok(Fetched {
                value,
                tokens: FetchedTokens::Implicit(values),
            });
        }
        let mut invocation = self.lookup_script.key(obj_key);
        invocation.arg(format!("{}tag:", self.shared.prefix));
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
    async fn current_tokens(
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

    fn unlink_later(&self, key: String) {
        let gate = self.gate(&key);
        if let Ok(mut conn) = self.conn(&gate) {
            tokio::spawn(async move {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(key).query_async(&mut conn).await;
            });
        }
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

    /// Announces a purge. On a cluster any node will do (PUBLISH reaches every node's
    /// subscribers), so it goes to the first node whose breaker is closed.
    async fn publish(&self, message: String) -> Result<u64, StoreError> {
        let channel = self.channel();
        if !self.cluster() {
            let gate = Gate::Shared(&self.shared.breaker);
            let mut conn = self.conn_unguarded()?;
            let receivers: i64 = self
                .guarded(
                    &gate,
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&message)
                        .query_async(&mut conn),
                )
                .await?;
            return Ok(receivers.max(0) as u64);
        }
        let nodes = self.shared.topology.load().nodes.clone();
        let mut last = StoreError::Unavailable("no cluster node to publish on");
        for node in nodes {
            let Ok(Conn::Cluster(mut conn)) = self.conn_unguarded() else {
                continue;
            };
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: node.addr.host.clone(),
                port: node.addr.port,
            });
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&channel).arg(&message);
            match self
                .guarded(&node.breaker, conn.route_command(cmd, routing))
                .await
            {
                Ok(receivers) => {
                    tracing::debug!(node = %node.addr, ?receivers, "purge announced");
                    // A cluster counts only the subscribers of the node it was published on.
                    return Ok(redis::from_redis_value::<i64>(receivers)
                        .unwrap_or(0)
                        .max(0) as u64);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Replaces `tags`' tokens and announces it; Ok only when Redis took both. The breaker is
    /// not asked: a purge is never skipped.
    async fn purge_acknowledged(
        &self,
        tags: &[TagId],
        soft: bool,
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut affected = 0u64;
        for tag in tags {
            // The token and the counter: one slot (a hash tag) in a cluster.
            let tag_key = self.tag_key(tag);
            let gate = self.gate(&tag_key);
            let mut conn = self.conn_unguarded()?;
            let mut invocation = self.purge_script.key(tag_key);
            invocation
                .key(self.count_key(tag))
                .arg(now)
                .arg(if soft { "1" } else { "0" })
                .arg(format!("{:x}", rand::random::<u64>()))
                .arg(PURGE_MARKER_TTL_SECS)
                .arg(format!("{:x}", rand::random::<u64>()));
            let n: i64 = self
                .guarded(&gate, invocation.invoke_async(&mut conn))
                .await?;
            affected += n.max(0) as u64;
        }
        // Tell every instance, for its in-process state. The purge above is what makes the
        // entries invalid in Redis; an announcement that Redis did not take keeps the purge
        // pending, so it is made and announced again.
        let announcement = Announcement {
            instance: self.instance,
            soft,
            tags: tags.to_vec(),
            flush: false,
            ack: rand::random::<u64>() | 1,
        };
        let receivers = self.publish(announcement.encode()).await?;
        self.await_acks(announcement.ack, receivers).await;
        Ok(affected)
    }

    /// Waits until the `receivers` subscribers of announcement `ack` have applied it, at most
    /// the tiers' trust window ([`RedisStore::set_ack_wait`]). Each memory tier applies an
    /// announcement, then counts itself on `<prefix>ack:<id>`; normally all have within a
    /// millisecond. A tier that has not by the end of the window heard nothing on its
    /// subscription since before the announcement, so it has stopped answering by then
    /// ([`super::tiered`]). Either way, once this returns, no tier serves what was purged.
    async fn await_acks(&self, ack: u64, receivers: u64) {
        let wait = Duration::from_millis(self.shared.ack_wait_ms.load(Ordering::Relaxed));
        if receivers == 0 || wait.is_zero() {
            return;
        }
        let key = self.ack_key(ack);
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_micros(200);
        loop {
            let acked: Option<u64> = match self.conn_unguarded() {
                Ok(mut conn) => self
                    .guarded(
                        &self.shared.breaker,
                        redis::cmd("GET").arg(&key).query_async(&mut conn),
                    )
                    .await
                    .unwrap_or(None),
                Err(_) => None,
            };
            if acked.unwrap_or(0) >= receivers {
                return;
            }
            if tokio::time::Instant::now() + pause >= deadline {
                tokio::time::sleep_until(deadline).await;
                tracing::debug!(
                    receivers,
                    acked,
                    "not every tier acknowledged a purge; waited out their trust window"
                );
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Counts this instance's tier on announcement `ack` (see [`RedisStore::await_acks`]).
    pub async fn acknowledge(&self, ack: u64) {
        let key = self.ack_key(ack);
        let Ok(mut conn) = self.conn_unguarded() else {
            return;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(&key).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(60).ignore();
        let done: Result<(), _> = self
            .guarded(&self.shared.breaker, pipe.query_async(&mut conn))
            .await;
        if let Err(e) = done {
            tracing::debug!(error = %e, "could not acknowledge an invalidation");
        }
    }

    fn ack_key(&self, ack: u64) -> String {
        format!("{}ack:{ack:x}", self.shared.prefix)
    }

    /// How long a purge waits for every memory tier to acknowledge it: the tiers' trust window
    /// (`cache.memory_tier_trust_ms`), after which a tier that did not has stopped answering.
    pub fn set_ack_wait(&self, wait: Duration) {
        self.shared
            .ack_wait_ms
            .store(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// Replaces tokens this version cannot read with a token purged now (see `store`).
    async fn replace_unreadable_tokens(&self, tags: &[TagId]) {
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

    /// Applies what is pending, oldest state first; Ok when all of it was acknowledged.
    async fn drain_once(&self) -> Result<(), StoreError> {
        let batch = self.shared.pending.batch();
        if batch.is_empty() {
            return Ok(());
        }
        if batch.flush {
            self.flush().await?;
        }
        for (soft, list) in [(false, &batch.hard), (true, &batch.soft)] {
            if !list.is_empty() {
                let tags: Vec<TagId> = list.iter().map(|(tag, _)| *tag).collect();
                self.purge_acknowledged(&tags, soft, tags::now_us()).await?;
            }
        }
        self.shared.pending.applied(&batch).await;
        log_drained(&batch);
        Ok(())
    }

    /// Drops every entry under the prefix on every master, and tells every instance to drop
    /// its memory tier: what a pending set that overflowed owes.
    async fn flush(&self) -> Result<(), StoreError> {
        let pattern = format!("{}obj:*", self.shared.prefix);
        let mut dropped = 0u64;
        let nodes: Vec<Option<Arc<Node>>> = if self.cluster() {
            self.shared
                .topology
                .load()
                .nodes
                .iter()
                .cloned()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let mut conn = self.conn_unguarded()?;
                let breaker = node.as_ref().map_or(&self.shared.breaker, |n| &n.breaker);
                let (next, keys): (u64, Vec<String>) = match (&node, &mut conn) {
                    (Some(n), Conn::Cluster(c)) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: n.addr.host.clone(),
                            port: n.addr.port,
                        });
                        let value = self
                            .guarded(breaker, c.route_command(scan, routing))
                            .await?;
                        redis::from_redis_value(value)
                            .map_err(|_| StoreError::Unavailable("SCAN answered unreadably"))?
                    }
                    _ => self.guarded(breaker, scan.query_async(&mut conn)).await?,
                };
                for key in &keys {
                    // One key a command: on a cluster they live in different slots.
                    let _: i64 = self
                        .guarded(
                            breaker,
                            redis::cmd("UNLINK").arg(key).query_async(&mut conn),
                        )
                        .await?;
                }
                dropped += keys.len() as u64;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let announcement = Announcement {
            instance: self.instance,
            soft: false,
            tags: Vec::new(),
            flush: true,
            ack: rand::random::<u64>() | 1,
        };
        let receivers = self.publish(announcement.encode()).await?;
        self.await_acks(announcement.ack, receivers).await;
        tracing::warn!(
            dropped,
            "every cached entry dropped: the pending purges had overflowed"
        );
        Ok(())
    }
}

fn log_drained(batch: &Batch) {
    tracing::info!(
        hard = batch.hard.len(),
        soft = batch.soft.len(),
        flush = batch.flush,
        "pending purges applied; serving from redis again"
    );
}

/// Applies pending purges as soon as Redis answers: tried again every 25 ms at first, backing
/// off to every 250 ms, so that after an outage they land within a quarter of a second (plus a
/// timeout) of Redis answering.
async fn drain_pending(weak: Weak<Shared>, instance: u64) {
    let mut delay = Duration::from_millis(25);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if !shared.pending.any() {
            delay = Duration::from_millis(25);
            let pending = shared.pending.clone();
            drop(shared);
            // Woken by a new pending purge; the timeout lets the task end with its store.
            let _ = tokio::time::timeout(Duration::from_secs(1), pending.added.notified()).await;
            continue;
        }
        let store = RedisStore::view(shared, instance);
        if let Err(e) = store.drain_once().await {
            tracing::debug!(error = %e, "pending purges not applied yet");
            drop(store);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
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

/// Connects `count` managers to a single Redis, retrying until it answers.
async fn connect_single(
    weak: Weak<Shared>,
    client: redis::Client,
    manager_config: redis::aio::ConnectionManagerConfig,
    count: usize,
) {
    let mut conns = Vec::with_capacity(count);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        while conns.len() < count {
            match client
                .get_connection_manager_with_config(manager_config.clone())
                .await
            {
                Ok(conn) => conns.push(Conn::Single(conn)),
                Err(e) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    shared
                        .breaker
                        .failed(&StoreError::Redis(e), shared.errors.load(Ordering::Relaxed));
                    break;
                }
            }
        }
        if conns.len() == count {
            let _ = shared
                .conns
                .set(std::mem::take(&mut conns).into_boxed_slice());
            shared.breaker.recovered();
            tracing::info!(connections = count, "redis connected");
            return;
        }
        drop(shared);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Connects `count` cluster connections, then keeps the slot map (and so the per-node breakers)
/// current: every 5 s, and every second while a node fails.
async fn connect_cluster(weak: Weak<Shared>, client: redis::cluster::ClusterClient, count: usize) {
    let mut conns = Vec::with_capacity(count);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        while conns.len() < count {
            match client.get_async_connection().await {
                Ok(conn) => conns.push(Conn::Cluster(conn)),
                Err(e) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    shared
                        .breaker
                        .failed(&StoreError::Redis(e), shared.errors.load(Ordering::Relaxed));
                    break;
                }
            }
        }
        if conns.len() == count {
            break;
        }
        drop(shared);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut conn = conns[0].clone();
    let mut published = Some(conns);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let reply: Result<Result<redis::Value, _>, _> = tokio::time::timeout(
            shared.timeout.max(Duration::from_millis(500)),
            redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn),
        )
        .await;
        let ranges = match reply {
            Ok(Ok(value)) => cluster::parse_cluster_slots(&value, "127.0.0.1"),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "CLUSTER SLOTS failed");
                None
            }
            Err(_) => None,
        };
        if let Some(ranges) = ranges {
            let previous = shared.topology.load();
            let next = Topology::build(
                &ranges,
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
            shared.topology.store(Arc::new(next));
            if let Some(conns) = published.take() {
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
            .any(|n| n.breaker.failing.load(Ordering::Relaxed));
        drop(shared);
        let pause = if failing || published.is_some() {
            1_000
        } else {
            5_000
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Where the invalidation subscription connects, in order of preference; see
/// [`RedisStore::subscription_targets`].
#[derive(Clone)]
pub struct SubscriptionTargets {
    shared: Weak<Shared>,
}

impl SubscriptionTargets {
    /// Acknowledges announcement `ack` for this instance's tier, in the background.
    pub fn acknowledge(&self, ack: u64, instance: u64) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        tokio::spawn(async move { RedisStore::view(shared, instance).acknowledge(ack).await });
    }

    /// The URLs to try: the single Redis; or a cluster's seeds, then the other masters it
    /// reported (with the seeds' credentials).
    pub fn urls(&self) -> Vec<String> {
        let Some(shared) = self.shared.upgrade() else {
            return Vec::new();
        };
        match &shared.target {
            Target::Single(url) => vec![url.clone()],
            Target::Cluster(seeds) => {
                let mut urls = seeds.clone();
                let (scheme, creds) = seeds
                    .first()
                    .and_then(|s| s.split_once("://"))
                    .map(|(scheme, rest)| {
                        let creds = rest.rfind('@').map(|at| &rest[..=at]).unwrap_or("");
                        (scheme.to_owned(), creds.to_owned())
                    })
                    .unwrap_or(("redis".into(), String::new()));
                for node in &shared.topology.load().nodes {
                    let url = format!("{scheme}://{creds}{}", node.addr);
                    if !urls.contains(&url) {
                        urls.push(url);
                    }
                }
                urls
            }
        }
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

impl Breaker {
    fn new(name: Option<String>, error: Option<String>) -> Self {
        Self {
            open_until_ms: AtomicU64::new(0),
            failing: AtomicBool::new(error.is_some()),
            last_error: std::sync::Mutex::new(error),
            logged_at_ms: AtomicU64::new(0),
            name,
        }
    }

    fn failed(&self, e: &StoreError, errors: u64) {
        let now = now_ms();
        self.open_until_ms
            .store(now + BREAKER_OPEN_MS, Ordering::Relaxed);
        let mut msg = e.to_string();
        // A pipeline repeats its error once per command: keep the message readable.
        if msg.len() > 240 {
            let mut cut = 240;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push_str("...");
        }
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        // Log once per change of error, and once a minute while it persists; not once per
        // request.
        let changed = !self.failing.swap(true, Ordering::Relaxed) || last.as_deref() != Some(&msg);
        if changed || now >= self.logged_at_ms.load(Ordering::Relaxed) + LOG_INTERVAL_MS {
            self.logged_at_ms.store(now, Ordering::Relaxed);
            match &self.name {
                None => tracing::warn!(
                    error = %msg,
                    errors,
                    "redis failing; requests go to the upstream uncached"
                ),
                Some(node) => tracing::warn!(
                    %node,
                    error = %msg,
                    errors,
                    "redis cluster node failing; requests for its slots go to the upstream uncached"
                ),
            }
        }
        *last = Some(msg);
    }

    /// Called after every successful operation: while Redis is healthy it costs one relaxed
    /// load, no write to a shared cache line.
    fn recovered(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            self.open_until_ms.store(0, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            match &self.name {
                None => tracing::info!("redis answering; caching on"),
                Some(node) => tracing::info!(%node, "redis cluster node answering"),
            }
        }
    }

    /// The breaker. Closed (0): every request uses Redis. Open: none does until the window
    /// ends; then exactly one request probes (it wins the compare-exchange that opens the next
    /// window), so a hung Redis costs one timeout per window, not one per request.
    fn admit(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = now_ms();
        now >= until
            && self
                .open_until_ms
                .compare_exchange(
                    until,
                    now + BREAKER_OPEN_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn error(&self) -> Option<String> {
        self.last_error.lock().map(|l| l.clone()).unwrap_or(None)
    }
}

impl Storage for RedisStore {
    async fn lookup(&self, key: &ObjectKey) -> Result<Option<Found>, StoreError> {
        if self.shared.pending.any() {
            // Entries a pending purge invalidates are still valid in Redis: serve none.
            return Err(StoreError::Unavailable("purges pending"));
        }
        let obj_key = self.obj_key(key);
        let fetched = self.get_with_tokens(&obj_key, key).await?;
        let Some(value) = fetched.value else {
            return Ok(None);
        };
        let entry = match Entry::decode(Bytes::from(value)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(key = %obj_key, error = %e, "deleting a corrupt cache entry");
                self.unlink_later(obj_key);
                return Ok(None);
            }
        };
        let current = self.current_tokens(key, &entry, fetched.tokens).await?;
        let current: Vec<Option<Token>> = current
            .iter()
            .map(|v| v.as_deref().and_then(Token::decode))
            .collect();
        let recorded: Vec<Token> = entry.tags.iter().map(|(_, t)| *t).collect();
        match tags::standing(&recorded, &current, entry.meta.fill_started_us) {
            Standing::Invalid => {
                self.unlink_later(obj_key);
                Ok(None)
            }
            standing => Ok(Some(Found { entry, standing })),
        }
    }

    async fn store(&self, key: &ObjectKey, new: NewEntry) -> Result<StoreOutcome, StoreError> {
        let obj_key = self.obj_key(key);
        let obj_gate = self.gate(&obj_key);
        let mut conn = self.conn(&obj_gate)?;
        let life = new.meta.storage_lifetime_secs().max(1);
        let token_life = life + TOKEN_MARGIN_SECS;

        // Read each tag's token, creating it where missing, and make it outlive this entry.
        let fresh: Vec<Token> = new.tags.iter().map(|_| Token::new_unpurged()).collect();
        let previous: Vec<Option<Vec<u8>>> = if new.tags.is_empty() {
            Vec::new()
        } else if self.cluster() {
            // One pipeline per tag: its token and counter share a slot, other tags do not.
            let per_tag = new.tags.iter().zip(&fresh).map(|(tag, token)| {
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
            futures_util::future::try_join_all(per_tag).await?
        } else {
            let pipe = self.tag_pipeline(&new.tags, &fresh, token_life);
            self.guarded(&obj_gate, pipe.query_async(&mut conn)).await?
        };
        let mut tokens = Vec::with_capacity(fresh.len());
        let mut unreadable = Vec::new();
        for ((prev, fresh), tag) in previous.iter().zip(fresh).zip(&new.tags) {
            match prev {
                None => tokens.push(fresh),
                Some(bytes) => match Token::decode(bytes) {
                    Some(t) => tokens.push(t),
                    None => unreadable.push(*tag),
                },
            }
        }
        if !unreadable.is_empty() {
            // A token we cannot read (written by an older version): refuse this fill rather
            // than guess, and replace the token as a hard purge now would, so that later fills
            // are stored and none that started before it is.
            self.replace_unreadable_tokens(&unreadable).await;
            return Ok(StoreOutcome::PurgedDuringFill);
        }
        if tags::may_store(&tokens, new.meta.fill_started_us).is_err() {
            return Ok(StoreOutcome::PurgedDuringFill);
        }

        let entry = Entry {
            status: new.status,
            headers: new.headers,
            body: new.body,
            meta: new.meta,
            tags: new.tags.into_iter().zip(tokens).collect(),
        };
        let value = entry.encode();
        let _: () = self
            .guarded(
                &obj_gate,
                redis::cmd("SET")
                    .arg(&obj_key)
                    .arg(value)
                    .arg("EX")
                    .arg(life)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(StoreOutcome::Stored)
    }

    /// Applied and announced, or kept pending ([`StoreError::PurgePending`]) to be applied as
    /// soon as Redis answers.
    async fn purge(&self, tags: &[TagId], soft: bool) -> Result<u64, StoreError> {
        let now = tags::now_us();
        match self.purge_acknowledged(tags, soft, now).await {
            Ok(affected) => Ok(affected),
            Err(e) => {
                tracing::warn!(error = %e, tags = tags.len(), soft, "redis did not take a purge; kept pending until it does");
                self.shared.pending.add(tags, soft, now).await;
                Err(StoreError::PurgePending(Box::new(e)))
            }
        }
    }

    fn health(&self) -> StoreHealth {
        let mut detail = self.shared.breaker.error();
        if detail.is_none() && self.cluster() {
            let failing: Vec<String> = self
                .shared
                .topology
                .load()
                .nodes
                .iter()
                .filter_map(|n| n.breaker.error().map(|e| format!("{}: {e}", n.addr)))
                .collect();
            if !failing.is_empty() {
                detail = Some(failing.join("; "));
            }
        }
        StoreHealth {
            kind: if self.cluster() {
                "redis-cluster"
            } else {
                "redis"
            },
            up: self.shared.conns.get().is_some() && detail.is_none(),
            detail,
            memory_tier: None,
            errors: self.shared.errors.load(Ordering::Relaxed),
            pending_purges: self.shared.pending.len(),
            pending_overflow: self.shared.pending.overflowed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::key::tag_id;

    /// The lookup script reads tag ids at fixed offsets of the value: pin them.
    #[test]
    fn the_lookup_script_reads_the_entry_layout() {
        let mut entry = crate::store::entry::tests::sample();
        entry
            .tags
            .push((tag_id("all-repos"), Token::new_unpurged()));
        let value = entry.encode();
        assert!(LOOKUP_SCRIPT.contains("'LRD2'") && value.starts_with(b"LRD2"));
        // Lua's 1-based bytes 44-45 are n_tags, then each tag at 46, 46 + 17 + token_len, ...
        assert_eq!(u16::from_le_bytes([value[43], value[44]]), 2);
        assert_eq!(value[45..61], entry.tags[0].0.0);
        let next = 45 + 17 + usize::from(value[61]);
        assert_eq!(value[next..next + 16], entry.tags[1].0.0);
    }
}
