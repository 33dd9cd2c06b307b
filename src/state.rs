//! What one node keeps across a restart (`ocpp.state_file`): per charge point its
//! registration and boot payload, its connectors' last statuses and its open transaction, in an
//! embedded redb file, so a charge point that reconnects after a restart without booting again
//! (as the spec says it should) is still Accepted and its transaction still known.
//!
//! ```text
//!   processor (shard) --changed charge points, held answers--> [bounded channel]
//!       --> state thread --> redb (commit, fsync) --> held answers to their loops
//! ```
//!
//! Processors never wait for the disk for what is not billing: a shard marks a charge point
//! dirty when a BootNotification, StatusNotification, StartTransaction or StopTransaction
//! changed it, and at the end of each batch offers the latest record of every dirty charge
//! point to the state thread without blocking. When the channel is full the charge points stay
//! dirty and are offered again with the next batch: the newest state wins, nothing is queued
//! twice. The state thread commits what it has gathered in one transaction (fsync'd) at most
//! [`COMMIT_EVERY`] after the first change, and everything left when the processors stop.
//!
//! Billing answers (`events.ack_after_write`: StartTransaction, StopTransaction, MeterValues)
//! travel with the changes they depend on: the processor hands them over in the same message
//! (waiting for room, as for a full journal), and the state thread commits as soon as it has
//! drained what is ready (group commit), then sends them on ([`StateSender::holds`]). So a
//! StartTransaction is answered only once its open transaction is on disk; an answer whose
//! commit failed becomes CALLERROR InternalError and the charge point sends it again.
//!
//! What a crash can lose: changes of the last [`COMMIT_EVERY`] or so that nothing answered
//! waited for (a StatusNotification, a BootNotification). A charge point whose
//! BootNotification was lost that way gets SecurityError until it boots again (which it does
//! after a few refused messages); a clean stop loses nothing.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use log::{debug, info, warn};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::events::{HeldAnswer, HeldAnswers, ReplyRoute};
use crate::stats::Stats;
use ocpp::Version;
use ocpp::v16::ChargePointStatus;
use std::sync::Arc;

/// identity -> [`Saved`] as JSON.
const CHARGE_POINTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("charge_points");
/// The longest the state thread gathers changes before it commits them.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// redb's page cache (its default, 1 GiB, would grow with the fleet: writes touch random
/// pages of the tree). Commits are batched, so a small cache costs little.
const CACHE_BYTES: usize = 1024 * 1024;
/// The longest held answers wait for more to share their commit while batches keep coming.
const HOLD_GATHER: Duration = Duration::from_millis(2);
/// Batches of changes in flight between the processors and the state thread.
const CHANNEL_CAPACITY: usize = 1024;

/// Why the state file cannot be used at start.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("ocpp.state_file {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("ocpp.state_file {path}: cannot start its thread: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What is kept of one accepted charge point (only accepted ones have a record: one that is
/// no longer accepted is removed, so a record's presence is the registration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// The highest security profile the charge point authenticated at (0: none); it is never
    /// served below it again. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub profile: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<(u32, ChargePointStatus)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_transaction: Option<i32>,
    /// What a 2.0.1 station keeps beyond its registration: its open transactions, the last
    /// ones it ended, its connectors' statuses (absent: nothing).
    #[serde(default, rename = "ocpp201", skip_serializing_if = "Option::is_none")]
    pub v201: Option<Box<State201>>,
    /// The OCPP version it registered with ("1.6" when absent, as in older records).
    #[serde(default, rename = "ocppVersion", skip_serializing_if = "is_zero")]
    pub version: Version,
    /// When its connection last opened or closed (ms since the epoch; 0 in records of older
    /// versions): past `ocpp.max_disconnected`, those seen longest ago are forgotten first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seen_ms: u64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

pub use crate::types::{Connector201, ConnectorStatus201, OpenTransaction, State201};

