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
//! - `{prefix}id-slots`: slot -> node, each node's share of the transaction ids (claimed on a
//!   node's first start, confirmed every beat; ids never depend on Redis after that), and
//!   `{prefix}transaction-id`, only ever raised to the highest id a node reserved.
//!
//! Redis without its data (the node's key found gone, or another `run_id` after a reconnect):
//! every charge point this node holds is written again, with the same compare-and-set.
//!
//! Redis down or slow: operations wait in a bounded buffer (`cluster.buffer`; beyond it the
//! oldest are dropped and counted) and are replayed in order once a connection is back; the
//! thread retries every second, `/health` says "degraded", nothing else waits.

pub mod events;
pub mod remote;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{error, info, warn};

use crate::clock::epoch_ms;
use crate::config::ClusterConfig;
use crate::events::journal::JournalStatus;
use crate::mailbox::{ClusterSender, Lookup, Op, Processors, ToProcessor};
use crate::policy::{Share, TransactionIds};
use crate::security::credentials::Credentials;
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

/// The compare-and-set REGISTER and RESTORE share: unless a newer connection of the identity
/// is recorded (then it answers as REGISTER does), the entry KEYS[1] becomes this connection's
/// and the identity joins the set KEYS[3].
macro_rules! registry_cas {
    () => {
        r"
local held = redis.call('HMGET', KEYS[1], 'node', 'connected_at')
local newer = tonumber(held[2] or '') or 0
if newer > tonumber(ARGV[3]) then
  return {held[1] or '', 0, false, newer}
end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'session', ARGV[2], 'connected_at', ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[4])
"
    };
}

/// Compare-and-set of the registry entry: KEYS[1] = the entry, KEYS[2] = the charge point's
/// state record, KEYS[3] = the set of identities; ARGV = node, session, connected_at,
/// identity. Returns the node that held it before (or ""), 1 when written (0 when a newer
/// connection was already recorded), the state record (or false), and the newer connection's
/// connected_at when not written.
const REGISTER: &str = concat!(
    registry_cas!(),
    r"local record = redis.pcall('GET', KEYS[2])
if type(record) ~= 'string' then record = false end
return {held[1] or '', 1, record, 0}
"
);

/// Writes (ARGV[2] not empty) or deletes a state record, KEYS[2], unless another node holds the
/// charge point (KEYS[1]): a node that lost it must not overwrite what the new owner wrote.
const SAVE: &str = r"
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and owner ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  return redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
";

