//! The cluster thread: registry writes in pipelines (register, save, unregister, restore),
//! node liveness, the transaction id slot, and the registry rebuilt after Redis lost it.

use super::*;

pub(super) struct Writer {
    pub(super) client: redis::Client,
    pub(super) prefix: String,
    pub(super) node: String,
    pub(super) node_ttl: Duration,
    pub(super) buffer_limit: usize,
    pub(super) started_ms: u64,
    pub(super) stats: Arc<Stats>,
    pub(super) reachable: Arc<AtomicBool>,
    /// The node's transaction ids: their share is claimed (and re-claimed) here.
    pub(super) transactions: Arc<TransactionIds>,
    /// The SHA1 of each script of [`Lua::ALL`], as Redis named them at the first load.
    pub(super) shas: std::sync::OnceLock<Vec<String>>,
    /// TLS ticket keys shared through Redis (resumption on without a key file).
    pub(super) tickets: Option<Arc<TicketKeys>>,
    /// `cluster.id_slot`, `cluster.id_slots`.
    pub(super) id_slot: Option<u32>,
    pub(super) id_slots: u32,
}

/// A connection this node holds, as the registry must show it.
pub(super) struct Held {
    pub(super) session: u64,
    pub(super) at_ms: u64,
    /// The charge point's state record as last shared (None: not accepted, or not known).
    pub(super) record: Option<Saved>,
}

/// The writer's working set: what waits for Redis, and where lookups are answered.
pub(super) struct Pending {
    /// Every charge point connected here, to write again when Redis lost the registry.
    pub(super) held: HashMap<ChargePointId, Held>,
    /// `run_id` of the Redis server last connected to: another one means a restarted server.
    pub(super) run_id: Option<String>,
    /// The registry must be written again (Redis lost it): set until that succeeded.
    pub(super) restore: bool,
    pub(super) buffer: VecDeque<Op>,
    /// The first this many operations of `buffer` had their connect answered already (Redis
    /// was away): each charge point is told once.
    pub(super) answered: usize,
    /// Let go (None) when the gateway stops.
    pub(super) processors: Option<Processors>,
}

impl Pending {
    /// Tells the processor of `cp` what Redis knows of it. Waits for room: processors never
    /// wait for this thread, and a charge point's first messages are held until it is told.
    pub(super) fn answer(&self, cp: &ChargePointId, session: u64, lookup: Lookup) {
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
    pub(super) fn unavailable(&mut self) {
        for op in self.buffer.iter().skip(self.answered) {
            if let Op::Connected { cp, session, .. } = op {
                self.answer(cp, *session, Lookup::Unavailable);
            }
        }
        self.answered = self.buffer.len();
    }

    /// Takes the first `n` operations out, with whether each was answered already.
    pub(super) fn take(&mut self, n: usize) -> Vec<(Op, bool)> {
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
    pub(super) fn run(&self, rx: &Receiver<Op>, processors: Processors) {
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
                    .and_then(|()| self.share_ticket_keys(con))
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
    pub(super) fn keep(&self, pending: &mut Pending, op: Op, connected: bool) {
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

    pub(super) fn connect(&self) -> Option<redis::Connection> {
        match super::open(&self.client) {
            Ok(mut con) => {
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
    pub(super) fn load_scripts(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for lua in Lua::ALL {
            pipe.cmd("SCRIPT").arg("LOAD").arg(lua.source());
        }
        let shas: Vec<String> = pipe.query(con)?;
        let _ = self.shas.set(shas);
        Ok(())
    }

    /// The SHA1 `EVALSHA` runs `lua` by ("" before the first load: Redis answers NOSCRIPT).
    pub(super) fn sha(&self, lua: Lua) -> &str {
        self.shas
            .get()
            .and_then(|shas| shas.get(lua as usize))
            .map_or("", String::as_str)
    }

    /// Claims (on the first start) or confirms this node's share of the transaction ids, and
    /// raises `{prefix}transaction-id` to the highest id it reserved. Every beat: after Redis
    /// lost its data the claim is back within one, and a second live node claiming the same
    /// slot is refused ids (claims are for ever: an operator sorts it out).
    pub(super) fn claim_share(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
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
    pub(super) fn registry_keys(&self, cp: &str) -> Vec<String> {
        let prefix = &self.prefix;
        vec![
            format!("{prefix}cp:{cp}"),
            format!("{prefix}state:{cp}"),
            format!("{prefix}chargepoints"),
        ]
    }

    /// Every beat: the fleet's ticket keys from `{prefix}tls-ticket-keys`, rotated there once
    /// the newest is a lifetime old (see [`TICKET_KEYS`]), installed here.
    pub(super) fn share_ticket_keys(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let Some(tickets) = &self.tickets else {
            return Ok(());
        };
        let Some(candidate) = tickets.candidate() else {
            return Ok(()); // no random bytes this time: the next beat tries again
        };
        let answer: redis::RedisResult<Vec<String>> = redis::cmd("EVALSHA")
            .arg(self.sha(Lua::TicketKeys))
            .arg(1)
            .arg(format!("{}tls-ticket-keys", self.prefix))
            .arg(epoch_ms(SystemTime::now()))
            .arg(u64::try_from(tickets.lifetime().as_millis()).unwrap_or(u64::MAX))
            .arg(candidate)
            .query(con);
        let entries = match answer {
            Ok(entries) => entries,
            // The connection (or the scripts) are gone: the writer reconnects as for any op.
            Err(e) if transient(&e) => {
                return Err(e);
            }
            // The key itself is wrong (another type, an ACL without it): the registry must not
            // stop for it. The node keeps its keys; said every beat until fixed.
            Err(e) => {
                self.stats.cluster.cluster_errors.inc();
                warn!("TLS ticket keys in Redis not used: {e}");
                return Ok(());
            }
        };
        match tickets.install_shared(&entries) {
            Ok(true) => {
                self.stats.cluster.cluster_ticket_keys_installed.inc();
                info!("TLS ticket keys: {} shared through Redis", entries.len());
            }
            Ok(false) => {}
            Err(reason) => warn!("TLS ticket keys in Redis not used: {reason}"),
        }
        Ok(())
    }

    /// `{prefix}node:{node}` with its TTL. A key that was gone (Redis lost its data, or the
    /// node was away longer than the TTL) means the registry is written again.
    pub(super) fn heartbeat(
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
    pub(super) fn check_server(&self, con: &mut redis::Connection, pending: &mut Pending) {
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
    pub(super) fn restore(
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
    pub(super) fn settle(
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
    pub(super) fn flush(
        &self,
        con: &mut redis::Connection,
        pending: &mut Pending,
    ) -> redis::RedisResult<()> {
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
pub(super) struct Registered {
    /// The node that held the charge point before, if the entry was written ("" for none).
    pub(super) previous: Option<String>,
    pub(super) lookup: Lookup,
    /// Not written: the connect time of the newer connection another node holds.
    pub(super) newer: Option<u64>,
}

/// The `run_id` of an `INFO server` answer: another one means another server process.
pub(super) fn run_id_of(info: &str) -> Option<&str> {
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

pub(super) fn text_of(value: Option<&redis::Value>) -> Option<String> {
    match value {
        Some(redis::Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(redis::Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Reads a REGISTER answer (`{node, written, record}`). A record that does not parse is
/// treated as absent (and logged): the charge point boots again, which repairs it.
pub(super) fn parse_register(answer: &redis::Value) -> Registered {
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
