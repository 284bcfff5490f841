//! Single use of confirmation tokens: one record per token id, claimed by exactly one caller.
//!
//! [`SingleUse`] is the store's contract; [`MarkerFiles`] keeps it in the state directory, one
//! file per token, claimed with `create_new` (so of any number of concurrent redeemers, in any
//! number of processes sharing the directory, exactly one wins). A shared database can stand
//! beside it without touching the rules in [`super::tokens`].

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::consent::NotApproved;
use super::private_fs::{create_new_private as new_private_file, replace_private};

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

/// A token's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    #[serde(flatten)]
    pub state: UseState,
    /// When the state was recorded, in Unix milliseconds.
    pub at: i64,
    /// The order's content id (a hash prefix), to find identical orders.
    pub content: String,
}

impl Use {
    pub fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.at).unwrap_or_default()
    }
}

/// The single-use store.
pub trait SingleUse: Send + Sync + fmt::Debug {
    /// The record of token `id`, if any.
    fn get(&self, id: &str) -> io::Result<Option<Use>>;
    /// Records `first` for `id` unless a record exists; then returns that record instead.
    /// Of concurrent callers exactly one gets `Ok(Ok(()))`.
    fn claim(&self, id: &str, first: &Use) -> io::Result<Result<(), Use>>;
    /// Replaces the record of a token this caller claimed.
    fn settle(&self, id: &str, record: &Use) -> io::Result<()>;
    /// Removes the record: the token may be used again.
    fn release(&self, id: &str) -> io::Result<()>;
    /// Records of tokens for order content `content` made at or after `since`.
    fn recent(&self, content: &str, since: DateTime<Utc>) -> io::Result<Vec<Use>>;
    /// Forgets records made before `before`. Best effort.
    fn forget_before(&self, before: DateTime<Utc>);
}

/// One marker file per token id in a private directory.
#[derive(Debug)]
pub struct MarkerFiles {
    dir: PathBuf,
}

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

    fn read(path: &Path) -> io::Result<Option<Use>> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Some(parse(&text).unwrap_or_else(|| Use {
                // Empty or cut short by a crash right after the claim: a POST may be under way
                // or may have happened. Dated by the file.
                state: UseState::Posting,
                at: modified_millis(path),
                content: String::new(),
            }))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn parse(text: &str) -> Option<Use> {
    serde_json::from_str(text.trim()).ok()
}

fn line(record: &Use) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(record).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn modified_millis(path: &Path) -> i64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SingleUse for MarkerFiles {
    fn get(&self, id: &str) -> io::Result<Option<Use>> {
        MarkerFiles::read(&self.path(id))
    }

    fn claim(&self, id: &str, first: &Use) -> io::Result<Result<(), Use>> {
        let path = self.path(id);
        match new_private_file(&path) {
            Ok(mut file) => {
                file.write_all(&line(first))?;
                file.sync_all()?;
                Ok(Ok(()))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Ok(Err(MarkerFiles::read(&path)?.unwrap_or(Use {
                    state: UseState::Posting,
                    at: first.at,
                    content: String::new(),
                })))
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

    fn recent(&self, content: &str, since: DateTime<Utc>) -> io::Result<Vec<Use>> {
        let since = since.timestamp_millis();
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            // Temporary files of a settle in progress end in ".tmp…".
            if name.to_string_lossy().contains('.') {
                continue;
            }
            if let Ok(Some(record)) = MarkerFiles::read(&entry.path())
                && record.content == content
                && record.at >= since
            {
                found.push(record);
            }
        }
        found.sort_by_key(|r| r.at);
        Ok(found)
    }

    fn forget_before(&self, before: DateTime<Utc>) {
        let before = before.timestamp_millis();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if modified_millis(&entry.path()) < before {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The contract every [`SingleUse`] store keeps, as a check its tests run on an empty store (the
/// marker files' unit test, the PostgreSQL table's integration test): twenty threads claiming one
/// id, one wins; settle, release, recent. Panics on the first difference.
#[doc(hidden)]
pub fn check_contract(store: &dyn SingleUse) {
    let record = |state, at, content: &str| Use {
        state,
        at,
        content: content.to_owned(),
    };
    let posting = record(UseState::Posting, 1_000, "c1");
    let winners = std::thread::scope(|scope| {
        let claims: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| store.claim("a", &posting).unwrap().is_ok()))
            .collect();
        claims
            .into_iter()
            .filter_map(|c| c.join().ok())
            .filter(|won| *won)
            .count()
    });
    assert_eq!(winners, 1, "exactly one of twenty claims wins");
    assert_eq!(store.claim("a", &posting).unwrap(), Err(posting.clone()));
    let placed = record(
        UseState::Placed {
            order_number: Some(9),
        },
        2_000,
        "c1",
    );
    store.settle("a", &placed).unwrap();
    assert_eq!(store.get("a").unwrap(), Some(placed.clone()));
    store
        .claim("b", &record(UseState::Posting, 3_000, "c2"))
        .unwrap()
        .unwrap();
    store.release("b").unwrap();
    assert_eq!(store.get("b").unwrap(), None);
    let since = DateTime::from_timestamp_millis(1_500).unwrap();
    assert_eq!(store.recent("c1", since).unwrap(), vec![placed]);
    assert!(store.recent("c2", since).unwrap().is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_then_settle_release_and_recent() {
        let dir = tempfile::tempdir().unwrap();
        check_contract(&MarkerFiles::new(dir.path()));
    }

    #[test]
    fn an_empty_marker_is_a_posting_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), "").unwrap();
        let store = MarkerFiles::new(dir.path());
        assert_eq!(store.get("x").unwrap().unwrap().state, UseState::Posting);
    }
}
