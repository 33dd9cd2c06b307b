//! The embedded event sink: one JSON line per event, appended by its own thread to
//! `events.path`, rotated by size, synced as `events.fsync` says.
//!
//! - [`Journal`] (this file): the sink. Each processor gets a [`LineWriter`] ([`lines`]) that
//!   renders lines ([`line`]) into a chunk of its own and hands the chunk over by the rule
//!   every sink shares ([`crate::events::sink`]: so many lines or bytes, an answer held, or its
//!   first line a few milliseconds old) to an [`Intake`]: here the journal thread's bounded
//!   channel (the Redis events stream, `crate::cluster::stream`, has its own intake; with both
//!   on, one writer renders each line once for both); other threads' few events go to a
//!   bounded side buffer. Rendering where the event happens
//!   costs no allocation and no copy of the message into an intermediate value, and the
//!   journal thread is woken per chunk, not per event.
//! - [`writer`]: the thread: writes chunks in batches (one `write` for many lines), syncs when
//!   the mode asks (one fdatasync per batch: group commit), then releases the answers held for
//!   `ack_after_write`.
//! - [`file`]: the file, its rotation and torn-line repair.
//!
//! A failing disk must not stop the gateway: errors are logged (at most once a second),
//! counted, and shown by `/health`; the lines of a failed batch are counted as lost, held
//! answers go out as CALLERROR InternalError (the charge point keeps the billing message and
//! retries it, so nothing acknowledged is lost), and the file is reopened at most once a second.

pub mod file;
pub mod line;
mod lines;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use log::{info, warn};

use crate::batch::{Pool, Recycle};
use crate::clock::WallClock;
use crate::config::EventsConfig;
use crate::events::sink::{self, HAND_OVER, Handed, SinkHealth};
use crate::events::{Event, EventSink, EventWriter, HeldAnswers, ReplyRoute};
use crate::stats::Stats;

pub use file::rotated_name;
pub use lines::{Intake, LineSink, LineWriter, Lines, testing};

/// Chunks kept for reuse.
const POOL: usize = 16;

/// What `/health` reads about the journal.
#[derive(Debug)]
pub struct JournalStatus {
    pub path: PathBuf,
    health: SinkHealth,
    /// Lines handed over and not yet written.
    queued_lines: AtomicU64,
    /// Rung after lines reached the file (one pending ring is enough), for whoever waits for
    /// the file to have them (tests) rather than looking every few milliseconds.
    written: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
}

impl JournalStatus {
    /// A ring after each write of lines.
    pub fn written(&self) -> crossbeam_channel::Receiver<()> {
        self.written.1.clone()
    }

    fn ring_written(&self) {
        let _ = self.written.0.try_send(());
    }

