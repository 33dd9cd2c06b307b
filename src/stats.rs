//! Counters the threads bump and anyone may read. Each event loop and each processor owns a
//! cache-padded block of relaxed atomics, so a counter bumped per message never bounces a cache
//! line between cores; a reader sums the blocks into a [`StatsSnapshot`]. The one shared gauge is
//! the global connection count, which `server.max_connections` is checked against at accept.
//! `/metrics` and `/health` render snapshots; nothing here formats anything.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::types::CloseCause;
use ocpp::rpc::CallErrorCode;
use ocpp::v16::Action;

/// Per-action counters: one slot per OCPP 1.6 action, and a last one for names 1.6 lacks.
pub const ACTION_SLOTS: usize = Action::ALL.len() + 1;
/// Per-action counters of OCPP 2.0.1: its actions and one slot for unknown names.
pub const V201_ACTION_SLOTS: usize = ocpp::v201::Action::ALL.len() + 1;
/// Per-code counters of CallErrors.
pub const CODE_SLOTS: usize = CallErrorCode::ALL.len();

/// Upper bounds (seconds) of the processing-latency histogram: from a loop reading a CALL to
/// its answer being handed back (queueing included).
pub const PROCESSING_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
/// Upper bounds (seconds) of the outbound-call round-trip histogram.
pub const ROUND_TRIP_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bytes one loop's connections hold, published by the loop once per turn.
#[derive(Debug, Default)]
pub struct BufferGauges {
    pub read: AtomicUsize,
    pub write: AtomicUsize,
}

/// A fixed-bucket histogram of durations, lock-free, for one thread to fill.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound plus +Inf (not cumulative).
    buckets: Box<[Counter]>,
    sum_nanos: Counter,
}

/// A histogram summed over threads: cumulative-ready counts per bound.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// One count per bound plus +Inf (not cumulative).
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| Counter::default()).collect(),
            sum_nanos: Counter::default(),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[slot].inc();
        self.sum_nanos
            .add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    fn add_to(&self, out: &mut HistogramSnapshot) {
        if out.buckets.len() != self.buckets.len() {
            out.bounds = self.bounds;
            out.buckets = vec![0; self.buckets.len()];
        }
        for (o, b) in out.buckets.iter_mut().zip(self.buckets.iter()) {
            *o += b.get();
        }
        out.sum_seconds += self.sum_nanos.get() as f64 / 1e9;
    }
}

fn counter_array<const N: usize>() -> [Counter; N] {
    std::array::from_fn(|_| Counter::default())
}

fn add_array<const N: usize>(out: &mut Vec<u64>, counters: &[Counter; N]) {
    out.resize(N, 0);
    for (o, c) in out.iter_mut().zip(counters) {
        *o += c.get();
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// For the few gauges a thread recounts (each block has one writer).
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

macro_rules! counters {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: Counter,)*
        }

        impl $name {
            fn add_to(&self, out: &mut StatsSnapshot) {
                $(out.$field += self.$field.get();)*
            }
        }
    };
}

