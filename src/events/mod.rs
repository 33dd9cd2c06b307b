//! The event sink: what passed through the gateway, for whoever needs it afterwards (billing,
//! support, audits). Producers describe each event as a borrowed [`Event`] (its payloads are
//! slices of the buffers the message already lies in, so describing costs no allocation); the
//! sink renders it. The sinks are the JSON-lines journal (`crate::journal`), the Kafka producer
//! (`crate::kafka`) and the Redis events stream (`crate::cluster::stream`), any of them ([`Tee`]). A billing answer they hold (with the state file,
//! `crate::state`) is one [`held::HeldAnswer`] shared by its holders, which counts those that
//! still owe it: the last to settle it sends it to its loop. All sinks hand chunks over, wait
//! for room and report their health through one machinery ([`sink`]); they differ only in how
//! they write and learn that a batch was kept. The journal and the Redis stream also share
//! their rendering and their writer (`crate::journal::LineWriter`).
//!
//! Two ways in, by who records:
//! - a processor owns an [`EventWriter`]: it renders its charge points' events (connect,
//!   disconnect, each CALL and our answer) into a buffer of its own and hands it over in
//!   batches, waiting when the sink is full - backpressure: the processor's queue fills and the
//!   loops stop reading the busiest charge points, nothing is dropped;
//! - anyone else (loops for calls of ours and their answers, whoever resolves an outbound call)
//!   uses [`Events::record_nowait`], which never waits: those events are few (bounded by the
//!   calls in flight) and go to a bounded side buffer.
//!
//! One charge point's lines come out in the order things happened to it within each way in;
//! its processor is the only producer of the first kind.

pub mod held;
pub mod sink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::batch::{Entry, FrameBatch, ReplyBatch, Stashed};
use crate::types::ChargePointId;
use crate::types::{CloseCause, Version};
use ocpp::AnyAction;
use ocpp::v16::Action;
use ocpp::v16::ChargePointStatus;
use ocpp::v201;

/// One thing that happened to one charge point. Payloads are raw JSON text.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub at: SystemTime,
    pub cp: &'a str,
    pub kind: EventKind<'a>,
}

#[derive(Debug, Clone, Copy)]
pub enum EventKind<'a> {
    Connected {
        peer: SocketAddr,
        loop_index: u16,
        /// The charge point's last accepted BootNotification payload, when known.
        boot: Option<&'a str>,
        /// The OCPP version the connection speaks.
        version: Version,
    },
    Disconnected {
        cause: CloseCause,
    },
    /// A CALL from the charge point.
    CallIn {
        unique_id: &'a str,
        action: &'a str,
        payload: Body<'a>,
    },
    /// Our answer to a CALL from the charge point.
    AnswerOut {
        unique_id: &'a str,
        action: &'a str,
        answer: Answer<'a>,
    },
    /// A CALL of ours, as sent.
    CallOut {
        unique_id: &'a str,
        action: AnyAction,
        payload: &'a str,
    },
    /// The charge point's CALLRESULT to a CALL of ours.
    ResultIn {
        unique_id: &'a str,
        action: AnyAction,
        payload: &'a str,
    },
    /// The charge point's CALLERROR to a CALL of ours.
    ErrorIn {
        unique_id: &'a str,
        action: AnyAction,
        code: &'a str,
        description: &'a str,
        details: &'a str,
    },
    /// How an outbound call ended (one per call, whatever happened to it).
    Outcome {
        unique_id: Option<&'a str>,
        action: AnyAction,
        outcome: &'static str,
    },
    /// A connection claiming the identity was refused at the upgrade (401, 403): never the
    /// password, only why.
    Refused {
        peer: SocketAddr,
        status: u16,
        reason: &'static str,
    },
    /// Lines of the charge point left out because it spent its journal allowance.
    Suppressed {
        lines: u32,
        bytes: u64,
    },
    /// A CALL of the charge point answered with a CALLRESULT, for sinks that turn what it
    /// means into integration events (Kafka); the journal has it as `CallIn` and `AnswerOut`.
    /// Recorded for the actions of [`is_integrated`], whatever the journal allowance.
    Accepted {
        unique_id: &'a str,
        action: Action,
        request: &'a str,
        answer: &'a str,
        /// The charge point's connector statuses before this message was handled.
        connectors_before: &'a [(u32, ChargePointStatus)],
    },
    /// A 2.0.1 TransactionEvent whose `seqNo` skipped some: `expected` was next.
    SeqGap {
        transaction_id: &'a str,
        expected: u64,
        seq_no: u64,
    },
    /// The same for a CALL of a 2.0.1 station (the actions of [`is_integrated_v201`]).
    Accepted201 {
        unique_id: &'a str,
        /// 2.0.1 or 2.1.
        version: Version,
        action: v201::Action,
        request: &'a str,
        answer: &'a str,
        /// A StatusNotification: the connector's status before it (None: none known).
        previous_status: Option<&'static str>,
    },
}

