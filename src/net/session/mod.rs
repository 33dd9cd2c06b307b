//! One charge point's connection and everything it does: the upgrade, reading frames where the
//! loop's shared buffer put them, handing messages to its processor, writing answers, pings,
//! calls of the central system, closing. Each method takes the loop's [`LoopContext`] and
//! returns a [`Transition`]; the loop owns the slab and does what the transition says (serve
//! again, park the connection, forget it). As in sozu, the loop knows sessions only through
//! these methods.
//!
//! Bytes flow socket -> [`Transport`] -> WebSocket frames ([`websocket`]) -> OCPP messages,
//! through [`Connection::on_readable`] alone. A connection holds no read buffer: what a read
//! brings is consumed where it lies, and only an unfinished request, frame or message (or input
//! held back while the connection is paused) is kept, in a [`Held`] buffer sized to it and freed
//! when it completes.
//!
//! A connection has at most one timer in the loop's wheel (besides its outbound call's), and
//! what it means follows from the phase: the handshake deadline while upgrading; "ping when
//! idle", "pong deadline" or "slow consumer deadline" while open (see [`Liveness`]), brought
//! forward to the partial-message deadline while unfinished input is held; the close deadline
//! while closing or lingering. Receiving a message touches no timer: it only stamps
//! `last_rx_ms`, and the timer, when it fires, re-arms itself for the rest of the interval.
//!
//! Reading pauses ([`Pause`]) while the processor's queue is full, while the charge point has
//! `ocpp.max_pipelined_calls` CALLs unanswered, or while the loop's partial-message budget is
//! spent; TCP then pushes back on the charge point. A connection that holds unfinished input
//! longer than `websocket.partial_message_timeout` is closed with 1009.
//!
//! The phases are a chain of types, each in its own file with what it does, each consumed by
//! the move to the next ([`Phase`]): `upgrading` ([`Upgrading`]: the upgrade request and the
//! security profile's proof; the PROXY header and TLS handshake before it are the transport's
//! phases, typed the same way: `transport`'s `AwaitingHeader` and `tls::Handshake`), `open`
//! ([`Session`]), `closing` ([`Closing`], lingering, the session's end). The open phase's work
//! is split by concern, each an `impl Connection` block: `reading` (frames, unfinished input
//! and its budget, pauses), `messages` (messages in: a CALL for the processor, the Heartbeat
//! the loop answers with the protocol crate's answer, the answer to a call of ours; frames
//! out: answers, pongs, close frames, the backlog), `calls` (calls of the central system) and
//! `timers`. The loop knows no OCPP: only
//! `messages` does, through the `ocpp` crate, and what it may answer itself the processor
//! decided (`accepted`, set with each answer it delivers). `tests` drives every phase over an
//! in-memory transport, without sockets.

mod calls;
mod closing;
mod messages;
mod open;
mod reading;
mod timers;
mod upgrading;

pub use closing::Closing;
pub use open::{Liveness, Session};
pub use upgrading::Upgrading;

use std::mem;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info, warn};

use crate::batch::Entry;
use crate::call::{CallOutcome, OutboundCall};
use crate::events::{Event, EventKind};
use crate::mailbox::shard_of;
use crate::net::context::{LoopContext, TimerEvent};
use crate::net::outbound::{CallQueue, InFlight};
use crate::net::timer::TimerId;
use crate::security::{self, Auth, AuthFailure, Profile};
use crate::trace::{TRACE_TARGET, escape_newlines};
use crate::types::{ChargePointId, CloseCause, ConnId, Protocols, Version};
use ocpp::rpc::{self, Frame, FrameError};
use ocpp::v16;
use transport::{Held, ReadError, Received, SendError, Transport};
use wire::upgrade::{self, Parsed, Refusal};
use wire::websocket::{self, OpCode, Role, Violation};

/// How long a closing connection may take to finish the closing handshake.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// For `ocpp.max_calls_per_second`, a CALL counts once per started 4 KiB: a real charge
/// point's CALLs are well under it, a 49 KB MeterValues counts 12 times.
pub const CALL_UNIT_BYTES: usize = 4096;
/// Reads from one connection per turn; one that keeps its socket full waits for the next turn
/// so the others and the timers get their share.
const READS_PER_TURN: usize = 4;
/// While the partial-message budget is spent, reads take at most this much, so a connection
/// that must keep part of a message while paused holds no more than this.
const TIGHT_READ: usize = 4096;

/// What the loop must do after a connection acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing until the next event.
    Continue,
    /// More input may be waiting than one turn takes: serve it again next turn.
    Again,
    /// Reading stopped until the reason clears; the loop parks the connection.
    Pause(Pause),
    /// The connection is over: forget it, reporting `cause`.
    Remove(CloseCause),
    /// Not upgraded yet and holding bytes, while those not upgraded yet hold all they may
    /// (`Limits::upgrade_budget`): the loop closes those of them that began holding bytes
    /// first, then, if it has more to read (`read_on`), serves this one again; if none began
    /// before it, it is the one closed.
    MakeRoom { read_on: bool },
}