counters! {
    /// What one event loop counts.
    LoopStats {
        /// TCP connections accepted.
        accepted,
        /// Accept errors other than WouldBlock (EMFILE and friends).
        accept_errors,
        /// Handshakes completed with a version selected ...
        handshakes_ok,
        /// ... `ocpp1.6` ...
        handshakes_v16,
        /// ... `ocpp2.0.1` ...
        handshakes_v201,
        /// ... `ocpp2.1`.
        handshakes_v21,
        /// Handshakes answered with an HTTP error (400, 404, 503) or completed without a
        /// version the listener speaks and closed at once.
        handshakes_rejected,
        /// Answered HTTP 503 because `server.max_connections` was reached.
        over_capacity,
        /// Handshakes that did not finish within `websocket.handshake_timeout`.
        handshake_timeouts,
        /// Connections closed before their upgrade because those not upgraded yet held all
        /// they may (a quarter of `websocket.partial_message_budget`): the oldest holders,
        /// closed to make room for one that must read more.
        upgrades_over_budget,
        /// WebSocket pings sent because a connection was idle.
        pings_sent,
        /// Pings not sent because the write buffer was over `websocket.ping_skip_threshold`.
        pings_skipped,
        /// Connections closed because no pong (or anything else) came back in time.
        pong_timeouts,
        /// Connections closed because their write buffer was full (the peer does not read).
        slow_consumers,
        /// Text messages received from charge points.
        messages_in,
        /// Text messages queued to charge points.
        messages_out,
        /// Heartbeats of accepted charge points the loop answered itself (the exchange is
        /// still counted and journaled by the processor).
        heartbeats_answered,
        /// Answers to our CALLs that could not be read (malformed CALLRESULT / CALLERROR).
        unanswerable_frames,
        /// Closed for sending binary frames (1003).
        binary_frames,
        /// Closed for oversize messages (1009).
        oversize_messages,
        /// Closed for invalid UTF-8 (1007) or other WebSocket protocol errors (1002).
        protocol_errors,
        /// Times a connection stopped reading because its processor queue was full.
        backpressure_pauses,
        /// Times a connection stopped reading because `ocpp.max_pipelined_calls` of its CALLs
        /// waited for answers.
        pipelining_pauses,
        /// Times a connection stopped reading because the loop's partial-message budget was
        /// spent.
        budget_pauses,
        /// Times a connection stopped reading because its charge point went over
        /// `ocpp.max_calls_per_second`.
        rate_limited,
        /// Connections closed because the same identity connected again.
        takeovers,
        /// Connections closed, for any reason.
        closed,
        /// CALLs of ours sent to charge points.
        calls_sent,
        /// Our CALLs answered with a valid CALLRESULT.
        call_results,
        /// Our CALLs answered with CALLERROR.
        call_errors_received,
        /// Our CALLs answered with a CALLRESULT that is not what the action returns.
        invalid_results,
        /// Our CALLs that got no answer within `ocpp.message_timeout`.
        call_timeouts,
        /// Our CALLs refused because too many already waited for the charge point.
        calls_rejected,
        /// CALLRESULT / CALLERROR frames from charge points that match no CALL of ours
        /// (never sent, or already timed out): logged and dropped.
        unexpected_responses,
        /// WebSocket pongs received.
        pongs_received,
        /// Journal events a loop had to put in the side queue because the journal was full.
        journal_overflow,
        /// Turns of an upgrading connection put off to the loop's next iteration
        /// (`server.handshakes_per_turn` spent).
        handshakes_deferred,
        /// TLS handshakes completed (profiles 2 and 3).
        tls_handshakes,
        /// Of those, resumed from a session ticket (no certificate signature, no key exchange
        /// on the server's side for TLS 1.2; a PSK with (EC)DHE for TLS 1.3).
        tls_resumptions,
        /// TLS connections that failed: bad handshakes (plaintext on a TLS port, no or a
        /// refused client certificate), bad records.
        tls_failures,
        /// Connections closed for a missing or malformed PROXY protocol header.
        proxy_header_errors,
        /// Connections to a PROXY listener closed unread: not from `server.trusted_proxies`.
        proxy_untrusted,
        /// Upgrades refused on a `tls_offload` listener: the balancer's SSL TLV did not say the
        /// client used TLS, or (profile 3) that its certificate was verified.
        tls_offload_refusals,
        /// Upgrades refused with 401: Basic auth missing, malformed, or wrong (profiles 1, 2).
        auth_failures,
        /// Upgrades refused with 403: the client certificate's CN is not the identity (profile 3).
        certificate_mismatches,
        /// Client certificates refused as revoked (`security.client_crl`): in the TLS handshake,
        /// or at the upgrade for a session resumed from an earlier ticket.
        certificates_revoked,
        /// Times an address was locked out for too many failed authentications.
        auth_lockouts,
        /// Upgrades refused with 429 because their address was locked out.
        locked_out_refusals,
        /// Refusals over their address's journal allowance: counted, not journaled.
        refusals_unjournaled,
        /// Upgrades refused (403) or connections closed (1008) because the listener's profile is
        /// below what the identity must use (loops and processors both count here).
        profile_refusals,
    }
}