impl EventKind<'_> {
    /// Whether the journal writes a line for it.
    pub fn journaled(&self) -> bool {
        !matches!(
            self,
            EventKind::Accepted { .. } | EventKind::Accepted201 { .. }
        )
    }
}

/// 2.0.1 actions whose accepted CALLs are recorded as [`EventKind::Accepted201`] too.
pub fn is_integrated_v201(action: v201::Action) -> bool {
    matches!(
        action,
        v201::Action::BootNotification
            | v201::Action::StatusNotification
            | v201::Action::TransactionEvent
            | v201::Action::SignCertificate
    ) || is_new_in_21(action)
}

/// A station message OCPP 2.1 added (its SEND included): published as `charge_point.message`.
pub fn is_new_in_21(action: v201::Action) -> bool {
    action.from_station() && !action.in_edition(v201::Edition::V201)
}

/// Actions whose accepted CALLs are recorded as [`EventKind::Accepted`] too (SignCertificate
/// only while the backend signs: the processor decides that).
pub fn is_integrated(action: Action) -> bool {
    matches!(
        action,
        Action::BootNotification
            | Action::StatusNotification
            | Action::StartTransaction
            | Action::MeterValues
            | Action::StopTransaction
            | Action::SignCertificate
    )
}

/// How much of a payload a line carries.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// All of it, as the JSON it is.
    Whole(&'a str),
    /// A refused or invalid payload: only its first [`PAYLOAD_PREFIX`] bytes (as a string) and
    /// its size, so what an attacker sends cannot fill the journal or break its readers.
    Prefix(&'a str),
}

/// Bytes of a refused payload a journal line keeps.
pub const PAYLOAD_PREFIX: usize = 256;

impl Event<'_> {
    /// About how many bytes the event's line takes (for the per-charge-point allowance).
    pub fn approx_len(&self) -> usize {
        const LINE: usize = 120;
        LINE + self.cp.len()
            + match self.kind {
                EventKind::CallIn {
                    unique_id, payload, ..
                } => {
                    unique_id.len()
                        + match payload {
                            Body::Whole(text) => text.len(),
                            Body::Prefix(text) => text.len().min(PAYLOAD_PREFIX) + 32,
                        }
                }
                EventKind::AnswerOut { answer, .. } => match answer {
                    Answer::Result(text) => text.len(),
                    Answer::Error { description, .. } => description.len(),
                },
                EventKind::CallOut { payload, .. } | EventKind::ResultIn { payload, .. } => {
                    payload.len()
                }
                EventKind::ErrorIn {
                    description,
                    details,
                    ..
                } => description.len() + details.len(),
                _ => 0,
            }
    }
}

/// Our answer to a CALL from a charge point.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    Result(&'a str),
    Error {
        /// As the connection's version spells it on the wire.
        code: &'static str,
        description: &'a str,
    },
}

/// Where held answers go once their events are durable: the owning loops.
pub trait ReplyRoute: Send + Sync {
    /// Sends `batch` to loop `loop_index` (waiting while its channel is full).
    fn deliver(&self, loop_index: u16, batch: ReplyBatch);
    /// An empty batch to fill.
    fn take_batch(&self) -> ReplyBatch;
    /// A batch no longer needed, for use again.
    fn give_batch(&self, batch: ReplyBatch);
}

