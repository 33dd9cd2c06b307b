//! The network side: per-core event loops that own every charge point's socket, and the small
//! vocabulary other threads use to reach a connection ([`ConnId`], [`ToLoop`], [`LoopHandle`]).
//!
//! A connection never leaves its loop; other threads name it by `(loop, slab key, generation)` and
//! post messages to the loop's channel. The generation makes a message for a connection that
//! closed, and whose slab slot was reused, miss instead of reaching the new occupant.

pub mod connection;
pub mod event_loop;
pub mod handshake;
pub mod socket;
pub mod timer;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::Sender;

use crate::outbound::OutboundCall;
use mio::Waker;

/// A connection's address from outside its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub loop_index: u16,
    pub key: u32,
    pub generation: u32,
}

/// Why a connection is being closed on another thread's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The same identity connected again; the newer connection wins.
    Takeover,
    /// An operator asked for it (`DELETE /api/v1/chargepoints/{id}/connection`).
    Operator,
}

impl CloseReason {
    /// The WebSocket close code and reason text sent to the charge point.
    pub fn frame(self) -> (u16, &'static str) {
        match self {
            CloseReason::Takeover => (
                1000,
                "replaced by a newer connection with the same identity",
            ),
            CloseReason::Operator => (1000, "closed by the operator"),
        }
    }

    pub fn cause(self) -> CloseCause {
        match self {
            CloseReason::Takeover => CloseCause::Takeover,
            CloseReason::Operator => CloseCause::Operator,
        }
    }
}

/// Why an upgraded connection ended: the `reason` label of
/// `ocpp_gateway_closes_total` and of the journal's `disconnected` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The charge point closed (close frame or EOF).
    PeerClosed,
    /// The socket failed or was reset without a closing handshake.
    ConnectionLost,
    /// No pong (or anything else) within `websocket.pong_timeout` of a ping.
    PongTimeout,
    /// The charge point does not read what we send.
    SlowConsumer,
    /// WebSocket protocol error or invalid UTF-8 (1002, 1007).
    ProtocolError,
    /// A message over `websocket.max_message_size` (1009).
    MessageTooBig,
    /// A binary frame (1003).
    BinaryFrame,
    /// The upgrade did not select `ocpp1.6` (1002).
    NoSubprotocol,
    /// The same identity connected again.
    Takeover,
    /// Closed through the operator API.
    Operator,
    /// The gateway is shutting down (1001).
    Shutdown,
}

impl CloseCause {
    pub const ALL: [CloseCause; 11] = [
        CloseCause::PeerClosed,
        CloseCause::ConnectionLost,
        CloseCause::PongTimeout,
        CloseCause::SlowConsumer,
        CloseCause::ProtocolError,
        CloseCause::MessageTooBig,
        CloseCause::BinaryFrame,
        CloseCause::NoSubprotocol,
        CloseCause::Takeover,
        CloseCause::Operator,
        CloseCause::Shutdown,
    ];

    /// The cause's position in [`CloseCause::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::PeerClosed => "peer_closed",
            CloseCause::ConnectionLost => "connection_lost",
            CloseCause::PongTimeout => "pong_timeout",
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::ProtocolError => "protocol_error",
            CloseCause::MessageTooBig => "message_too_big",
            CloseCause::BinaryFrame => "binary_frame",
            CloseCause::NoSubprotocol => "no_subprotocol",
            CloseCause::Takeover => "takeover",
            CloseCause::Operator => "operator",
            CloseCause::Shutdown => "shutdown",
        }
    }
}

/// What other threads ask of an event loop.
#[derive(Debug)]
pub enum ToLoop {
    /// Send this text message (a complete OCPP-J frame) to the connection.
    Text { conn: ConnId, text: String },
    /// Close the connection with a WebSocket close frame.
    Close { conn: ConnId, reason: CloseReason },
    /// Send a CALL of the central system to the connection (queued behind one in flight).
    Call { conn: ConnId, call: OutboundCall },
    /// A liveness probe from the admin thread: store `seq` in the loop's `alive` slot.
    Probe { seq: u64 },
}

/// The parts of a loop other threads may touch.
#[derive(Debug)]
pub struct LoopShared {
    pub waker: Waker,
    /// Set by the first sender after the loop last drained its channel; later senders skip the
    /// wake syscall (one wake per batch, not per message).
    wake_pending: AtomicBool,
    shutdown: AtomicBool,
}

impl LoopShared {
    pub fn new(waker: Waker) -> LoopShared {
        LoopShared {
            waker,
            wake_pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        }
    }

    /// Called by the loop just before it drains its channel.
    pub fn clear_wake(&self) {
        self.wake_pending.store(false, Ordering::SeqCst);
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// A sender's handle on one event loop: its channel plus its waker.
#[derive(Debug, Clone)]
pub struct LoopHandle {
    pub tx: Sender<ToLoop>,
    pub shared: Arc<LoopShared>,
}

impl LoopHandle {
    /// Queues `msg` (blocking while the loop's channel is full: loops never wait on their
    /// senders, so this always ends) and wakes the loop unless a wake is already pending.
    /// False when the loop has exited.
    pub fn send(&self, msg: ToLoop) -> bool {
        if self.tx.send(msg).is_err() {
            return false;
        }
        if !self.shared.wake_pending.swap(true, Ordering::SeqCst) {
            self.wake();
        }
        true
    }

    /// As [`LoopHandle::send`] without waiting: false when the channel is full or closed.
    pub fn try_send(&self, msg: ToLoop) -> bool {
        if self.tx.try_send(msg).is_err() {
            return false;
        }
        if !self.shared.wake_pending.swap(true, Ordering::SeqCst) {
            self.wake();
        }
        true
    }

    /// Asks the loop to stop accepting and drain its connections.
    pub fn request_shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Err(e) = self.shared.waker.wake() {
            log::error!("cannot wake an event loop: {e}");
        }
    }
}

/// Charge points whose raw frames are logged (target `ocpp_gateway::trace`), set through the
/// operator API. Loops consult it for every frame, so a change applies to the very next one;
/// empty (the usual case) it costs one relaxed atomic load per frame.
#[derive(Debug, Default)]
pub struct TraceList {
    ids: RwLock<HashSet<Box<str>>>,
    len: AtomicUsize,
}

/// How many charge points may be traced at once: tracing is for a few misbehaving units.
pub const MAX_TRACED: usize = 1024;

impl TraceList {
    /// True when nobody is traced: the check a loop makes before looking anything up.
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    pub fn contains(&self, cp: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        self.ids.read().is_ok_and(|ids| ids.contains(cp))
    }

    /// Turns tracing of `cp` on or off; false when turning on would pass [`MAX_TRACED`].
    pub fn set(&self, cp: &str, on: bool) -> bool {
        let Ok(mut ids) = self.ids.write() else {
            return false;
        };
        if on {
            if !ids.contains(cp) && ids.len() >= MAX_TRACED {
                return false;
            }
            ids.insert(cp.into());
        } else {
            ids.remove(cp);
        }
        self.len.store(ids.len(), Ordering::Relaxed);
        true
    }
}
