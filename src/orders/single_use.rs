//! Single use of confirmation tokens: one record per token id, claimed by exactly one caller,
//! and kept for as long as any process could still accept its token.
//!
//! [`SingleUse`] is the store's contract; [`MarkerFiles`] keeps it in the state directory, one
//! file per token, claimed by hard-linking a fully written file into place (so of any number of
//! concurrent redeemers, in any number of processes sharing the directory, exactly one wins, and
//! a claim that could not be written leaves nothing behind). A shared database stands beside it
//! (`crate::state_db`) without touching the rules in [`super::tokens`].
//!
//! **Time.** No process's clock decides what the store keeps. The store has a clock of its own
//! ([`SingleUse::time`]): the time the file system stamps on a file just written in the state
//! directory, or the database's. Records carry the signed expiry of their token, and a sweep
//! removes only records whose token expired [`RETAIN`] before the store's time, never by a
//! record's age. And since any clock, the store's too, may be wrong, single use does not rest on
//! one: before a sweep removes anything it raises the store's *swept-through mark* to the highest
//! expiry among the records it removes, and a claim of a token whose expiry is at or below the
//! mark is refused (see [`super::tokens`]). Whatever any clock said when it was swept, a token
//! whose record is gone is refused everywhere; a clock that was wrong for a while costs at most
//! the tokens alive then (a day, the longest a token lives). The model in `lifecycle_model.rs`
//! checks this over every interleaving of processes and clock jumps.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::consent::NotApproved;
use super::private_fs::{create_whole, replace_private, stamp};

/// How long a token's record is kept after the token expired, by the store's clock. Past its
/// expiry a token is refused anyway; this keeps "already placed order N" precise for a week, and
/// is the margin the store's clock may go back before claims are refused.
pub const RETAIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most records one sweep removes: a sweep runs with every preview and must stay quick.
pub const SWEEP_AT_MOST: usize = 64;

/// What became of a token, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UseState {
    /// Claimed; the POST is under way, or its process died before recording an outcome.
    Posting,
    /// 1NCE created the order.
    Placed { order_number: Option<u64> },
    /// Whether 1NCE created the order is unknown.
    Unknown,
    /// The person did not approve.
    NotApproved { answer: NotApproved },
}

/// A token's record, as its user writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    #[serde(flatten)]
    pub state: UseState,
    /// The order's content id (a hash prefix), to find identical orders.
    pub content: String,
    /// The token's signed expiry, in Unix milliseconds. A record whose expiry is unknown (an
    /// unreadable one) is never swept.
    #[serde(default = "never")]
    pub expires: i64,
}

fn never() -> i64 {
    i64::MAX
}

/// A record as the store holds it: with the store's time of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub record: Use,
    /// When the store recorded the current state, by the store's clock.
    pub at: DateTime<Utc>,
}

/// The store's clock and swept-through mark, read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTime {
    /// The store's time.
    pub now: DateTime<Utc>,
    /// The highest token expiry (Unix milliseconds) among the records any sweep removed: a
    /// token that expires at or before it may have been used, and cannot be told apart.
    pub swept_through: Option<i64>,
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the token.
    Won,
    /// A record exists already; here it is.
    Taken(Recorded),
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// The store's clock as the sweep read it, and the mark after the sweep.
    pub time: StoreTime,
    /// Records removed.
    pub removed: usize,
}

