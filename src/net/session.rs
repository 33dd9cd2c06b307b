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
use crate::net::transport::{Held, ReadError, Received, SendError, Transport};
use crate::security::{self, Auth, AuthFailure, Profile};
use crate::trace::{TRACE_TARGET, escape_newlines};
use crate::types::{ChargePointId, CloseCause, ConnId};
use ocpp::rpc::{self, Frame, FrameError};
use ocpp::v16;
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

/// Where a connection is in its life.
pub enum Phase {
    /// The HTTP upgrade request is being read (boxed: short-lived).
    Upgrading(Box<Upgrading>),
    /// Upgraded; OCPP messages flow.
    Open(Session),
    /// A close frame went out (ours, or our answer to the peer's); waiting, bounded by
    /// [`CLOSE_GRACE`], for the peer's close, its EOF or our backlog to drain.
    Closing(Session),
    /// We failed the connection (RFC 6455 7.1.7): our close frame is out and our side shut
    /// down; what still arrives is discarded until EOF, so closing does not reset the
    /// connection before the peer reads the close frame.
    Lingering,
}

pub struct Upgrading {
    pub peer: SocketAddr,
    /// The security profile of the listener it came in on.
    pub profile: Profile,
}

/// An upgraded connection's state.
pub struct Session {
    pub cp: ChargePointId,
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
    pub partial_since_ms: Option<u64>,
    /// Calls of the central system to this charge point (allocated on first use).
    pub calls: Option<Box<CallQueue>>,
    /// Why we started closing it, once we did: what its disconnect is reported as.
    pub closing: Option<CloseCause>,
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
        profile: Profile,
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
            phase: Phase::Upgrading(Box::new(Upgrading { peer, profile })),
        }
    }

    pub fn session(&self) -> Option<&Session> {
        match &self.phase {
            Phase::Open(s) | Phase::Closing(s) => Some(s),
            _ => None,
        }
    }

    pub fn session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.phase {
            Phase::Open(s) | Phase::Closing(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    fn id(&self, cx: &LoopContext, key: usize) -> ConnId {
        cx.conn_id(key, self.generation)
    }

    // ---- reading ----

    /// Consumes what is held, then reads until the socket is drained, paused, or this turn's
    /// share of reads is used.
    pub fn on_readable(&mut self, cx: &mut LoopContext, key: usize) -> Transition {
        if self.paused.is_some() {
            return Transition::Continue;
        }
        if !self.input.is_empty() {
            let mut held = self.input.take(&mut cx.wire.buffered.read);
            let outcome = self.consume(cx, key, &mut held);
            let used = match outcome {
                Consumed::All(n) | Consumed::Stopped(n, _) => n,
            };
            self.input.put(&mut cx.wire.buffered.read, held);
            self.input.consume(&mut cx.wire.buffered.read, used);
            if let Consumed::Stopped(_, transition) = outcome {
                return transition;
            }
        }
        for _ in 0..READS_PER_TURN {
            if cx.over_budget() && self.needs_room(cx) {
                return Transition::Pause(Pause::Budget);
            }
            let window = if cx.over_budget() {
                TIGHT_READ
            } else {
                cx.read_buf.len()
            };
            let mut buf = mem::take(&mut cx.read_buf);
            let read = self.transport.read(&mut cx.wire, &mut buf, window);
            if let Some(peer) = self.transport.take_proxied_peer()
                && let Phase::Upgrading(upgrading) = &mut self.phase
            {
                upgrading.peer = peer;
            }
            let transition = match read {
                Ok(Received::Data { len, more }) => {
                    let t = if len > 0 {
                        self.take_input(cx, key, &mut buf[..len])
                    } else {
                        Transition::Continue
                    };
                    match t {
                        Transition::Continue if !more && !self.hangup => Some(Transition::Continue),
                        Transition::Continue => None,
                        other => Some(other),
                    }
                }
                Ok(Received::Blocked) => Some(Transition::Continue),
                Ok(Received::Closed) => Some(self.peer_gone()),
                Err(e) => Some(self.read_failed(cx, e)),
            };
            cx.read_buf = buf;
            if let Some(transition) = transition {
                return transition;
            }
        }
        Transition::Again
    }

    /// Consumes freshly read bytes (in the shared buffer), keeping what is unfinished.
    fn take_input(&mut self, cx: &mut LoopContext, key: usize, data: &mut [u8]) -> Transition {
        if let Some(session) = self.session_mut() {
            session.last_rx_ms = cx.now_ms();
        }
        if self.input.is_empty() {
            let outcome = self.consume(cx, key, data);
            let (used, transition) = match outcome {
                Consumed::All(n) => (n, Transition::Continue),
                Consumed::Stopped(n, t) => (n, t),
            };
            if used < data.len() && !matches!(transition, Transition::Remove(_)) {
                let admitted = self.retain(cx, &data[used..]);
                self.note_partial(cx, key);
                if transition == Transition::Continue && !admitted {
                    return Transition::Pause(Pause::Budget);
                }
            }
            return transition;
        }
        // Appended to what is held: a frame admitted earlier has its room already.
        let frame = self.frame_len_hint(cx, self.input.as_slice());
        let room = cx
            .limits
            .partial_budget
            .saturating_sub(cx.wire.buffered.read)
            + self.input.capacity();
        let expect = if frame <= room { frame } else { 0 };
        self.input.extend(&mut cx.wire.buffered.read, data, expect);
        let mut held = self.input.take(&mut cx.wire.buffered.read);
        let outcome = self.consume(cx, key, &mut held);
        let (used, transition) = match outcome {
            Consumed::All(n) => (n, Transition::Continue),
            Consumed::Stopped(n, t) => (n, t),
        };
        self.input.put(&mut cx.wire.buffered.read, held);
        self.input.consume(&mut cx.wire.buffered.read, used);
        if self.input.is_empty() {
            self.partial_done();
        }
        transition
    }

    /// Keeps the start of an unfinished frame. When its header is complete and the budget has
    /// room for the whole frame, room for all of it is taken at once (the frame is admitted:
    /// reading the rest needs nothing more, so it can always complete); otherwise only these
    /// bytes are kept and false says the connection must wait for room.
    fn retain(&mut self, cx: &mut LoopContext, bytes: &[u8]) -> bool {
        let frame = self.frame_len_hint(cx, bytes);
        let room = cx
            .limits
            .partial_budget
            .saturating_sub(cx.wire.buffered.read);
        let admitted = frame > 0 && frame <= room;
        let expect = if admitted { frame } else { 0 };
        self.input.extend(&mut cx.wire.buffered.read, bytes, expect);
        admitted || !cx.over_budget()
    }

    /// Whether holding more of this connection's unfinished input needs room in the budget: a
    /// fragmented message grows with each fragment, and a frame whose room was not taken (its
    /// header incomplete, or no room then) needs it. An admitted frame needs none.
    fn needs_room(&self, cx: &LoopContext) -> bool {
        if self.session().is_some_and(|s| s.message.is_some()) {
            return true;
        }
        if self.input.is_empty() {
            return false;
        }
        let frame = self.frame_len_hint(cx, self.input.as_slice());
        frame == 0 || self.input.capacity() < frame
    }

    /// The size of the frame that starts `data`, when its header is complete (so the held
    /// buffer is allocated once, at its final size); 0 otherwise.
    fn frame_len_hint(&self, cx: &LoopContext, data: &[u8]) -> usize {
        if !matches!(self.phase, Phase::Open(_) | Phase::Closing(_)) {
            return 0;
        }
        match websocket::parse_header(data, Role::Server, cx.limits.max_message) {
            Ok(Some(header)) => header.frame_len(),
            _ => 0,
        }
    }

    /// Consumes complete units (the upgrade request, frames) at the start of `data`.
    fn consume(&mut self, cx: &mut LoopContext, key: usize, data: &mut [u8]) -> Consumed {
        let mut used = 0;
        if matches!(self.phase, Phase::Upgrading(_)) {
            match self.upgrade(cx, key, data) {
                Consumed::All(n) if matches!(self.phase, Phase::Open(_)) => used = n,
                other => return other,
            }
        }
        match &self.phase {
            Phase::Lingering => return Consumed::All(data.len()),
            Phase::Upgrading(_) => return Consumed::All(used),
            Phase::Open(_) | Phase::Closing(_) => {}
        }
        while used < data.len() {
            let header =
                match websocket::parse_header(&data[used..], Role::Server, cx.limits.max_message) {
                    Ok(Some(header)) if header.frame_len() <= data.len() - used => header,
                    Ok(_) => break,
                    Err(violation) => {
                        return Consumed::Stopped(data.len(), self.fail(cx, key, violation));
                    }
                };
            // A message that completes here must have somewhere to go before it is touched.
            if header.fin && matches!(header.opcode, OpCode::Text | OpCode::Continuation) {
                let len = header.payload_len
                    + self
                        .session()
                        .and_then(|s| s.message.as_ref())
                        .map_or(0, |m| m.len());
                if let Some(pause) = self.blocked(cx, len) {
                    return Consumed::Stopped(used, Transition::Pause(pause));
                }
                if cx.limits.call_interval_ms > 0
                    && self.is_call(&header, &data[used..used + header.frame_len()])
                    && let Some(pause) = self.over_rate(cx, key, len)
                {
                    return Consumed::Stopped(used, Transition::Pause(pause));
                }
            }
            let frame = &mut data[used..used + header.frame_len()];
            let payload = &mut frame[header.payload()];
            if let Some(mask) = header.mask {
                websocket::apply_mask(payload, mask);
            }
            used += header.frame_len();
            let transition = self.on_frame(cx, key, header.opcode, header.fin, payload);
            if transition != Transition::Continue {
                return Consumed::Stopped(used, transition);
            }
        }
        Consumed::All(used)
    }

    /// Whether the message this final frame completes is a CALL (a peek at its first bytes,
    /// unmasked on the side; for a fragmented message, at the part already held).
    fn is_call(&self, header: &websocket::Header, frame: &[u8]) -> bool {
        if let Some(held) = self.session().and_then(|s| s.message.as_ref()) {
            return std::str::from_utf8(&held.as_slice()[..held.len().min(16)])
                .is_ok_and(|start| rpc::message_type(start) == Some(2));
        }
        let payload = &frame[header.payload()];
        let mut start = [0u8; 16];
        let n = payload.len().min(start.len());
        start[..n].copy_from_slice(&payload[..n]);
        if let Some(mask) = header.mask {
            websocket::apply_mask(&mut start[..n], mask);
        }
        let text = match std::str::from_utf8(&start[..n]) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&start[..e.valid_up_to()]).unwrap_or(""),
        };
        rpc::message_type(text) == Some(2)
    }

    /// `ocpp.max_calls_per_second` (GCRA: each CALL moves the session's theoretical arrival
    /// time on by one interval per started [`CALL_UNIT_BYTES`] of its `len`; a burst may run
    /// that far ahead of the clock). Over it, the connection is not read until the CALL fits
    /// (TCP pushes back on the charge point); each such pause is counted, and told to the
    /// processor for the API. Weighing by size bounds the bytes a charge point can make the
    /// gateway parse and journal, not only the CALLs.
    fn over_rate(&mut self, cx: &mut LoopContext, key: usize, len: usize) -> Option<Pause> {
        let now_ms = cx.now_ms();
        let (interval, tolerance) = (cx.limits.call_interval_ms, cx.limits.call_tolerance_ms);
        let generation = self.generation;
        let Phase::Open(session) = &mut self.phase else {
            return None;
        };
        let earliest = session.call_tat_ms.saturating_sub(tolerance);
        if now_ms >= earliest {
            let units = 1 + len.saturating_sub(1) / CALL_UNIT_BYTES;
            session.call_tat_ms = session.call_tat_ms.max(now_ms) + interval * units as u64;
            return None;
        }
        cx.stats().rate_limited.inc();
        if cx.warnings.allow(now_ms) {
            warn!(
                "cp={} loop={} over ocpp.max_calls_per_second: reading slowed",
                session.cp, cx.index
            );
        }
        let conn = cx.conn_id(key, generation);
        cx.links.push_lazy(
            session.processor,
            Entry::Throttled {
                conn,
                cp: ChargePointId::clone(&session.cp),
            },
            cx.now,
        );
        cx.rate_waiting
            .push(std::cmp::Reverse((earliest, key, generation)));
        Some(Pause::Rate)
    }

    /// Why a complete message of `len` bytes cannot be handed on now, if it cannot.
    fn blocked(&self, cx: &LoopContext, len: usize) -> Option<Pause> {
        let Phase::Open(session) = &self.phase else {
            return None;
        };
        if session.in_flight >= cx.limits.max_pipelined {
            return Some(Pause::Calls);
        }
        (!cx.links.has_room(session.processor, len))
            .then_some(Pause::Processor(session.processor, len as u32))
    }

    fn on_frame(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        opcode: OpCode,
        fin: bool,
        payload: &mut [u8],
    ) -> Transition {
        let max = cx.limits.max_message;
        let Some(session) = self.session_mut() else {
            return Transition::Continue;
        };
        match opcode {
            OpCode::Text | OpCode::Binary if session.message.is_some() => self.fail(
                cx,
                key,
                Violation::Protocol("new message inside a fragmented one"),
            ),
            OpCode::Continuation if session.message.is_none() => self.fail(
                cx,
                key,
                Violation::Protocol("continuation without a message"),
            ),
            OpCode::Text if fin => match std::str::from_utf8(payload) {
                Ok(text) => self.on_message(cx, key, text),
                Err(_) => self.fail(cx, key, Violation::InvalidUtf8),
            },
            OpCode::Text => {
                let mut message = Box::<Held>::default();
                message.extend(&mut cx.wire.buffered.read, payload, payload.len());
                session.message = Some(message);
                self.note_partial(cx, key);
                Transition::Continue
            }
            OpCode::Continuation => {
                let Some(held) = &mut session.message else {
                    return Transition::Continue; // not reached: checked above
                };
                if held.len() + payload.len() > max {
                    return self.fail(cx, key, Violation::TooBig);
                }
                held.extend(&mut cx.wire.buffered.read, payload, 0);
                if !fin {
                    return Transition::Continue;
                }
                let message = session
                    .message
                    .take()
                    .map(|mut held| held.take(&mut cx.wire.buffered.read))
                    .unwrap_or_default();
                let transition = match std::str::from_utf8(&message) {
                    Ok(text) => self.on_message(cx, key, text),
                    Err(_) => self.fail(cx, key, Violation::InvalidUtf8),
                };
                if self.input.is_empty() {
                    self.partial_done();
                }
                transition
            }
            OpCode::Binary => {
                cx.stats().binary_frames.inc();
                self.close(
                    cx,
                    key,
                    1003,
                    "binary frames are not OCPP-J",
                    CloseCause::BinaryFrame,
                )
            }
            OpCode::Ping if self.is_open() => self.send_pong(cx, payload),
            OpCode::Ping => Transition::Continue,
            OpCode::Pong => {
                cx.stats().pongs_received.inc();
                Transition::Continue
            }
            OpCode::Close => self.on_close_frame(cx, key, payload),
        }
    }

    /// The peer's close frame: answer it (unless we closed first) and end the connection once
    /// our answer is out.
    fn on_close_frame(&mut self, cx: &mut LoopContext, key: usize, payload: &[u8]) -> Transition {
        if let Err(violation) = websocket::parse_close(payload) {
            return self.fail(cx, key, violation);
        }
        match mem::replace(&mut self.phase, Phase::Lingering) {
            Phase::Open(mut session) => {
                let cause = *session.closing.get_or_insert(CloseCause::PeerClosed);
                self.phase = Phase::Closing(session);
                match self.send_close(cx, 1000, "") {
                    Transition::Continue if self.transport.backlog() == 0 => {
                        Transition::Remove(cause)
                    }
                    Transition::Continue => {
                        self.arm(cx, key, CLOSE_GRACE);
                        Transition::Continue
                    }
                    _ => Transition::Remove(cause),
                }
            }
            Phase::Closing(session) => {
                let cause = session.closing.unwrap_or(CloseCause::PeerClosed);
                self.phase = Phase::Closing(session);
                Transition::Remove(cause)
            }
            other => {
                self.phase = other;
                Transition::Continue
            }
        }
    }

    /// A complete text message.
    fn on_message(&mut self, cx: &mut LoopContext, key: usize, text: &str) -> Transition {
        let conn_id = self.id(cx, key);
        let open = self.is_open();
        let Some(session) = self.session_mut() else {
            return Transition::Continue;
        };
        cx.stats().messages_in.inc();
        if !cx.traces.is_empty() && cx.traces.contains(&session.cp) {
            info!(target: TRACE_TARGET, "cp={} loop={} in: {}", session.cp, cx.index, escape_newlines(text));
        }
        match rpc::message_type(text) {
            Some(3 | 4) => return self.on_response(cx, key, text),
            // While closing only answers to our call in flight still count.
            _ if !open => return Transition::Continue,
            Some(2) if session.accepted && session.in_flight == 0 => {
                if let Some(transition) = self.answer_heartbeat(cx, key, text) {
                    return transition;
                }
            }
            _ => {}
        }
        let Some(session) = self.session_mut() else {
            return Transition::Continue;
        };
        // Room was checked before the frame was touched (`blocked`).
        cx.links
            .push_message(session.processor, conn_id, &session.cp, text, cx.now);
        session.in_flight += 1;
        Transition::Continue
    }

    /// The Heartbeat of an accepted charge point with nothing in flight is answered here, as
    /// its processor would (the current time), and the exchange goes to the processor to be
    /// counted and journaled in order with the rest of the charge point. Nothing else a
    /// processor knows enters the answer, and with nothing of this connection in flight no
    /// earlier message can be overtaken. None: not such a Heartbeat; the processor answers.
    fn answer_heartbeat(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        text: &str,
    ) -> Option<Transition> {
        let Ok(Frame::Call {
            unique_id,
            action,
            payload,
        }) = rpc::parse_frame(text)
        else {
            return None;
        };
        if action != "Heartbeat" || v16::decode::<v16::HeartbeatRequest>(payload).is_err() {
            return None;
        }
        let at = std::time::SystemTime::now();
        let time = cx.clock.text(at);
        if time.is_empty() {
            return None; // a broken clock: the processor answers InternalError
        }
        let mut frame = mem::take(&mut cx.scratch);
        frame.clear();
        frame.extend_from_slice(&[0; websocket::HEADER_ROOM]);
        rpc::write_call_result_head(&mut frame, &unique_id);
        let answer_start = frame.len();
        frame.extend_from_slice(b"{\"currentTime\":\"");
        frame.extend_from_slice(time.as_bytes());
        frame.extend_from_slice(b"\"}");
        let answer_end = frame.len();
        frame.push(rpc::CALL_RESULT_END);
        let start = websocket::seal_text(&mut frame, 0);
        let conn = self.id(cx, key);
        let session = self.session()?;
        if !cx.traces.is_empty() && cx.traces.contains(&session.cp) {
            let shown = String::from_utf8_lossy(&frame[websocket::HEADER_ROOM..]);
            info!(target: TRACE_TARGET, "cp={} loop={} out: {}", session.cp, cx.index, escape_newlines(&shown));
        }
        let answer = std::str::from_utf8(&frame[answer_start..answer_end]).unwrap_or("{}");
        let took = cx.now.elapsed();
        let processor = session.processor;
        cx.links.push_answered(
            processor,
            conn,
            &session.cp,
            (text, answer),
            (at, took),
            cx.now,
        );
        cx.stats().heartbeats_answered.inc();
        cx.stats().messages_out.inc();
        let transition = self.send_frame(cx, &frame[start..]);
        cx.scratch = frame;
        Some(transition)
    }

    /// A CALLRESULT or CALLERROR: the answer to our call in flight, or logged and dropped.
    fn on_response(&mut self, cx: &mut LoopContext, key: usize, text: &str) -> Transition {
        let (unique_id, outcome) = match rpc::parse_frame(text) {
            Ok(Frame::CallResult { unique_id, payload }) => {
                (unique_id, CallOutcome::Result(payload.to_owned()))
            }
            Ok(Frame::CallError {
                unique_id,
                code,
                description,
                details,
            }) => (
                unique_id,
                CallOutcome::Error {
                    code: code.into_owned(),
                    description: description.into_owned(),
                    details: details.to_owned(),
                },
            ),
            Ok(Frame::Call { .. }) | Err(FrameError::UnknownMessageType { .. }) => {
                return Transition::Continue;
            }
            Err(FrameError::Unanswerable { reason })
            | Err(FrameError::Answer {
                description: reason,
                ..
            }) => {
                cx.stats().unanswerable_frames.inc();
                if cx.warnings.allow(cx.now_ms()) {
                    let cp = self.session().map_or("-", |s| &*s.cp);
                    warn!("cp={cp} loop={} unanswerable message: {reason}", cx.index);
                }
                return Transition::Continue;
            }
        };
        let Some(session) = self.session_mut() else {
            return Transition::Continue;
        };
        let in_flight = session
            .calls
            .as_mut()
            .and_then(|calls| calls.take_matching(&unique_id));
        let Some(InFlight {
            call,
            timer,
            sent_at,
            ..
        }) = in_flight
        else {
            cx.stats().unexpected_responses.inc();
            if cx.warnings.allow(cx.now_ms()) {
                warn!(
                    "cp={} loop={} answer to unknown call {unique_id:?} dropped",
                    session.cp, cx.index
                );
            }
            return Transition::Continue;
        };
        cx.wheel.cancel(timer);
        cx.labelled()
            .round_trip
            .observe(cx.now.saturating_duration_since(sent_at));
        journal_answer(cx, session, &unique_id, call.action(), &outcome);
        let outcome = match outcome {
            CallOutcome::Result(payload) => match v16::validate_response(call.action(), &payload) {
                Ok(()) => {
                    cx.stats().call_results.inc();
                    CallOutcome::Result(payload)
                }
                Err(invalid) => {
                    cx.stats().invalid_results.inc();
                    CallOutcome::InvalidResult(invalid)
                }
            },
            other => {
                cx.stats().call_errors_received.inc();
                other
            }
        };
        call.resolve_in(outcome, &mut cx.links.log(session.processor, &session.cp));
        self.send_next_call(cx, key)
    }

    /// Holds nothing unfinished any more.
    fn partial_done(&mut self) {
        if let Some(session) = self.session_mut()
            && session.message.is_none()
        {
            session.partial_since_ms = None;
        }
    }

    /// Unfinished input is held: start its clock and bring the timer forward to its deadline
    /// ([`Connection::arm`] does that while anything is held).
    fn note_partial(&mut self, cx: &mut LoopContext, key: usize) {
        let now_ms = cx.now_ms();
        let due = self.liveness_due_ms(cx);
        if let Phase::Open(session) = &mut self.phase
            && session.partial_since_ms.is_none()
        {
            session.partial_since_ms = Some(now_ms);
            self.arm(cx, key, Duration::from_millis(due.saturating_sub(now_ms)));
        }
    }

    /// When the liveness timer of an open connection is due, in loop ms.
    fn liveness_due_ms(&self, cx: &LoopContext) -> u64 {
        let Some(session) = self.session() else {
            return u64::MAX;
        };
        let ping = cx.limits.ping_interval.as_millis() as u64;
        let pong = cx.limits.pong_timeout.as_millis() as u64;
        match session.liveness {
            Liveness::Idle => session.last_rx_ms + ping,
            Liveness::AwaitingPong { sent_ms } => sent_ms + pong,
            Liveness::Stalled { since_ms, .. } => since_ms + pong,
        }
    }

    /// A read failed: the connection is over. TLS and PROXY failures are the peer's doing and
    /// counted; socket errors are a reset or a lost connection.
    fn read_failed(&mut self, cx: &mut LoopContext, error: ReadError) -> Transition {
        match &error {
            ReadError::Io(e) => debug!("loop={} read failed: {e}", cx.index),
            ReadError::Tls(e) => {
                cx.stats().tls_failures.inc();
                if cx.warnings.allow(cx.now_ms()) {
                    warn!("{} loop={} {e}", self.who(), cx.index);
                }
            }
            ReadError::Proxy(e) => {
                cx.stats().proxy_header_errors.inc();
                if cx.warnings.allow(cx.now_ms()) {
                    warn!("{} loop={} {e}", self.who(), cx.index);
                }
            }
        }
        self.peer_gone()
    }

    /// Who the connection is, for log lines: the identity once known, else the peer address.
    fn who(&self) -> String {
        match &self.phase {
            Phase::Upgrading(upgrading) => format!("peer={}", upgrading.peer),
            Phase::Open(s) | Phase::Closing(s) => format!("cp={}", s.cp),
            Phase::Lingering => "peer=-".into(),
        }
    }

    /// EOF or a reset from the peer: without a closing handshake, the connection was lost
    /// (RFC 6455's 1006); after we started closing, it ends as we meant it to.
    fn peer_gone(&self) -> Transition {
        Transition::Remove(match &self.phase {
            Phase::Upgrading(_) | Phase::Open(_) => CloseCause::ConnectionLost,
            Phase::Lingering => CloseCause::PeerClosed,
            Phase::Closing(s) => s.closing.unwrap_or(CloseCause::PeerClosed),
        })
    }

    // ---- the upgrade ----

    fn upgrade(&mut self, cx: &mut LoopContext, key: usize, data: &mut [u8]) -> Consumed {
        let (request, len) = match upgrade::parse(data, &[ocpp::SUBPROTOCOL]) {
            Parsed::Partial => return Consumed::All(0),
            Parsed::Refused(refusal) => {
                return Consumed::Stopped(data.len(), self.refuse(cx, refusal));
            }
            Parsed::Upgrade { request, len } => (request, len),
        };
        if self.over_capacity {
            let refusal = Refusal::ServiceUnavailable {
                retry_after_secs: cx.retry_after_secs(),
            };
            return Consumed::Stopped(data.len(), self.refuse(cx, refusal));
        }
        let rule = cx.limits.identities;
        let id =
            upgrade::charge_point_id(&cx.limits.path_prefix, request.path, |id| rule.allows(id))
                .filter(|id| {
                    cx.known_identities
                        .as_ref()
                        .is_none_or(|known| known.contains(id))
                });
        let Some(id) = id else {
            return Consumed::Stopped(data.len(), self.refuse(cx, Refusal::NotFound));
        };
        if self.transport.tls().is_some() {
            cx.stats().tls_handshakes.inc();
        }
        let (auth, pinned) = match self.authenticate(cx, &id, request.authorization) {
            Ok(proof) => proof,
            Err(refusal) => return Consumed::Stopped(data.len(), self.refuse(cx, refusal)),
        };
        let ocpp16 = request.protocol.is_some();
        cx.scratch.clear();
        upgrade::write_switching(
            &mut cx.scratch,
            request.key,
            ocpp16.then_some(ocpp::SUBPROTOCOL),
        );
        if self.transport.send(&mut cx.wire, &cx.scratch).is_err() {
            return Consumed::Stopped(data.len(), Transition::Remove(CloseCause::ConnectionLost));
        }
        let Phase::Upgrading(upgrading) = mem::replace(&mut self.phase, Phase::Lingering) else {
            return Consumed::Stopped(data.len(), Transition::Remove(CloseCause::ConnectionLost));
        };
        if let Some(timer) = self.timer.take() {
            cx.wheel.cancel(timer);
        }
        let cp: ChargePointId = id.into();
        if !ocpp16 {
            cx.stats().handshakes_rejected.inc();
            cx.labelled().closes[CloseCause::NoSubprotocol.index()].inc();
            debug!(
                "cp={cp} loop={} did not offer {}",
                cx.index,
                ocpp::SUBPROTOCOL
            );
            self.phase = Phase::Open(Session::new(cp, 0, cx.now_ms()));
            let t = self.fail_with(
                cx,
                key,
                1002,
                "subprotocol ocpp1.6 required",
                CloseCause::NoSubprotocol,
                false,
            );
            return Consumed::Stopped(data.len(), t);
        }
        cx.stats().handshakes_ok.inc();
        let processor = shard_of(&cp, cx.links.count()) as u16;
        debug!(
            "cp={cp} loop={} connected from {}",
            cx.index, upgrading.peer
        );
        let seq = cx
            .stats
            .sessions_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cx.links.push_control(
            processor,
            Entry::Connected {
                conn: self.id(cx, key),
                cp: ChargePointId::clone(&cp),
                seq,
                peer: upgrading.peer,
                auth,
                profile: upgrading.profile,
                pinned,
            },
        );
        self.phase = Phase::Open(Session::new(cp, processor, cx.now_ms()));
        let delay = cx.ping_delay(0);
        self.arm(cx, key, delay);
        Consumed::All(len)
    }

    /// Checks that the connection is `id`'s, as its listener's profile requires: Basic auth
    /// (profiles 1 and 2) or the client certificate's CN (3), on a listener no lower than the
    /// identity must use ([`security::required_profile`]). An address locked out for its
    /// failures is refused first, before any hashing. A refusal is counted, journaled (why,
    /// never the password) within its address's allowance, and logged within the loop's
    /// warning budget. On success: how the connection proved the identity, and whether its
    /// credentials line pins its profile (then the processor does not apply the one remembered).
    fn authenticate(
        &self,
        cx: &mut LoopContext,
        id: &str,
        authorization: Option<&[u8]>,
    ) -> Result<(Auth, bool), Refusal> {
        let Phase::Upgrading(upgrading) = &self.phase else {
            return Err(Refusal::BadRequest);
        };
        let (peer, profile) = (upgrading.peer, upgrading.profile);
        if profile != Profile::Unsecured
            && let Some(retry_after_secs) = cx.security.lockouts.locked(peer.ip(), cx.now)
        {
            cx.stats().locked_out_refusals.inc();
            return Err(Refusal::TooManyFailures { retry_after_secs });
        }
        let (required, pinned) = security::required_profile(&cx.security, id);
        let checked = if profile < required {
            Err(AuthFailure::ProfileTooLow)
        } else {
            match profile {
                Profile::Unsecured => Ok(Auth::None),
                Profile::BasicAuth | Profile::TlsBasicAuth => match &cx.security.credentials {
                    Some(credentials) => security::check_basic(credentials, id, authorization)
                        .map(|()| Auth::Password),
                    None => Err(AuthFailure::WrongPassword),
                },
                Profile::MutualTls => {
                    let presented = self.transport.tls().map(|t| t.client_certificate());
                    security::check_certificate(id, presented).map(|()| Auth::Certificate)
                }
            }
        };
        let failure = match checked {
            Ok(auth) => return Ok((auth, pinned)),
            Err(failure) => failure,
        };
        let (refusal, counter) = if failure == AuthFailure::ProfileTooLow {
            (Refusal::ProfileTooLow, &cx.stats().profile_refusals)
        } else if failure.forbidden() {
            (Refusal::Forbidden, &cx.stats().certificate_mismatches)
        } else {
            (Refusal::Unauthorized, &cx.stats().auth_failures)
        };
        counter.inc();
        // Accounted to the address, never to the identity it names.
        let refused = cx.security.lockouts.refused(peer.ip(), cx.now);
        if let Some(seconds) = refused.locked_for {
            cx.stats().auth_lockouts.inc();
            if cx.warnings.allow(cx.now_ms()) {
                warn!(
                    "loop={} peer={peer} locked out for {seconds} s: too many failed authentications",
                    cx.index
                );
            }
        }
        if cx.warnings.allow(cx.now_ms()) {
            warn!(
                "cp={id} loop={} peer={peer} refused ({}): {failure}",
                cx.index,
                refusal.status()
            );
        }
        if !refused.journal {
            cx.stats().refusals_unjournaled.inc();
        } else if cx.journal {
            let cp: ChargePointId = id.into();
            let event = Event {
                at: std::time::SystemTime::now(),
                cp: &cp,
                kind: EventKind::Refused {
                    peer,
                    status: refusal.status(),
                    reason: failure.as_str(),
                },
            };
            let processor = shard_of(&cp, cx.links.count()) as u16;
            cx.links.record(processor, &cp, &event);
        }
        Err(refusal)
    }

    /// Answers the upgrade request with an HTTP error and ends the connection.
    fn refuse(&mut self, cx: &mut LoopContext, refusal: Refusal) -> Transition {
        if !self.over_capacity {
            cx.stats().handshakes_rejected.inc();
        }
        cx.scratch.clear();
        refusal.write(&mut cx.scratch);
        let _ = self.transport.send(&mut cx.wire, &cx.scratch);
        debug!("loop={} upgrade refused: {}", cx.index, refusal.status());
        Transition::Remove(CloseCause::ConnectionLost)
    }

    // ---- writing ----

    /// A writable edge: the kernel has room for the backlog again.
    pub fn on_writable(&mut self, cx: &mut LoopContext) -> Transition {
        if self.transport.backlog() == 0 {
            return Transition::Continue;
        }
        match self.transport.flush(&mut cx.wire) {
            Ok(true) => match &self.phase {
                // Our answer to the peer's close is out: done.
                Phase::Closing(s) if s.closing == Some(CloseCause::PeerClosed) => {
                    Transition::Remove(CloseCause::PeerClosed)
                }
                _ => Transition::Continue,
            },
            Ok(false) => Transition::Continue,
            Err(_) => Transition::Remove(self.lost_cause()),
        }
    }

    fn lost_cause(&self) -> CloseCause {
        self.session()
            .and_then(|s| s.closing)
            .unwrap_or(CloseCause::ConnectionLost)
    }

    /// Writes one complete frame (an answer from a processor, or one the loop built).
    fn send_frame(&mut self, cx: &mut LoopContext, frame: &[u8]) -> Transition {
        match self.transport.send(&mut cx.wire, frame) {
            Ok(()) => Transition::Continue,
            Err(SendError::Backlog) => {
                cx.stats().slow_consumers.inc();
                Transition::Remove(CloseCause::SlowConsumer)
            }
            Err(SendError::Io(e)) => {
                debug!("loop={} write failed: {e}", cx.index);
                Transition::Remove(self.lost_cause())
            }
            Err(SendError::Tls(e)) => {
                cx.stats().tls_failures.inc();
                debug!("{} loop={} {e}", self.who(), cx.index);
                Transition::Remove(self.lost_cause())
            }
        }
    }

    /// Writes a close frame with `code` and `reason`.
    fn send_close(&mut self, cx: &mut LoopContext, code: u16, reason: &str) -> Transition {
        let mut frame = mem::take(&mut cx.scratch);
        frame.clear();
        websocket::encode_close(&mut frame, code, reason, None);
        let sent = self.send_frame(cx, &frame);
        cx.scratch = frame;
        sent
    }

    fn send_pong(&mut self, cx: &mut LoopContext, payload: &[u8]) -> Transition {
        let mut scratch = mem::take(&mut cx.scratch);
        scratch.clear();
        websocket::encode(&mut scratch, OpCode::Pong, payload, None);
        let transition = self.send_frame(cx, &scratch);
        cx.scratch = scratch;
        transition
    }

    /// An answer from the processor (empty: the message needed none). Returns `Again` when the
    /// connection was waiting for it to read on.
    pub fn deliver(&mut self, cx: &mut LoopContext, frame: &[u8], accepted: bool) -> Transition {
        let Some(session) = self.session_mut() else {
            return Transition::Continue;
        };
        session.in_flight = session.in_flight.saturating_sub(1);
        session.accepted = accepted;
        if !self.is_open() || frame.is_empty() {
            return self.resume_after_answer();
        }
        if let Some(session) = self.session()
            && !cx.traces.is_empty()
            && cx.traces.contains(&session.cp)
        {
            let text = String::from_utf8_lossy(websocket::payload_of(frame));
            info!(target: TRACE_TARGET, "cp={} loop={} out: {}", session.cp, cx.index, escape_newlines(&text));
        }
        cx.stats().messages_out.inc();
        match self.send_frame(cx, frame) {
            Transition::Continue => self.resume_after_answer(),
            other => other,
        }
    }

    fn resume_after_answer(&mut self) -> Transition {
        if self.paused == Some(Pause::Calls) {
            self.paused = None;
            return Transition::Again;
        }
        Transition::Continue
    }

    // ---- calls of the central system ----

    pub fn offer_call(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        call: OutboundCall,
    ) -> Transition {
        let max_waiting = cx.limits.max_queued_calls;
        let open = self.is_open();
        let Some(session) = self.session_mut() else {
            call.resolve(CallOutcome::NotConnected);
            return Transition::Continue;
        };
        if !open {
            call.resolve_in(
                CallOutcome::NotConnected,
                &mut cx.links.log(session.processor, &session.cp),
            );
            return Transition::Continue;
        }
        match session
            .calls
            .get_or_insert_with(Box::default)
            .offer(call, max_waiting)
        {
            Ok(Some(call)) => self.send_call(cx, key, call),
            Ok(None) => Transition::Continue,
            Err(call) => {
                cx.stats().calls_rejected.inc();
                call.resolve_in(
                    CallOutcome::Rejected,
                    &mut cx.links.log(session.processor, &session.cp),
                );
                Transition::Continue
            }
        }
    }

    /// Sends `call` with a fresh UniqueId and arms its timeout.
    fn send_call(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        mut call: OutboundCall,
    ) -> Transition {
        cx.next_call_id = cx.next_call_id.wrapping_add(1);
        let unique_id = format!("{}-{}", cx.index, cx.next_call_id);
        call.sent_as(&unique_id);
        let mut text = Vec::with_capacity(64 + call.payload().get().len());
        rpc::write_call(
            &mut text,
            &unique_id,
            call.action().name(),
            call.payload().get(),
        );
        let event = TimerEvent::CallTimeout {
            key: key as u32,
            generation: self.generation,
        };
        let Phase::Open(session) = &mut self.phase else {
            call.resolve(CallOutcome::NotConnected);
            return Transition::Continue;
        };
        if cx.journal {
            let event = Event {
                at: std::time::SystemTime::now(),
                cp: &session.cp,
                kind: EventKind::CallOut {
                    unique_id: &unique_id,
                    action: call.action(),
                    payload: call.payload().get(),
                },
            };
            cx.links.record(session.processor, &session.cp, &event);
        }
        if !cx.traces.is_empty() && cx.traces.contains(&session.cp) {
            let shown = String::from_utf8_lossy(&text);
            info!(target: TRACE_TARGET, "cp={} loop={} out: {}", session.cp, cx.index, escape_newlines(&shown));
        }
        cx.labelled().calls_sent_by_action[call.action().index()].inc();
        let timeout = call.timeout().unwrap_or(cx.limits.message_timeout);
        let timer = cx.wheel.arm(cx.now, timeout, event);
        session
            .calls
            .get_or_insert_with(Box::default)
            .start(InFlight {
                unique_id,
                call,
                timer,
                sent_at: cx.now,
            });
        cx.stats().calls_sent.inc();
        cx.stats().messages_out.inc();
        let mut frame = mem::take(&mut cx.scratch);
        frame.clear();
        websocket::encode(&mut frame, OpCode::Text, &text, None);
        let transition = self.send_frame(cx, &frame);
        cx.scratch = frame;
        transition
    }

    /// Sends the next waiting call, if nothing is in flight.
    fn send_next_call(&mut self, cx: &mut LoopContext, key: usize) -> Transition {
        let next = match &mut self.phase {
            Phase::Open(session) => session
                .calls
                .as_mut()
                .and_then(|calls| calls.next_to_send()),
            _ => None,
        };
        match next {
            Some(call) => self.send_call(cx, key, call),
            None => Transition::Continue,
        }
    }

    pub fn on_call_timeout(&mut self, cx: &mut LoopContext, key: usize) -> Transition {
        let Some(session) = self.session_mut() else {
            return Transition::Continue;
        };
        let Some(InFlight {
            call, unique_id, ..
        }) = session
            .calls
            .as_mut()
            .and_then(|calls| calls.take_in_flight())
        else {
            return Transition::Continue;
        };
        cx.stats().call_timeouts.inc();
        debug!(
            "loop={} call {unique_id} ({}) timed out",
            cx.index,
            call.action().name()
        );
        call.resolve_in(
            CallOutcome::Timeout,
            &mut cx.links.log(session.processor, &session.cp),
        );
        self.send_next_call(cx, key)
    }

    /// The timer of the outbound call in flight, if any.
    pub fn call_timer(&self) -> Option<TimerId> {
        self.session()
            .and_then(|s| s.calls.as_ref())
            .and_then(|c| c.timer())
    }

    // ---- closing ----

    /// Sends a close frame and waits (bounded by [`CLOSE_GRACE`]) for the peer's.
    pub fn close(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        code: u16,
        reason: &str,
        cause: CloseCause,
    ) -> Transition {
        match mem::replace(&mut self.phase, Phase::Lingering) {
            Phase::Open(mut session) => {
                session.closing = Some(cause);
                self.phase = Phase::Closing(session);
                self.paused = None;
                if let Transition::Remove(_) = self.send_close(cx, code, reason) {
                    return Transition::Remove(cause);
                }
                self.arm(cx, key, CLOSE_GRACE);
                // Input that arrived while the connection was paused is read now.
                Transition::Again
            }
            Phase::Upgrading(_) => Transition::Remove(cause),
            other => {
                self.phase = other;
                Transition::Continue
            }
        }
    }

    /// "Fail the WebSocket connection" for a protocol violation.
    fn fail(&mut self, cx: &mut LoopContext, key: usize, violation: Violation) -> Transition {
        let cause = match violation {
            Violation::TooBig => {
                cx.stats().oversize_messages.inc();
                CloseCause::MessageTooBig
            }
            Violation::Protocol(_) | Violation::InvalidUtf8 => {
                cx.stats().protocol_errors.inc();
                CloseCause::ProtocolError
            }
        };
        if let Some(session) = self.session() {
            debug!("cp={} loop={} failed: {violation}", session.cp, cx.index);
        }
        self.fail_with(
            cx,
            key,
            violation.close_code(),
            violation.reason(),
            cause,
            true,
        )
    }

    /// Sends a close frame, shuts our side down, reports the session's end and lingers until
    /// the peer's EOF or [`CLOSE_GRACE`].
    fn fail_with(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        code: u16,
        reason: &str,
        cause: CloseCause,
        report: bool,
    ) -> Transition {
        let phase = mem::replace(&mut self.phase, Phase::Lingering);
        let (Phase::Open(session) | Phase::Closing(session)) = phase else {
            self.phase = phase;
            return Transition::Remove(cause);
        };
        self.paused = None;
        if let Some(timer) = self.call_timer_of(&session) {
            cx.wheel.cancel(timer);
        }
        let already_closing = session.closing.is_some();
        let cause = session.closing.unwrap_or(cause);
        if !already_closing {
            // Best effort: the connection is failing whatever happens to this frame.
            let _ = self.send_close(cx, code, reason);
        }
        if report {
            self.end_session(cx, key, session, cause);
        } else {
            drop_session(cx, session);
        }
        self.input.clear(&mut cx.wire.buffered.read);
        if self.transport.backlog() != 0 || !self.transport.shutdown_write(&mut cx.wire) {
            return Transition::Remove(cause);
        }
        self.arm(cx, key, CLOSE_GRACE);
        // The peer's EOF may already be waiting behind what was just read.
        Transition::Again
    }

    fn call_timer_of(&self, session: &Session) -> Option<TimerId> {
        session.calls.as_ref().and_then(|c| c.timer())
    }

    /// Counts a session's end and tells its processor (exactly once per upgraded connection).
    fn end_session(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        session: Session,
        cause: CloseCause,
    ) {
        cx.labelled().closes[cause.index()].inc();
        debug!(
            "cp={} loop={} disconnected: {}",
            session.cp,
            cx.index,
            cause.as_str()
        );
        let conn = self.id(cx, key);
        let processor = session.processor;
        let cp = ChargePointId::clone(&session.cp);
        drop_session(cx, session);
        cx.links
            .push_control(processor, Entry::Disconnected { conn, cp, cause });
    }

    /// The connection is being forgotten: reports its session's end, frees its buffers and
    /// cancels its timers.
    pub fn finish(&mut self, cx: &mut LoopContext, key: usize, cause: CloseCause) {
        if let Some(timer) = self.timer.take() {
            cx.wheel.cancel(timer);
        }
        if let Some(timer) = self.call_timer() {
            cx.wheel.cancel(timer);
        }
        match mem::replace(&mut self.phase, Phase::Lingering) {
            Phase::Open(session) | Phase::Closing(session) => {
                let cause = session.closing.unwrap_or(cause);
                self.end_session(cx, key, session, cause);
            }
            Phase::Upgrading(_) | Phase::Lingering => {}
        }
        self.input.clear(&mut cx.wire.buffered.read);
        self.transport.release(&mut cx.wire);
    }

    // ---- timers ----

    /// (Re)arms the connection's timer; while an open connection holds unfinished input, no
    /// later than that input's deadline.
    pub fn arm(&mut self, cx: &mut LoopContext, key: usize, mut delay: Duration) {
        if let Phase::Open(session) = &self.phase
            && let Some(since) = session.partial_since_ms
        {
            let due = since + cx.limits.partial_timeout.as_millis() as u64;
            delay = delay.min(Duration::from_millis(due.saturating_sub(cx.now_ms())));
        }
        if let Some(old) = self.timer.take() {
            cx.wheel.cancel(old);
        }
        let event = TimerEvent::Connection {
            key: key as u32,
            generation: self.generation,
        };
        self.timer = Some(cx.wheel.arm(cx.now, delay, event));
    }

    /// The connection's timer fired.
    pub fn on_timer(&mut self, cx: &mut LoopContext, key: usize) -> Transition {
        self.timer = None;
        let now_ms = cx.now_ms();
        match &mut self.phase {
            Phase::Upgrading(_) => {
                if !self.over_capacity {
                    cx.stats().handshake_timeouts.inc();
                }
                cx.scratch.clear();
                Refusal::RequestTimeout.write(&mut cx.scratch);
                let _ = self.transport.send(&mut cx.wire, &cx.scratch);
                Transition::Remove(CloseCause::ConnectionLost)
            }
            Phase::Closing(session) => {
                Transition::Remove(session.closing.unwrap_or(CloseCause::PeerClosed))
            }
            Phase::Lingering => Transition::Remove(CloseCause::PeerClosed),
            Phase::Open(session) => {
                let timeout_ms = cx.limits.partial_timeout.as_millis() as u64;
                if let Some(since) = session.partial_since_ms
                    && now_ms >= since + timeout_ms
                {
                    cx.stats().oversize_messages.inc();
                    debug!(
                        "cp={} loop={} message not completed in time",
                        session.cp, cx.index
                    );
                    return self.fail_with(
                        cx,
                        key,
                        1009,
                        "message not completed in time",
                        CloseCause::MessageTooBig,
                        true,
                    );
                }
                self.on_liveness_timer(cx, key, now_ms)
            }
        }
    }

    fn on_liveness_timer(&mut self, cx: &mut LoopContext, key: usize, now_ms: u64) -> Transition {
        let Phase::Open(session) = &mut self.phase else {
            return Transition::Continue;
        };
        match session.liveness {
            Liveness::Idle => self.ping_if_idle(cx, key, now_ms),
            // A pong or anything else since the ping: alive.
            Liveness::AwaitingPong { sent_ms } if session.last_rx_ms >= sent_ms => {
                session.liveness = Liveness::Idle;
                self.ping_if_idle(cx, key, now_ms)
            }
            Liveness::AwaitingPong { sent_ms } => {
                let due = sent_ms + cx.limits.pong_timeout.as_millis() as u64;
                if now_ms < due {
                    // Brought forward for a partial message that has completed since.
                    self.arm(cx, key, Duration::from_millis(due - now_ms));
                    return Transition::Continue;
                }
                cx.stats().pong_timeouts.inc();
                debug!("cp={} loop={} pong timeout", session.cp, cx.index);
                // Best effort: a peer that does not answer pings will not read this.
                let _ = self.send_close(cx, 1001, "pong timeout");
                Transition::Remove(CloseCause::PongTimeout)
            }
            Liveness::Stalled { since_ms, backlog } => {
                let due = since_ms + cx.limits.pong_timeout.as_millis() as u64;
                if now_ms < due {
                    self.arm(cx, key, Duration::from_millis(due - now_ms));
                    return Transition::Continue;
                }
                // Flush first, so reading done by the peer shows even if an edge was missed.
                let flushed = self.transport.flush(&mut cx.wire).is_ok();
                let unsent = self.transport.backlog();
                let progress = self.session().is_some_and(|s| s.last_rx_ms >= since_ms)
                    || unsent < backlog as usize;
                if flushed && progress {
                    if let Some(session) = self.session_mut() {
                        session.liveness = Liveness::Idle;
                    }
                    self.ping_if_idle(cx, key, now_ms)
                } else {
                    cx.stats().slow_consumers.inc();
                    Transition::Remove(CloseCause::SlowConsumer)
                }
            }
        }
    }

    fn ping_if_idle(&mut self, cx: &mut LoopContext, key: usize, now_ms: u64) -> Transition {
        let interval_ms = cx.limits.ping_interval.as_millis() as u64;
        let threshold = cx.limits.ping_skip_threshold;
        let backlog = self.transport.backlog();
        let Phase::Open(session) = &mut self.phase else {
            return Transition::Continue;
        };
        let idle = now_ms.saturating_sub(session.last_rx_ms);
        if idle < interval_ms {
            let delay = cx.ping_delay(idle);
            self.arm(cx, key, delay);
            return Transition::Continue;
        }
        if backlog > threshold {
            // A ping would only queue behind what the peer is not reading. It gets
            // `pong_timeout` to make progress on the backlog instead.
            session.liveness = Liveness::Stalled {
                since_ms: now_ms,
                backlog: u32::try_from(backlog).unwrap_or(u32::MAX),
            };
            cx.stats().pings_skipped.inc();
            let timeout = cx.limits.pong_timeout;
            self.arm(cx, key, timeout);
            return Transition::Continue;
        }
        session.liveness = Liveness::AwaitingPong { sent_ms: now_ms };
        cx.stats().pings_sent.inc();
        let mut frame = mem::take(&mut cx.scratch);
        frame.clear();
        websocket::encode(&mut frame, OpCode::Ping, &[], None);
        let sent = self.send_frame(cx, &frame);
        cx.scratch = frame;
        if sent == Transition::Continue {
            let timeout = cx.limits.pong_timeout;
            self.arm(cx, key, timeout);
        }
        sent
    }
}

