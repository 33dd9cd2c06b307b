//! The operator API across nodes: a call for a charge point another node holds, and the
//! listing of every charge point in the registry. One thread with a Redis connection of its
//! own; the admin thread hands it a request and parks the client, as it does for processors.
//! A second thread does nothing but wait on Redis for new entries of this node's command stream
//! and of the results (a blocking `XREAD`) and hands them over: the first thread waits on its
//! channels (requests, entries, the outcomes of the calls it runs) and the next deadline, never
//! on a short poll.
//!
//! ```text
//!   admin (node A) --Request--> remote thread A --XADD {prefix}commands:{C}--> Redis
//!   remote thread C --XREAD--> Commands::call (exactly as a local API call) --outcome-->
//!     --XADD {prefix}command-results, RPUSH {prefix}command-result:{command_id}--> Redis
//!   remote thread A --XREAD {prefix}command-results--> admin (matched by command_id)
//! ```
//!
//! A record of `{prefix}commands:{node}` has the fields `command_id` (unique; echoed back),
//! `charge_point`, `action`, `payload` (JSON text) and, optionally, `origin` (the asking node).
//! Its outcome goes to `{prefix}command-results` with the fields `command_id`, `node` (which
//! ran it), `status` (the HTTP status the API answers: 200, 400, 404, 429, 502, 504) and
//! `body` (the API's JSON answer), and to the list `{prefix}command-result:{command_id}`
//! (expires after [`RESULT_TTL`]) for a backend that waits with BLPOP. Both streams are capped
//! near [`STREAM_LENGTH`] entries (`MAXLEN ~`). A node reads its stream from where it was when
//! it connected: commands written while it was down are not run (their senders have given up).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use log::{info, warn};
use redis::streams::StreamReadReply;
use serde_json::json;
use serde_json::value::RawValue;

use super::{REDIS_TIMEOUT, RETRY};
use crate::call::PendingCall;
use crate::clock::epoch_ms;
use crate::commands::Commands;
use crate::query::Answer;
use crate::stats::Stats;
use ocpp::AnyAction;
use ocpp::v16::Action;

/// Entries a command stream keeps (approximately: `MAXLEN ~`).
pub const STREAM_LENGTH: u64 = 10_000;
/// How long a `{prefix}command-result:{command_id}` list lives.
pub const RESULT_TTL: Duration = Duration::from_secs(60);
/// The longest one XREAD waits for entries, and either thread waits for anything: how long a
/// stop waits for them (entries and requests wake them at once).
const BLOCK: Duration = Duration::from_millis(100);
/// Entries read but not yet taken by the exchange thread (more: the reader waits).
const ENTRIES: usize = 1024;
/// Requests waiting for this thread at once (more: the API answers 503).
const REQUESTS: usize = 1024;

/// What the admin thread asks.
#[derive(Debug)]
pub enum Request {
    /// Run `action` on `cp` at the node that holds it.
    Call {
        cp: String,
        action: AnyAction,
        payload: Box<RawValue>,
        reply: Answer<Reply>,
    },
    /// Up to `limit` identities of the registry after `after`, with their owning node.
    List {
        after: Option<String>,
        limit: usize,
        reply: Answer<Reply>,
    },
}

/// An answer for the API: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Reply {
    fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: json!({ "error": message }),
        }
    }
}

/// The running threads and the admin's way to them.
pub struct Remote {
    pub requests: Sender<Request>,
    pub thread: JoinHandle<()>,
    pub reader: JoinHandle<()>,
}

