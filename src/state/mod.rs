//! Stored state, behind one seam: the single use of confirmation tokens (the token ledger), the
//! audit trail, the key that signs tokens, the spend ledger, the order mirror and, with
//! replicas, the rate limit to 1NCE. All of it is one 1NCE account's: a store records which
//! ([`account`]) and refuses any other.
//!
//! A [`Store`] is chosen once, from the configuration ([`Location`]):
//! - **the state directory** ([`files`]): one marker file per used token, `audit.jsonl`, the key
//!   file, under the file rules of [`private`] (owner-only, never through a link);
//! - **PostgreSQL** (`postgres`, `--state-url`, cargo feature `postgres`): the same in tables
//!   every replica shares, with the database's clock, on the process's one runtime.
//!
//! Every operation is `async` and fails with one error type, [`StateError`], whose text names
//! what to check. The store keeps no rule of the order promise: those are in `crate::orders`,
//! which decides what is recorded and what a record means; this module only keeps records
//! durably, atomically where it must (a claim has exactly one winner), and says what its own
//! clock reads (see "Time" in [`ledger`]).

pub mod account;
pub mod files;
pub mod ledger;
pub mod mirror;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod private;
pub mod spend;

#[cfg(test)]
pub(crate) mod memory;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use account::Account;
pub use ledger::{
    Claim, NotApproved, RETAIN, Recorded, SWEEP_AT_MOST, StoreTime, Swept, Use, UseState,
};
pub use mirror::{Kept, MirrorQuery, MirroredOrder, SyncState};
#[cfg(feature = "postgres")]
pub use postgres::DbTarget;
pub use spend::{Budget, Reservation, Reserved, SpendState};

/// Where state is kept, as the configuration says.
#[derive(Debug, Clone)]
pub enum Location {
    /// The state directory; the audit log in it (or where `--audit-log` puts it, or none).
    Directory {
        dir: PathBuf,
        audit_log: Option<PathBuf>,
        /// The directory is the sandbox's, inside the live one: that one is checked too.
        inside: Option<PathBuf>,
    },
    /// PostgreSQL, shared by every replica.
    #[cfg(feature = "postgres")]
    Postgres(Box<DbTarget>),
}

/// Why stored state could not be read or written. The text names what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The state directory or a file in it is not private (writable by others, a symbolic
    /// link, not a directory), or the store belongs to another 1NCE account: a configuration
    /// to fix, never one to use as found. The message names the path (or the database) and the
    /// fix.
    #[error("{0}")]
    Refused(String),
    /// A file of the state directory could not be read or written.
    #[error("{0}")]
    Files(String),
    /// The state database (the message names it, never its password).
    #[error("{0}")]
    Database(String),
}

impl From<std::io::Error> for StateError {
    fn from(e: std::io::Error) -> Self {
        StateError::Files(e.to_string())
    }
}

/// One audit record, as the store keeps it: its kind, the token it concerns, and the record
/// itself as JSON (built by `crate::orders::audit`).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub event: String,
    pub token_id: Option<String>,
    pub body: serde_json::Value,
}

/// The store, chosen once.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    key: [u8; 32],
}

enum Backend {
    Files(Box<files::Files>),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Postgres),
    #[cfg(test)]
    Memory(Box<memory::Memory>),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("at", &self.describe())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Dispatches `$call` to the backend.
macro_rules! each {
    ($self:ident, $b:ident => $call:expr) => {
        match &*$self.backend {
            Backend::Files($b) => $call,
            #[cfg(feature = "postgres")]
            Backend::Postgres($b) => $call,
            #[cfg(test)]
            Backend::Memory($b) => $call,
        }
    };
}

