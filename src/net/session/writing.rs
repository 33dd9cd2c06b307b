//! Writing: frames the loop built or a processor answered, pongs and close frames, the write
//! backlog drained on a writable edge.

use super::*;

impl Connection {
    /// A writable edge: the kernel has room for the backlog again.
    pub fn on_writable(&mut self, cx: &mut LoopContext) -> Transition {
        if self.transport.backlog() == 0 {
            return Transition::Continue;
        }
        match self.transport.flush(&mut cx.wire) {
            Ok(true) => match &self.phase {
                // Our answer to the peer's close is out: done.
                Phase::Closing(closing) if closing.peer_closed() => {
                    Transition::Remove(CloseCause::PeerClosed)
                }
                _ => Transition::Continue,
            },
            Ok(false) => Transition::Continue,
            Err(_) => Transition::Remove(self.lost_cause()),
        }
    }

    pub(super) fn lost_cause(&self) -> CloseCause {
        match &self.phase {
            Phase::Closing(closing) => closing.cause,
            _ => CloseCause::ConnectionLost,
        }
    }

    /// Writes one complete frame (an answer from a processor, or one the loop built).
    pub(super) fn send_frame(&mut self, cx: &mut LoopContext, frame: &[u8]) -> Transition {
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
    pub(super) fn send_close(
        &mut self,
        cx: &mut LoopContext,
        code: u16,
        reason: &str,
    ) -> Transition {
        let mut frame = mem::take(&mut cx.scratch);
        frame.clear();
        websocket::encode_close(&mut frame, code, reason, None);
        let sent = self.send_frame(cx, &frame);
        cx.scratch = frame;
        sent
    }

    pub(super) fn send_pong(&mut self, cx: &mut LoopContext, payload: &[u8]) -> Transition {
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

    pub(super) fn resume_after_answer(&mut self) -> Transition {
        if self.paused == Some(Pause::Calls) {
            self.paused = None;
            return Transition::Again;
        }
        Transition::Continue
    }
}
