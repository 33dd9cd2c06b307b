//! What one event loop lends its connections while they act: the clock, the timing wheel, the
//! shared read buffer, the counters, the open batches for the processors, the buffer gauges.
//! A [`Connection`](crate::net::session::Connection) method takes `&mut LoopContext` and
//! returns a [`Transition`](crate::net::session::Transition); the loop owns the slab and acts on
//! the transition. Nothing here touches a socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::{Entry, FrameBatch};
use crate::call::OutcomeLog;
use crate::config::Config;
use crate::events::{self, Event, Events};
use crate::mailbox::{ProcessorHandle, Processors, ToProcessor};
use crate::net::TraceList;
use crate::net::timer::TimerWheel;
use crate::processor::policy::Identities;
use crate::rng::Rng;
use crate::stats::{LoopLabelled, LoopStats, Stats};
use crate::types::{ChargePointId, ConnId};
use crate::warn_budget::WarnBudget;

/// Bytes of the per-loop read buffer: one read takes at most this much.
pub const READ_BUFFER: usize = 64 * 1024;
/// A batch for a processor holds at most this much text before connections wait.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// ... and at most this many messages.
const MAX_BATCH_MESSAGES: usize = 4096;
/// Warnings about peer input allowed per second per loop; the rest are counted only.
const WARNINGS_PER_SECOND: u32 = 20;

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
    pub max_message: usize,
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub max_write_buffer: usize,
    pub ping_skip_threshold: usize,
    pub partial_budget: usize,
    pub partial_timeout: Duration,
    pub max_pipelined: u16,
    pub message_timeout: Duration,
    pub max_queued_calls: usize,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let ws = &config.websocket;
        Limits {
            path_prefix: ws.path_prefix.as_str().into(),
            max_message: ws.max_message_size,
            handshake_timeout: ws.handshake_timeout,
            ping_interval: ws.ping_interval,
            pong_timeout: ws.pong_timeout,
            max_write_buffer: ws.max_write_buffer,
            ping_skip_threshold: ws.ping_skip_threshold,
            partial_budget: ws.partial_message_budget,
            partial_timeout: ws.partial_message_timeout,
            max_pipelined: config.ocpp.max_pipelined_calls,
            message_timeout: config.ocpp.message_timeout,
            max_queued_calls: config.ocpp.max_queued_calls,
        }
    }
}

/// Bytes held by this loop's connections, by what holds them.
#[derive(Debug, Default)]
pub struct Buffered {
    /// Unfinished requests, frames and messages, and input held back while paused.
    pub read: usize,
    /// Write backlogs.
    pub write: usize,
}

/// The batches being filled for the processors, one per processor, sent once per loop turn.
pub struct Links {
    processors: Processors,
    open: Vec<FrameBatch>,
    /// Per processor, in order: connections waiting for room in its queue.
    pub waiting: Vec<VecDeque<(usize, u32)>>,
}

impl Links {
    pub fn new(processors: Processors) -> Links {
        let n = processors.len();
        Links {
            open: (0..n).map(|_| processors.batches.take()).collect(),
            waiting: (0..n).map(|_| VecDeque::new()).collect(),
            processors,
        }
    }

    pub fn count(&self) -> usize {
        self.open.len()
    }

    fn handle(&self, processor: u16) -> &ProcessorHandle {
        &self.processors.handles[usize::from(processor)]
    }

    /// Whether one more message of `bytes` may go to `processor` now.
    pub fn has_room(&self, processor: u16, bytes: usize) -> bool {
        let Some(open) = self.open.get(usize::from(processor)) else {
            return false;
        };
        open.text_len() + bytes <= MAX_BATCH_BYTES
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
        }
    }

    /// Stashes a loop's event for the charge point's processor to render (always accepted:
    /// bounded by the calls in flight).
    pub fn record(&mut self, processor: u16, cp: &ChargePointId, event: &Event<'_>) {
        if let Some(open) = self.open.get_mut(usize::from(processor)) {
            events::stash(open, cp, event);
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
        }
    }

    /// Hands every non-empty batch to its processor; one that does not fit its channel stays
    /// open (and keeps filling, within its bounds). True when something is still held.
    pub fn flush(&mut self) -> bool {
        let mut held = false;
        for (index, open) in self.open.iter_mut().enumerate() {
            if open.is_empty() {
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
                held = true;
            }
        }
        held
    }

    /// Whether anything waits for a processor (held batches or paused connections).
    pub fn is_backlogged(&self) -> bool {
        self.waiting.iter().any(|w| !w.is_empty())
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
    pub buffered: Buffered,
    /// Connections paused until buffered read bytes are under the budget again.
    pub budget_waiting: VecDeque<(usize, u32)>,
    pub known_identities: Option<Arc<Identities>>,
    /// An event sink is configured: the loop's own events (our calls, their answers and
    /// outcomes) are stashed for the processors to record.
    pub journal: bool,
    pub traces: Arc<TraceList>,
    pub warnings: WarnBudget,
    pub rng: Rng,
    /// Numbers the UniqueIds of our CALLs (prefixed with the loop index: unique per process).
    pub next_call_id: u64,
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
        wheel: TimerWheel<TimerEvent>,
    ) -> LoopContext {
        let now = Instant::now();
        LoopContext {
            index,
            origin: now,
            now,
            limits: Limits::new(config),
            wheel,
            stats,
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            scratch: Vec::with_capacity(512),
            links: Links::new(processors),
            buffered: Buffered::default(),
            budget_waiting: VecDeque::new(),
            known_identities,
            journal: events.is_on(),
            traces,
            warnings: WarnBudget::new(WARNINGS_PER_SECOND),
            rng: Rng::new(0x9E37_79B9_7F4A_7C15 ^ u64::from(index)),
            next_call_id: 0,
        }
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
        self.buffered.read >= self.limits.partial_budget
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