impl Store {
    /// Opens the store at `location` for the 1NCE account `account`: checks and creates the
    /// state directory (or connects to the database and brings its schema up to date), checks
    /// that the store is `account`'s (recording it on first use, see [`account`]), and reads
    /// the signing key, creating it on first use. `Err` names what to fix; a store of another
    /// account is [`StateError::Refused`] with nothing in it changed.
    pub async fn open(location: &Location, account: &Account) -> Result<Store, StateError> {
        let (backend, key) = match location {
            Location::Directory {
                dir,
                audit_log,
                inside,
            } => {
                let files =
                    files::Files::open(dir, audit_log.as_deref(), inside.as_deref(), account)?;
                let key = files.key()?;
                (Backend::Files(Box::new(files)), key)
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(target) => {
                let db = postgres::Postgres::open(target, account).await?;
                let key = db.signing_key().await?;
                (Backend::Postgres(db), key)
            }
        };
        Ok(Store {
            backend: Arc::new(backend),
            key,
        })
    }

    /// A store in memory whose clock is `clock` (for tests of the rules above it).
    #[cfg(test)]
    pub(crate) fn memory(clock: Arc<dyn crate::clock::Clock>, key: [u8; 32]) -> Store {
        Store {
            backend: Arc::new(Backend::Memory(Box::new(memory::Memory::new(clock)))),
            key,
        }
    }

    /// The key confirmation tokens are signed with, shared by every process using this store.
    pub fn signing_key(&self) -> [u8; 32] {
        self.key
    }

    /// Where the state is, for messages: the directory, or the database without its password.
    pub fn describe(&self) -> String {
        match &*self.backend {
            Backend::Files(f) => format!("the state directory {}", f.dir().display()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => format!("the state database {}", db.shown()),
            #[cfg(test)]
            Backend::Memory(_) => "memory".to_owned(),
        }
    }

    /// When this process found a store an earlier version made, which recorded no 1NCE account,
    /// and recorded its own: what to tell the operator (a line for `1nce-mcp check`).
    pub fn adopted(&self) -> Option<&str> {
        match &*self.backend {
            Backend::Files(f) => f.adopted(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.adopted(),
            #[cfg(test)]
            Backend::Memory(_) => None,
        }
    }

    /// A line for `1nce-mcp check`: the database answers and its schema is current (nothing
    /// for a state directory, which start-up already checked).
    pub async fn check(&self) -> Result<Option<String>, StateError> {
        match &*self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => {
                let version = db.version().await?;
                Ok(Some(format!(
                    "state database {}: ready (PostgreSQL {version}, schema current)",
                    db.shown()
                )))
            }
            _ => Ok(None),
        }
    }

    /// Where the built-in sandbox keeps the orders placed in it, so every process using this
    /// state directory sees them: a private file there. `None` for a state database (the
    /// sandbox then keeps its orders in memory, for its process alone).
    pub fn sandbox_orders_file(&self) -> Result<Option<PathBuf>, StateError> {
        match &*self.backend {
            Backend::Files(f) => f.sandbox_orders().map(Some),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Ok(None),
            #[cfg(test)]
            Backend::Memory(_) => Ok(None),
        }
    }

    /// The rate limit to 1NCE shared by every replica, when the store is shared.
    pub fn shared_bucket(&self) -> Option<Arc<dyn crate::rate_limit::SharedBucket>> {
        match &*self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => Some(Arc::new(db.rate_buckets())),
            _ => None,
        }
    }

    // --- the token ledger (see `ledger` for the contract) ---

    /// The record of token `id`, if any.
    pub async fn token(&self, id: &str) -> Result<Option<Recorded>, StateError> {
        each!(self, b => b.token(id).await)
    }

    /// Records `first` for `id` unless a record exists; then returns that record instead. Of
    /// concurrent callers, in any number of processes, exactly one gets [`Claim::Won`]. A claim
    /// that fails leaves no record.
    pub async fn claim(&self, id: &str, first: &Use) -> Result<Claim, StateError> {
        each!(self, b => b.claim(id, first).await)
    }

    /// Replaces the record of a token this caller claimed (writing it again should it be gone).
    pub async fn settle(&self, id: &str, record: &Use) -> Result<(), StateError> {
        each!(self, b => b.settle(id, record).await)
    }

    /// Removes the record: the token may be used again.
    pub async fn release(&self, id: &str) -> Result<(), StateError> {
        each!(self, b => b.release(id).await)
    }

    /// Records of tokens for order content `content` changed at or after `since` (store time).
    pub async fn recent(
        &self,
        content: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StateError> {
        each!(self, b => b.recent(content, since).await)
    }

    /// The store's clock and swept-through mark, read now.
    pub async fn time(&self) -> Result<StoreTime, StateError> {
        each!(self, b => b.time().await)
    }

    /// Removes at most `at_most` records whose token expired more than [`RETAIN`] before the
    /// store's time, after raising the swept-through mark to the highest expiry among them
    /// (durably, never lowering it: sweeps are serialised). A record whose expiry is unknown is
    /// never removed.
    pub async fn sweep(&self, at_most: usize) -> Result<Swept, StateError> {
        each!(self, b => b.sweep(at_most).await)
    }

    // --- the spend ledger (see `spend`) ---

    /// Checks `budgets` against what is reserved already, then claims token `id` with `first`
    /// and reserves `reservation` with it, as one atomic step across every process sharing the
    /// store: of confirmations racing near a limit, no more pass than fit.
    pub async fn claim_within(
        &self,
        id: &str,
        first: &Use,
        reservation: &Reservation,
        budgets: &[Budget],
    ) -> Result<Reserved, StateError> {
        match &*self.backend {
            Backend::Files(f) => f.claim_within(id, first, reservation, budgets),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.claim_within(id, first, reservation, budgets).await,
            #[cfg(test)]
            Backend::Memory(m) => m.claim_within(id, first, reservation, budgets),
        }
    }

    /// Records what became of token `id`'s reservation.
    pub async fn settle_spend(&self, id: &str, state: SpendState) -> Result<(), StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_spend(|l| l.settle(id, state)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.settle_spend(id, state).await,
            #[cfg(test)]
            Backend::Memory(m) => m.spend().settle(id, state),
        }
    }

    /// Releases token `id`'s amount when its outcome is unknown and it was reserved at least
    /// `waited` ago by the store's clock (never a placed one); whether it was.
    pub async fn release_unknown(
        &self,
        id: &str,
        waited: std::time::Duration,
    ) -> Result<bool, StateError> {
        let now = self.time().await?.now.timestamp_millis();
        let waited = i64::try_from(waited.as_millis()).unwrap_or(i64::MAX);
        let before = now.saturating_sub(waited);
        match &*self.backend {
            Backend::Files(f) => f.with_spend(|l| l.release_unknown(id, before)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.release_unknown(id, before).await,
            #[cfg(test)]
            Backend::Memory(m) => m.spend().release_unknown(id, before),
        }
    }

    /// What is reserved (and not released) within `budget`.
    pub async fn spent(&self, budget: &Budget) -> Result<i64, StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_spend(|l| l.spent(budget)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.spent(budget).await,
            #[cfg(test)]
            Backend::Memory(m) => m.spend().spent(budget),
        }
    }

    // --- the audit trail ---

    /// Appends one audit record, durably, after every record appended before it.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StateError> {
        each!(self, b => b.append_audit(entry).await)
    }

