//! `cluster.events`: every event's journal line (`crate::journal::line`) also on the Redis
//! stream `{prefix}events`, for backends that read events from Redis: a sink like the others.
//! Processors render lines with the journal's own writer ([`LineWriter`]; with the journal on,
//! the same writer renders each line once and copies it into both sinks' chunks) into chunks
//! of their own and hand them over by the rule every sink shares; a thread of its own appends them, in
//! batches of up to [`BATCH_LINES`] lines ([`BATCH_BYTES`] bytes), each with one Lua script
//! (`scripts::EVENTS_BATCH`: `XADD {prefix}events MAXLEN ~ cluster.events_maxlen * node {node} line {json}` per line,
//! all of a batch or none), numbered so that a batch sent again after a lost reply is not
//! added twice.
//!
//! The ack rule is the journal's: with `events.ack_after_write` a billing answer (Start/Stop
//! Transaction, MeterValues, TransactionEvent) is held until Redis has its line, as one more
//! holder of the shared [`crate::events::held`] answer.
//!
//! Redis away or slow: charge points keep being served. Unlike the file, whose thread the
//! writers wait for, the stream's writers never wait on Redis: chunks go into a bounded buffer
//! ([`Buffer`]: `cluster.buffer` lines, [`BUFFER_BYTES`] bytes) that the thread empties in
//! order once Redis answers again (a batch Redis did not take is sent again as it is, so
//! nothing goes out of order or, while the gateway runs, is lost); beyond its bound the oldest
//! lines are dropped and counted (`cluster_events_lost_total`), and the answers that may cover
//! them refused. A billing answer held longer than `cluster.events_ack_timeout` goes out as
//! CALLERROR InternalError (the charge point sends it again; its line, still buffered, may then
//! reach the stream twice: at least once, never acknowledged and missing). Lines still
//! buffered when the gateway stops get one last attempt, then are counted as lost. Loops
//! record into it too (`record_nowait`): they never refuse an answer (that sends to a loop,
//! which may wait for room): their line is the one left out when the buffer is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};

use super::RETRY;
use crate::batch::Pool;
use crate::clock::WallClock;
use crate::config::ClusterConfig;
use crate::events::sink::{HAND_OVER, SinkHealth};
use crate::events::{Event, EventSink, EventWriter, HeldAnswers, ReplyRoute};
use crate::journal::{Chunk, Intake, LineSink, LineWriter, LostWriters, line};
use crate::stats::Stats;

/// Bytes of lines the buffer may hold, whatever `cluster.buffer` says.
pub const BUFFER_BYTES: usize = 64 << 20;
/// Lines sent in one script (at least one chunk).
const BATCH_LINES: u64 = 4096;
/// ... and of about this many bytes (a chunk is never split): large payloads keep one script
/// well within Redis's timeout.
const BATCH_BYTES: usize = 1 << 20;

/// What `/health` and `/metrics` read about the stream.
#[derive(Debug, Default)]
pub struct StreamStatus {
    health: SinkHealth,
    /// Lines in the buffer and in the batch on its way.
    buffered: AtomicU64,
}

impl StreamStatus {
    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for StreamStatus {
    type Target = SinkHealth;

    fn deref(&self) -> &SinkHealth {
        &self.health
    }
}

/// Where `writer`'s oldest chunk in the queue is (see `Queue::by_writer`).
fn queue_index(by_writer: &[VecDeque<u64>], popped: u64, writer: u16) -> Option<usize> {
    let number = *by_writer.get(usize::from(writer))?.front()?;
    usize::try_from(number.checked_sub(popped)?).ok()
}

/// A chunk waiting in the buffer, and when it came (its held answers' timeout counts from
/// there; later chunks came later).
struct Waiting {
    chunk: Chunk,
    since: Instant,
}

/// Lines waiting for Redis, oldest first.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<Waiting>,
    /// The numbers of the chunks that held answers when they came, oldest first; an entry
    /// whose chunk has gone or given up its answers is dropped when met (see
    /// [`Queue::oldest_holding`]), so the oldest held answer is found without a walk.
    holders: VecDeque<u64>,
    /// Lines of threads that never wait, rendered here until the next chunk comes (or this
    /// one is full): then they join the queue, in the order they came.
    side: Chunk,
    side_clock: WallClock,
    /// Writers whose chunk was dropped while their next was not here yet.
    lost: LostWriters,
    /// Chunks popped so far: the number of the chunk at the front.
    popped: u64,
    /// By writer, the numbers of its chunks in `chunks` (a writer's next chunk is found
    /// without a walk, under the lock loops take).
    by_writer: Vec<VecDeque<u64>>,
    lines: u64,
    bytes: usize,
    /// Lines of the thread's batch on its way (still buffered for `/health`).
    sending: u64,
}

