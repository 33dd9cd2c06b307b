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
//! processor forgets them all (they simply boot again, which the spec always allows).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, info, warn};

use crate::net::handshake::ChargePointId;
use crate::net::{CloseReason, ConnId, LoopHandle, ToLoop};
use crate::ocpp::rpc::{self, Frame};
use crate::outbound::CallOutcome;
use crate::processor::Inbound;
use crate::processor::handlers::{self, ChargePointState, Now, Policy, Registration, Reply};
use crate::stats::{ProcessorStats, Stats};

/// What a processor keeps per charge point.
#[derive(Debug)]
struct ChargePoint {
    /// The live connection, if any.
    conn: Option<ConnId>,
    /// The connection's `Connected::seq`: the higher wins a takeover.
    seq: u64,
    state: ChargePointState,
}

struct Processor {
    index: usize,
    inbox: Receiver<Inbound>,
    loops: Vec<LoopHandle>,
    policy: Arc<Policy>,
    stats: Arc<Stats>,
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

impl ProcessorPool {
    /// `remember_limit`: disconnected-but-accepted charge points kept per processor.
    pub fn spawn(
        threads: usize,
        queue_capacity: usize,
        loops: &[LoopHandle],
        policy: &Arc<Policy>,
        remember_limit: usize,
        stats: &Arc<Stats>,
    ) -> std::io::Result<ProcessorPool> {
        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let (tx, rx) = crossbeam_channel::bounded(queue_capacity);
            senders.push(tx);
            let mut processor = Processor {
                index,
                inbox: rx,
                loops: loops.to_vec(),
                policy: Arc::clone(policy),
                stats: Arc::clone(stats),
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
        }
        debug!("processor={} stopped", self.index);
    }

    fn stats(&self) -> &ProcessorStats {
        &self.stats.processors[self.index]
    }

    fn handle(&mut self, msg: Inbound) {
        match msg {
            Inbound::Connected { conn, cp, seq } => self.connected(conn, cp, seq),
            Inbound::Disconnected { conn, cp } => self.disconnected(conn, &cp),
            Inbound::Call { cp, call } => {
                match self.charge_points.get(&cp).and_then(|entry| entry.conn) {
                    Some(conn) => self.send(conn, ToLoop::Call { conn, call }),
                    None => call.resolve(CallOutcome::NotConnected),
                }
            }
            Inbound::Frame { conn, cp, frame } => match frame {
                Frame::Call {
                    unique_id,
                    action,
                    payload,
                } => {
                    self.call(conn, &cp, &unique_id, &action, &payload);
                }
                // Responses to our CALLs are matched by the loop that sent them.
                Frame::CallResult { unique_id, .. } | Frame::CallError { unique_id, .. } => {
                    warn!("cp={cp} response {unique_id:?} reached a processor; ignored");
                }
            },
        }
    }

    fn connected(&mut self, conn: ConnId, cp: ChargePointId, seq: u64) {
        let loser = match self.charge_points.get_mut(&cp) {
            // A connection older than the one we hold arrived late: it loses.
            Some(held) if held.seq > seq => Some(conn),
            Some(held) => {
                let old = held.conn.replace(conn);
                held.seq = seq;
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
                    },
                );
                None
            }
        };
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

    fn disconnected(&mut self, conn: ConnId, cp: &ChargePointId) {
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        if entry.conn != Some(conn) {
            return; // an older connection, already replaced
        }
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
        unique_id: &str,
        action: &str,
        payload: &serde_json::value::RawValue,
    ) {
        let Some(entry) = self
            .charge_points
            .get_mut(cp)
            .filter(|e| e.conn == Some(conn))
        else {
            debug!("cp={cp} dropping a CALL of a replaced connection");
            return;
        };
        self.stats.processors[self.index].calls_handled.inc();
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if millis != self.now.0 {
            self.now = (millis, Now::at(SystemTime::now()));
        }
        let reply = handlers::handle_call(
            &self.policy,
            cp,
            &mut entry.state,
            action,
            payload,
            &self.now.1,
        );
        let mut text = String::with_capacity(128);
        match reply {
            Reply::Result(result) => rpc::write_call_result(&mut text, unique_id, &result),
            Reply::Error { code, description } => {
                self.stats().call_errors_sent.inc();
                debug!(
                    "cp={cp} {action} -> CALLERROR {}: {description}",
                    code.as_str()
                );
                rpc::write_call_error(&mut text, unique_id, code, &description);
            }
        }
        self.send(conn, ToLoop::Text { conn, text });
    }

    fn send(&self, conn: ConnId, msg: ToLoop) {
        if let Some(handle) = self.loops.get(usize::from(conn.loop_index)) {
            // False only when the loop has exited (shutdown): nothing left to deliver to.
            let _ = handle.send(msg);
        }
    }
}
