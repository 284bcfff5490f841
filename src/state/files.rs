//! The state directory: one marker file per used token (`used-tokens/`), the audit log
//! (`audit.jsonl`, or where `--audit-log` puts it), the signing key (`confirmation.key`), under
//! the file rules of [`super::private`]. Every name is written here and nowhere else.
//!
//! A token is claimed by hard-linking a fully written file into place, so of any number of
//! concurrent redeemers, in any number of processes sharing the directory, exactly one wins, and
//! a claim that could not be written leaves nothing behind. Beside the markers (names that start
//! with a dot, which no token id does): the clock probe, the swept-through mark and the sweep
//! lock. File operations are small and run inline; the audit log and each claim are flushed to
//! disk before they return.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use super::account::{Account, Found};
use super::ledger::{Claim, RETAIN, Recorded, StoreTime, Swept, Use, UseState, never};
use super::private::{
    ReadOrCreated, check_private_file, check_secret_file, create_dirs_private, create_whole,
    ensure_private_dir, open_append_private, read_or_create_key, read_or_create_private,
    replace_private, stamp,
};
use super::{AuditEntry, StateError};

/// The used-token markers, inside the state directory.
const USED_TOKENS: &str = "used-tokens";
/// The signing key, inside the state directory.
const KEY_FILE: &str = "confirmation.key";
/// The 1NCE account the state directory belongs to (see [`super::account`]).
pub const ACCOUNT_FILE: &str = "account";
/// The most an account record can hold (two fields of at most 2 KiB, as JSON).
const ACCOUNT_MAX: u64 = 16 * 1024;
/// The audit log's default name, inside the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// The order mirror, inside the state directory.
pub const MIRROR_FILE: &str = "mirror.sqlite3";
/// The spend ledger, inside the state directory.
pub const SPEND_FILE: &str = "ledger.sqlite3";
/// The orders placed in the built-in sandbox, inside its state directory.
pub const SANDBOX_ORDERS_FILE: &str = "sandbox-orders.sqlite3";

/// The state directory, checked and opened.
#[derive(Debug)]
pub(super) struct Files {
    dir: PathBuf,
    markers: MarkerFiles,
    audit: Option<AuditFile>,
    /// The order mirror, opened on first use (never, with `--mirror off`).
    mirror: Mutex<Option<super::mirror::SqliteMirror>>,
    /// The spend ledger, opened on first use (never, without spend limits).
    spend: Mutex<Option<super::spend::SqliteSpend>>,
    /// Said when this process adopted a directory an earlier version made (see
    /// [`super::account`]).
    adopted: Option<String>,
}

impl Files {
    /// Checks everything private the server will use, creating what is missing: the state
    /// directory (and, for the sandbox's, the one it is `inside`), the record of the 1NCE
    /// account it belongs to, its used-token record, the signing key and the audit log. `Err`
    /// names the path and the fix; a directory of another account than `account` is refused
    /// before anything in it is created or changed.
    pub(super) fn open(
        dir: &Path,
        audit_log: Option<&Path>,
        inside: Option<&Path>,
        account: &Account,
    ) -> Result<Files, StateError> {
        let refuse =
            |what: &str, e: io::Error| StateError::Refused(format!("refusing {what}: {e}"));
        if let Some(outer) = inside {
            ensure_private_dir(outer).map_err(|e| refuse("the state directory", e))?;
        }
        ensure_private_dir(dir).map_err(|e| refuse("the state directory", e))?;
        let adopted = belongs_to(dir, account)
            .map_err(|e| refuse("the state directory's account record", e))?
            .settle(&format!("the state directory {}", dir.display()), account)?;
        let used = dir.join(USED_TOKENS);
        ensure_private_dir(&used).map_err(|e| refuse("the used-token record", e))?;
        check_secret_file(&dir.join(KEY_FILE)).map_err(|e| refuse("the confirmation key", e))?;
        if let Some(log) = audit_log {
            check_private_file(log).map_err(|e| refuse("the audit log", e))?;
        }
        Ok(Files {
            dir: dir.to_owned(),
            markers: MarkerFiles::new(&used),
            audit: audit_log.map(|path| AuditFile {
                path: path.to_owned(),
                lock: Mutex::new(()),
            }),
            mirror: Mutex::new(None),
            spend: Mutex::new(None),
            adopted,
        })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// What to tell the operator when this process adopted an earlier version's directory.
    pub(super) fn adopted(&self) -> Option<&str> {
        self.adopted.as_deref()
    }

    /// The signing key, created on first use.
    pub(super) fn key(&self) -> Result<[u8; 32], StateError> {
        read_or_create_key(&self.dir.join(KEY_FILE), || {
            use rand::Rng;
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            key
        })
        .map_err(|e| {
            StateError::Files(format!(
                "could not use the state directory {} for confirmation tokens: {e}",
                self.dir.display()
            ))
        })
    }

    pub(super) async fn token(&self, id: &str) -> Result<Option<Recorded>, StateError> {
        Ok(self.markers.token(id)?)
    }

    pub(super) async fn claim(&self, id: &str, first: &Use) -> Result<Claim, StateError> {
        Ok(self.markers.claim(id, first)?)
    }

    pub(super) async fn settle(&self, id: &str, record: &Use) -> Result<(), StateError> {
        Ok(self.markers.settle(id, record)?)
    }

    pub(super) async fn release(&self, id: &str) -> Result<(), StateError> {
        Ok(self.markers.release(id)?)
    }

    pub(super) async fn recent(
        &self,
        content: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StateError> {
        Ok(self.markers.recent(content, since)?)
    }

    pub(super) async fn time(&self) -> Result<StoreTime, StateError> {
        Ok(self.markers.time()?)
    }

    pub(super) async fn sweep(&self, at_most: usize) -> Result<Swept, StateError> {
        Ok(self.markers.sweep(at_most)?)
    }

    /// Appends one line to the audit log and flushes it to disk (nothing with `--audit-log
    /// off`).
    pub(super) async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StateError> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&entry.body)
            .map_err(|e| StateError::Files(format!("could not encode the audit record: {e}")))?;
        line.push(b'\n');
        let _guard = audit.lock.lock().unwrap_or_else(|p| p.into_inner());
        append(&audit.path, &line).map_err(|e| {
            tracing::error!(path = %audit.path.display(), error = %e, "could not write the audit log");
            StateError::Files(format!(
                "the audit log {} could not be written ({e}), and this server places no order it cannot audit. The operator must fix the file or its directory (or choose another with --audit-log)",
                audit.path.display()
            ))
        })
    }
}