/// A configured destination for events.
pub trait EventSink: Send + Sync {
    /// A writer for one producer thread.
    fn writer(&self) -> Box<dyn EventWriter>;
    /// Records `event` from any thread without waiting; false when it was lost because the
    /// side buffer was full (counted by the sink).
    fn record_nowait(&self, event: &Event<'_>) -> bool;
    /// Whether answers to billing messages wait until their events are written
    /// ([`EventWriter::hold`]).
    fn acks_after_write(&self) -> bool;
}

/// One producer thread's way into a sink: it renders into a buffer of its own.
pub trait EventWriter: Send {
    fn record(&mut self, event: &Event<'_>);
    /// Holds `answer` until every event recorded so far is written, then settles it (the last
    /// of its holders sends it to its loop; if writing failed, a CALLERROR InternalError goes
    /// instead, so the charge point sends the message again).
    fn hold(&mut self, answer: &HeldAnswer);
    /// How many holders [`EventWriter::hold`] stands for (one per sink).
    fn holders(&self) -> usize {
        1
    }
    /// True when what is buffered should be handed over now (enough of it, held answers, or
    /// an event waiting longer than a few milliseconds).
    fn due(&self, now: std::time::Instant) -> bool;
    /// When a buffered event will be due, if any is buffered.
    fn due_at(&self) -> Option<std::time::Instant>;
    /// Hands over what is buffered, waiting while the sink is full. True when it had to wait.
    fn flush(&mut self) -> bool;
    /// Whether it makes integration events of [`EventKind::Accepted`] (the journal does not:
    /// producers need not describe them for it).
    fn integrates(&self) -> bool {
        false
    }
}

/// Several sinks as one (`events.sink = ["journal", "kafka"]`): every event goes to each, and
/// held answers are held by each (one [`held::HeldAnswer`] counts them).
pub struct Tee(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Tee {
    fn writer(&self) -> Box<dyn EventWriter> {
        Box::new(TeeWriter(self.0.iter().map(|s| s.writer()).collect()))
    }

    fn record_nowait(&self, event: &Event<'_>) -> bool {
        record_nowait_each(self.0.iter().map(|s| &**s), event)
    }

    fn acks_after_write(&self) -> bool {
        self.0.iter().any(|s| s.acks_after_write())
    }
}

/// [`EventSink::record_nowait`] into every one of `sinks`, whatever the others did; true when
/// all took it.
pub fn record_nowait_each<'a>(
    sinks: impl Iterator<Item = &'a dyn EventSink>,
    event: &Event<'_>,
) -> bool {
    let mut all = true;
    for sink in sinks {
        all &= sink.record_nowait(event);
    }
    all
}

struct TeeWriter(Vec<Box<dyn EventWriter>>);

impl EventWriter for TeeWriter {
    fn record(&mut self, event: &Event<'_>) {
        for writer in &mut self.0 {
            writer.record(event);
        }
    }

    fn hold(&mut self, answer: &HeldAnswer) {
        for writer in &mut self.0 {
            writer.hold(answer);
        }
    }

    fn holders(&self) -> usize {
        self.0.iter().map(|w| w.holders()).sum()
    }

    fn due(&self, now: std::time::Instant) -> bool {
        self.0.iter().any(|w| w.due(now))
    }

    fn due_at(&self) -> Option<std::time::Instant> {
        self.0.iter().filter_map(|w| w.due_at()).min()
    }

    fn integrates(&self) -> bool {
        self.0.iter().any(|w| w.integrates())
    }

    fn flush(&mut self) -> bool {
        // Every writer hands over, whether or not another had to wait.
        let mut waited = false;
        for writer in &mut self.0 {
            waited |= writer.flush();
        }
        waited
    }
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

    /// Whether StopTransaction and MeterValues answers wait for the sink.
    pub fn acks_after_write(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.acks_after_write())
    }

    /// A writer for one producer thread (None without a sink).
    pub fn writer(&self) -> Option<Box<dyn EventWriter>> {
        self.0.as_ref().map(|s| s.writer())
    }

