//! The processor threads. Each owns one [`Shard`] and one bounded inbox; it exits when every
//! loop (and the server) has dropped its sender (that is how shutdown reaches it).
//!
//! A thread takes what is ready, up to [`DRAIN_MAX`] messages, before it answers: the answers
//! for one loop go out as one batch with at most one wake, and it sleeps only when its inbox is
//! empty. Its event writer hands what it rendered to the sink when enough has gathered, when
//! an answer is held for it, or a few milliseconds after the oldest event: never on the way
//! of an answer that does not wait for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::TryRecvError;
use log::debug;

use crate::batch::{FrameBatch, Pool, ReplyBatch};
use crate::call::{CallOutcome, OutboundCall, WriterLog};
use crate::clock::epoch_ms;
use crate::events::{EventWriter, Events};
use crate::mailbox::ClusterSender;
use crate::mailbox::{Loops, ProcessorInbox, Processors, ToLoop, ToProcessor, shard_of};
use crate::processor::handlers::{FollowUp, Policy};
use crate::processor::journal_budget::BudgetRule;
use crate::processor::shard::{Outputs, Shard};
use crate::query::Query;
use crate::state::{Restored, StateSender};
use crate::stats::Stats;
use crate::trace::TraceList;
use crate::types::{ChargePointId, CloseReason, ConnId};

/// Messages a processor takes from its inbox before it sends the answers gathered so far.
pub const DRAIN_MAX: usize = 64;
/// The longest an idle processor sleeps without being rung.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// What every processor shares.
pub struct PoolParts {
    pub inboxes: Vec<ProcessorInbox>,
    pub processors: Processors,
    pub loops: Loops,
    pub policy: Arc<Policy>,
    /// Disconnected-but-accepted charge points kept per processor.
    pub remember_limit: usize,
    pub stats: Arc<Stats>,
    pub events: Events,
    pub traces: Arc<TraceList>,
    /// Each charge point's journal allowance.
    pub journal_rule: BudgetRule,
    /// `ocpp.state_file`: where changed charge points go, and what the last run left.
    pub state: Option<(StateSender, Restored)>,
    /// `[cluster]`: where connects and disconnects go.
    pub cluster: Option<ClusterSender>,
    /// Certificates expiring within this are due (`security.renew_before`); this many
    /// renewals are asked per scan, across the processors (`security.renewals_per_scan`); the
    /// processors look every `security.certificate_scan`.
    pub renewal: (Duration, u32, Duration),
}

/// One processor: its shard, inbox, writer and answers in the making. [`spawn`] runs each on a
/// thread of its own; [`build`] gives them to a caller that runs [`Processor::turn`] itself
/// (the allocation test does, on one thread with a loop).
pub struct Processor {
    index: usize,
    inbox: ProcessorInbox,
    /// Where emptied frame batches go (not the processors' handles: holding a sender to its
    /// own inbox, a processor would never see it close).
    batches: Pool<FrameBatch>,
    loops: Loops,
    shard: Shard,
    stats: Arc<Stats>,
    writer: Option<Box<dyn EventWriter>>,
    traces: Arc<TraceList>,
    /// One reply batch per loop, filled during a round.
    replies: Vec<ReplyBatch>,
    closes: Vec<(ConnId, CloseReason)>,
    /// Calls of ours that follow answers of this round (CertificateSigned).
    calls: Vec<(ConnId, ChargePointId, Box<FollowUp>)>,
    events: Events,
    /// `security.renew_before`, this processor's renewals per scan, how often it scans, and
    /// when next.
    renewal: (Duration, usize, Duration, Instant),
}

/// Starts one thread per inbox.
pub fn spawn(parts: PoolParts) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(parts.inboxes.len());
    for mut processor in build(parts) {
        let thread = std::thread::Builder::new()
            .name(format!("processor-{}", processor.index))
            .spawn(move || processor.run())?;
        threads.push(thread);
    }
    Ok(threads)
}

