//! Calls from the central system to a charge point (RemoteStartTransaction, Reset, ...): the
//! internal API the operator API and, later, Redis use, and the per-connection queue the owning
//! event loop keeps.
//!
//! A call travels caller -> the charge point's processor (which knows its connection) -> its
//! loop, which sends it when nothing else is outstanding (OCPP-J allows one CALL in flight per
//! direction), arms a timeout in its wheel, and matches the CALLRESULT / CALLERROR by UniqueId.
//!
//! Every call yields exactly one [`CallOutcome`]: each path resolves it, and an [`OutboundCall`]
//! dropped unresolved (its connection closed, a loop stopped) resolves itself as
//! [`CallOutcome::NotConnected`]. Resolving is also where the outcome is counted and journaled,
//! so no path can forget to.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use mio::Waker;
use serde_json::value::RawValue;

use crate::events::{Event, EventKind, Events};
use crate::net::handshake::ChargePointId;
use crate::net::timer::TimerId;
use crate::ocpp::rpc::CallErrorCode;
use crate::ocpp::v16::{self, Action, Invalid};
use crate::processor::{Inbound, shard_of};
use crate::stats::{OUTCOMES, Stats, outcome_slot};

/// How a call ended.
#[derive(Debug, Clone)]
pub enum CallOutcome {
    /// The charge point's CALLRESULT payload, valid against the action's response schema.
    Result(Box<RawValue>),
    /// The charge point answered CALLERROR.
    Error {
        code: String,
        description: String,
        details: Box<RawValue>,
    },
    /// A CALLRESULT whose payload is not what the action returns.
    InvalidResult(Invalid),
    /// No answer within `ocpp.message_timeout`.
    Timeout,
    /// The charge point is not connected (or disconnected before answering).
    NotConnected,
    /// Too many calls already wait for this charge point (`ocpp.max_queued_calls`), or the
    /// gateway is too busy to take the call.
    Rejected,
}

impl PartialEq for CallOutcome {
    fn eq(&self, other: &CallOutcome) -> bool {
        use CallOutcome::*;
        match (self, other) {
            (Result(a), Result(b)) => a.get() == b.get(),
            (
                Error {
                    code: c1,
                    description: d1,
                    details: x1,
                },
                Error {
                    code: c2,
                    description: d2,
                    details: x2,
                },
            ) => c1 == c2 && d1 == d2 && x1.get() == x2.get(),
            (InvalidResult(a), InvalidResult(b)) => a == b,
            (Timeout, Timeout) | (NotConnected, NotConnected) | (Rejected, Rejected) => true,
            _ => false,
        }
    }
}

/// A call on its way; resolving it (or dropping it) tells the caller.
#[derive(Debug)]
pub struct OutboundCall {
    action: Action,
    payload: Box<RawValue>,
    reply: Option<Sender<CallOutcome>>,
    /// Woken once the outcome is sent, for a caller waiting in a `mio::Poll` (the admin API).
    waker: Option<Arc<Waker>>,
    report: Option<Box<Report>>,
}

/// Where a call's outcome is counted and journaled.
#[derive(Debug)]
struct Report {
    cp: ChargePointId,
    stats: Arc<Stats>,
    events: Events,
    /// Set once the call is sent.
    unique_id: Option<String>,
}

/// The caller's end: wait for the outcome.
#[derive(Debug)]
pub struct PendingCall(Receiver<CallOutcome>);