counters! {
    /// What one processor thread counts.
    ProcessorStats {
        /// CALLs handled.
        calls_handled,
        /// CALLERRORs answered for malformed CALLs.
        malformed_calls,
        /// Messages that could not be answered (not OCPP-J, no readable UniqueId).
        unanswerable_frames,
        /// Messages with an unknown MessageTypeNumber, ignored as the spec says.
        ignored_frames,
        /// CALLERRORs sent by a processor (validation, NotImplemented, ...).
        call_errors_sent,
        /// Times a processor waited because the journal's queue was full (backpressure).
        journal_backpressure,
        /// Journal lines left out because their charge point spent its journal allowance.
        journal_lines_suppressed,
        /// Disconnected charge points forgotten (past `ocpp.max_disconnected`, the ones seen
        /// longest ago): they boot again.
        registrations_forgotten,
        /// BootNotifications answered Rejected, and their connections closed, because the
        /// serial number is not the client certificate's CN (`security.check_serial_number`).
        serial_mismatches,
        /// Connections closed at once because they did not authenticate and an authenticated
        /// connection holds the identity (it is never taken over by them).
        takeovers_refused,
        /// Connections closed (1008) because the identity authenticated at a higher profile
        /// before (the loop could not know).
        profile_refusals,
        /// 2.0.1 TransactionEvents sent again after they were answered (recognised by their
        /// transaction and seqNo): answered, not journaled or published twice.
        transaction_events_resent,
        /// 2.0.1 TransactionEvents whose seqNo skipped some of their transaction's (journaled).
        transaction_seq_gaps,
        /// OCPP 2.1 SENDs (NotifyPeriodicEventStream) received valid and journaled.
        sends_received,
        /// OCPP 2.1 CALLRESULTERRORs received: a station could not process one of our answers.
        call_result_errors_received,
        /// Gauge, recounted every minute: connected charge points whose client certificate
        /// expires within `security.renew_before`.
        certificates_expiring,
        /// Renewals asked of charge points (`security.renewals_per_scan`): ExtendedTriggerMessage
        /// SignChargePointCertificate (1.6), TriggerMessage SignChargingStationCertificate (2.0.1).
        renewals_triggered,
    }
}

counters! {
    /// What the journal thread counts.
    JournalStats {
        /// Lines written to the journal file.
        journal_lines,
        /// Bytes written to the journal file.
        journal_bytes,
        /// fdatasync calls.
        journal_syncs,
        /// Files rotated away at `events.max_file_bytes`.
        journal_rotations,
        /// Failed opens, writes, syncs and renames.
        journal_errors,
        /// Lines lost to those failures.
        journal_lines_lost,
        /// Billing answers refused (CALLERROR InternalError) because their line was lost.
        journal_refused,
    }
}

counters! {
    /// What the cluster threads (`[cluster]`, Redis) count.
    ClusterStats {
        /// Registry operations Redis answered.
        cluster_ops,
        /// Registry operations dropped: the channel or the buffer (`cluster.buffer`) was full.
        cluster_ops_dropped,
        /// Failed connects to Redis and failed pipelines.
        cluster_errors,
        /// Charge points another node took over from this one.
        cluster_takeovers,
        /// Operator calls sent to the node holding the charge point.
        cluster_calls_sent,
        /// Calls of other nodes (or backends) run here from `{prefix}commands:{node}`.
        cluster_calls_run,
        /// Event lines appended to `{prefix}events` (`cluster.events`).
        cluster_events_published,
        /// Event lines that never reached `{prefix}events`: its buffer was full, or they were
        /// still in it when the gateway stopped.
        cluster_events_lost,
        /// Billing answers held for `{prefix}events` that went out as CALLERROR: Redis did
        /// not take their line within `cluster.events_ack_timeout`, the full buffer dropped
        /// it, or the gateway stopped first.
        cluster_events_refused,
        /// Times the fleet's TLS ticket keys from `{prefix}tls-ticket-keys` were installed
        /// (the first time, and after each rotation).
        cluster_ticket_keys_installed,
    }
}

counters! {
    /// What the Kafka threads (`[kafka]`) count.
    KafkaStats {
        /// Integration events given to librdkafka.
        kafka_events_produced,
        /// Events the broker confirmed.
        kafka_events_confirmed,
        /// Events the broker refused for good (too large, unknown topic, a fatal error).
        kafka_events_failed,
        /// Events lost: the side buffer was full, or unconfirmed at shutdown.
        kafka_events_lost,
        /// Times librdkafka's buffer was full and the sink waited (backpressure).
        kafka_backpressure,
        /// Billing answers refused (CALLERROR InternalError): their events were not confirmed
        /// within `kafka.ack_timeout`, or failed.
        kafka_refused,
        /// Errors librdkafka reported (broker unreachable, ...).
        kafka_errors,
        /// Records read from `kafka.commands_topic`.
        kafka_commands_received,
        /// Records that could not run (malformed, invalid payload): answered `Invalid` when
        /// they had a commandId.
        kafka_commands_invalid,
        /// Commands for a charge point not connected here (answered `NotConnected`).
        kafka_commands_not_connected,
        /// Commands older than `kafka.command_max_age` (answered `Expired`, not run).
        kafka_commands_expired,
        /// `command.response` events the broker confirmed.
        kafka_command_responses,
    }
}

