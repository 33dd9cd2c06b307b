//! The embedded event sink: one JSON line per event, appended by its own thread to
//! `events.path`, rotated by size, synced as `events.fsync` says.
//!
//! The thread takes events in batches (everything queued, up to [`BATCH`]), writes them, syncs
//! when the mode asks, and only then releases the answers held for `ack_after_write`: one
//! fdatasync covers a whole batch (group commit), so `fsync = "always"` costs one sync per
//! batch, not per line.
//!
//! A failing disk must not stop the gateway: errors are logged (at most once a second), counted,
//! and shown by `/health`; the lines of a failed batch are counted as lost (what was still
//! buffered is discarded, never written later), held answers go out as CALLERROR InternalError
//! (the charge point keeps the billing message and retries it, so nothing acknowledged is
//! lost), and the file is reopened at most once a second until writes succeed again, starting
//! on a fresh line if the failure tore the last one.
//!
//! Loops never wait for the journal: when its queue is full their events go to a side queue,
//! and once anything waits there their later events follow it, so their order holds. The side
//! queue is bounded too (`events.queue_capacity`); beyond it events are counted as lost.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use log::{error, info, warn};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::{EventsConfig, Fsync};
use crate::events::{Ack, Answered, Event, EventKind, EventSink};
use crate::net::{LoopHandle, ToLoop};
use crate::ocpp::rpc::{self, CallErrorCode};
use crate::stats::Stats;

/// Events taken per batch.
const BATCH: usize = 4096;
/// The thread wakes at least this often (interval syncs, the side queue, liveness).
const TICK: Duration = Duration::from_millis(100);
/// Once an event has arrived, the thread lets this long pass before it takes the batch: the
/// producers then hand over events without waking anyone, and one write (and one sync)
/// covers them all. It is also the most a held billing answer waits beyond its write.
const GATHER: Duration = Duration::from_millis(2);
/// After a failure, the file is reopened at most this often.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// What `/health` reads about the journal.
#[derive(Debug)]
pub struct JournalStatus {
    pub path: PathBuf,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    origin: Instant,
    /// Milliseconds since `origin` when the thread last went round its loop.
    alive_ms: AtomicU64,
}

impl JournalStatus {
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// How long ago the thread was last seen working.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.alive_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    fn mark_alive(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.alive_ms.store(ms, Ordering::Relaxed);
    }
}

/// The sending side, shared by processors, loops and callers.
pub struct Journal {
    tx: Sender<Event>,
    overflow: Arc<Mutex<VecDeque<Event>>>,
    overflow_limit: usize,
    ack_after_write: bool,
    stats: Arc<Stats>,
}

impl EventSink for Journal {
    fn record(&self, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => false,
            Err(TrySendError::Full(event)) => {
                let _ = self.tx.send(event); // Err only when the thread is gone (shutdown)
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn record_nowait(&self, event: Event) -> bool {
        let Ok(mut side) = self.overflow.lock() else {
            return false;
        };
        // Behind anything already waiting there, so one producer's events keep their order.
        let event = if side.is_empty() {
            match self.tx.try_send(event) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(event)) => event,
            }
        } else {
            event
        };
        if side.len() < self.overflow_limit {
            side.push_back(event);
        } else {
            self.stats.journal.journal_lines_lost.inc();
            warn!(
                "journal: side queue full, an event of cp={} is lost",
                event.cp
            );
        }
        true
    }

    fn acks_after_write(&self) -> bool {
        self.ack_after_write
    }
}

impl Journal {
    /// Opens the file (creating its directory) and starts the thread. The thread ends when
    /// every [`Journal`] handle is gone, after writing what was queued.
    pub fn start(
        config: &EventsConfig,
        node: &str,
        loops: Vec<LoopHandle>,
        stats: Arc<Stats>,
    ) -> io::Result<(Arc<Journal>, Arc<JournalStatus>, JoinHandle<()>)> {
        let file = JournalFile::open(config.path.clone(), config.max_files)?;
        let origin = Instant::now();
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);
        let overflow = Arc::new(Mutex::new(VecDeque::new()));
        let status = Arc::new(JournalStatus {
            path: config.path.clone(),
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            origin,
            alive_ms: AtomicU64::new(0),
        });
        let mut writer = Writer {
            rx,
            overflow: Arc::clone(&overflow),
            status: Arc::clone(&status),
            stats: Arc::clone(&stats),
            loops,
            node: node.to_owned(),
            file: Some(file),
            fsync: config.fsync,
            last_sync: Instant::now(),
            unsynced: false,
            last_failure: None,
            last_warning: None,
            line: Vec::with_capacity(512),
            timestamps: Timestamps::default(),
            max_file_bytes: config.max_file_bytes,
            max_files: config.max_files,
        };
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer.run())?;
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
        let journal = Journal {
            tx,
            overflow,
            overflow_limit: config.queue_capacity,
            ack_after_write: config.ack_after_write,
            stats,
        };
        Ok((Arc::new(journal), status, thread))
    }

    /// Events waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.tx.len() + self.overflow.lock().map_or(0, |q| q.len())
    }
}

