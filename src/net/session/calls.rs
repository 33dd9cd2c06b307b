//! Calls of the central system on this connection: one in flight, the rest queued, each with
//! its timeout.

use super::*;

impl Connection {
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
    pub(super) fn send_call(
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
        let labelled = cx.labelled();
        match call.action() {
            ocpp::AnyAction::V16(action) => labelled.calls_sent_by_action[action.index()].inc(),
            ocpp::AnyAction::V201(action) | ocpp::AnyAction::V21(action) => {
                labelled.calls_sent_by_action_v201[action.index()].inc()
            }
        }
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
    pub(super) fn send_next_call(&mut self, cx: &mut LoopContext, key: usize) -> Transition {
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
}
