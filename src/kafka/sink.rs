//! The Kafka event sink: integration events on `kafka.events_topic`, keyed by charge point.
//!
//! Shaped like the journal: each processor gets a [`KafkaWriter`] that renders its charge
//! points' events ([`integration`]) into a chunk of its own and hands chunks to one thread,
//! which gives them to librdkafka (an idempotent producer, `acks=all`). librdkafka's own
//! polling thread (`ThreadedProducer`) takes the delivery reports as they come and rings this
//! thread, which wakes for them, for chunks and held answers, and every [`TICK`] for liveness:
//! it never polls for them. Answers held for `events.ack_after_write` go to the thread on a channel of
//! their own, with the number of events their writer had recorded: they reach it even while
//! the chunks wait, and it releases them once the broker confirmed every one of those events
//! ([`Flight`]), or refuses them (CALLERROR InternalError) when one failed or
//! `kafka.ack_timeout` passed since they were held. That channel needs no bound of its own: a
//! held answer is an unanswered CALL, and each connection has at most
//! `ocpp.max_pipelined_calls` of those.
//!
//! A broker that is away or slow: librdkafka buffers up to `kafka.buffer_messages` /
//! `kafka.buffer_bytes` (and never gives up on a message by itself); beyond that the thread
//! stops taking chunks, the channel fills and processors wait, exactly as for a slow journal.
//! Loops never wait for this thread. At shutdown ([`KafkaStatus::stop`]) a broker that takes
//! nothing for [`FINAL_FLUSH`] loses what is still waiting (counted), so the gateway stops.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{error, info, warn};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::flight::{Flight, Verdict};
use super::integration::{self, Envelope, Rendered};
use crate::batch::{Pool, Recycle};
use crate::clock::WallClock;
use crate::config::KafkaConfig;
use crate::events::{Event, EventSink, EventWriter, HeldAnswer, HeldAnswers, ReplyRoute};
use crate::stats::Stats;

/// A writer hands its chunk over once it holds this many events ...
const CHUNK_EVENTS: usize = 256;
/// ... or this many bytes ...
const CHUNK_BYTES: usize = 64 * 1024;
/// ... or once its first event is this old.
const FLUSH_AFTER: Duration = Duration::from_millis(5);
/// The thread wakes at least this often (timeouts of held answers, the broker's liveness);
/// deliveries, chunks and held answers wake it at once.
const TICK: Duration = Duration::from_millis(20);
/// While the broker seems away, it is asked for metadata this often (a delivery clears it too).
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// At shutdown, what is buffered gets this long to reach the broker.
const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// Writer number of the side buffer (events of threads that never wait).
const SIDE: u16 = 0;
/// Bytes the side buffer may hold.
const SIDE_BYTES: usize = 4 << 20;

/// What `/health` and `/metrics` read about the sink.
#[derive(Debug)]
pub struct KafkaStatus {
    pub topic: String,
    /// The broker cannot be reached or held answers timed out; cleared by a delivery.
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    origin: Instant,
    alive_ms: AtomicU64,
    /// Messages given to librdkafka and not yet confirmed or failed.
    waiting: AtomicU64,
    /// The gateway is stopping: a broker that takes nothing must not hold the processors.
    stopping: AtomicBool,
    /// When the oldest answer still held for the broker was held: ms since `origin`, plus one
    /// (0: none held).
    oldest_held_ms: AtomicU64,
}

impl KafkaStatus {
    fn new(topic: &str) -> KafkaStatus {
        KafkaStatus {
            topic: topic.to_owned(),
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            origin: Instant::now(),
            alive_ms: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            oldest_held_ms: AtomicU64::new(0),
        }
    }

