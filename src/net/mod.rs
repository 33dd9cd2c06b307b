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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
}

impl CloseReason {
    /// The WebSocket close code and reason text sent to the charge point.
    pub fn frame(self) -> (u16, &'static str) {
        match self {
            CloseReason::Takeover => (
                1000,
                "replaced by a newer connection with the same identity",
            ),
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