/// Removes the entry if it is still this connection's: KEYS[1], KEYS[2] = the state record,
/// KEYS[3] = the set of identities; ARGV = node, connected_at, identity. An identity that was
/// accepted stays in the set (listed as disconnected); one that never was leaves it, so
/// made-up identities cannot grow it.
const UNREGISTER: &str = r"
local held = redis.call('HMGET', KEYS[1], 'node', 'connected_at')
if held[1] == ARGV[1] and held[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('ZREM', KEYS[3], ARGV[3])
  end
  return 1
end
return 0
";

/// Writes the registry entry of a charge point this node holds again, after Redis lost it:
/// REGISTER's compare-and-set (a newer connection on another node wins), then the state record
/// (ARGV[5], unless empty). KEYS and the answer as REGISTER's (no record returned).
const RESTORE: &str = concat!(
    registry_cas!(),
    r"if ARGV[5] ~= '' then
  redis.call('SET', KEYS[2], ARGV[5])
end
return {held[1] or '', 1, false, 0}
"
);

/// Refreshes the node's liveness key, KEYS[1] (ARGV = its value, its TTL in ms): 1 when the
/// key was there, 0 when Redis lost it (or it expired) and the registry must be written again.
const HEARTBEAT: &str = r"
local had = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return had
";

/// This node's share of the transaction ids: KEYS[1] = `{prefix}id-slots` (slot -> node),
/// KEYS[2] = `{prefix}transaction-id`; ARGV = node, slots, the slot it holds (-1: none yet,
/// take the one recorded for this node or the lowest free), the highest id it reserved.
/// Raises KEYS[2] to that id. Returns {slot, the highest id any node reserved (KEYS[2]),
/// 1 when the slot was this node's in Redis already}, or {-1, '', 0} when every slot is taken,
/// or {-2, the other node, 0} when another node claims the slot.
const SHARE: &str = r"
local slots = tonumber(ARGV[2])
local slot = tonumber(ARGV[3])
local before = 0
if slot < 0 then
  for s = 0, slots - 1 do
    if redis.call('HGET', KEYS[1], s) == ARGV[1] then slot = s before = 1 break end
  end
end
if slot < 0 then
  for s = 0, slots - 1 do
    if redis.call('HSETNX', KEYS[1], s, ARGV[1]) == 1 then slot = s break end
  end
  if slot < 0 then return {-1, '', 0} end
else
  if redis.call('HSETNX', KEYS[1], slot, ARGV[1]) == 0 then before = 1 end
  local owner = redis.call('HGET', KEYS[1], slot)
  if owner ~= ARGV[1] then return {-2, owner, 0} end
end
local floor = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local mark = tonumber(ARGV[4])
if mark > floor then
  redis.call('SET', KEYS[2], mark)
  floor = mark
end
return {slot, tostring(floor), before}
";

/// The writer's Lua scripts, loaded (`SCRIPT LOAD`) on every connect and run with `EVALSHA`:
/// a registry write sends a hash instead of the script. A server that lost them (`NOSCRIPT`,
/// after `SCRIPT FLUSH`) is treated like a dropped connection: reconnect, load, replay.
#[derive(Debug, Clone, Copy)]
enum Lua {
    Register,
    Save,
    Unregister,
    Restore,
    Heartbeat,
    Share,
}

impl Lua {
    const ALL: [Lua; 6] = [
        Lua::Register,
        Lua::Save,
        Lua::Unregister,
        Lua::Restore,
        Lua::Heartbeat,
        Lua::Share,
    ];

    fn source(self) -> &'static str {
        match self {
            Lua::Register => REGISTER,
            Lua::Save => SAVE,
            Lua::Unregister => UNREGISTER,
            Lua::Restore => RESTORE,
            Lua::Heartbeat => HEARTBEAT,
            Lua::Share => SHARE,
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
    /// The operator API across nodes (started once the way in for calls exists); it ends
    /// with `stop`, like `subscriber`.
    pub remote: Option<remote::Remote>,
    /// `cluster.events`: the journal's lines to `{prefix}events`; ends with `stop`.
    pub events: Option<JoinHandle<()>>,
}

/// Starts the cluster thread (registry writes, node liveness) and the subscriber thread
/// (takeovers by other nodes, passed to `processors`).
pub fn start(
    config: &ClusterConfig,
    node: &str,
    processors: Processors,
    transactions: Arc<TransactionIds>,
    journal: Option<&JournalStatus>,
    credentials: Option<Arc<Credentials>>,
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
    };
    let writer_processors = processors.clone();
    let writer = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || writer.run(&rx, writer_processors))?;
    let events_client = client.clone();
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
    let events = match journal.filter(|_| config.events) {
        Some(journal) => Some(events::start(
            events::Follower {
                client: events_client,
                prefix: config.prefix.clone(),
                node: node.to_owned(),
                journal: journal.path.clone(),
                written: journal.written(),
                maxlen: config.events_maxlen,
                stats: Arc::clone(&stats),
            },
            Arc::clone(&stop),
        )?),
        None => None,
    };
    Ok(Cluster {
        sender: ClusterSender::new(tx, stats),
        reachable,
        stop,
        subscriber,
        writer,
        remote: None,
        events,
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
    /// The node's transaction ids: their share is claimed (and re-claimed) here.
    transactions: Arc<TransactionIds>,
    /// The SHA1 of each script of [`Lua::ALL`], as Redis named them at the first load.
    shas: std::sync::OnceLock<Vec<String>>,
    /// `cluster.id_slot`, `cluster.id_slots`.
    id_slot: Option<u32>,
    id_slots: u32,
}

/// A connection this node holds, as the registry must show it.
struct Held {
    session: u64,
    at_ms: u64,
    /// The charge point's state record as last shared (None: not accepted, or not known).
    record: Option<Saved>,
}

/// The writer's working set: what waits for Redis, and where lookups are answered.
struct Pending {
    /// Every charge point connected here, to write again when Redis lost the registry.
    held: HashMap<ChargePointId, Held>,
    /// `run_id` of the Redis server last connected to: another one means a restarted server.
    run_id: Option<String>,
    /// The registry must be written again (Redis lost it): set until that succeeded.
    restore: bool,
    buffer: VecDeque<Op>,
    /// The first this many operations of `buffer` had their connect answered already (Redis
    /// was away): each charge point is told once.
    answered: usize,
    /// Let go (None) when the gateway stops.
    processors: Option<Processors>,
}

impl Pending {
    /// Tells the processor of `cp` what Redis knows of it. Waits for room: processors never
    /// wait for this thread, and a charge point's first messages are held until it is told.
    fn answer(&self, cp: &ChargePointId, session: u64, lookup: Lookup) {
        if let Some(processors) = &self.processors {
            processors.of(cp).send(ToProcessor::Loaded {
                cp: ChargePointId::clone(cp),
                session,
                lookup,
            });
        }
    }

    /// Redis cannot be asked now: every connect waiting in the buffer goes on with local state
    /// (the registry write itself stays buffered).
    fn unavailable(&mut self) {
        for op in self.buffer.iter().skip(self.answered) {
            if let Op::Connected { cp, session, .. } = op {
                self.answer(cp, *session, Lookup::Unavailable);
            }
        }
        self.answered = self.buffer.len();
    }

    /// Takes the first `n` operations out, with whether each was answered already.
    fn take(&mut self, n: usize) -> Vec<(Op, bool)> {
        let answered = self.answered.min(n);
        self.answered -= answered;
        self.buffer
            .drain(..n)
            .enumerate()
            .map(|(i, op)| (op, i < answered))
            .collect()
    }
}

impl Writer {
    fn run(&self, rx: &Receiver<Op>, processors: Processors) {
        let mut pending = Pending {
            held: HashMap::new(),
            run_id: None,
            restore: false,
            buffer: VecDeque::new(),
            answered: 0,
            processors: Some(processors),
        };
        let mut connection: Option<redis::Connection> = None;
        let mut next_try = Instant::now();
        let mut next_beat = Instant::now();
        let beat = (self.node_ttl / 3).max(Duration::from_millis(100));
        let mut open = true;
        while open || !pending.buffer.is_empty() {
            // Connected, the buffer is flushed every round: wait for work or the next beat.
            // Away, wait for work (answered at once) or the next attempt.
            let wake = if connection.is_some() {
                next_beat
            } else {
                next_try
            };
            if open {
                match rx.recv_deadline(wake) {
                    Ok(Op::Finish) => open = false,
                    Ok(op) => self.keep(&mut pending, op, connection.is_some()),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            while open && let Ok(op) = rx.try_recv() {
                if matches!(op, Op::Finish) {
                    open = false;
                } else {
                    self.keep(&mut pending, op, connection.is_some());
                }
            }
            let now = Instant::now();
            if connection.is_none() && (now >= next_try || !open) {
                connection = self.connect();
                next_try = now + RETRY;
                if let Some(con) = connection.as_mut() {
                    self.check_server(con, &mut pending);
                }
                if connection.is_none() && !open {
                    // Stopping with Redis away: what is left cannot be written.
                    let lost = pending.buffer.len() as u64;
                    self.stats.cluster.cluster_ops_dropped.add(lost);
                    break;
                }
            }
            let Some(con) = connection.as_mut() else {
                continue;
            };
            // The share first: a node whose liveness key is set knows its transaction ids.
            let result = if now >= next_beat {
                next_beat = now + beat;
                self.claim_share(con)
                    .and_then(|()| self.heartbeat(con, &mut pending))
            } else {
                Ok(())
            }
            .and_then(|()| self.flush(con, &mut pending))
            .and_then(|()| self.restore(con, &mut pending));
            if let Err(e) = result {
                warn!(
                    "cluster: Redis failed ({e}); keeping {} operations",
                    pending.buffer.len()
                );
                self.stats.cluster.cluster_errors.inc();
                self.reachable.store(false, Ordering::Relaxed);
                pending.unavailable();
                connection = None;
                next_try = now + RETRY;
                if !open {
                    // Stopping: one last attempt was made; what is left is counted as lost.
                    let lost = pending.buffer.len() as u64;
                    self.stats.cluster.cluster_ops_dropped.add(lost);
                    break;
                }
            }
        }
        if let Some(con) = connection.as_mut() {
            let key = format!("{}node:{}", self.prefix, self.node);
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(con);
        }
    }

    /// Buffers `op`; past the limit the oldest is dropped (and counted). A connect that arrives
    /// while Redis is away is answered at once from local state.
    fn keep(&self, pending: &mut Pending, op: Op, connected: bool) {
        match &op {
            Op::Release | Op::Finish => {
                pending.processors = None;
                return;
            }
            Op::Connected { cp, session, at_ms } => {
                let record = pending.held.remove(cp).and_then(|h| h.record);
                pending.held.insert(
                    ChargePointId::clone(cp),
                    Held {
                        session: *session,
                        at_ms: *at_ms,
                        record,
                    },
                );
            }
            Op::Disconnected { cp, at_ms } => {
                if pending.held.get(cp).is_some_and(|h| h.at_ms == *at_ms) {
                    pending.held.remove(cp);
                }
            }
            Op::Saved { cp, record } => {
                if let Some(held) = pending.held.get_mut(&**cp) {
                    held.record.clone_from(record);
                }
            }
            Op::Credential { .. } => {}
        }
        if pending.buffer.len() >= self.buffer_limit
            && let Some((dropped, answered)) = pending.take(1).pop()
        {
            self.stats.cluster.cluster_ops_dropped.inc();
            // Its charge point's messages must not wait for an answer that will not come.
            if let (Op::Connected { cp, session, .. }, false) = (&dropped, answered) {
                pending.answer(cp, *session, Lookup::Unavailable);
            }
        }
        pending.buffer.push_back(op);
        if !connected {
            pending.unavailable(); // answers this one (the others were when Redis went away)
        }
    }

    fn connect(&self) -> Option<redis::Connection> {
        match self.client.get_connection_with_timeout(REDIS_TIMEOUT) {
            Ok(mut con) => {
                let _ = con.set_read_timeout(Some(REDIS_TIMEOUT));
                let _ = con.set_write_timeout(Some(REDIS_TIMEOUT));
                if let Err(e) = self.load_scripts(&mut con) {
                    warn!("cluster: cannot load the scripts into Redis: {e}");
                    self.reachable.store(false, Ordering::Relaxed);
                    self.stats.cluster.cluster_errors.inc();
                    return None;
                }
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

    /// `SCRIPT LOAD` of every script (a restarted server has none).
    fn load_scripts(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for lua in Lua::ALL {
            pipe.cmd("SCRIPT").arg("LOAD").arg(lua.source());
        }
        let shas: Vec<String> = pipe.query(con)?;
        let _ = self.shas.set(shas);
        Ok(())
    }

    /// The SHA1 `EVALSHA` runs `lua` by ("" before the first load: Redis answers NOSCRIPT).
    fn sha(&self, lua: Lua) -> &str {
        self.shas
            .get()
            .and_then(|shas| shas.get(lua as usize))
            .map_or("", String::as_str)
    }

    /// Claims (on the first start) or confirms this node's share of the transaction ids, and
    /// raises `{prefix}transaction-id` to the highest id it reserved. Every beat: after Redis
    /// lost its data the claim is back within one, and a second live node claiming the same
    /// slot is refused ids (claims are for ever: an operator sorts it out).
    fn claim_share(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let held = match self.transactions.share() {
            Share::Slot { slot, .. } => Some(slot),
            Share::All | Share::Pending => self.id_slot,
        };
        let (slot, answer, before): (i64, String, i64) = redis::cmd("EVALSHA")
            .arg(self.sha(Lua::Share))
            .arg(2)
            .arg(format!("{}id-slots", self.prefix))
            .arg(format!("{}transaction-id", self.prefix))
            .arg(&self.node)
            .arg(self.id_slots)
            .arg(held.map_or(-1, i64::from))
            .arg(self.transactions.high_water())
            .query(con)?;
        match u32::try_from(slot) {
            Ok(slot) => {
                let floor = answer.parse::<i64>().unwrap_or(0);
                // Known in Redis but not in the file: the file was lost, and the ids the node
                // reserved after its last raise of the counter must be skipped too.
                let resumed = before == 1;
                match self.transactions.adopt(slot, self.id_slots, floor, resumed) {
                    Ok(true) if resumed => warn!(
                        "cluster: transaction id slot {slot} of {} was this node's, but its \
                         ocpp.transaction_id_file did not say so (lost?): continuing well above \
                         {floor}",
                        self.id_slots
                    ),
                    Ok(true) => info!(
                        "cluster: transaction ids of slot {slot} of {}, above {floor}",
                        self.id_slots
                    ),
                    Ok(false) => {}
                    Err(e) => error!("cluster: {e}"),
                }
                if self.transactions.set_conflict(false) {
                    info!("cluster: transaction id slot {slot} is this node's alone again");
                }
            }
            Err(_) if slot == -1 => {
                error!(
                    "cluster: every one of the {} transaction id slots is claimed \
                     ({}id-slots): StartTransaction is refused on this node",
                    self.id_slots, self.prefix
                );
            }
            Err(_) => {
                if !self.transactions.set_conflict(true) {
                    error!(
                        "cluster: node {answer} claims this node's transaction id slot {}: \
                         StartTransaction is refused here (give this node another \
                         cluster.id_slot and a new transaction_id_file, or HDEL the claim of \
                         a node gone for good)",
                        held.unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    }

    /// The keys REGISTER and UNREGISTER touch for `cp`: its registry entry, its state record,
    /// the set of identities.
    fn registry_keys(&self, cp: &str) -> Vec<String> {
        let prefix = &self.prefix;
        vec![
            format!("{prefix}cp:{cp}"),
            format!("{prefix}state:{cp}"),
            format!("{prefix}chargepoints"),
        ]
    }

    /// `{prefix}node:{node}` with its TTL. A key that was gone (Redis lost its data, or the
    /// node was away longer than the TTL) means the registry is written again.
    fn heartbeat(
        &self,
        con: &mut redis::Connection,
        pending: &mut Pending,
    ) -> redis::RedisResult<()> {
        let had: i64 = redis::cmd("EVALSHA")
            .arg(self.sha(Lua::Heartbeat))
            .arg(1)
            .arg(format!("{}node:{}", self.prefix, self.node))
            .arg(self.started_ms)
            .arg(u64::try_from(self.node_ttl.as_millis()).unwrap_or(u64::MAX))
            .query(con)?;
        if had == 0 && !pending.held.is_empty() && !pending.restore {
            warn!(
                "cluster: this node's key was gone from Redis: writing its {} charge points again",
                pending.held.len()
            );
            pending.restore = true;
        }
        Ok(())
    }

    /// After a (re)connect: a Redis server with another run id than the last one (restarted,
    /// or failed over) may have lost the registry: it is written again.
    fn check_server(&self, con: &mut redis::Connection, pending: &mut Pending) {
        let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(con) else {
            return;
        };
        let run_id = run_id_of(&info).map(str::to_owned);
        if run_id.is_some() && pending.run_id.is_some() && run_id != pending.run_id {
            if !pending.held.is_empty() {
                warn!(
                    "cluster: Redis is another server now (run id changed): writing this \
                     node's {} charge points again",
                    pending.held.len()
                );
            }
            pending.restore = true;
        }
        if run_id.is_some() {
            pending.run_id = run_id;
        }
    }

    /// Writes every charge point this node holds into the registry again (entry, the set of
    /// identities, state record), a pipeline at a time, without overwriting a newer
    /// connection of the identity on another node (which then takes it over from this one).
    fn restore(
        &self,
        con: &mut redis::Connection,
        pending: &mut Pending,
    ) -> redis::RedisResult<()> {
        if !pending.restore {
            return Ok(());
        }
        let held: Vec<(ChargePointId, u64, u64, String)> = pending
            .held
            .iter()
            .map(|(cp, h)| {
                let record = h.record.as_ref().map_or_else(String::new, |r| {
                    serde_json::to_string(r).unwrap_or_default()
                });
                (ChargePointId::clone(cp), h.session, h.at_ms, record)
            })
            .collect();
        for chunk in held.chunks(PIPELINE) {
            let mut pipe = redis::pipe();
            for (cp, session, at_ms, record) in chunk {
                pipe.cmd("EVALSHA")
                    .arg(self.sha(Lua::Restore))
                    .arg(3)
                    .arg(self.registry_keys(cp))
                    .arg(&self.node)
                    .arg(*session)
                    .arg(*at_ms)
                    .arg(&**cp)
                    .arg(record);
            }
            let answers: Vec<redis::Value> = pipe.query(con)?;
            let mut takeovers = redis::pipe();
            let mut any = false;
            for ((cp, _, at_ms, _), answer) in chunk.iter().zip(answers) {
                let registered = parse_register(&answer);
                any |= self.settle(pending, cp, *at_ms, &registered, &mut takeovers);
            }
            if any {
                takeovers.query::<()>(con)?;
            }
            self.stats.cluster.cluster_ops.add(chunk.len() as u64);
        }
        if !held.is_empty() {
            info!(
                "cluster: {} charge points written into the registry again",
                held.len()
            );
        }
        pending.restore = false;
        Ok(())
    }

    /// What follows a registry write of `cp` (connected at `at_ms`): a newer connection on
    /// another node closes ours; ours replacing another node's has that node told (a PUBLISH
    /// added to `takeovers`: true when one was).
    fn settle(
        &self,
        pending: &Pending,
        cp: &ChargePointId,
        at_ms: u64,
        registered: &Registered,
        takeovers: &mut redis::Pipeline,
    ) -> bool {
        if let Some(newer) = registered.newer
            && let Some(processors) = &pending.processors
        {
            // Another node holds a newer connection: ours is the stale one.
            processors.of(cp).send(ToProcessor::TakenOver {
                cp: ChargePointId::clone(cp),
                at_ms: newer,
            });
        }
        match &registered.previous {
            Some(previous) if !previous.is_empty() && *previous != self.node => {
                takeovers
                    .cmd("PUBLISH")
                    .arg(format!("{}takeover:{previous}", self.prefix))
                    .arg(format!("{cp}\t{at_ms}"))
                    .ignore();
                true
            }
            _ => false,
        }
    }

    /// Sends the buffer in order, a pipeline at a time; an operation leaves the buffer only
    /// once Redis has answered it.
    fn flush(&self, con: &mut redis::Connection, pending: &mut Pending) -> redis::RedisResult<()> {
        let prefix = &self.prefix;
        while !pending.buffer.is_empty() {
            let n = pending.buffer.len().min(PIPELINE);
            let mut pipe = redis::pipe();
            for op in pending.buffer.iter().take(n) {
                match op {
                    Op::Connected { cp, session, at_ms } => pipe
                        .cmd("EVALSHA")
                        .arg(self.sha(Lua::Register))
                        .arg(3)
                        .arg(self.registry_keys(cp))
                        .arg(&self.node)
                        .arg(*session)
                        .arg(*at_ms)
                        .arg(&**cp),
                    Op::Disconnected { cp, at_ms } => pipe
                        .cmd("EVALSHA")
                        .arg(self.sha(Lua::Unregister))
                        .arg(3)
                        .arg(self.registry_keys(cp))
                        .arg(&self.node)
                        .arg(*at_ms)
                        .arg(&**cp),
                    Op::Saved { cp, record } => pipe
                        .cmd("EVALSHA")
                        .arg(self.sha(Lua::Save))
                        .arg(2)
                        .arg(format!("{prefix}cp:{cp}"))
                        .arg(format!("{prefix}state:{cp}"))
                        .arg(&self.node)
                        .arg(record.as_ref().map_or_else(String::new, |r| {
                            serde_json::to_string(r).unwrap_or_default()
                        })),
                    Op::Credential { line } => {
                        let identity = line.split('\t').next().unwrap_or_default();
                        pipe.cmd("HSET")
                            .arg(format!("{prefix}credentials"))
                            .arg(identity)
                            .arg(line)
                            .ignore()
                            .cmd("PUBLISH")
                            .arg(format!("{prefix}credentials"))
                            .arg(line)
                    }
                    Op::Release | Op::Finish => continue,
                };
            }
            let answers: Vec<redis::Value> = match pipe.query(con) {
                Ok(answers) => answers,
                Err(e) if transient(&e) => return Err(e),
                Err(e) => {
                    // Redis refuses these (out of memory, a key of another type, a read-only
                    // replica...): trying them again cannot help, and they must not hold up
                    // the others. Dropped, counted, logged.
                    warn!("cluster: Redis refused {n} operations ({e}); dropped");
                    self.stats.cluster.cluster_ops_dropped.add(n as u64);
                    self.stats.cluster.cluster_errors.inc();
                    for (op, answered) in pending.take(n) {
                        if let (Op::Connected { cp, session, .. }, false) = (&op, answered) {
                            pending.answer(cp, *session, Lookup::Unavailable);
                        }
                    }
                    continue;
                }
            };
            let mut takeovers = redis::pipe();
            let mut any = false;
            for ((op, answered), answer) in pending
                .take(n)
                .into_iter()
                .filter(|(op, _)| !matches!(op, Op::Release | Op::Finish))
                .zip(answers)
            {
                let Op::Connected {
                    cp, at_ms, session, ..
                } = op
                else {
                    continue;
                };
                let registered = parse_register(&answer);
                any |= self.settle(pending, &cp, at_ms, &registered, &mut takeovers);
                if let Lookup::Found(saved) = &registered.lookup
                    && let Some(held) = pending.held.get_mut(&cp)
                    && held.at_ms == at_ms
                    && held.record.is_none()
                {
                    // What Redis knew of it, to write back should Redis lose it.
                    held.record = Some(saved.clone());
                }
                if !answered {
                    pending.answer(&cp, session, registered.lookup);
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

/// What a REGISTER answer says.
struct Registered {
    /// The node that held the charge point before, if the entry was written ("" for none).
    previous: Option<String>,
    lookup: Lookup,
    /// Not written: the connect time of the newer connection another node holds.
    newer: Option<u64>,
}

/// The `run_id` of an `INFO server` answer: another one means another server process.
fn run_id_of(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

/// Whether a failed exchange with Redis may succeed on another connection (as opposed to
/// Redis refusing the commands themselves).
pub(crate) fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        // The server lost our scripts: a reconnect loads them again.
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

fn text_of(value: Option<&redis::Value>) -> Option<String> {
    match value {
        Some(redis::Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(redis::Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Reads a REGISTER answer (`{node, written, record}`). A record that does not parse is
/// treated as absent (and logged): the charge point boots again, which repairs it.
fn parse_register(answer: &redis::Value) -> Registered {
    let redis::Value::Array(items) = answer else {
        return Registered {
            previous: None,
            lookup: Lookup::Unavailable,
            newer: None,
        };
    };
    let written = matches!(items.get(1), Some(redis::Value::Int(1)));
    let newer = match items.get(3) {
        Some(redis::Value::Int(at)) if !written && *at > 0 => u64::try_from(*at).ok(),
        _ => None,
    };
    let previous = written.then(|| text_of(items.first()).unwrap_or_default());
    let lookup = match text_of(items.get(2)) {
        None => Lookup::Absent,
        Some(text) => match serde_json::from_str::<Saved>(&text) {
            Ok(saved) => Lookup::Found(saved),
            Err(e) => {
                warn!("cluster: a state record in Redis does not parse ({e}); ignored");
                Lookup::Absent
            }
        },
    };
    Registered {
        previous,
        lookup,
        newer,
    }
}

/// What the subscriber thread listens for, and where it hands it.
struct Subscriber {
    client: redis::Client,
    /// `{prefix}takeover:{node}`.
    takeovers: String,
    /// `{prefix}credentials` (a channel and a hash of the same name).
    credentials_key: String,
    credentials: Option<Arc<Credentials>>,
    processors: Processors,
    stats: Arc<Stats>,
}

impl Subscriber {
    /// Listens on `{prefix}takeover:{node}` (handing each takeover to the charge point's
    /// processor) and `{prefix}credentials` (adopting each key another node set); after each
    /// (re)connect, adopts every credential of the hash it does not hold yet. Reconnects every
    /// second while Redis is away; ends when the gateway stops.
    fn run(&self, stop: &AtomicBool) {
        let stopping = || stop.load(Ordering::Relaxed);
        while !stopping() {
            let Ok(mut con) = self.client.get_connection_with_timeout(REDIS_TIMEOUT) else {
                std::thread::park_timeout(RETRY);
                continue;
            };
            let _ = con.set_read_timeout(Some(Duration::from_millis(500)));
            let mut pubsub = con.as_pubsub();
            let channels = [self.takeovers.as_str(), self.credentials_key.as_str()];
            // Subscribed first, then the hash read: a key set in between is in both.
            if pubsub.subscribe(&channels[..]).is_err() || self.sync_credentials().is_err() {
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
                        if msg.get_channel_name() == self.credentials_key {
                            self.adopt(&text);
                        } else {
                            self.taken_over(&text);
                        }
                    }
                    Err(e) if e.is_timeout() => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// `{id}\t{connected_at}`: the charge point's processor closes an older connection.
    fn taken_over(&self, text: &str) {
        let Some((cp, at)) = text.split_once('\t') else {
            return;
        };
        let Ok(at_ms) = at.parse::<u64>() else {
            return;
        };
        self.stats.cluster.cluster_takeovers.inc();
        let cp: ChargePointId = cp.into();
        self.processors.of(&cp).send(ToProcessor::TakenOver {
            cp: ChargePointId::clone(&cp),
            at_ms,
        });
    }

    /// A credentials-file line another node (or this one) set.
    fn adopt(&self, line: &str) {
        let Some(credentials) = &self.credentials else {
            return;
        };
        match credentials.adopt(line) {
            Ok(true) => info!(
                "cp={} Basic auth key set by another node",
                line.split('\t').next().unwrap_or_default()
            ),
            Ok(false) => {}
            Err(e) => warn!("cluster: a credential from Redis not adopted: {e}"),
        }
    }

    /// Adopts every credential in the hash (HSCAN, a page at a time).
    fn sync_credentials(&self) -> redis::RedisResult<()> {
        if self.credentials.is_none() {
            return Ok(());
        }
        let mut con = self.client.get_connection_with_timeout(REDIS_TIMEOUT)?;
        con.set_read_timeout(Some(REDIS_TIMEOUT))?;
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&self.credentials_key)
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)?;
            for (_, line) in page {
                self.adopt(&line);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
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
