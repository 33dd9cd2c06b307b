//! What one event loop lends its connections while they act: the clock, the timing wheel, the
//! shared read buffer, the counters, the open batches for the processors, the buffer gauges.
//! A [`Connection`](crate::net::session::Connection) method takes `&mut LoopContext` and
//! returns a [`Transition`](crate::net::session::Transition); the loop owns the slab and acts on
//! the transition. Nothing here touches a socket.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::batch::{Entry, FrameBatch};
use crate::call::OutcomeLog;
use crate::clock::{self, WallClock};
use crate::config::Config;
use crate::events::{self, Event, Events};
use crate::mailbox::{ProcessorHandle, Processors, ToProcessor};
use crate::net::timer::TimerWheel;
use crate::policy::Identities;
use crate::security::certificates::ServerConfigs;
use crate::security::{Profile, Security};
use crate::stats::{LoopLabelled, LoopStats, Stats};
use crate::trace::TraceList;
use crate::types::{ChargePointId, ConnId, IdentityRule};
use basics::Rng;
use basics::WarnBudget;
use transport::Wire;

/// Bytes of the per-loop read buffer: one read takes at most this much.
pub const READ_BUFFER: usize = 64 * 1024;
/// A batch for a processor holds at most this much text before connections wait.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// ... and at most this many messages.
const MAX_BATCH_MESSAGES: usize = 4096;
/// Warnings about peer input allowed per second per loop; the rest are counted only.
const WARNINGS_PER_SECOND: u32 = 20;
/// A batch holding only entries that wait for nobody (journal lines, Heartbeats answered by
/// the loop) goes out this long after its first such entry, or when it holds this many: the
/// processor is woken a few hundred times a second for them, not once per message.
pub const LAZY_AFTER: Duration = Duration::from_millis(5);
const LAZY_ENTRIES: usize = 1024;

#[derive(Clone, Copy, Debug)]
pub enum TimerEvent {
    /// The connection's one liveness/handshake/close/partial-message timer.
    Connection {
        key: u32,
        generation: u32,
    },
    /// The deadline of the connection's CALL in flight.
    CallTimeout {
        key: u32,
        generation: u32,
    },
    AcceptRetry,
}

/// The configuration a connection acts on, copied out of [`Config`] once.
#[derive(Debug, Clone)]
pub struct Limits {
    pub path_prefix: Arc<str>,
    /// Which identities the URL may name (`ocpp.identity_charset`).
    pub identities: IdentityRule,
    pub max_message: usize,
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub max_write_buffer: usize,
    pub ping_skip_threshold: usize,
    pub partial_budget: usize,
    /// What connections not upgraded yet may hold in all (a quarter of the partial-message
    /// budget, at least 1 MiB): past it, one that reads more is closed.
    pub upgrade_budget: usize,
    pub partial_timeout: Duration,
    pub max_pipelined: u16,
    pub message_timeout: Duration,
    pub max_queued_calls: usize,
    /// `ocpp.max_calls_per_second` as milliseconds between CALLs (0: no limit) ...
    pub call_interval_ms: u64,
    /// ... and how far a burst (`ocpp.call_burst`) may run ahead of that.
    pub call_tolerance_ms: u64,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let ws = &config.websocket;
        Limits {
            path_prefix: ws.path_prefix.as_str().into(),
            identities: config.ocpp.identity_charset,
            max_message: ws.max_message_size,
            handshake_timeout: ws.handshake_timeout,
            ping_interval: ws.ping_interval,
            pong_timeout: ws.pong_timeout,
            max_write_buffer: ws.max_write_buffer,
            ping_skip_threshold: ws.ping_skip_threshold,
            partial_budget: ws.partial_message_budget,
            upgrade_budget: (ws.partial_message_budget / 4).max(1 << 20),
            partial_timeout: ws.partial_message_timeout,
            max_pipelined: config.ocpp.max_pipelined_calls,
            message_timeout: config.ocpp.message_timeout,
            max_queued_calls: config.ocpp.max_queued_calls,
            call_interval_ms: match config.ocpp.max_calls_per_second {
                0 => 0,
                rate => (1000 / u64::from(rate)).max(1),
            },
            call_tolerance_ms: match config.ocpp.max_calls_per_second {
                0 => 0,
                rate => {
                    (1000 / u64::from(rate)).max(1)
                        * u64::from(config.ocpp.call_burst.saturating_sub(1))
                }
            },
        }
    }
}