impl Queue {
    fn push(&mut self, chunk: Chunk) {
        self.lines += chunk.count;
        self.bytes += chunk.lines.len();
        let number = self.popped + self.chunks.len() as u64;
        if !chunk.held.is_empty() {
            self.holders.push_back(number);
        }
        if chunk.writer != 0 {
            let writer = usize::from(chunk.writer);
            if self.by_writer.len() <= writer {
                self.by_writer.resize_with(writer + 1, VecDeque::new);
            }
            self.by_writer[writer].push_back(number);
        }
        let since = Instant::now();
        self.chunks.push_back(Waiting { chunk, since });
    }

    fn pop(&mut self) -> Option<Waiting> {
        let waiting = self.chunks.pop_front()?;
        if let Some(numbers) = self.by_writer.get_mut(usize::from(waiting.chunk.writer))
            && waiting.chunk.writer != 0
        {
            numbers.pop_front();
        }
        while self.holders.front().is_some_and(|&n| n <= self.popped) {
            self.holders.pop_front();
        }
        self.popped += 1;
        self.lines -= waiting.chunk.count;
        self.bytes -= waiting.chunk.lines.len();
        Some(waiting)
    }

    /// Where the oldest chunk still holding answers is in `chunks`; drops the entries of
    /// `holders` it passes (each once).
    fn oldest_holding(&mut self) -> Option<usize> {
        while let Some(&number) = self.holders.front() {
            if let Some(index) = number.checked_sub(self.popped)
                && let Ok(index) = usize::try_from(index)
                && self
                    .chunks
                    .get(index)
                    .is_some_and(|w| !w.chunk.held.is_empty())
            {
                return Some(index);
            }
            self.holders.pop_front();
        }
        None
    }

    /// The side lines join the queue behind what came before them.
    fn side_in_line(&mut self, pool: &Pool<Chunk>) {
        if self.side.count == 0 {
            return;
        }
        let side = std::mem::replace(&mut self.side, pool.take());
        // Already counted in `lines` and `bytes`.
        self.lines -= side.count;
        self.bytes -= side.lines.len();
        self.push(side);
    }
}

/// What the writers and the thread share.
pub struct Buffer {
    queue: Mutex<Queue>,
    chunks: Pool<Chunk>,
    node: String,
    max_lines: u64,
    route: Arc<dyn ReplyRoute>,
    status: Arc<StreamStatus>,
    stats: Arc<Stats>,
}

/// What a bound or a timeout took out of the buffer, settled once its lock is let go
/// (settling sends to a loop, which may wait for room).
#[derive(Default)]
struct Refusals {
    dropped: Vec<Chunk>,
    answers: Vec<HeldAnswers>,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops the oldest chunks while the buffer holds more than its bound, with the answers of
    /// each one's writer's next chunk (they may cover its lines); settled by
    /// [`Buffer::refuse_all`].
    fn bound(&self, queue: &mut Queue, out: &mut Refusals) {
        while queue.lines > self.max_lines || queue.bytes > BUFFER_BYTES {
            let Some(oldest) = queue.pop() else {
                break;
            };
            let writer = oldest.chunk.writer;
            if writer != 0 {
                let Queue {
                    chunks,
                    by_writer,
                    popped,
                    ..
                } = &mut *queue;
                let next =
                    queue_index(by_writer, *popped, writer).and_then(|index| chunks.get_mut(index));
                match next {
                    Some(next) => out.answers.push(std::mem::take(&mut next.chunk.held)),
                    None => queue.lost.mark(writer),
                }
            }
            out.dropped.push(oldest.chunk);
        }
        self.counted(queue);
    }

    /// Counts what was dropped as lost and refuses the answers taken out (never under the
    /// lock).
    fn refuse_all(&self, refusals: Refusals) {
        let mut lost = 0;
        for mut chunk in refusals.dropped {
            lost += chunk.count;
            self.settle(&mut chunk.held, false);
            self.chunks.give(chunk);
        }
        for mut held in refusals.answers {
            self.settle(&mut held, false);
        }
        self.lost(lost);
    }

