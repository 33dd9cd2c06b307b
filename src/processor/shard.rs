//! One processor's charge points and what it does with a batch, without threads or channels:
//! the pool's thread feeds a [`Shard`] and sends what it produced, and tests drive it directly.
//!
//! Takeover lives here: the shard that owns an identity is the one place that sees both the
//! old and the new connection of a charge point, in order, without a lock. When a second
//! connection of the same identity arrives it asks the old one's loop to close it, and from then
//! on ignores anything still in flight from the old connection.
//!
//! A charge point's registration outlives its connection: one that reconnects without booting
//! again is still Accepted. Disconnected charge points are remembered up to a bound; past it the
//! shard forgets an eighth of them (they simply boot again, which the spec always allows).
//!
//! Every message handed over gets exactly one answer in the loop's reply batch (an empty one
//! when nothing is sent back), so the loop's count of messages in flight per connection stays
//! exact. With `events.ack_after_write` the answer to a StopTransaction or MeterValues goes to
//! the event writer instead, which releases it once its event is written.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use serde_json::value::RawValue;

use crate::batch::{Draft, Entry, FrameBatch, ReplyBatch, Stashed};
use crate::clock::WallClock;
use crate::clock::epoch_ms;
use crate::events::{self, Answer, Body, Event, EventKind, EventWriter, HeldAnswers, is_billing};
use crate::mailbox::{ClusterSender, Lookup, Op as ClusterOp};
use crate::processor::handlers::{self, ChargePointState, Now, Policy, Registration};
use crate::processor::journal_budget::{Admit, BudgetRule, JournalBudget};
use crate::query::{ChargePointView, ConnectorView, Filter};
use crate::security::{Auth, Profile};
use crate::state::{Change, Restored, Saved, StateBatch, StateSender};
use crate::stats::{ProcessorLabelled, ProcessorStats, Stats, action_slot};
use crate::types::{ChargePointId, CloseCause, CloseReason, ConnId};
use crate::warn_budget::WarnBudget;
use ocpp::rpc::{self, Frame, FrameError};
use ocpp::v16::{Action, ChargePointStatus, Invalid};

/// Warnings about peer input a processor logs per second; the rest are counted only.
const WARNINGS_PER_SECOND: u32 = 20;

/// What a shard keeps per charge point.
#[derive(Debug)]
struct ChargePoint {
    /// The live connection, if any.
    conn: Option<ConnId>,
    /// The connection's `Connected::seq`: the higher wins a takeover.
    seq: u64,
    state: ChargePointState,
    /// Its allowance of journal bytes.
    journal: JournalBudget,
    /// The highest security profile it authenticated at (remembered across restarts): it is
    /// never served below it again, unless its credentials line pins a lower one.
    profile: Profile,
    /// The live connection's listener profile, and whether its credentials pin the floor.
    listener: (Profile, bool),
    /// What only the operator API reads: boxed, so the map entry every message touches stays
    /// small (measured: inline, these fields cost ~200 bytes per charge point in map slack).
    seen: Box<Seen>,
    /// Changed since it was last offered to the state file (and listed in `Shard::dirty`).
    dirty: bool,
    /// The state file has (or was offered) a record of it.
    saved: bool,
    /// Cluster mode: its connection's messages, held (in order) until Redis said what it knows
    /// of the charge point. At most `ocpp.max_pipelined_calls` of them: the loop reads no more
    /// of a connection while that many CALLs wait for an answer.
    held: Option<Box<Held>>,
}

/// Messages of a connection waiting for what Redis knows of its charge point, in order.
type Held = Vec<(ConnId, Box<str>)>;

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
    /// Journal lines left out over its allowance since it connected.
    journal_suppressed: u64,
    /// Times its connection was paused for going over `ocpp.max_calls_per_second`.
    rate_limited: u64,
}

/// `payload` without its whitespace: what is kept per charge point must be bounded by the
/// schema, not by how much padding a charge point sends (up to `max_message_size`).
fn compact(payload: &RawValue) -> Option<Box<RawValue>> {
    let value: serde_json::Value = serde_json::from_str(payload.get()).ok()?;
    RawValue::from_string(value.to_string()).ok()
}

/// The actions whose answer may change what the state file keeps of a charge point.
fn changes_state(action: Action) -> bool {
    matches!(
        action,
        Action::BootNotification
            | Action::StatusNotification
            | Action::StartTransaction
            | Action::StopTransaction
    )
}

/// What the state file keeps of a charge point: its record while it is Accepted, nothing
/// otherwise (it boots again after a restart).
fn saved_record(entry: &ChargePoint) -> Option<Saved> {
    (entry.state.registration == Registration::Accepted).then(|| Saved {
        profile: entry.profile.number(),
        boot: entry.seen.boot.clone(),
        connectors: entry.state.connectors.clone(),
        open_transaction: entry.state.open_transaction,
        seen_ms: epoch_ms(entry.seen.since),
    })
}

