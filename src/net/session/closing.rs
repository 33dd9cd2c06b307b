//! The closing phase: the closing handshake ([`Closing`]), failing the connection on a
//! violation (then it lingers), and the session's end reported exactly once.

use super::*;

/// A session whose closing handshake started: the cause its end is reported as (the first one
/// given: ours, or [`CloseCause::PeerClosed`] when the peer closed first).
pub struct Closing {
    pub session: Session,
    pub cause: CloseCause,
}

impl Closing {
    /// The peer's Close frame came (our answer to it may still be on its way out).
    pub(super) fn peer_closed(&self) -> bool {
        self.cause == CloseCause::PeerClosed
    }
}

impl Connection {
    /// Sends a close frame and waits (bounded by [`CLOSE_GRACE`]) for the peer's.
    pub fn close(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        code: u16,
        reason: &str,
        cause: CloseCause,
    ) -> Transition {
        match self.phase.take() {
            Phase::Open(session) => {
                self.phase = Phase::Closing(session.close(cause));
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
    pub(super) fn fail(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        violation: Violation,
    ) -> Transition {
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
    pub(super) fn fail_with(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        code: u16,
        reason: &str,
        cause: CloseCause,
        report: bool,
    ) -> Transition {
        let (session, closing) = match self.phase.take() {
            Phase::Open(session) => (session, None),
            Phase::Closing(Closing { session, cause }) => (session, Some(cause)),
            phase => {
                self.phase = phase;
                return Transition::Remove(cause);
            }
        };
        self.paused = None;
        if let Some(timer) = self.call_timer_of(&session) {
            cx.wheel.cancel(timer);
        }
        let cause = closing.unwrap_or(cause);
        if closing.is_none() {
            // Best effort: the connection is failing whatever happens to this frame.
            let _ = self.send_close(cx, code, reason);
        }
        if report {
            self.end_session(cx, key, session, cause);
        } else {
            drop_session(cx, session);
        }
        self.input
            .clear(cx.wire.buffered.held(self.transport.is_upgrading()));
        if self.transport.backlog() != 0 || !self.transport.shutdown_write(&mut cx.wire) {
            return Transition::Remove(cause);
        }
        self.arm(cx, key, CLOSE_GRACE);
        // The peer's EOF may already be waiting behind what was just read.
        Transition::Again
    }

    pub(super) fn call_timer_of(&self, session: &Session) -> Option<TimerId> {
        session.calls.as_ref().and_then(|c| c.timer())
    }

    /// Counts a session's end and tells its processor (exactly once per upgraded connection).
    pub(super) fn end_session(
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
        match self.phase.take() {
            Phase::Open(session) => self.end_session(cx, key, session, cause),
            Phase::Closing(Closing { session, cause }) => {
                self.end_session(cx, key, session, cause);
            }
            Phase::Upgrading(_) | Phase::Lingering => {}
        }
        self.input
            .clear(cx.wire.buffered.held(self.transport.is_upgrading()));
        self.transport.release(&mut cx.wire);
    }
}

/// Drops a session, freeing what it held; calls in flight or waiting resolve as NotConnected,
/// their outcome lines ahead of the disconnect.
pub(super) fn drop_session(cx: &mut LoopContext, mut session: Session) {
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
