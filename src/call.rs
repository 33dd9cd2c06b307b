//! A call from the central system to a charge point (RemoteStartTransaction, Reset, ...) as it
//! travels: caller -> the charge point's processor (which knows its connection) -> its loop,
//! which sends it when nothing else is outstanding (OCPP-J allows one CALL in flight per
//! direction; `net::outbound` keeps that queue), arms a timeout and matches the CALLRESULT /
//! CALLERROR by UniqueId. `commands` is the way in.
//!
//! Every call yields exactly one [`CallOutcome`]: each path resolves it, and an [`OutboundCall`]
//! dropped unresolved (its connection closed, a loop stopped) resolves itself as
//! [`CallOutcome::NotConnected`]. Resolving is also where the outcome is counted and journaled,
//! so no path can forget to.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::Waker;
use serde_json::value::RawValue;

use crate::events::{Event, EventKind, EventWriter, Events};
use crate::stats::{OUTCOMES, Stats};
use crate::types::{ChargePointId, Version};
use ocpp::AnyAction;
use ocpp::v16::Invalid;

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
    /// Not sent: the call does not fit the charge point (an action of another OCPP version
    /// than the one its connection speaks).
    Invalid(Invalid),
}

impl CallOutcome {
    /// The outcome's position in [`OUTCOMES`] (its metric label).
    pub fn slot(&self) -> usize {
        match self {
            CallOutcome::Result(_) => 0,
            CallOutcome::Error { .. } => 1,
            CallOutcome::InvalidResult(_) => 2,
            CallOutcome::Timeout => 3,
            CallOutcome::NotConnected => 4,
            CallOutcome::Rejected => 5,
            CallOutcome::Invalid(_) => 6,
        }
    }

    /// The HTTP status and JSON body this outcome is answered with, by the operator API and on
    /// the cluster's `command-results` stream alike.
    pub fn http(&self) -> (u16, serde_json::Value) {
        use serde_json::json;
        match self {
            CallOutcome::Result(payload) => (200, json!({"outcome": "result", "payload": payload})),
            CallOutcome::Error {
                code,
                description,
                details,
            } => (
                200,
                json!({"outcome": "error", "code": code, "description": description,
                        "details": details}),
            ),
            CallOutcome::InvalidResult(invalid) => (
                502,
                json!({"outcome": "invalid_result", "code": invalid.code.as_str(),
                        "error": invalid.description}),
            ),
            CallOutcome::Timeout => (
                504,
                json!({"outcome": "timeout", "error": "the charge point did not answer in time"}),
            ),
            CallOutcome::NotConnected => (
                404,
                json!({"outcome": "not_connected", "error": "the charge point is not connected"}),
            ),
            CallOutcome::Rejected => (
                429,
                json!({"outcome": "rejected",
                        "error": "too many calls wait for this charge point; try again later"}),
            ),
            CallOutcome::Invalid(invalid) => (
                400,
                json!({"outcome": "invalid", "code": invalid.code.as_str(),
                        "error": invalid.description}),
            ),
        }
    }
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
    /// In the version of the charge point it is for, once its processor knew
    /// ([`OutboundCall::retarget`]).
    action: AnyAction,
    payload: Box<RawValue>,
    reply: Option<Sender<CallOutcome>>,
    /// Woken once the outcome is sent, for a caller waiting in a `mio::Poll` (the admin API).
    waker: Option<Arc<Waker>>,
    report: Option<Box<Report>>,
    /// How long the charge point has to answer, if not `ocpp.message_timeout`.
    timeout: Option<Duration>,
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
    pub fn new(action: AnyAction, payload: Box<RawValue>) -> (OutboundCall, PendingCall) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (
            OutboundCall {
                action,
                payload,
                reply: Some(tx),
                waker: None,
                report: None,
                timeout: None,
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

    /// Gives the charge point `timeout` to answer instead of `ocpp.message_timeout`.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> OutboundCall {
        self.timeout = timeout;
        self
    }

    /// How long the charge point has to answer, if the caller chose.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Records the UniqueId the call went out with.
    pub fn sent_as(&mut self, unique_id: &str) {
        if let Some(report) = &mut self.report {
            report.unique_id = Some(unique_id.to_owned());
        }
    }

    pub fn action(&self) -> AnyAction {
        self.action
    }

    /// Makes the call one of `version` (the charge point's): the action of the same name there,
    /// the payload checked against it. Err: the call cannot be sent to that charge point.
    pub fn retarget(&mut self, version: Version) -> Result<(), Invalid> {
        self.action = self.action.for_version(version, &self.payload)?;
        Ok(())
    }

    pub fn payload(&self) -> &RawValue {
        &self.payload
    }

    /// Resolves the call; its outcome line goes to the event sink's side buffer (for resolvers
    /// that hold no other lines of the charge point).
    pub fn resolve(mut self, outcome: CallOutcome) {
        self.finish(outcome, None);
    }

    /// Resolves the call, its outcome line recorded through `log`: the loop and the processor
    /// use this so the line comes out in order with the charge point's other lines.
    pub fn resolve_in(mut self, outcome: CallOutcome, log: &mut dyn OutcomeLog) {
        self.finish(outcome, Some(log));
    }

    fn finish(&mut self, outcome: CallOutcome, log: Option<&mut dyn OutcomeLog>) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        if let Some(report) = self.report.take() {
            let slot = outcome.slot();
            report.stats.outbound[slot].inc();
            let event = Event {
                at: SystemTime::now(),
                cp: &report.cp,
                kind: EventKind::Outcome {
                    unique_id: report.unique_id.as_deref(),
                    action: self.action,
                    outcome: OUTCOMES[slot],
                },
            };
            match log {
                Some(log) => log.record(&event),
                None => report.events.record_nowait(&event),
            }
        }
        let _ = reply.send(outcome); // the caller may have stopped waiting
        if let Some(waker) = self.waker.take() {
            let _ = waker.wake();
        }
    }
}

impl Drop for OutboundCall {
    fn drop(&mut self) {
        self.finish(CallOutcome::NotConnected, None);
    }
}

/// Where a resolver records an outcome line.
pub trait OutcomeLog {
    fn record(&mut self, event: &Event<'_>);
}

/// An [`EventWriter`] as the [`OutcomeLog`] of a call resolver.
pub struct WriterLog<'a>(pub &'a mut dyn EventWriter);

impl OutcomeLog for WriterLog<'_> {
    fn record(&mut self, event: &Event<'_>) {
        self.0.record(event);
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
    /// The channel the outcome comes on, for a caller that waits on several things at once
    /// (it becomes ready when the outcome is there or the call is gone).
    pub fn receiver(&self) -> &Receiver<CallOutcome> {
        &self.0
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use ocpp::v16::Action;

    #[test]
    fn a_dropped_call_resolves_as_not_connected_exactly_once() {
        let payload = RawValue::from_string(r#"{"type":"Soft"}"#.into()).unwrap();
        let (call, pending) = OutboundCall::new(AnyAction::V16(Action::Reset), payload);
        drop(call);
        assert_eq!(
            pending.wait_timeout(Duration::ZERO),
            Some(CallOutcome::NotConnected)
        );
        assert_eq!(pending.try_outcome(), Some(CallOutcome::NotConnected));
    }
}
