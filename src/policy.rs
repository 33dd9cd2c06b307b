//! The built-in Core profile policies an operator sets in `config.toml`: who may boot, which
//! idTags are authorized, and the transaction ids the gateway hands out. Loaded once at start,
//! shared read-only by the processors (the transaction counter is the one shared, locked piece:
//! it is touched once per StartTransaction and hits the disk once per block of ids).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Deserialize;

use ocpp::v16::AuthorizationStatus;

/// Why a policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: cannot persist the transaction counter: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every id up to 2147483647 was given out: a repeat would make two transactions one.
    /// Stop the gateway, write a new start (a range the backend no longer uses) into
    /// `ocpp.transaction_id_file`, start again.
    #[error(
        "transaction ids exhausted (the last one, {}, was given out): write a new start into \
         ocpp.transaction_id_file and restart",
        i32::MAX
    )]
    Exhausted,
    /// Cluster mode: this node does not know its share of the ids yet (on its first start
    /// Redis names it, once), or another live node claims the same share. The
    /// StartTransaction is refused; the charge point sends it again.
    #[error("no share of the transaction ids yet, or another node claims it (cluster mode)")]
    Unavailable,
    /// Cluster mode keeps each node's ids in its own durable file: without one, a restart of
    /// the node would give out its ids again.
    #[error("cluster mode needs ocpp.transaction_id_file (the node's own durable counter)")]
    NoCounterFile,
}

/// Identities allowed to connect and boot, from a file with one identity per line (blank lines
/// and `#` comments ignored).
#[derive(Debug, Default)]
pub struct Identities(HashSet<Box<str>>);

