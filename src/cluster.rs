//! Many gateways sharing one Redis (`[cluster]`, off by default): a registry of which node holds
//! each charge point, node liveness, and the newest connection of an identity winning across
//! nodes. Redis is only ever called from this module's two threads; processors hand over what
//! happened without waiting.
//!
//! ```text
//!   processors --Op (try_send)--> cluster thread --EVAL/SET, pipelined--> Redis
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
//! Redis down or slow: operations wait in a bounded buffer (`cluster.buffer`; beyond it the
//! oldest are dropped and counted) and are replayed in order once a connection is back; the
//! thread retries every second, `/health` says "degraded", nothing else waits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use log::{info, warn};

use crate::config::ClusterConfig;
use crate::mailbox::{Processors, ToProcessor};
use crate::processor::policy::BLOCK;
use crate::stats::Stats;
use crate::types::ChargePointId;

/// Operations handed over at once between the processors and the cluster thread.
const CHANNEL_CAPACITY: usize = 65_536;
/// Operations sent to Redis in one pipeline.
const PIPELINE: usize = 512;
/// Connect, read and write timeout of a Redis connection.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two attempts to reach Redis.
const RETRY: Duration = Duration::from_secs(1);

/// Compare-and-set of the registry entry: KEYS[1] = the entry, ARGV = node, session,
/// connected_at. Returns the node that held it before (or "") and 1 when written, 0 when a
/// newer connection was already recorded.
const REGISTER: &str = r"
local held = redis.call('HMGET', KEYS[1], 'node', 'connected_at')
if held[2] and tonumber(held[2]) > tonumber(ARGV[3]) then
  return {held[1] or '', 0}
end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'session', ARGV[2], 'connected_at', ARGV[3])
return {held[1] or '', 1}
";

/// Removes the entry if it is still this connection's: KEYS[1], ARGV = node, connected_at.
const UNREGISTER: &str = r"
local held = redis.call('HMGET', KEYS[1], 'node', 'connected_at')
if held[1] == ARGV[1] and held[2] == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// What a processor tells the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// This node now holds `cp` with a connection made at `at_ms`.
    Connected {
        cp: ChargePointId,
        session: u64,
        at_ms: u64,
    },
    /// The connection made at `at_ms` is gone.
    Disconnected { cp: ChargePointId, at_ms: u64 },
}

/// Milliseconds since the epoch (0 for a clock before 1970).
pub fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A processor's end of the cluster thread's channel.
#[derive(Debug, Clone)]
pub struct ClusterSender {
    tx: Sender<Op>,
    stats: Arc<Stats>,
}

impl ClusterSender {
    /// Hands `op` over without waiting; when the channel is full it is dropped and counted
    /// (the channel holds a minute of a storm of connects; the buffer behind it holds more).
    pub fn send(&self, op: Op) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(op) {
            self.stats.cluster.cluster_ops_dropped.inc();
        }
    }
}

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
}

/// Starts the cluster thread (registry writes, node liveness) and the subscriber thread
/// (takeovers by other nodes, passed to `processors`).
pub fn start(
    config: &ClusterConfig,
    node: &str,
    processors: Processors,
    id_blocks: Sender<(i64, i64)>,
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
        id_blocks,
    };
    let writer = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || writer.run(&rx))?;
    let channel = format!("{}takeover:{node}", config.prefix);
    let subscriber_stats = Arc::clone(&stats);
    let subscriber_stop = Arc::clone(&stop);
    let subscriber = std::thread::Builder::new()
        .name("cluster-sub".into())
        .spawn(move || {
            subscribe(
                &client,
                &channel,
                processors,
                &subscriber_stats,
                &subscriber_stop,
            )
        })?;
    Ok(Cluster {
        sender: ClusterSender { tx, stats },
        reachable,
        stop,
        subscriber,
        writer,
    })
}