    fn lost(&self, lines: u64) {
        if lines == 0 {
            return;
        }
        self.stats.cluster.cluster_events_lost.add(lines);
        if self.status.may_warn() {
            warn!(
                "cluster events: {lines} lines lost (the buffer for Redis was full, or the gateway stops)"
            );
        }
    }

    fn settle(&self, held: &mut HeldAnswers, kept: bool) {
        let refused = &self.stats.cluster.cluster_events_refused;
        held.release(&*self.route, kept, refused);
    }

    fn counted(&self, queue: &Queue) {
        let buffered = queue.lines + queue.sending;
        self.status.buffered.store(buffered, Ordering::Relaxed);
    }
}

/// What the writers hold: the buffer and the thread's doorbell. The thread ends once every
/// writer and the sink are gone (the doorbell's last sender with them).
pub struct Producers {
    buffer: Arc<Buffer>,
    doorbell: Sender<()>,
    writers: AtomicU16,
}

impl Producers {
    fn ring(&self) {
        let _ = self.doorbell.try_send(());
    }
}

impl Intake for Producers {
    fn node(&self) -> &str {
        &self.buffer.node
    }

    fn next_writer(&self) -> u16 {
        self.writers.fetch_add(1, Ordering::Relaxed)
    }

    fn fresh(&self) -> Chunk {
        self.buffer.chunks.take()
    }

    /// Never waits: Redis is not on a charge point's way.
    fn hand_over(&self, mut chunk: Chunk) -> bool {
        let buffer = &self.buffer;
        let mut refusals = Refusals::default();
        let mut queue = buffer.lock();
        queue.side_in_line(&buffer.chunks);
        if queue.lost.follows_lost(chunk.writer) {
            refusals.answers.push(std::mem::take(&mut chunk.held));
        }
        queue.push(chunk);
        buffer.bound(&mut queue, &mut refusals);
        drop(queue);
        buffer.refuse_all(refusals);
        self.ring();
        false
    }
}

/// The sink the processors and others record into.
pub struct StreamSink {
    producers: Arc<Producers>,
    ack_after_write: bool,
}

impl StreamSink {
    /// The sink over `buffer`, ringing its thread with `doorbell`.
    fn new(buffer: Arc<Buffer>, doorbell: Sender<()>, ack_after_write: bool) -> StreamSink {
        let producers = Arc::new(Producers {
            buffer,
            doorbell,
            writers: AtomicU16::new(1),
        });
        StreamSink {
            producers,
            ack_after_write,
        }
    }
}

impl EventSink for StreamSink {
    fn writer(&self) -> Box<dyn EventWriter> {
        Box::new(LineWriter::new(vec![self.intake()]))
    }

    /// Never refuses an answer (a loop may be the caller): when the buffer is full, this
    /// line is the one left out.
    fn record_nowait(&self, event: &Event<'_>) -> bool {
        if !event.kind.journaled() {
            return true;
        }
        let buffer = &self.producers.buffer;
        let mut queue = buffer.lock();
        if queue.lines >= buffer.max_lines || queue.bytes >= BUFFER_BYTES {
            drop(queue);
            buffer.lost(1);
            return false;
        }
        let Queue {
            side, side_clock, ..
        } = &mut *queue;
        let before = side.lines.len();
        line::render(
            &mut side.lines,
            side_clock.text(event.at),
            &buffer.node,
            event,
        );
        side.count += 1;
        let added = side.lines.len() - before;
        queue.lines += 1;
        queue.bytes += added;
        if queue.side.count >= HAND_OVER.events as u64 {
            queue.side_in_line(&buffer.chunks);
        }
        buffer.counted(&queue);
        drop(queue);
        self.producers.ring();
        true
    }

    fn acks_after_write(&self) -> bool {
        self.ack_after_write
    }
}

impl LineSink for StreamSink {
    fn intake(&self) -> Arc<dyn Intake> {
        Arc::clone(&self.producers) as Arc<dyn Intake>
    }
}

