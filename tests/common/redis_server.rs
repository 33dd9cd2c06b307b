//! A `redis-server` on loopback for the cluster tests (Debian's package), killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// `config` as node `name` of the cluster `prefix` on `redis` (3 s node TTL, no events), its
/// share of the transaction ids counted in `dir` (cluster mode needs a file of its own per node).
pub fn cluster_node(
    redis: &Redis,
    (name, prefix): (&str, &str),
    dir: &std::path::Path,
    mut config: ocpp_gateway::Config,
) -> ocpp_gateway::Config {
    config.server.node_id = name.into();
    config.ocpp.transaction_id_file = Some(dir.join(format!("{prefix}{name}.transaction-id")));
    config.cluster = Some(ocpp_gateway::config::ClusterConfig {
        redis_url: redis.url(),
        prefix: prefix.into(),
        node_ttl: Duration::from_secs(3),
        buffer: 1000,
        events: false,
        events_maxlen: 10_000,
        events_ack_timeout: Duration::from_secs(10),
        id_slot: None,
        id_slots: 16,
    });
    config
}

/// A redis-server on loopback, killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis { child, port };
        wait_until("redis-server answers PING", || {
            redis
                .connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
                .is_some()
        });
        redis
    }

    /// SIGSTOP (`true`) or SIGCONT: a Redis that stops answering without closing anything.
    pub fn freeze(&self, frozen: bool) {
        super::freeze_process(self.child.id(), frozen);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn connection(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url())
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()
    }

    /// The `line` field of every entry of the stream `key`, in order.
    pub fn stream_lines(&self, key: &str) -> Vec<String> {
        let mut con = self.connection().expect("redis");
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(&mut con)
            .expect("XRANGE");
        entries
            .ids
            .iter()
            .map(|e| e.get::<String>("line").unwrap_or_default())
            .collect()
    }

    /// Waits until each of `nodes` is connected: its liveness key is set, which a node does
    /// only once it knows its share of the transaction ids (before that, on its first start,
    /// a node answers from local state and refuses StartTransaction).
    pub fn wait_for_nodes(&self, prefix: &str, nodes: &[&str]) {
        wait_until("the nodes connected to Redis", || {
            nodes
                .iter()
                .all(|n| self.get(&format!("{prefix}node:{n}")).is_some())
        });
    }

    /// FLUSHALL: every key gone, the server still running (same run id).
    pub fn flush_all(&self) {
        let mut con = self.connection().expect("redis");
        redis::cmd("FLUSHALL").exec(&mut con).expect("FLUSHALL");
    }

    /// GET `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut con = self.connection()?;
        redis::cmd("GET")
            .arg(key)
            .query::<Option<String>>(&mut con)
            .ok()
            .flatten()
    }

    /// HGET `key` `field`.
    pub fn owner_of_field(&self, key: &str, field: &str) -> Option<String> {
        let mut con = self.connection()?;
        redis::cmd("HGET")
            .arg(key)
            .arg(field)
            .query::<Option<String>>(&mut con)
            .ok()
            .flatten()
    }

    pub fn owner(&self, key: &str) -> Option<String> {
        let mut con = self.connection()?;
        redis::cmd("HGET")
            .arg(key)
            .arg("node")
            .query::<Option<String>>(&mut con)
            .ok()
            .flatten()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node of the cluster `prefix`, with its own transaction id file (cluster mode needs one).
pub fn node(redis: &Redis, name: &str, prefix: &str) -> ocpp_gateway::Config {
    let dir = std::env::temp_dir().join(format!("ocpp-cluster-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("counter directory");
    cluster_node(redis, (name, prefix), &dir, super::test_config())
}

/// The lines of a file (none while it does not exist).
pub fn file_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether `a` and `b` hold the same lines, each as often, in whatever order (the journal and
/// the stream are two sinks: each charge point's lines keep their order in both, but lines of
/// different processors may interleave differently).
pub fn same_lines(a: &[String], b: &[String]) -> bool {
    let sorted = |lines: &[String]| {
        let mut lines = lines.to_vec();
        lines.sort_unstable();
        lines
    };
    a.len() == b.len() && sorted(a) == sorted(b)
}

/// A node with the journal in a directory of its own and `cluster.events` on: the directory,
/// the journal's path, the config.
pub fn with_events_stream(
    redis: &Redis,
    test: &str,
    prefix: &str,
) -> (PathBuf, PathBuf, ocpp_gateway::Config) {
    let dir = std::env::temp_dir().join(format!("ocpp-cluster-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("journal directory");
    let journal = dir.join("events.jsonl");
    let mut config = node(redis, "node-a", prefix);
    config.events.sinks = ocpp_gateway::config::Sinks::JOURNAL;
    config.events.path = journal.clone();
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.events = true;
    }
    (dir, journal, config)
}