impl Files {
    /// Runs `op` on the order mirror, opening it first if need be. Its operations are short
    /// (indexed queries, one transaction per page), so they run inline.
    pub(super) fn with_mirror<T>(
        &self,
        op: impl FnOnce(&mut super::mirror::SqliteMirror) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut mirror = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
        if mirror.is_none() {
            *mirror = Some(super::mirror::SqliteMirror::open(
                &self.dir.join(MIRROR_FILE),
            )?);
        }
        op(mirror.as_mut().expect("opened just above"))
    }

    /// Runs `op` on the spend ledger, opening it first if need be.
    pub(super) fn with_spend<T>(
        &self,
        op: impl FnOnce(&mut super::spend::SqliteSpend) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut ledger = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        if ledger.is_none() {
            *ledger = Some(super::spend::SqliteSpend::open(&self.dir.join(SPEND_FILE))?);
        }
        op(ledger.as_mut().expect("opened just above"))
    }

    /// The spend ledger's one atomic step: budgets, the marker's claim, the reservation, in one
    /// immediate transaction of the ledger (the write lock every process sharing the directory
    /// takes), with the store's time read inside it.
    pub(super) fn claim_within(
        &self,
        id: &str,
        first: &Use,
        reservation: &super::spend::Reservation,
        budgets: &[super::spend::Budget],
    ) -> Result<super::spend::Reserved, StateError> {
        self.with_spend(|ledger| {
            ledger.claim_within(
                id,
                reservation,
                budgets,
                || Ok(self.markers.time()?.now.timestamp_millis()),
                || {
                    Ok(match self.markers.claim(id, first)? {
                        Claim::Won => None,
                        Claim::Taken(existing) => Some(existing),
                    })
                },
            )
        })
    }