/// Records read at start, by identity.
pub type Restored = Vec<(Box<str>, Saved)>;

/// One change: the charge point's record now, or None when it is forgotten.
pub type Change = (Box<str>, Option<Saved>);

/// What a processor hands the state thread at once: the changed records, and the answers that
/// may go out only once those are committed.
pub struct StateBatch {
    pub changes: Vec<Change>,
    pub held: HeldAnswers,
}

/// A processor's end of the state thread's channel.
#[derive(Clone)]
pub struct StateSender {
    tx: Sender<StateBatch>,
    /// Where held answers go after the commit; `None`: answers never wait for the state file.
    route: Option<Arc<dyn ReplyRoute>>,
}

impl std::fmt::Debug for StateSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSender")
            .field("holds", &self.route.is_some())
            .finish()
    }
}

impl StateSender {
    /// A sender and the receiving end the state thread would hold (benchmarks, tests); answers
    /// are never held.
    pub fn channel(capacity: usize) -> (StateSender, Receiver<StateBatch>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (StateSender { tx, route: None }, rx)
    }

    /// Whether billing answers wait for the commit of their changes.
    pub fn holds(&self) -> bool {
        self.route.is_some()
    }

    /// Holds `answer` in `held` until the next batch handed over is committed (only when
    /// [`StateSender::holds`]).
    pub fn hold(&self, held: &mut HeldAnswers, answer: &HeldAnswer) {
        if self.route.is_some() {
            held.push(answer);
        }
    }

    /// Sends held answers the state file can no longer take as CALLERROR InternalError (each
    /// counted in `refused`).
    pub fn refuse(&self, mut held: HeldAnswers, refused: &crate::stats::Counter) {
        if let Some(route) = &self.route {
            held.release(&**route, false, refused);
        }
    }

    /// Hands `batch` over, waiting for room (a processor that is stopping, or one with held
    /// answers: backpressure, as for a full journal).
    pub fn send(&self, batch: StateBatch) -> Result<(), StateBatch> {
        self.tx.send(batch).map_err(|e| e.0)
    }

    /// Offers `batch` without waiting; gives it back when the channel is full.
    pub fn offer(&self, batch: StateBatch) -> Result<(), StateBatch> {
        match self.tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => Err(batch),
        }
    }
}

/// The open state file: what it held at start, and the thread that keeps it.
pub struct StateStore {
    pub loaded: Restored,
    pub sender: StateSender,
    pub thread: JoinHandle<()>,
}

/// Opens (or creates) the state file, reads every record and starts the state thread. With a
/// `route`, billing answers wait for the commit of their changes and then go there.
pub fn open(
    path: &Path,
    route: Option<Arc<dyn ReplyRoute>>,
    stats: Arc<Stats>,
) -> Result<StateStore, StateError> {
    let fail = |message: String| StateError::Open {
        path: path.to_owned(),
        message,
    };
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| fail(e.to_string()))?;
    let loaded = read_all(&db).map_err(fail)?;
    info!(
        "state: {} charge points read from {}",
        loaded.len(),
        path.display()
    );
    let (mut sender, rx) = StateSender::channel(CHANNEL_CAPACITY);
    sender.route = route.clone();
    let path_buf = path.to_owned();
    let thread = std::thread::Builder::new()
        .name("state".into())
        .spawn(move || write_loop(&db, &path_buf, &rx, route.as_deref(), &stats))
        .map_err(|source| StateError::Thread {
            path: path.to_owned(),
            source,
        })?;
    Ok(StateStore {
        loaded,
        sender,
        thread,
    })
}

/// Every record; one that does not decode is skipped with a warning (the charge point boots
/// again), never a reason not to start.
fn read_all(db: &Database) -> Result<Restored, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(CHARGE_POINTS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut loaded = Vec::new();
    for item in table.iter().map_err(|e| e.to_string())? {
        let (key, value) = item.map_err(|e| e.to_string())?;
        match serde_json::from_slice::<Saved>(value.value()) {
            Ok(saved) => loaded.push((Box::from(key.value()), saved)),
            Err(e) => warn!("state: record of {:?} skipped: {e}", key.value()),
        }
    }
    Ok(loaded)
}

