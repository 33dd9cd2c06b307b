//! The open phase: an upgraded connection's state ([`Session`]) while OCPP messages flow. What
//! it does is spread by concern: `reading` (frames, unfinished input, pauses), `messages` (in
//! and out), `calls` and `timers`. It ends by [`Session::close`] (the closing handshake) or by
//! failing (`closing`).

use super::*;

/// An upgraded connection's state.
pub struct Session {
    pub cp: ChargePointId,
    /// The OCPP version negotiated at the upgrade, for the connection's life.
    pub version: Version,
    pub processor: u16,
    /// Loop clock (ms) when anything last arrived.
    pub last_rx_ms: u64,
    pub liveness: Liveness,
    /// Messages handed to the processor and not answered yet.
    pub in_flight: u16,
    /// The processor's last answer said the charge point is Accepted: with nothing in flight,
    /// its Heartbeats are answered here.
    pub accepted: bool,
    /// A fragmented text message being assembled (its payload so far), boxed: rare.
    pub message: Option<Box<Held>>,
    /// Loop clock (ms) since unfinished input has been held (None: nothing held).
    partial_since: Option<std::num::NonZeroU64>,
    /// Calls of the central system to this charge point (allocated on first use).
    pub calls: Option<Box<CallQueue>>,
    /// The rate limiter's theoretical arrival time of the next CALL (loop ms).
    pub call_tat_ms: u64,
}

/// What an open connection's timer is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// `ping_interval` of silence, then a ping.
    Idle,
    /// A ping went out at `sent_ms`; anything received before the deadline proves life.
    AwaitingPong { sent_ms: u64 },
    /// A ping was skipped at `since_ms` because `backlog` bytes were waiting. By the deadline
    /// the peer must have read some of them or sent something, or it is a slow consumer.
    Stalled { since_ms: u64, backlog: u32 },
}

impl Session {
    pub(super) fn new(cp: ChargePointId, version: Version, processor: u16, now_ms: u64) -> Session {
        Session {
            cp,
            version,
            processor,
            last_rx_ms: now_ms,
            liveness: Liveness::Idle,
            in_flight: 0,
            accepted: false,
            message: None,
            partial_since: None,
            calls: None,
            call_tat_ms: 0,
        }
    }

    /// Loop clock (ms) since unfinished input has been held (None: nothing held).
    pub fn partial_since_ms(&self) -> Option<u64> {
        self.partial_since.map(|at| at.get() - 1)
    }

    /// Stored plus one, so that "none" needs no room of its own.
    pub fn set_partial_since_ms(&mut self, at: Option<u64>) {
        self.partial_since = at.and_then(|ms| std::num::NonZeroU64::new(ms.saturating_add(1)));
    }

    /// The closing handshake starts (our close frame, or our answer to the peer's): the session
    /// closes for `cause`, which is what its end is reported as.
    pub(super) fn close(self, cause: CloseCause) -> Closing {
        Closing {
            session: self,
            cause,
        }
    }
}