/// Starts the thread; it ends once `stop` is set.
pub fn start(
    client: redis::Client,
    prefix: String,
    node: String,
    commands: Commands,
    wait: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Remote> {
    let (requests, rx) = crossbeam_channel::bounded(REQUESTS);
    let (entries_tx, entries) = crossbeam_channel::bounded(ENTRIES);
    let stats = Arc::clone(&commands.stats);
    let mut reader = Reader {
        client: client.clone(),
        keys: Keys::new(&prefix, &node),
        stats: Arc::clone(&stats),
        cursors: None,
        tx: entries_tx,
    };
    let reader_stop = Arc::clone(&stop);
    let reader = std::thread::Builder::new()
        .name("cluster-api-read".into())
        .spawn(move || reader.run(&reader_stop))?;
    let mut exchange = Exchange {
        client,
        keys: Keys::new(&prefix, &node),
        node,
        commands,
        stats,
        wait,
        next_id: 0,
        started_ms: epoch_ms(SystemTime::now()),
        waiting: HashMap::new(),
        running: Vec::new(),
        finished: Vec::new(),
    };
    let thread = std::thread::Builder::new()
        .name("cluster-api".into())
        .spawn(move || exchange.run(&rx, &entries, &stop))?;
    Ok(Remote {
        requests,
        thread,
        reader,
    })
}

/// Key names.
struct Keys {
    prefix: String,
    /// `{prefix}commands:{node}`: this node's commands.
    inbox: String,
    /// `{prefix}command-results`.
    results: String,
}

impl Keys {
    fn new(prefix: &str, node: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            inbox: format!("{prefix}commands:{node}"),
            results: format!("{prefix}command-results"),
        }
    }
}

struct Exchange {
    client: redis::Client,
    keys: Keys,
    node: String,
    commands: Commands,
    stats: Arc<Stats>,
    /// How long the API waits for a remote outcome.
    wait: Duration,
    next_id: u64,
    started_ms: u64,
    /// Calls sent to other nodes, by command id: who waits, until when.
    waiting: HashMap<String, (Answer<Reply>, Instant)>,
    /// Commands of other nodes running here: command id, the call.
    running: Vec<(String, PendingCall)>,
    /// Outcomes not yet published (kept while Redis is away).
    finished: Vec<(String, Reply)>,
}

/// A new entry of this node's command stream or of the results.
#[derive(Debug)]
enum Entry {
    Command {
        command_id: String,
        cp: String,
        action: String,
        payload: String,
    },
    Result {
        command_id: String,
        reply: Reply,
    },
}

/// The thread that waits on Redis for entries.
struct Reader {
    client: redis::Client,
    keys: Keys,
    stats: Arc<Stats>,
    /// The last ids read of this node's commands and of the results.
    cursors: Option<(String, String)>,
    tx: Sender<Entry>,
}

impl Reader {
    fn run(&mut self, stop: &AtomicBool) {
        let mut connection: Option<redis::Connection> = None;
        let mut next_try = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let Some(con) = connection.as_mut() else {
                if now >= next_try {
                    next_try = now + RETRY;
                    connection = self.connect();
                } else {
                    // Redis is away: the next attempt, or a stop, whichever comes first.
                    std::thread::sleep(next_try.saturating_duration_since(now).min(BLOCK));
                }
                continue;
            };
            match self.read(con) {
                Ok(entries) => {
                    for entry in entries {
                        if self.tx.send(entry).is_err() {
                            return; // the exchange thread is gone
                        }
                    }
                }
                Err(e) => {
                    // The cursors stay: once back, nothing written meanwhile is skipped.
                    warn!("cluster api: reading the streams failed ({e})");
                    self.stats.cluster.cluster_errors.inc();
                    connection = None;
                }
            }
        }
    }

    fn connect(&mut self) -> Option<redis::Connection> {
        let mut con = self
            .client
            .get_connection_with_timeout(REDIS_TIMEOUT)
            .ok()?;
        let _ = con.set_read_timeout(Some(REDIS_TIMEOUT + BLOCK));
        let _ = con.set_write_timeout(Some(REDIS_TIMEOUT));
        // The first time, start from the streams' ends as they are now; after a failure, go on
        // from where reading stopped.
        if self.cursors.is_none() {
            let inbox = last_id(&mut con, &self.keys.inbox).ok()?;
            let results = last_id(&mut con, &self.keys.results).ok()?;
            self.cursors = Some((inbox, results));
        }
        info!("cluster api: reading {}", self.keys.inbox);
        Some(con)
    }

    /// Waits (up to [`BLOCK`]) for entries after the cursors and moves the cursors past them.
    fn read(&mut self, con: &mut redis::Connection) -> redis::RedisResult<Vec<Entry>> {
        let Some((inbox, results)) = self.cursors.clone() else {
            return Ok(Vec::new());
        };
        let read: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.keys.inbox)
            .arg(&self.keys.results)
            .arg(&inbox)
            .arg(&results)
            .query(con)?;
        let (mut inbox, mut results) = (inbox, results);
        let mut entries = Vec::new();
        for stream in read.map(|r| r.keys).unwrap_or_default() {
            for entry in stream.ids {
                let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
                if stream.key == self.keys.inbox {
                    inbox = entry.id.clone();
                    entries.push(Entry::Command {
                        command_id: field("command_id"),
                        cp: field("charge_point"),
                        action: field("action"),
                        payload: field("payload"),
                    });
                } else {
                    results = entry.id.clone();
                    let body = serde_json::from_str(&field("body"))
                        .unwrap_or_else(|_| json!({"error": "an unreadable result"}));
                    let status = field("status").parse().unwrap_or(502);
                    entries.push(Entry::Result {
                        command_id: field("command_id"),
                        reply: Reply { status, body },
                    });
                }
            }
        }
        self.cursors = Some((inbox, results));
        Ok(entries)
    }
}