/// Writes a charge point's journal lines within its allowance (see `journal_budget`).
struct Journaling<'w, 's> {
    writer: &'w mut dyn EventWriter,
    rule: BudgetRule,
    now_ms: u64,
    stats: &'s ProcessorStats,
}

impl Journaling<'_, '_> {
    /// Writes `event` unless the allowance is spent (`always`: billing lines, written anyway).
    fn record(&mut self, budget: &mut JournalBudget, event: &Event<'_>, always: bool) {
        match budget.admit(self.rule, self.now_ms, event.approx_len(), always) {
            Admit::Write => self.writer.record(event),
            Admit::WriteAfterSummary { lines, bytes } => {
                self.summary(event.at, event.cp, lines, bytes);
                self.writer.record(event);
            }
            Admit::Suppress => self.stats.journal_lines_suppressed.inc(),
        }
    }

    fn summary(&mut self, at: SystemTime, cp: &str, lines: u32, bytes: u64) {
        self.writer.record(&Event {
            at,
            cp,
            kind: EventKind::Suppressed { lines, bytes },
        });
    }

    /// Journals a CALL from a charge point (`call`: UniqueId, action, payload) and our answer.
    /// A refused CALL keeps only the start of its payload.
    fn exchange(
        &mut self,
        budget: &mut JournalBudget,
        (at, cp): (SystemTime, &str),
        (unique_id, action, payload): (&str, &str, &str),
        answer: Answer<'_>,
        billing: bool,
    ) {
        let payload = match answer {
            Answer::Result(_) => Body::Whole(payload),
            Answer::Error { .. } => Body::Prefix(payload),
        };
        let call = EventKind::CallIn {
            unique_id,
            action,
            payload,
        };
        let reply = EventKind::AnswerOut {
            unique_id,
            action,
            answer,
        };
        self.record(budget, &Event { at, cp, kind: call }, billing);
        self.record(
            budget,
            &Event {
                at,
                cp,
                kind: reply,
            },
            billing,
        );
    }
}

/// A CALL from a charge point being handled.
struct CallIn<'a> {
    at: SystemTime,
    unique_id: &'a str,
    action: &'a str,
    /// `action`, when it is an OCPP 1.6 action.
    known: Option<Action>,
    payload: &'a RawValue,
}

/// Replaces the answer being written at `draft` with the CALLERROR `invalid`, counted.
fn answer_with_call_error(
    (stats, labelled): (&ProcessorStats, &ProcessorLabelled),
    cp: &str,
    call: &CallIn<'_>,
    invalid: &Invalid,
    replies: &mut ReplyBatch,
    draft: &Draft,
) {
    stats.call_errors_sent.inc();
    labelled.call_errors_by_code[invalid.code.index()].inc();
    debug!(
        "cp={cp} {} -> CALLERROR {}: {}",
        call.action, invalid.code, invalid.description
    );
    replies.rewind(draft);
    rpc::write_call_error(
        replies.payload(),
        call.unique_id,
        invalid.code,
        &invalid.description,
    );
}

/// The answer written at `draft` as the journal shows it: the CALLRESULT's payload (from
/// `payload_start` to the closing bracket), or the CALLERROR.
fn journaled_answer<'r>(
    replies: &'r ReplyBatch,
    draft: &Draft,
    payload_start: usize,
    error: Option<&'r Invalid>,
) -> Answer<'r> {
    match error {
        None => {
            let text = replies.draft_text(draft);
            let payload = &text[payload_start..text.len() - 1];
            Answer::Result(std::str::from_utf8(payload).unwrap_or("{}"))
        }
        Some(invalid) => Answer::Error {
            code: invalid.code,
            description: &invalid.description,
        },
    }
}

/// Journals a CALL and its answer within the charge point's allowance (what is left out is
/// counted for the API), then, for integration sinks (`integrated`: the connectors' statuses
/// before the call), what an accepted call meant, which the allowance never leaves out.
fn journal_call(
    mut journaling: Journaling<'_, '_>,
    entry: &mut ChargePoint,
    cp: &str,
    call: &CallIn<'_>,
    answer: Answer<'_>,
    (billing, integrated): (bool, Option<&[(u32, ChargePointStatus)]>),
) {
    let before = journaling.stats.journal_lines_suppressed.get();
    journaling.exchange(
        &mut entry.journal,
        (call.at, cp),
        (call.unique_id, call.action, call.payload.get()),
        answer,
        billing,
    );
    entry.seen.journal_suppressed += journaling.stats.journal_lines_suppressed.get() - before;
    if let (Some(connectors_before), Some(action), Answer::Result(answer)) =
        (integrated, call.known, answer)
    {
        journaling.writer.record(&Event {
            at: call.at,
            cp,
            kind: EventKind::Accepted {
                unique_id: call.unique_id,
                action,
                request: call.payload.get(),
                answer,
                connectors_before,
            },
        });
    }
}

/// Where handling a batch puts what it produced.
pub struct Outputs<'a> {
    /// Answers, one batch per loop (indexed by loop).
    pub replies: &'a mut [ReplyBatch],
    /// The event sink's writer, when a sink is configured.
    pub writer: Option<&'a mut (dyn EventWriter + 'static)>,
    /// Connections to close (takeovers), for the pool to post to their loops.
    pub closes: &'a mut Vec<(ConnId, CloseReason)>,
}