/// The batches being filled for the processors, one per processor. A batch holding a message
/// (which waits for its answer) or a connect/disconnect goes out at the end of the loop's turn;
/// one holding only entries that wait for nobody goes out [`LAZY_AFTER`] later.
pub struct Links {
    processors: Processors,
    open: Vec<FrameBatch>,
    /// Per processor: the open batch holds something that waits for the processor.
    urgent: Vec<bool>,
    /// Per processor: when the open batch got its first entry that waits for nobody.
    lazy_since: Vec<Option<Instant>>,
    /// Per processor: its channel was full at the last hand-over; the processor's wake, not
    /// the lazy deadline, says when to try again (a past deadline would spin the loop).
    held: Vec<bool>,
    /// Per processor, in order: connections waiting for room in its queue.
    /// (key, generation, bytes of the message it waits to hand on).
    pub waiting: Vec<VecDeque<(usize, u32, u32)>>,
}

impl Links {
    pub fn new(processors: Processors) -> Links {
        let n = processors.len();
        Links {
            open: (0..n).map(|_| processors.batches.take()).collect(),
            urgent: vec![false; n],
            lazy_since: vec![None; n],
            held: vec![false; n],
            waiting: (0..n).map(|_| VecDeque::new()).collect(),
            processors,
        }
    }

    pub fn count(&self) -> usize {
        self.open.len()
    }

    pub fn handle(&self, processor: u16) -> &ProcessorHandle {
        &self.processors.handles[usize::from(processor)]
    }

    /// Whether one more message of `bytes` may go to `processor` now. A message always fits
    /// a batch without messages, whatever its size (`websocket.max_message_size` may pass the
    /// batch's bound: such a message would otherwise wait for room that never comes).
    pub fn has_room(&self, processor: u16, bytes: usize) -> bool {
        let Some(open) = self.open.get(usize::from(processor)) else {
            return false;
        };
        (open.text_len() + bytes <= MAX_BATCH_BYTES || open.messages() == 0)
            && open.messages() < MAX_BATCH_MESSAGES
            && self
                .handle(processor)
                .queue
                .has_room(open.messages() + 1, open.text_len() + bytes)
    }

    pub fn push_message(
        &mut self,
        processor: u16,
        conn: ConnId,
        cp: &ChargePointId,
        text: &str,
        at: Instant,
    ) {
        if let Some(open) = self.open.get_mut(usize::from(processor)) {
            open.push_message(conn, cp, text, at);
            self.urgent[usize::from(processor)] = true;
        }
    }

    /// An entry that waits for nobody: it goes with the next batch, or [`LAZY_AFTER`] later.
    pub fn push_lazy(&mut self, processor: u16, entry: Entry, at: Instant) {
        if let Some(open) = self.open.get_mut(usize::from(processor)) {
            open.push(entry);
            self.lazy_since[usize::from(processor)].get_or_insert(at);
        }
    }

    /// A Heartbeat the loop answered, for the processor to count and journal (it waits for
    /// nobody).
    pub fn push_answered(
        &mut self,
        processor: u16,
        conn: ConnId,
        cp: &ChargePointId,
        exchange: (&str, &str),
        at: (SystemTime, Duration),
        now: Instant,
    ) {
        if let Some(open) = self.open.get_mut(usize::from(processor)) {
            open.push_answered(conn, cp, exchange.0, exchange.1, at.0, at.1);
            self.lazy_since[usize::from(processor)].get_or_insert(now);
        }
    }

    /// Stashes a loop's event for the charge point's processor to render (always accepted:
    /// bounded by the calls in flight).
    pub fn record(&mut self, processor: u16, cp: &ChargePointId, event: &Event<'_>) {
        if let Some(open) = self.open.get_mut(usize::from(processor)) {
            events::stash(open, cp, event);
            self.lazy_since[usize::from(processor)].get_or_insert_with(Instant::now);
        }
    }