impl Exchange {
    fn run(&mut self, rx: &Receiver<Request>, entries: &Receiver<Entry>, stop: &AtomicBool) {
        let mut connection: Option<redis::Connection> = None;
        let mut next_try = Instant::now();
        let mut open = (true, true); // the request and entry channels have senders
        let mut last_used = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if connection.is_none() && now >= next_try {
                next_try = now + RETRY;
                connection = self.connect();
            }
            let retry = connection.is_none().then_some(next_try);
            self.wait(rx, entries, open, retry);
            let mut requests = Vec::new();
            while requests.len() < REQUESTS {
                match rx.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open.0 = false;
                        break;
                    }
                }
            }
            loop {
                match entries.try_recv() {
                    Ok(entry) => self.on_entry(entry),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open.1 = false;
                        break;
                    }
                }
            }
            self.collect_outcomes();
            let work = !requests.is_empty() || !self.finished.is_empty();
            if work && last_used.elapsed() >= BLOCK {
                // An idle connection may have died with its server: found out now, with a
                // new one at once, rather than by failing a request.
                let alive = connection
                    .as_mut()
                    .is_some_and(|con| redis::cmd("PING").exec(con).is_ok());
                if !alive {
                    connection = self.connect();
                }
            }
            match connection.as_mut() {
                Some(con) if work => match self.round(con, requests) {
                    Ok(()) => last_used = Instant::now(),
                    Err(e) => {
                        warn!("cluster api: Redis failed ({e})");
                        self.stats.cluster.cluster_errors.inc();
                        connection = None;
                    }
                },
                Some(_) => {}
                None => requests.into_iter().for_each(unreachable),
            }
            self.expire(Instant::now());
        }
    }

    /// Waits for a request, an entry, the outcome of a running call, the next expiry or
    /// reconnection attempt, or at most [`BLOCK`] (how long a stop may wait).
    fn wait(
        &self,
        rx: &Receiver<Request>,
        entries: &Receiver<Entry>,
        (requests_open, entries_open): (bool, bool),
        retry: Option<Instant>,
    ) {
        let mut deadline = Instant::now() + BLOCK;
        if let Some(retry) = retry {
            deadline = deadline.min(retry);
        }
        if let Some(expiry) = self.waiting.values().map(|(_, until)| *until).min() {
            deadline = deadline.min(expiry);
        }
        let mut select = Select::new();
        // A channel without senders is always ready: it would make this a spin.
        if requests_open {
            select.recv(rx);
        }
        if entries_open {
            select.recv(entries);
        }
        for (_, pending) in &self.running {
            select.recv(pending.receiver());
        }
        let _ = select.ready_deadline(deadline);
    }

    fn on_entry(&mut self, entry: Entry) {
        match entry {
            Entry::Command {
                command_id,
                cp,
                action,
                payload,
            } => self.run_command(command_id, &cp, &action, &payload),
            Entry::Result { command_id, reply } => {
                if let Some((waiter, _)) = self.waiting.remove(&command_id) {
                    waiter.send(reply);
                }
            }
        }
    }

    fn connect(&mut self) -> Option<redis::Connection> {
        super::open(&self.client).ok()
    }

    /// One exchange with Redis: the new requests, then the finished outcomes.
    fn round(
        &mut self,
        con: &mut redis::Connection,
        requests: Vec<Request>,
    ) -> redis::RedisResult<()> {
        let mut requests = requests.into_iter();
        while let Some(request) = requests.next() {
            let done = match request {
                Request::Call {
                    cp,
                    action,
                    payload,
                    reply,
                } => self.send_call(con, &cp, action, &payload, reply),
                Request::List {
                    after,
                    limit,
                    reply,
                } => match self.list(con, after.as_deref(), limit) {
                    Ok(page) => {
                        reply.send(page);
                        Ok(())
                    }
                    Err(e) if super::transient(&e) => {
                        reply.send(Reply::error(503, "Redis is unreachable; try again"));
                        Err(e)
                    }
                    Err(e) => {
                        // Redis answered, with a refusal: the connection is fine and stays
                        // (dropping it would fail the calls of the next second too).
                        warn!("cluster api: Redis refused a registry page ({e})");
                        reply.send(Reply::error(502, "Redis refused the lookup"));
                        Ok(())
                    }
                },
            };
            if let Err(e) = done {
                requests.for_each(unreachable); // answered now, not at their deadline
                return Err(e);
            }
        }
        self.publish(con)
    }

    /// Sends a call to the node that holds `cp`: 404 when none (or a dead one) does.
    fn send_call(
        &mut self,
        con: &mut redis::Connection,
        cp: &str,
        action: AnyAction,
        payload: &RawValue,
        reply: Answer<Reply>,
    ) -> redis::RedisResult<()> {
        let owner = match self.owner(con, cp) {
            Ok(owner) => owner,
            Err(e) => {
                reply.send(Reply::error(503, "Redis is unreachable; try again"));
                return Err(e);
            }
        };
        let Some(node) = owner.filter(|node| *node != self.node) else {
            let (status, body) = crate::call::CallOutcome::NotConnected.http();
            reply.send(Reply { status, body });
            return Ok(());
        };
        self.next_id += 1;
        let command_id = format!("{}-{}-{}", self.node, self.started_ms, self.next_id);
        let prefix = &self.keys.prefix;
        let sent = redis::cmd("XADD")
            .arg(format!("{prefix}commands:{node}"))
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LENGTH)
            .arg("*")
            .arg("command_id")
            .arg(&command_id)
            .arg("charge_point")
            .arg(cp)
            .arg("action")
            .arg(action.name())
            .arg("payload")
            .arg(payload.get())
            .arg("origin")
            .arg(&self.node)
            .exec(con);
        if let Err(e) = sent {
            reply.send(Reply::error(503, "Redis is unreachable; try again"));
            return Err(e);
        }
        self.stats.cluster.cluster_calls_sent.inc();
        self.waiting
            .insert(command_id, (reply, Instant::now() + self.wait));
        Ok(())
    }

    /// The live node holding `cp`: its registry entry, if the node's liveness key exists and
    /// the node started before that connection (a node restarted under the same id does not
    /// hold what its previous run held).
    fn owner(&self, con: &mut redis::Connection, cp: &str) -> redis::RedisResult<Option<String>> {
        let prefix = &self.keys.prefix;
        let (node, connected_at): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("{prefix}cp:{cp}"))
            .arg("node")
            .arg("connected_at")
            .query(con)?;
        let Some(node) = node else {
            return Ok(None);
        };
        let started: Option<String> = redis::cmd("GET")
            .arg(format!("{prefix}node:{node}"))
            .query(con)?;
        Ok(holds(started.as_deref(), connected_at.as_deref()).then_some(node))
    }

    /// A command from the stream, run exactly as a local API call.
    fn run_command(&mut self, command_id: String, cp: &str, action: &str, payload: &str) {
        if command_id.is_empty() {
            warn!(
                "cluster api: a command without command_id in {} ignored",
                self.keys.inbox
            );
            return;
        }
        self.stats.cluster.cluster_calls_run.inc();
        let invalid = |message: String, code: &str| Reply {
            status: 400,
            body: json!({"error": message, "code": code}),
        };
        let Some(action) = AnyAction::named(action) else {
            let reply = invalid(
                format!("{action:?} is not an OCPP 1.6, 2.0.1 or 2.1 action"),
                "NotImplemented",
            );
            return self.finished.push((command_id, reply));
        };
        if !crate::types::is_valid_identity(cp) {
            let reply = invalid(
                format!("{cp:?} is not a charge point id"),
                "PropertyConstraintViolation",
            );
            return self.finished.push((command_id, reply));
        }
        let Ok(payload) = RawValue::from_string(payload.to_owned()) else {
            let reply = invalid("payload is not JSON".into(), "FormationViolation");
            return self.finished.push((command_id, reply));
        };
        let sets_key = (action == AnyAction::V16(Action::ChangeConfiguration)
            && crate::commands::sets_authorization_key(&payload))
            || crate::commands::sets_basic_auth_password(&payload);
        if sets_key {
            // The new key must be stored once the charge point accepts it, which the API of
            // the node holding it does; run from a stream, the charge point would be locked out.
            let reply = invalid(
                "a ChangeConfiguration of AuthorizationKey (1.6) or SetVariables of \
                 BasicAuthPassword (2.0.1) goes through the API of the node that holds the \
                 charge point (POST .../calls there), which stores the key"
                    .into(),
                "NotSupported",
            );
            return self.finished.push((command_id, reply));
        }
        match self.commands.call(cp, action, payload, None, None) {
            Ok(pending) => self.running.push((command_id, pending)),
            Err(e) => {
                let reply = invalid(e.description, e.code.as_str());
                self.finished.push((command_id, reply));
            }
        }
    }

    /// Moves the outcomes of finished calls to `finished`.
    fn collect_outcomes(&mut self) {
        let mut index = 0;
        while index < self.running.len() {
            match self.running[index].1.try_outcome() {
                Some(outcome) => {
                    let (command_id, _) = self.running.swap_remove(index);
                    let (status, body) = outcome.http();
                    self.finished.push((command_id, Reply { status, body }));
                }
                None => index += 1,
            }
        }
    }

    /// Publishes the finished outcomes (they stay while Redis fails).
    fn publish(&mut self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        if self.finished.is_empty() {
            return Ok(());
        }
        let prefix = &self.keys.prefix;
        let mut pipe = redis::pipe();
        for (command_id, reply) in &self.finished {
            let body = reply.body.to_string();
            pipe.cmd("XADD")
                .arg(&self.keys.results)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LENGTH)
                .arg("*")
                .arg("command_id")
                .arg(command_id)
                .arg("node")
                .arg(&self.node)
                .arg("status")
                .arg(reply.status)
                .arg("body")
                .arg(&body)
                .ignore();
            let list = format!("{prefix}command-result:{command_id}");
            pipe.cmd("RPUSH")
                .arg(&list)
                .arg(json!({"status": reply.status, "body": reply.body}).to_string())
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&list)
                .arg(RESULT_TTL.as_millis() as u64)
                .ignore();
        }
        pipe.exec(con)?;
        self.finished.clear();
        Ok(())
    }

    /// A page of the registry: identities in order, with the owning node and whether that node
    /// (and so the connection) is alive.
    fn list(
        &self,
        con: &mut redis::Connection,
        after: Option<&str>,
        limit: usize,
    ) -> redis::RedisResult<Reply> {
        let prefix = &self.keys.prefix;
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(format!("{prefix}chargepoints"))
            .arg(start)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query(con)?;
        let more = ids.len() > limit;
        let ids = &ids[..ids.len().min(limit)];
        if ids.is_empty() {
            // Nothing to look up: an empty pipeline is not sent (Redis would be asked nothing
            // and the answer read as a failure).
            return Ok(Reply {
                status: 200,
                body: json!({"chargepoints": [], "count": 0, "next": null}),
            });
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET")
                .arg(format!("{prefix}cp:{id}"))
                .arg("node")
                .arg("connected_at");
        }
        let entries: Vec<(Option<String>, Option<String>)> = pipe.query(con)?;
        let mut nodes: Vec<&str> = entries.iter().filter_map(|(n, _)| n.as_deref()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.cmd("GET").arg(format!("{prefix}node:{node}"));
        }
        let started: Vec<Option<String>> = if nodes.is_empty() {
            Vec::new()
        } else {
            pipe.query(con)?
        };
        let started_of = |node: &str| {
            nodes
                .iter()
                .position(|n| *n == node)
                .and_then(|i| started.get(i).cloned().flatten())
        };
        let listed: Vec<serde_json::Value> = ids
            .iter()
            .zip(&entries)
            .map(|(id, (node, connected_at))| {
                let node_started = node.as_deref().and_then(started_of);
                let connected = holds(node_started.as_deref(), connected_at.as_deref());
                let at: Option<u64> = connected_at.as_deref().and_then(|a| a.parse().ok());
                json!({"id": id, "node": node, "node_alive": node_started.is_some(),
                       "connected": connected, "connected_at_ms": at})
            })
            .collect();
        let next = if more { ids.last().cloned() } else { None };
        Ok(Reply {
            status: 200,
            body: json!({"chargepoints": listed, "count": listed.len(), "next": next}),
        })
    }

    /// Calls whose outcome did not come in time: 504.
    fn expire(&mut self, now: Instant) {
        let late: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            if let Some((reply, _)) = self.waiting.remove(&id) {
                reply.send(Reply {
                    status: 504,
                    body: json!({"outcome": "timeout",
                                 "error": "the node holding the charge point did not answer in time"}),
                });
            }
        }
    }
}

