//! The processor threads. Each owns one shard of charge point state and one bounded inbound
//! channel; it exits when every loop has dropped its sender (that is how shutdown reaches it).
//!
//! Takeover lives here: the processor that owns an identity is the one place that sees both the
//! old and the new connection of a charge point, in order, without a lock. When a second
//! connection of the same identity arrives it asks the old one's loop to close it, and from then
//! on ignores anything still in flight from the old connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use log::{debug, info, warn};

use crate::net::handshake::ChargePointId;
use crate::net::{CloseReason, ConnId, LoopHandle, ToLoop};
use crate::ocpp::rpc::{self, Frame};
use crate::processor::Inbound;
use crate::processor::handlers::{self, Policy, Reply};
use crate::stats::{ProcessorStats, Stats};

/// What a processor keeps per charge point (small: a booted charge point's whole userspace
/// budget is about 1 KiB).
#[derive(Debug)]
struct ChargePoint {
    conn: ConnId,
    /// The connection's `Connected::seq`: the higher wins a takeover.
    seq: u64,
    booted: bool,
}

struct Processor {
    index: usize,
    inbox: Receiver<Inbound>,
    loops: Vec<LoopHandle>,
    policy: Policy,
    stats: Arc<Stats>,
    charge_points: HashMap<ChargePointId, ChargePoint>,
    out: String,
}

/// The running pool: the senders loops use, and the threads to join.
pub struct ProcessorPool {
    pub senders: Vec<Sender<Inbound>>,
    pub threads: Vec<JoinHandle<()>>,
}

impl ProcessorPool {
    pub fn spawn(
        threads: usize,
        queue_capacity: usize,
        loops: &[LoopHandle],
        policy: &Policy,
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
                policy: policy.clone(),
                stats: Arc::clone(stats),
                charge_points: HashMap::new(),
                out: String::with_capacity(256),
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
            Inbound::Connected { conn, cp, seq } => {
                let newest = ChargePoint {
                    conn,
                    seq,
                    booted: false,
                };
                let loser = match self.charge_points.get_mut(&cp) {
                    // A connection older than the one we hold arrived late: it loses.
                    Some(held) if held.seq > seq => Some(conn),
                    Some(held) => {
                        let old = std::mem::replace(held, newest).conn;
                        (old != conn).then_some(old)
                    }
                    None => {
                        self.charge_points.insert(cp.clone(), newest);
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
            Inbound::Disconnected { conn, cp } => {
                if self
                    .charge_points
                    .get(&cp)
                    .is_some_and(|state| state.conn == conn)
                {
                    self.charge_points.remove(&cp);
                }
            }
            Inbound::Frame { conn, cp, frame } => {
                if self
                    .charge_points
                    .get(&cp)
                    .is_none_or(|state| state.conn != conn)
                {
                    debug!("cp={cp} dropping a frame of a replaced connection");
                    return;
                }
                self.handle_frame(conn, &cp, frame);
            }
        }
    }

    fn handle_frame(&mut self, conn: ConnId, cp: &ChargePointId, frame: Frame) {
        match frame {
            Frame::Call {
                unique_id,
                action,
                payload,
            } => {
                self.stats().calls_handled.inc();
                let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                let reply = handlers::handle_call(&self.policy, &action, &payload, &now);
                self.out.clear();
                match reply {
                    Reply::Booted(payload) => {
                        if let Some(state) = self.charge_points.get_mut(cp) {
                            state.booted = true;
                        }
                        write_result(&mut self.out, &unique_id, payload);
                    }
                    Reply::Result(payload) => write_result(&mut self.out, &unique_id, payload),
                    Reply::Error { code, description } => {
                        self.stats().call_errors_sent.inc();
                        debug!(
                            "cp={cp} {action} -> CALLERROR {}: {description}",
                            code.as_str()
                        );
                        rpc::write_call_error(&mut self.out, &unique_id, code, &description);
                    }
                }
                let text = std::mem::take(&mut self.out);
                self.send(conn, ToLoop::Text { conn, text });
            }
            // The gateway sends no CALLs yet, so every response is for an id it never used.
            Frame::CallResult { unique_id, .. } | Frame::CallError { unique_id, .. } => {
                self.stats().unexpected_responses.inc();
                warn!("cp={cp} response to unknown message id {unique_id:?} ignored");
            }
        }
    }

    fn send(&self, conn: ConnId, msg: ToLoop) {
        if let Some(handle) = self.loops.get(usize::from(conn.loop_index)) {
            // False only when the loop has exited (shutdown): nothing left to deliver to.
            let _ = handle.send(msg);
        }
    }
}

fn write_result(out: &mut String, unique_id: &str, payload: String) {
    match serde_json::value::RawValue::from_string(payload) {
        Ok(raw) => rpc::write_call_result(out, unique_id, &raw),
        Err(e) => {
            log::error!("handler produced invalid JSON: {e}");
            rpc::write_call_error(out, unique_id, rpc::CallErrorCode::InternalError, "");
        }
    }
}