impl Identities {
    pub fn load(path: &Path) -> Result<Identities, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Identities::parse(&text))
    }

    pub fn parse(text: &str) -> Identities {
        Identities(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(Into::into)
                .collect(),
        )
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the list says about one idTag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagVerdict {
    pub status: AuthorizationStatus,
    /// RFC 3339, as written in the file.
    pub expiry: Option<String>,
    pub parent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTagFile {
    #[serde(default)]
    tag: Vec<RawTag>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    id: String,
    status: AuthorizationStatus,
    expiry: Option<String>,
    parent: Option<String>,
}

#[derive(Debug)]
struct Tag {
    status: AuthorizationStatus,
    expiry: Option<(String, SystemTime)>,
    parent: Option<String>,
}

/// The idTags the gateway authorizes, from a TOML file:
///
/// ```toml
/// [[tag]]
/// id = "04A2B3C4D5"
/// status = "Accepted"             # Accepted, Blocked, Expired or Invalid
/// expiry = "2027-12-31T23:59:59Z" # optional; after it the tag answers Expired
/// parent = "FLEET-1"              # optional parentIdTag
/// ```
///
/// A tag not in the list is `Invalid`.
#[derive(Debug, Default)]
pub struct IdTags(HashMap<String, Tag>);

impl IdTags {
    pub fn load(path: &Path) -> Result<IdTags, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        IdTags::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<IdTags, String> {
        let raw: RawTagFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut tags = HashMap::with_capacity(raw.tag.len());
        for t in raw.tag {
            if t.id.is_empty() || t.id.chars().count() > 20 {
                return Err(format!("idTag {:?} must be 1 to 20 characters", t.id));
            }
            let expiry = match t.expiry {
                None => None,
                Some(text) => {
                    let at = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
                        .map_err(|e| format!("idTag {}: expiry {text:?}: {e}", t.id))?;
                    Some((text, at))
                }
            };
            // idTags are CiString20: case-insensitive.
            let key = t.id.to_ascii_lowercase();
            if tags
                .insert(
                    key,
                    Tag {
                        status: t.status,
                        expiry,
                        parent: t.parent,
                    },
                )
                .is_some()
            {
                return Err(format!("idTag {:?} is listed twice", t.id));
            }
        }
        Ok(IdTags(tags))
    }

    /// The list's answer for `id_tag` at `now`.
    pub fn check(&self, id_tag: &str, now: SystemTime) -> TagVerdict {
        match self.0.get(&id_tag.to_ascii_lowercase()) {
            None => TagVerdict {
                status: AuthorizationStatus::Invalid,
                expiry: None,
                parent: None,
            },
            Some(tag) => {
                let expired = tag.expiry.as_ref().is_some_and(|(_, at)| *at <= now);
                TagVerdict {
                    status: if expired && tag.status == AuthorizationStatus::Accepted {
                        AuthorizationStatus::Expired
                    } else {
                        tag.status
                    },
                    expiry: tag.expiry.as_ref().map(|(text, _)| text.clone()),
                    parent: tag.parent.clone(),
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which transaction ids this gateway may hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// On its own: every id, in order.
    All,
    /// Cluster mode, first start: Redis has not yet named this node's slot (nor where the ids
    /// given out before end): none yet.
    Pending,
    /// Cluster mode: only the blocks of [`BLOCK`] ids numbered `slot`, `slot + slots`,
    /// `slot + 2 * slots`, ... (block `k` holds `k * BLOCK + 1 ..= (k + 1) * BLOCK`); every
    /// other node owns another slot, so no id is ever given out by two nodes, whatever Redis
    /// keeps or loses.
    Slot { slot: u32, slots: u32 },
}

/// Transaction ids: unique, increasing, and never reused after a restart. The file holds the
/// end of the block of ids handed out (and, in cluster mode, the node's slot); a new block is
/// written (and synced) before its first id is used, so a crash costs at most a gap, never a
/// repeat.
#[derive(Debug)]
pub struct TransactionIds {
    path: Option<PathBuf>,
    state: Mutex<Counter>,
}

/// Wide enough to hold "one past the last id" without saturating onto a real id.
#[derive(Debug)]
struct Counter {
    next: i64,
    reserved_until: i64,
    exhaustion_logged: bool,
    share: Share,
    /// Another node claims this node's slot: no ids until the claim is this node's again.
    conflict: bool,
}

/// One past the largest transaction id (OCPP's `transactionId` is an integer, 32 bits signed).
const END: i64 = i32::MAX as i64 + 1;

/// Ids reserved per write of the counter file.
pub const BLOCK: i64 = 1000;

/// Blocks of its own a cluster node skips when its file was lost (Redis knew its slot, the
/// file did not): more than it can reserve between two reports of its highest id to Redis
/// (a third of `cluster.node_ttl`), at 0.07% of a slot of 16.
const RESUME_BLOCKS: i64 = 100;

/// What a counter file says: one past the last id reserved, and the node's slot (cluster
/// mode) as `slot S of N` on a second line.
type FileContent = (i64, Option<(u32, u32)>);

impl TransactionIds {
    /// Continues after what `path` records (starting at 1 when it does not exist); `None`
    /// keeps the counter in memory only.
    pub fn open(path: Option<&Path>) -> Result<TransactionIds, PolicyError> {
        let start = match path {
            None => 1,
            Some(path) => read_counter(path)?.map_or(1, |(value, _)| value),
        };
        Ok(TransactionIds::with(path, start, Share::All))
    }

    /// Cluster mode: ids from this node's own durable file, only in its slot of `slots`. The
    /// slot is the one the file recorded (it never changes: `configured`, `cluster.id_slot`,
    /// must agree), else [`Share::Pending`] until the cluster thread [`adopt`]s the one Redis
    /// names.
    ///
    /// [`adopt`]: TransactionIds::adopt
    pub fn open_cluster(
        path: Option<&Path>,
        configured: Option<u32>,
        slots: u32,
    ) -> Result<TransactionIds, PolicyError> {
        let Some(path) = path else {
            return Err(PolicyError::NoCounterFile);
        };
        let (start, recorded) = read_counter(path)?.unwrap_or((1, None));
        let share = match recorded {
            None => Share::Pending,
            Some((slot, n)) if n == slots && configured.is_none_or(|c| c == slot) => {
                Share::Slot { slot, slots }
            }
            Some((slot, n)) => {
                return Err(PolicyError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "this node's transaction ids are slot {slot} of {n}, the config says \
                         {} of {slots} (cluster.id_slot, cluster.id_slots): a node's share never \
                         changes, or two nodes could give out one id",
                        configured.map_or_else(|| "any".to_owned(), |c| c.to_string())
                    ),
                });
            }
        };
        Ok(TransactionIds::with(Some(path), start, share))
    }

    fn with(path: Option<&Path>, start: i64, share: Share) -> TransactionIds {
        TransactionIds {
            path: path.map(Path::to_owned),
            state: Mutex::new(Counter {
                next: start.max(1),
                reserved_until: start.max(1),
                exhaustion_logged: false,
                share,
                conflict: false,
            }),
        }
    }

    fn counter(&self) -> std::sync::MutexGuard<'_, Counter> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Which ids this node may hand out now.
    pub fn share(&self) -> Share {
        self.counter().share
    }

    /// Cluster mode, first start: takes `slot` of `slots` and continues above `floor` (the
    /// highest id Redis says any node reserved, the old shared counter included), written to
    /// the file (synced) before any id is used. `resumed`: Redis knew the slot as this
    /// node's, so its file was lost and ids it reserved after its last report to Redis are
    /// unknown: `RESUME_BLOCKS` of its blocks are skipped as well. False when the share was
    /// known already.
    pub fn adopt(
        &self,
        slot: u32,
        slots: u32,
        floor: i64,
        resumed: bool,
    ) -> Result<bool, PolicyError> {
        let mut counter = self.counter();
        if counter.share != Share::Pending {
            return Ok(false);
        }
        let mut from = counter.reserved_until.max(floor.saturating_add(1)).min(END);
        if resumed {
            let skip = RESUME_BLOCKS * i64::from(slots.max(1)) * BLOCK;
            from = own_block(from, slot, slots).0.saturating_add(skip).min(END);
        }
        if let Some(path) = &self.path {
            persist(path, from, Some((slot, slots))).map_err(|source| PolicyError::Persist {
                path: path.clone(),
                source,
            })?;
        }
        counter.next = from;
        counter.reserved_until = from;
        counter.share = Share::Slot { slot, slots };
        Ok(true)
    }

    /// Another node claims this node's slot (true): refuse ids until it no longer does.
    /// Returns what it was.
    pub fn set_conflict(&self, conflict: bool) -> bool {
        std::mem::replace(&mut self.counter().conflict, conflict)
    }

    /// Why StartTransaction is refused now (cluster mode), if it is.
    pub fn refusal(&self) -> Option<&'static str> {
        let counter = self.counter();
        if counter.conflict {
            Some("another node claims this node's transaction id slot ({prefix}id-slots)")
        } else if counter.share == Share::Pending {
            Some("no share of the transaction ids yet: the first start needs Redis once")
        } else {
            None
        }
    }

    /// The highest id reserved so far (0 for none).
    pub fn high_water(&self) -> i64 {
        (self.counter().reserved_until - 1).max(0)
    }

    /// The next id; never one given out before (ids reserved in the file are skipped after a
    /// restart, never repeated), [`PolicyError::Unavailable`] while a cluster node has no
    /// share, and [`PolicyError::Exhausted`] once all are used.
    pub fn next(&self) -> Result<i32, PolicyError> {
        let mut counter = self.counter();
        if counter.conflict || counter.share == Share::Pending {
            return Err(PolicyError::Unavailable);
        }
        if counter.next >= counter.reserved_until {
            let (start, until) = match counter.share {
                Share::Slot { slot, slots } => own_block(counter.next, slot, slots),
                Share::All | Share::Pending => (counter.next, (counter.next + BLOCK).min(END)),
            };
            if start >= END {
                counter.next = END;
                if !counter.exhaustion_logged {
                    counter.exhaustion_logged = true;
                    log::error!("{}", PolicyError::Exhausted);
                }
                return Err(PolicyError::Exhausted);
            }
            if let Some(path) = &self.path {
                let slot = match counter.share {
                    Share::Slot { slot, slots } => Some((slot, slots)),
                    Share::All | Share::Pending => None,
                };
                persist(path, until, slot).map_err(|source| PolicyError::Persist {
                    path: path.clone(),
                    source,
                })?;
            }
            counter.next = start;
            counter.reserved_until = until;
        }
        let id = i32::try_from(counter.next).map_err(|_| PolicyError::Exhausted)?;
        counter.next += 1;
        Ok(id)
    }

    /// Ids still available to this node.
    pub fn remaining(&self) -> u64 {
        let counter = self.counter();
        let left = match counter.share {
            Share::All | Share::Pending => END - counter.next,
            Share::Slot { slot, slots } => {
                (counter.reserved_until - counter.next).max(0)
                    + ids_in_slot(counter.reserved_until, slot, slots)
            }
        };
        u64::try_from(left).unwrap_or(0)
    }
}

/// The first block of `slot` (of `slots`) that starts at or after `from`: `[start, end)`, its
/// start at or past [`END`] when there is none.
fn own_block(from: i64, slot: u32, slots: u32) -> (i64, i64) {
    let (slot, slots) = (i64::from(slot), i64::from(slots.max(1)));
    let first = (from.max(1) - 1 + BLOCK - 1) / BLOCK;
    let k = first + (slot - first % slots).rem_euclid(slots);
    let start = k * BLOCK + 1;
    (start, (start + BLOCK).min(END))
}

/// How many ids the blocks of `slot` hold from `from` on.
fn ids_in_slot(from: i64, slot: u32, slots: u32) -> i64 {
    let (start, _) = own_block(from, slot, slots);
    if start >= END {
        return 0;
    }
    let step = i64::from(slots.max(1)) * BLOCK;
    let blocks = (END - 1 - start) / step + 1;
    let last = start + (blocks - 1) * step;
    (blocks - 1) * BLOCK + (END - last).min(BLOCK)
}

/// The counter file's content, None when it does not exist.
fn read_counter(path: &Path) -> Result<Option<FileContent>, PolicyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PolicyError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let invalid = |message: String| PolicyError::Invalid {
        path: path.to_owned(),
        message,
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let value = first
        .parse::<i64>()
        .ok()
        .filter(|n| (0..=END).contains(n))
        .ok_or_else(|| {
            invalid(format!(
                "{first:?} is not a transaction id (1 to {END}; {END}: all used)"
            ))
        })?;
    let slot = match lines.next() {
        None => None,
        Some(line) => Some(parse_slot(line).ok_or_else(|| {
            invalid(format!(
                "{line:?} is not \"slot S of N\" (this node's share of the ids)"
            ))
        })?),
    };
    Ok(Some((value, slot)))
}

/// `slot S of N`, with S < N.
fn parse_slot(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("slot ")?;
    let (slot, slots) = rest.split_once(" of ")?;
    let (slot, slots) = (slot.trim().parse().ok()?, slots.trim().parse().ok()?);
    (slot < slots).then_some((slot, slots))
}

/// Writes `value` (and the slot line) to a temporary file, syncs it, and renames it over
/// `path`.
fn persist(path: &Path, value: i64, slot: Option<(u32, u32)>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{value}")?;
    if let Some((slot, slots)) = slot {
        writeln!(file, "slot {slot} of {slots}")?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename is only durable once the directory entry is.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("txid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_slot_owns_every_slots_th_block() {
        assert_eq!(own_block(1, 0, 4), (1, 1001));
        assert_eq!(own_block(1, 1, 4), (1001, 2001));
        assert_eq!(
            own_block(2, 0, 4),
            (4001, 5001),
            "block 0 is begun: the next of slot 0"
        );
        assert_eq!(own_block(1001, 0, 4), (4001, 5001));
        assert_eq!(own_block(4001, 0, 4), (4001, 5001));
        assert_eq!(own_block(5001, 3, 4), (7001, 8001));
        // The last block is cut at i32::MAX; past it there is none.
        assert_eq!(own_block(2_147_483_001, 0, 1), (2_147_483_001, END));
        assert!(own_block(END - 10, 0, 1).0 >= END);
        // Every id belongs to exactly one slot.
        let slots = 3;
        for id in [1_i64, 999, 1000, 1001, 2500, 3001, 2_147_483_647] {
            let owners = (0..slots)
                .filter(|&s| {
                    let (start, end) = own_block(id - (id - 1) % BLOCK, s, slots);
                    (start..end).contains(&id)
                })
                .count();
            assert_eq!(owners, 1, "{id}");
        }
        assert_eq!(ids_in_slot(1, 0, 1), END - 1);
        let shares: i64 = (0..16).map(|s| ids_in_slot(1, s, 16)).sum();
        assert_eq!(shares, END - 1, "the slots share the whole range");
    }

    #[test]
    fn cluster_nodes_take_ids_only_in_their_slot_and_keep_it() {
        let dir = scratch("slots");
        let (a_file, b_file) = (dir.join("a"), dir.join("b"));
        let a = TransactionIds::open_cluster(Some(&a_file), None, 4).unwrap();
        let b = TransactionIds::open_cluster(Some(&b_file), Some(1), 4).unwrap();
        // No share yet: refused, not guessed.
        assert!(matches!(a.next(), Err(PolicyError::Unavailable)));
        assert_eq!(a.share(), Share::Pending);
        // The old shared counter had reached 2,500: both continue above it.
        assert!(a.adopt(0, 4, 2500, false).unwrap());
        assert!(b.adopt(1, 4, 2500, false).unwrap());
        assert!(
            !a.adopt(2, 4, 9999, false).unwrap(),
            "a share is adopted once"
        );
        let from_a: Vec<i32> = (0..3).map(|_| a.next().unwrap()).collect();
        let from_b: Vec<i32> = (0..3).map(|_| b.next().unwrap()).collect();
        assert_eq!(from_a, [4001, 4002, 4003]);
        assert_eq!(from_b, [5001, 5002, 5003]);
        assert_eq!(a.high_water(), 5000);
        // A restart keeps the slot and continues after the reserved block, without Redis.
        drop(a);
        let again = TransactionIds::open_cluster(Some(&a_file), None, 4).unwrap();
        assert_eq!(again.share(), Share::Slot { slot: 0, slots: 4 });
        assert_eq!(again.next().unwrap(), 8001);
        // A conflict refuses until it is over.
        again.set_conflict(true);
        assert!(matches!(again.next(), Err(PolicyError::Unavailable)));
        again.set_conflict(false);
        assert_eq!(again.next().unwrap(), 8002);
        // A share never changes: another slot or another count is refused at start.
        assert!(TransactionIds::open_cluster(Some(&a_file), Some(2), 4).is_err());
        assert!(TransactionIds::open_cluster(Some(&a_file), None, 8).is_err());
        assert!(matches!(
            TransactionIds::open_cluster(None, None, 4),
            Err(PolicyError::NoCounterFile)
        ));
        // A standalone gateway reads the same file (and ignores the slot).
        assert_eq!(
            TransactionIds::open(Some(&a_file)).unwrap().next().unwrap(),
            9001
        );
        // A lost file, the slot known in Redis: far above the last reported id.
        let lost = TransactionIds::open_cluster(Some(&dir.join("lost")), None, 4).unwrap();
        assert!(lost.adopt(0, 4, 8000, true).unwrap());
        assert_eq!(lost.next().unwrap(), 8001 + 100 * 4 * 1000);
        std::fs::write(&a_file, "5\nslot 4 of 4\n").unwrap();
        assert!(TransactionIds::open_cluster(Some(&a_file), None, 4).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_slot_ends_at_the_largest_id() {
        let dir = scratch("slot-end");
        let path = dir.join("counter");
        std::fs::write(&path, "2147483000\nslot 0 of 1\n").unwrap();
        let ids = TransactionIds::open_cluster(Some(&path), None, 1).unwrap();
        assert_eq!(ids.remaining(), 647);
        assert_eq!(ids.next().unwrap(), 2_147_483_001);
        std::fs::write(&path, "2147483000\nslot 0 of 2\n").unwrap();
        let ids = TransactionIds::open_cluster(Some(&path), None, 2).unwrap();
        assert_eq!(ids.remaining(), 0);
        assert!(matches!(ids.next(), Err(PolicyError::Exhausted)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn transaction_ids_never_repeat_and_end_loudly() {
        let dir = std::env::temp_dir().join(format!("txid-end-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("counter");
        std::fs::write(&path, "2147483645\n").unwrap();
        let ids = TransactionIds::open(Some(&path)).unwrap();
        assert_eq!(ids.remaining(), 3);
        let given: Vec<i32> = (0..3).map(|_| ids.next().unwrap()).collect();
        assert_eq!(given, [2147483645, 2147483646, 2147483647]);
        for _ in 0..3 {
            assert!(matches!(ids.next(), Err(PolicyError::Exhausted)));
        }
        assert_eq!(ids.remaining(), 0);
        // The file says "all used": a restart does not start over.
        let again = TransactionIds::open(Some(&path)).unwrap();
        assert!(matches!(again.next(), Err(PolicyError::Exhausted)));
        // The documented way on: a new start written into the file.
        std::fs::write(&path, "1\n").unwrap();
        assert_eq!(
            TransactionIds::open(Some(&path)).unwrap().next().unwrap(),
            1
        );
        std::fs::write(&path, "2147483649\n").unwrap();
        assert!(TransactionIds::open(Some(&path)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn identities_ignore_comments_and_blanks() {
        let ids = Identities::parse("# fleet\nCP1\n\n  CP 2  \n");
        assert!(ids.contains("CP1") && ids.contains("CP 2"));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn tags_answer_by_status_and_expiry() {
        let tags = IdTags::parse(
            r#"
            [[tag]]
            id = "OK"
            status = "Accepted"
            parent = "FLEET"
            [[tag]]
            id = "OLD"
            status = "Accepted"
            expiry = "2020-01-01T00:00:00Z"
            [[tag]]
            id = "BAD"
            status = "Blocked"
            "#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(tags.check("OK", now).status, AuthorizationStatus::Accepted);
        assert_eq!(
            tags.check("ok", now).status,
            AuthorizationStatus::Accepted,
            "CiString: any case"
        );
        assert!(IdTags::parse("[[tag]]\nid = \"A\"\nstatus = \"Accepted\"\n[[tag]]\nid = \"a\"\nstatus = \"Blocked\"").is_err());
        assert_eq!(tags.check("OK", now).parent.as_deref(), Some("FLEET"));
        assert_eq!(tags.check("OLD", now).status, AuthorizationStatus::Expired);
        assert_eq!(tags.check("BAD", now).status, AuthorizationStatus::Blocked);
        assert_eq!(tags.check("NOPE", now).status, AuthorizationStatus::Invalid);
        assert!(IdTags::parse("[[tag]]\nid = \"X\"\nstatus = \"Maybe\"").is_err());
        assert!(
            IdTags::parse("[[tag]]\nid = \"X\"\nstatus = \"Accepted\"\nexpiry = \"soon\"").is_err()
        );
        assert!(
            IdTags::parse("[[tag]]\nid = \"123456789012345678901\"\nstatus = \"Accepted\"")
                .is_err()
        );
    }

    #[test]
    fn transaction_ids_increase_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("ocpp-tx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("transactions");
        let _ = std::fs::remove_file(&path);
        let first = TransactionIds::open(Some(&path)).unwrap();
        let a: Vec<i32> = (0..5).map(|_| first.next().unwrap()).collect();
        assert_eq!(a, vec![1, 2, 3, 4, 5]);
        drop(first);
        // A restart continues after the reserved block: no id is ever handed out twice.
        let second = TransactionIds::open(Some(&path)).unwrap();
        let b = second.next().unwrap();
        assert!(b > 5, "{b}");
        assert!(second.next().unwrap() > b);
        let _ = std::fs::remove_dir_all(dir);
    }
}