    /// An [`OutcomeLog`] for calls of `cp`, whose processor is `processor`.
    pub fn log<'a>(&'a mut self, processor: u16, cp: &'a ChargePointId) -> LinkLog<'a> {
        LinkLog {
            links: self,
            processor,
            cp,
        }
    }

    /// Connects and disconnects always go in (they are few, and must never be lost).
    pub fn push_control(&mut self, processor: u16, entry: Entry) {
        if let Some(open) = self.open.get_mut(usize::from(processor)) {
            open.push(entry);
            self.urgent[usize::from(processor)] = true;
        }
    }

    /// Hands every batch that is due to its processor (`all`: every non-empty one); one that
    /// does not fit its channel stays open (and keeps filling, within its bounds). True when
    /// something is still held that should have gone.
    pub fn flush(&mut self, now: Instant, all: bool) -> bool {
        let mut held = false;
        for (index, open) in self.open.iter_mut().enumerate() {
            let due = all
                || self.urgent[index]
                || open.entries().len() >= LAZY_ENTRIES
                || self.lazy_since[index].is_some_and(|since| now >= since + LAZY_AFTER);
            if open.is_empty() || !due {
                continue;
            }
            let handle = &self.processors.handles[index];
            let (messages, bytes) = (open.messages(), open.text_len());
            handle.queue.add(messages, bytes);
            let batch = std::mem::replace(open, self.processors.batches.take());
            if let Err(ToProcessor::Batch(batch)) = handle.try_send(ToProcessor::Batch(batch)) {
                handle.queue.sub(messages, bytes);
                let empty = std::mem::replace(open, batch);
                self.processors.batches.give(empty);
                self.held[index] = true;
                held = true;
            } else {
                self.urgent[index] = false;
                self.lazy_since[index] = None;
                self.held[index] = false;
            }
        }
        held
    }

    /// When the earliest batch that waits for nobody is due, among those whose processor's
    /// channel took the last one (a held batch goes when its processor wakes the loop).
    pub fn lazy_due(&self) -> Option<Instant> {
        self.lazy_since
            .iter()
            .zip(&self.held)
            .filter_map(|(since, held)| since.filter(|_| !held))
            .min()
            .map(|since| since + LAZY_AFTER)
    }

    /// Whether anything waits for a processor (held batches or paused connections).
    pub fn is_backlogged(&self) -> bool {
        self.waiting.iter().any(|w| !w.is_empty())
    }

    /// Asks each processor this loop holds a batch or paused connections for to wake it as it
    /// takes messages out (the caller then looks for room once more).
    pub fn want_room(&self, loop_index: u16) {
        for (index, handle) in self.processors.handles.iter().enumerate() {
            if !self.waiting[index].is_empty() || !self.open[index].is_empty() {
                handle.queue.want_room(loop_index);
            }
        }
    }
}

/// Records outcome lines of one charge point's calls into its processor's batch.
pub struct LinkLog<'a> {
    links: &'a mut Links,
    processor: u16,
    cp: &'a ChargePointId,
}

impl OutcomeLog for LinkLog<'_> {
    fn record(&mut self, event: &Event<'_>) {
        self.links.record(self.processor, self.cp, event);
    }
}

