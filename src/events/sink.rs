//! What every sink's machinery shares: when a producer hands its chunk over ([`Gathering`],
//! [`HAND_OVER`]), how it hands it over with back-pressure ([`hand_over`]), and the thread's
//! health as `/health` and `/metrics` read it ([`SinkHealth`]). The journal and the Kafka sink
//! differ only in how they render, write a batch and learn that it was kept (a sync of the
//! file; the broker's delivery reports); their held answers are [`super::held`]'s.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

/// When a producer's chunk goes to its sink's thread.
#[derive(Debug, Clone, Copy)]
pub struct HandOver {
    /// Once it holds this many events ...
    pub events: usize,
    /// ... or this many bytes (at once, even in the middle of a batch: what waits for a sink
    /// is bounded in bytes by its channel's slots times this) ...
    pub bytes: usize,
    /// ... or once its first event is this old (a quiet gateway's events still get out).
    pub after: Duration,
}

/// The hand-over rule of every sink. A chunk that holds an answer goes at once.
pub const HAND_OVER: HandOver = HandOver {
    events: 256,
    bytes: 64 * 1024,
    after: Duration::from_millis(5),
};

/// A producer's chunk being gathered: since when it holds events.
#[derive(Debug, Default)]
pub struct Gathering {
    first_at: Option<Instant>,
}

impl Gathering {
    /// An event went into the chunk.
    pub fn added(&mut self) {
        self.first_at.get_or_insert_with(Instant::now);
    }

    /// The chunk must go now, whatever else: it reached its size in bytes.
    pub fn full(bytes: usize) -> bool {
        bytes >= HAND_OVER.bytes
    }

    /// Whether a chunk of `events` events and `bytes` bytes is due at `now`.
    pub fn due(&self, events: usize, bytes: usize, holding: bool, now: Instant) -> bool {
        holding
            || events >= HAND_OVER.events
            || Self::full(bytes)
            || self.due_at().is_some_and(|due| now >= due)
    }

    /// When the chunk falls due by age (None: it is empty).
    pub fn due_at(&self) -> Option<Instant> {
        self.first_at.map(|first| first + HAND_OVER.after)
    }

    /// The chunk was handed over: a new one starts empty.
    pub fn handed(&mut self) {
        self.first_at = None;
    }
}

/// How a hand-over went.
#[derive(Debug, PartialEq, Eq)]
pub enum Handed<C> {
    /// The thread has it.
    At,
    /// The thread has it after the producer waited for room (back-pressure: the processor
    /// waited, its queue filled and the loops paused the busiest readers; nothing dropped).
    Waited,
    /// The thread is gone; the chunk comes back.
    Gone(C),
}

/// Hands `chunk` to the sink's thread, waiting while its channel is full.
pub fn hand_over<C>(tx: &Sender<C>, chunk: C) -> Handed<C> {
    match tx.try_send(chunk) {
        Ok(()) => Handed::At,
        Err(TrySendError::Full(chunk)) => match tx.send(chunk) {
            Ok(()) => Handed::Waited,
            Err(gone) => Handed::Gone(gone.0),
        },
        Err(TrySendError::Disconnected(chunk)) => Handed::Gone(chunk),
    }
}

/// A sink thread's health: failing or not and why, when it last went round its loop, and a
/// turn at the log at most once a second (from any thread, loops included).
#[derive(Debug)]
pub struct SinkHealth {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    origin: Instant,
    /// Milliseconds since `origin` when the thread last went round its loop.
    alive_ms: AtomicU64,
    /// The thread waits for work (or a deadline of its own): it is not silent meanwhile.
    waiting: AtomicBool,
    /// Milliseconds since `origin` of the last warning (0: none yet).
    warned_ms: AtomicU64,
}

impl Default for SinkHealth {
    fn default() -> SinkHealth {
        SinkHealth {
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            origin: Instant::now(),
            alive_ms: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            warned_ms: AtomicU64::new(0),
        }
    }
}

