//! Several sinks holding the same answers (journal and Kafka): an answer goes to its loop once
//! every sink released it, and as the CALLERROR if any sink refused it.
//!
//! Each sink releases one connection's held answers in the order they were held (a charge
//! point has one processor, and each sink keeps that processor's order), so the k-th answer a
//! sink releases for a connection is the k-th one held for it: a [`Join`] counts per
//! connection, with no id on the answers. The first sink to release an answer leaves its frame
//! here; the last one sends it on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::batch::ReplyBatch;
use crate::events::ReplyRoute;
use crate::types::ConnId;
use wire::websocket;

/// Where every sink of a [`Join`] releases its held answers: one [`JoinPort`] each.
pub struct Join {
    sinks: usize,
    route: Arc<dyn ReplyRoute>,
    waiting: Mutex<HashMap<ConnId, Waiting>>,
}

/// One connection's answers released by some sinks and not yet by all.
#[derive(Default)]
struct Waiting {
    answers: VecDeque<Slot>,
    /// Per sink: answers of `answers` it released.
    released: Vec<usize>,
}

struct Slot {
    frame: Vec<u8>,
    accepted: bool,
    /// Sinks that released it.
    count: usize,
}

/// One sink's way into a [`Join`].
pub struct JoinPort {
    join: Arc<Join>,
    sink: usize,
}

impl Join {
    /// A join of `sinks` sinks in front of `route`, and a port for each.
    pub fn ports(sinks: usize, route: Arc<dyn ReplyRoute>) -> Vec<Arc<dyn ReplyRoute>> {
        let join = Arc::new(Join {
            sinks,
            route,
            waiting: Mutex::new(HashMap::new()),
        });
        (0..sinks)
            .map(|sink| {
                Arc::new(JoinPort {
                    join: Arc::clone(&join),
                    sink,
                }) as Arc<dyn ReplyRoute>
            })
            .collect()
    }

    /// Connections with answers not yet released by every sink.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.lock().map_or(0, |w| w.len())
    }
}

/// A CALLERROR frame (a sink refused the answer): it wins over the CALLRESULT.
fn is_error(frame: &[u8]) -> bool {
    websocket::payload_of(frame).starts_with(b"[4")
}

impl ReplyRoute for JoinPort {
    fn deliver(&self, loop_index: u16, batch: ReplyBatch) {
        let join = &self.join;
        let mut out = join.route.take_batch();
        if let Ok(mut waiting) = join.waiting.lock() {
            for reply in batch.replies() {
                let frame = batch.frame(reply);
                let entry = waiting.entry(reply.conn).or_default();
                entry.released.resize(join.sinks, 0);
                let position = entry.released[self.sink];
                entry.released[self.sink] += 1;
                match entry.answers.get_mut(position) {
                    Some(slot) => {
                        slot.count += 1;
                        if is_error(frame) && !is_error(&slot.frame) {
                            slot.frame = frame.to_vec();
                        }
                    }
                    None => entry.answers.push_back(Slot {
                        frame: frame.to_vec(),
                        accepted: reply.accepted,
                        count: 1,
                    }),
                }
                // Each sink releases in order, so complete answers are always at the front.
                while entry.answers.front().is_some_and(|s| s.count == join.sinks) {
                    if let Some(slot) = entry.answers.pop_front() {
                        out.push_frame(reply.conn, &slot.frame, slot.accepted);
                    }
                    for released in &mut entry.released {
                        *released -= 1;
                    }
                }
                if entry.answers.is_empty() {
                    waiting.remove(&reply.conn);
                }
            }
        }
        join.route.give_batch(batch);
        if out.is_empty() {
            join.route.give_batch(out);
        } else {
            join.route.deliver(loop_index, out);
        }
    }

    fn take_batch(&self) -> ReplyBatch {
        self.join.route.take_batch()
    }

    fn give_batch(&self, batch: ReplyBatch) {
        self.join.route.give_batch(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route that keeps what it is given.
    #[derive(Default)]
    struct Collect(Mutex<Vec<(ConnId, Vec<u8>)>>);

    impl ReplyRoute for Collect {
        fn deliver(&self, _loop_index: u16, batch: ReplyBatch) {
            let mut got = self.0.lock().unwrap();
            for reply in batch.replies() {
                got.push((reply.conn, batch.frame(reply).to_vec()));
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

    fn frame(text: &str) -> Vec<u8> {
        let mut buffer = vec![0; websocket::HEADER_ROOM];
        buffer.extend_from_slice(text.as_bytes());
        let at = websocket::seal_text(&mut buffer, 0);
        buffer[at..].to_vec()
    }

    fn batch(answers: &[(u32, &str)]) -> ReplyBatch {
        let mut batch = ReplyBatch::default();
        for (key, text) in answers {
            batch.push_frame(conn(*key), &frame(text), true);
        }
        batch
    }

    #[test]
    fn an_answer_goes_once_every_sink_released_it() {
        let collect = Arc::new(Collect::default());
        let route: Arc<dyn ReplyRoute> = collect.clone();
        let join = Arc::new(Join {
            sinks: 2,
            route,
            waiting: Mutex::new(HashMap::new()),
        });
        let journal = JoinPort {
            join: Arc::clone(&join),
            sink: 0,
        };
        let kafka = JoinPort {
            join: Arc::clone(&join),
            sink: 1,
        };
        journal.deliver(
            0,
            batch(&[
                (1, "[3,\"a\",{}]"),
                (2, "[3,\"x\",{}]"),
                (1, "[3,\"b\",{}]"),
            ]),
        );
        assert!(collect.0.lock().unwrap().is_empty());
        // Kafka released conn 1's first answer and refused conn 2's.
        kafka.deliver(
            0,
            batch(&[
                (1, "[3,\"a\",{}]"),
                (2, "[4,\"x\",\"InternalError\",\"\",{}]"),
            ]),
        );
        {
            let got = collect.0.lock().unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0], (conn(1), frame("[3,\"a\",{}]")));
            assert_eq!(
                got[1],
                (conn(2), frame("[4,\"x\",\"InternalError\",\"\",{}]"))
            );
        }
        assert_eq!(join.waiting(), 1, "conn 1's second answer waits for Kafka");
        kafka.deliver(0, batch(&[(1, "[3,\"b\",{}]")]));
        assert_eq!(
            collect.0.lock().unwrap()[2],
            (conn(1), frame("[3,\"b\",{}]"))
        );
        assert_eq!(join.waiting(), 0);
    }

    #[test]
    fn a_refusal_by_the_first_sink_wins_too() {
        let collect = Arc::new(Collect::default());
        let ports = Join::ports(2, collect.clone());
        ports[0].deliver(0, batch(&[(7, "[4,\"a\",\"InternalError\",\"\",{}]")]));
        ports[1].deliver(0, batch(&[(7, "[3,\"a\",{}]")]));
        let got = collect.0.lock().unwrap();
        assert_eq!(
            *got,
            vec![(conn(7), frame("[4,\"a\",\"InternalError\",\"\",{}]"))]
        );
    }
}
