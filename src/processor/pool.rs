//! The processor threads. Each owns one shard of charge point state and one bounded inbound
//! channel; it exits when every loop (and the server) has dropped its sender (that is how
//! shutdown reaches it).
//!
//! Takeover lives here: the processor that owns an identity is the one place that sees both the
//! old and the new connection of a charge point, in order, without a lock. When a second
//! connection of the same identity arrives it asks the old one's loop to close it, and from then
//! on ignores anything still in flight from the old connection.
//!
//! A charge point's registration outlives its connection: one that reconnects without booting
//! again is still Accepted. Disconnected charge points are remembered up to a bound; past it the
//! processor forgets an eighth of them (they simply boot again, which the spec always allows).
//!
//! Each processor records its charge points' events (connect, disconnect, every CALL with our
//! answer) in the event sink, waiting when it is full; with `events.ack_after_write` the answer
//! to a StopTransaction or MeterValues goes to the journal with its line, which sends it on once
//! the line is written.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, info, warn};
use serde_json::value::RawValue;

use crate::events::{Ack, Answered, Event, EventKind, Events, is_billing};
use crate::net::handshake::ChargePointId;
use crate::net::{CloseCause, CloseReason, ConnId, LoopHandle, ToLoop, TraceList};
use crate::ocpp::rpc::{self, Frame};
use crate::ocpp::v16::Action;
use crate::outbound::CallOutcome;
use crate::processor::Inbound;
use crate::processor::handlers::{self, ChargePointState, Now, Policy, Registration, Reply};
use crate::processor::query::{ChargePointView, ConnectorView, Filter, Query};
use crate::stats::{ProcessorLabelled, ProcessorStats, Stats, action_slot};

/// What a processor keeps per charge point.
#[derive(Debug)]
struct ChargePoint {
    /// The live connection, if any.
    conn: Option<ConnId>,
    /// The connection's `Connected::seq`: the higher wins a takeover.
    seq: u64,
    state: ChargePointState,
    /// What only the operator API reads: boxed, so the map entry every message touches stays
    /// small (measured: inline, these fields cost ~200 bytes per charge point in map slack).
    seen: Box<Seen>,
}

/// `payload` without its whitespace: what is kept per charge point must be bounded by the
/// schema, not by how much padding a charge point sends (up to `max_message_size`).
fn compact(payload: &RawValue) -> Option<Box<RawValue>> {
    let value: serde_json::Value = serde_json::from_str(payload.get()).ok()?;
    RawValue::from_string(value.to_string()).ok()
}

/// What the operator API shows about a charge point beyond its protocol state.
#[derive(Debug)]
struct Seen {
    /// Where the live (or last) connection came from.
    peer: Option<SocketAddr>,
    /// When it connected (or, with no connection, disconnected).
    since: SystemTime,
    last_message: Option<SystemTime>,
    /// The payload of its last accepted or pending BootNotification.
    boot: Option<Box<RawValue>>,
}

struct Processor {
    index: usize,
    inbox: Receiver<Inbound>,
    loops: Vec<LoopHandle>,
    policy: Arc<Policy>,
    stats: Arc<Stats>,
    events: Events,
    traces: Arc<TraceList>,
    charge_points: HashMap<ChargePointId, ChargePoint>,
    /// Entries without a connection, and how many may stay.
    remembered: usize,
    remember_limit: usize,
    /// The time answers carry, formatted once per millisecond.
    now: (u128, Now),
}

/// The running pool: the senders loops use, and the threads to join.
pub struct ProcessorPool {
    pub senders: Vec<Sender<Inbound>>,
    pub threads: Vec<JoinHandle<()>>,
}

/// What every processor shares.
pub struct PoolParts {
    pub threads: usize,
    pub queue_capacity: usize,
    pub loops: Vec<LoopHandle>,
    pub policy: Arc<Policy>,
    /// Disconnected-but-accepted charge points kept per processor.
    pub remember_limit: usize,
    pub stats: Arc<Stats>,
    pub events: Events,
    pub traces: Arc<TraceList>,
}