/// Starts the stream's thread: its sink, what `/health` reads, the thread (it ends when the
/// sink and every writer are gone, after one last attempt at what is buffered).
pub fn start(
    config: &ClusterConfig,
    node: &str,
    (ack_after_write, route): (bool, Arc<dyn ReplyRoute>),
    stats: Arc<Stats>,
) -> std::io::Result<(Arc<StreamSink>, Arc<StreamStatus>, JoinHandle<()>)> {
    let client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let status = Arc::new(StreamStatus::default());
    let buffer = Arc::new(Buffer {
        queue: Mutex::new(Queue::default()),
        chunks: Pool::new(16),
        node: node.to_owned(),
        max_lines: config.buffer.max(1) as u64,
        route,
        status: Arc::clone(&status),
        stats,
    });
    let (doorbell, rung) = crossbeam_channel::bounded(1);
    let started_ms = crate::clock::epoch_ms(std::time::SystemTime::now());
    let mut thread = Thread {
        buffer: Arc::clone(&buffer),
        rung,
        client,
        key: format!("{}events", config.prefix),
        maxlen: config.events_maxlen,
        ack_timeout: config.events_ack_timeout,
        con: None,
        retry_at: None,
        batch: Vec::new(),
        // The start and the process: a clock set back to the same millisecond does not
        // make a new run look like an old one.
        run: format!("{started_ms:x}-{:x}", std::process::id()),
        n: 0,
        script: redis::Script::new(super::scripts::EVENTS_BATCH),
        last_key: format!("{}events-batch:{node}", config.prefix),
    };
    let handle = std::thread::Builder::new()
        .name("cluster-events".into())
        .spawn(move || thread.run())?;
    info!(
        "cluster events: every journal line on {}events{}",
        config.prefix,
        if ack_after_write {
            " (billing answers once Redis has their line)"
        } else {
            ""
        }
    );
    let sink = StreamSink::new(buffer, doorbell, ack_after_write);
    Ok((Arc::new(sink), status, handle))
}

/// The stream's thread.
struct Thread {
    buffer: Arc<Buffer>,
    rung: Receiver<()>,
    client: redis::Client,
    key: String,
    maxlen: u64,
    ack_timeout: Duration,
    con: Option<redis::Connection>,
    /// After a failure, Redis is tried again from this moment.
    retry_at: Option<Instant>,
    /// The chunks being sent (taken from the front of the buffer); a batch Redis may not have
    /// taken is sent again as it is, under its number, so that it is added once.
    batch: Vec<Waiting>,
    /// This run (its start in ms and the process, hex) and the current batch's number in it.
    run: String,
    n: u64,
    script: redis::Script,
    /// `{prefix}events-batch:{node}`: the last batch added.
    last_key: String,
}

impl Thread {
    fn run(&mut self) {
        loop {
            let deadline = self.deadline();
            self.buffer.status.mark_waiting();
            let wait = deadline.map_or(Duration::MAX, |at| {
                at.saturating_duration_since(Instant::now())
            });
            let open = !matches!(
                self.rung.recv_timeout(wait),
                Err(RecvTimeoutError::Disconnected)
            );
            self.buffer.status.mark_alive();
            self.refuse_overdue(Instant::now());
            if !open {
                self.retry_at = None; // one last attempt, whatever the pause
                self.send_all();
                self.give_up();
                info!("cluster events stopped");
                return;
            }
            if self.retry_at.is_none_or(|at| Instant::now() >= at) {
                self.send_all();
            }
        }
    }

    /// When the thread must wake without a ring: the next attempt after a failure (while
    /// lines wait), the oldest held answer's timeout.
    fn deadline(&self) -> Option<Instant> {
        let mut queue = self.buffer.lock();
        let waiting = queue.lines > 0 || !self.batch.is_empty();
        let retry = self.retry_at.filter(|_| waiting);
        let in_batch = self.batch.iter().find(|w| !w.chunk.held.is_empty());
        let since = match in_batch {
            Some(w) => Some(w.since),
            None => queue
                .oldest_holding()
                .map(|index| queue.chunks[index].since),
        };
        let held = since.map(|since| since + self.ack_timeout);
        retry.into_iter().chain(held).min()
    }

    /// Billing answers held longer than `cluster.events_ack_timeout` are refused; their lines
    /// stay in the buffer. Chunks came in order: the look goes from the oldest holding chunk
    /// and stops at the first not overdue.
    fn refuse_overdue(&mut self, now: Instant) {
        let mut overdue = Vec::new();
        let timeout = self.ack_timeout;
        for waiting in &mut self.batch {
            if now >= waiting.since + timeout {
                overdue.push(std::mem::take(&mut waiting.chunk.held));
            }
        }
        let mut queue = self.buffer.lock();
        while let Some(index) = queue.oldest_holding() {
            let waiting = &mut queue.chunks[index];
            if now < waiting.since + timeout {
                break;
            }
            overdue.push(std::mem::take(&mut waiting.chunk.held));
        }
        drop(queue);
        for mut held in overdue {
            self.buffer.settle(&mut held, false);
        }
    }