/// One processor per inbox, not started.
pub fn build(parts: PoolParts) -> Vec<Processor> {
    let PoolParts {
        inboxes,
        processors,
        loops,
        policy,
        remember_limit,
        stats,
        events,
        traces,
        journal_rule,
        state,
        cluster,
        renewal,
    } = parts;
    let shards = inboxes.len();
    let (sender, loaded) = state.map_or((None, Vec::new()), |(s, l)| (Some(s), l));
    let mut restored: Vec<Restored> = (0..shards).map(|_| Vec::new()).collect();
    for (cp, saved) in loaded {
        restored[shard_of(&cp, shards)].push((cp, saved));
    }
    let mut built = Vec::with_capacity(shards);
    for ((index, inbox), restored) in inboxes.into_iter().enumerate().zip(restored) {
        let processor = Processor {
            index,
            inbox,
            batches: processors.batches.clone(),
            replies: (0..loops.len()).map(|_| loops.replies.take()).collect(),
            loops: loops.clone(),
            shard: Shard::new(
                index,
                Arc::clone(&policy),
                Arc::clone(&stats),
                remember_limit,
                events.acks_after_write(),
            )
            .with_journal_rule(journal_rule)
            .with_state(sender.clone(), restored)
            .with_cluster(cluster.clone()),
            stats: Arc::clone(&stats),
            writer: events.writer(),
            traces: Arc::clone(&traces),
            closes: Vec::new(),
            calls: Vec::new(),
            events: events.clone(),
            renewal: (
                renewal.0,
                (renewal.1 as usize).div_ceil(shards),
                renewal.2,
                Instant::now() + renewal.2,
            ),
        };
        built.push(processor);
    }
    built
}

impl Processor {
    fn run(&mut self) {
        debug!("processor={} started", self.index);
        loop {
            let (handled, gone) = self.turn();
            if gone {
                break;
            }
            if handled == 0 {
                // Nothing to do: sleep until a sender rings, the writer's events are due, or
                // (a bound, so a lost ring cannot stall a processor) a second passes.
                let until = Instant::now() + IDLE_WAKE;
                let due = self.writer.as_ref().and_then(|w| w.due_at());
                self.inbox
                    .parker
                    .park_deadline(due.map_or(until, |d| d.min(until)));
            }
        }
        self.send_answers();
        self.flush_events(true);
        self.shard.offer_state(true);
        debug!("processor={} stopped", self.index);
    }

