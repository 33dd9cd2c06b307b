//! The event sink: what passed through the gateway, for whoever needs it afterwards (billing,
//! support, audits). Processors and loops describe each event as an [`Event`]; the sink decides
//! where it goes. Today the one sink is the JSON-lines [`journal`]; the Redis stream of the
//! scale-out step will be a second implementation of [`EventSink`].
//!
//! Who records what, so that one charge point's lines come out in the order things happened:
//! - its processor: connect, disconnect, and each CALL it received together with our answer
//!   (one [`EventKind::Exchange`], written as two lines);
//! - its event loop: our CALLs to it and its answers to them;
//! - whoever resolves an outbound call: the call's outcome.
//!
//! Processors wait when the sink is full ([`EventSink::record`]): that stalls their queues, and
//! the loops then stop reading the busiest charge points - backpressure, nothing dropped.
//! Loops never wait ([`EventSink::record_nowait`]); their events (outbound calls only, bounded
//! by the calls in flight) wait in a side queue instead.

pub mod journal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::value::RawValue;

use crate::net::handshake::ChargePointId;
use crate::net::{CloseCause, ConnId};
use crate::ocpp::rpc::CallErrorCode;
use crate::ocpp::v16::Action;

/// One thing that happened to one charge point.
#[derive(Debug)]
pub struct Event {
    pub at: SystemTime,
    pub cp: ChargePointId,
    pub kind: EventKind,
    /// With `events.ack_after_write`: the answer to deliver once the event is written.
    pub ack: Option<Ack>,
}

#[derive(Debug)]
pub enum EventKind {
    Connected {
        peer: SocketAddr,
        loop_index: u16,
    },
    Disconnected {
        cause: CloseCause,
    },
    /// A CALL from the charge point and the answer we gave.
    Exchange {
        unique_id: String,
        action: String,
        request: Box<RawValue>,
        answer: Answered,
    },
    /// A CALL of ours, as sent.
    CallSent {
        unique_id: String,
        action: Action,
        payload: Box<RawValue>,
    },
    /// The charge point's CALLRESULT to a CALL of ours.
    ResultReceived {
        unique_id: String,
        action: Action,
        payload: Box<RawValue>,
    },
    /// The charge point's CALLERROR to a CALL of ours.
    ErrorReceived {
        unique_id: String,
        action: Action,
        code: String,
        description: String,
        details: Box<RawValue>,
    },
    /// How an outbound call ended (one per call, whatever happened to it).
    Outcome {
        unique_id: Option<String>,
        action: Action,
        outcome: &'static str,
    },
}

/// Our answer to a CALL from a charge point.
#[derive(Debug)]
pub enum Answered {
    Result(Box<RawValue>),
    Error {
        code: CallErrorCode,
        description: String,
    },
}

/// An answer held back until its event is written.
#[derive(Debug)]
pub struct Ack {
    pub conn: ConnId,
    /// The CALLRESULT frame to send once the line is written.
    pub text: String,
}

/// Where events go.
pub trait EventSink: Send + Sync {
    /// Records `event`, waiting while the sink is full. True when it had to wait.
    fn record(&self, event: Event) -> bool;
    /// Records `event` without ever waiting. True when it went to the overflow side queue.
    fn record_nowait(&self, event: Event) -> bool;
    /// Whether answers to billing messages should wait for their line ([`Event::ack`]).
    fn acks_after_write(&self) -> bool;
}

/// A cloneable handle on the configured sink, or on none (`events.sink = "none"`).
#[derive(Clone, Default)]
pub struct Events(Option<Arc<dyn EventSink>>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(on)"
        } else {
            "Events(none)"
        })
    }
}

impl Events {
    pub fn new(sink: Arc<dyn EventSink>) -> Events {
        Events(Some(sink))
    }

    pub fn none() -> Events {
        Events(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Whether StopTransaction and MeterValues answers wait for the journal.
    pub fn acks_after_write(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.acks_after_write())
    }

    /// See [`EventSink::record`]; `make` runs only when a sink is configured.
    pub fn record(&self, make: impl FnOnce() -> Event) -> bool {
        match &self.0 {
            Some(sink) => sink.record(make()),
            None => false,
        }
    }

    /// See [`EventSink::record_nowait`].
    pub fn record_nowait(&self, make: impl FnOnce() -> Event) -> bool {
        match &self.0 {
            Some(sink) => sink.record_nowait(make()),
            None => false,
        }
    }
}

/// Actions whose answers can wait for the journal: the charge point's billing data.
pub fn is_billing(action: Action) -> bool {
    matches!(action, Action::StopTransaction | Action::MeterValues)
}
