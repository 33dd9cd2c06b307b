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

mod journaling;
mod messages;
mod registry;
mod renewal;
mod state;
mod views;

use journaling::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::{NonZeroI32, NonZeroU64};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use serde_json::value::RawValue;

use crate::batch::{Draft, Entry, FrameBatch, ReplyBatch, Stashed};
use crate::clock::WallClock;
use crate::clock::{epoch_ms, epoch_us};
use crate::events::{self, Answer, Body, Event, EventKind, EventWriter, HeldAnswers, is_billing};
use crate::mailbox::{ClusterSender, Lookup, Op as ClusterOp};
use crate::processor::handlers::{self, ChargePointState, FollowUp, Now, Policy, Registration};
use crate::processor::handlers_v201::{self, Effect};
use crate::processor::journal_budget::{Admit, BudgetRule, JournalBudget};
use crate::query::{CertificateView, ChargePointView, ConnectorView, Filter, OpenTransactionView};
use crate::security::{Auth, Profile};
use crate::state::{Change, Restored, Saved, StateBatch, StateSender};
use crate::stats::{ProcessorLabelled, ProcessorStats, Stats, action_slot};
use crate::types::{ChargePointId, CloseCause, CloseReason, ConnId, Version};
use basics::WarnBudget;
use ocpp::AnyAction;
use ocpp::rpc::{self, Frame, FrameError};
use ocpp::v16::{Action, ChargePointStatus, Invalid};
use ocpp::v201;
use transport::tls::CertificateFacts;

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

/// A time kept as ms since the epoch, as a time again.
fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// What the operator API shows about a charge point beyond its protocol state.
#[derive(Debug)]
struct Seen {
    /// Where the live (or last) connection came from.
    peer: Option<SocketAddr>,
    /// When it connected (or, with no connection, disconnected), in µs since the epoch (not
    /// a `SystemTime`: 8 bytes less keeps this box in the allocator's 80-byte class; not ms:
    /// charge points that leave one after the other stay in order when the oldest are
    /// forgotten).
    since_us: u64,
    /// When its last message came, in ms since the epoch (None: none yet).
    last_message_ms: Option<NonZeroU64>,
    /// The payload of its last accepted or pending BootNotification.
    boot: Option<Box<RawValue>>,
    /// Journal lines left out over its allowance since it connected.
    journal_suppressed: u32,
    /// Times its connection was paused for going over `ocpp.max_calls_per_second`.
    rate_limited: u32,
    /// The client certificate of its live (or last) connection, when it showed one to us
    /// (boxed with its renewal flag: this box stays in the allocator's 96-byte class).
    certificate: Option<Box<Shown>>,
}

impl Seen {
    /// `lines` more were left out over its journal allowance (the count stops at its top).
    fn suppressed(&mut self, lines: u64) {
        let lines = u32::try_from(lines).unwrap_or(u32::MAX);
        self.journal_suppressed = self.journal_suppressed.saturating_add(lines);
    }
}

/// A client certificate a charge point showed, and whether its renewal was asked for
/// (`security.renewals_per_scan`).
#[derive(Debug)]
struct Shown {
    facts: CertificateFacts,
    renewal_asked: bool,
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
        connectors: entry.state.connectors.to_vec(),
        open_transaction: entry.state.open_transaction.map(NonZeroI32::get),
        version: entry.state.version,
        v201: entry.state.v201.clone(),
        seen_ms: entry.seen.since_us / 1000,
    })
}

/// Where handling a batch puts what it produced.
pub struct Outputs<'a> {
    /// Answers, one batch per loop (indexed by loop).
    pub replies: &'a mut [ReplyBatch],
    /// The event sink's writer, when a sink is configured.
    pub writer: Option<&'a mut (dyn EventWriter + 'static)>,
    /// Connections to close (takeovers), for the pool to post to their loops.
    pub closes: &'a mut Vec<(ConnId, CloseReason)>,
    /// Calls of ours to follow the answers (CertificateSigned), posted after them.
    pub calls: &'a mut Vec<(ConnId, ChargePointId, Box<FollowUp>)>,
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
    /// The log was told that the CA ends within the renewal window.
    ca_ending_told: bool,
    /// A renewal waited for half a certificate's life (logged once).
    short_lived_told: bool,
    /// Per 2.x station, its TransactionEvent answers held and perhaps not settled yet: while one
    /// is, a resend of its event is kept again (its first copy may still be refused).
    owed_events: OwedEvents,
}

/// Held TransactionEvent answers per station, weakly (the holders own them). Entries whose
/// answers are all settled are swept when the map has doubled since the last sweep.
#[derive(Default)]
struct OwedEvents {
    by_station: HashMap<ChargePointId, Vec<std::sync::Weak<events::Held>>>,
    swept_at: usize,
}

impl OwedEvents {
    fn owed(answer: &std::sync::Weak<events::Held>) -> bool {
        answer.upgrade().is_some_and(|held| held.is_owed())
    }

    /// Whether an answer to one of `cp`'s TransactionEvents may still be refused.
    fn any(&self, cp: &str) -> bool {
        self.by_station
            .get(cp)
            .is_some_and(|answers| answers.iter().any(Self::owed))
    }

    fn push(&mut self, cp: &ChargePointId, answer: &events::HeldAnswer) {
        let answers = self.by_station.entry(ChargePointId::clone(cp)).or_default();
        answers.retain(Self::owed);
        answers.push(Arc::downgrade(answer));
        if self.by_station.len() > 2 * self.swept_at.max(1024) {
            self.by_station.retain(|_, answers| {
                answers.retain(Self::owed);
                !answers.is_empty()
            });
            self.swept_at = self.by_station.len();
        }
    }
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
            ca_ending_told: false,
            short_lived_told: false,
            owed_events: OwedEvents::default(),
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
        entry
            .conn
            .map(|conn| (conn, at_ms(entry.seen.since_us / 1000)))
    }

    /// Limits each charge point's journal lines (`events.charge_point_rate` / `_burst`).
    pub fn with_journal_rule(mut self, rule: BudgetRule) -> Shard {
        self.journal_rule = rule;
        self
    }

    pub(super) fn stats(&self) -> &ProcessorStats {
        &self.stats.processors[self.index]
    }

    pub(super) fn labelled(&self) -> &ProcessorLabelled {
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
                    version,
                    certificate,
                } => {
                    let how = (*seq, *auth, (*profile, *pinned), *version);
                    self.connected(*conn, cp, how, (*peer, certificate.as_deref()), out)
                }
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
                        entry.seen.rate_limited = entry.seen.rate_limited.saturating_add(1);
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

    /// Where `cp` is connected now, if it is.
    pub fn connection_of(&self, cp: &str) -> Option<ConnId> {
        self.charge_points.get(cp).and_then(|entry| entry.conn)
    }

    /// The OCPP version `cp` speaks (or last spoke).
    pub fn version_of(&self, cp: &str) -> Option<Version> {
        self.charge_points.get(cp).map(|entry| entry.state.version)
    }
}

#[cfg(test)]
mod tests;
