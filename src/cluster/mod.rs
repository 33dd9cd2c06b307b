//! Many gateways sharing one Redis (`[cluster]`, off by default): a registry of which node holds
//! each charge point, node liveness, and the newest connection of an identity winning across
//! nodes. Redis is only ever called from this module's two threads; processors hand over what
//! happened without waiting.
//!
//! ```text
//!   processors --Op (try_send)--> cluster thread --EVALSHA, pipelined--> Redis
//!   Redis --PUBLISH {prefix}takeover:{node}--> subscriber thread --TakenOver--> processor
//! ```
//!
//! Keys (the README lists them for backend teams):
//! - `{prefix}cp:{id}`: hash `node`, `session`, `connected_at` (ms since the epoch) of the
//!   connection that holds the charge point. Written on connect only if no newer connection is
//!   recorded (a Lua compare-and-set on `connected_at`); removed on disconnect only if it is
//!   still this node's connection. When a node takes a charge point from another, it publishes
//!   `{id}\t{connected_at}` on `{prefix}takeover:{old node}`, and the old node closes its
//!   connection (1000, "taken over") if it is older.
//! - `{prefix}node:{node}`: `started_at` of a live node, with a TTL of `cluster.node_ttl`
//!   refreshed every third of it: a node whose key expired is dead, and its entries in the
//!   registry are stale.
//!
//! - `{prefix}tls-ticket-keys`: the TLS session-ticket keys every node shares when
//!   resumption is on without `security.tls_ticket_keys` (a file wins): newest first, each
//!   `{made at, ms}:{hex}`; a node rotates it once the newest is a lifetime old (every node
//!   proposes a key each beat, the first wins), and installs what it holds every beat.
//!
//! - `{prefix}id-slots`: slot -> node, each node's share of the transaction ids (claimed on a
//!   node's first start, confirmed every beat; ids never depend on Redis after that), and
//!   `{prefix}transaction-id`, only ever raised to the highest id a node reserved.
//!
//! Redis without its data (the node's key found gone, or another `run_id` after a reconnect):
//! every charge point this node holds is written again, with the same compare-and-set.
//!
//! - `{prefix}events` (`cluster.events`): every event's journal line, from a sink of its own
//!   ([`stream`]).
//!
//! Redis down or slow: operations wait in a bounded buffer (`cluster.buffer`; beyond it the
//! oldest are dropped and counted) and are replayed in order once a connection is back; the
//! thread retries every second, `/health` says "degraded", nothing else waits.

pub mod remote;
pub mod scripts;
pub mod stream;
mod subscriber;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{error, info, warn};

use crate::clock::epoch_ms;
use crate::config::ClusterConfig;
use crate::mailbox::{ClusterSender, Lookup, Op, Processors, ToProcessor};
use crate::policy::{Share, TransactionIds};
use crate::security::credentials::Credentials;
use crate::security::tickets::TicketKeys;
use crate::state::Saved;
use crate::stats::Stats;
use crate::types::ChargePointId;

/// Operations handed over at once between the processors and the cluster thread.
const CHANNEL_CAPACITY: usize = 65_536;
/// Operations sent to Redis in one pipeline.
const PIPELINE: usize = 512;
/// Connect, read and write timeout of a Redis connection.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two attempts to reach Redis.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// A connection to Redis with [`REDIS_TIMEOUT`] for connecting, reading and writing: every
/// thread of this module talks to Redis through one of these.
pub(crate) fn open(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let con = client.get_connection_with_timeout(REDIS_TIMEOUT)?;
    con.set_read_timeout(Some(REDIS_TIMEOUT))?;
    con.set_write_timeout(Some(REDIS_TIMEOUT))?;
    Ok(con)
}

use scripts::*;
use subscriber::*;
use writer::*;

/// The cluster's threads and the flag `/health` reads.
pub struct Cluster {
    pub sender: ClusterSender,
    /// Redis answered the last time it was asked.
    pub reachable: Arc<AtomicBool>,
    /// Set it (then join `subscriber`) before the processors are asked to stop.
    pub stop: Arc<AtomicBool>,
    pub subscriber: JoinHandle<()>,
    /// Ends once every processor has dropped its sender.
    pub writer: JoinHandle<()>,
    /// The operator API across nodes (started once the way in for calls exists); it ends
    /// with `stop`, like `subscriber`.
    pub remote: Option<remote::Remote>,
}

