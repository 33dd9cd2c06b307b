//! Reading: bytes from the transport to complete frames and messages, where the loop's shared
//! buffer put them; unfinished input held and budgeted; the pauses (processor queue, pipelining,
//! rate, budget); the peer's close frame and a failed read.

use super::*;

impl Connection {
    /// Consumes what is held, then reads until the socket is drained, paused, or this turn's
    /// share of reads is used.
    pub fn on_readable(&mut self, cx: &mut LoopContext, key: usize) -> Transition {
        if self.paused.is_some() {
            return Transition::Continue;
        }
        if !self.input.is_empty() {
            // Before the upgrade what a connection holds counts apart (`Buffered::upgrading`);
            // the upgrade, done while consuming, moves what it holds then.
            let mut held = self
                .input
                .take(cx.wire.buffered.held(self.transport.is_upgrading()));
            let outcome = self.consume(cx, key, &mut held);
            let used = match outcome {
                Consumed::All(n) | Consumed::Stopped(n, _) => n,
            };
            let gauge = cx.wire.buffered.held(self.transport.is_upgrading());
            self.input.put(gauge, held);
            self.input.consume(gauge, used);
            if self.input.is_empty() {
                // What a pause held back is consumed: no partial-message clock runs for it.
                self.partial_done();
            }
            if let Consumed::Stopped(_, transition) = outcome {
                return transition;
            }
        }
        for _ in 0..READS_PER_TURN {
            if self.over_upgrade_budget(cx) {
                // Unauthenticated peers hold all that connections may hold before their
                // upgrade and this one holds part of it: the oldest holders go first (those
                // that hold on longest, slowloris, not a station whose handshake spans two
                // reads). One holding nothing, a station starting its handshake, reads (and
                // makes room if what it keeps takes the loop past the budget); the upgraded
                // are not touched.
                return Transition::MakeRoom { read_on: true };
            }
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
            if let Some(proxied) = self.transport.take_proxied()
                && let Phase::Upgrading(upgrading) = &mut self.phase
            {
                if let Some(peer) = proxied.source {
                    upgrading.peer = peer;
                }
                upgrading.ssl = proxied.ssl;
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
            if matches!(transition, Some(Transition::Continue)) && self.over_upgrade_budget(cx) {
                // It held nothing and read past the budget: room is made now, so that what
                // connections hold before their upgrade stays within it (not one request
                // each over it, for as many connections as may be open). Its socket is drained:
                // nothing to read on.
                return Transition::MakeRoom { read_on: false };
            }
            if let Some(transition) = transition {
                return transition;
            }
        }
        if self.over_upgrade_budget(cx) {
            return Transition::MakeRoom { read_on: true }; // the last read took it there
        }
        Transition::Again
    }

    /// In its handshake and holding bytes while unauthenticated peers hold all they may.
    fn over_upgrade_budget(&self, cx: &LoopContext) -> bool {
        self.is_upgrading()
            && cx.wire.buffered.upgrading >= cx.limits.upgrade_budget
            && self.holds_input()
    }

    /// Consumes freshly read bytes (in the shared buffer), keeping what is unfinished.
    pub(super) fn take_input(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        data: &mut [u8],
    ) -> Transition {
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
            } else if used == data.len() {
                self.partial_done();
            }
            return transition;
        }
        // Appended to what is held: a frame admitted earlier has its room already.
        let upgrading = self.transport.is_upgrading();
        let frame = if upgrading {
            0
        } else {
            self.frame_len_hint(cx, self.input.as_slice())
        };
        let room = cx
            .limits
            .partial_budget
            .saturating_sub(cx.wire.buffered.read)
            + self.input.capacity();
        let expect = if frame <= room { frame } else { 0 };
        self.input
            .extend(cx.wire.buffered.held(upgrading), data, expect);
        let mut held = self.input.take(cx.wire.buffered.held(upgrading));
        let outcome = self.consume(cx, key, &mut held);
        let (used, transition) = match outcome {
            Consumed::All(n) => (n, Transition::Continue),
            Consumed::Stopped(n, t) => (n, t),
        };
        let gauge = cx.wire.buffered.held(self.transport.is_upgrading());
        self.input.put(gauge, held);
        self.input.consume(gauge, used);
        if self.input.is_empty() {
            self.partial_done();
        }
        transition
    }

    /// Keeps the start of an unfinished frame. When its header is complete and the budget has
    /// room for the whole frame, room for all of it is taken at once (the frame is admitted:
    /// reading the rest needs nothing more, so it can always complete); otherwise only these
    /// bytes are kept and false says the connection must wait for room.
    pub(super) fn retain(&mut self, cx: &mut LoopContext, bytes: &[u8]) -> bool {
        if self.transport.is_upgrading() {
            // An unfinished PROXY header, handshake or upgrade request: bounded per connection
            // by its parser and per loop by `Limits::upgrade_budget` (`on_readable`).
            self.input.extend(&mut cx.wire.buffered.upgrading, bytes, 0);
            return true;
        }
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
    pub(super) fn needs_room(&self, cx: &LoopContext) -> bool {
        if self.transport.is_upgrading() {
            return false; // not the partial-message budget's
        }
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
    pub(super) fn frame_len_hint(&self, cx: &LoopContext, data: &[u8]) -> usize {
        if !matches!(self.phase, Phase::Open(_) | Phase::Closing(_)) {
            return 0;
        }
        match websocket::parse_header(data, Role::Server, cx.limits.max_message) {
            Ok(Some(header)) => header.frame_len(),
            _ => 0,
        }
    }

    /// Consumes complete units (the upgrade request, frames) at the start of `data`.
    pub(super) fn consume(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        data: &mut [u8],
    ) -> Consumed {
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
            if self.peer_closed() {
                // Nothing follows a Close (RFC 6455 5.5.1): what came after it is dropped.
                return Consumed::All(data.len());
            }
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
            let end = used + header.frame_len();
            // A ping followed at once by another needs no pong of its own: the latest is
            // answered (RFC 6455 5.5.3), so a flood of pings costs one write per read, not one
            // per 6 bytes.
            if header.opcode == OpCode::Ping && next_is_ping(&data[end..], cx.limits.max_message) {
                used = end;
                continue;
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

    /// Whether the message this final frame completes counts as a CALL ([`starts_a_call`]: a
    /// peek at its first bytes, unmasked on the side; for a fragmented message, at the part
    /// already held).
    pub(super) fn is_call(&self, header: &websocket::Header, frame: &[u8]) -> bool {
        if let Some(held) = self.session().and_then(|s| s.message.as_ref()) {
            return starts_a_call(&held.as_slice()[..held.len().min(16)]);
        }
        let payload = &frame[header.payload()];
        let mut start = [0u8; 16];
        let n = payload.len().min(start.len());
        start[..n].copy_from_slice(&payload[..n]);
        if let Some(mask) = header.mask {
            websocket::apply_mask(&mut start[..n], mask);
        }
        starts_a_call(&start[..n])
    }

    /// `ocpp.max_calls_per_second` (GCRA: each CALL moves the session's theoretical arrival
    /// time on by one interval per started [`CALL_UNIT_BYTES`] of its `len`; a burst may run
    /// that far ahead of the clock). Over it, the connection is not read until the CALL fits
    /// (TCP pushes back on the charge point); each such pause is counted, and told to the
    /// processor for the API. Weighing by size bounds the bytes a charge point can make the
    /// gateway parse and journal, not only the CALLs.
    pub(super) fn over_rate(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        len: usize,
    ) -> Option<Pause> {
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
    pub(super) fn blocked(&self, cx: &LoopContext, len: usize) -> Option<Pause> {
        let Phase::Open(session) = &self.phase else {
            return None;
        };
        if session.in_flight >= cx.limits.max_pipelined {
            return Some(Pause::Calls);
        }
        (!cx.links.has_room(session.processor, len))
            .then_some(Pause::Processor(session.processor, len as u32))
    }

    pub(super) fn on_frame(
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
    pub(super) fn on_close_frame(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        payload: &[u8],
    ) -> Transition {
        if let Err(violation) = websocket::parse_close(payload) {
            return self.fail(cx, key, violation);
        }
        match self.phase.take() {
            Phase::Open(session) => {
                let cause = CloseCause::PeerClosed;
                self.phase = Phase::Closing(session.close(cause));
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
            Phase::Closing(closing) => {
                let cause = closing.cause;
                self.phase = Phase::Closing(closing);
                Transition::Remove(cause)
            }
            other => {
                self.phase = other;
                Transition::Continue
            }
        }
    }

    /// The peer's Close frame came (our answer to it may still be on its way out).
    fn peer_closed(&self) -> bool {
        matches!(&self.phase, Phase::Closing(closing) if closing.peer_closed())
    }

    /// Holds nothing unfinished any more.
    pub(super) fn partial_done(&mut self) {
        if let Some(session) = self.session_mut()
            && session.message.is_none()
        {
            session.set_partial_since_ms(None);
        }
    }

    /// Unfinished input is held: start its clock and bring the timer forward to its deadline
    /// ([`Connection::arm`] does that while anything is held).
    pub(super) fn note_partial(&mut self, cx: &mut LoopContext, key: usize) {
        let now_ms = cx.now_ms();
        let due = self.liveness_due_ms(cx);
        if let Phase::Open(session) = &mut self.phase
            && session.partial_since_ms().is_none()
        {
            session.set_partial_since_ms(Some(now_ms));
            self.arm(cx, key, Duration::from_millis(due.saturating_sub(now_ms)));
        }
    }

    /// When the liveness timer of an open connection is due, in loop ms.
    pub(super) fn liveness_due_ms(&self, cx: &LoopContext) -> u64 {
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
    pub(super) fn read_failed(&mut self, cx: &mut LoopContext, error: ReadError) -> Transition {
        match &error {
            ReadError::Io(e) => debug!("loop={} read failed: {e}", cx.index),
            ReadError::Tls(e) => {
                cx.stats().tls_failures.inc();
                if matches!(
                    e,
                    transport::tls::TlsError::Protocol(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::Revoked
                    ))
                ) {
                    cx.stats().certificates_revoked.inc();
                }
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
    pub(super) fn who(&self) -> String {
        match &self.phase {
            Phase::Upgrading(upgrading) => format!("peer={}", upgrading.peer),
            Phase::Open(s) | Phase::Closing(Closing { session: s, .. }) => format!("cp={}", s.cp),
            Phase::Lingering => "peer=-".into(),
        }
    }

    /// EOF or a reset from the peer: without a closing handshake, the connection was lost
    /// (RFC 6455's 1006); after we started closing, it ends as we meant it to.
    pub(super) fn peer_gone(&self) -> Transition {
        Transition::Remove(match &self.phase {
            Phase::Upgrading(_) | Phase::Open(_) => CloseCause::ConnectionLost,
            Phase::Lingering => CloseCause::PeerClosed,
            Phase::Closing(closing) => closing.cause,
        })
    }
}

/// Whether a message counts as a CALL (rate limit, pipelining) by its first bytes: everything
/// but an answer to a call of ours (CALLRESULT, CALLERROR, which the loop matches itself) does:
/// 2.1's SEND and CALLRESULTERROR (both go to the processor), and anything the peek cannot read
/// whole. The type is an answer's only when a character follows its digits within the peek,
/// so neither leading whitespace, nor a multibyte character cut at the end of the peek, nor a
/// `[3` that goes on as `[30` hides a CALL from the limit.
pub(super) fn starts_a_call(start: &[u8]) -> bool {
    const SPACE: [char; 4] = [' ', '\t', '\n', '\r'];
    let text = match std::str::from_utf8(start) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&start[..e.valid_up_to()]).unwrap_or(""),
    };
    let Some(rest) = text.trim_start_matches(SPACE).strip_prefix('[') else {
        return true;
    };
    let rest = rest.trim_start_matches(SPACE);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let answer = digits < rest.len() && matches!(&rest[..digits], "3" | "4");
    !answer
}

/// Whether `data` starts with a complete ping frame.
fn next_is_ping(data: &[u8], max_message: usize) -> bool {
    matches!(
        websocket::parse_header(data, Role::Server, max_message),
        Ok(Some(header)) if header.opcode == OpCode::Ping && header.frame_len() <= data.len()
    )
}
