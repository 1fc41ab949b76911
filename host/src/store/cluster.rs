//! What the Redis store connects to: one Redis, or a Redis Cluster.
//!
//! A cluster is reached through the redis crate's own cluster client
//! (`redis::cluster_async::ClusterConnection`), which routes every command to the master of its
//! key's hash slot and follows `MOVED`/`ASK` redirections. What this module adds is what Larder
//! needs on top of it:
//!
//! - [`Target`] parses `redis+cluster://user:pass@host:port,host:port` (or a `cluster` list of
//!   nodes) into seed node URLs, with the mistakes a cluster refuses (a database number) caught
//!   at start.
//! - [`Conn`] is one enum over the two connection kinds, so the single-node hot path stays a
//!   direct call into `ConnectionManager` (no boxing, no cluster routing).
//! - [`Topology`] says which node serves which slot, refreshed from `CLUSTER SLOTS`, so that the
//!   store keeps one breaker per node: a failed master makes the requests for its slots skip
//!   Redis, while the other masters keep caching.
//!
//! Key layout in a cluster: an entry (`<prefix>obj:<route>:<digest>`) is one key in any slot. A
//! tag's token and its counter are written together by one pipeline and one script, so they share
//! a hash tag: `<prefix>tag:{<tag>}` and `<prefix>cnt:{<tag>}` (on a single Redis the braces are
//! left out, as before). Nothing else touches several keys at once: a lookup reads the tokens of
//! an entry's tags one key at a time, and a store writes each tag's pair on its own.

use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;

/// Slots in a Redis Cluster.
pub const SLOTS: usize = 16_384;

/// Where the Redis store connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Redis (or a primary behind a proxy): `redis://[user:pass@]host:port[/db]`.
    Single(String),
    /// A Redis Cluster: seed nodes as `redis://[user:pass@]host:port` URLs. One reachable seed is
    /// enough; the others are found through `CLUSTER SLOTS`.
    Cluster(Vec<String>),
}

impl Target {
    /// Parses `REDIS_URL` / `[redis] url`: a plain Redis URL, or
    /// `redis+cluster://[user:pass@]host:port,host:port,...` for a cluster.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a Redis URL (expected redis://host:port)"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "redis+cluster" => false,
            "rediss" | "rediss+cluster" => true,
            "redis+unix" | "unix" => return single(url),
            other => {
                return Err(format!(
                    "unknown scheme {other:?}: use redis://, redis+cluster:// (or rediss:// for TLS)"
                ));
            }
        };
        if !scheme.to_ascii_lowercase().ends_with("+cluster") {
            return single(url);
        }
        let node_scheme = if tls { "rediss" } else { "redis" };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        match path.trim_start_matches('/') {
            "" | "0" => {}
            other => {
                return Err(format!(
                    "Redis Cluster has only database 0: remove {:?} from the URL (use `[redis] prefix` to separate deployments)",
                    format!("/{other}")
                ));
            }
        }
        let (creds, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| match creds {
                Some(c) => format!("{node_scheme}://{c}@{h}"),
                None => format!("{node_scheme}://{h}"),
            })
            .collect();
        Self::cluster(nodes)
    }

    /// `[redis] cluster = ["host:port", ...]`; entries may also be full `redis://` URLs (to carry
    /// a password).
    pub fn from_nodes(nodes: &[String]) -> Result<Self, String> {
        let mut urls = Vec::with_capacity(nodes.len());
        for node in nodes {
            if node.contains("://") {
                match Self::parse(node)? {
                    Target::Single(url) => urls.push(url),
                    Target::Cluster(more) => urls.extend(more),
                }
            } else {
                urls.push(format!("redis://{node}"));
            }
        }
        Self::cluster(urls)
    }

    fn cluster(nodes: Vec<String>) -> Result<Self, String> {
        if nodes.is_empty() {
            return Err("a Redis Cluster needs at least one node (host:port)".into());
        }
        for node in &nodes {
            let client = redis::Client::open(node.as_str())
                .map_err(|e| format!("cluster node {}: {e}", redact(node)))?;
            if client.get_connection_info().redis_settings().db() != 0 {
                return Err(format!(
                    "cluster node {}: Redis Cluster has only database 0",
                    redact(node)
                ));
            }
        }
        Ok(Target::Cluster(nodes))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }
}

fn single(url: &str) -> Result<Target, String> {
    redis::Client::open(url).map_err(|e| format!("{}: {e}", redact(url)))?;
    Ok(Target::Single(url.to_owned()))
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// One multiplexed connection to a single Redis or to a cluster. Cloning is cheap (both kinds are
/// handles to a shared connection task).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The hash slot of `key` (CRC16-XMODEM of the key, or of its first non-empty `{hash tag}`,
/// modulo 16384), as Redis Cluster computes it.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[((crc >> 8) as u8 ^ b) as usize]
    })
}

/// A master, as `CLUSTER SLOTS` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Slot ranges and their masters from a `CLUSTER SLOTS` reply. An empty host (a node that does
/// not know its own address) is `fallback_host`, the host the reply came from.
pub fn parse_cluster_slots(
    reply: &redis::Value,
    fallback_host: &str,
) -> Option<Vec<(u16, u16, NodeAddr)>> {
    use redis::Value;
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let host = if host.is_empty() || host == "?" {
            fallback_host.to_owned()
        } else {
            host
        };
        let Value::Int(port) = master.get(1)? else {
            return None;
        };
        let start = u16::try_from(*start).ok()?;
        let end = u16::try_from(*end).ok()?;
        if end < start || usize::from(end) >= SLOTS {
            return None;
        }
        out.push((
            start,
            end,
            NodeAddr {
                host,
                port: u16::try_from(*port).ok()?,
            },
        ));
    }
    Some(out)
}

