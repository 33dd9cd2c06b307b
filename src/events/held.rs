//! Billing answers held until every place that keeps their message has it (the sinks and the
//! state file: `events.ack_after_write`). One [`HeldAnswer`] is shared by all its holders and
//! counts the holders that still owe it; each holder settles the answers it holds once what
//! came before them is durable (or could not be made so), and the holder that settles an
//! answer last sends it to its loop directly: as it is, or as CALLERROR InternalError when any
//! holder could not keep its part (the charge point then sends the message again).
//!
//! Each holder settles one connection's answers in the order they were held, so an answer's
//! last settlement never comes before an earlier answer's of the same connection. Sending is
//! not ordered across holders' threads: with pipelined CALLs (`ocpp.max_pipelined_calls` > 1)
//! two answers settled last by different holders may reach the loop in either order; OCPP-J
//! matches answers by unique id, and the loop counts them, not their order.
//!
//! Cost: a held answer is two allocations (the shared count and its frame), where unheld
//! answers are written into pooled batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::batch::ReplyBatch;
use crate::events::ReplyRoute;
use crate::stats::Counter;
use crate::types::ConnId;
use ocpp::rpc::{self, CallErrorCode, Frame};
use wire::websocket;

/// One answer and the holders that still owe it.
#[derive(Debug)]
pub struct Held {
    conn: ConnId,
    /// The complete WebSocket frame of the CALLRESULT.
    frame: Box<[u8]>,
    owed: AtomicUsize,
    /// Some holder could not keep its part.
    refused: AtomicBool,
}

/// An answer shared by its holders.
pub type HeldAnswer = Arc<Held>;

impl Held {
    /// `frame` (a complete answer for `conn`) held by `holders` holders; with none it would
    /// never be sent, so at least one is counted.
    pub fn new(conn: ConnId, frame: &[u8], holders: usize) -> HeldAnswer {
        Arc::new(Held {
            conn,
            frame: frame.into(),
            owed: AtomicUsize::new(holders.max(1)),
            refused: AtomicBool::new(false),
        })
    }

    /// Some holder has not settled it yet: whether it goes out Accepted is still open.
    pub fn is_owed(&self) -> bool {
        self.owed.load(Ordering::Acquire) > 0
    }