/// Everything a connection may use while it acts.
pub struct LoopContext {
    pub index: u16,
    origin: Instant,
    pub now: Instant,
    pub limits: Limits,
    pub wheel: TimerWheel<TimerEvent>,
    pub stats: Arc<Stats>,
    /// Where reads land; taken out while a connection consumes what it read.
    pub read_buf: Box<[u8]>,
    /// Frames the loop writes itself (pongs, closes, our CALLs).
    pub scratch: Vec<u8>,
    pub links: Links,
    /// The gauges of held bytes and the buffers transports borrow.
    pub wire: Wire,
    /// Connections paused until buffered read bytes are under the budget again.
    pub budget_waiting: VecDeque<(usize, u32)>,
    /// Connections in their handshake that hold bytes, in the order they began to (key,
    /// generation, and the stamp of that listing: entries of connections that stopped holding
    /// since are stale and dropped as the list is walked): whom to close first when those not
    /// upgraded yet hold all they may.
    pub holders: VecDeque<(usize, u32, NonZeroU32)>,
    /// The stamp of the next listing.
    pub next_holder_stamp: NonZeroU32,
    /// How many entries `holders` kept when it was last compacted.
    pub holders_compacted: usize,
    /// Connections paused by the rate limit, by when (loop ms) their next CALL fits.
    pub rate_waiting: BinaryHeap<Reverse<(u64, usize, u32)>>,
    pub known_identities: Option<Arc<Identities>>,
    /// An event sink is configured: the loop's own events (our calls, their answers and
    /// outcomes) are stashed for the processors to record.
    pub journal: bool,
    pub traces: Arc<TraceList>,
    pub warnings: WarnBudget,
    pub rng: Rng,
    /// The wall-clock time of this turn ([`LoopContext::read_wall`]), and its RFC 3339 text
    /// (empty: a clock that cannot be written), copied from `clock` when it changed: what the
    /// Heartbeats the loop answers carry, so answering one reads no wall clock.
    pub wall: SystemTime,
    pub wall_text: String,
    clock: WallClock,
    /// Numbers the UniqueIds of our CALLs (prefixed with the loop index: unique per process).
    pub next_call_id: u64,
    /// Credentials and certificates connections are checked against.
    pub security: Arc<Security>,
    /// The TLS configurations of the generation last seen.
    tls_configs: Option<(u64, Arc<ServerConfigs>)>,
}