    /// How long the oldest billing answer still held for the broker has waited (None: none
    /// is held).
    pub fn oldest_held(&self) -> Option<Duration> {
        match self.oldest_held_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// How long ago the thread was last seen working.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.alive_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Tells the sink the gateway is stopping (before the processors are joined).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn fail(&self, error: String) {
        self.failing.store(true, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// One message: its key and value in the chunk's bytes.
#[derive(Debug, Clone)]
struct Record {
    key: Range<u32>,
    value: Range<u32>,
}

/// Rendered events on their way to librdkafka.
#[derive(Default)]
struct Chunk {
    writer: u16,
    bytes: Vec<u8>,
    records: Vec<Record>,
}

impl Recycle for Chunk {
    fn recycle(&mut self) -> bool {
        self.bytes.clear();
        self.records.clear();
        self.bytes.capacity() <= 2 * CHUNK_BYTES
    }
}

/// Answers held until their writer's first `count` events are settled.
struct Barrier {
    writer: u16,
    count: u64,
    /// When the first of them was held (`kafka.ack_timeout` counts from here).
    held_at: Instant,
    held: HeldAnswers,
}

impl Chunk {
    /// Renders `event` as the next record (nothing if it makes no integration event).
    fn render(&mut self, envelope: &Envelope<'_>, event: &Event<'_>, raw_frames: bool) -> Rendered {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(event.cp.as_bytes());
        let key = start as u32..self.bytes.len() as u32;
        let rendered = integration::render(&mut self.bytes, envelope, event, raw_frames);
        if rendered != Rendered::Event {
            self.bytes.truncate(start);
            return rendered;
        }
        self.records.push(Record {
            key: key.clone(),
            value: key.end..self.bytes.len() as u32,
        });
        rendered
    }
}

/// What writers and the thread share.
struct Common {
    chunks: Pool<Chunk>,
    side: Mutex<Side>,
    /// Events the side buffer may hold (and bytes: [`SIDE_BYTES`]) before events are lost.
    side_limit: usize,
    /// Milliseconds since `status.origin` of the last warning of the side buffer or a writer.
    warned_ms: AtomicU64,
    node: String,
    /// `eventId`s start with `{node}-{start in ms, hex}-{writer}-`.
    id_base: String,
    side_prefix: String,
    writers: AtomicU16,
    raw_frames: bool,
    route: Arc<dyn ReplyRoute>,
    status: Arc<KafkaStatus>,
    stats: Arc<Stats>,
    ack_after_write: bool,
}

/// Events of threads that must never wait.
#[derive(Default)]
struct Side {
    chunk: Chunk,
    clock: WallClock,
    n: u64,
}

impl Common {
    /// Logs at most once a second (from any thread, loops included).
    fn warn(&self, message: std::fmt::Arguments<'_>) {
        let now = u64::try_from(self.status.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.warned_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .warned_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!("kafka: {message}");
        }
    }

    /// An event the handler accepted that does not render (a payload this gateway does not
    /// expect): counted as failed and logged; the journal still has the message.
    fn render_failed(&self, event: &Event<'_>) {
        self.stats.kafka.kafka_events_failed.inc();
        self.warn(format_args!(
            "an event of cp={} could not be rendered and is not published",
            event.cp
        ));
    }
}

/// The sink the processors and others record into.
pub struct KafkaSink {
    tx: Sender<Chunk>,
    held_tx: Sender<Barrier>,
    common: Arc<Common>,
}

/// librdkafka's callbacks (run inside `poll`, on the sink's thread).
struct Reports {
    /// (writer << 48 | number, delivered)
    deliveries: Mutex<Vec<(usize, bool)>>,
    status: Arc<KafkaStatus>,
    stats: Arc<Stats>,
    fatal: AtomicBool,
    /// Rung after each delivery report: the sink thread waits on it (one pending ring is
    /// enough, the thread takes every report there is when it wakes).
    doorbell: Sender<()>,
}

impl Reports {
    fn on_error(&self, error: KafkaError, reason: &str) {
        self.stats.kafka.kafka_errors.inc();
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::Fatal) {
            self.fatal.store(true, Ordering::Relaxed);
        }
        if matches!(
            code,
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
                | Some(RDKafkaErrorCode::Fatal)
        ) {
            self.status.fail(format!("{error}: {reason}"));
        }
        warn!("kafka: {error}: {reason}");
    }

    fn on_delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        if let Err((e, _)) = result {
            warn!("kafka: an event was not delivered: {e}");
        }
        if let Ok(mut deliveries) = self.deliveries.lock() {
            deliveries.push((opaque, result.is_ok()));
        }
        let _ = self.doorbell.try_send(());
    }
}

const NUMBER_BITS: u32 = 48;

fn opaque(writer: u16, n: u64) -> usize {
    ((writer as usize) << NUMBER_BITS) | (n as usize & ((1 << NUMBER_BITS) - 1))
}

fn unpack(opaque: usize) -> (u16, u64) {
    (
        (opaque >> NUMBER_BITS) as u16,
        (opaque & ((1 << NUMBER_BITS) - 1)) as u64,
    )
}

/// librdkafka settings for the gateway's producers: nothing acknowledged may be lost.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Never dropped by librdkafka: while the broker is away, events wait in the buffer
        // and, once it is full, the processors wait (held answers time out on our side).
        .set("message.timeout.ms", "0")
        .set(
            "queue.buffering.max.messages",
            config.buffer_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (config.buffer_bytes / 1024).max(1).to_string(),
        )
        .set("linger.ms", config.linger.as_millis().to_string());
    for (key, value) in &config.properties {
        c.set(key, value);
    }
    c
}

