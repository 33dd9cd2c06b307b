//! Messages in and frames out. In: a complete message, a CALL for the processor (or a
//! Heartbeat the loop may answer itself, with the protocol crate's answer), or the charge
//! point's answer to a call of ours. Out: frames the loop built or a processor answered, pongs
//! and close frames, the write backlog drained on a writable edge. A Heartbeat the loop answers
//! goes from its frame to its answer's write in this file and the protocol crate's
//! `v16::heartbeat` alone.

use super::*;

impl Connection {
    /// A complete text message.
    pub(super) fn on_message(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        text: &str,
    ) -> Transition {
        let conn_id = self.id(cx, key);
        let open = self.is_open();
        let Some(session) = self.session_mut() else {
            return Transition::Continue;
        };
        cx.stats().messages_in.inc();
        if !cx.traces.is_empty() && cx.traces.contains(&session.cp) {
            info!(target: TRACE_TARGET, "cp={} loop={} in: {}", session.cp, cx.index, escape_newlines(text));
        }
        if open
            && session.accepted
            && session.in_flight == 0
            && let Some(transition) = self.answer_heartbeat(cx, key, text)
        {
            return transition;
        }
        match rpc::message_type(text) {
            Some(3 | 4) => return self.on_response(cx, key, text),
            // While closing only answers to our call in flight still count.
            _ if !open => return Transition::Continue,
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
    /// its processor would (the loop's wall clock, read at the start of each turn and after
    /// processors' answers were delivered), and written at once; then the exchange
    /// goes to the processor to be counted and journaled in order with the rest of the charge
    /// point. Nothing else a processor knows enters the answer, and with nothing of this
    /// connection in flight no earlier message can be overtaken. None: not such a Heartbeat
    /// (or a clock that cannot be written); the processor answers.
    pub(super) fn answer_heartbeat(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        text: &str,
    ) -> Option<Transition> {
        let unique_id = v16::heartbeat::call_id(text)?;
        if cx.wall_text.is_empty() {
            return None; // a clock that cannot be written: the processor answers InternalError
        }
        let mut frame = mem::take(&mut cx.scratch);
        frame.clear();
        frame.extend_from_slice(&[0; websocket::HEADER_ROOM]);
        let answer_range = v16::heartbeat::write_answer(&mut frame, unique_id, &cx.wall_text);
        let start = websocket::seal_text(&mut frame, 0);
        if let Some(session) = self.session()
            && !cx.traces.is_empty()
            && cx.traces.contains(&session.cp)
        {
            let shown = String::from_utf8_lossy(&frame[websocket::HEADER_ROOM..]);
            info!(target: TRACE_TARGET, "cp={} loop={} out: {}", session.cp, cx.index, escape_newlines(&shown));
        }
        cx.stats().heartbeats_answered.inc();
        cx.stats().messages_out.inc();
        let took = cx.now.elapsed();
        let transition = self.send_frame(cx, &frame[start..]);
        // The phase stays until the loop acts on the transition, a failed write included.
        let conn = self.id(cx, key);
        if let Some(session) = self.session() {
            let answer = std::str::from_utf8(&frame[answer_range]).unwrap_or("{}");
            let at = (cx.wall, took);
            let (processor, cp) = (session.processor, &session.cp);
            cx.links
                .push_answered(processor, conn, cp, (text, answer), at, cx.now);
        }
        cx.scratch = frame;
        Some(transition)
    }

    /// A CALLRESULT or CALLERROR: the answer to our call in flight, or logged and dropped.
    pub(super) fn on_response(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        text: &str,
    ) -> Transition {
        let ocpp21 = self.session().is_some_and(|s| s.version == Version::V21);
        let parsed = if ocpp21 {
            rpc::parse_frame_21(text)
        } else {
            rpc::parse_frame(text)
        };
        let (unique_id, outcome) = match parsed {
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
            // A CALLRESULTERROR answers a CALLRESULT of ours, never a call: the processor's.
            Ok(Frame::Call { .. } | Frame::Send { .. } | Frame::CallResultError { .. })
            | Err(FrameError::UnknownMessageType { .. }) => {
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
        let mut result_error = None;
        let outcome = match outcome {
            CallOutcome::Result(payload) => match call.action().check_response(&payload) {
                Ok(()) => {
                    cx.stats().call_results.inc();
                    CallOutcome::Result(payload)
                }
                Err(invalid) => {
                    cx.stats().invalid_results.inc();
                    if ocpp21 {
                        // 2.1 tells the station its CALLRESULT was not usable.
                        let mut text = Vec::new();
                        rpc::write_call_result_error(
                            &mut text,
                            &unique_id,
                            invalid.code,
                            &invalid.description,
                        );
                        result_error = Some(text);
                    }
                    CallOutcome::InvalidResult(invalid)
                }
            },
            other => {
                cx.stats().call_errors_received.inc();
                other
            }
        };
        call.resolve_in(outcome, &mut cx.links.log(session.processor, &session.cp));
        if let Some(text) = result_error {
            let mut frame = mem::take(&mut cx.scratch);
            frame.clear();
            websocket::encode(&mut frame, OpCode::Text, &text, None);
            let sent = self.send_frame(cx, &frame);
            cx.scratch = frame;
            if sent != Transition::Continue {
                return sent;
            }
        }
        self.send_next_call(cx, key)
    }
}

/// Journals the charge point's answer to our call (the outcome is journaled on resolving).
fn journal_answer(
    cx: &mut LoopContext,
    session: &Session,
    unique_id: &str,
    action: ocpp::AnyAction,
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