/// One processor's charge points.
pub struct Shard {
    index: usize,
    policy: Arc<Policy>,
    stats: Arc<Stats>,
    acks_after_write: bool,
    charge_points: HashMap<ChargePointId, ChargePoint>,
    /// Entries without a connection, and how many may stay.
    remembered: usize,
    remember_limit: usize,
    clock: WallClock,
    warnings: WarnBudget,
    origin: Instant,
    /// Each charge point's journal allowance.
    journal_rule: BudgetRule,
    /// The allowance shared by identities without an entry (refused at the upgrade).
    strangers: JournalBudget,
    /// `ocpp.state_file`: where changed charge points are offered, those changed since, and
    /// those forgotten since that the file may hold.
    state: Option<StateSender>,
    /// Billing answers waiting to be handed to the state thread with the changes they follow.
    state_held: HeldAnswers,
    dirty: Vec<ChargePointId>,
    /// Disconnected since the last offer without another change: their record (its `seen_ms`)
    /// goes to the state file only.
    touched: Vec<ChargePointId>,
    forgotten: Vec<ChargePointId>,
    /// `[cluster]`: where connects and disconnects go (the Redis registry).
    cluster: Option<ClusterSender>,
}

impl Shard {
    pub fn new(
        index: usize,
        policy: Arc<Policy>,
        stats: Arc<Stats>,
        remember_limit: usize,
        acks_after_write: bool,
    ) -> Shard {
        Shard {
            index,
            policy,
            stats,
            acks_after_write,
            charge_points: HashMap::new(),
            remembered: 0,
            remember_limit,
            clock: WallClock::default(),
            warnings: WarnBudget::new(WARNINGS_PER_SECOND),
            origin: Instant::now(),
            journal_rule: BudgetRule::UNLIMITED,
            strangers: JournalBudget::default(),
            state: None,
            state_held: HeldAnswers::default(),
            dirty: Vec::new(),
            touched: Vec::new(),
            forgotten: Vec::new(),
            cluster: None,
        }
    }

    /// Tells the cluster registry (Redis) every connect and disconnect.
    pub fn with_cluster(mut self, cluster: Option<ClusterSender>) -> Shard {
        self.cluster = cluster;
        self
    }

    /// Where `cp` is connected now, and since when.
    pub fn connection_since(&self, cp: &str) -> Option<(ConnId, SystemTime)> {
        let entry = self.charge_points.get(cp)?;
        entry.conn.map(|conn| (conn, entry.seen.since))
    }

    /// Limits each charge point's journal lines (`events.charge_point_rate` / `_burst`).
    pub fn with_journal_rule(mut self, rule: BudgetRule) -> Shard {
        self.journal_rule = rule;
        self
    }

    /// Keeps changed charge points in the state file, starting from what it held: accepted
    /// charge points come back disconnected, with their boot payload, connectors and open
    /// transaction, so one that reconnects without booting again is still Accepted.
    /// Past `ocpp.max_disconnected`, the oldest records are forgotten here and in the file.
    pub fn with_state(mut self, sender: Option<StateSender>, restored: Restored) -> Shard {
        let now = SystemTime::now();
        for (cp, saved) in restored {
            let since = match saved.seen_ms {
                0 => now, // a record of an older version
                ms => UNIX_EPOCH + std::time::Duration::from_millis(ms),
            };
            let mut connectors = saved.connectors;
            connectors.truncate(handlers::MAX_CONNECTORS);
            self.charge_points.insert(
                ChargePointId::from(cp),
                ChargePoint {
                    conn: None,
                    seq: 0,
                    state: ChargePointState {
                        registration: Registration::Accepted,
                        connectors,
                        open_transaction: saved.open_transaction,
                        ..ChargePointState::default()
                    },
                    journal: JournalBudget::default(),
                    profile: Profile::from_number(saved.profile).unwrap_or_default(),
                    listener: (Profile::Unsecured, false),
                    seen: Box::new(Seen {
                        peer: None,
                        since,
                        last_message: None,
                        boot: saved.boot,
                        journal_suppressed: 0,
                        rate_limited: 0,
                    }),
                    dirty: false,
                    saved: true,
                    held: None,
                },
            );
            self.remembered += 1;
        }
        self.state = sender;
        if self.remembered > self.remember_limit {
            self.forget_oldest(self.remembered - self.remember_limit);
        }
        self
    }

