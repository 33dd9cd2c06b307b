//! `cluster.events`: every journal line also on the Redis stream `{prefix}events`, for backends
//! that read events from Redis. The journal is the source: a thread of its own follows the
//! journal files as they are written and rotated and appends each complete line, in order, with
//! `XADD {prefix}events MAXLEN ~ cluster.events_maxlen * node {node} line {json}`.
//!
//! Why follow the file rather than send from the processors: the journal already decides what
//! is acknowledged (with `events.ack_after_write` a StopTransaction or MeterValues is answered
//! only once its line is on disk), so whatever a charge point was told is safe is on the disk,
//! and the stream gets all of it, in the journal's order, however long Redis was away, with no
//! memory that grows while it is (the lines wait on the disk, not in a buffer) and nothing on a
//! processor's way. The position reached, `{inode}:{offset}`, is written in the same
//! MULTI/EXEC as the lines (`{prefix}events-cursor:{node}`), so after a restart or an outage
//! the stream continues exactly where it stopped: no line twice, none left out (unless the
//! journal deleted a file before it was published: counted in `cluster_events_lost_files`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};

use super::{REDIS_TIMEOUT, RETRY};
use crate::journal::rotated_name;
use crate::stats::Stats;

/// Caught up, the thread waits for the journal's ring after its next write; at most this long,
/// which is how long a stop may wait for it (a rotation needs no ring: it comes with lines).
const WAIT: Duration = Duration::from_millis(100);
/// Bytes read (and lines sent in one MULTI/EXEC) per round ...
const READ_BYTES: usize = 256 * 1024;
/// ... more only for a line longer than that, up to this.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Where the thread reads: a journal file (kept open: renames by rotation do not matter) and
/// the offset of the first byte not yet published.
struct Position {
    file: File,
    inode: u64,
    offset: u64,
}

pub struct Follower {
    pub client: redis::Client,
    pub prefix: String,
    pub node: String,
    pub journal: PathBuf,
    pub maxlen: u64,
    pub stats: Arc<Stats>,
    /// Rung by the journal after each write of lines (`JournalStatus::written`).
    pub written: Receiver<()>,
}

/// Starts the thread; it ends once `stop` is set (what it has not published yet is published
/// after the next start, from the cursor).
pub fn start(follower: Follower, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cluster-events".into())
        .spawn(move || follower.run(&stop))
}

impl Follower {
    /// Waits for the journal's ring after its next write (at most [`WAIT`]). Once the journal
    /// is gone (the gateway is stopping) the ring never comes: each wait is then the whole
    /// [`WAIT`], not an immediate return that would spin until the stop.
    fn wait_for_lines(&self) {
        if let Err(RecvTimeoutError::Disconnected) = self.written.recv_timeout(WAIT) {
            std::thread::park_timeout(WAIT);
        }
    }

    fn cursor_key(&self) -> String {
        format!("{}events-cursor:{}", self.prefix, self.node)
    }

    fn run(&self, stop: &AtomicBool) {
        let mut connection: Option<redis::Connection> = None;
        let mut position: Option<Position> = None;
        let mut buffer = vec![0u8; READ_BYTES];
        while !stop.load(Ordering::Relaxed) {
            let Some(con) = connection.as_mut() else {
                connection = self.connect();
                if connection.is_none() {
                    std::thread::park_timeout(RETRY);
                }
                continue;
            };
            if position.is_none() {
                match self.resume(con) {
                    Ok(found) => position = found,
                    Err(e) => {
                        self.failed(&e);
                        connection = None;
                        continue;
                    }
                }
                if position.is_none() {
                    self.wait_for_lines(); // no journal file yet
                    continue;
                }
            }
            let Some(at) = position.as_mut() else {
                continue;
            };
            match self.publish(con, at, &mut buffer) {
                Ok(0) => match self.next_file(at) {
                    Some(next) => position = Some(next),
                    None => self.wait_for_lines(),
                },
                Ok(_) => {}
                Err(e) => {
                    self.failed(&e);
                    connection = None;
                    position = None; // resumed from the cursor: what Redis has, exactly
                }
            }
        }
    }

    /// Logs and counts a failure, then pauses before the next attempt (a Redis that refuses
    /// the lines, out of memory say, must not make this thread spin).
    fn failed(&self, e: &redis::RedisError) {
        warn!("cluster events: Redis failed ({e}); the journal keeps the lines");
        self.stats.cluster.cluster_errors.inc();
        std::thread::park_timeout(RETRY);
    }

    fn connect(&self) -> Option<redis::Connection> {
        let con = self
            .client
            .get_connection_with_timeout(REDIS_TIMEOUT)
            .ok()?;
        let _ = con.set_read_timeout(Some(REDIS_TIMEOUT));
        let _ = con.set_write_timeout(Some(REDIS_TIMEOUT));
        Some(con)
    }