    // --- the order mirror (see `mirror`) ---

    /// Keeps `orders` as read from 1NCE at `read_at`, replacing what was kept of them.
    pub async fn mirror_put(
        &self,
        orders: &[MirroredOrder],
        read_at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let at = read_at.timestamp_millis();
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.put(orders, at)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_put(orders, at).await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).put(orders, at),
        }
    }

    /// The kept order `number`, if any.
    pub async fn mirror_get(&self, number: i64) -> Result<Option<Kept>, StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.get(number)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_get(number).await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).get(number),
        }
    }

    /// The kept orders `query` matches, newest first, at most its limit; and how many match.
    pub async fn mirror_find(&self, query: &MirrorQuery) -> Result<(Vec<Kept>, u64), StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.find(query)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_find(query).await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).find(query),
        }
    }

    /// Which of `numbers` are kept, and whether each is in a final state.
    pub async fn mirror_known(&self, numbers: &[i64]) -> Result<Vec<(i64, bool)>, StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.known(numbers)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_known(numbers).await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).known(numbers),
        }
    }

    /// How many orders are kept.
    pub async fn mirror_count(&self) -> Result<u64, StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.count()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_count().await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).count(),
        }
    }

    /// How far the sync has come.
    pub async fn mirror_sync(&self) -> Result<SyncState, StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.sync()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_sync().await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).sync(),
        }
    }

    /// Records how far the sync has come.
    pub async fn mirror_set_sync(&self, state: &SyncState) -> Result<(), StateError> {
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.set_sync(state)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_set_sync(state).await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).set_sync(state),
        }
    }

    /// Takes or renews the lease that lets one process (of all sharing the store) run the sync,
    /// for `owner`, from `now` for `ttl`. `false` while another owner holds one.
    pub async fn mirror_lease(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, StateError> {
        let now_ms = now.timestamp_millis();
        let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        match &*self.backend {
            Backend::Files(f) => f.with_mirror(|m| m.lease(owner, now_ms, until)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_lease(owner, now_ms, until).await,
            #[cfg(test)]
            Backend::Memory(m) => lock_mirror(m).lease(owner, now_ms, until),
        }
    }

    /// Forgets every mirrored order and the sync's progress.
    pub async fn mirror_drop(&self) -> Result<(), StateError> {
        match &*self.backend {
            Backend::Files(f) => f.drop_mirror(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.mirror_drop().await,
            #[cfg(test)]
            Backend::Memory(m) => {
                *lock_mirror(m) = mirror::SqliteMirror::in_memory();
                Ok(())
            }
        }
    }

    /// A test-only view of the in-memory backend.
    #[cfg(test)]
    pub(crate) fn as_memory(&self) -> Option<&memory::Memory> {
        match &*self.backend {
            Backend::Memory(m) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
fn lock_mirror(m: &memory::Memory) -> std::sync::MutexGuard<'_, mirror::SqliteMirror> {
    m.mirror.lock().unwrap_or_else(|p| p.into_inner())
}