    /// Offers the state file the newest record of every charge point changed (and forgotten)
    /// since the last offer, with the billing answers that wait for them; never waits unless
    /// `last` (the processor is stopping) or answers are held (backpressure, as for a full
    /// journal). When the state thread is behind, they stay listed and are offered with the
    /// next round.
    pub fn offer_state(&mut self, last: bool) {
        if !self.keeps_state()
            || (self.dirty.is_empty()
                && self.touched.is_empty()
                && self.forgotten.is_empty()
                && self.state_held.is_empty())
        {
            return;
        }
        if let Some(sender) = &self.state {
            let mut changes: Vec<Change> =
                Vec::with_capacity(self.dirty.len() + self.touched.len() + self.forgotten.len());
            for cp in self.dirty.iter().chain(&self.touched) {
                if let Some(entry) = self.charge_points.get(cp) {
                    changes.push((Box::from(&**cp), saved_record(entry)));
                }
            }
            for cp in &self.forgotten {
                changes.push((Box::from(&**cp), None));
            }
            let held = std::mem::take(&mut self.state_held);
            let wait = last || !held.is_empty();
            let batch = StateBatch { changes, held };
            let offered = if wait {
                sender.send(batch)
            } else {
                sender.offer(batch)
            };
            if let Err(batch) = offered {
                if wait {
                    // Only a state thread that is gone refuses a waiting send: the answers it
                    // held can never be made durable, so they go out as CALLERROR now.
                    sender.refuse(batch.held, &self.stats.state.state_refused_answers);
                } else {
                    // A full channel: offered again with the next round.
                    self.state_held = batch.held;
                    self.stats.state.state_deferred.inc();
                    return;
                }
            }
        }
        // Redis gets what changed once the state file (if any) took it: a deferred round is
        // offered again and must not write Redis again each time. What this node forgets to
        // bound its memory stays in Redis.
        if let Some(cluster) = &self.cluster {
            for cp in &self.dirty {
                if let Some(entry) = self.charge_points.get(cp) {
                    cluster.send(ClusterOp::Saved {
                        cp: Box::from(&**cp),
                        record: saved_record(entry),
                    });
                }
            }
        }
        self.forgotten.clear();
        for cp in self.touched.drain(..) {
            if let Some(entry) = self.charge_points.get_mut(&cp) {
                entry.saved = true;
            }
        }
        for cp in self.dirty.drain(..) {
            if let Some(entry) = self.charge_points.get_mut(&cp) {
                entry.dirty = false;
                entry.saved = true;
            }
        }
    }

    /// Whether changes of registrations, statuses and transactions are kept anywhere (the
    /// state file, Redis).
    fn keeps_state(&self) -> bool {
        self.state.is_some() || self.cluster.is_some()
    }

    /// What Redis knows of `cp`, which connected with `session`: a record there is the newest
    /// (the node that held the charge point before wrote it) unless this node changed the charge
    /// point since its last offer. Then the held messages are handled, in order.
    pub fn loaded(
        &mut self,
        cp: &ChargePointId,
        session: u64,
        lookup: Lookup,
        out: &mut Outputs<'_>,
    ) {
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        if entry.seq != session {
            return; // an older connection's answer: the newer one waits for its own
        }
        let Some(held) = entry.held.take() else {
            return;
        };
        debug!(
            "cp={cp} Redis answered the connect: {}, {} message(s) held",
            match &lookup {
                Lookup::Found(_) => "accepted on some node before",
                Lookup::Absent => "unknown",
                Lookup::Unavailable => "unavailable",
            },
            held.len()
        );
        if let Lookup::Found(saved) = &lookup
            && let Some(remembered) = Profile::from_number(saved.profile)
            && remembered > entry.profile
        {
            entry.profile = remembered;
            let (listener, pinned) = entry.listener;
            if !pinned && listener < remembered {
                // Authenticated at a higher profile on some node before: not served here (its
                // held messages go unanswered with it).
                let refused = entry.conn.zip(entry.seen.peer);
                if let Some((conn, peer)) = refused {
                    self.refuse_below_profile(cp, conn, peer, (listener, remembered), out);
                }
                return;
            }
        }
        if let Lookup::Found(saved) = lookup
            && !entry.dirty
        {
            let mut connectors = saved.connectors;
            connectors.truncate(handlers::MAX_CONNECTORS);
            entry.state.registration = Registration::Accepted;
            entry.state.connectors = connectors;
            entry.state.open_transaction = saved.open_transaction;
            entry.seen.boot = saved.boot;
            entry.saved = true;
        }
        for (conn, text) in held.into_iter() {
            self.message(conn, cp, &text, out);
        }
    }
    fn stats(&self) -> &ProcessorStats {
        &self.stats.processors[self.index]
    }

    fn labelled(&self) -> &ProcessorLabelled {
        &self.stats.processor_labelled[self.index]
    }