    /// See [`EventSink::record_nowait`] (nothing happens without a sink).
    pub fn record_nowait(&self, event: &Event<'_>) {
        if let Some(sink) = &self.0 {
            sink.record_nowait(event);
        }
    }
}

/// Copies a loop's event into `batch` for the charge point's processor to render; events of
/// other kinds are not a loop's and are ignored.
pub fn stash(batch: &mut FrameBatch, cp: &ChargePointId, event: &Event<'_>) {
    let stashed = match event.kind {
        EventKind::CallOut {
            unique_id,
            action,
            payload,
        } => Stashed::CallOut {
            unique_id: batch.push_text(unique_id),
            action,
            payload: batch.push_text(payload),
        },
        EventKind::ResultIn {
            unique_id,
            action,
            payload,
        } => Stashed::ResultIn {
            unique_id: batch.push_text(unique_id),
            action,
            payload: batch.push_text(payload),
        },
        EventKind::ErrorIn {
            unique_id,
            action,
            code,
            description,
            details,
        } => Stashed::ErrorIn {
            unique_id: batch.push_text(unique_id),
            action,
            code: batch.push_text(code),
            description: batch.push_text(description),
            details: batch.push_text(details),
        },
        EventKind::Outcome {
            unique_id,
            action,
            outcome,
        } => Stashed::Outcome {
            unique_id: unique_id.map(|id| batch.push_text(id)),
            action,
            outcome,
        },
        EventKind::Refused {
            peer,
            status,
            reason,
        } => Stashed::Refused {
            peer,
            status,
            reason,
        },
        _ => return,
    };
    batch.push(Entry::Stashed {
        cp: ChargePointId::clone(cp),
        at: event.at,
        event: stashed,
    });
}

/// The event a stashed entry describes, its texts borrowed from `batch`.
pub fn unstash<'a>(
    batch: &'a FrameBatch,
    cp: &'a str,
    at: SystemTime,
    stashed: &'a Stashed,
) -> Event<'a> {
    let kind = match stashed {
        Stashed::CallOut {
            unique_id,
            action,
            payload,
        } => EventKind::CallOut {
            unique_id: batch.text(unique_id),
            action: *action,
            payload: batch.text(payload),
        },
        Stashed::ResultIn {
            unique_id,
            action,
            payload,
        } => EventKind::ResultIn {
            unique_id: batch.text(unique_id),
            action: *action,
            payload: batch.text(payload),
        },
        Stashed::ErrorIn {
            unique_id,
            action,
            code,
            description,
            details,
        } => EventKind::ErrorIn {
            unique_id: batch.text(unique_id),
            action: *action,
            code: batch.text(code),
            description: batch.text(description),
            details: batch.text(details),
        },
        Stashed::Outcome {
            unique_id,
            action,
            outcome,
        } => EventKind::Outcome {
            unique_id: unique_id.as_ref().map(|id| batch.text(id)),
            action: *action,
            outcome,
        },
        Stashed::Refused {
            peer,
            status,
            reason,
        } => EventKind::Refused {
            peer: *peer,
            status: *status,
            reason,
        },
    };
    Event { at, cp, kind }
}

/// Actions whose answers can wait for the sinks and the state file (`events.ack_after_write`):
/// the charge point's billing data, which it never sends again once answered. Their journal
/// lines are never left out by a charge point's allowance.
pub fn is_billing(action: Action) -> bool {
    matches!(
        action,
        Action::StartTransaction | Action::StopTransaction | Action::MeterValues
    )
}

pub use held::{Held, HeldAnswer, HeldAnswers};

/// For unit tests of sinks.
#[cfg(test)]
pub mod testing {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::ReplyRoute;
    use crate::batch::ReplyBatch;

    /// A route that only hands out batches (answers go nowhere).
    pub struct Nowhere;

    impl ReplyRoute for Nowhere {
        fn deliver(&self, _loop_index: u16, _batch: ReplyBatch) {}
        fn take_batch(&self) -> ReplyBatch {
            ReplyBatch::default()
        }
        fn give_batch(&self, _batch: ReplyBatch) {}
    }

    /// A route that counts the batches delivered to it.
    #[derive(Default)]
    pub struct Counting(AtomicUsize);

    impl Counting {
        pub fn delivered(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    impl ReplyRoute for Counting {
        fn deliver(&self, _loop_index: u16, _batch: ReplyBatch) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn take_batch(&self) -> ReplyBatch {
            ReplyBatch::default()
        }
        fn give_batch(&self, _batch: ReplyBatch) {}
    }
}