impl OutboundCall {
    /// A call and the handle its caller waits on. The payload must already be validated.
    pub fn new(action: Action, payload: Box<RawValue>) -> (OutboundCall, PendingCall) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (
            OutboundCall {
                action,
                payload,
                reply: Some(tx),
                waker: None,
                report: None,
            },
            PendingCall(rx),
        )
    }

    /// Wakes `waker` after the outcome is delivered.
    pub fn wake(mut self, waker: Arc<Waker>) -> OutboundCall {
        self.waker = Some(waker);
        self
    }

    /// Counts the outcome in `stats` and journals it as a call to `cp`.
    pub fn reported(mut self, cp: ChargePointId, stats: Arc<Stats>, events: Events) -> Self {
        self.report = Some(Box::new(Report {
            cp,
            stats,
            events,
            unique_id: None,
        }));
        self
    }

    /// Records the UniqueId the call went out with.
    pub fn sent_as(&mut self, unique_id: &str) {
        if let Some(report) = &mut self.report {
            report.unique_id = Some(unique_id.to_owned());
        }
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn payload(&self) -> &RawValue {
        &self.payload
    }

    pub fn resolve(mut self, outcome: CallOutcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: CallOutcome) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        if let Some(report) = self.report.take() {
            let slot = outcome_slot(&outcome);
            report.stats.outbound[slot].inc();
            let action = self.action;
            let Report {
                cp,
                events,
                unique_id,
                ..
            } = *report;
            events.record_nowait(|| Event {
                at: SystemTime::now(),
                cp,
                kind: EventKind::Outcome {
                    unique_id,
                    action,
                    outcome: OUTCOMES[slot],
                },
                ack: None,
            });
        }
        let _ = reply.send(outcome); // the caller may have stopped waiting
        if let Some(waker) = self.waker.take() {
            let _ = waker.wake();
        }
    }
}

impl Drop for OutboundCall {
    fn drop(&mut self) {
        self.finish(CallOutcome::NotConnected);
    }
}

impl PendingCall {
    /// Blocks until the outcome. It always arrives, but a call queued behind others can wait
    /// for each of them to be answered or time out first: callers with a deadline of their own
    /// use [`PendingCall::wait_timeout`].
    pub fn wait(&self) -> CallOutcome {
        self.0.recv().unwrap_or(CallOutcome::NotConnected)
    }

    /// The outcome if it has arrived.
    pub fn try_outcome(&self) -> Option<CallOutcome> {
        match self.0.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(CallOutcome::NotConnected),
        }
    }

    /// As [`PendingCall::wait`], giving up after `limit` (None then).
    pub fn wait_timeout(&self, limit: Duration) -> Option<CallOutcome> {
        match self.0.recv_timeout(limit) {
            Ok(outcome) => Some(outcome),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(CallOutcome::NotConnected),
        }
    }
}

/// The way in for calls of the central system (the operator API, tests, later Redis): checks
/// the payload, then hands the call to the charge point's processor.
#[derive(Clone)]
pub struct Commands {
    pub processors: Vec<Sender<Inbound>>,
    pub stats: Arc<Stats>,
    pub events: Events,
}

impl Commands {
    /// Sends `action` with `payload` to `cp`. `Err`: the CallError a charge point would answer
    /// (never sent). `waker` is woken when the outcome arrives.
    pub fn call(
        &self,
        cp: &str,
        action: Action,
        payload: Box<RawValue>,
        waker: Option<Arc<Waker>>,
    ) -> Result<PendingCall, Invalid> {
        if !action.sent_by_central_system() {
            return Err(Invalid {
                code: CallErrorCode::NotSupported,
                description: format!("{} is not sent by a central system", action.name()),
            });
        }
        v16::validate_request(action, &payload)?;
        let cp: ChargePointId = cp.into();
        let (call, pending) = OutboundCall::new(action, payload);
        let mut call = call.reported(
            Arc::clone(&cp),
            Arc::clone(&self.stats),
            self.events.clone(),
        );
        if let Some(waker) = waker {
            call = call.wake(waker);
        }
        let processor = &self.processors[shard_of(&cp, self.processors.len())];
        if let Err(TrySendError::Full(Inbound::Call { call, .. })) =
            processor.try_send(Inbound::Call { cp, call })
        {
            call.resolve(CallOutcome::Rejected);
        }
        Ok(pending)
    }
}

/// The call a connection has in flight.
#[derive(Debug)]
pub struct InFlight {
    pub unique_id: String,
    pub call: OutboundCall,
    pub timer: TimerId,
    /// For the round-trip histogram.
    pub sent_at: Instant,
}

