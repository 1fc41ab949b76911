//! A real Redis Cluster for a test: `redis-server --cluster-enabled yes` processes on free
//! ports, joined by `redis-cli --cluster create`, every process killed when dropped.
//!
//! The nodes run with `cluster-require-full-coverage no` (the other masters keep answering when
//! one master without a replica fails, as a deployment that wants partial caching must configure
//! them) and a short `cluster-node-timeout`, so that a killed master is declared failed within
//! the test's time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    /// Starts `masters` masters (no replicas), slots spread evenly, and waits for
    /// `cluster_state:ok` on every node.
    pub fn start(masters: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(start_node(dir.path()));
        }
        let cluster = Self { nodes, dir };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        for node in &cluster.nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.conn())
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach cluster_state:ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = &cluster.dir;
        cluster
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Kills node `i` (SIGKILL: a crashed master).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// The index of the node serving `key`'s slot, from `CLUSTER SLOTS` of a live node.
    pub fn slot_owners(&self) -> Vec<(u16, u16, u16)> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node");
        let reply: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut node.conn())
            .expect("CLUSTER SLOTS");
        larder::store::cluster::parse_cluster_slots(&reply, "127.0.0.1")
            .expect("a CLUSTER SLOTS reply")
            .into_iter()
            .map(|(start, end, addr)| (start, end, addr.port))
            .collect()
    }

    /// The index of the node serving `key` (in `self.nodes`), by the slot map `owners`.
    pub fn node_of(&self, owners: &[(u16, u16, u16)], key: &str) -> usize {
        let slot = larder::store::cluster::slot(key.as_bytes());
        let port = owners
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| *port)
            .expect("every slot is served");
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a known node")
    }
}

impl ClusterNode {
    /// A plain connection to this node alone (no cluster routing), for assertions.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect to a cluster node")
    }

    /// The keys of this node matching `pattern`, via SCAN.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.conn();
        let iter: redis::Iter<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(pattern)
            .clone()
            .iter(&mut conn)
            .expect("scan");
        iter.collect::<Result<_, _>>().expect("scan")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Freezes the node (SIGSTOP): its connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused node (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        crate::process::signal(self.child.as_ref().expect("running"), sig);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// Starts one cluster-enabled node on a free port, trying another port when it cannot bind.
fn start_node(dir: &std::path::Path) -> ClusterNode {
    for _ in 0..10 {
        let port = quiet_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", "1000"])
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (cargo xtask test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if crate::redis_server::port_open(port) {
                return ClusterNode {
                    port,
                    child: Some(child),
                };
            }
            if child.try_wait().ok().flatten().is_some() {
                break; // exited: the port (or its bus port) was taken
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no cluster node started on any of 10 ports");
}

/// A port whose cluster bus port (`port + 10000`) is free too, both below Linux's ephemeral
/// range (32768-60999) so that the tests' own outgoing connections cannot be holding them.
fn quiet_port() -> u16 {
    loop {
        let port = 10_000 + (rand_u16() % 12_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
}