struct Writer {
    rx: Receiver<Event>,
    overflow: Arc<Mutex<VecDeque<Event>>>,
    status: Arc<JournalStatus>,
    stats: Arc<Stats>,
    loops: Vec<LoopHandle>,
    node: String,
    file: Option<JournalFile>,
    fsync: Fsync,
    last_sync: Instant,
    /// Lines written since the last sync.
    unsynced: bool,
    last_failure: Option<Instant>,
    last_warning: Option<Instant>,
    line: Vec<u8>,
    timestamps: Timestamps,
    max_file_bytes: u64,
    max_files: usize,
}

impl Writer {
    fn run(&mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut open = true;
        while open {
            match self.rx.recv_timeout(TICK) {
                Ok(event) => {
                    batch.push(event);
                    // Not a synchronisation: batching. A busy journal never gets here idle.
                    if self.rx.is_empty() {
                        std::thread::sleep(GATHER);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            let side = match self.overflow.lock() {
                Ok(mut queue) => std::mem::take(&mut *queue),
                Err(_) => VecDeque::new(),
            };
            batch.extend(side);
            self.write_batch(&mut batch);
            self.status.mark_alive();
        }
        if let Some(file) = &mut self.file {
            let _ = file.flush();
            if self.fsync != Fsync::Never {
                let _ = file.sync();
            }
        }
        info!("journal stopped");
    }

    fn write_batch(&mut self, batch: &mut Vec<Event>) {
        let mut acks: Vec<(Ack, String)> = Vec::new();
        // After a failure the file is left alone for a while: this batch is lost like the last.
        let resting = self.file.is_none()
            && self
                .last_failure
                .is_some_and(|at| at.elapsed() < REOPEN_AFTER);
        let mut result = if resting {
            Err(io::Error::other("journal file unavailable after an error"))
        } else {
            Ok(())
        };
        // Every line of the batch: all of them are lost if any part of the batch fails.
        let mut lines = 0u64;
        for mut event in batch.drain(..) {
            if let Some(ack) = event.ack.take() {
                let unique_id = match &event.kind {
                    EventKind::Exchange { unique_id, .. } => unique_id.clone(),
                    _ => String::new(),
                };
                acks.push((ack, unique_id));
            }
            lines += line_count(&event.kind);
            if result.is_err() {
                continue;
            }
            for part in [LinePart::First, LinePart::Second] {
                self.line.clear();
                let ts = self.timestamps.of(event.at);
                if !render(&mut self.line, ts, &self.node, &event, part) {
                    continue;
                }
                if let Err(e) = self.write_line() {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.flush_and_sync();
        }
        match result {
            Ok(()) => {
                if lines > 0 && self.status.failing.swap(false, Ordering::Relaxed) {
                    info!("journal: writing again");
                }
                for (ack, _) in acks {
                    self.deliver(ack.conn, ack.text);
                }
            }
            Err(_) if resting => {
                self.stats.journal.journal_lines_lost.add(lines);
                self.refuse(acks);
            }
            Err(e) => {
                self.fail(&e, lines);
                self.refuse(acks);
            }
        }
    }

    /// Answers held for lines that could not be written: CALLERROR InternalError, so the
    /// charge point keeps the message and sends it again later.
    fn refuse(&self, acks: Vec<(Ack, String)>) {
        for (ack, unique_id) in acks {
            self.stats.journal.journal_refused.inc();
            let mut text = String::with_capacity(96);
            rpc::write_call_error(
                &mut text,
                &unique_id,
                CallErrorCode::InternalError,
                "the gateway could not record this message; send it again later",
            );
            self.deliver(ack.conn, text);
        }
    }

    fn write_line(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(JournalFile::open(self.status.path.clone(), self.max_files)?);
        }
        let Some(file) = &mut self.file else {
            return Err(io::Error::other("journal file unavailable"));
        };
        if file.size > 0 && file.size + self.line.len() as u64 > self.max_file_bytes {
            file.flush()?;
            if self.fsync != Fsync::Never {
                file.sync()?;
                self.stats.journal.journal_syncs.inc();
            }
            file.rotate()?;
            self.stats.journal.journal_rotations.inc();
        }
        file.write(&self.line)?;
        self.stats.journal.journal_lines.inc();
        self.stats.journal.journal_bytes.add(self.line.len() as u64);
        self.unsynced = true;
        Ok(())
    }

    /// Hands the batch to the OS (all an ack needs, unless `fsync = "always"`), and syncs
    /// when the mode says so.
    fn flush_and_sync(&mut self) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        file.flush()?;
        let due = match self.fsync {
            Fsync::Never => false,
            Fsync::Always => true,
            Fsync::Interval(every) => self.last_sync.elapsed() >= every,
        };
        if due && self.unsynced {
            file.sync()?;
            self.stats.journal.journal_syncs.inc();
            self.last_sync = Instant::now();
            self.unsynced = false;
        }
        Ok(())
    }

    fn fail(&mut self, e: &io::Error, lost: u64) {
        self.stats.journal.journal_errors.inc();
        self.stats.journal.journal_lines_lost.add(lost);
        self.status.failing.store(true, Ordering::Relaxed);
        if let Ok(mut last) = self.status.last_error.lock() {
            *last = Some(e.to_string());
        }
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.last_warning = Some(Instant::now());
            error!(
                "journal {}: {e} ({lost} lines lost; still serving charge points)",
                self.status.path.display()
            );
        }
        if let Some(file) = self.file.take() {
            file.discard();
        }
        self.last_failure = Some(Instant::now());
    }

    fn deliver(&self, conn: crate::net::ConnId, text: String) {
        if let Some(handle) = self.loops.get(usize::from(conn.loop_index)) {
            let _ = handle.send(ToLoop::Text { conn, text });
        } else {
            warn!("journal: answer for unknown loop {}", conn.loop_index);
        }
    }
}

/// The open journal file and its size.
struct JournalFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_files: usize,
}

impl JournalFile {
    fn open(path: PathBuf, max_files: usize) -> io::Result<JournalFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let mut size = file.metadata().map_or(0, |m| m.len());
        if size > 0 && file.metadata().is_ok_and(|m| m.is_file()) {
            // A failure (or a crash) may have torn the last line: start on a fresh one.
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        Ok(JournalFile {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            max_files,
        })
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Closes the file without writing what is still buffered (those lines are counted lost
    /// and their answers refused: they must not appear later).
    fn discard(self) {
        let (file, _unwritten) = self.out.into_parts();
        drop(file);
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.get_ref().sync_data()
    }

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest beyond `max_files`
    /// files in all is deleted; a new, empty `path` is opened.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| rotated_name(&self.path, n);
        if self.max_files <= 1 {
            std::fs::remove_file(&self.path)?;
        } else {
            match std::fs::remove_file(numbered(self.max_files - 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            for n in (1..self.max_files - 1).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The renames must survive a crash as well as the lines.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        self.out = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        Ok(())
    }
}

/// `events.jsonl` -> `events.jsonl.3`.
pub fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// RFC 3339 timestamps, formatted once per millisecond (lines come in bursts).
#[derive(Default)]
struct Timestamps {
    millis: u128,
    text: String,
}

impl Timestamps {
    fn of(&mut self, at: std::time::SystemTime) -> &str {
        // humantime cannot print times before 1970 or after 9999: a broken clock must not
        // take the journal thread down.
        let Ok(since) = at.duration_since(UNIX_EPOCH) else {
            return "";
        };
        if since.as_secs() >= 253_402_300_800 {
            return "";
        }
        let millis = since.as_millis();
        if millis != self.millis || self.text.is_empty() {
            self.millis = millis;
            self.text = humantime::format_rfc3339_millis(at).to_string();
        }
        &self.text
    }
}

#[derive(Clone, Copy, PartialEq)]
enum LinePart {
    First,
    /// Only an exchange has one: our answer.
    Second,
}

fn line_count(kind: &EventKind) -> u64 {
    match kind {
        EventKind::Exchange { .. } => 2,
        _ => 1,
    }
}

/// One journal line; absent fields are left out.
#[derive(Serialize)]
struct Line<'a> {
    ts: &'a str,
    node: &'a str,
    cp: &'a str,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    loop_index: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
}

/// Renders `part` of `event` as a line (with its newline) into `out`; false when the event has
/// no such part.
fn render(out: &mut Vec<u8>, ts: &str, node: &str, event: &Event, part: LinePart) -> bool {
    let mut line = Line {
        ts,
        node,
        cp: &event.cp,
        event: "",
        dir: None,
        id: None,
        action: None,
        payload: None,
        code: None,
        description: None,
        details: None,
        reason: None,
        peer: None,
        loop_index: None,
        outcome: None,
    };
    match (&event.kind, part) {
        (EventKind::Connected { peer, loop_index }, LinePart::First) => {
            line.event = "connected";
            line.peer = Some(peer.to_string());
            line.loop_index = Some(*loop_index);
        }
        (EventKind::Disconnected { cause }, LinePart::First) => {
            line.event = "disconnected";
            line.reason = Some(cause.as_str());
        }
        (
            EventKind::Exchange {
                unique_id,
                action,
                request,
                ..
            },
            LinePart::First,
        ) => {
            line.event = "call";
            line.dir = Some("in");
            line.id = Some(unique_id);
            line.action = Some(action);
            line.payload = Some(request);
        }
        (
            EventKind::Exchange {
                unique_id,
                action,
                answer,
                ..
            },
            LinePart::Second,
        ) => {
            line.dir = Some("out");
            line.id = Some(unique_id);
            line.action = Some(action);
            match answer {
                Answered::Result(payload) => {
                    line.event = "result";
                    line.payload = Some(payload);
                }
                Answered::Error { code, description } => {
                    line.event = "error";
                    line.code = Some(code.as_str());
                    line.description = Some(description);
                }
            }
        }
        (
            EventKind::CallSent {
                unique_id,
                action,
                payload,
            },
            LinePart::First,
        ) => {
            line.event = "call";
            line.dir = Some("out");
            line.id = Some(unique_id);
            line.action = Some(action.name());
            line.payload = Some(payload);
        }
        (
            EventKind::ResultReceived {
                unique_id,
                action,
                payload,
            },
            LinePart::First,
        ) => {
            line.event = "result";
            line.dir = Some("in");
            line.id = Some(unique_id);
            line.action = Some(action.name());
            line.payload = Some(payload);
        }
        (
            EventKind::ErrorReceived {
                unique_id,
                action,
                code,
                description,
                details,
            },
            LinePart::First,
        ) => {
            line.event = "error";
            line.dir = Some("in");
            line.id = Some(unique_id);
            line.action = Some(action.name());
            line.code = Some(code);
            line.description = Some(description);
            line.details = Some(details);
        }
        (
            EventKind::Outcome {
                unique_id,
                action,
                outcome,
            },
            LinePart::First,
        ) => {
            line.event = "outcome";
            line.id = unique_id.as_deref();
            line.action = Some(action.name());
            line.outcome = Some(outcome);
        }
        (_, LinePart::Second) => return false,
    }
    if serde_json::to_writer(&mut *out, &line).is_err() {
        return false;
    }
    out.push(b'\n');
    true
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::net::CloseCause;

    fn line(event: &Event, part: LinePart) -> Option<serde_json::Value> {
        let mut out = Vec::new();
        let ts = Timestamps::default().of(event.at).to_owned();
        render(&mut out, &ts, "node-a", event, part).then(|| {
            assert_eq!(out.last(), Some(&b'\n'));
            serde_json::from_slice(&out).expect("a line is JSON")
        })
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.into()).unwrap()
    }

    #[test]
    fn an_exchange_is_two_lines_call_then_answer() {
        let event = Event {
            at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            cp: "CP\"1".into(),
            kind: EventKind::Exchange {
                unique_id: "42".into(),
                action: "Heartbeat".into(),
                request: raw("{}"),
                answer: Answered::Result(raw(r#"{"currentTime":"x"}"#)),
            },
            ack: None,
        };
        let call = line(&event, LinePart::First).unwrap();
        assert_eq!(call["ts"], "2023-11-14T22:13:20.123Z");
        assert_eq!(call["node"], "node-a");
        assert_eq!(call["cp"], "CP\"1");
        assert_eq!(call["event"], "call");
        assert_eq!(call["dir"], "in");
        assert_eq!(call["id"], "42");
        assert_eq!(call["payload"], serde_json::json!({}));
        let result = line(&event, LinePart::Second).unwrap();
        assert_eq!(result["event"], "result");
        assert_eq!(result["dir"], "out");
        assert_eq!(result["payload"]["currentTime"], "x");
    }

    #[test]
    fn other_events_are_one_line() {
        let event = Event {
            at: SystemTime::now(),
            cp: "CP1".into(),
            kind: EventKind::Disconnected {
                cause: CloseCause::PongTimeout,
            },
            ack: None,
        };
        assert_eq!(
            line(&event, LinePart::First).unwrap()["reason"],
            "pong_timeout"
        );
        assert!(line(&event, LinePart::Second).is_none());
    }

    #[test]
    fn rotation_keeps_max_files_in_all() {
        let dir = std::env::temp_dir().join(format!("journal-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let mut file = JournalFile::open(path.clone(), 3).unwrap();
        for round in 0..5 {
            file.write(format!("line {round}\n").as_bytes()).unwrap();
            file.flush().unwrap();
            file.rotate().unwrap();
        }
        file.write(b"current\n").unwrap();
        file.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "current\n");
        assert_eq!(
            std::fs::read_to_string(rotated_name(&path, 1)).unwrap(),
            "line 4\n"
        );
        assert_eq!(
            std::fs::read_to_string(rotated_name(&path, 2)).unwrap(),
            "line 3\n"
        );
        assert!(!rotated_name(&path, 3).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