/// One connection's outbound calls: at most one in flight, the rest waiting in order.
#[derive(Debug, Default)]
pub struct CallQueue {
    in_flight: Option<InFlight>,
    waiting: VecDeque<OutboundCall>,
}

impl CallQueue {
    /// Takes `call`: `Ok(Some(call))` to send now, `Ok(None)` queued behind the one in flight,
    /// `Err(call)` when `max_waiting` calls already wait (resolve it as rejected).
    pub fn offer(
        &mut self,
        call: OutboundCall,
        max_waiting: usize,
    ) -> Result<Option<OutboundCall>, OutboundCall> {
        if self.in_flight.is_none() && self.waiting.is_empty() {
            return Ok(Some(call));
        }
        if self.waiting.len() >= max_waiting {
            return Err(call);
        }
        self.waiting.push_back(call);
        Ok(None)
    }

    /// Records the call just sent.
    pub fn start(&mut self, in_flight: InFlight) {
        debug_assert!(self.in_flight.is_none(), "one call in flight at a time");
        self.in_flight = Some(in_flight);
    }

    /// The call in flight if `unique_id` answers it.
    pub fn take_matching(&mut self, unique_id: &str) -> Option<InFlight> {
        match &self.in_flight {
            Some(f) if f.unique_id == unique_id => self.in_flight.take(),
            _ => None,
        }
    }

    /// The call in flight, whatever its id (its timer fired).
    pub fn take_in_flight(&mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    /// The next call to send, when none is in flight.
    pub fn next_to_send(&mut self) -> Option<OutboundCall> {
        if self.in_flight.is_some() {
            return None;
        }
        self.waiting.pop_front()
    }

    /// The timer of the call in flight, to cancel when the connection goes.
    pub fn timer(&self) -> Option<TimerId> {
        self.in_flight.as_ref().map(|f| f.timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::timer::TimerWheel;

    fn call() -> (OutboundCall, PendingCall) {
        OutboundCall::new(
            Action::Reset,
            RawValue::from_string(r#"{"type":"Soft"}"#.into()).unwrap(),
        )
    }

    fn timer() -> TimerId {
        let now = Instant::now();
        TimerWheel::new(now, Duration::from_millis(10), 8).arm(now, Duration::ZERO, ())
    }

    #[test]
    fn one_in_flight_the_rest_wait_in_order_up_to_the_limit() {
        let mut queue = CallQueue::default();
        let (first, first_pending) = call();
        let first = queue.offer(first, 2).unwrap().expect("sent at once");
        queue.start(InFlight {
            unique_id: "1".into(),
            call: first,
            timer: timer(),
            sent_at: Instant::now(),
        });
        let (second, _second_pending) = call();
        let (third, _third_pending) = call();
        let (fourth, fourth_pending) = call();
        assert!(queue.offer(second, 2).unwrap().is_none());
        assert!(queue.offer(third, 2).unwrap().is_none());
        let rejected = queue.offer(fourth, 2).unwrap_err();
        rejected.resolve(CallOutcome::Rejected);
        assert_eq!(fourth_pending.wait(), CallOutcome::Rejected);

        assert!(
            queue.next_to_send().is_none(),
            "nothing goes out while a call is in flight"
        );
        assert!(queue.take_matching("other").is_none());
        let answered = queue.take_matching("1").expect("matches");
        answered.call.resolve(CallOutcome::Timeout);
        assert_eq!(first_pending.wait(), CallOutcome::Timeout);
        assert!(queue.next_to_send().is_some());
    }

    #[test]
    fn a_dropped_call_resolves_as_not_connected_exactly_once() {
        let (c, pending) = call();
        let mut queue = CallQueue::default();
        if let Some(c) = queue.offer(c, 1).unwrap() {
            queue.start(InFlight {
                unique_id: "x".into(),
                call: c,
                timer: timer(),
                sent_at: Instant::now(),
            });
        }
        drop(queue);
        assert_eq!(
            pending.wait_timeout(Duration::ZERO),
            Some(CallOutcome::NotConnected)
        );
    }
}
