//! One processor's way into the Kafka sink: it renders events into a chunk of its own and hands
//! chunks, and the answers it holds, to the sink thread.

use super::*;

/// One processor's way into the sink.
pub struct KafkaWriter {
    pub(super) tx: Sender<Chunk>,
    pub(super) held_tx: Sender<Barrier>,
    pub(super) common: Arc<Common>,
    pub(super) id_prefix: String,
    pub(super) index: u16,
    pub(super) chunk: Chunk,
    /// Answers held since the last hand-over, and when the first of them was.
    pub(super) held: HeldAnswers,
    pub(super) held_at: Option<Instant>,
    pub(super) clock: WallClock,
    pub(super) gathering: Gathering,
    /// Events rendered so far: the next `eventId` number, and the number the thread gives
    /// this writer's next record (it numbers each writer's records in order, from 0).
    pub(super) n: u64,
}

impl EventWriter for KafkaWriter {
    fn record(&mut self, event: &Event<'_>) {
        let envelope = Envelope {
            id_prefix: &self.id_prefix,
            n: self.n,
            gateway: &self.common.node,
            timestamp: self.clock.text(event.at),
        };
        match self.chunk.render(&envelope, event, self.common.raw_frames) {
            Rendered::Event => {}
            Rendered::Nothing => return,
            Rendered::Failed => return self.common.render_failed(event),
        }
        self.n += 1;
        self.gathering.added();
        if Gathering::full(self.chunk.bytes.len()) {
            self.flush();
        }
    }

    fn hold(&mut self, answer: &HeldAnswer) {
        self.held.push(answer);
        self.held_at.get_or_insert_with(Instant::now);
    }

    fn integrates(&self) -> bool {
        true
    }

    fn due(&self, now: Instant) -> bool {
        let (events, bytes) = (self.chunk.records.len(), self.chunk.bytes.len());
        self.gathering
            .due(events, bytes, self.held_at.is_some(), now)
    }

    fn due_at(&self) -> Option<Instant> {
        self.gathering.due_at()
    }

    fn flush(&mut self) -> bool {
        // Held answers first, on their own channel (it never waits): they reach the thread,
        // and time out there, even while the chunks wait.
        if let Some(held_at) = self.held_at.take() {
            let barrier = Barrier {
                writer: self.index,
                count: self.n,
                held_at,
                held: std::mem::take(&mut self.held),
            };
            if let Err(gone) = self.held_tx.send(barrier) {
                // The sink's thread is gone: the answers are refused, not left waiting.
                let mut barrier = gone.0;
                let common = &self.common;
                let refused = &common.stats.kafka.kafka_refused;
                barrier.held.release(&*common.route, false, refused);
            }
        }
        if self.chunk.records.is_empty() {
            return false;
        }
        let mut next = self.common.chunks.take();
        next.writer = self.index;
        let chunk = std::mem::replace(&mut self.chunk, next);
        self.gathering.handed();
        matches!(sink::hand_over(&self.tx, chunk), Handed::Waited)
    }
}

impl Drop for KafkaWriter {
    fn drop(&mut self) {
        self.flush();
    }
}