fn create_producer(
    config: &KafkaConfig,
    reports: &Arc<Reports>,
) -> Result<ThreadedProducer<ArcReports>, KafkaError> {
    producer_config(config).create_with_context(ArcReports(Arc::clone(reports)))
}

/// The callbacks, shared with the producer that replaces one a fatal error ended.
struct ArcReports(Arc<Reports>);

impl ClientContext for ArcReports {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.on_error(error, reason);
    }
}

impl ProducerContext for ArcReports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.0.on_delivery(result, opaque);
    }
}

/// A started sink: its handle, what `/health` reads, its thread.
pub type Started = (Arc<KafkaSink>, Arc<KafkaStatus>, JoinHandle<()>);

impl KafkaSink {
    /// Creates the producer and starts the thread. It ends when the sink and every writer are
    /// gone, after giving what was buffered [`FINAL_FLUSH`] to reach the broker.
    pub fn start(
        config: &KafkaConfig,
        node: &str,
        (ack_after_write, queue_capacity): (bool, usize),
        route: Arc<dyn ReplyRoute>,
        stats: Arc<Stats>,
    ) -> Result<Started, KafkaError> {
        let status = Arc::new(KafkaStatus::new(&config.events_topic));
        let (doorbell, delivered) = crossbeam_channel::bounded(1);
        let reports = Arc::new(Reports {
            deliveries: Mutex::new(Vec::new()),
            status: Arc::clone(&status),
            stats: Arc::clone(&stats),
            fatal: AtomicBool::new(false),
            doorbell,
        });
        let producer = create_producer(config, &reports)?;
        let started_ms = crate::clock::epoch_millis(std::time::SystemTime::now()).unwrap_or(0);
        let common = Arc::new(Common {
            chunks: Pool::new(16),
            side: Mutex::new(Side::default()),
            side_limit: queue_capacity,
            warned_ms: AtomicU64::new(0),
            node: node.to_owned(),
            id_base: format!("{node}-{started_ms:x}-"),
            side_prefix: format!("{node}-{started_ms:x}-{SIDE}-"),
            writers: AtomicU16::new(SIDE + 1),
            raw_frames: config.raw_frames,
            route,
            status: Arc::clone(&status),
            stats,
            ack_after_write,
        });
        let slots = (queue_capacity / CHUNK_EVENTS).max(2);
        let (tx, rx) = crossbeam_channel::bounded(slots);
        let (held_tx, held_rx) = crossbeam_channel::unbounded();
        let mut thread = Thread {
            rx,
            held_rx,
            delivered,
            stopping_since: None,
            discarding: false,
            producer,
            reports,
            config: config.clone(),
            common: Arc::clone(&common),
            flights: Vec::new(),
            barriers: VecDeque::new(),
            pending: None,
            last_probe: Instant::now(),
            last_progress: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("kafka-events".into())
            .spawn(move || thread.run())
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        info!(
            "kafka: events to {} on {} (acks=all, idempotent{})",
            config.events_topic,
            config.brokers,
            if ack_after_write {
                ", billing answers after the broker confirmed"
            } else {
                ""
            }
        );
        let sink = KafkaSink {
            tx,
            held_tx,
            common,
        };
        Ok((Arc::new(sink), status, handle))
    }
}

impl EventSink for KafkaSink {
    fn writer(&self) -> Box<dyn EventWriter> {
        let index = self.common.writers.fetch_add(1, Ordering::Relaxed);
        let mut chunk = self.common.chunks.take();
        chunk.writer = index;
        Box::new(KafkaWriter {
            tx: self.tx.clone(),
            held_tx: self.held_tx.clone(),
            common: Arc::clone(&self.common),
            id_prefix: format!("{}{index}-", self.common.id_base),
            index,
            chunk,
            held: HeldAnswers::default(),
            held_at: None,
            clock: WallClock::default(),
            first_at: None,
            n: 0,
        })
    }