impl SinkHealth {
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The sink fails: `/health` says so, with why, until [`SinkHealth::recovered`].
    pub fn fail(&self, error: String) {
        self.failing.store(true, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    /// The sink works again; true when it had been failing (worth a log line).
    pub fn recovered(&self) -> bool {
        self.failing.swap(false, Ordering::Relaxed)
    }

    /// How long ago the thread was last seen working; zero while it waits for work, which
    /// is how a thread that wakes only on events is idle without looking stuck.
    pub fn silent_for(&self) -> Duration {
        // Acquire: once the thread is seen awake, the time it woke is seen too.
        if self.waiting.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        Duration::from_millis(
            self.ms()
                .saturating_sub(self.alive_ms.load(Ordering::Relaxed)),
        )
    }

    /// The thread went round its loop (and no longer waits).
    pub fn mark_alive(&self) {
        self.alive_ms.store(self.ms(), Ordering::Relaxed);
        self.waiting.store(false, Ordering::Release);
    }

    /// The thread is about to wait for work: [`SinkHealth::mark_alive`] when it wakes.
    pub fn mark_waiting(&self) {
        self.mark_alive();
        self.waiting.store(true, Ordering::Relaxed);
    }

    /// Milliseconds since this health was created, for timestamps kept in atomics.
    pub fn ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// [`SinkHealth::ms`] at `at`.
    pub fn ms_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// True at most once a second, whichever thread asks: a log line's turn.
    pub fn may_warn(&self) -> bool {
        let now = self.ms().max(1);
        let last = self.warned_ms.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_falls_due_by_events_bytes_age_or_a_held_answer() {
        let mut gathering = Gathering::default();
        let now = Instant::now();
        assert!(!gathering.due(0, 0, false, now), "empty");
        assert_eq!(gathering.due_at(), None);
        assert!(gathering.due(0, 0, true, now), "an answer is held");
        gathering.added();
        let due = gathering.due_at().expect("it holds events");
        assert!(!gathering.due(1, 100, false, due - Duration::from_millis(1)));
        assert!(gathering.due(1, 100, false, due), "old enough");
        assert!(gathering.due(HAND_OVER.events, 100, false, now), "events");
        assert!(gathering.due(1, HAND_OVER.bytes, false, now), "bytes");
        gathering.handed();
        assert_eq!(gathering.due_at(), None);
    }

    #[test]
    fn a_hand_over_keeps_order_and_returns_the_chunk_when_the_thread_is_gone() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        assert_eq!(hand_over(&tx, 1), Handed::At);
        let taker = std::thread::spawn(move || {
            let first = rx.recv_timeout(Duration::from_secs(10));
            let second = rx.recv_timeout(Duration::from_secs(10));
            (first, second)
        });
        // The channel is full until the taker takes the first: this hand-over waits for that
        // (or, if the taker was quicker, finds room).
        let second = hand_over(&tx, 2);
        assert!(matches!(second, Handed::Waited | Handed::At), "{second:?}");
        let (first, second) = taker.join().expect("the taker");
        assert_eq!((first, second), (Ok(1), Ok(2)));
        assert_eq!(hand_over(&tx, 3), Handed::Gone(3));
    }

    #[test]
    fn health_fails_recovers_and_warns_once_a_second() {
        let health = SinkHealth::default();
        assert!(!health.failing() && !health.recovered());
        health.fail("disk full".into());
        assert!(health.failing());
        assert_eq!(health.last_error().as_deref(), Some("disk full"));
        assert!(health.recovered() && !health.failing());
        assert!(health.may_warn(), "the first warning");
        assert!(!health.may_warn(), "not twice in a second");
        health.mark_alive();
        assert!(health.silent_for() < Duration::from_secs(1));

        // A health made a minute ago whose thread went round once, at its start.
        let Some(origin) = Instant::now().checked_sub(Duration::from_secs(60)) else {
            return; // a monotonic clock younger than a minute
        };
        let health = SinkHealth {
            origin,
            ..SinkHealth::default()
        };
        assert!(health.silent_for() >= Duration::from_secs(60), "silent");
        health.mark_waiting();
        health.alive_ms.store(0, Ordering::Relaxed);
        assert_eq!(
            health.silent_for(),
            Duration::ZERO,
            "waiting for work is not silence"
        );
        health.mark_alive();
        health.alive_ms.store(0, Ordering::Relaxed);
        assert!(
            health.silent_for() >= Duration::from_secs(60),
            "awake and silent again"
        );
    }
}