    /// Handles every entry of `batch`, in order.
    pub fn handle_batch(&mut self, batch: &FrameBatch, out: &mut Outputs<'_>) {
        for entry in batch.entries() {
            match entry {
                Entry::Connected {
                    conn,
                    cp,
                    seq,
                    peer,
                    auth,
                    profile,
                    pinned,
                } => self.connected(*conn, cp, (*seq, *auth, (*profile, *pinned)), *peer, out),
                Entry::Message {
                    conn,
                    cp,
                    text,
                    received,
                } => {
                    self.message(*conn, cp, batch.text(text), out);
                    self.labelled().processing.observe(received.elapsed());
                }
                Entry::Disconnected { conn, cp, cause } => {
                    self.disconnected(*conn, cp, *cause, out)
                }
                Entry::Answered {
                    conn,
                    cp,
                    call,
                    answer,
                    at,
                    took,
                } => {
                    self.labelled().processing.observe(*took);
                    let writer = out.writer.as_deref_mut();
                    self.answered(*conn, cp, batch.text(call), batch.text(answer), *at, writer);
                }
                Entry::Throttled { conn, cp } => {
                    if let Some(entry) = self.charge_points.get_mut(cp)
                        && entry.conn == Some(*conn)
                    {
                        entry.seen.rate_limited += 1;
                    }
                }
                Entry::Stashed { cp, at, event } => {
                    if let Some(writer) = out.writer.as_deref_mut() {
                        // The charge point's allowance for its own lines. Refusals at the
                        // upgrade were already limited per source address by the loop; what
                        // gets here shares one allowance, never the identity's they name (or
                        // anyone who knows an identity could silence it).
                        let budget = match self.charge_points.get_mut(cp) {
                            Some(entry) if !matches!(event, Stashed::Refused { .. }) => {
                                &mut entry.journal
                            }
                            _ => &mut self.strangers,
                        };
                        let mut journaling = Journaling {
                            writer,
                            rule: self.journal_rule,
                            now_ms: self.origin.elapsed().as_millis() as u64,
                            stats: &self.stats.processors[self.index],
                        };
                        journaling.record(budget, &events::unstash(batch, cp, *at, event), false);
                    }
                }
            }
        }
    }

    /// Lists a removed charge point for removal from the state file, if it may be there.
    fn forget(&mut self, cp: &ChargePointId, gone: &ChargePoint) {
        if self.keeps_state() && (gone.saved || gone.dirty) {
            self.forgotten.push(ChargePointId::clone(cp));
            self.dirty.retain(|d| d != cp);
            self.touched.retain(|d| d != cp);
        }
    }

    /// Where `cp` is connected now, if it is.
    pub fn connection_of(&self, cp: &str) -> Option<ConnId> {
        self.charge_points.get(cp).and_then(|entry| entry.conn)
    }

    /// Closes `conn` of `cp` (1008), which connected on a `listener` profile below the one it
    /// authenticated at before (`remembered`): counted, journaled, logged within the budget.
    fn refuse_below_profile(
        &mut self,
        cp: &ChargePointId,
        conn: ConnId,
        peer: SocketAddr,
        (listener, remembered): (Profile, Profile),
        out: &mut Outputs<'_>,
    ) {
        self.stats().profile_refusals.inc();
        let now_ms = self.origin.elapsed().as_millis() as u64;
        if self.warnings.allow(now_ms) {
            warn!(
                "cp={cp} connection from {peer} on a profile {} listener closed: it authenticated at profile {} before",
                listener.number(),
                remembered.number()
            );
        }
        if let Some(writer) = out.writer.as_deref_mut() {
            // Within the allowance refusals share (a client reconnecting in a loop must not
            // fill the disk, nor spend the identity's own allowance).
            let mut journaling = Journaling {
                writer,
                rule: self.journal_rule,
                now_ms,
                stats: &self.stats.processors[self.index],
            };
            let refused = Event {
                at: SystemTime::now(),
                cp,
                kind: EventKind::Refused {
                    peer,
                    status: 1008,
                    reason: "profile_too_low",
                },
            };
            journaling.record(&mut self.strangers, &refused, false);
        }
        out.closes.push((conn, CloseReason::ProfileTooLow));
    }