impl ProcessorPool {
    pub fn spawn(parts: PoolParts) -> std::io::Result<ProcessorPool> {
        let PoolParts {
            threads,
            queue_capacity,
            loops,
            policy,
            remember_limit,
            stats,
            events,
            traces,
        } = parts;
        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let (tx, rx) = crossbeam_channel::bounded(queue_capacity);
            senders.push(tx);
            let mut processor = Processor {
                index,
                inbox: rx,
                loops: loops.clone(),
                policy: Arc::clone(&policy),
                stats: Arc::clone(&stats),
                events: events.clone(),
                traces: Arc::clone(&traces),
                charge_points: HashMap::new(),
                remembered: 0,
                remember_limit,
                now: (0, Now::at(UNIX_EPOCH)),
            };
            let handle = std::thread::Builder::new()
                .name(format!("processor-{index}"))
                .spawn(move || processor.run())?;
            handles.push(handle);
        }
        Ok(ProcessorPool {
            senders,
            threads: handles,
        })
    }
}

impl Processor {
    fn run(&mut self) {
        debug!("processor={} started", self.index);
        while let Ok(msg) = self.inbox.recv() {
            self.handle(msg);
            self.stats.processor_progress[self.index].fetch_add(1, Ordering::Relaxed);
        }
        debug!("processor={} stopped", self.index);
    }

    fn stats(&self) -> &ProcessorStats {
        &self.stats.processors[self.index]
    }

    fn labelled(&self) -> &ProcessorLabelled {
        &self.stats.processor_labelled[self.index]
    }

    /// Records an event, counting the wait when the sink is full.
    fn record(&self, make: impl FnOnce() -> Event) {
        if self.events.record(make) {
            self.stats().journal_backpressure.inc();
        }
    }

    fn now(&mut self) -> &Now {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if millis != self.now.0 {
            self.now = (millis, Now::at(SystemTime::now()));
        }
        &self.now.1
    }

    fn handle(&mut self, msg: Inbound) {
        match msg {
            Inbound::Connected {
                conn,
                cp,
                seq,
                peer,
            } => self.connected(conn, cp, seq, peer),
            Inbound::Disconnected { conn, cp, cause } => self.disconnected(conn, &cp, cause),
            Inbound::Call { cp, call } => {
                match self.charge_points.get(&cp).and_then(|entry| entry.conn) {
                    Some(conn) => self.send(conn, ToLoop::Call { conn, call }),
                    None => call.resolve(CallOutcome::NotConnected),
                }
            }
            Inbound::Query(query) => self.query(query),
            Inbound::Probe { seq } => {
                self.stats.processor_alive[self.index].store(seq, Ordering::Relaxed);
            }
            Inbound::Stall(until) => {
                warn!("processor={} stalled by a test hook", self.index);
                let _ = until.recv();
            }
            Inbound::Frame {
                conn,
                cp,
                frame,
                received,
            } => match frame {
                Frame::Call {
                    unique_id,
                    action,
                    payload,
                } => {
                    self.call(conn, &cp, unique_id, action, payload);
                    self.labelled().processing.observe(received.elapsed());
                }
                // Responses to our CALLs are matched by the loop that sent them.
                Frame::CallResult { unique_id, .. } | Frame::CallError { unique_id, .. } => {
                    warn!("cp={cp} response {unique_id:?} reached a processor; ignored");
                }
            },
        }
    }