    /// The file the built-in sandbox keeps its placed orders in, created private if need be
    /// (the sandbox opens it with SQLite; its journal files take the same mode).
    pub(super) fn sandbox_orders(&self) -> Result<PathBuf, StateError> {
        let path = self.dir.join(SANDBOX_ORDERS_FILE);
        match super::private::create_new_private(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StateError::Files(format!(
                    "could not create the sandbox's orders {}: {e}",
                    path.display()
                )));
            }
        }
        super::private::check_private_file(&path)
            .map_err(|e| StateError::Refused(format!("refusing the sandbox's orders: {e}")))?;
        Ok(path)
    }

    /// Deletes the order mirror (it is made again on next use).
    pub(super) fn drop_mirror(&self) -> Result<(), StateError> {
        let mut mirror = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
        *mirror = None;
        for suffix in ["", "-wal", "-shm"] {
            let path = self.dir.join(format!("{MIRROR_FILE}{suffix}"));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StateError::Files(format!(
                        "could not delete {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Reads the record of the account `dir` belongs to, or writes `account`'s if there is none.
/// A directory that has a signing key but no record was made by an earlier version.
fn belongs_to(dir: &Path, account: &Account) -> io::Result<Found> {
    let earlier = match fs::symlink_metadata(dir.join(KEY_FILE)) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let path = dir.join(ACCOUNT_FILE);
    Ok(
        match read_or_create_private(&path, ACCOUNT_MAX, || account.to_file())? {
            ReadOrCreated::Created if earlier => Found::Adopted,
            ReadOrCreated::Created => Found::New,
            ReadOrCreated::Read(bytes) => match Account::from_file(&bytes) {
                Ok(recorded) if recorded == *account => Found::Same,
                Ok(recorded) => Found::Other(recorded),
                Err(why) => Found::Unreadable(format!("{}: {why}", path.display())),
            },
        },
    )
}

/// The audit log, and the lock that keeps this process's lines whole.
#[derive(Debug)]
struct AuditFile {
    path: PathBuf,
    lock: Mutex<()>,
}

/// Appends to a private file (see [`open_append_private`]): created `0600` in a directory
/// created `0700`, never through a symbolic link, refused if others may write it.
fn append(path: &Path, line: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dirs_private(dir)?;
    }
    let mut file = open_append_private(path)?;
    file.write_all(line)?;
    file.flush()?;
    file.sync_data()
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
struct MarkerFiles {
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
    pub(super) fn new(dir: &Path) -> MarkerFiles {
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

impl MarkerFiles {
    pub(super) fn token(&self, id: &str) -> io::Result<Option<Recorded>> {
        MarkerFiles::read(&self.path(id))
    }

    pub(super) fn claim(&self, id: &str, first: &Use) -> io::Result<Claim> {
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

    pub(super) fn settle(&self, id: &str, record: &Use) -> io::Result<()> {
        // Written beside and renamed over, so a reader never sees half a line. If this fails
        // the marker still says "posting", which refuses reuse just the same.
        replace_private(&self.path(id), &line(record))
    }

    pub(super) fn release(&self, id: &str) -> io::Result<()> {
        fs::remove_file(self.path(id))
    }

    pub(super) fn recent(&self, content: &str, since: DateTime<Utc>) -> io::Result<Vec<Recorded>> {
        let mut found: Vec<Recorded> = self
            .markers()?
            .map(|(_, recorded)| recorded)
            .filter(|r| r.record.content == content && r.at >= since)
            .collect();
        found.sort_by_key(|r| r.at);
        Ok(found)
    }

    pub(super) fn time(&self) -> io::Result<StoreTime> {
        let now = millis(stamp(&self.dir.join(PROBE))?);
        Ok(StoreTime {
            now: from_millis(now),
            swept_through: self.mark()?,
        })
    }

    pub(super) fn sweep(&self, at_most: usize) -> io::Result<Swept> {
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

#[cfg(test)]
mod tests {
    use super::super::ledger::{SWEEP_AT_MOST, check_contract};
    use super::super::{Location, Store};
    use super::*;

    fn directory(dir: &Path) -> Location {
        Location::Directory {
            dir: dir.to_owned(),
            audit_log: Some(dir.join(AUDIT_FILE)),
            inside: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_state_directory_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&directory(dir.path()), &Account::BuiltInSandbox)
            .await
            .unwrap();
        check_contract(&store).await;
        super::super::mirror::check_mirror_contract(&store).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&directory(dir.path()), &Account::BuiltInSandbox)
            .await
            .unwrap();
        super::super::spend::check_spend_contract(&store).await;
        let mode = std::fs::metadata(dir.path().join(SPEND_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "the spend ledger is the owner's alone"
        );
    }

    #[test]
    fn an_unreadable_marker_refuses_reuse_and_is_never_swept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), "").unwrap();
        let store = MarkerFiles::new(dir.path());
        let got = store.token("x").unwrap().unwrap();
        assert_eq!(got.record.state, UseState::Posting);
        assert_eq!(got.record.expires, i64::MAX);
        store.sweep(SWEEP_AT_MOST).unwrap();
        assert!(store.token("x").unwrap().is_some());
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
        assert!(store.token("t").unwrap().is_some());
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
        assert!(store.token("t").unwrap().is_none());
    }

    /// Every file under `dir` with its content, for "nothing was changed".
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut all = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for entry in fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    all.push((path.clone(), fs::read(&path).unwrap()));
                }
            }
        }
        all.sort();
        all
    }

    #[tokio::test]
    async fn a_state_directory_is_one_accounts_and_refuses_another_untouched() {
        let mine = Account::api(&"http://127.0.0.1:4000/".parse().unwrap(), "x");
        let theirs = Account::api(&"http://127.0.0.1:4000/".parse().unwrap(), "y");
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("state");
        Store::open(&directory(&state), &mine).await.unwrap();
        let recorded = fs::read(state.join(ACCOUNT_FILE)).unwrap();
        assert_eq!(Account::from_file(&recorded), Ok(mine.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(state.join(ACCOUNT_FILE)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        Store::open(&directory(&state), &mine).await.unwrap();

        let before = snapshot(&state);
        for other in [theirs, Account::BuiltInSandbox] {
            let err = Store::open(&directory(&state), &other).await.unwrap_err();
            let StateError::Refused(message) = err else {
                panic!("{err:?}")
            };
            assert!(
                message.starts_with(&format!(
                    "the state directory {} belongs to {mine}; this process is {other}.",
                    state.display()
                )),
                "{message}"
            );
        }
        assert_eq!(snapshot(&state), before, "nothing was changed");

        // A record that cannot be read is refused too, and left as found.
        fs::write(state.join(ACCOUNT_FILE), "{}").unwrap();
        let err = Store::open(&directory(&state), &mine)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("the record cannot be read"), "{err}");
        assert!(err.contains(ACCOUNT_FILE), "{err}");
        assert_eq!(fs::read(state.join(ACCOUNT_FILE)).unwrap(), b"{}");

        // A directory an earlier version made (a key, no record) is adopted by the first.
        fs::remove_file(state.join(ACCOUNT_FILE)).unwrap();
        Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap();
        let recorded = fs::read(state.join(ACCOUNT_FILE)).unwrap();
        assert_eq!(Account::from_file(&recorded), Ok(Account::BuiltInSandbox));
        assert!(Store::open(&directory(&state), &mine).await.is_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_account_record_behind_a_link_or_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("state");
        Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap();
        let record = state.join(ACCOUNT_FILE);
        fs::set_permissions(&record, fs::Permissions::from_mode(0o666)).unwrap();
        let err = Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("account record") && err.contains("chmod 600"),
            "{err}"
        );
        let elsewhere = top.path().join("elsewhere");
        fs::rename(&record, &elsewhere).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &record).unwrap();
        let err = Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn opening_checks_and_creates_everything_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let chmod =
            |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("state");
        let store = Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(USED_TOKENS)), 0o700);
        assert_eq!(mode(&state.join(KEY_FILE)), 0o600);
        // The same key for the next process.
        let again = Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap();
        assert_eq!(store.signing_key(), again.signing_key());

        chmod(&state.join(USED_TOKENS), 0o777);
        let err = Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("used-token record"), "{err}");
        chmod(&state.join(USED_TOKENS), 0o700);

        chmod(&state.join(KEY_FILE), 0o644);
        let err = Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("confirmation key") && err.contains("chmod 600"),
            "{err}"
        );
        chmod(&state.join(KEY_FILE), 0o600);

        let log = state.join(AUDIT_FILE);
        fs::write(&log, "").unwrap();
        chmod(&log, 0o622);
        let err = Store::open(&directory(&state), &Account::BuiltInSandbox)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("audit log") && err.contains("chmod 600"),
            "{err}"
        );
        chmod(&log, 0o600);

        // The sandbox's state directory lives inside the live one, which is checked too.
        chmod(&state, 0o777);
        let sandbox = Location::Directory {
            dir: state.join("sandbox"),
            audit_log: None,
            inside: Some(state.clone()),
        };
        let err = Store::open(&sandbox, &Account::BuiltInSandbox)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("state directory"), "{err}");
    }

    #[tokio::test]
    async fn audit_lines_are_appended_and_an_unwritable_log_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("audit.jsonl");
        let files = Files::open(dir.path(), Some(&path), None, &Account::BuiltInSandbox).unwrap();
        for n in [1, 2] {
            let entry = AuditEntry {
                event: "preview".into(),
                token_id: None,
                body: serde_json::json!({"n": n}),
            };
            files.append_audit(&entry).await.unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"n\":1}\n{\"n\":2}\n");
        // A directory cannot be opened for appending.
        let files = Files::open(dir.path(), Some(dir.path()), None, &Account::BuiltInSandbox);
        let err = match files {
            Ok(files) => files
                .append_audit(&AuditEntry {
                    event: "preview".into(),
                    token_id: None,
                    body: serde_json::json!({}),
                })
                .await
                .unwrap_err()
                .to_string(),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("audit log"), "{err}");
    }
}