    /// Sends batches until the buffer is empty or Redis fails.
    fn send_all(&mut self) {
        while self.take_batch() {
            if let Err(e) = self.send_batch() {
                self.failed(&e);
                return;
            }
        }
    }

    /// Takes chunks from the front of the buffer, then the side lines if there is room;
    /// false when there was nothing.
    fn take_batch(&mut self) -> bool {
        if !self.batch.is_empty() {
            return true; // the batch that failed, again
        }
        let buffer = Arc::clone(&self.buffer);
        let mut queue = buffer.lock();
        let (mut lines, mut bytes) = (0, 0);
        let fits = |lines: u64, bytes: usize, chunk: &Chunk| {
            lines + chunk.count <= BATCH_LINES && bytes + chunk.lines.len() <= BATCH_BYTES
        };
        while let Some(front) = queue.chunks.front() {
            if !self.batch.is_empty() && !fits(lines, bytes, &front.chunk) {
                break;
            }
            let Some(waiting) = queue.pop() else {
                break;
            };
            lines += waiting.chunk.count;
            bytes += waiting.chunk.lines.len();
            self.batch.push(waiting);
        }
        if queue.side.count > 0 && (self.batch.is_empty() || fits(lines, bytes, &queue.side)) {
            queue.side_in_line(&buffer.chunks);
            if let Some(side) = queue.pop() {
                lines += side.chunk.count;
                self.batch.push(side);
            }
        }
        if self.batch.is_empty() {
            return false;
        }
        self.n += 1;
        // Still counted as buffered until Redis took them.
        queue.sending = lines;
        buffer.counted(&queue);
        true
    }

    /// Appends the batch's lines with one script, then settles their held answers.
    fn send_batch(&mut self) -> redis::RedisResult<()> {
        let lines: u64 = self.batch.iter().map(|w| w.chunk.count).sum();
        if lines > 0 {
            if self.con.is_none() {
                self.con = Some(super::open(&self.client)?);
            }
            let mut invocation = self.script.key(&self.key);
            invocation
                .key(&self.last_key)
                .arg(&self.run)
                .arg(self.n)
                .arg(self.maxlen)
                .arg(&self.buffer.node);
            for waiting in &self.batch {
                for line in waiting.chunk.lines.split(|&b| b == b'\n') {
                    if !line.is_empty() {
                        invocation.arg(line);
                    }
                }
            }
            if let Some(con) = self.con.as_mut() {
                let _added: u64 = invocation.invoke(con)?;
            }
            self.buffer
                .stats
                .cluster
                .cluster_events_published
                .add(lines);
            if self.buffer.status.recovered() {
                info!("cluster events: Redis takes the lines again");
            }
        }
        self.retry_at = None;
        for mut waiting in self.batch.drain(..) {
            self.buffer.settle(&mut waiting.chunk.held, true);
            self.buffer.chunks.give(waiting.chunk);
        }
        let mut queue = self.buffer.lock();
        queue.sending = 0;
        self.buffer.counted(&queue);
        Ok(())
    }

    /// Redis did not take the batch (or its answer was lost): it is sent again, as it is,
    /// after [`RETRY`]; meanwhile new lines wait behind it in the buffer.
    fn failed(&mut self, e: &redis::RedisError) {
        let status = &self.buffer.status;
        status.fail(format!("Redis: {e}"));
        self.buffer.stats.cluster.cluster_errors.inc();
        if status.may_warn() {
            warn!("cluster events: Redis failed ({e}); the lines wait in the buffer");
        }
        self.con = None;
        self.retry_at = Some(Instant::now() + RETRY);
    }

    /// At the stop: what is still buffered is lost (counted) and its answers refused.
    fn give_up(&mut self) {
        let buffer = Arc::clone(&self.buffer);
        let mut queue = buffer.lock();
        queue.side_in_line(&buffer.chunks);
        let mut refusals = Refusals {
            dropped: self.batch.drain(..).map(|w| w.chunk).collect(),
            answers: Vec::new(),
        };
        while let Some(waiting) = queue.pop() {
            refusals.dropped.push(waiting.chunk);
        }
        queue.sending = 0;
        buffer.counted(&queue);
        drop(queue);
        buffer.refuse_all(refusals);
    }
}

#[cfg(test)]
mod tests;
