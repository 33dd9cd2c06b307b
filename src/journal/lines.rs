//! A processor's way into the line sinks: the journal and the Redis events stream carry the same
//! lines. A [`LineWriter`] renders each line once into a chunk of its own and, when both sinks
//! are on ([`Lines`]), copies the bytes into the other sink's chunk: one rendering (time text,
//! JSON escaping) per line however many sinks keep it. Each sink keeps its own chunks, writer
//! number and held answers, so each settles what it wrote, as before.

use std::sync::Arc;
use std::time::Instant;

use crate::clock::WallClock;
use crate::events::sink::Gathering;
use crate::events::{Event, EventSink, EventWriter, HeldAnswer, record_nowait_each};

use super::{Chunk, line};

/// Where a line sink's writers hand their chunks over: the journal's thread (a bounded
/// channel: the writer waits for room) or the Redis stream's buffer (`crate::cluster::stream`).
pub trait Intake: Send + Sync + 'static {
    /// The node's name, in every line.
    fn node(&self) -> &str;
    /// A number for a new writer, from 1.
    fn next_writer(&self) -> u16;
    /// An empty chunk (from a pool).
    fn fresh(&self) -> Chunk;
    /// Takes `chunk`; true when the writer waited for room (back-pressure).
    fn hand_over(&self, chunk: Chunk) -> bool;
}

/// A sink of journal lines: its writers are [`LineWriter`]s over its [`Intake`].
pub trait LineSink: EventSink {
    fn intake(&self) -> Arc<dyn Intake>;
}

/// One sink's part of a [`LineWriter`].
struct Out {
    intake: Arc<dyn Intake>,
    writer: u16,
    chunk: Chunk,
}

impl Out {
    fn new(intake: Arc<dyn Intake>) -> Out {
        let writer = intake.next_writer();
        Out {
            chunk: Chunk {
                writer,
                ..intake.fresh()
            },
            writer,
            intake,
        }
    }
}

/// One processor's way into one or more line sinks: renders lines into a chunk of its own
/// (copied into each further sink's chunk) and hands the chunks over by the rule every sink
/// shares ([`crate::events::sink`]).
pub struct LineWriter {
    /// The first renders; the others copy. Never empty.
    outs: Vec<Out>,
    node: Box<str>,
    clock: WallClock,
    gathering: Gathering,
    /// The chunks hold answers.
    holding: bool,
}

impl LineWriter {
    /// A writer over `intakes` (at least one; all of one node).
    pub fn new(intakes: Vec<Arc<dyn Intake>>) -> LineWriter {
        assert!(!intakes.is_empty(), "a line writer writes somewhere");
        let node = Box::from(intakes[0].node());
        debug_assert!(intakes.iter().all(|i| i.node() == &*node));
        LineWriter {
            outs: intakes.into_iter().map(Out::new).collect(),
            node,
            clock: WallClock::default(),
            gathering: Gathering::default(),
            holding: false,
        }
    }
}

impl EventWriter for LineWriter {
    fn record(&mut self, event: &Event<'_>) {
        if !event.kind.journaled() {
            return;
        }
        let ts = self.clock.text(event.at);
        let (first, others) = self.outs.split_first_mut().expect("never empty");
        let start = first.chunk.lines.len();
        line::render(&mut first.chunk.lines, ts, &self.node, event);
        first.chunk.count += 1;
        for out in others {
            let line = &first.chunk.lines[start..];
            out.chunk.lines.extend_from_slice(line);
            out.chunk.count += 1;
        }
        self.gathering.added();
        if Gathering::full(first.chunk.lines.len()) {
            self.flush();
        }
    }

    fn hold(&mut self, answer: &HeldAnswer) {
        for out in &mut self.outs {
            out.chunk.held.push(answer);
        }
        self.holding = true;
    }

    fn holders(&self) -> usize {
        self.outs.len()
    }

    fn due(&self, now: Instant) -> bool {
        let chunk = &self.outs[0].chunk;
        let (lines, bytes) = (chunk.count as usize, chunk.lines.len());
        self.gathering.due(lines, bytes, self.holding, now)
    }

    fn due_at(&self) -> Option<Instant> {
        self.gathering.due_at()
    }