counters! {
    /// What the state file's thread (`ocpp.state_file`) and its senders count.
    StateStats {
        /// Transactions committed to the state file.
        state_commits,
        /// Charge point records written (or removed) by them.
        state_records_written,
        /// Commits that failed (the records are tried again with the next one).
        state_errors,
        /// Times a processor kept its changed charge points for later because the state
        /// thread's channel was full.
        state_deferred,
        /// Billing answers refused (CALLERROR InternalError) because the commit of their
        /// changes failed: the charge points send them again.
        state_refused_answers,
    }
}

impl Stats {
    /// Billing answers refused by any holder so far (journal, Kafka, the Redis events stream,
    /// state file): a resend of an event answered before a refusal may be one that was never
    /// kept.
    pub fn held_answers_refused(&self) -> u64 {
        self.journal.journal_refused.get()
            + self.kafka.kafka_refused.get()
            + self.cluster.cluster_events_refused.get()
            + self.state.state_refused_answers.get()
    }
}

/// What a loop counts by label.
#[derive(Debug)]
pub struct LoopLabelled {
    /// Upgraded connections closed, by [`CloseCause::index`].
    pub closes: [Counter; CloseCause::ALL.len()],
    /// CALLs of ours sent, by [`Action::index`].
    pub calls_sent_by_action: [Counter; ACTION_SLOTS],
    /// CALLs of ours sent to 2.0.1 stations, by `v201::Action::index`.
    pub calls_sent_by_action_v201: [Counter; V201_ACTION_SLOTS],
    /// CALLERRORs the loop answered itself, by [`CallErrorCode::index`].
    pub call_errors_by_code: [Counter; CODE_SLOTS],
    /// Our CALLs' round trips, sent to answered.
    pub round_trip: Histogram,
}

/// What a processor counts by label.
#[derive(Debug)]
pub struct ProcessorLabelled {
    /// CALLs received, by [`Action::index`] (the last slot: not a 1.6 action).
    pub calls_by_action: [Counter; ACTION_SLOTS],
    /// CALLs of 2.0.1 stations, by `v201::Action::index` (the last slot: unknown).
    pub calls_by_action_v201: [Counter; V201_ACTION_SLOTS],
    /// CALLERRORs sent, by [`CallErrorCode::index`].
    pub call_errors_by_code: [Counter; CODE_SLOTS],
    pub processing: Histogram,
}

impl Default for LoopLabelled {
    fn default() -> Self {
        LoopLabelled {
            closes: counter_array(),
            calls_sent_by_action: counter_array(),
            calls_sent_by_action_v201: counter_array(),
            call_errors_by_code: counter_array(),
            round_trip: Histogram::new(&ROUND_TRIP_BUCKETS),
        }
    }
}

impl Default for ProcessorLabelled {
    fn default() -> Self {
        ProcessorLabelled {
            calls_by_action: counter_array(),
            calls_by_action_v201: counter_array(),
            call_errors_by_code: counter_array(),
            processing: Histogram::new(&PROCESSING_BUCKETS),
        }
    }
}

/// The slot of `action` in per-action counters.
pub fn action_slot(action: Option<Action>) -> usize {
    action.map_or(Action::ALL.len(), Action::index)
}

/// Outcome labels of outbound calls, in `CallOutcome::slot` order.
pub const OUTCOMES: [&str; 7] = [
    "result",
    "error",
    "invalid_result",
    "timeout",
    "not_connected",
    "rejected",
    "invalid",
];

