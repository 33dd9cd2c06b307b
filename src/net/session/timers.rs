//! The connection's one timer: handshake deadline, ping when idle, pong deadline, slow consumer,
//! partial-message deadline, close deadline.

use super::*;

impl Connection {
    /// (Re)arms the connection's timer; while an open connection holds unfinished input, no
    /// later than that input's deadline.
    pub fn arm(&mut self, cx: &mut LoopContext, key: usize, mut delay: Duration) {
        if let Phase::Open(session) = &self.phase
            && let Some(since) = session.partial_since_ms()
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
            Phase::Closing(closing) => Transition::Remove(closing.cause),
            Phase::Lingering => Transition::Remove(CloseCause::PeerClosed),
            Phase::Open(session) => {
                let timeout_ms = cx.limits.partial_timeout.as_millis() as u64;
                if let Some(since) = session.partial_since_ms()
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

    pub(super) fn on_liveness_timer(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        now_ms: u64,
    ) -> Transition {
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
                if self.paused.is_some() {
                    // Not read while paused (a full processor queue, the budget, the rate):
                    // the pong may be waiting in the socket. Looked at again a timeout later;
                    // a dead peer is found once reading resumes.
                    let again = cx.limits.pong_timeout;
                    self.arm(cx, key, again);
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

    pub(super) fn ping_if_idle(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        now_ms: u64,
    ) -> Transition {
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
