//! The journal thread: takes every chunk that is ready, writes them and the side buffer in one
//! go, syncs as `events.fsync` says, and only then releases the answers held for
//! `ack_after_write` (one fdatasync covers a whole batch: group commit).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{error, info};

use super::file::{JournalFile, Retention};
use super::{Chunk, Common, LostWriters};
use crate::config::{EventsConfig, Fsync};

/// Chunks taken per batch.
const BATCH: usize = 64;
/// After a failure, the file is reopened at most this often.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

pub(super) struct Parts {
    pub rx: Receiver<Chunk>,
    pub file: JournalFile,
    pub config: EventsConfig,
    pub common: Arc<Common>,
}

pub(super) fn spawn(parts: Parts) -> io::Result<JoinHandle<()>> {
    let Parts {
        rx,
        file,
        config,
        common,
    } = parts;
    let mut writer = Writer {
        rx,
        shared: common,
        file: Some(file),
        fsync: config.fsync,
        last_sync: Instant::now(),
        unsynced: false,
        last_failure: None,
        max_file_bytes: config.max_file_bytes,
        retention: super::retention(&config),
        side: Vec::new(),
        lost: LostWriters::default(),
    };
    std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || writer.run())
}

struct Writer {
    rx: Receiver<Chunk>,
    shared: Arc<Common>,
    file: Option<JournalFile>,
    fsync: Fsync,
    last_sync: Instant,
    /// Lines written since the last sync.
    unsynced: bool,
    last_failure: Option<Instant>,
    max_file_bytes: u64,
    retention: Retention,
    /// The side buffer's lines, swapped out under its lock.
    side: Vec<u8>,
    /// Writers whose last chunk was lost.
    lost: LostWriters,
}

impl Writer {
    fn run(&mut self) {
        let mut batch: Vec<Chunk> = Vec::with_capacity(BATCH);
        let mut open = true;
        let side_rung = self.shared.side_rung.1.clone();
        while open {
            // Waits for a chunk, the side buffer's first line, or the interval sync's deadline;
            // a wait is not silence (`/health` does not take an idle journal for a stuck one).
            let sync_due = self.sync_due_in();
            self.shared.status.mark_waiting();
            crossbeam_channel::select! {
                recv(self.rx) -> chunk => match chunk {
                    Ok(chunk) => batch.push(chunk),
                    Err(_) => open = false,
                },
                recv(side_rung) -> _ => {}
                default(sync_due.unwrap_or(Duration::MAX)) => {}
            }
            self.shared.status.mark_alive();
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(chunk) => batch.push(chunk),
                    Err(_) => break,
                }
            }
            let side_count = self.take_side();
            self.write_batch(&mut batch, side_count);
            self.shared.status.mark_alive();
        }
        if let Some(file) = &mut self.file {
            let _ = file.flush();
            if self.fsync != Fsync::Never {
                let _ = file.sync();
            }
        }
        info!("journal stopped");
    }

    /// Swaps the side buffer's lines out; returns how many there are.
    fn take_side(&mut self) -> u64 {
        self.side.clear();
        let Ok(mut side) = self.shared.side.lock() else {
            return 0;
        };
        std::mem::swap(&mut side.lines, &mut self.side);
        std::mem::take(&mut side.count)
    }

    fn write_batch(&mut self, batch: &mut Vec<Chunk>, side_count: u64) {
        let lines: u64 = batch.iter().map(|c| c.count).sum::<u64>() + side_count;
        if lines == 0 && batch.iter().all(|c| c.held.is_empty()) {
            self.shared.chunks_back(batch);
            // Nothing new, but lines written earlier may have reached their interval sync.
            if self.unsynced
                && let Err(e) = self.flush_and_sync()
            {
                self.fail(&e, 0);
            }
            return;
        }
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
        let side = std::mem::take(&mut self.side);
        for bytes in batch
            .iter()
            .map(|c| c.lines.as_slice())
            .chain([side.as_slice()])
        {
            if result.is_ok() && !bytes.is_empty() {
                result = self.write(bytes);
            }
        }
        self.side = side;
        if result.is_ok() {
            result = self.flush_and_sync();
        }
        self.shared
            .status
            .queued_lines
            .fetch_sub(lines, Ordering::Relaxed);
        let written = result.is_ok();
        match result {
            Ok(()) => {
                let journal = &self.shared.stats.journal;
                journal.journal_lines.add(lines);
                if lines > 0 {
                    self.shared.status.ring_written();
                }
                if lines > 0 && self.shared.status.recovered() {
                    info!("journal: writing again");
                }
            }
            Err(_) if resting => self.shared.stats.journal.journal_lines_lost.add(lines),
            Err(e) => self.fail(&e, lines),
        }
        let common = &self.shared;
        for chunk in batch.iter_mut() {
            // An answer may cover lines of its writer's chunk before: lost with a failed batch.
            let kept = !self.lost.follows_lost(chunk.writer) && written;
            if !written {
                self.lost.mark(chunk.writer);
            }
            let refused = &common.stats.journal.journal_refused;
            chunk.held.release(&*common.route, kept, refused);
        }
        self.shared.chunks_back(batch);
    }

    /// Appends whole lines, rotating first whenever the next lines would carry the file past
    /// `events.max_file_bytes` (a single line longer than that goes alone into a file).
    fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let path = self.shared.status.path.clone();
            self.file = Some(JournalFile::open(path, self.retention)?);
        }
        while !bytes.is_empty() {
            let Some(file) = &mut self.file else {
                return Err(io::Error::other("journal file unavailable"));
            };
            let room = self.max_file_bytes.saturating_sub(file.size) as usize;
            let fits = if bytes.len() <= room {
                bytes.len()
            } else {
                bytes[..room]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
            };
            let take = match fits {
                0 if file.size > 0 => {
                    self.rotate()?;
                    continue;
                }
                0 => bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |i| i + 1),
                n => n,
            };
            file.write(&bytes[..take])?;
            self.shared.stats.journal.journal_bytes.add(take as u64);
            self.unsynced = true;
            bytes = &bytes[take..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        file.flush()?;
        if self.fsync != Fsync::Never {
            file.sync()?;
            self.shared.stats.journal.journal_syncs.inc();
        }
        file.rotate()?;
        self.shared.stats.journal.journal_rotations.inc();
        Ok(())
    }

    /// How long until unsynced lines must be synced (`events.fsync` an interval); None when
    /// nothing waits for a sync.
    fn sync_due_in(&self) -> Option<Duration> {
        match self.fsync {
            Fsync::Interval(every) if self.unsynced && self.file.is_some() => {
                Some(every.saturating_sub(self.last_sync.elapsed()))
            }
            _ => None,
        }
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
            self.shared.stats.journal.journal_syncs.inc();
            self.last_sync = Instant::now();
            self.unsynced = false;
        }
        Ok(())
    }

    fn fail(&mut self, e: &io::Error, lost: u64) {
        let stats = &self.shared.stats.journal;
        stats.journal_errors.inc();
        stats.journal_lines_lost.add(lost);
        let status = &self.shared.status;
        status.fail(e.to_string());
        if status.may_warn() {
            error!(
                "journal {}: {e} ({lost} lines lost; still serving charge points)",
                status.path.display()
            );
        }
        if let Some(file) = self.file.take() {
            file.discard();
        }
        // What was not synced went with the file: no sync is owed for it.
        self.unsynced = false;
        self.last_failure = Some(Instant::now());
    }
}

impl Common {
    fn chunks_back(&self, batch: &mut Vec<Chunk>) {
        for chunk in batch.drain(..) {
            self.chunks.give(chunk);
        }
    }
}