    fn record_nowait(&self, event: &Event<'_>) -> bool {
        let common = &self.common;
        let Ok(mut side) = common.side.lock() else {
            return false;
        };
        if side.chunk.records.len() >= common.side_limit || side.chunk.bytes.len() >= SIDE_BYTES {
            drop(side);
            common.stats.kafka.kafka_events_lost.inc();
            common.warn(format_args!(
                "side buffer full, an event of cp={} is lost",
                event.cp
            ));
            return false;
        }
        let Side { chunk, clock, n } = &mut *side;
        let envelope = Envelope {
            id_prefix: &common.side_prefix,
            n: *n,
            gateway: &common.node,
            timestamp: clock.text(event.at),
        };
        match chunk.render(&envelope, event, common.raw_frames) {
            Rendered::Event => *n += 1,
            Rendered::Nothing => {}
            Rendered::Failed => common.render_failed(event),
        }
        true
    }

    fn acks_after_write(&self) -> bool {
        self.common.ack_after_write
    }
}

/// One processor's way into the sink.
pub struct KafkaWriter {
    tx: Sender<Chunk>,
    held_tx: Sender<Barrier>,
    common: Arc<Common>,
    id_prefix: String,
    index: u16,
    chunk: Chunk,
    /// Answers held since the last hand-over, and when the first of them was.
    held: HeldAnswers,
    held_at: Option<Instant>,
    clock: WallClock,
    first_at: Option<Instant>,
    /// Events rendered so far: the next `eventId` number, and the number the thread gives
    /// this writer's next record (it numbers each writer's records in order, from 0).
    n: u64,
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
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
        }
        if self.chunk.bytes.len() >= CHUNK_BYTES {
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
        self.held_at.is_some()
            || self.chunk.records.len() >= CHUNK_EVENTS
            || self
                .first_at
                .is_some_and(|first| now >= first + FLUSH_AFTER)
    }