/// Starts the cluster thread (registry writes, node liveness, the fleet's ticket keys) and the
/// subscriber thread (takeovers by other nodes, passed to `processors`). The secrets shared
/// through Redis: the Basic-auth credentials, the TLS ticket keys.
pub fn start(
    config: &ClusterConfig,
    node: &str,
    processors: Processors,
    transactions: Arc<TransactionIds>,
    (credentials, tickets): (Option<Arc<Credentials>>, Option<Arc<TicketKeys>>),
    stats: Arc<Stats>,
) -> std::io::Result<Cluster> {
    let client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
    let reachable = Arc::new(AtomicBool::new(false));
    // Set by the server when the loops are gone: the subscriber drops its senders to the
    // processors, so they can stop, and the cluster thread follows them.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        client: client.clone(),
        prefix: config.prefix.clone(),
        node: node.to_owned(),
        node_ttl: config.node_ttl,
        buffer_limit: config.buffer,
        started_ms: epoch_ms(SystemTime::now()),
        stats: Arc::clone(&stats),
        reachable: Arc::clone(&reachable),
        transactions,
        shas: std::sync::OnceLock::new(),
        id_slot: config.id_slot,
        id_slots: config.id_slots,
        tickets,
    };
    let writer_processors = processors.clone();
    let writer = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || writer.run(&rx, writer_processors))?;
    let subscriber = Subscriber {
        client,
        takeovers: format!("{}takeover:{node}", config.prefix),
        credentials_key: format!("{}credentials", config.prefix),
        credentials,
        processors,
        stats: Arc::clone(&stats),
    };
    let subscriber_stop = Arc::clone(&stop);
    let subscriber = std::thread::Builder::new()
        .name("cluster-sub".into())
        .spawn(move || subscriber.run(&subscriber_stop))?;
    Ok(Cluster {
        sender: ClusterSender::new(tx, stats),
        reachable,
        stop,
        subscriber,
        writer,
        remote: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_register_answer_names_the_previous_owner_only_when_written() {
        let answer = |node: &[u8], written: i64| {
            redis::Value::Array(vec![
                redis::Value::BulkString(node.to_vec()),
                redis::Value::Int(written),
                redis::Value::Nil,
            ])
        };
        let previous = |answer: &redis::Value| parse_register(answer).previous;
        assert_eq!(previous(&answer(b"node-a", 1)).as_deref(), Some("node-a"));
        assert_eq!(previous(&answer(b"", 1)).as_deref(), Some(""));
        assert_eq!(previous(&answer(b"node-a", 0)), None);
        assert_eq!(previous(&redis::Value::Nil), None);
    }

    #[test]
    fn a_register_answer_carries_the_shared_state() {
        let answer = |record: redis::Value| {
            redis::Value::Array(vec![
                redis::Value::BulkString(b"node-a".to_vec()),
                redis::Value::Int(1),
                record,
            ])
        };
        let found = parse_register(&answer(redis::Value::BulkString(
            br#"{"connectors":[[1,"Charging"]],"open_transaction":7}"#.to_vec(),
        )));
        let Lookup::Found(saved) = found.lookup else {
            panic!("expected a record");
        };
        assert_eq!(saved.open_transaction, Some(7));
        assert!(matches!(
            parse_register(&answer(redis::Value::Nil)).lookup,
            Lookup::Absent
        ));
        assert!(matches!(
            parse_register(&answer(redis::Value::BulkString(b"{not json".to_vec()))).lookup,
            Lookup::Absent
        ));
        assert!(matches!(
            parse_register(&redis::Value::Nil).lookup,
            Lookup::Unavailable
        ));
    }

    #[test]
    fn the_run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:4f1c0e2a9b\r\ntcp_port:6379\r\n";
        assert_eq!(run_id_of(info), Some("4f1c0e2a9b"));
        assert_eq!(run_id_of("# Server\r\nrun_id:\r\n"), None);
        assert_eq!(run_id_of(""), None);
    }
}