    /// This holder is done with it; true when it was the last, which then sends it.
    fn settle(&self, kept: bool) -> bool {
        if !kept {
            self.refused.store(true, Ordering::Relaxed);
        }
        // AcqRel: the last holder sees every other holder's refusal.
        self.owed.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// The answers one holder holds, in the order they were held.
#[derive(Debug, Default)]
pub struct HeldAnswers(Vec<HeldAnswer>);

impl HeldAnswers {
    pub fn push(&mut self, answer: &HeldAnswer) {
        self.0.push(Arc::clone(answer));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Empties it for use again (nothing may be held).
    pub fn clear(&mut self) {
        debug_assert!(self.is_empty());
        self.0.clear();
    }

    /// This holder settles every answer it holds: `durable` when what came before them is
    /// kept, else each is counted in `refused`. Answers no other holder still owes go to their
    /// loops now, one batch per loop.
    pub fn release(&mut self, route: &dyn ReplyRoute, durable: bool, refused: &Counter) {
        let mut out: Vec<Option<ReplyBatch>> = Vec::new();
        for answer in self.0.drain(..) {
            if !durable {
                refused.inc();
            }
            if !answer.settle(durable) {
                continue;
            }
            let index = usize::from(answer.conn.loop_index);
            if out.len() <= index {
                out.resize_with(index + 1, || None);
            }
            let batch = out[index].get_or_insert_with(|| route.take_batch());
            if answer.refused.load(Ordering::Relaxed) {
                write_refusal(batch, answer.conn, &answer.frame);
            } else {
                batch.push_frame(answer.conn, &answer.frame, true);
            }
        }
        for (index, batch) in out.into_iter().enumerate() {
            if let Some(batch) = batch {
                route.deliver(index as u16, batch);
            }
        }
    }
}

/// Appends, for the CALLRESULT `frame` of `conn`, the CALLERROR InternalError that replaces it
/// when its message could not be kept: the charge point keeps the message and sends it again.
fn write_refusal(batch: &mut ReplyBatch, conn: ConnId, frame: &[u8]) {
    let text = std::str::from_utf8(websocket::payload_of(frame)).unwrap_or("");
    let unique_id = match rpc::parse_frame(text) {
        Ok(Frame::CallResult { unique_id, .. }) => unique_id.into_owned(),
        _ => String::new(),
    };
    let draft = batch.begin();
    rpc::write_call_error(
        batch.payload(),
        &unique_id,
        CallErrorCode::InternalError,
        "the gateway could not record this message; send it again later",
    );
    batch.finish(draft, conn, true);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A route that keeps what it is given.
    #[derive(Default)]
    struct Collect(Mutex<Vec<(ConnId, String)>>);

    impl ReplyRoute for Collect {
        fn deliver(&self, _loop_index: u16, batch: ReplyBatch) {
            let mut got = self.0.lock().unwrap();
            for reply in batch.replies() {
                let text = websocket::payload_of(batch.frame(reply));
                got.push((reply.conn, String::from_utf8_lossy(text).into_owned()));
            }
        }
        fn take_batch(&self) -> ReplyBatch {
            ReplyBatch::default()
        }
        fn give_batch(&self, _batch: ReplyBatch) {}
    }

    fn conn(key: u32) -> ConnId {
        ConnId {
            loop_index: 0,
            key,
            generation: 1,
        }
    }

    fn answer(key: u32, text: &str, holders: usize) -> HeldAnswer {
        let mut buffer = vec![0; websocket::HEADER_ROOM];
        buffer.extend_from_slice(text.as_bytes());
        let at = websocket::seal_text(&mut buffer, 0);
        Held::new(conn(key), &buffer[at..], holders)
    }

    fn got(collect: &Collect) -> Vec<(ConnId, String)> {
        collect.0.lock().unwrap().clone()
    }

    #[test]
    fn an_answer_goes_once_every_holder_released_it() {
        let collect = Collect::default();
        let refused = Counter::default();
        let (a, x, b) = (
            answer(1, r#"[3,"a",{}]"#, 2),
            answer(2, r#"[3,"x",{}]"#, 2),
            answer(1, r#"[3,"b",{}]"#, 2),
        );
        let (mut journal, mut kafka) = (HeldAnswers::default(), HeldAnswers::default());
        for held in [&a, &x, &b] {
            journal.push(held);
        }
        journal.release(&collect, true, &refused);
        assert!(got(&collect).is_empty(), "Kafka still owes all three");
        // Kafka keeps conn 1's first answer, then cannot keep conn 2's.
        kafka.push(&a);
        kafka.release(&collect, true, &refused);
        kafka.push(&x);
        kafka.release(&collect, false, &refused);
        let refusal = r#"[4,"x","InternalError","the gateway could not record this message; send it again later",{}]"#;
        assert_eq!(
            got(&collect),
            [
                (conn(1), r#"[3,"a",{}]"#.to_owned()),
                (conn(2), refusal.to_owned())
            ]
        );
        assert_eq!(
            refused.get(),
            1,
            "Kafka's refusal is counted once per answer"
        );
        kafka.push(&b);
        kafka.release(&collect, true, &refused);
        assert_eq!(got(&collect)[2], (conn(1), r#"[3,"b",{}]"#.to_owned()));
        assert_eq!(got(&collect).len(), 3);
    }

    #[test]
    fn a_refusal_by_the_first_holder_wins_too() {
        let collect = Collect::default();
        let refused = Counter::default();
        let held = answer(7, r#"[3,"a",{}]"#, 2);
        let (mut state, mut journal) = (HeldAnswers::default(), HeldAnswers::default());
        state.push(&held);
        journal.push(&held);
        state.release(&collect, false, &refused);
        assert!(got(&collect).is_empty());
        journal.release(&collect, true, &refused);
        let answers = got(&collect);
        assert_eq!(answers.len(), 1);
        assert!(
            answers[0].1.starts_with(r#"[4,"a","InternalError""#),
            "{answers:?}"
        );
    }

    #[test]
    fn a_single_holder_sends_at_once() {
        let collect = Collect::default();
        let mut only = HeldAnswers::default();
        only.push(&answer(3, r#"[3,"s",{}]"#, 1));
        only.release(&collect, true, &Counter::default());
        assert_eq!(got(&collect), [(conn(3), r#"[3,"s",{}]"#.to_owned())]);
        assert!(only.is_empty());
    }
}