    fn connected(&mut self, conn: ConnId, cp: ChargePointId, seq: u64, peer: SocketAddr) {
        let now = self.now().time;
        let loser = match self.charge_points.get_mut(&cp) {
            // A connection older than the one we hold arrived late: it loses.
            Some(held) if held.seq > seq => Some(conn),
            Some(held) => {
                let old = held.conn.replace(conn);
                held.seq = seq;
                held.seen.peer = Some(peer);
                held.seen.since = now;
                if old.is_none() {
                    self.remembered -= 1;
                }
                old.filter(|old| *old != conn)
            }
            None => {
                let state = ChargePointState::default();
                self.charge_points.insert(
                    cp.clone(),
                    ChargePoint {
                        conn: Some(conn),
                        seq,
                        state,
                        seen: Box::new(Seen {
                            peer: Some(peer),
                            since: now,
                            last_message: None,
                            boot: None,
                        }),
                    },
                );
                None
            }
        };
        // Journaled in the order a reader needs: the old connection ends, the new one starts.
        // A late connection that loses at once was never journaled as connected.
        if loser.is_some_and(|l| l != conn) {
            self.record(|| Event {
                at: now,
                cp: cp.clone(),
                kind: EventKind::Disconnected {
                    cause: CloseCause::Takeover,
                },
                ack: None,
            });
        }
        if loser != Some(conn) {
            self.record(|| Event {
                at: now,
                cp: cp.clone(),
                kind: EventKind::Connected {
                    peer,
                    loop_index: conn.loop_index,
                },
                ack: None,
            });
        }
        if let Some(loser) = loser {
            info!(
                "cp={cp} loop={} replaced by a newer connection",
                loser.loop_index
            );
            self.send(
                loser,
                ToLoop::Close {
                    conn: loser,
                    reason: CloseReason::Takeover,
                },
            );
        }
    }

    fn disconnected(&mut self, conn: ConnId, cp: &ChargePointId, cause: CloseCause) {
        let now = self.now().time;
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        if entry.conn != Some(conn) {
            return; // an older connection, already replaced (and journaled as such)
        }
        entry.seen.since = now;
        self.record(|| Event {
            at: now,
            cp: cp.clone(),
            kind: EventKind::Disconnected { cause },
            ack: None,
        });
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        if entry.state.registration != Registration::Accepted {
            self.charge_points.remove(cp);
            return;
        }
        entry.conn = None;
        self.remembered += 1;
        if self.remembered > self.remember_limit {
            // Forget an eighth of the disconnected charge points (whichever the map yields
            // first; they boot again), so the cost stays O(1) per disconnect on average and
            // no one can wipe the whole memory of a processor in one go.
            let mut forget = (self.remember_limit / 8).max(1);
            warn!(
                "processor={} remembers {} disconnected charge points (limit {}): forgetting {forget}",
                self.index, self.remembered, self.remember_limit
            );
            self.charge_points.retain(|_, entry| {
                if entry.conn.is_none() && forget > 0 {
                    forget -= 1;
                    return false;
                }
                true
            });
            self.remembered = self
                .charge_points
                .values()
                .filter(|e| e.conn.is_none())
                .count();
        }
    }

    fn call(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        unique_id: String,
        action: String,
        payload: Box<RawValue>,
    ) {
        self.now(); // refresh the cached time; borrowed below beside the map, not cloned
        let now = &self.now.1;
        let at = now.time;
        let Some(entry) = self
            .charge_points
            .get_mut(cp)
            .filter(|e| e.conn == Some(conn))
        else {
            debug!("cp={cp} dropping a CALL of a replaced connection");
            return;
        };
        let stats = &self.stats;
        let known = Action::from_name(&action); // once per message: counters and handler
        stats.processors[self.index].calls_handled.inc();
        stats.processor_labelled[self.index].calls_by_action[action_slot(known)].inc();
        entry.seen.last_message = Some(at);
        let reply = handlers::handle_named(
            &self.policy,
            cp,
            &mut entry.state,
            &action,
            known,
            &payload,
            now,
        );
        let mut text = String::with_capacity(128);
        let answer = match reply {
            Reply::Result(result) => {
                rpc::write_call_result(&mut text, &unique_id, &result);
                if known == Some(Action::BootNotification) {
                    entry.seen.boot = compact(&payload);
                }
                Answered::Result(result)
            }
            Reply::Error { code, description } => {
                stats.processors[self.index].call_errors_sent.inc();
                stats.processor_labelled[self.index].call_errors_by_code[code.index()].inc();
                debug!(
                    "cp={cp} {action} -> CALLERROR {}: {description}",
                    code.as_str()
                );
                rpc::write_call_error(&mut text, &unique_id, code, &description);
                Answered::Error { code, description }
            }
        };
        if !self.events.is_on() {
            return self.send(conn, ToLoop::Text { conn, text });
        }
        // Billing answers wait for their line when asked to; errors never need to.
        let held = self.events.acks_after_write()
            && known.is_some_and(is_billing)
            && matches!(answer, Answered::Result(_));
        let (ack, text) = if held {
            (Some(Ack { conn, text }), None)
        } else {
            (None, Some(text))
        };
        self.record(|| Event {
            at,
            cp: cp.clone(),
            kind: EventKind::Exchange {
                unique_id,
                action,
                request: payload,
                answer,
            },
            ack,
        });
        if let Some(text) = text {
            self.send(conn, ToLoop::Text { conn, text });
        }
    }