    /// Lines waiting to be written.
    pub fn queue_depth(&self) -> u64 {
        self.queued_lines.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for JournalStatus {
    type Target = SinkHealth;

    /// Failing or not and why, and when the thread was last seen working.
    fn deref(&self) -> &SinkHealth {
        &self.health
    }
}

/// Rendered lines on their way to their sink (the file; the Redis stream), and the answers
/// waiting for them.
#[derive(Default)]
pub struct Chunk {
    /// The writer it comes from (0: lines of threads that never wait, which hold nothing).
    pub writer: u16,
    pub lines: Vec<u8>,
    pub count: u64,
    /// Held answers, in the order they were held.
    pub held: HeldAnswers,
}

/// Writers whose lines were lost. An answer is held after the lines it covers, and a chunk
/// that filled up is handed over between them: its lines may be in the chunk before its own.
/// So when a writer's chunk is lost, the answers of that writer's next chunk are refused too.
#[derive(Debug, Default)]
pub struct LostWriters(Vec<bool>);

impl LostWriters {
    /// `writer`'s chunk was lost.
    pub fn mark(&mut self, writer: u16) {
        let index = usize::from(writer);
        if self.0.len() <= index {
            self.0.resize(index + 1, false);
        }
        self.0[index] = true;
    }

    /// Whether `writer`'s chunk that comes now follows a lost one (and forgets it).
    pub fn follows_lost(&mut self, writer: u16) -> bool {
        self.0
            .get_mut(usize::from(writer))
            .is_some_and(|lost| std::mem::replace(lost, false))
    }
}

impl Recycle for Chunk {
    fn recycle(&mut self) -> bool {
        // A chunk taken from the pool belongs to no writer until one claims it (the stream's
        // side chunk never does: a stale number would match another writer's chunks).
        self.writer = 0;
        self.lines.clear();
        self.count = 0;
        self.held.clear();
        self.lines.capacity() <= 2 * HAND_OVER.bytes
    }
}

/// Lines of threads that must never wait (loops, resolvers of outbound calls).
#[derive(Default)]
struct SideLines {
    lines: Vec<u8>,
    count: u64,
    clock: WallClock,
}

/// What producers hold: the channel to the thread and what they share with it. (The thread
/// holds only [`Common`]: it ends when the last producer drops its sender.)
pub struct Shared {
    tx: Sender<Chunk>,
    common: Arc<Common>,
}

impl std::ops::Deref for Shared {
    type Target = Common;

    fn deref(&self) -> &Common {
        &self.common
    }
}

/// What producers and the thread share.
pub struct Common {
    chunks: Pool<Chunk>,
    side: Mutex<SideLines>,
    /// Rung when the side buffer gets its first line: the thread waits on it with the chunks.
    side_rung: (Sender<()>, crossbeam_channel::Receiver<()>),
    /// Lines the side buffer may hold before events are lost.
    side_limit: u64,
    node: Arc<str>,
    /// The next writer's number.
    writers: AtomicU16,
    route: Arc<dyn ReplyRoute>,
    status: Arc<JournalStatus>,
    stats: Arc<Stats>,
    ack_after_write: bool,
}

/// The journal sink.
pub struct Journal {
    shared: Arc<Shared>,
}

/// How long journal files stay, from the configuration.
pub fn retention(config: &EventsConfig) -> file::Retention {
    file::Retention {
        max_files: config.max_files,
        min_age: config.min_retention,
    }
}

impl Journal {
    /// Opens the file (creating its directory) and starts the thread. The thread ends when
    /// every handle (and every writer) is gone, after writing what was queued.
    pub fn start(
        config: &EventsConfig,
        node: &str,
        route: Arc<dyn ReplyRoute>,
        stats: Arc<Stats>,
    ) -> std::io::Result<(Arc<Journal>, Arc<JournalStatus>, JoinHandle<()>)> {
        let file = file::JournalFile::open(config.path.clone(), retention(config))?;
        let status = Arc::new(JournalStatus {
            path: config.path.clone(),
            health: SinkHealth::default(),
            queued_lines: AtomicU64::new(0),
            written: crossbeam_channel::bounded(1),
        });
        let slots = (config.queue_capacity / HAND_OVER.events).max(2);
        let (tx, rx) = crossbeam_channel::bounded(slots);
        let common = Arc::new(Common {
            chunks: Pool::new(POOL),
            side: Mutex::new(SideLines::default()),
            side_rung: crossbeam_channel::bounded(1),
            side_limit: config.queue_capacity as u64,
            node: node.into(),
            writers: AtomicU16::new(1),
            route,
            status: Arc::clone(&status),
            stats,
            ack_after_write: config.ack_after_write,
        });
        let thread = writer::spawn(writer::Parts {
            rx,
            file,
            config: config.clone(),
            common: Arc::clone(&common),
        })?;
        let shared = Arc::new(Shared { tx, common });
        info!(
            "journal: {} (rotate at {} bytes, keep {} files, fsync {:?}{})",
            config.path.display(),
            config.max_file_bytes,
            config.max_files,
            config.fsync,
            if config.ack_after_write {
                ", billing answers after write"
            } else {
                ""
            }
        );
        Ok((Arc::new(Journal { shared }), status, thread))
    }
}

impl EventSink for Journal {
    fn writer(&self) -> Box<dyn EventWriter> {
        Box::new(LineWriter::new(vec![self.intake()]))
    }

    fn record_nowait(&self, event: &Event<'_>) -> bool {
        if !event.kind.journaled() {
            return true;
        }
        let shared = &self.shared;
        let Ok(mut side) = shared.side.lock() else {
            return false;
        };
        if side.count >= shared.side_limit {
            drop(side);
            shared.stats.journal.journal_lines_lost.inc();
            warn!(
                "journal: side buffer full, an event of cp={} is lost",
                event.cp
            );
            return false;
        }
        let SideLines {
            lines,
            count,
            clock,
        } = &mut *side;
        line::render(lines, clock.text(event.at), &shared.node, event);
        *count += 1;
        if *count == 1 {
            // One pending ring is enough: the thread takes every side line at once.
            let _ = shared.side_rung.0.try_send(());
        }
        shared.status.queued_lines.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn acks_after_write(&self) -> bool {
        self.shared.ack_after_write
    }
}

impl LineSink for Journal {
    fn intake(&self) -> Arc<dyn Intake> {
        Arc::clone(&self.shared) as Arc<dyn Intake>
    }
}

impl Intake for Shared {
    fn node(&self) -> &str {
        &self.node
    }

    fn next_writer(&self) -> u16 {
        self.writers.fetch_add(1, Ordering::Relaxed)
    }

    fn fresh(&self) -> Chunk {
        self.chunks.take()
    }

    fn hand_over(&self, chunk: Chunk) -> bool {
        let count = chunk.count;
        let queued = &self.status.queued_lines;
        queued.fetch_add(count, Ordering::Relaxed);
        match sink::hand_over(&self.tx, chunk) {
            Handed::At => false,
            Handed::Waited => true,
            Handed::Gone(mut chunk) => {
                // The thread is gone (it stopped or died): what the chunk holds is refused,
                // not left owed for ever.
                queued.fetch_sub(count, Ordering::Relaxed);
                let refused = &self.stats.journal.journal_refused;
                chunk.held.release(&*self.route, false, refused);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::EventKind;
    use crate::types::ChargePointId;

    use crate::events::testing::Nowhere;

    #[test]
    fn a_recycled_chunk_belongs_to_no_writer() {
        let mut chunk = Chunk {
            writer: 3,
            count: 1,
            lines: b"line\n".to_vec(),
            ..Chunk::default()
        };
        assert!(chunk.recycle());
        assert_eq!((chunk.writer, chunk.count, chunk.lines.len()), (0, 0, 0));
    }

    #[test]
    fn a_chunk_the_thread_can_no_longer_take_refuses_its_answers() {
        let stats = Arc::new(Stats::new(1, 1));
        let route = Arc::new(crate::events::testing::Counting::default());
        let (tx, rx) = crossbeam_channel::bounded(1);
        drop(rx); // the journal thread is gone
        let common = Arc::new(Common {
            chunks: Pool::new(POOL),
            side: Mutex::new(SideLines::default()),
            side_rung: crossbeam_channel::bounded(1),
            side_limit: 1,
            node: "gw".into(),
            writers: AtomicU16::new(1),
            route: Arc::clone(&route) as Arc<dyn ReplyRoute>,
            status: Arc::new(JournalStatus {
                path: PathBuf::new(),
                health: SinkHealth::default(),
                queued_lines: AtomicU64::new(0),
                written: crossbeam_channel::bounded(1),
            }),
            stats: Arc::clone(&stats),
            ack_after_write: true,
        });
        let shared = Shared { tx, common };
        let conn = crate::types::ConnId {
            loop_index: 0,
            key: 1,
            generation: 1,
        };
        let answer = crate::events::Held::new(conn, b"[3,\"1\",{}]", 1);
        let mut chunk = Chunk {
            writer: 1,
            count: 1,
            lines: b"line\n".to_vec(),
            ..Chunk::default()
        };
        chunk.held.push(&answer);
        assert!(!shared.hand_over(chunk));
        assert!(!answer.is_owed(), "settled, not owed for ever");
        assert_eq!(route.delivered(), 1, "its CALLERROR went to the loop");
        assert_eq!(stats.snapshot().journal_refused, 1);
        assert_eq!(shared.status.queue_depth(), 0);
    }

    #[test]
    fn a_lost_chunk_marks_its_writer_until_its_next_chunk() {
        let mut lost = LostWriters::default();
        assert!(!lost.follows_lost(3), "nothing lost yet");
        lost.mark(3);
        assert!(!lost.follows_lost(2), "another writer");
        assert!(lost.follows_lost(3), "the next chunk of writer 3");
        assert!(!lost.follows_lost(3), "and only that one");
    }

    #[test]
    fn a_line_of_a_thread_that_never_waits_wakes_the_journal() {
        let dir = std::env::temp_dir().join(format!("journal-side-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = crate::config::Config::default().events;
        config.path = dir.join("events.jsonl");
        let stats = Arc::new(Stats::new(1, 1));
        let (journal, status, thread) =
            Journal::start(&config, "gw", Arc::new(Nowhere), stats).expect("a journal");
        let written = status.written();
        let cp: ChargePointId = "CP-side".into();
        let event = Event {
            at: std::time::SystemTime::now(),
            cp: &cp,
            kind: EventKind::Refused {
                peer: "127.0.0.1:9".parse().unwrap(),
                status: 401,
                reason: "wrong password",
            },
        };
        assert!(journal.record_nowait(&event));
        // No chunk comes: the side buffer's ring alone brings the thread to write the line.
        written
            .recv_timeout(Duration::from_secs(10))
            .expect("the line is written");
        let text = std::fs::read_to_string(&config.path).unwrap();
        assert!(text.contains("CP-side"), "{text}");
        drop(journal);
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
