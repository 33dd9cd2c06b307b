//! One charge point's connection as its event loop holds it in the slab: a state enum moved by
//! value (handshaking, open, closing) plus the few fields every state shares.
//!
//! A connection has at most one timer in the loop's wheel at a time, and what it means follows
//! from the state: the handshake deadline while handshaking, "ping when idle" or "pong deadline"
//! while open (depending on whether a ping is outstanding), the close deadline while closing or lingering.
//! Receiving a message touches no timer: it only stamps `last_rx_ms`, and the idle timer, when it
//! fires, re-arms itself for the rest of the interval if the connection was not idle after all.

use std::net::SocketAddr;
use std::rc::Rc;

use mio::net::TcpStream;
use tungstenite::WebSocket;
use tungstenite::handshake::MidHandshake;
use tungstenite::handshake::server::ServerHandshake;

use crate::net::CloseCause;
use crate::net::handshake::{ChargePointId, UpgradeCheck, VerdictSlot};
use crate::net::socket::{HandshakeStream, Socket};
use crate::net::timer::TimerId;
use crate::outbound::CallQueue;
use crate::processor::Inbound;

/// A slab entry.
pub struct Connection {
    pub generation: u32,
    pub peer: SocketAddr,
    /// The one pending timer of this connection, if any.
    pub timer: Option<TimerId>,
    /// Accepted over `server.max_connections` to be answered 503: not counted as a connection.
    pub over_capacity: bool,
    pub state: State,
}

/// Where a connection is in its life.
pub enum State {
    /// The HTTP upgrade is in progress (boxed: it is large and short-lived).
    Handshaking(Box<Handshake>),
    /// Upgraded; OCPP messages flow.
    Open(Session),
    /// We sent a close frame and wait (bounded) for the peer's, or for EOF.
    Closing(Session),
    /// The peer broke the WebSocket protocol: tungstenite's reader is not to be trusted again.
    /// We sent our close frame and shut down our side; what still arrives is discarded until
    /// EOF (so closing does not reset the connection before the peer reads our close frame).
    Lingering(Socket),
    /// Only while the loop has moved the real state out to transform it.
    Detached,
}

pub struct Handshake {
    pub mid: MidHandshake<ServerHandshake<HandshakeStream, UpgradeCheck>>,
    /// The loop's own handle on the socket, to answer 400/408 when tungstenite gives up.
    pub tcp: Rc<TcpStream>,
    pub verdict: VerdictSlot,
}

pub struct Session {
    pub ws: WebSocket<Socket>,
    pub cp: ChargePointId,
    pub processor: u16,
    /// Loop clock (ms since the loop started) when anything last arrived.
    pub last_rx_ms: u64,
    pub liveness: Liveness,
    /// A frame the processor queue had no room for; reading is paused until it is handed over.
    pub pending: Option<Box<Inbound>>,
    /// Calls of the central system to this charge point (allocated on first use).
    pub calls: Option<Box<CallQueue>>,
    /// Why we started closing it, once we did: what its disconnect is reported as.
    pub closing: Option<CloseCause>,
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

impl Connection {
    /// The session, in any state that has one.
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Open(session) | State::Closing(session) => Some(session),
            State::Handshaking(_) | State::Lingering(_) | State::Detached => None,
        }
    }

    /// The timer of the outbound call in flight, if any.
    pub fn call_timer(&self) -> Option<TimerId> {
        match &self.state {
            State::Open(s) | State::Closing(s) => s.calls.as_ref().and_then(|c| c.timer()),
            _ => None,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every held connection pays for one slab entry: keep it small (the per-connection budget
    /// is about 1 KiB in all, buffers included; tungstenite's `WebSocket` alone is ~380 bytes).
    #[test]
    fn slab_entry_stays_small() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 512, "Connection grew to {size} bytes");
    }
}