    /// A connection of `cp` (`seq` orders it, `auth` says how it proved the identity, `listener`
    /// is its listener's profile and whether the identity's credentials pin its floor).
    fn connected(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        (seq, auth, listener): (u64, Auth, (Profile, bool)),
        peer: SocketAddr,
        out: &mut Outputs<'_>,
    ) {
        let now = SystemTime::now();
        let (profile, pinned) = listener;
        let keeps_state = self.keeps_state();
        let loser = match self.charge_points.get_mut(cp) {
            // A connection older than the one we hold arrived late: it loses.
            Some(held) if held.seq > seq => Some(conn),
            // Never served below the profile it authenticated at (the whitepaper forbids going
            // down a profile), unless its credentials line says so.
            Some(held) if !pinned && profile < held.profile => {
                let remembered = held.profile;
                self.refuse_below_profile(cp, conn, peer, (profile, remembered), out);
                return;
            }
            // Never taken over by a connection that did not authenticate.
            Some(held)
                if held.conn.is_some() && held.state.auth != Auth::None && auth == Auth::None =>
            {
                self.stats().takeovers_refused.inc();
                warn!(
                    "cp={cp} unauthenticated connection from {peer} refused: the identity is held by an authenticated one"
                );
                out.closes.push((conn, CloseReason::IdentityInUse));
                return;
            }
            Some(held) => {
                let old = held.conn.replace(conn);
                held.held = None; // the old connection's messages: nobody left to answer
                held.seq = seq;
                held.state.auth = auth;
                held.listener = listener;
                if auth != Auth::None && profile > held.profile {
                    held.profile = profile;
                    if keeps_state
                        && held.state.registration == Registration::Accepted
                        && !held.dirty
                    {
                        held.dirty = true;
                        self.dirty.push(ChargePointId::clone(cp));
                    }
                }
                held.seen.peer = Some(peer);
                held.seen.since = now;
                if old.is_none() {
                    self.remembered -= 1;
                }
                old.filter(|old| *old != conn)
            }
            None => {
                self.charge_points.insert(
                    ChargePointId::clone(cp),
                    ChargePoint {
                        conn: Some(conn),
                        seq,
                        state: ChargePointState {
                            auth,
                            ..ChargePointState::default()
                        },
                        journal: JournalBudget::default(),
                        profile: if auth == Auth::None {
                            Profile::Unsecured
                        } else {
                            profile
                        },
                        listener,
                        seen: Box::new(Seen {
                            peer: Some(peer),
                            since: now,
                            last_message: None,
                            boot: None,
                            journal_suppressed: 0,
                            rate_limited: 0,
                        }),
                        dirty: false,
                        saved: false,
                        held: None,
                    },
                );
                None
            }
        };
        // Journaled in the order a reader needs: the old connection ends, the new one starts.
        // A late connection that loses at once was never journaled as connected.
        if let Some(writer) = out.writer.as_deref_mut() {
            if loser.is_some_and(|l| l != conn) {
                writer.record(&Event {
                    at: now,
                    cp,
                    kind: EventKind::Disconnected {
                        cause: CloseCause::Takeover,
                    },
                });
            }
            if loser != Some(conn) {
                let boot = self
                    .charge_points
                    .get(cp)
                    .and_then(|e| e.seen.boot.as_deref());
                writer.record(&Event {
                    at: now,
                    cp,
                    kind: EventKind::Connected {
                        peer,
                        loop_index: conn.loop_index,
                        boot: boot.map(RawValue::get),
                    },
                });
            }
        }
        if loser != Some(conn)
            && let Some(cluster) = &self.cluster
        {
            let asked = cluster.send(ClusterOp::Connected {
                cp: ChargePointId::clone(cp),
                session: seq,
                at_ms: epoch_ms(now),
            });
            // Until Redis says what it knows (another node may have accepted it), the
            // connection's messages wait; when it cannot be asked, they go on at once.
            if asked && let Some(entry) = self.charge_points.get_mut(cp) {
                entry.held = Some(Box::default());
            }
        }
        if let Some(loser) = loser {
            info!(
                "cp={cp} loop={} replaced by a newer connection",
                loser.loop_index
            );
            out.closes.push((loser, CloseReason::Takeover));
        }
    }

    fn disconnected(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        cause: CloseCause,
        out: &mut Outputs<'_>,
    ) {
        let now = SystemTime::now();
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        if entry.conn != Some(conn) {
            return; // an older connection, already replaced (and journaled as such)
        }
        entry.held = None; // messages of a closed connection: nobody to answer

        if let Some(cluster) = &self.cluster {
            cluster.send(ClusterOp::Disconnected {
                cp: ChargePointId::clone(cp),
                at_ms: epoch_ms(entry.seen.since),
            });
        }
        entry.seen.since = now;
        if let Some(writer) = out.writer.as_deref_mut() {
            if let Some((lines, bytes)) = entry.journal.take_summary() {
                writer.record(&Event {
                    at: now,
                    cp,
                    kind: EventKind::Suppressed { lines, bytes },
                });
            }
            writer.record(&Event {
                at: now,
                cp,
                kind: EventKind::Disconnected { cause },
            });
        }
        if entry.state.registration != Registration::Accepted {
            if let Some(gone) = self.charge_points.remove(cp) {
                self.forget(cp, &gone);
            }
            return;
        }
        entry.conn = None;
        // When it was last seen is part of its record in the state file (the oldest are
        // forgotten first, also across a restart); Redis, which keeps the fleet, is not
        // written for it.
        if self.state.is_some() && !entry.dirty {
            self.touched.push(ChargePointId::clone(cp));
        }
        self.remembered += 1;
        if self.remembered > self.remember_limit {
            // Forget the oldest eighth of the disconnected charge points (they boot again), so
            // the cost stays O(1) per disconnect on average and no one can wipe the whole
            // memory of a processor in one go.
            let forget = (self.remember_limit / 8).max(1);
            let now_ms = self.origin.elapsed().as_millis() as u64;
            if self.warnings.allow(now_ms) {
                warn!(
                    "processor={} remembers {} disconnected charge points (ocpp.max_disconnected: {} here): forgetting the {forget} seen longest ago",
                    self.index, self.remembered, self.remember_limit
                );
            }
            self.forget_oldest(forget);
        }
    }