    fn flush(&mut self) -> bool {
        if self.outs[0].chunk.count == 0 && !self.holding {
            return false;
        }
        self.gathering.handed();
        self.holding = false;
        // Every sink gets its chunk, whether or not another made the writer wait.
        let mut waited = false;
        for out in &mut self.outs {
            let fresh = Chunk {
                writer: out.writer,
                ..out.intake.fresh()
            };
            let chunk = std::mem::replace(&mut out.chunk, fresh);
            waited |= out.intake.hand_over(chunk);
        }
        waited
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Several line sinks as one (the journal and the Redis events stream): their writers render
/// each line once. Threads that never wait record into each sink's own side buffer.
pub struct Lines(pub Vec<Arc<dyn LineSink>>);

impl EventSink for Lines {
    fn writer(&self) -> Box<dyn EventWriter> {
        Box::new(LineWriter::new(
            self.0.iter().map(|sink| sink.intake()).collect(),
        ))
    }

    fn record_nowait(&self, event: &Event<'_>) -> bool {
        record_nowait_each(self.0.iter().map(|s| &**s as &dyn EventSink), event)
    }

    fn acks_after_write(&self) -> bool {
        self.0.iter().any(|sink| sink.acks_after_write())
    }
}

/// A line sink without a thread, for measuring and counting what the writer alone costs
/// (benches, `tests/zero_alloc.rs`).
#[doc(hidden)]
pub mod testing {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};

    use super::{Intake, LineSink, LineWriter};
    use crate::batch::Recycle;
    use crate::events::sink::HAND_OVER;
    use crate::events::{Event, EventSink, EventWriter};
    use crate::journal::Chunk;

    /// An intake that gives every chunk it is handed back, emptied, for the writer's next one
    /// (what a sink thread does with it is not counted).
    #[derive(Default)]
    pub struct Recycling {
        spare: Mutex<Vec<Chunk>>,
        writers: AtomicU16,
    }

    impl Intake for Recycling {
        fn node(&self) -> &str {
            "node-1"
        }
        fn next_writer(&self) -> u16 {
            self.writers.fetch_add(1, Ordering::Relaxed) + 1
        }
        /// A new chunk has room for all a writer puts in it before it is due (so counting
        /// allocations does not depend on how fast the writer went).
        fn fresh(&self) -> Chunk {
            let spare = self.spare.lock().map(|mut s| s.pop()).ok().flatten();
            spare.unwrap_or_else(|| Chunk {
                lines: Vec::with_capacity(2 * HAND_OVER.bytes),
                ..Chunk::default()
            })
        }
        fn hand_over(&self, mut chunk: Chunk) -> bool {
            chunk.recycle();
            if let Ok(mut spare) = self.spare.lock() {
                spare.push(chunk);
            }
            false
        }
    }

    /// A line sink over a [`Recycling`] intake: the journal's or the Redis stream's writer
    /// without their threads.
    #[derive(Default)]
    pub struct RecyclingSink(Arc<Recycling>);

    impl EventSink for RecyclingSink {
        fn writer(&self) -> Box<dyn EventWriter> {
            Box::new(LineWriter::new(vec![self.intake()]))
        }
        fn record_nowait(&self, _: &Event<'_>) -> bool {
            true
        }
        fn acks_after_write(&self) -> bool {
            false
        }
    }

    impl LineSink for RecyclingSink {
        fn intake(&self) -> Arc<dyn Intake> {
            Arc::clone(&self.0) as Arc<dyn Intake>
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU16, Ordering};

    use super::*;
    use crate::events::{EventKind, Held};
    use crate::stats::Counter;
    use crate::types::{ChargePointId, ConnId};

    /// An intake that keeps what it is handed.
    #[derive(Default)]
    struct Kept {
        writers: AtomicU16,
        chunks: Mutex<Vec<Chunk>>,
    }

    impl Intake for Kept {
        fn node(&self) -> &str {
            "node-1"
        }
        fn next_writer(&self) -> u16 {
            self.writers.fetch_add(1, Ordering::Relaxed) + 1
        }
        fn fresh(&self) -> Chunk {
            Chunk::default()
        }
        fn hand_over(&self, chunk: Chunk) -> bool {
            self.chunks.lock().unwrap().push(chunk);
            false
        }
    }

    fn refused(cp: &ChargePointId, n: usize) -> Event<'_> {
        let reason = ["wrong password", "locked out"][n % 2];
        Event {
            at: std::time::SystemTime::now(),
            cp,
            kind: EventKind::Refused {
                peer: "127.0.0.1:9".parse().unwrap(),
                status: 401,
                reason,
            },
        }
    }

    #[test]
    fn one_writer_gives_each_sink_the_same_lines_and_each_holds_the_answer() {
        let (journal, stream) = (Arc::new(Kept::default()), Arc::new(Kept::default()));
        // The stream numbers another writer first: each sink numbers its writers itself.
        stream.next_writer();
        let intakes: Vec<Arc<dyn Intake>> = vec![journal.clone(), stream.clone()];
        let mut writer = LineWriter::new(intakes);
        assert_eq!(writer.holders(), 2);
        let cp: ChargePointId = "CP-both".into();
        for n in 0..3 {
            writer.record(&refused(&cp, n));
        }
        let conn = ConnId {
            loop_index: 0,
            key: 1,
            generation: 1,
        };
        let answer = Held::new(conn, b"answer", writer.holders());
        writer.hold(&answer);
        assert!(writer.due(Instant::now()), "an answer is held");
        writer.flush();
        drop(writer);

        let (mut ours, mut theirs) = (
            journal.chunks.lock().unwrap(),
            stream.chunks.lock().unwrap(),
        );
        assert_eq!(
            (ours.len(), theirs.len()),
            (1, 1),
            "one chunk each; nothing at drop"
        );
        let (a, b) = (&mut ours[0], &mut theirs[0]);
        assert_eq!((a.writer, b.writer), (1, 2));
        assert_eq!((a.count, b.count), (3, 3));
        assert_eq!(a.lines, b.lines);
        let text = String::from_utf8(a.lines.clone()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.contains("CP-both") && text.contains("locked out"),
            "{text}"
        );
        // Each holds the answer; the second to settle sends it.
        let route = crate::events::testing::Counting::default();
        let counter = Counter::default();
        a.held.release(&route, true, &counter);
        assert_eq!(route.delivered(), 0, "the stream still owes it");
        b.held.release(&route, true, &counter);
        assert_eq!(route.delivered(), 1);
        assert!(!answer.is_owed());
    }
}
