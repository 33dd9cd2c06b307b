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

use crate::ocpp::v16::AuthorizationStatus;

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
    /// Cluster mode: this node has used its block of ids and Redis has not given it the next
    /// one yet (it is unreachable). The StartTransaction is refused; the charge point sends it
    /// again.
    #[error("no block of transaction ids from Redis yet (cluster mode)")]
    Unavailable,
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

/// Transaction ids: unique, increasing, and never reused after a restart. The file holds the
/// end of the block of ids handed out; a new block is written (and synced) before its first id
/// is used, so a crash costs at most a gap, never a repeat.
#[derive(Debug)]
pub struct TransactionIds {
    path: Option<PathBuf>,
    state: Mutex<Counter>,
    /// Cluster mode: blocks `[start, end)` reserved in Redis (`INCRBY`) by the cluster thread,
    /// which keeps the next one ready here. No file then.
    blocks: Option<crossbeam_channel::Receiver<(i64, i64)>>,
}

/// Wide enough to hold "one past the last id" without saturating onto a real id.
#[derive(Debug)]
struct Counter {
    next: i64,
    reserved_until: i64,
    exhaustion_logged: bool,
}

/// One past the largest transaction id (OCPP's `transactionId` is an integer, 32 bits signed).
const END: i64 = i32::MAX as i64 + 1;

/// Ids reserved per write of the counter file (or per `INCRBY` in cluster mode).
pub const BLOCK: i64 = 1000;

impl TransactionIds {
    /// Continues after what `path` records (starting at 1 when it does not exist); `None`
    /// keeps the counter in memory only.
    pub fn open(path: Option<&Path>) -> Result<TransactionIds, PolicyError> {
        let start = match path {
            None => 1,
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => text
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=END).contains(n))
                    .ok_or_else(|| PolicyError::Invalid {
                        path: path.to_owned(),
                        message: format!(
                            "{:?} is not a transaction id (1 to {END}; {END}: all used)",
                            text.trim()
                        ),
                    })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
                Err(source) => {
                    return Err(PolicyError::Read {
                        path: path.to_owned(),
                        source,
                    });
                }
            },
        };
        Ok(TransactionIds {
            path: path.map(Path::to_owned),
            state: Mutex::new(Counter {
                next: start.max(1),
                reserved_until: start.max(1),
                exhaustion_logged: false,
            }),
            blocks: None,
        })
    }

    /// Cluster mode: ids come in blocks reserved in Redis, unique across every node sharing
    /// it. The cluster thread sends each block `[start, end)` into the returned sender, keeping
    /// one ready; a node whose block runs out while Redis is away refuses StartTransaction
    /// ([`PolicyError::Unavailable`]) rather than risk a repeat.
    pub fn from_cluster() -> (TransactionIds, crossbeam_channel::Sender<(i64, i64)>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ids = TransactionIds {
            path: None,
            state: Mutex::new(Counter {
                next: 1,
                reserved_until: 1,
                exhaustion_logged: false,
            }),
            blocks: Some(rx),
        };
        (ids, tx)
    }

    /// The next id; never one given out before (ids reserved in the file are skipped after a
    /// restart, never repeated), and [`PolicyError::Exhausted`] once all are used.
    pub fn next(&self) -> Result<i32, PolicyError> {
        let mut counter = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if counter.next >= END {
            if !counter.exhaustion_logged {
                counter.exhaustion_logged = true;
                log::error!("{}", PolicyError::Exhausted);
            }
            return Err(PolicyError::Exhausted);
        }
        if counter.next >= counter.reserved_until
            && let Some(blocks) = &self.blocks
        {
            let (start, end) = blocks.try_recv().map_err(|_| PolicyError::Unavailable)?;
            if start >= END {
                counter.next = END;
                counter.exhaustion_logged = true;
                log::error!("{}", PolicyError::Exhausted);
                return Err(PolicyError::Exhausted);
            }
            counter.next = start;
            counter.reserved_until = end.min(END);
        }
        if counter.next >= counter.reserved_until {
            let until = (counter.next + BLOCK).min(END);
            if let Some(path) = &self.path {
                persist(path, until).map_err(|source| PolicyError::Persist {
                    path: path.clone(),
                    source,
                })?;
            }
            counter.reserved_until = until;
        }
        let id = i32::try_from(counter.next).map_err(|_| PolicyError::Exhausted)?;
        counter.next += 1;
        Ok(id)
    }

    /// Ids still available.
    pub fn remaining(&self) -> u64 {
        let counter = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        u64::try_from(END - counter.next).unwrap_or(0)
    }
}

/// Writes `value` to a temporary file, syncs it, and renames it over `path`.
fn persist(path: &Path, value: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{value}")?;
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

    #[test]
    fn cluster_blocks_are_used_in_turn_and_their_absence_refuses() {
        let (ids, blocks) = TransactionIds::from_cluster();
        assert!(matches!(ids.next(), Err(PolicyError::Unavailable)));
        blocks.send((1001, 1003)).unwrap();
        assert_eq!(ids.next().unwrap(), 1001);
        assert_eq!(ids.next().unwrap(), 1002);
        assert!(matches!(ids.next(), Err(PolicyError::Unavailable)));
        blocks.send((5001, 5002)).unwrap();
        assert_eq!(ids.next().unwrap(), 5001);
        blocks.send((END, END + 1000)).unwrap();
        assert!(matches!(ids.next(), Err(PolicyError::Exhausted)));
        assert_eq!(ids.remaining(), 0);
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