/// The single-use store.
pub trait SingleUse: Send + Sync + fmt::Debug {
    /// The record of token `id`, if any.
    fn get(&self, id: &str) -> io::Result<Option<Recorded>>;
    /// Records `first` for `id` unless a record exists; then returns that record instead.
    /// Of concurrent callers exactly one gets [`Claim::Won`]. A claim that fails leaves no
    /// record.
    fn claim(&self, id: &str, first: &Use) -> io::Result<Claim>;
    /// Replaces the record of a token this caller claimed.
    fn settle(&self, id: &str, record: &Use) -> io::Result<()>;
    /// Removes the record: the token may be used again.
    fn release(&self, id: &str) -> io::Result<()>;
    /// Records of tokens for order content `content` changed at or after `since` (store time).
    fn recent(&self, content: &str, since: DateTime<Utc>) -> io::Result<Vec<Recorded>>;
    /// The store's clock and swept-through mark, read now.
    fn time(&self) -> io::Result<StoreTime>;
    /// Removes at most `at_most` records whose token expired more than [`RETAIN`] before the
    /// store's time, after raising the swept-through mark to the highest expiry among them
    /// (durably, and never lowering it: sweeps are serialised). A record whose expiry is unknown
    /// is never removed.
    fn sweep(&self, at_most: usize) -> io::Result<Swept>;
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// One marker file per token id in a private directory, and beside them (names that start with
/// a dot, which no token id does) the clock probe, the swept-through mark and the sweep lock.
#[derive(Debug)]
pub struct MarkerFiles {
    dir: PathBuf,
}

/// Written to read the file system's time.
const PROBE: &str = ".clock";
/// The swept-through mark, in Unix milliseconds, as text.
const MARK: &str = ".swept-through";
/// Held (flock) by the one process sweeping.
const SWEEP_LOCK: &str = ".sweep.lock";
/// Temporary files older than this (by the store's clock) are left over from a crash.
const STALE_TEMP: Duration = Duration::from_secs(3600);

impl MarkerFiles {
    /// Uses `dir`, which must exist and be private to this user.
    pub fn new(dir: &Path) -> MarkerFiles {
        MarkerFiles {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn read(path: &Path) -> io::Result<Option<Recorded>> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let at = fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .map(millis)
            .unwrap_or(0);
        // A marker that cannot be read (written by hand, or by an older release) refuses reuse
        // like a POST under way, and is never swept.
        let record = serde_json::from_str(text.trim()).unwrap_or(Use {
            state: UseState::Posting,
            content: String::new(),
            expires: never(),
        });
        Ok(Some(Recorded {
            record,
            at: from_millis(at),
        }))
    }

    fn mark(&self) -> io::Result<Option<i64>> {
        match fs::read_to_string(self.dir.join(MARK)) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| {
                io::Error::other(format!(
                    "{} is not a time in milliseconds; it records up to which expiry used tokens were cleared, and only this server writes it",
                    self.dir.join(MARK).display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every marker in the directory (never the dot files), with its path.
    fn markers(&self) -> io::Result<impl Iterator<Item = (PathBuf, Recorded)>> {
        Ok(fs::read_dir(&self.dir)?.flatten().filter_map(|entry| {
            if entry.file_name().to_string_lossy().starts_with('.') {
                return None;
            }
            let path = entry.path();
            let record = MarkerFiles::read(&path).ok()??;
            Some((path, record))
        }))
    }
}

fn line(record: &Use) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(record).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

impl SingleUse for MarkerFiles {
    fn get(&self, id: &str) -> io::Result<Option<Recorded>> {
        MarkerFiles::read(&self.path(id))
    }

    fn claim(&self, id: &str, first: &Use) -> io::Result<Claim> {
        let path = self.path(id);
        match create_whole(&path, &line(first)) {
            Ok(()) => Ok(Claim::Won),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Ok(match MarkerFiles::read(&path)? {
                    Some(recorded) => Claim::Taken(recorded),
                    // Released between the link and the read: still not ours, and busy.
                    None => Claim::Taken(Recorded {
                        record: Use {
                            state: UseState::Posting,
                            ..first.clone()
                        },
                        at: from_millis(millis(SystemTime::now())),
                    }),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn settle(&self, id: &str, record: &Use) -> io::Result<()> {
        // Written beside and renamed over, so a reader never sees half a line. If this fails
        // the marker still says "posting", which refuses reuse just the same.
        replace_private(&self.path(id), &line(record))
    }

    fn release(&self, id: &str) -> io::Result<()> {
        fs::remove_file(self.path(id))
    }

    fn recent(&self, content: &str, since: DateTime<Utc>) -> io::Result<Vec<Recorded>> {
        let mut found: Vec<Recorded> = self
            .markers()?
            .map(|(_, recorded)| recorded)
            .filter(|r| r.record.content == content && r.at >= since)
            .collect();
        found.sort_by_key(|r| r.at);
        Ok(found)
    }

    fn time(&self) -> io::Result<StoreTime> {
        let now = millis(stamp(&self.dir.join(PROBE))?);
        Ok(StoreTime {
            now: from_millis(now),
            swept_through: self.mark()?,
        })
    }

    fn sweep(&self, at_most: usize) -> io::Result<Swept> {
        let Some(_lock) = SweepLock::try_take(&self.dir.join(SWEEP_LOCK))? else {
            // Another process is sweeping: the store's time is all this call needs.
            return Ok(Swept {
                time: self.time()?,
                removed: 0,
            });
        };
        let now = millis(stamp(&self.dir.join(PROBE))?);
        let retain = i64::try_from(RETAIN.as_millis()).unwrap_or(i64::MAX);
        let expired_before = now.saturating_sub(retain);
        let stale_before = now.saturating_sub(STALE_TEMP.as_millis() as i64);
        let mut doomed = Vec::new();
        let mut highest = None;
        for entry in fs::read_dir(&self.dir)?.flatten() {
            if doomed.len() >= at_most {
                break;
            }
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                // A temporary file a crash left behind, dated by the same file system's clock.
                if name.ends_with(".tmp")
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| millis(t) < stale_before)
                {
                    doomed.push(path);
                }
            } else if let Ok(Some(recorded)) = MarkerFiles::read(&path)
                && recorded.record.expires < expired_before
            {
                highest = highest.max(Some(recorded.record.expires));
                doomed.push(path);
            }
        }
        let mut mark = self.mark()?;
        if let Some(highest) = highest
            && mark < Some(highest)
        {
            // On disk before any record it covers is removed.
            replace_private(&self.dir.join(MARK), highest.to_string().as_bytes())?;
            mark = Some(highest);
        }
        let removed = doomed
            .iter()
            .filter(|path| fs::remove_file(path).is_ok())
            .count();
        Ok(Swept {
            time: StoreTime {
                now: from_millis(now),
                swept_through: mark,
            },
            removed,
        })
    }
}

/// An exclusive advisory lock on a file, released when dropped (or when the process dies).
struct SweepLock(#[allow(dead_code)] fs::File);

impl SweepLock {
    /// The lock, or `None` when another process holds it.
    fn try_take(path: &Path) -> io::Result<Option<SweepLock>> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(path)?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a file descriptor this function owns; no memory is shared.
            let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if taken != 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EWOULDBLOCK) => Ok(None),
                    _ => Err(e),
                };
            }
        }
        Ok(Some(SweepLock(file)))
    }
}

/// The contract every [`SingleUse`] store keeps, as a check its tests run on an empty store (the
/// marker files' unit test, the PostgreSQL table's integration test): twenty threads claiming one
/// id, one wins; settle, release, recent; the store's clock; a sweep that removes only records
/// whose token expired [`RETAIN`] before the store's time. Panics on the first difference.
#[doc(hidden)]
pub fn check_contract(store: &dyn SingleUse) {
    let before = store.time().unwrap();
    let now = before.now.timestamp_millis();
    let record = |state, content: &str, expires| Use {
        state,
        content: content.to_owned(),
        expires,
    };
    let posting = record(UseState::Posting, "c1", now + 60_000);
    let winners = std::thread::scope(|scope| {
        let claims: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| store.claim("a", &posting).unwrap() == Claim::Won))
            .collect();
        claims
            .into_iter()
            .filter_map(|c| c.join().ok())
            .filter(|won| *won)
            .count()
    });
    assert_eq!(winners, 1, "exactly one of twenty claims wins");
    match store.claim("a", &posting).unwrap() {
        Claim::Taken(recorded) => assert_eq!(recorded.record, posting),
        Claim::Won => panic!("a second claim won"),
    }
    let placed = record(
        UseState::Placed {
            order_number: Some(9),
        },
        "c1",
        now + 60_000,
    );
    store.settle("a", &placed).unwrap();
    let got = store.get("a").unwrap().unwrap();
    assert_eq!(got.record, placed);
    // Stamped by the store's clock, which these checks read a moment ago.
    let slack = chrono::Duration::seconds(5);
    assert!(
        got.at >= before.now - slack && got.at <= store.time().unwrap().now + slack,
        "{got:?} {before:?}"
    );
    assert_eq!(
        store
            .claim("b", &record(UseState::Posting, "c2", now + 60_000))
            .unwrap(),
        Claim::Won
    );
    store.release("b").unwrap();
    assert_eq!(store.get("b").unwrap(), None);
    let since = before.now - slack;
    let recent: Vec<Use> = store
        .recent("c1", since)
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(recent, vec![placed.clone()]);
    assert!(store.recent("c2", since).unwrap().is_empty());
    assert!(store.recent("c1", got.at + slack).unwrap().is_empty());

    // Sweeping: only tokens that expired RETAIN before the store's time go, whatever their
    // records' age; a record whose expiry is unknown stays.
    let retain = RETAIN.as_millis() as i64;
    let old = record(UseState::Unknown, "c3", now - retain - 60_000);
    let recent_expiry = record(UseState::Unknown, "c3", now - retain + 600_000);
    let unknown_expiry = record(UseState::Unknown, "c3", i64::MAX);
    store.claim("old", &old).unwrap();
    store.claim("recent", &recent_expiry).unwrap();
    store.claim("unknown", &unknown_expiry).unwrap();
    let swept = store.sweep(SWEEP_AT_MOST).unwrap();
    assert_eq!(swept.removed, 1, "{swept:?}");
    assert_eq!(swept.time.swept_through, Some(old.expires));
    assert_eq!(store.get("old").unwrap(), None);
    for kept in ["a", "recent", "unknown"] {
        assert!(store.get(kept).unwrap().is_some(), "{kept} was swept");
    }
    // The mark never goes down, and the store's time reads it back.
    let older = record(UseState::Unknown, "c3", old.expires - 60_000);
    store.claim("older", &older).unwrap();
    assert_eq!(store.sweep(SWEEP_AT_MOST).unwrap().removed, 1);
    assert_eq!(store.time().unwrap().swept_through, Some(old.expires));
    // At most `at_most` per sweep, and the mark covers what was removed.
    for i in 0..3 {
        let o = record(UseState::Unknown, "c3", old.expires + 1 + i);
        store.claim(&format!("old{i}"), &o).unwrap();
    }
    assert_eq!(store.sweep(2).unwrap().removed, 2);
    let after = store.sweep(2).unwrap();
    assert_eq!(after.removed, 1);
    assert_eq!(after.time.swept_through, Some(old.expires + 3));
    for id in ["a", "recent", "unknown"] {
        store.release(id).unwrap();
    }
}

/// The contract in memory, on an injected clock that stands for the store's: for unit tests of
/// the rules above the store, where time is moved by hand.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct MemoryStore {
    records: std::sync::Mutex<std::collections::BTreeMap<String, Recorded>>,
    mark: std::sync::Mutex<Option<i64>>,
    clock: std::sync::Arc<dyn super::clock::Clock>,
}

#[cfg(test)]
impl MemoryStore {
    pub(crate) fn new(clock: std::sync::Arc<dyn super::clock::Clock>) -> MemoryStore {
        MemoryStore {
            records: Default::default(),
            mark: Default::default(),
            clock,
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Recorded>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
impl SingleUse for MemoryStore {
    fn get(&self, id: &str) -> io::Result<Option<Recorded>> {
        Ok(self.records().get(id).cloned())
    }

    fn claim(&self, id: &str, first: &Use) -> io::Result<Claim> {
        let at = self.clock.now();
        Ok(match self.records().entry(id.to_owned()) {
            std::collections::btree_map::Entry::Occupied(e) => Claim::Taken(e.get().clone()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Recorded {
                    record: first.clone(),
                    at,
                });
                Claim::Won
            }
        })
    }

    fn settle(&self, id: &str, record: &Use) -> io::Result<()> {
        let at = self.clock.now();
        self.records().insert(
            id.to_owned(),
            Recorded {
                record: record.clone(),
                at,
            },
        );
        Ok(())
    }

    fn release(&self, id: &str) -> io::Result<()> {
        self.records().remove(id);
        Ok(())
    }

    fn recent(&self, content: &str, since: DateTime<Utc>) -> io::Result<Vec<Recorded>> {
        let mut found: Vec<Recorded> = self
            .records()
            .values()
            .filter(|r| r.record.content == content && r.at >= since)
            .cloned()
            .collect();
        found.sort_by_key(|r| r.at);
        Ok(found)
    }

    fn time(&self) -> io::Result<StoreTime> {
        Ok(StoreTime {
            now: self.clock.now(),
            swept_through: *self.mark.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }

    fn sweep(&self, at_most: usize) -> io::Result<Swept> {
        let now = self.clock.now();
        let before =
            (now - chrono::Duration::from_std(RETAIN).unwrap_or_default()).timestamp_millis();
        let mut records = self.records();
        let doomed: Vec<(String, i64)> = records
            .iter()
            .filter(|(_, r)| r.record.expires < before)
            .map(|(id, r)| (id.clone(), r.record.expires))
            .take(at_most)
            .collect();
        let mut mark = self.mark.lock().unwrap_or_else(|p| p.into_inner());
        *mark = (*mark).max(doomed.iter().map(|(_, e)| *e).max());
        for (id, _) in &doomed {
            records.remove(id);
        }
        Ok(Swept {
            time: StoreTime {
                now,
                swept_through: *mark,
            },
            removed: doomed.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_keeps_the_contract() {
        let clock = std::sync::Arc::new(super::super::clock::SystemClock);
        check_contract(&MemoryStore::new(clock));
    }

    #[test]
    fn the_marker_files_keep_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        check_contract(&MarkerFiles::new(dir.path()));
    }

    #[test]
    fn an_unreadable_marker_refuses_reuse_and_is_never_swept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), "").unwrap();
        let store = MarkerFiles::new(dir.path());
        let got = store.get("x").unwrap().unwrap();
        assert_eq!(got.record.state, UseState::Posting);
        assert_eq!(got.record.expires, i64::MAX);
        store.sweep(SWEEP_AT_MOST).unwrap();
        assert!(store.get("x").unwrap().is_some());
    }

    #[test]
    fn records_are_dated_by_the_file_system_and_the_mark_is_read_strictly() {
        // The marker is dated by the file system; a process whose clock is days ahead (not
        // simulated here: the store never reads it) cannot make a fresh record look old.
        let dir = tempfile::tempdir().unwrap();
        let store = MarkerFiles::new(dir.path());
        let now = store.time().unwrap().now.timestamp_millis();
        let fresh = Use {
            state: UseState::Placed {
                order_number: Some(1),
            },
            content: "c".into(),
            expires: now + 600_000,
        };
        store.claim("t", &fresh).unwrap();
        // Nothing of a fresh record is removed, whatever the mark says.
        fs::write(
            dir.path().join(MARK),
            (now + 30 * 24 * 3600 * 1000).to_string(),
        )
        .unwrap();
        assert_eq!(store.sweep(SWEEP_AT_MOST).unwrap().removed, 0);
        assert!(store.get("t").unwrap().is_some());
        // A mark that cannot be read fails every reading of the store's time, so no claim is
        // judged without it.
        fs::write(dir.path().join(MARK), "yesterday").unwrap();
        let err = store.time().unwrap_err().to_string();
        assert!(err.contains(".swept-through"), "{err}");
    }

    #[test]
    fn a_claim_that_cannot_be_written_leaves_nothing() {
        // A directory the claim cannot write into (as a full disk would refuse the write).
        let dir = tempfile::tempdir().unwrap();
        let store = MarkerFiles::new(&dir.path().join("missing"));
        let record = Use {
            state: UseState::Posting,
            content: "c".into(),
            expires: 1,
        };
        assert!(store.claim("t", &record).is_err());
        assert!(store.get("t").unwrap().is_none());
    }
}