/// Which node serves which slot, with per-node state `N` (the store's breakers). Nodes keep their
/// state across refreshes while their address stays.
pub struct Topology<N> {
    /// Index into `nodes` per slot; `u16::MAX` for a slot no master serves.
    slots: Box<[u16]>,
    pub nodes: Vec<Arc<N>>,
}

impl<N> Topology<N> {
    pub fn empty() -> Self {
        Self {
            slots: vec![u16::MAX; SLOTS].into_boxed_slice(),
            nodes: Vec::new(),
        }
    }

    /// Builds the map from `ranges`, reusing the nodes of `previous` whose address `addr_of`
    /// matches, and making the others with `new_node`.
    pub fn build(
        ranges: &[(u16, u16, NodeAddr)],
        previous: &Topology<N>,
        addr_of: impl Fn(&N) -> &NodeAddr,
        new_node: impl Fn(&NodeAddr) -> N,
    ) -> Self {
        let mut slots = vec![u16::MAX; SLOTS].into_boxed_slice();
        let mut nodes: Vec<Arc<N>> = Vec::new();
        for (start, end, addr) in ranges {
            let index = match nodes.iter().position(|n| addr_of(n) == addr) {
                Some(i) => i,
                None => {
                    let node = previous
                        .nodes
                        .iter()
                        .find(|n| addr_of(n) == addr)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(new_node(addr)));
                    nodes.push(node);
                    nodes.len() - 1
                }
            };
            for s in *start..=*end {
                slots[usize::from(s)] = index as u16;
            }
        }
        Self { slots, nodes }
    }

    /// The node serving `key`'s slot, if known.
    pub fn node_for(&self, key: &[u8]) -> Option<&Arc<N>> {
        let index = self.slots[usize::from(slot(key))];
        self.nodes.get(usize::from(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT` of a real Redis 7.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(crc16(b"123456789"), 0x31c3);
        // Hash tags: the first non-empty {...} decides.
        assert_eq!(slot(b"larder:tag:{foo}"), slot(b"foo"));
        assert_eq!(slot(b"larder:cnt:{foo}"), slot(b"larder:tag:{foo}"));
        assert_eq!(slot(b"a{}b"), slot(b"a{}b"));
        assert_ne!(slot(b"a{}b"), slot(b""));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
    }

    #[test]
    fn cluster_urls_become_seed_nodes() {
        assert_eq!(
            Target::parse("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001").unwrap(),
            Target::Cluster(vec![
                "redis://u:p%40ss@10.0.0.1:7000".into(),
                "redis://u:p%40ss@10.0.0.2:7001".into()
            ])
        );
        assert_eq!(
            Target::parse("redis+cluster://h1:7000/0").unwrap(),
            Target::Cluster(vec!["redis://h1:7000".into()])
        );
        assert_eq!(
            Target::parse("redis://:pw@127.0.0.1:6379/3").unwrap(),
            Target::Single("redis://:pw@127.0.0.1:6379/3".into())
        );
        assert_eq!(
            Target::from_nodes(&["h1:7000".into(), "redis://:pw@h2:7001".into()]).unwrap(),
            Target::Cluster(vec!["redis://h1:7000".into(), "redis://:pw@h2:7001".into()])
        );
    }

    #[test]
    fn cluster_mistakes_are_refused_with_the_reason() {
        let err = Target::parse("redis+cluster://h1:7000,h2:7001/2").unwrap_err();
        assert!(err.contains("only database 0"), "{err}");
        let err = Target::from_nodes(&["redis://h1:7000/1".into()]).unwrap_err();
        assert!(err.contains("only database 0"), "{err}");
        let err = Target::parse("redis+cluster://").unwrap_err();
        assert!(err.contains("at least one node"), "{err}");
        let err = Target::parse("http://h1:7000").unwrap_err();
        assert!(err.contains("unknown scheme"), "{err}");
        let err = Target::parse("127.0.0.1:6379").unwrap_err();
        assert!(err.contains("not a Redis URL"), "{err}");
        assert_eq!(
            Target::parse("rediss://h1:6380"),
            Ok(Target::Single("rediss://h1:6380".into()))
        );
        assert_eq!(
            Target::parse("rediss+cluster://h1:7000,h2:7001"),
            Ok(Target::Cluster(vec![
                "rediss://h1:7000".into(),
                "rediss://h2:7001".into()
            ]))
        );
    }

    #[test]
    fn cluster_slots_replies_are_parsed() {
        use redis::Value;
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("", 7001),
                node("10.0.0.9", 7009),
            ]),
        ]);
        let ranges = parse_cluster_slots(&reply, "seed").unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[1].2.to_string(), "seed:7001");
        let topo: Topology<NodeAddr> =
            Topology::build(&ranges, &Topology::empty(), |n| n, |a| a.clone());
        assert_eq!(topo.nodes.len(), 2);
        // slot("foo") = 12182: the second range.
        assert_eq!(topo.node_for(b"foo").unwrap().port, 7001);
        assert_eq!(topo.node_for(b"bar").unwrap().port, 7000);
        assert!(parse_cluster_slots(&Value::Int(1), "x").is_none());
    }
}