    /// One turn: what the inbox holds (up to [`DRAIN_MAX`] messages) handled, the answers sent
    /// to their loops, certificates scanned when due, events handed to the sink when due, the
    /// state offered. Returns how many messages it handled and whether every sender is gone.
    pub fn turn(&mut self) -> (usize, bool) {
        let mut handled = 0;
        let mut gone = false;
        while handled < DRAIN_MAX {
            match self.inbox.rx.try_recv() {
                Ok(msg) => {
                    self.handle(msg);
                    handled += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        self.send_answers();
        self.scan_certificates();
        self.flush_events(false);
        self.shard.offer_state(false);
        self.stats.processor_progress[self.index].fetch_add(1, Ordering::Relaxed);
        (handled, gone)
    }

    fn handle(&mut self, msg: ToProcessor) {
        match msg {
            ToProcessor::Batch(batch) => {
                let mut out = Outputs {
                    replies: &mut self.replies,
                    writer: self.writer.as_deref_mut(),
                    closes: &mut self.closes,
                    calls: &mut self.calls,
                };
                self.shard.handle_batch(&batch, &mut out);
                self.inbox.queue.sub(batch.messages(), batch.text_len());
                let room_wanted = self.inbox.queue.take_room_wanted();
                if room_wanted != 0 {
                    self.loops.wake_mask(room_wanted);
                }
                self.batches.give(batch);
            }
            ToProcessor::Call { cp, mut call } => match self.shard.connection_of(&cp) {
                // The call in the charge point's version (a 1.6 action to a 2.0.1 station
                // becomes 2.0.1's of the same name, checked again, or is refused, never sent).
                Some(conn) => {
                    let version = self.shard.version_of(&cp).unwrap_or_default();
                    match call.retarget(version) {
                        Ok(()) => {
                            self.loops.send(conn, ToLoop::Call { conn, call });
                        }
                        Err(invalid) => match self.writer.as_deref_mut() {
                            Some(writer) => call
                                .resolve_in(CallOutcome::Invalid(invalid), &mut WriterLog(writer)),
                            None => call.resolve(CallOutcome::Invalid(invalid)),
                        },
                    }
                }
                None => match self.writer.as_deref_mut() {
                    Some(writer) => {
                        call.resolve_in(CallOutcome::NotConnected, &mut WriterLog(writer))
                    }
                    None => call.resolve(CallOutcome::NotConnected),
                },
            },
            ToProcessor::Query(query) => self.query(query),
            ToProcessor::TakenOver { cp, at_ms } => {
                if let Some((conn, since)) = self.shard.connection_since(&cp)
                    && epoch_ms(since) < at_ms
                {
                    log::info!("cp={cp} taken over by another node");
                    self.loops.send(
                        conn,
                        ToLoop::Close {
                            conn,
                            reason: CloseReason::TakenOverElsewhere,
                        },
                    );
                }
            }
            ToProcessor::Loaded {
                cp,
                session,
                lookup,
            } => {
                let mut out = Outputs {
                    replies: &mut self.replies,
                    writer: self.writer.as_deref_mut(),
                    closes: &mut self.closes,
                    calls: &mut self.calls,
                };
                self.shard.loaded(&cp, session, lookup, &mut out);
            }
            ToProcessor::Probe { seq } => {
                self.stats.processor_alive[self.index].store(seq, Ordering::Relaxed);
            }
            #[cfg(feature = "test-hooks")]
            ToProcessor::Stall(until) => {
                log::warn!("processor={} stalled by a test hook", self.index);
                let _ = until.recv();
            }
        }
    }

    /// Sends each loop its answers (one batch, one wake), and the closes for takeovers.
    fn send_answers(&mut self) {
        for (index, replies) in self.replies.iter_mut().enumerate() {
            if replies.is_empty() {
                continue;
            }
            let batch = std::mem::replace(replies, self.loops.replies.take());
            if let Some(handle) = self.loops.get(index as u16) {
                // False only when the loop has exited (shutdown): nothing left to deliver to.
                handle.send(ToLoop::Replies(batch));
            }
        }
        for (conn, reason) in self.closes.drain(..) {
            self.loops.send(conn, ToLoop::Close { conn, reason });
        }
        // After the answers they follow, on the same channel: the charge point gets the answer
        // to its CALL first.
        for (conn, cp, follow_up) in self.calls.drain(..) {
            let (call, _outcome) = OutboundCall::new(follow_up.action, follow_up.payload);
            let call = call.reported(cp, Arc::clone(&self.stats), self.events.clone());
            self.loops.send(conn, ToLoop::Call { conn, call });
        }
    }

    /// Every `security.certificate_scan` (the loop wakes at least every second): the
    /// certificates coming due counted, and renewals asked of some.
    fn scan_certificates(&mut self) {
        let (renew_before, per_scan, every, next) = self.renewal;
        let now = Instant::now();
        if now < next {
            return;
        }
        self.renewal.3 = now + every;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let (now, renew_before) = (seconds(now), seconds(renew_before));
        for (conn, cp, call) in self.shard.certificates_due(now, renew_before, per_scan) {
            let (call, _outcome) = OutboundCall::new(call.action, call.payload);
            let call = call.reported(cp, Arc::clone(&self.stats), self.events.clone());
            self.loops.send(conn, ToLoop::Call { conn, call });
        }
    }

    /// Hands rendered events to the sink when they are due (or `always`).
    fn flush_events(&mut self, always: bool) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if (always || writer.due(Instant::now())) && writer.flush() {
            self.stats.processors[self.index].journal_backpressure.inc();
        }
    }

    fn query(&mut self, query: Query) {
        let traces = Arc::clone(&self.traces);
        let traced = |cp: &str| traces.contains(cp);
        match query {
            Query::List {
                filter,
                after,
                limit,
                reply,
            } => reply.send(self.shard.list(filter, after.as_deref(), limit, &traced)),
            Query::Detail { cp, reply } => reply.send(self.shard.view(&cp, traced(&cp))),
            Query::Disconnect { cp, reply } => {
                let conn = self.shard.connection_of(&cp);
                if let Some(conn) = conn {
                    log::info!("cp={cp} closed by the operator");
                    self.loops.send(
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
}