/// Why a connection stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The processor's queue has no room for a message of this many bytes.
    Processor(u16, u32),
    /// `ocpp.max_pipelined_calls` CALLs wait for their answers.
    Calls,
    /// The loop's partial-message budget is spent.
    Budget,
    /// `ocpp.max_calls_per_second`: until the next CALL fits.
    Rate,
}

/// A slab entry.
pub struct Connection {
    pub generation: u32,
    /// Accepted over `server.max_connections`, to be answered 503: not counted as a connection.
    pub over_capacity: bool,
    /// An event reported the peer's FIN (or an error): read until EOF, since no further edge
    /// will come. Otherwise a read shorter than the buffer means the socket is drained.
    pub hangup: bool,
    pub paused: Option<Pause>,
    /// The one pending timer of this connection, if any.
    pub timer: Option<TimerId>,
    pub transport: Transport,
    /// Bytes read and not yet consumed.
    pub input: Held,
    pub phase: Phase,
}

/// Where a connection is in its life: each phase a type of its own file, and each move to the
/// next consumes the one before ([`Phase::take`], then a method of the phase's type), so what
/// one phase knows cannot be left behind in the next: [`Upgrading::open`] becomes a [`Session`],
/// [`Session::close`] a [`Closing`], and failing or ending one reports its session once.
pub enum Phase {
    /// The HTTP upgrade request is being read (boxed: short-lived). The PROXY header and the
    /// TLS handshake before it are the transport's phases (`transport::Transport`: its
    /// `proxy_header` and `tls::handshake` files).
    Upgrading(Box<Upgrading>),
    /// Upgraded; OCPP messages flow.
    Open(Session),
    /// A close frame went out (ours, or our answer to the peer's); waiting, bounded by
    /// [`CLOSE_GRACE`], for the peer's close, its EOF or our backlog to drain.
    Closing(Closing),
    /// We failed the connection (RFC 6455 7.1.7): our close frame is out and our side shut
    /// down; what still arrives is discarded until EOF, so closing does not reset the
    /// connection before the peer reads the close frame.
    Lingering,
}

impl Phase {
    /// Takes the phase to move it on; until the caller puts the next one in, the connection
    /// lingers (nothing of the old phase stays behind).
    fn take(&mut self) -> Phase {
        mem::replace(self, Phase::Lingering)
    }

    fn session(&self) -> Option<&Session> {
        match self {
            Phase::Open(s) | Phase::Closing(Closing { session: s, .. }) => Some(s),
            _ => None,
        }
    }

    fn session_mut(&mut self) -> Option<&mut Session> {
        match self {
            Phase::Open(s) | Phase::Closing(Closing { session: s, .. }) => Some(s),
            _ => None,
        }
    }
}

/// What consuming input stopped at.
enum Consumed {
    /// Everything complete was consumed; what is left (if anything) is unfinished.
    All(usize),
    /// Consuming stopped after this many bytes; the loop must act on the transition.
    Stopped(usize, Transition),
}

impl Connection {
    pub fn new(
        generation: u32,
        transport: Transport,
        peer: SocketAddr,
        (profile, protocols, offloaded): (Profile, Protocols, bool),
        over_capacity: bool,
    ) -> Connection {
        Connection {
            generation,
            over_capacity,
            hangup: false,
            paused: None,
            timer: None,
            transport,
            input: Held::default(),
            phase: Phase::Upgrading(Upgrading::new(peer, profile, protocols, offloaded)),
        }
    }

    pub fn session(&self) -> Option<&Session> {
        self.phase.session()
    }

    pub fn session_mut(&mut self) -> Option<&mut Session> {
        self.phase.session_mut()
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Still before the WebSocket upgrade (PROXY header, TLS handshake, upgrade request).
    pub fn is_upgrading(&self) -> bool {
        matches!(self.phase, Phase::Upgrading(_))
    }

    /// It holds input not consumed yet (an unfinished request, record or frame).
    pub fn holds_input(&self) -> bool {
        !self.input.is_empty() || self.transport.held() > 0
    }

    /// The stamp of its entry in the loop's list of those that hold bytes before their upgrade
    /// (`LoopContext::holders`), while it is listed (kept with the upgrading phase: the slab
    /// entry does not grow for it, and the upgrade ends the listing).
    pub fn holder_stamp(&self) -> Option<std::num::NonZeroU32> {
        match &self.phase {
            Phase::Upgrading(upgrading) => upgrading.holder_stamp,
            _ => None,
        }
    }

    /// Sets or clears the stamp (nothing once upgraded).
    pub fn set_holder_stamp(&mut self, stamp: Option<std::num::NonZeroU32>) {
        if let Phase::Upgrading(upgrading) = &mut self.phase {
            upgrading.holder_stamp = stamp;
        }
    }

    pub(super) fn id(&self, cx: &LoopContext, key: usize) -> ConnId {
        cx.conn_id(key, self.generation)
    }

    /// The upgrade succeeded: what the connection holds counts against the partial-message
    /// budget from now on.
    pub(super) fn upgraded(&mut self, cx: &mut LoopContext) {
        if !self.transport.is_upgrading() {
            return;
        }
        let held = self.input.capacity();
        cx.wire.buffered.upgrading -= held;
        cx.wire.buffered.read += held;
        self.transport.upgraded(&mut cx.wire);
    }
}

#[cfg(test)]
mod tests;