    /// Forgets the `count` disconnected charge points seen longest ago (in memory, the state
    /// file and, in cluster mode, nowhere else: Redis keeps the fleet). Never one that
    /// authenticated at a profile above 0 (its floor must not be erased by someone booting
    /// made-up identities; only real credentials make such entries, so they are bounded by
    /// the fleet), and those with an open transaction only after all others.
    fn forget_oldest(&mut self, count: usize) {
        let mut oldest: Vec<((bool, SystemTime), ChargePointId)> = self
            .charge_points
            .iter()
            .filter(|(_, e)| e.conn.is_none() && e.profile == Profile::Unsecured)
            .map(|(cp, e)| {
                let key = (e.state.open_transaction.is_some(), e.seen.since);
                (key, ChargePointId::clone(cp))
            })
            .collect();
        let count = count.min(oldest.len());
        if count == 0 {
            return;
        }
        if count < oldest.len() {
            oldest.select_nth_unstable_by_key(count - 1, |(key, _)| *key);
            oldest.truncate(count);
        }
        let keep_state = self.state.is_some();
        for (_, cp) in oldest {
            if let Some(entry) = self.charge_points.remove(&cp)
                && keep_state
                && (entry.saved || entry.dirty)
            {
                self.forgotten.push(cp);
            }
        }
        self.stats.processors[self.index]
            .registrations_forgotten
            .add(count as u64);
        self.dirty.retain(|cp| self.charge_points.contains_key(cp));
        self.touched
            .retain(|cp| self.charge_points.contains_key(cp));
        self.remembered = self
            .charge_points
            .values()
            .filter(|e| e.conn.is_none())
            .count();
    }

    /// One text message of a connection: answered into its loop's reply batch.
    fn message(&mut self, conn: ConnId, cp: &ChargePointId, text: &str, out: &mut Outputs<'_>) {
        let Some(replies) = out.replies.get_mut(usize::from(conn.loop_index)) else {
            return;
        };
        let keeps_state = self.keeps_state();
        let Some(entry) = self
            .charge_points
            .get_mut(cp)
            .filter(|e| e.conn == Some(conn))
        else {
            debug!("cp={cp} dropping a message of a replaced connection");
            return replies.none(conn, false);
        };
        if let Some(held) = &mut entry.held {
            held.push((conn, Box::from(text)));
            return;
        }
        let accepted = entry.state.registration == Registration::Accepted;
        let (unique_id, action, payload) = match rpc::parse_frame(text) {
            Ok(Frame::Call {
                unique_id,
                action,
                payload,
            }) => (unique_id, action, payload),
            // Answers to our CALLs are matched by the loop that sent them.
            Ok(Frame::CallResult { .. } | Frame::CallError { .. }) => {
                return replies.none(conn, accepted);
            }
            Err(error) => return self.unusable(conn, cp, error, replies, accepted),
        };
        let at = SystemTime::now();
        let now = Now {
            time: at,
            text: self.clock.text(at),
        };
        let known = Action::from_name(&action); // once per message: counters and handler
        let call = CallIn {
            at,
            unique_id: &unique_id,
            action: &action,
            known,
            payload,
        };
        let stats = &self.stats;
        stats.processors[self.index].calls_handled.inc();
        stats.processor_labelled[self.index].calls_by_action[action_slot(known)].inc();
        entry.seen.last_message = Some(at);

        // What the message means goes to sinks that make integration events (Kafka) only;
        // a StatusNotification's event names the connector's status before it.
        let integrates = out.writer.as_deref().is_some_and(|w| w.integrates())
            && known.is_some_and(events::is_integrated);
        let connectors_before = match known {
            Some(Action::StatusNotification) if integrates => entry.state.connectors.clone(),
            _ => Vec::new(),
        };
        let draft = replies.begin();
        rpc::write_call_result_head(replies.payload(), &unique_id);
        let payload_start = replies.draft_text(&draft).len();
        let answered = handlers::write_answer(
            &self.policy,
            cp,
            &mut entry.state,
            &action,
            known,
            payload,
            now,
            replies.payload(),
        );
        let error = match answered {
            Ok(()) => {
                replies.payload().push(rpc::CALL_RESULT_END);
                if known == Some(Action::BootNotification) {
                    entry.seen.boot = compact(payload);
                }
                if keeps_state && known.is_some_and(changes_state) && !entry.dirty {
                    entry.dirty = true;
                    self.dirty.push(ChargePointId::clone(cp));
                }
                None
            }
            Err(invalid) => {
                let stats = (
                    &*stats.processors[self.index],
                    &*stats.processor_labelled[self.index],
                );
                answer_with_call_error(stats, cp, &call, &invalid, replies, &draft);
                Some(invalid)
            }
        };
        let accepted = entry.state.registration == Registration::Accepted;
        if let Some(reason) = entry.state.close_after_answer.take() {
            if reason == CloseReason::SerialMismatch {
                stats.processors[self.index].serial_mismatches.inc();
                warn!(
                    "cp={cp} BootNotification serial number is not the certificate's CN: Rejected, closing"
                );
            }
            out.closes.push((conn, reason));
        }
        let billing = known.is_some_and(is_billing) && error.is_none();
        // Billing answers wait until every place that keeps them has them (the sinks, the
        // state file) when asked to; errors never need to.
        let holds_state = billing && self.state.as_ref().is_some_and(StateSender::holds);
        let Some(writer) = out.writer.as_deref_mut() else {
            if holds_state && let Some(state) = &self.state {
                let sealed = replies.seal(draft);
                state.hold(&mut self.state_held, conn, replies.sealed(&sealed));
                return replies.discard(sealed);
            }
            return replies.finish(draft, conn, accepted);
        };
        let answer = journaled_answer(replies, &draft, payload_start, error.as_ref());
        let journaling = Journaling {
            writer: &mut *writer,
            rule: self.journal_rule,
            now_ms: self.origin.elapsed().as_millis() as u64,
            stats: &self.stats.processors[self.index],
        };
        // What the message means, for integration sinks: never left out by the allowance.
        let integrated = integrates.then_some(connectors_before.as_slice());
        journal_call(journaling, entry, cp, &call, answer, (billing, integrated));
        let held = self.acks_after_write && billing;
        let sealed = replies.seal(draft);
        if held || holds_state {
            if held {
                writer.hold(conn, replies.sealed(&sealed));
            }
            if holds_state && let Some(state) = &self.state {
                state.hold(&mut self.state_held, conn, replies.sealed(&sealed));
            }
            replies.discard(sealed);
        } else {
            replies.commit(sealed, conn, accepted);
        }
    }