/// Everything a loop or processor shares with readers.
#[derive(Debug)]
pub struct Stats {
    /// Connections currently held (handshaking, open or closing), across loops.
    pub connections: AtomicUsize,
    /// Upgrades completed since start; each one's value orders takeovers.
    pub sessions_opened: AtomicU64,
    pub loops: Vec<CachePadded<LoopStats>>,
    pub loop_labelled: Vec<CachePadded<LoopLabelled>>,
    pub loop_connections: Vec<CachePadded<AtomicUsize>>,
    pub processors: Vec<CachePadded<ProcessorStats>>,
    pub processor_labelled: Vec<CachePadded<ProcessorLabelled>>,
    /// The last liveness probe each loop / processor answered (see `admin::health`).
    pub loop_alive: Vec<CachePadded<AtomicU64>>,
    pub processor_alive: Vec<CachePadded<AtomicU64>>,
    /// Bytes each loop's connections hold (see `transport::Held`).
    pub loop_buffered: Vec<CachePadded<BufferGauges>>,
    /// Bumped by each loop per turn and each processor per round: busy is not stuck.
    pub loop_progress: Vec<CachePadded<AtomicU64>>,
    pub processor_progress: Vec<CachePadded<AtomicU64>>,
    pub journal: CachePadded<JournalStats>,
    pub state: CachePadded<StateStats>,
    pub cluster: CachePadded<ClusterStats>,
    pub kafka: CachePadded<KafkaStats>,
    /// Outbound calls by outcome ([`OUTCOMES`]): rare enough for one shared block.
    pub outbound: [Counter; OUTCOMES.len()],
}

/// A summed copy of every counter at one moment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Turns the event loops took (all loops): each is one wake-up.
    pub loop_turns: u64,
    pub connections: usize,
    pub sessions_opened: u64,
    pub loop_connections: Vec<usize>,
    pub accepted: u64,
    pub accept_errors: u64,
    pub handshakes_ok: u64,
    pub handshakes_v16: u64,
    pub handshakes_v201: u64,
    pub handshakes_v21: u64,
    pub handshakes_rejected: u64,
    pub over_capacity: u64,
    pub handshake_timeouts: u64,
    pub upgrades_over_budget: u64,
    pub pings_sent: u64,
    pub pings_skipped: u64,
    pub pong_timeouts: u64,
    pub slow_consumers: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub heartbeats_answered: u64,
    pub malformed_calls: u64,
    pub unanswerable_frames: u64,
    pub ignored_frames: u64,
    pub binary_frames: u64,
    pub oversize_messages: u64,
    pub protocol_errors: u64,
    pub backpressure_pauses: u64,
    pub pipelining_pauses: u64,
    pub budget_pauses: u64,
    pub rate_limited: u64,
    /// Bytes held for unfinished input, across loops.
    pub buffered_read_bytes: usize,
    /// Bytes held in write backlogs, across loops.
    pub buffered_write_bytes: usize,
    pub takeovers: u64,
    pub closed: u64,
    pub calls_sent: u64,
    pub call_results: u64,
    pub call_errors_received: u64,
    pub invalid_results: u64,
    pub call_timeouts: u64,
    pub calls_rejected: u64,
    pub calls_handled: u64,
    pub call_errors_sent: u64,
    pub unexpected_responses: u64,
    pub pongs_received: u64,
    pub journal_overflow: u64,
    pub handshakes_deferred: u64,
    pub tls_handshakes: u64,
    pub tls_resumptions: u64,
    pub tls_failures: u64,
    pub proxy_header_errors: u64,
    pub proxy_untrusted: u64,
    pub tls_offload_refusals: u64,
    pub auth_failures: u64,
    pub certificate_mismatches: u64,
    pub certificates_revoked: u64,
    pub auth_lockouts: u64,
    pub locked_out_refusals: u64,
    pub refusals_unjournaled: u64,
    pub profile_refusals: u64,
    pub serial_mismatches: u64,
    pub transaction_events_resent: u64,
    pub transaction_seq_gaps: u64,
    pub certificates_expiring: u64,
    pub sends_received: u64,
    pub call_result_errors_received: u64,
    pub renewals_triggered: u64,
    pub takeovers_refused: u64,
    pub journal_backpressure: u64,
    pub journal_lines_suppressed: u64,
    pub registrations_forgotten: u64,
    pub state_commits: u64,
    pub state_records_written: u64,
    pub state_errors: u64,
    pub state_deferred: u64,
    pub state_refused_answers: u64,
    pub cluster_ops: u64,
    pub cluster_ops_dropped: u64,
    pub cluster_errors: u64,
    pub cluster_takeovers: u64,
    pub cluster_calls_sent: u64,
    pub cluster_calls_run: u64,
    pub cluster_events_published: u64,
    pub cluster_events_lost: u64,
    pub cluster_events_refused: u64,
    pub cluster_ticket_keys_installed: u64,
    pub kafka_events_produced: u64,
    pub kafka_events_confirmed: u64,
    pub kafka_events_failed: u64,
    pub kafka_events_lost: u64,
    pub kafka_backpressure: u64,
    pub kafka_refused: u64,
    pub kafka_errors: u64,
    pub kafka_commands_received: u64,
    pub kafka_commands_invalid: u64,
    pub kafka_commands_not_connected: u64,
    pub kafka_commands_expired: u64,
    pub kafka_command_responses: u64,
    pub journal_lines: u64,
    pub journal_bytes: u64,
    pub journal_syncs: u64,
    pub journal_rotations: u64,
    pub journal_errors: u64,
    pub journal_lines_lost: u64,
    pub journal_refused: u64,
    /// By [`CloseCause::index`].
    pub closes: Vec<u64>,
    /// CALLs from charge points, by [`action_slot`].
    pub calls_in_by_action: Vec<u64>,
    /// CALLs to charge points, by [`action_slot`].
    pub calls_out_by_action: Vec<u64>,
    /// CALLs from 2.0.1 stations, by `v201::Action::index` (last: unknown).
    pub calls_in_by_action_v201: Vec<u64>,
    /// CALLs to 2.0.1 stations, by `v201::Action::index`.
    pub calls_out_by_action_v201: Vec<u64>,
    /// CALLERRORs sent (by loops and processors), by [`CallErrorCode::index`].
    pub call_errors_by_code: Vec<u64>,
    /// By [`OUTCOMES`] slot.
    pub outbound: Vec<u64>,
    pub processing: HistogramSnapshot,
    pub round_trip: HistogramSnapshot,
}