impl Session {
    fn new(cp: ChargePointId, processor: u16, now_ms: u64) -> Session {
        Session {
            cp,
            processor,
            last_rx_ms: now_ms,
            liveness: Liveness::Idle,
            in_flight: 0,
            accepted: false,
            message: None,
            partial_since_ms: None,
            calls: None,
            closing: None,
            call_tat_ms: 0,
        }
    }
}

/// Drops a session, freeing what it held; calls in flight or waiting resolve as NotConnected,
/// their outcome lines ahead of the disconnect.
fn drop_session(cx: &mut LoopContext, mut session: Session) {
    if let Some(mut message) = session.message.take() {
        message.clear(&mut cx.wire.buffered.read);
    }
    if let Some(calls) = &mut session.calls {
        if let Some(timer) = calls.timer() {
            cx.wheel.cancel(timer);
        }
        for call in calls.drain() {
            call.resolve_in(
                CallOutcome::NotConnected,
                &mut cx.links.log(session.processor, &session.cp),
            );
        }
    }
}

/// Journals the charge point's answer to our call (the outcome is journaled on resolving).
fn journal_answer(
    cx: &mut LoopContext,
    session: &Session,
    unique_id: &str,
    action: v16::Action,
    answer: &CallOutcome,
) {
    if !cx.journal {
        return;
    }
    let kind = match answer {
        CallOutcome::Result(payload) => EventKind::ResultIn {
            unique_id,
            action,
            payload: payload.get(),
        },
        CallOutcome::Error {
            code,
            description,
            details,
        } => EventKind::ErrorIn {
            unique_id,
            action,
            code,
            description,
            details: details.get(),
        },
        _ => return,
    };
    let event = Event {
        at: std::time::SystemTime::now(),
        cp: &session.cp,
        kind,
    };
    cx.links.record(session.processor, &session.cp, &event);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::batch::{FrameBatch, Pool};
    use crate::config::Config;
    use crate::events::Events;
    use crate::mailbox::{ProcessorInbox, Processors, ToProcessor, processor_channel};
    use crate::net::timer::TimerWheel;
    use crate::net::transport::memory::MemoryStream;
    use crate::security::Security;
    use crate::stats::Stats;
    use crate::trace::TraceList;

    const KEY: usize = 3;
    const MASK: [u8; 4] = [1, 2, 3, 4];

    struct Harness {
        cx: LoopContext,
        inboxes: Vec<ProcessorInbox>,
        conn: Connection,
    }

    fn harness(change: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::default();
        config.websocket.ping_interval = Duration::from_secs(60);
        change(&mut config);
        let (handles, inboxes): (Vec<_>, Vec<_>) = (0..2)
            .map(|_| {
                processor_channel(
                    8,
                    config.processor.queue_capacity.get(),
                    config.processor.queue_bytes,
                )
            })
            .unzip();
        let processors = Processors {
            handles: handles.into(),
            batches: Pool::new(4),
        };
        let now = Instant::now();
        let cx = LoopContext::new(
            0,
            &config,
            Arc::new(Stats::new(1, 2)),
            processors,
            None,
            Events::none(),
            Arc::new(TraceList::default()),
            Arc::new(Security::default()),
            TimerWheel::new(now, Duration::from_millis(10), 64),
        );
        let transport = Transport::memory(MemoryStream::default());
        let peer = "127.0.0.1:4000".parse().unwrap();
        let conn = Connection::new(1, transport, peer, Profile::Unsecured, false);
        Harness { cx, inboxes, conn }
    }

    fn client_frame(opcode: OpCode, payload: &[u8], fin: bool) -> Vec<u8> {
        let mut out = Vec::new();
        websocket::encode(&mut out, opcode, payload, Some(MASK));
        if !fin {
            out[0] &= 0x7F;
        }
        out
    }

    fn text(payload: &str) -> Vec<u8> {
        client_frame(OpCode::Text, payload.as_bytes(), true)
    }

    impl Harness {
        fn stream(&mut self) -> &mut MemoryStream {
            self.conn.transport.memory_mut()
        }

        /// What the peer sends next, then a readable event.
        fn receive(&mut self, bytes: &[u8]) -> Transition {
            self.stream().input.extend(bytes);
            self.conn.on_readable(&mut self.cx, KEY)
        }

        fn upgrade(&mut self) {
            let request = "GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                           Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                           Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n";
            assert_eq!(self.receive(request.as_bytes()), Transition::Continue);
            assert!(self.conn.is_open());
            let output = std::mem::take(&mut self.stream().output);
            assert!(
                output.starts_with(b"HTTP/1.1 101 "),
                "{}",
                String::from_utf8_lossy(&output)
            );
        }

        /// The frames we wrote since the last look: (opcode, payload).
        fn sent(&mut self) -> Vec<(OpCode, Vec<u8>)> {
            let output = std::mem::take(&mut self.stream().output);
            let mut frames = Vec::new();
            let mut at = 0;
            while at < output.len() {
                let header = websocket::parse_header(&output[at..], Role::Client, usize::MAX)
                    .unwrap()
                    .unwrap();
                frames.push((header.opcode, output[at..][header.payload()].to_vec()));
                at += header.frame_len();
            }
            frames
        }

        /// Everything handed to the processors so far.
        fn handed_over(&mut self) -> Vec<FrameBatch> {
            self.cx.links.flush(self.cx.now, true);
            self.inboxes
                .iter()
                .flat_map(|inbox| inbox.rx.try_iter())
                .filter_map(|msg| match msg {
                    ToProcessor::Batch(batch) => Some(batch),
                    _ => None,
                })
                .collect()
        }

        /// The texts of the messages handed over so far.
        fn messages(&mut self) -> Vec<String> {
            let batches = self.handed_over();
            batches
                .iter()
                .flat_map(|batch| {
                    batch.entries().iter().filter_map(|entry| match entry {
                        Entry::Message { text, .. } => Some(batch.text(text).to_owned()),
                        _ => None,
                    })
                })
                .collect()
        }

        fn session(&self) -> &Session {
            self.conn.session().expect("a session")
        }
    }

    #[test]
    fn the_upgrade_and_a_frame_in_the_same_read() {
        let mut h = harness(|_| {});
        let mut bytes = b"GET /ocpp/CP1 HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
            .to_vec();
        bytes.extend(text(r#"[2,"1","Heartbeat",{}]"#));
        assert_eq!(h.receive(&bytes), Transition::Continue);
        let batches = h.handed_over();
        let entries: Vec<&Entry> = batches.iter().flat_map(|b| b.entries()).collect();
        assert!(matches!(entries[0], Entry::Connected { cp, .. } if &**cp == "CP1"));
        assert!(matches!(entries[1], Entry::Message { .. }));
        assert_eq!(h.session().in_flight, 1);
        assert_eq!(h.cx.wire.buffered.read, 0, "nothing held");
    }

    #[test]
    fn a_refused_upgrade_is_answered_and_removed() {
        let mut h = harness(|_| {});
        let request = "GET /elsewhere HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let half = &request.as_bytes()[..20];
        assert_eq!(h.receive(half), Transition::Continue);
        assert_eq!(
            h.cx.wire.buffered.read,
            h.conn.input.capacity(),
            "the half request is held"
        );
        let rest = &request.as_bytes()[20..];
        assert_eq!(
            h.receive(rest),
            Transition::Remove(CloseCause::ConnectionLost)
        );
        assert!(h.stream().output.starts_with(b"HTTP/1.1 404 "));
    }

    #[test]
    fn unfinished_frames_and_messages_are_held_sized_and_freed() {
        let mut h = harness(|_| {});
        h.upgrade();
        let frame = text(&format!(
            r#"[2,"1","DataTransfer",{{"vendorId":"{}"}}]"#,
            "v".repeat(2000)
        ));
        assert_eq!(h.receive(&frame[..100]), Transition::Continue);
        assert_eq!(
            h.conn.input.capacity(),
            frame.len(),
            "held at the frame's size"
        );
        assert_eq!(h.cx.wire.buffered.read, frame.len());
        assert!(h.session().partial_since_ms.is_some());
        assert_eq!(h.receive(&frame[100..]), Transition::Continue);
        assert_eq!((h.cx.wire.buffered.read, h.conn.input.capacity()), (0, 0));
        assert_eq!(h.messages().len(), 1);

        h.conn.session_mut().unwrap().in_flight = 0;
        let first = client_frame(OpCode::Text, br#"[2,"2","Heart"#, false);
        let second = client_frame(OpCode::Continuation, br#"beat",{}]"#, true);
        assert_eq!(h.receive(&first), Transition::Continue);
        assert!(h.cx.wire.buffered.read > 0 && h.session().message.is_some());
        assert_eq!(h.receive(&second), Transition::Continue);
        assert_eq!(h.cx.wire.buffered.read, 0);
        assert!(h.session().partial_since_ms.is_none());
        assert_eq!(h.messages(), [r#"[2,"2","Heartbeat",{}]"#]);
    }

    #[test]
    fn violations_fail_the_connection_with_their_codes() {
        for (bytes, code) in [
            (client_frame(OpCode::Binary, b"x", true), 1003),
            (vec![0x81, 0x01, b'x'], 1002), // unmasked
            (client_frame(OpCode::Text, &[0xff, 0xfe], true), 1007),
            (client_frame(OpCode::Continuation, b"x", true), 1002),
            (client_frame(OpCode::Text, &vec![b'a'; 70_000], true), 1009),
        ] {
            let mut h = harness(|_| {});
            h.upgrade();
            let transition = h.receive(&bytes);
            let sent = h.sent();
            let (opcode, payload) = sent.last().expect("a close frame");
            assert_eq!(*opcode, OpCode::Close);
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
            if code == 1003 {
                assert!(
                    matches!(h.conn.phase, Phase::Closing(_)),
                    "a close handshake"
                );
                assert_eq!(transition, Transition::Again);
            } else {
                assert!(matches!(h.conn.phase, Phase::Lingering), "failed: {code}");
                assert!(h.stream().write_shut);
                assert_eq!(transition, Transition::Again);
            }
        }
    }

    #[test]
    fn pipelined_calls_pause_reading_until_an_answer() {
        let mut h = harness(|c| c.ocpp.max_pipelined_calls = 2);
        h.upgrade();
        let mut bytes = Vec::new();
        for id in 1..=3 {
            bytes.extend(text(&format!(r#"[2,"{id}","Heartbeat",{{}}]"#)));
        }
        assert_eq!(h.receive(&bytes), Transition::Pause(Pause::Calls));
        h.conn.paused = Some(Pause::Calls);
        assert_eq!(h.messages().len(), 2);
        assert!(!h.conn.input.is_empty(), "the third is held unread");
        let mut answer = Vec::new();
        websocket::encode(&mut answer, OpCode::Text, b"[3,\"1\",{}]", None);
        assert_eq!(h.conn.deliver(&mut h.cx, &answer, false), Transition::Again);
        assert_eq!(h.conn.on_readable(&mut h.cx, KEY), Transition::Continue);
        assert_eq!(h.messages().len(), 1);
        assert!(h.conn.input.is_empty());
    }

    #[test]
    fn a_full_processor_queue_pauses_reading() {
        let mut h =
            harness(|c| c.processor.queue_capacity = std::num::NonZeroUsize::new(1).unwrap());
        h.upgrade();
        let mut bytes = text(r#"[2,"1","Heartbeat",{}]"#);
        bytes.extend(text(r#"[2,"2","Heartbeat",{}]"#));
        let transition = h.receive(&bytes);
        let processor = h.session().processor;
        let heartbeat_len = r#"[2,"1","Heartbeat",{}]"#.len() as u32;
        assert_eq!(
            transition,
            Transition::Pause(Pause::Processor(processor, heartbeat_len))
        );
    }

    #[test]
    fn the_budget_pauses_and_a_message_held_too_long_closes_with_1009() {
        let mut h = harness(|c| {
            c.websocket.max_message_size = 1024;
            c.websocket.partial_message_budget = 1100;
            c.websocket.partial_message_timeout = Duration::from_secs(5);
        });
        h.upgrade();
        let first = client_frame(OpCode::Text, &[b'a'; 1000], false);
        assert_eq!(h.receive(&first), Transition::Continue);
        assert_eq!(h.cx.wire.buffered.read, 1000, "the first fragment is held");
        // Other connections hold the rest of the budget: a connection holding an unfinished
        // message is not read any further (its bytes stay in the socket).
        h.cx.wire.buffered.read += 5000;
        let more = client_frame(OpCode::Continuation, &[b'a'; 10], false);
        assert_eq!(h.receive(&more), Transition::Pause(Pause::Budget));
        assert_eq!(h.stream().input.len(), more.len(), "nothing was read");
        // Still unfinished after partial_message_timeout: closed with 1009.
        h.cx.now += Duration::from_secs(6);
        assert_eq!(h.conn.on_timer(&mut h.cx, KEY), Transition::Again);
        let sent = h.sent();
        let (opcode, payload) = sent.last().unwrap();
        assert_eq!(
            (*opcode, &payload[..2]),
            (OpCode::Close, &1009u16.to_be_bytes()[..])
        );
        assert_eq!(h.cx.wire.buffered.read, 5000, "what it held is freed");
    }

    #[test]
    fn idle_pings_and_a_missing_pong_closes() {
        let mut h = harness(|_| {});
        h.upgrade();
        h.cx.now += Duration::from_secs(61);
        assert_eq!(h.conn.on_timer(&mut h.cx, KEY), Transition::Continue);
        assert_eq!(h.sent(), [(OpCode::Ping, vec![])]);
        assert!(matches!(
            h.session().liveness,
            Liveness::AwaitingPong { .. }
        ));
        h.cx.now += Duration::from_secs(31);
        assert_eq!(
            h.conn.on_timer(&mut h.cx, KEY),
            Transition::Remove(CloseCause::PongTimeout)
        );

        let mut h = harness(|_| {});
        h.upgrade();
        h.cx.now += Duration::from_secs(61);
        h.conn.on_timer(&mut h.cx, KEY);
        h.sent();
        assert_eq!(
            h.receive(&client_frame(OpCode::Pong, b"", true)),
            Transition::Continue
        );
        h.cx.now += Duration::from_secs(31);
        assert_eq!(
            h.conn.on_timer(&mut h.cx, KEY),
            Transition::Continue,
            "a pong is life"
        );
        assert_eq!(h.session().liveness, Liveness::Idle);
    }

    #[test]
    fn pings_are_answered_and_a_close_is_echoed() {
        let mut h = harness(|_| {});
        h.upgrade();
        assert_eq!(
            h.receive(&client_frame(OpCode::Ping, b"hi", true)),
            Transition::Continue
        );
        assert_eq!(h.sent(), [(OpCode::Pong, b"hi".to_vec())]);
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        let transition = h.receive(&client_frame(OpCode::Close, &close, true));
        assert_eq!(transition, Transition::Remove(CloseCause::PeerClosed));
        assert_eq!(h.sent()[0].0, OpCode::Close);
    }

    #[test]
    fn eof_without_a_close_is_a_lost_connection() {
        let mut h = harness(|_| {});
        h.upgrade();
        h.stream().eof = true;
        assert_eq!(
            h.conn.on_readable(&mut h.cx, KEY),
            Transition::Remove(CloseCause::ConnectionLost)
        );
    }

    #[test]
    fn an_accepted_charge_points_heartbeat_is_answered_here_and_handed_on() {
        let mut h = harness(|_| {});
        h.upgrade();
        // Not known to be accepted: the processor answers.
        assert_eq!(
            h.receive(&text(r#"[2,"1","Heartbeat",{}]"#)),
            Transition::Continue
        );
        assert!(h.sent().is_empty());
        assert_eq!(h.messages().len(), 1);
        let mut answer = Vec::new();
        websocket::encode(
            &mut answer,
            OpCode::Text,
            br#"[3,"1",{"currentTime":"x"}]"#,
            None,
        );
        h.conn.deliver(&mut h.cx, &answer, true);
        h.sent();
        // Accepted, nothing in flight: answered by the loop.
        assert_eq!(
            h.receive(&text(r#"[2,"2","Heartbeat",{}]"#)),
            Transition::Continue
        );
        let sent = h.sent();
        let reply: serde_json::Value = serde_json::from_slice(&sent[0].1).unwrap();
        assert_eq!((reply[0].as_u64(), reply[1].as_str()), (Some(3), Some("2")));
        assert!(reply[2]["currentTime"].as_str().unwrap().ends_with('Z'));
        let batches = h.handed_over();
        let answered = batches
            .iter()
            .flat_map(|b| b.entries())
            .any(|e| matches!(e, Entry::Answered { .. }));
        assert!(answered, "the exchange still reaches the processor");
        // Anything else, or an invalid Heartbeat, goes to the processor.
        h.receive(&text(r#"[2,"3","Heartbeat",{"x":1}]"#));
        assert!(h.sent().is_empty());
        assert_eq!(h.messages().len(), 1);
    }
}