/// Whether a registry entry made at `connected_at` still stands: its node is alive (`started`,
/// its liveness key's value) and was already running then.
fn holds(started: Option<&str>, connected_at: Option<&str>) -> bool {
    let parse = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
    match (parse(started), parse(connected_at)) {
        (Some(started), Some(at)) => started <= at,
        _ => false,
    }
}

/// Answers a request that arrived while Redis is away.
fn unreachable(request: Request) {
    let reply = Reply::error(503, "Redis is unreachable; try again");
    match request {
        Request::Call { reply: to, .. } | Request::List { reply: to, .. } => to.send(reply),
    }
}

/// The id of a stream's last entry ("0-0" for an empty or missing stream).
fn last_id(con: &mut redis::Connection, key: &str) -> redis::RedisResult<String> {
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    Ok(last
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sets_authorization_key;

    #[test]
    fn an_entry_stands_only_while_its_node_runs_the_run_that_made_it() {
        assert!(holds(Some("1000"), Some("1500")));
        assert!(
            !holds(Some("2000"), Some("1500")),
            "the node restarted since"
        );
        assert!(!holds(None, Some("1500")), "the node is dead");
        assert!(!holds(Some("1000"), Some("soon")), "garbage in Redis");
    }

    #[test]
    fn key_rotations_are_recognised() {
        let payload = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        assert!(sets_authorization_key(&payload(
            r#"{"key":"authorizationkey","value":"00"}"#
        )));
        assert!(!sets_authorization_key(&payload(
            r#"{"key":"HeartbeatInterval","value":"60"}"#
        )));
    }
}