impl Stats {
    pub fn new(loops: usize, processors: usize) -> Stats {
        Stats {
            connections: AtomicUsize::new(0),
            sessions_opened: AtomicU64::new(0),
            loops: (0..loops)
                .map(|_| CachePadded::new(LoopStats::default()))
                .collect(),
            loop_labelled: (0..loops).map(|_| CachePadded::default()).collect(),
            loop_connections: (0..loops)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            processors: (0..processors)
                .map(|_| CachePadded::new(ProcessorStats::default()))
                .collect(),
            processor_labelled: (0..processors).map(|_| CachePadded::default()).collect(),
            loop_alive: (0..loops).map(|_| CachePadded::default()).collect(),
            loop_buffered: (0..loops).map(|_| CachePadded::default()).collect(),
            processor_alive: (0..processors).map(|_| CachePadded::default()).collect(),
            loop_progress: (0..loops).map(|_| CachePadded::default()).collect(),
            processor_progress: (0..processors).map(|_| CachePadded::default()).collect(),
            journal: CachePadded::default(),
            state: CachePadded::default(),
            cluster: CachePadded::default(),
            kafka: CachePadded::default(),
            outbound: counter_array(),
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut out = StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            sessions_opened: self.sessions_opened.load(Ordering::Relaxed),
            loop_connections: self
                .loop_connections
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            loop_turns: self
                .loop_progress
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .sum(),
            ..StatsSnapshot::default()
        };
        for l in &self.loops {
            l.add_to(&mut out);
        }
        for b in &self.loop_buffered {
            out.buffered_read_bytes += b.read.load(Ordering::Relaxed);
            out.buffered_write_bytes += b.write.load(Ordering::Relaxed);
        }
        for p in &self.processors {
            p.add_to(&mut out);
        }
        self.journal.add_to(&mut out);
        self.state.add_to(&mut out);
        self.cluster.add_to(&mut out);
        self.kafka.add_to(&mut out);
        for l in &self.loop_labelled {
            add_array(&mut out.closes, &l.closes);
            add_array(&mut out.calls_out_by_action, &l.calls_sent_by_action);
            add_array(
                &mut out.calls_out_by_action_v201,
                &l.calls_sent_by_action_v201,
            );
            add_array(&mut out.call_errors_by_code, &l.call_errors_by_code);
            l.round_trip.add_to(&mut out.round_trip);
        }
        for p in &self.processor_labelled {
            add_array(&mut out.calls_in_by_action, &p.calls_by_action);
            add_array(&mut out.calls_in_by_action_v201, &p.calls_by_action_v201);
            add_array(&mut out.call_errors_by_code, &p.call_errors_by_code);
            p.processing.add_to(&mut out.processing);
        }
        add_array(&mut out.outbound, &self.outbound);
        if let Some(n) = out
            .call_errors_by_code
            .get_mut(CallErrorCode::InternalError.index())
        {
            *n += out.journal_refused + out.kafka_refused;
        }
        out
    }
}