/// The state thread: gathers changes and commits them, until every processor has dropped its
/// sender; then commits the rest and returns. Without held answers it waits for the first
/// change, then gathers for up to [`COMMIT_EVERY`]; with held answers it commits as soon as
/// the channel has nothing more ready (one fsync for everything that arrived meanwhile).
fn write_loop(
    db: &Database,
    path: &Path,
    rx: &Receiver<StateBatch>,
    route: Option<&dyn ReplyRoute>,
    stats: &Stats,
) {
    let mut pending: std::collections::HashMap<Box<str>, Option<Saved>> =
        std::collections::HashMap::new();
    let mut held: Vec<HeldAnswers> = Vec::new();
    let mut first_change: Option<Instant> = None;
    let mut first_held: Option<Instant> = None;
    let mut open = true;
    while open {
        // Held answers wait at most HOLD_GATHER for others to share their fsync, even while
        // batches keep coming.
        let gathered = first_held.is_some_and(|t| t.elapsed() >= HOLD_GATHER);
        let received = if gathered {
            Err(RecvTimeoutError::Timeout)
        } else if !held.is_empty() {
            rx.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        } else if let Some(first) = first_change {
            rx.recv_deadline(first + COMMIT_EVERY)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match received {
            Ok(mut batch) => {
                if batch.changes.is_empty()
                    && pending.is_empty()
                    && held.is_empty()
                    && let Some(route) = route
                {
                    // Answers that wait for nothing unwritten (MeterValues): on at once.
                    batch
                        .held
                        .release(route, true, &stats.state.state_refused_answers);
                    continue;
                }
                if !batch.changes.is_empty() {
                    first_change.get_or_insert_with(Instant::now);
                    pending.extend(batch.changes);
                }
                if !batch.held.is_empty() {
                    first_held.get_or_insert_with(Instant::now);
                    held.push(batch.held);
                }
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        let durable = pending.is_empty() || write(db, path, &mut pending, stats);
        if pending.is_empty() {
            first_change = None;
        } else {
            // Tried again with the next commit; the newest state wins meanwhile.
            first_change = Some(Instant::now());
        }
        if let Some(route) = route {
            for mut answers in held.drain(..) {
                answers.release(route, durable, &stats.state.state_refused_answers);
            }
        }
        first_held = None;
    }
}

/// Commits `pending` (cleared when it succeeded); whether it did.
fn write(
    db: &Database,
    path: &Path,
    pending: &mut std::collections::HashMap<Box<str>, Option<Saved>>,
    stats: &Stats,
) -> bool {
    match commit(db, pending) {
        Ok(()) => {
            stats.state.state_commits.inc();
            stats.state.state_records_written.add(pending.len() as u64);
            if log::log_enabled!(log::Level::Debug) {
                let names: Vec<&str> = pending.keys().take(8).map(|k| &**k).collect();
                debug!(
                    "state: committed {} records ({}{})",
                    pending.len(),
                    names.join(", "),
                    if pending.len() > 8 { ", ..." } else { "" }
                );
            }
            let written = pending.len();
            pending.clear();
            if pending.capacity() > 1024 && written < 256 {
                // A burst's table is not kept for life (at 19,000 charge points a table of
                // 4,096 kept about 38 bytes per connection): once commits are small again (a
                // commit's usual few fit in 256), it shrinks; steady large commits keep it.
                pending.shrink_to(256);
            }
            true
        }
        Err(e) => {
            stats.state.state_errors.inc();
            warn!("state: cannot write {}: {e}", path.display());
            false
        }
    }
}

fn commit(
    db: &Database,
    pending: &std::collections::HashMap<Box<str>, Option<Saved>>,
) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(CHARGE_POINTS).map_err(|e| e.to_string())?;
        for (cp, saved) in pending {
            match saved {
                Some(saved) => {
                    let bytes = serde_json::to_vec(saved).map_err(|e| e.to_string())?;
                    table
                        .insert(&**cp, bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                None => {
                    table.remove(&**cp).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(tx: Option<i32>) -> Saved {
        Saved {
            profile: 0,
            boot: RawValue::from_string(r#"{"chargePointVendor":"V"}"#.into()).ok(),
            connectors: vec![(1, ChargePointStatus::Charging)],
            open_transaction: tx,
            v201: Some(Box::new(State201 {
                open: vec![OpenTransaction {
                    id: "TX-1".into(),
                    evse_id: Some(1),
                    id_token: None,
                    meter_start_wh: Some(10.5),
                    next_seq: 3,
                    // seqNo 1 never came: kept across the file.
                    missing: 0b10,
                }],
                ended: vec![("TX-0".into(), 7)],
                connectors: vec![Connector201 {
                    evse_id: 1,
                    connector_id: 2,
                    status: ConnectorStatus201::Occupied,
                }],
                streams: Vec::new(),
                ..State201::default()
            })),
            version: Version::V201,
            seen_ms: 0,
        }
    }

    /// Writes `changes` through a state thread and stops it; returns what a new open reads.
    fn round_trip(path: &Path, changes: Vec<Vec<Change>>) -> Restored {
        let stats = Arc::new(Stats::new(1, 1));
        let store = open(path, None, Arc::clone(&stats)).expect("opens");
        for changes in changes {
            let held = HeldAnswers::default();
            store
                .sender
                .send(StateBatch { changes, held })
                .map_err(|_| "state thread gone")
                .expect("sent");
        }
        let StateStore { sender, thread, .. } = store;
        drop(sender);
        thread.join().expect("state thread");
        let StateStore {
            mut loaded,
            sender,
            thread,
        } = open(path, None, stats).expect("opens again");
        drop(sender);
        thread.join().expect("state thread");
        loaded.sort_by(|a, b| a.0.cmp(&b.0));
        loaded
    }

    #[test]
    fn the_newest_record_wins_and_forgotten_ones_are_removed() {
        let dir = std::env::temp_dir().join(format!("ocpp-state-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("state");
        let _ = std::fs::remove_file(&path);
        let loaded = round_trip(
            &path,
            vec![
                vec![
                    ("A".into(), Some(saved(Some(1)))),
                    ("B".into(), Some(saved(None))),
                ],
                vec![("A".into(), Some(saved(Some(2)))), ("B".into(), None)],
            ],
        );
        assert_eq!(loaded.len(), 1, "{loaded:?}");
        assert_eq!(&*loaded[0].0, "A");
        assert_eq!(loaded[0].1.open_transaction, Some(2));
        let transactions = loaded[0].1.v201.as_ref().expect("transactions");
        assert_eq!(transactions.open[0].next_seq, 3);
        assert_eq!(transactions.ended, [("TX-0".into(), 7)]);
        assert_eq!(
            transactions.connectors[0].status,
            ConnectorStatus201::Occupied
        );
        assert_eq!(loaded[0].1.connectors, [(1, ChargePointStatus::Charging)]);
        assert_eq!(
            loaded[0].1.boot.as_ref().map(|b| b.get()),
            Some(r#"{"chargePointVendor":"V"}"#)
        );
        // A record that does not decode is skipped, the rest still load.
        {
            let db = Database::create(&path).expect("opens");
            let txn = db.begin_write().expect("write");
            txn.open_table(CHARGE_POINTS)
                .expect("table")
                .insert("C", b"not json".as_slice())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let loaded = round_trip(&path, Vec::new());
        assert_eq!(loaded.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
