//! What the fleet threads count and measure, and how the coordinator reads it.
//!
//! - Counters and gauges: one block of relaxed atomics per thread ([`ThreadCounters`]), written
//!   by that thread only, summed by the coordinator into a [`Counts`] once a second.
//! - Latencies: plain `hdrhistogram` histograms owned by each thread; a copy of the last
//!   second's round trips goes to the coordinator for the live p99, and the totals come back
//!   when the thread ends. No locks anywhere.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded exactly, in microseconds (10 minutes); longer ones are clamped.
const HISTOGRAM_MAX_US: u64 = 600_000_000;

/// Why something went wrong, as reported in `errors.by_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connect failed (refused, unreachable, no local port).
    Connect,
    /// The gateway answered the upgrade with an HTTP error (503 when full, 404, ...).
    HandshakeRefused,
    /// The upgrade failed otherwise (reset, bad response, missing `ocpp1.6`).
    HandshakeFailed,
    /// No upgrade within `--handshake-timeout`.
    HandshakeTimeout,
    /// An open connection was closed or reset by the gateway.
    Disconnected,
    /// The gateway broke the WebSocket protocol.
    WebSocketProtocol,
    /// A CALLRESULT or CALLERROR whose UniqueId is not the CALL outstanding.
    WrongUniqueId,
    /// A CALLRESULT whose payload is not what the action returns.
    InvalidPayload,
    /// A CALLERROR answering our CALL.
    CallError,
    /// A message that is not an OCPP-J frame.
    Unparsable,
    /// No answer within `--call-timeout`.
    CallTimeout,
    /// BootNotification answered Pending or Rejected.
    BootNotAccepted,
    /// A CALL of the gateway that no central system should send (unknown action, bad payload).
    InvalidCallReceived,
}

impl ErrorKind {
    pub const COUNT: usize = 13;
    pub const ALL: [ErrorKind; Self::COUNT] = [
        ErrorKind::Connect,
        ErrorKind::HandshakeRefused,
        ErrorKind::HandshakeFailed,
        ErrorKind::HandshakeTimeout,
        ErrorKind::Disconnected,
        ErrorKind::WebSocketProtocol,
        ErrorKind::WrongUniqueId,
        ErrorKind::InvalidPayload,
        ErrorKind::CallError,
        ErrorKind::Unparsable,
        ErrorKind::CallTimeout,
        ErrorKind::BootNotAccepted,
        ErrorKind::InvalidCallReceived,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::HandshakeRefused => "handshake_refused",
            ErrorKind::HandshakeFailed => "handshake_failed",
            ErrorKind::HandshakeTimeout => "handshake_timeout",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::WebSocketProtocol => "websocket_protocol",
            ErrorKind::WrongUniqueId => "wrong_unique_id",
            ErrorKind::InvalidPayload => "invalid_payload",
            ErrorKind::CallError => "call_error",
            ErrorKind::Unparsable => "unparsable",
            ErrorKind::CallTimeout => "call_timeout",
            ErrorKind::BootNotAccepted => "boot_not_accepted",
            ErrorKind::InvalidCallReceived => "invalid_call_received",
        }
    }

    /// A reply that does not match its CALL: any of these fails the run.
    pub fn is_mismatch(self) -> bool {
        matches!(
            self,
            ErrorKind::WrongUniqueId
                | ErrorKind::InvalidPayload
                | ErrorKind::CallError
                | ErrorKind::Unparsable
        )
    }

    /// Errors that fail the run even if every charge point ends up booted. Connection-level
    /// errors do not: they are retried with back-off, and "all booted at the end" judges them.
    pub fn fails_run(self) -> bool {
        self.is_mismatch()
            || matches!(
                self,
                ErrorKind::CallTimeout
                    | ErrorKind::BootNotAccepted
                    | ErrorKind::InvalidCallReceived
            )
    }
}

/// Defines the per-thread atomic block and its plain snapshot with the same fields.
macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident, )*) => {
        /// One thread's counters and gauges, written by that thread only.
        #[derive(Debug, Default)]
        pub struct ThreadCounters {
            $( $(#[$doc])* pub $field: AtomicU64, )*
            pub errors: [AtomicU64; ErrorKind::COUNT],
        }

        /// The counters summed over threads at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Counts {
            $( $(#[$doc])* pub $field: u64, )*
            pub errors: [u64; ErrorKind::COUNT],
        }

        impl Counts {
            pub fn add(&mut self, block: &ThreadCounters) {
                $( self.$field += block.$field.load(Ordering::Relaxed); )*
                for (sum, e) in self.errors.iter_mut().zip(&block.errors) {
                    *sum += e.load(Ordering::Relaxed);
                }
            }
        }
    };
}

counters! {
    /// Gauge: WebSocket connections open.
    open,
    /// Gauge: charge points booted (BootNotification accepted) and still connected.
    booted,
    /// Gauge: connections between TCP connect and WebSocket upgrade.
    inflight,
    /// TCP connects started.
    connect_attempts,
    /// WebSocket upgrades completed.
    handshakes,
    /// BootNotifications accepted.
    boots,
    /// Boots of charge points that had been booted before (after a drop, storm or Reset).
    reboots,
    /// `--resume`: reconnected charge points accepted without booting again.
    resumes,
    /// `--tls-resume`: TLS handshakes resumed from a session ticket.
    tls_resumed,
    /// `--resume`: reconnected charge points the gateway did not know (they booted).
    resumes_refused,
    /// Connections we dropped on purpose (storm, Reset).
    dropped_on_purpose,
    /// CALLs sent by the charge points.
    calls_sent,
    /// CALLRESULTs to them that were valid.
    results_ok,
    /// CALLs of the gateway answered.
    calls_answered,
    /// WebSocket pings received (answered by tungstenite).
    pings,
    /// Text messages received / sent.
    messages_in,
    messages_out,
}

impl ThreadCounters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn error(&self, kind: ErrorKind) {
        Self::inc(&self.errors[kind as usize]);
    }
}

impl Counts {
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn errors_where(&self, pred: impl Fn(ErrorKind) -> bool) -> u64 {
        ErrorKind::ALL
            .into_iter()
            .filter(|k| pred(*k))
            .map(|k| self.errors[k as usize])
            .sum()
    }

    /// Round trips completed: every answer to a CALL of ours, valid or not.
    pub fn round_trips(&self) -> u64 {
        self.results_ok
            + self.errors[ErrorKind::InvalidPayload as usize]
            + self.errors[ErrorKind::CallError as usize]
    }
}

/// A histogram of microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("static histogram bounds are valid")
}

pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.clamp(1, HISTOGRAM_MAX_US));
}

/// [`record`], plus the sends a sender on a fixed `interval` skipped while waiting this long
/// (each with the latency it would have seen: `micros - interval`, `micros - 2 * interval`, ...
/// down to one interval).
pub fn record_with_skipped(histogram: &mut Histogram<u64>, micros: u64, interval: Option<u64>) {
    let micros = micros.clamp(1, HISTOGRAM_MAX_US);
    match interval {
        Some(interval) if interval > 0 && micros > interval => {
            let _ = histogram.record_correct(micros, interval);
        }
        _ => histogram.saturating_record(micros),
    }
}

/// The latency histograms of one thread.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// TCP connect started -> connected.
    pub connect: Histogram<u64>,
    /// TCP connect started -> WebSocket upgraded.
    pub handshake: Histogram<u64>,
    /// TCP connect started -> BootNotification accepted.
    pub boot: Histogram<u64>,
    /// CALL planned -> its answer (BootNotification excluded); reset when measuring starts.
    pub round_trip: Histogram<u64>,
    /// The same for StopTransaction alone (answered only once its event is durable when the
    /// gateway acks after write); reset when measuring starts.
    pub stop_transaction: Histogram<u64>,
    /// The same for StartTransaction alone (held like StopTransaction).
    pub start_transaction: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            connect: histogram(),
            handshake: histogram(),
            boot: histogram(),
            round_trip: histogram(),
            stop_transaction: histogram(),
            start_transaction: histogram(),
        }
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds everywhere: adding cannot fail.
        let _ = self.connect.add(&other.connect);
        let _ = self.handshake.add(&other.handshake);
        let _ = self.boot.add(&other.boot);
        let _ = self.round_trip.add(&other.round_trip);
        let _ = self.stop_transaction.add(&other.stop_transaction);
        let _ = self.start_transaction.add(&other.start_transaction);
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

/// Percentiles of one histogram, in microseconds, as written to the JSON report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_records_the_sends_it_skipped() {
        let mut h = histogram();
        // 3.5 ms at one send per ms: the skipped sends would have waited 2.5 and 1.5 ms (HDR's
        // correction stops below one interval).
        record_with_skipped(&mut h, 3_500, Some(1_000));
        assert_eq!(h.len(), 3);
        assert_eq!(h.min(), h.lowest_equivalent(1_500));
        record_with_skipped(&mut h, 500, Some(1_000)); // on time: itself only
        record_with_skipped(&mut h, 3_500, None); // no fixed interval: itself only
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn error_kinds_are_listed_once_in_order() {
        for (i, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
        let names: std::collections::HashSet<_> = ErrorKind::ALL.map(ErrorKind::name).into();
        assert_eq!(names.len(), ErrorKind::COUNT);
    }

    #[test]
    fn counts_sum_threads() {
        let (a, b) = (ThreadCounters::default(), ThreadCounters::default());
        ThreadCounters::inc(&a.open);
        ThreadCounters::inc(&b.open);
        ThreadCounters::inc(&b.results_ok);
        b.error(ErrorKind::CallError);
        a.error(ErrorKind::Connect);
        let mut counts = Counts::default();
        counts.add(&a);
        counts.add(&b);
        assert_eq!(counts.open, 2);
        assert_eq!(counts.round_trips(), 2);
        assert_eq!(counts.errors_total(), 2);
        assert_eq!(counts.errors_where(ErrorKind::is_mismatch), 1);
    }

    #[test]
    fn summary_percentiles() {
        let mut h = histogram();
        for v in 1..=1000 {
            record(&mut h, v);
        }
        record(&mut h, u64::MAX);
        let s = Summary::of(&h);
        assert_eq!(s.count, 1001);
        assert_eq!(s.p50, 501);
        assert!(s.max >= HISTOGRAM_MAX_US - 1_000_000, "{s:?}");
        assert_eq!(Summary::of(&histogram()), Summary::default());
    }
}