    fn due_at(&self) -> Option<Instant> {
        self.first_at.map(|first| first + FLUSH_AFTER)
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
        self.first_at = None;
        match self.tx.try_send(chunk) {
            Ok(()) => false,
            Err(TrySendError::Full(chunk)) => {
                // Backpressure: the processor waits, its queue fills, loops pause readers.
                let _ = self.tx.send(chunk);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Drop for KafkaWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

struct Thread {
    rx: Receiver<Chunk>,
    held_rx: Receiver<Barrier>,
    /// Rung by the producer's polling thread after delivery reports.
    delivered: Receiver<()>,
    producer: ThreadedProducer<ArcReports>,
    reports: Arc<Reports>,
    config: KafkaConfig,
    common: Arc<Common>,
    /// Per writer (by index).
    flights: Vec<Flight>,
    /// In the order they came (per writer, the order they were held in).
    barriers: VecDeque<Barrier>,
    /// A chunk librdkafka had no room for, and the first record it has not taken yet.
    pending: Option<(Chunk, usize)>,
    last_probe: Instant,
    /// When a delivery report last came, or nothing was waiting for one.
    last_progress: Instant,
    /// When the gateway began to stop, as this thread saw it.
    stopping_since: Option<Instant>,
    /// Stopping, and the broker took nothing for [`FINAL_FLUSH`]: what comes is dropped.
    discarding: bool,
}

impl Thread {
    fn run(&mut self) {
        let (rx, held_rx) = (self.rx.clone(), self.held_rx.clone());
        let delivered = self.delivered.clone();
        let mut open = true;
        while open || self.pending.is_some() {
            // A chunk is taken only when librdkafka took the last one; held answers always.
            let chunks = if self.pending.is_none() {
                &rx
            } else {
                &crossbeam_channel::never()
            };
            crossbeam_channel::select! {
                recv(chunks) -> chunk => match chunk {
                    Ok(chunk) => self.pending = Some((chunk, 0)),
                    Err(_) => open = false,
                },
                recv(held_rx) -> barrier => {
                    if let Ok(barrier) = barrier {
                        self.barriers.push_back(barrier);
                    }
                }
                recv(delivered) -> _ => {}
                default(TICK) => {}
            }
            while let Ok(barrier) = held_rx.try_recv() {
                self.barriers.push_back(barrier);
            }
            self.check_stopping();
            self.produce_pending();
            self.produce_side();
            self.round();
        }
        while let Ok(barrier) = held_rx.try_recv() {
            self.barriers.push_back(barrier);
        }
        self.finish();
    }

    /// Once the gateway stops and the broker has taken nothing for [`FINAL_FLUSH`], what is
    /// pending and whatever comes is dropped (counted as lost), so no processor waits for a
    /// broker that is away.
    fn check_stopping(&mut self) {
        if self.discarding || !self.common.status.stopping.load(Ordering::Relaxed) {
            return;
        }
        let since = *self.stopping_since.get_or_insert_with(Instant::now);
        if self.pending.is_some() && since.elapsed() >= FINAL_FLUSH {
            self.discarding = true;
            error!("kafka: stopping while the broker takes nothing: events still to send are lost");
        }
    }

    /// One turn's bookkeeping: reports, releases, timeouts, liveness.
    fn round(&mut self) {
        let reported = self.settle();
        self.watch(reported);
        self.release(Instant::now());
        self.recover();
        self.probe();
        let status = &self.common.status;
        // Barriers are kept in the order they were held: the first is the oldest.
        let oldest = self.barriers.front().map_or(0, |b| {
            let since = b.held_at.saturating_duration_since(status.origin);
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX - 1) + 1
        });
        status.oldest_held_ms.store(oldest, Ordering::Relaxed);
        let ms = u64::try_from(status.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        status.alive_ms.store(ms, Ordering::Relaxed);
    }

    fn flight(&mut self, writer: u16) -> &mut Flight {
        let index = usize::from(writer);
        // Only writers that hold answers need their failures remembered.
        let holds = self.common.ack_after_write;
        while self.flights.len() <= index {
            let keeps_failures = holds && self.flights.len() != usize::from(SIDE);
            self.flights.push(Flight::new(keeps_failures));
        }
        &mut self.flights[index]
    }

    /// Gives the pending chunk's records to librdkafka.
    fn produce_pending(&mut self) {
        let Some((chunk, mut next)) = self.pending.take() else {
            return;
        };
        if self.discarding {
            let lost = (chunk.records.len() - next) as u64;
            self.common.stats.kafka.kafka_events_lost.add(lost);
            return self.common.chunks.give(chunk);
        }
        let was_waiting = next > 0;
        while next < chunk.records.len() {
            if !self.send(&chunk, next) {
                if !was_waiting {
                    // Counted once per chunk that had to wait, not per retry.
                    self.common.stats.kafka.kafka_backpressure.inc();
                }
                self.pending = Some((chunk, next));
                return;
            }
            next += 1;
        }
        self.common.chunks.give(chunk);
    }

    /// Gives one record to librdkafka: false when its buffer is full (try again later).
    fn send(&mut self, chunk: &Chunk, index: usize) -> bool {
        let record = &chunk.records[index];
        let key = &chunk.bytes[record.key.start as usize..record.key.end as usize];
        let value = &chunk.bytes[record.value.start as usize..record.value.end as usize];
        // Numbered only once taken, so numbers follow the order librdkafka got them in.
        let flight = self.flight(chunk.writer);
        let n = flight.push();
        let sent = self.producer.send(
            BaseRecord::with_opaque_to(&self.config.events_topic, opaque(chunk.writer, n))
                .key(key)
                .payload(value),
        );
        let common = Arc::clone(&self.common);
        let stats = &common.stats.kafka;
        match sent {
            Ok(()) => {
                stats.kafka_events_produced.inc();
                self.common.status.waiting.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                self.flight(chunk.writer).unpush();
                false
            }
            Err((e, _)) => {
                // Refused for good (too large, unknown topic, ...): failed, not retried.
                self.flight(chunk.writer).settle(n, false);
                stats.kafka_events_failed.inc();
                self.common.warn(format_args!(
                    "an event of {} bytes was refused: {e}",
                    value.len()
                ));
                true
            }
        }
    }

    /// The side buffer's events, as one chunk of writer [`SIDE`].
    fn produce_side(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let mut fresh = self.common.chunks.take();
        fresh.writer = SIDE;
        let chunk = match self.common.side.lock() {
            Ok(mut side) if !side.chunk.records.is_empty() => {
                std::mem::replace(&mut side.chunk, fresh)
            }
            _ => {
                self.common.chunks.give(fresh);
                return;
            }
        };
        self.pending = Some((chunk, 0));
        self.produce_pending();
    }

    /// Applies the delivery reports `poll` gathered; true if there were any.
    fn settle(&mut self) -> bool {
        let reports = match self.reports.deliveries.lock() {
            Ok(mut d) if !d.is_empty() => std::mem::take(&mut *d),
            _ => return false,
        };
        let common = Arc::clone(&self.common);
        let stats = &common.stats.kafka;
        let mut delivered = false;
        for &(opaque, ok) in &reports {
            let (writer, n) = unpack(opaque);
            if ok {
                stats.kafka_events_confirmed.inc();
                delivered = true;
            } else {
                stats.kafka_events_failed.inc();
            }
            self.common.status.waiting.fetch_sub(1, Ordering::Relaxed);
            self.flight(writer).settle(n, ok);
        }
        if delivered && self.common.status.failing.swap(false, Ordering::Relaxed) {
            info!("kafka: the broker confirms events again");
        }
        true
    }

    /// Sends on the answers whose events are settled; refuses those past their deadline.
    /// One writer's answers go in order: a waiting one keeps the later ones waiting.
    fn release(&mut self, now: Instant) {
        if self.barriers.is_empty() {
            return;
        }
        let mut blocked: Vec<u16> = Vec::new();
        let mut kept = VecDeque::with_capacity(self.barriers.len());
        let mut timed_out = 0u64;
        while let Some(barrier) = self.barriers.pop_front() {
            let verdict = if blocked.contains(&barrier.writer) {
                Verdict::Waiting
            } else {
                self.flight(barrier.writer).verdict(barrier.count)
            };
            let ok = match verdict {
                Verdict::Confirmed => true,
                Verdict::Failed => false,
                Verdict::Waiting if now >= barrier.held_at + self.config.ack_timeout => {
                    timed_out += 1;
                    false
                }
                Verdict::Waiting => {
                    blocked.push(barrier.writer);
                    kept.push_back(barrier);
                    continue;
                }
            };
            let mut held = barrier.held;
            let refused = &self.common.stats.kafka.kafka_refused;
            held.release(&*self.common.route, ok, refused);
        }
        self.barriers = kept;
        if timed_out > 0 {
            self.common.status.fail(format!(
                "the broker did not confirm events within kafka.ack_timeout ({:?})",
                self.config.ack_timeout
            ));
            self.common.warn(format_args!(
                "{timed_out} held answer batch(es) refused: the broker did not confirm within {:?} (the charge points send again)",
                self.config.ack_timeout
            ));
        }
    }

    /// A fatal error (the idempotent producer lost its state, e.g. the broker lost its log)
    /// ends a producer: its messages fail, and a new one takes over.
    fn recover(&mut self) {
        if !self.reports.fatal.swap(false, Ordering::Relaxed) {
            return;
        }
        let reason = self.producer.client().fatal_error().map_or_else(
            || "fatal error".to_owned(),
            |(code, text)| format!("{code}: {text}"),
        );
        error!(
            "kafka: the producer stopped ({reason}); its unconfirmed events fail, a new producer starts"
        );
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        self.producer.poll(Duration::from_millis(100));
        self.settle();
        match create_producer(&self.config, &self.reports) {
            Ok(producer) => self.producer = producer,
            Err(e) => self
                .common
                .status
                .fail(format!("cannot create a producer: {e}")),
        }
    }

    /// Events waiting longer than `kafka.ack_timeout` with no report at all: the broker hangs
    /// (no answer is held to time out, but `/health` must say so).
    fn watch(&mut self, reported: bool) {
        let status = &self.common.status;
        let waiting = status.waiting();
        if reported || waiting == 0 {
            self.last_progress = Instant::now();
        } else if self.last_progress.elapsed() >= self.config.ack_timeout && !status.failing() {
            status.fail(format!(
                "no delivery report for {:?}; {waiting} events wait",
                self.config.ack_timeout
            ));
            self.common.warn(format_args!(
                "the broker confirms nothing; events wait in librdkafka's buffer"
            ));
        }
    }

    /// While failing with nothing to deliver, asks the broker for metadata now and then, so
    /// `/health` clears once it is back.
    fn probe(&mut self) {
        let status = &self.common.status;
        if !status.failing() || status.waiting() > 0 || self.last_probe.elapsed() < PROBE_EVERY {
            return;
        }
        self.last_probe = Instant::now();
        let topic = self.config.events_topic.as_str();
        if self
            .producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_millis(500))
            .is_ok()
        {
            status.failing.store(false, Ordering::Relaxed);
            info!("kafka: the broker answers again");
        }
    }

    /// Every writer is gone: what is buffered gets a last chance, then held answers are
    /// settled either way.
    fn finish(&mut self) {
        let last_chance = if self.discarding {
            Duration::ZERO
        } else {
            FINAL_FLUSH
        };
        let _ = self.producer.flush(last_chance);
        self.producer.poll(Duration::ZERO);
        self.settle();
        let far = Instant::now() + self.config.ack_timeout + Duration::from_secs(3600);
        self.release(far);
        let lost = self.common.status.waiting();
        if lost > 0 {
            self.common.stats.kafka.kafka_events_lost.add(lost);
            error!("kafka: {lost} events were not confirmed before shutdown");
        }
        info!("kafka: events sink stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ReplyBatch;
    use crate::types::CloseCause;

    /// A route that only hands out batches.
    struct Nowhere;

    impl ReplyRoute for Nowhere {
        fn deliver(&self, _loop_index: u16, _batch: ReplyBatch) {}
        fn take_batch(&self) -> ReplyBatch {
            ReplyBatch::default()
        }
        fn give_batch(&self, _batch: ReplyBatch) {}
    }

    fn common() -> Arc<Common> {
        Arc::new(Common {
            chunks: Pool::new(4),
            side: Mutex::new(Side::default()),
            side_limit: 16,
            warned_ms: AtomicU64::new(0),
            node: "gw".into(),
            id_base: "gw-0-".into(),
            side_prefix: "gw-0-0-".into(),
            writers: AtomicU16::new(SIDE + 1),
            raw_frames: false,
            route: Arc::new(Nowhere),
            status: Arc::new(KafkaStatus::new("t")),
            stats: Arc::new(Stats::new(1, 1)),
            ack_after_write: true,
        })
    }

    #[test]
    fn held_answers_reach_the_thread_while_the_chunks_wait() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (held_tx, held_rx) = crossbeam_channel::unbounded();
        tx.send(Chunk::default()).expect("the channel is full now");
        let common = common();
        let mut writer = KafkaWriter {
            tx,
            held_tx,
            common: Arc::clone(&common),
            id_prefix: "gw-0-1-".into(),
            index: 1,
            chunk: Chunk {
                writer: 1,
                ..Chunk::default()
            },
            held: HeldAnswers::default(),
            held_at: None,
            clock: WallClock::default(),
            first_at: None,
            n: 0,
        };
        let event = Event {
            at: std::time::SystemTime::now(),
            cp: "CP-1",
            kind: crate::events::EventKind::Disconnected {
                cause: CloseCause::PongTimeout,
            },
        };
        writer.record(&event);
        writer.record(&event);
        let conn = crate::types::ConnId {
            loop_index: 0,
            key: 1,
            generation: 1,
        };
        writer.hold(&crate::events::Held::new(conn, b"frame", 1));
        assert!(writer.due(Instant::now()), "a held answer is due at once");
        // The chunk cannot go (the channel is full): the flush waits ...
        let flushing = std::thread::spawn(move || {
            writer.flush();
            writer
        });
        // ... but the held answer is already with the thread, after the writer's two events.
        let barrier = held_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the held answer did not wait for the chunk");
        assert_eq!((barrier.writer, barrier.count), (1, 2));
        assert!(!barrier.held.is_empty());
        let _full = rx.recv().expect("the old chunk");
        let chunk = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("then the chunk");
        assert_eq!(chunk.records.len(), 2);
        drop(flushing.join().expect("the flush ended"));
    }
}