impl LoopContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: u16,
        config: &Config,
        stats: Arc<Stats>,
        processors: Processors,
        known_identities: Option<Arc<Identities>>,
        events: Events,
        traces: Arc<TraceList>,
        security: Arc<Security>,
        wheel: TimerWheel<TimerEvent>,
    ) -> LoopContext {
        let now = Instant::now();
        let mut cx = LoopContext {
            index,
            origin: now,
            now,
            limits: Limits::new(config),
            wheel,
            stats,
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            scratch: Vec::with_capacity(512),
            links: Links::new(processors),
            wire: Wire::new(config.websocket.max_write_buffer),
            budget_waiting: VecDeque::new(),
            holders: VecDeque::new(),
            next_holder_stamp: NonZeroU32::MIN,
            holders_compacted: 0,
            rate_waiting: BinaryHeap::new(),
            known_identities,
            journal: events.is_on(),
            traces,
            warnings: WarnBudget::new(WARNINGS_PER_SECOND),
            wall: SystemTime::UNIX_EPOCH,
            wall_text: String::with_capacity(clock::RFC3339_MILLIS_LEN),
            clock: WallClock::default(),
            rng: Rng::new(0x9E37_79B9_7F4A_7C15 ^ u64::from(index)),
            next_call_id: 0,
            security,
            tls_configs: None,
        };
        cx.begin_turn(now);
        cx
    }

    /// A turn of the loop begins at `now`: the loop's clock and the wall clock are read once
    /// for all it does in the turn.
    pub fn begin_turn(&mut self, now: Instant) {
        self.now = now;
        self.read_wall();
    }

    /// Reads the wall clock again (the loop does after delivering processors' answers).
    pub fn read_wall(&mut self) {
        self.wall = SystemTime::now();
        let text = self.clock.text(self.wall);
        if text != self.wall_text {
            self.wall_text.clear();
            self.wall_text.push_str(text);
        }
    }

    /// The rustls configuration a new connection on a `profile` listener starts with: the
    /// current generation's (re-read only after a reload changed it).
    pub fn tls_config(&mut self, profile: Profile) -> Option<Arc<rustls::ServerConfig>> {
        let configs = self.tls_configs()?;
        match profile {
            Profile::MutualTls => configs.mutual.clone(),
            _ => Some(Arc::clone(&configs.server_auth)),
        }
    }

    /// Whether `security.client_crl` (as of the current generation) revokes the certificate.
    pub fn revoked(&mut self, id: &transport::tls::CertificateId) -> bool {
        self.tls_configs()
            .is_some_and(|configs| configs.revoked.contains(id))
    }

    /// The current generation's TLS configurations (re-read only after a reload changed it).
    fn tls_configs(&mut self) -> Option<&ServerConfigs> {
        let tls = self.security.tls.as_ref()?;
        let generation = tls.generation();
        if self
            .tls_configs
            .as_ref()
            .is_none_or(|(g, _)| *g != generation)
        {
            self.tls_configs = Some((generation, tls.current()));
        }
        self.tls_configs.as_ref().map(|(_, configs)| &**configs)
    }

    /// Milliseconds since the loop started, by its clock of this turn.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now.duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn stats(&self) -> &LoopStats {
        &self.stats.loops[usize::from(self.index)]
    }

    pub fn labelled(&self) -> &LoopLabelled {
        &self.stats.loop_labelled[usize::from(self.index)]
    }

    pub fn conn_id(&self, key: usize, generation: u32) -> ConnId {
        ConnId {
            loop_index: self.index,
            key: key as u32,
            generation,
        }
    }

    /// True when connections holding unfinished input must not take more.
    pub fn over_budget(&self) -> bool {
        self.wire.buffered.read >= self.limits.partial_budget
    }

    /// The rest of the ping interval after `idle_ms` of silence, plus up to 1/16 of it as
    /// jitter so a fleet that reconnected together does not get pinged in waves.
    pub fn ping_delay(&mut self, idle_ms: u64) -> Duration {
        let interval_ms = self.limits.ping_interval.as_millis() as u64;
        let jitter = self.rng.below(interval_ms / 16 + 1);
        Duration::from_millis(interval_ms.saturating_sub(idle_ms) + jitter)
    }

    /// A `Retry-After` for 503s: 15 to 30 seconds, so refused charge points come back spread.
    pub fn retry_after_secs(&mut self) -> u32 {
        15 + self.rng.below(16) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Pool;
    use crate::mailbox::processor_channel;

    fn links(slots: usize) -> (Links, crate::mailbox::ProcessorInbox) {
        let (handle, inbox) = processor_channel(slots, 1024, 1 << 20);
        let processors = Processors {
            handles: vec![handle].into(),
            batches: Pool::new(4),
        };
        (Links::new(processors), inbox)
    }

    fn answered(links: &mut Links, now: Instant) {
        let conn = ConnId {
            loop_index: 0,
            key: 1,
            generation: 1,
        };
        let cp: ChargePointId = "CP-1".into();
        let exchange = (r#"[2,"h","Heartbeat",{}]"#, r#"{"currentTime":"x"}"#);
        let at = (SystemTime::now(), Duration::ZERO);
        links.push_answered(0, conn, &cp, exchange, at, now);
    }

    #[test]
    fn a_lazy_batch_goes_after_its_deadline() {
        let (mut links, inbox) = links(4);
        let start = Instant::now();
        answered(&mut links, start);
        assert_eq!(links.lazy_due(), Some(start + LAZY_AFTER));
        assert!(!links.flush(start, false), "not due yet, nothing held");
        assert!(inbox.rx.is_empty());
        assert!(!links.flush(start + LAZY_AFTER, false));
        assert_eq!(inbox.rx.len(), 1);
        assert_eq!(links.lazy_due(), None);
    }

    #[test]
    fn a_held_lazy_batch_has_no_deadline_until_it_goes() {
        let (mut links, inbox) = links(1);
        let start = Instant::now();
        answered(&mut links, start);
        links.flush(start + LAZY_AFTER, false);
        answered(&mut links, start + LAZY_AFTER);
        // The channel is full: the batch stays, and its past deadline must not make the loop
        // poll without waiting; the processor's wake says when to try again.
        let later = start + 3 * LAZY_AFTER;
        assert!(links.flush(later, false), "held");
        assert_eq!(links.lazy_due(), None);
        drop(inbox.rx.try_recv().expect("the first batch"));
        assert!(!links.flush(later, false), "handed over once there is room");
        assert_eq!(inbox.rx.len(), 1);
        assert_eq!(links.lazy_due(), None);
    }
}