    fn query(&mut self, query: Query) {
        match query {
            Query::List {
                filter,
                after,
                limit,
                reply,
            } => {
                let mut ids: Vec<&ChargePointId> = self
                    .charge_points
                    .iter()
                    .filter(|(id, entry)| {
                        let wanted = match filter {
                            Filter::All => true,
                            Filter::Connected => entry.conn.is_some(),
                            Filter::Disconnected => entry.conn.is_none(),
                        };
                        wanted && after.as_deref().is_none_or(|after| &***id > after)
                    })
                    .map(|(id, _)| id)
                    .collect();
                if ids.len() > limit {
                    ids.select_nth_unstable(limit);
                    ids.truncate(limit);
                }
                ids.sort_unstable();
                let views = ids.iter().filter_map(|id| self.view(id)).collect();
                reply.send(views);
            }
            Query::Detail { cp, reply } => reply.send(self.view(&cp)),
            Query::Disconnect { cp, reply } => {
                let conn = self.charge_points.get(&cp).and_then(|e| e.conn);
                if let Some(conn) = conn {
                    info!("cp={cp} closed by the operator");
                    self.send(
                        conn,
                        ToLoop::Close {
                            conn,
                            reason: CloseReason::Operator,
                        },
                    );
                }
                reply.send(conn.is_some());
            }
        }
    }

    fn view(&self, cp: &str) -> Option<ChargePointView> {
        let (id, entry) = self.charge_points.get_key_value(cp)?;
        let rfc3339 = |t: SystemTime| {
            if t >= UNIX_EPOCH {
                humantime::format_rfc3339_millis(t).to_string()
            } else {
                String::new()
            }
        };
        Some(ChargePointView {
            id: id.to_string(),
            connected: entry.conn.is_some(),
            since: rfc3339(entry.seen.since),
            remote_address: entry.seen.peer.map(|p| p.to_string()),
            loop_index: entry.conn.map(|c| c.loop_index),
            registration: match entry.state.registration {
                Registration::Unknown => "unknown",
                Registration::Pending => "pending",
                Registration::Rejected => "rejected",
                Registration::Accepted => "accepted",
            },
            boot: entry.seen.boot.clone(),
            connectors: entry
                .state
                .connectors
                .iter()
                .map(|&(connector_id, status)| ConnectorView {
                    connector_id,
                    status: status.as_str(),
                })
                .collect(),
            open_transaction: entry.state.open_transaction,
            last_message_at: entry.seen.last_message.map(rfc3339),
            trace: self.traces.contains(cp),
        })
    }

    fn send(&self, conn: ConnId, msg: ToLoop) {
        if let Some(handle) = self.loops.get(usize::from(conn.loop_index)) {
            // False only when the loop has exited (shutdown): nothing left to deliver to.
            let _ = handle.send(msg);
        }
    }
}