    /// Where to go on from: the cursor's file and offset if that file still exists, else the
    /// oldest journal file (counted as a loss when the cursor's file is gone), from its start.
    fn resume(&self, con: &mut redis::Connection) -> redis::RedisResult<Option<Position>> {
        let cursor: Option<String> = redis::cmd("GET").arg(self.cursor_key()).query(con)?;
        let cursor = cursor.and_then(|c| {
            let (inode, offset) = c.split_once(':')?;
            Some((inode.parse::<u64>().ok()?, offset.parse::<u64>().ok()?))
        });
        let files = journal_files(&self.journal);
        if let Some((inode, offset)) = cursor {
            if let Some((_, file, _)) = files.iter().find(|(_, _, i)| *i == inode) {
                let file = file.try_clone().ok();
                return Ok(file.map(|mut file| {
                    let len = file.metadata().map_or(0, |m| m.len());
                    let offset = offset.min(len);
                    let _ = file.seek(SeekFrom::Start(offset));
                    Position {
                        file,
                        inode,
                        offset,
                    }
                }));
            }
            if !files.is_empty() {
                warn!(
                    "cluster events: the journal file last published was deleted; going on with the oldest"
                );
                self.stats.cluster.cluster_events_lost_files.inc();
            }
        }
        let Some((path, file, inode)) = files.into_iter().next() else {
            return Ok(None);
        };
        info!(
            "cluster events: publishing {} from its start",
            path.display()
        );
        Ok(Some(Position {
            file,
            inode,
            offset: 0,
        }))
    }

    /// Publishes the complete lines after `at` with the new cursor, atomically. The number of
    /// lines (0: nothing complete to read).
    fn publish(
        &self,
        con: &mut redis::Connection,
        at: &mut Position,
        buffer: &mut Vec<u8>,
    ) -> redis::RedisResult<usize> {
        let read = read_at(&mut at.file, at.offset, buffer).map_err(redis::RedisError::from)?;
        let complete = buffer[..read]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |last| last + 1);
        if complete == 0 {
            if read == buffer.len() && buffer.len() < MAX_LINE {
                buffer.resize(buffer.len() * 2, 0); // one line longer than the buffer
            }
            return Ok(0);
        }
        let key = format!("{}events", self.prefix);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut lines: u64 = 0;
        for line in buffer[..complete].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.maxlen)
                .arg("*")
                .arg("node")
                .arg(&self.node)
                .arg("line")
                .arg(line)
                .ignore();
            lines += 1;
        }
        let offset = at.offset + complete as u64;
        pipe.cmd("SET")
            .arg(self.cursor_key())
            .arg(format!("{}:{offset}", at.inode))
            .ignore();
        pipe.exec(con)?;
        at.offset = offset;
        self.stats.cluster.cluster_events_published.add(lines);
        Ok(lines.max(1) as usize)
    }

    /// At the end of `at`'s file: the next newer journal file once the journal has moved on
    /// from this one (rotated), None while it may still grow.
    fn next_file(&self, at: &Position) -> Option<Position> {
        // The common case, cheaply: still the current file.
        if std::fs::metadata(&self.journal).is_ok_and(|m| m.ino() == at.inode) {
            return None;
        }
        let files = journal_files(&self.journal);
        let index = files.iter().position(|(_, _, inode)| *inode == at.inode);
        let newer = match index {
            // The current file: it may still grow.
            Some(i) if i + 1 == files.len() => return None,
            Some(i) => i + 1,
            // Deleted by rotation after it was read to the end: the oldest remaining one is
            // the next (its lines all came after ours).
            None => 0,
        };
        // Read what was written to ours after the check above, before leaving it.
        let len = at.file.metadata().map_or(0, |m| m.len());
        if len > at.offset {
            return None;
        }
        let (_, file, inode) = files.into_iter().nth(newer)?;
        Some(Position {
            file,
            inode,
            offset: 0,
        })
    }
}

/// The journal files, oldest first (`path.N` ... `path.1`, `path`), opened, with their inodes.
fn journal_files(path: &Path) -> Vec<(PathBuf, File, u64)> {
    let mut names = Vec::new();
    let mut n = 1;
    while rotated_name(path, n).exists() {
        names.push(rotated_name(path, n));
        n += 1;
    }
    names.reverse();
    names.push(path.to_owned());
    names
        .into_iter()
        .filter_map(|name| {
            let file = File::open(&name).ok()?;
            let inode = file.metadata().ok()?.ino();
            Some((name, file, inode))
        })
        .collect()
}

/// Reads up to `buffer.len()` bytes of `file` from `offset`.
fn read_at(file: &mut File, offset: u64, buffer: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_files_come_oldest_first() {
        let dir = std::env::temp_dir().join(format!("events-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        std::fs::write(rotated_name(&path, 2), "a\n").unwrap();
        std::fs::write(rotated_name(&path, 1), "b\n").unwrap();
        std::fs::write(&path, "c\n").unwrap();
        let names: Vec<PathBuf> = journal_files(&path).into_iter().map(|f| f.0).collect();
        assert_eq!(
            names,
            vec![rotated_name(&path, 2), rotated_name(&path, 1), path.clone()]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
