//! Counters the threads bump and anyone may read. Each event loop and each processor owns a
//! cache-padded block of relaxed atomics, so a counter bumped per message never bounces a cache
//! line between cores; a reader sums the blocks into a [`StatsSnapshot`]. The one shared gauge is
//! the global connection count, which `server.max_connections` is checked against at accept.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

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
        /// Handshakes completed with `ocpp1.6` selected.
        handshakes_ok,
        /// Handshakes answered with an HTTP error (400, 404, 503) or completed without
        /// `ocpp1.6` and closed at once.
        handshakes_rejected,
        /// Answered HTTP 503 because `server.max_connections` was reached.
        over_capacity,
        /// Handshakes that did not finish within `websocket.handshake_timeout`.
        handshake_timeouts,
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
        /// CALLERRORs the loop answered itself for malformed CALLs.
        malformed_calls,
        /// Messages that could not be answered (not OCPP-J, no readable UniqueId).
        unanswerable_frames,
        /// Messages with an unknown MessageTypeNumber, ignored as the spec says.
        ignored_frames,
        /// Closed for sending binary frames (1003).
        binary_frames,
        /// Closed for oversize messages (1009).
        oversize_messages,
        /// Closed for invalid UTF-8 (1007) or other WebSocket protocol errors (1002).
        protocol_errors,
        /// Times a connection stopped reading because its processor queue was full.
        backpressure_pauses,
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
    }
}

counters! {
    /// What one processor thread counts.
    ProcessorStats {
        /// CALLs handled.
        calls_handled,
        /// CALLERRORs sent by a processor (validation, NotImplemented, ...).
        call_errors_sent,
    }
}

/// Everything a loop or processor shares with readers.
#[derive(Debug)]
pub struct Stats {
    /// Connections currently held (handshaking, open or closing), across loops.
    pub connections: AtomicUsize,
    /// Upgrades completed since start; each one's value orders takeovers.
    pub sessions_opened: AtomicU64,
    pub loops: Vec<CachePadded<LoopStats>>,
    pub loop_connections: Vec<CachePadded<AtomicUsize>>,
    pub processors: Vec<CachePadded<ProcessorStats>>,
}

/// A summed copy of every counter at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections: usize,
    pub sessions_opened: u64,
    pub loop_connections: Vec<usize>,
    pub accepted: u64,
    pub accept_errors: u64,
    pub handshakes_ok: u64,
    pub handshakes_rejected: u64,
    pub over_capacity: u64,
    pub handshake_timeouts: u64,
    pub pings_sent: u64,
    pub pings_skipped: u64,
    pub pong_timeouts: u64,
    pub slow_consumers: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub malformed_calls: u64,
    pub unanswerable_frames: u64,
    pub ignored_frames: u64,
    pub binary_frames: u64,
    pub oversize_messages: u64,
    pub protocol_errors: u64,
    pub backpressure_pauses: u64,
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
}

impl Stats {
    pub fn new(loops: usize, processors: usize) -> Stats {
        Stats {
            connections: AtomicUsize::new(0),
            sessions_opened: AtomicU64::new(0),
            loops: (0..loops)
                .map(|_| CachePadded::new(LoopStats::default()))
                .collect(),
            loop_connections: (0..loops)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            processors: (0..processors)
                .map(|_| CachePadded::new(ProcessorStats::default()))
                .collect(),
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
            ..StatsSnapshot::default()
        };
        for l in &self.loops {
            l.add_to(&mut out);
        }
        for p in &self.processors {
            p.add_to(&mut out);
        }
        out
    }
}
