//! The Kafka event sink: integration events on `kafka.events_topic`, keyed by charge point.
//!
//! Shaped like the journal: each processor gets a [`KafkaWriter`] that renders its charge
//! points' events ([`integration`]) into a chunk of its own and hands chunks to one thread,
//! which gives them to librdkafka (an idempotent producer, `acks=all`). librdkafka's own
//! polling thread (`ThreadedProducer`) takes the delivery reports as they come and rings this
//! thread ([`KafkaStatus::ring`]), which wakes for them, for chunks, held answers, side events,
//! errors and the stop, and otherwise only at its next deadline (a held answer's
//! `kafka.ack_timeout`, the broker's liveness, the final flush): it never polls. Answers held for `events.ack_after_write` go to the thread on a channel of
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
//!
//! Files: `writer` (a processor's way in), `thread` (the sink thread), `producer` (librdkafka's
//! settings and callbacks); here the shared parts, the sink and its status.

mod producer;
mod thread;
mod writer;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
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
use crate::events::sink::{self, Gathering, HAND_OVER, Handed, SinkHealth};
use crate::events::{Event, EventSink, EventWriter, HeldAnswer, HeldAnswers, ReplyRoute};
use crate::stats::Stats;

/// A chunk librdkafka had no room for is offered again after this long at the latest (room is
/// freed after the delivery callback whose ring woke the thread, so that ring can come early).
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(20);
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
    /// Failing: the broker cannot be reached or held answers timed out; cleared by a delivery.
    health: SinkHealth,
    /// Messages given to librdkafka and not yet confirmed or failed.
    waiting: AtomicU64,
    /// The gateway is stopping: a broker that takes nothing must not hold the processors.
    stopping: AtomicBool,
    /// When the oldest answer still held for the broker was held: [`SinkHealth::ms`], plus one
    /// (0: none held).
    oldest_held_ms: AtomicU64,
    /// Wakes the sink thread (one pending ring is enough: it looks at everything when it wakes).
    doorbell: Sender<()>,
}

impl KafkaStatus {
    fn new(topic: &str, doorbell: Sender<()>) -> KafkaStatus {
        KafkaStatus {
            topic: topic.to_owned(),
            health: SinkHealth::default(),
            waiting: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            oldest_held_ms: AtomicU64::new(0),
            doorbell,
        }
    }

    /// Wakes the sink thread: a delivery report, an error, a side event, the stop.
    fn ring(&self) {
        let _ = self.doorbell.try_send(());
    }

    /// How long the oldest billing answer still held for the broker has waited (None: none
    /// is held).
    pub fn oldest_held(&self) -> Option<Duration> {
        match self.oldest_held_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(self.ms().saturating_sub(at - 1))),
        }
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Tells the sink the gateway is stopping (before the processors are joined).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.ring();
    }
}

impl std::ops::Deref for KafkaStatus {
    type Target = SinkHealth;

    /// Failing or not and why, and when the thread was last seen working.
    fn deref(&self) -> &SinkHealth {
        &self.health
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
        self.bytes.capacity() <= 2 * HAND_OVER.bytes
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
        if self.status.may_warn() {
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

pub use producer::producer_config;
use producer::*;
use thread::*;
pub use writer::KafkaWriter;

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
        let (doorbell, delivered) = crossbeam_channel::bounded(1);
        let status = Arc::new(KafkaStatus::new(&config.events_topic, doorbell));
        let reports = Arc::new(Reports {
            deliveries: Mutex::new(Vec::new()),
            status: Arc::clone(&status),
            stats: Arc::clone(&stats),
            fatal: AtomicBool::new(false),
        });
        let producer = create_producer(config, &reports)?;
        let started_ms = crate::clock::epoch_ms(std::time::SystemTime::now());
        let common = Arc::new(Common {
            chunks: Pool::new(16),
            side: Mutex::new(Side::default()),
            side_limit: queue_capacity,
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
        let slots = (queue_capacity / HAND_OVER.events).max(2);
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
            gathering: Gathering::default(),
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
        if chunk.records.len() == 1 {
            common.status.ring();
        }
        true
    }

    fn acks_after_write(&self) -> bool {
        self.common.ack_after_write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CloseCause;

    use crate::events::testing::Nowhere;

    fn common() -> Arc<Common> {
        Arc::new(Common {
            chunks: Pool::new(4),
            side: Mutex::new(Side::default()),
            side_limit: 16,
            node: "gw".into(),
            id_base: "gw-0-".into(),
            side_prefix: "gw-0-0-".into(),
            writers: AtomicU16::new(SIDE + 1),
            raw_frames: false,
            route: Arc::new(Nowhere),
            status: Arc::new(KafkaStatus::new("t", crossbeam_channel::bounded(1).0)),
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
            gathering: Gathering::default(),
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