    /// A message that is not a CALL nor an answer to ours: a CALLERROR when it can be
    /// answered, nothing otherwise; counted, and logged within the warning budget.
    fn unusable(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        error: FrameError,
        replies: &mut ReplyBatch,
        accepted: bool,
    ) {
        match error {
            FrameError::Answer {
                unique_id,
                code,
                description,
            } => {
                self.stats().malformed_calls.inc();
                self.labelled().call_errors_by_code[code.index()].inc();
                let draft = replies.begin();
                rpc::write_call_error(replies.payload(), &unique_id, code, &description);
                replies.finish(draft, conn, accepted);
            }
            FrameError::Unanswerable { reason } => {
                self.stats().unanswerable_frames.inc();
                let now_ms = self.origin.elapsed().as_millis() as u64;
                if self.warnings.allow(now_ms) {
                    warn!(
                        "cp={cp} processor={} unanswerable message: {reason}",
                        self.index
                    );
                }
                replies.none(conn, accepted);
            }
            FrameError::UnknownMessageType { message_type } => {
                self.stats().ignored_frames.inc();
                debug!("cp={cp} ignored message type {message_type}");
                replies.none(conn, accepted);
            }
        }
    }

    /// A Heartbeat the loop answered itself (see `net::session`): counted and journaled here,
    /// in order with everything else of the charge point, exactly as if answered here.
    fn answered(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        call: &str,
        answer: &str,
        at: SystemTime,
        writer: Option<&mut (dyn EventWriter + 'static)>,
    ) {
        let Some(entry) = self
            .charge_points
            .get_mut(cp)
            .filter(|e| e.conn == Some(conn))
        else {
            return; // a replaced connection: its messages are not journaled
        };
        let Ok(Frame::Call {
            unique_id,
            action,
            payload,
        }) = rpc::parse_frame(call)
        else {
            return;
        };
        self.stats.processors[self.index].calls_handled.inc();
        self.stats.processor_labelled[self.index].calls_by_action
            [action_slot(Some(Action::Heartbeat))]
        .inc();
        entry.seen.last_message = Some(at);
        if let Some(writer) = writer {
            let mut journaling = Journaling {
                writer,
                rule: self.journal_rule,
                now_ms: self.origin.elapsed().as_millis() as u64,
                stats: &self.stats.processors[self.index],
            };
            let call = (&*unique_id, &*action, payload.get());
            journaling.exchange(
                &mut entry.journal,
                (at, cp),
                call,
                Answer::Result(answer),
                false,
            );
        }
    }

    /// The charge points matching `filter` with an identity after `after`, at most `limit`,
    /// in identity order.
    pub fn list(
        &self,
        filter: Filter,
        after: Option<&str>,
        limit: usize,
        traced: &dyn Fn(&str) -> bool,
    ) -> Vec<ChargePointView> {
        let mut ids: Vec<&ChargePointId> = self
            .charge_points
            .iter()
            .filter(|(id, entry)| {
                let wanted = match filter {
                    Filter::All => true,
                    Filter::Connected => entry.conn.is_some(),
                    Filter::Disconnected => entry.conn.is_none(),
                };
                wanted && after.is_none_or(|after| &***id > after)
            })
            .map(|(id, _)| id)
            .collect();
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids.iter()
            .filter_map(|id| self.view(id, traced(id)))
            .collect()
    }

    /// One charge point as the operator API shows it.
    pub fn view(&self, cp: &str, traced: bool) -> Option<ChargePointView> {
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
            authenticated_by: entry.state.auth.as_str(),
            authenticated_profile: entry.profile.number(),
            journal_lines_suppressed: entry.seen.journal_suppressed,
            rate_limited: entry.seen.rate_limited,
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
            trace: traced,
        })
    }
}

#[cfg(test)]
mod tests;