struct Writer {
    client: redis::Client,
    prefix: String,
    node: String,
    node_ttl: Duration,
    buffer_limit: usize,
    started_ms: u64,
    stats: Arc<Stats>,
    reachable: Arc<AtomicBool>,
    /// Where the next block of transaction ids goes (one kept ready).
    id_blocks: Sender<(i64, i64)>,
}

impl Writer {
    fn run(&self, rx: &Receiver<Op>) {
        let mut buffer: VecDeque<Op> = VecDeque::new();
        let mut connection: Option<redis::Connection> = None;
        let mut next_try = Instant::now();
        let mut next_beat = Instant::now();
        let beat = (self.node_ttl / 3).max(Duration::from_millis(100));
        let mut open = true;
        while open || !buffer.is_empty() {
            let wake = next_beat.min(if buffer.is_empty() {
                next_beat
            } else {
                next_try
            });
            match rx.recv_deadline(wake) {
                Ok(op) => self.keep(&mut buffer, op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            while let Ok(op) = rx.try_recv() {
                self.keep(&mut buffer, op);
            }
            let now = Instant::now();
            if connection.is_none() && (now >= next_try || !open) {
                connection = self.connect();
                next_try = now + RETRY;
                if connection.is_none() && !open {
                    break; // stopping with Redis away: what is left cannot be written
                }
            }
            let Some(con) = connection.as_mut() else {
                continue;
            };
            let result = if now >= next_beat {
                next_beat = now + beat;
                self.heartbeat(con)
            } else {
                Ok(())
            }
            .and_then(|()| self.flush(con, &mut buffer))
            .and_then(|()| self.reserve_ids(con));
            if let Err(e) = result {
                warn!(
                    "cluster: Redis failed ({e}); keeping {} operations",
                    buffer.len()
                );
                self.stats.cluster.cluster_errors.inc();
                self.reachable.store(false, Ordering::Relaxed);
                connection = None;
                next_try = now + RETRY;
            }
        }
        if let Some(con) = connection.as_mut() {
            let key = format!("{}node:{}", self.prefix, self.node);
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(con);
        }
    }

    /// Buffers `op`; past the limit the oldest is dropped (and counted).
    fn keep(&self, buffer: &mut VecDeque<Op>, op: Op) {
        if buffer.len() >= self.buffer_limit {
            buffer.pop_front();
            self.stats.cluster.cluster_ops_dropped.inc();
        }
        buffer.push_back(op);
    }

    fn connect(&self) -> Option<redis::Connection> {
        match self.client.get_connection_with_timeout(REDIS_TIMEOUT) {
            Ok(con) => {
                let _ = con.set_read_timeout(Some(REDIS_TIMEOUT));
                let _ = con.set_write_timeout(Some(REDIS_TIMEOUT));
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    info!("cluster: connected to Redis as node {}", self.node);
                }
                Some(con)
            }
            Err(e) => {
                if self.reachable.swap(false, Ordering::Relaxed) {
                    warn!("cluster: cannot reach Redis: {e}");
                }
                self.stats.cluster.cluster_errors.inc();
                None
            }
        }
    }

    /// Keeps a block of transaction ids ready for the processors: `INCRBY
    /// {prefix}transaction-id BLOCK` gives the end of a block no other node will get.
    fn reserve_ids(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        if !self.id_blocks.is_empty() {
            return Ok(());
        }
        let end: i64 = redis::cmd("INCRBY")
            .arg(format!("{}transaction-id", self.prefix))
            .arg(BLOCK)
            .query(con)?;
        let _ = self.id_blocks.try_send((end - BLOCK + 1, end + 1));
        Ok(())
    }

    /// `{prefix}node:{node}` with its TTL.
    fn heartbeat(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(format!("{}node:{}", self.prefix, self.node))
            .arg(self.started_ms)
            .arg("PX")
            .arg(u64::try_from(self.node_ttl.as_millis()).unwrap_or(u64::MAX))
            .query(con)
    }

    /// Sends the buffer in order, a pipeline at a time; an operation leaves the buffer only
    /// once Redis has answered it.
    fn flush(
        &self,
        con: &mut redis::Connection,
        buffer: &mut VecDeque<Op>,
    ) -> redis::RedisResult<()> {
        while !buffer.is_empty() {
            let n = buffer.len().min(PIPELINE);
            let mut pipe = redis::pipe();
            for op in buffer.iter().take(n) {
                match op {
                    Op::Connected { cp, session, at_ms } => pipe
                        .cmd("EVAL")
                        .arg(REGISTER)
                        .arg(1)
                        .arg(format!("{}cp:{cp}", self.prefix))
                        .arg(&self.node)
                        .arg(*session)
                        .arg(*at_ms),
                    Op::Disconnected { cp, at_ms } => pipe
                        .cmd("EVAL")
                        .arg(UNREGISTER)
                        .arg(1)
                        .arg(format!("{}cp:{cp}", self.prefix))
                        .arg(&self.node)
                        .arg(*at_ms),
                };
            }
            let answers: Vec<redis::Value> = pipe.query(con)?;
            let mut takeovers = redis::pipe();
            let mut any = false;
            for (op, answer) in buffer.drain(..n).zip(answers) {
                if let Op::Connected { cp, at_ms, .. } = op
                    && let Some(previous) = previous_owner(&answer)
                    && !previous.is_empty()
                    && previous != self.node
                {
                    takeovers
                        .cmd("PUBLISH")
                        .arg(format!("{}takeover:{previous}", self.prefix))
                        .arg(format!("{cp}\t{at_ms}"))
                        .ignore();
                    any = true;
                }
            }
            if any {
                takeovers.query::<()>(con)?;
            }
            self.stats.cluster.cluster_ops.add(n as u64);
        }
        Ok(())
    }
}

/// The previous owner in a REGISTER answer (`{node, written}`), if the entry was written.
fn previous_owner(answer: &redis::Value) -> Option<String> {
    let redis::Value::Array(items) = answer else {
        return None;
    };
    let written = matches!(items.get(1), Some(redis::Value::Int(1)));
    let node = match items.first() {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    written.then_some(node)
}

/// Listens on `{prefix}takeover:{node}` and hands each takeover to the charge point's
/// processor; reconnects every second while Redis is away; ends when the gateway stops.
fn subscribe(
    client: &redis::Client,
    channel: &str,
    processors: Processors,
    stats: &Stats,
    stop: &AtomicBool,
) {
    let stopping = || stop.load(Ordering::Relaxed);
    while !stopping() {
        let Ok(mut con) = client.get_connection_with_timeout(REDIS_TIMEOUT) else {
            std::thread::park_timeout(RETRY);
            continue;
        };
        let _ = con.set_read_timeout(Some(Duration::from_millis(500)));
        let mut pubsub = con.as_pubsub();
        if pubsub.subscribe(channel).is_err() {
            std::thread::park_timeout(RETRY);
            continue;
        }
        loop {
            if stopping() {
                return;
            }
            match pubsub.get_message() {
                Ok(msg) => {
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Some((cp, at)) = text.split_once('\t') else {
                        continue;
                    };
                    let Ok(at_ms) = at.parse::<u64>() else {
                        continue;
                    };
                    stats.cluster.cluster_takeovers.inc();
                    let cp: ChargePointId = cp.into();
                    processors.of(&cp).send(ToProcessor::TakenOver {
                        cp: ChargePointId::clone(&cp),
                        at_ms,
                    });
                }
                Err(e) if e.is_timeout() => {}
                Err(_) => break,
            }
        }
    }
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
            ])
        };
        assert_eq!(
            previous_owner(&answer(b"node-a", 1)).as_deref(),
            Some("node-a")
        );
        assert_eq!(previous_owner(&answer(b"", 1)).as_deref(), Some(""));
        assert_eq!(previous_owner(&answer(b"node-a", 0)), None);
        assert_eq!(previous_owner(&redis::Value::Nil), None);
    }

    #[test]
    fn epoch_milliseconds() {
        assert_eq!(epoch_ms(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
