//! The spend ledger: what each used token reserved against the operator's spend limits, kept
//! for as long as a period needs it (never swept with the token records), and the one atomic
//! step that checks the budgets, claims the token and reserves its amount.
//!
//! The rules (what counts, which periods) are `crate::orders::spend`'s. Here: a row per token
//! and currency with the store's time of the reservation and its state (`reserved` while the
//! POST is under way, then `placed`, `unknown`, or `released` when nothing was ordered). Every
//! state but `released` counts. In the state directory the rows are in `ledger.sqlite3`, and the
//! step runs in an immediate SQLite transaction (one writer across the processes sharing the
//! directory) around the marker file's claim; in PostgreSQL, in one transaction under an
//! advisory lock, the claim's insert included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior, params};

use super::StateError;
use super::ledger::Recorded;

/// One budget to check: at most `limit_cents` in `currency` reserved at a store time in
/// `[from_ms, until_ms)`, by `person` when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub currency: String,
    pub limit_cents: i64,
    pub from_ms: i64,
    pub until_ms: i64,
    pub person: Option<String>,
}

/// What a confirmation reserves: its net one-time total per currency, and who confirms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reservation {
    pub cents: BTreeMap<String, i64>,
    /// The person's key (empty when the transport knows nobody).
    pub person: String,
}

/// How a claim with a reservation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Reserved {
    /// The token is this caller's and its amount reserved; `spent_cents` is what each budget
    /// had reserved before it (the figure the decision used).
    Won { spent_cents: Vec<i64> },
    /// A record exists already; here it is. Nothing was reserved.
    Taken(Recorded),
    /// Budget `budget` (an index into the budgets given) has `spent_cents` reserved already, and
    /// this reservation does not fit. Nothing was claimed.
    Over { budget: usize, spent_cents: i64 },
}

/// What became of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendState {
    Reserved,
    Placed,
    Unknown,
    Released,
}

/// The instants every budget's window holds, `[lo, hi]`: a reservation is recorded at the
/// store's time clamped into them, so it counts in the periods whose budgets admitted it even
/// when a period ends (or the store's clock steps) between the budgets' reading and the claim.
pub(super) fn admitted(budgets: &[Budget]) -> (i64, i64) {
    let lo = budgets.iter().map(|b| b.from_ms).max().unwrap_or(i64::MIN);
    let hi = budgets
        .iter()
        .map(|b| b.until_ms.saturating_sub(1))
        .min()
        .unwrap_or(i64::MAX);
    if lo <= hi {
        (lo, hi)
    } else {
        (i64::MIN, i64::MAX)
    }
}

impl SpendState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SpendState::Reserved => "reserved",
            SpendState::Placed => "placed",
            SpendState::Unknown => "unknown",
            SpendState::Released => "released",
        }
    }
}

/// The spend ledger in the state directory.
pub(super) struct SqliteSpend {
    path: PathBuf,
    db: Connection,
}

impl std::fmt::Debug for SqliteSpend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SqliteSpend").field(&self.path).finish()
    }
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS spend (
        token_id  TEXT NOT NULL,
        currency  TEXT NOT NULL,
        cents     INTEGER NOT NULL,
        person    TEXT NOT NULL,
        at_ms     INTEGER NOT NULL,
        state     TEXT NOT NULL,
        PRIMARY KEY (token_id, currency)
    );
    CREATE INDEX IF NOT EXISTS spend_at ON spend (currency, at_ms);
";

fn failed(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |e| StateError::Files(format!("the spend ledger {}: {e}", path.display()))
}

/// What is reserved and not released within `budget`, read on `db` (the ledger, or a
/// transaction on it).
fn spent_in(db: &Connection, budget: &Budget) -> rusqlite::Result<i64> {
    db.query_row(
        "SELECT coalesce(sum(cents), 0) FROM spend WHERE currency = ?1 AND at_ms >= ?2
         AND at_ms < ?3 AND state <> 'released' AND (?4 IS NULL OR person = ?4)",
        params![
            budget.currency,
            budget.from_ms,
            budget.until_ms,
            budget.person
        ],
        |r| r.get(0),
    )
}

impl SqliteSpend {
    /// Opens (creating, owner-only) the ledger at `path`.
    pub(super) fn open(path: &Path) -> Result<SqliteSpend, StateError> {
        let db = super::private::open_sqlite(path, "the spend ledger", SCHEMA)?;
        Ok(SqliteSpend {
            path: path.to_owned(),
            db,
        })
    }

    /// In memory (for tests of the rules above the store).
    #[cfg(test)]
    pub(super) fn in_memory() -> SqliteSpend {
        let db = Connection::open_in_memory().expect("an in-memory database");
        db.execute_batch(SCHEMA).expect("the ledger's schema");
        SqliteSpend {
            path: PathBuf::from(":memory:"),
            db,
        }
    }

    /// Checks `budgets`, then runs `claim`, and reserves `reservation` at store time `at_ms`
    /// (read by `now` once the transaction holds the write lock) if the claim was won: all in
    /// one immediate transaction, so no other process can reserve in between.
    pub(super) fn claim_within(
        &mut self,
        token_id: &str,
        reservation: &Reservation,
        budgets: &[Budget],
        now: impl FnOnce() -> Result<i64, StateError>,
        claim: impl FnOnce() -> Result<Option<Recorded>, StateError>,
    ) -> Result<Reserved, StateError> {
        let fail = failed(&self.path);
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let mut spent_cents = Vec::with_capacity(budgets.len());
        for (i, budget) in budgets.iter().enumerate() {
            let spent = spent_in(&tx, budget).map_err(&fail)?;
            let this = reservation
                .cents
                .get(&budget.currency)
                .copied()
                .unwrap_or(0);
            if spent.saturating_add(this) > budget.limit_cents {
                return Ok(Reserved::Over {
                    budget: i,
                    spent_cents: spent,
                });
            }
            spent_cents.push(spent);
        }
        let (lo, hi) = admitted(budgets);
        let at = now()?.clamp(lo, hi);
        if let Some(existing) = claim()? {
            return Ok(Reserved::Taken(existing));
        }
        for (currency, cents) in &reservation.cents {
            tx.execute(
                "INSERT INTO spend (token_id, currency, cents, person, at_ms, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'reserved')
                 ON CONFLICT (token_id, currency) DO UPDATE SET cents = excluded.cents,
                    person = excluded.person, at_ms = excluded.at_ms, state = 'reserved'",
                params![token_id, currency, cents, reservation.person, at],
            )
            .map_err(&fail)?;
        }
        tx.commit().map_err(&fail)?;
        Ok(Reserved::Won { spent_cents })
    }

    pub(super) fn settle(&self, token_id: &str, state: SpendState) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE spend SET state = ?2 WHERE token_id = ?1",
                params![token_id, state.as_str()],
            )
            .map(drop)
            .map_err(failed(&self.path))
    }

    /// Releases token `id`'s amount if its outcome is unknown and it was reserved at or before
    /// `before_ms` (store time); whether it was.
    pub(super) fn release_unknown(&self, id: &str, before_ms: i64) -> Result<bool, StateError> {
        self.db
            .execute(
                "UPDATE spend SET state = 'released' WHERE token_id = ?1 AND state = 'unknown'
                 AND at_ms <= ?2",
                params![id, before_ms],
            )
            .map(|n| n > 0)
            .map_err(failed(&self.path))
    }

    pub(super) fn spent(&self, budget: &Budget) -> Result<i64, StateError> {
        spent_in(&self.db, budget).map_err(failed(&self.path))
    }
}

/// The contract every store keeps for the spend ledger, run on an empty one: budgets checked and
/// the amount reserved with the claim, a claim taken reserves nothing, released amounts no
/// longer count, and twenty concurrent claims near a limit reserve exactly as many as fit.
/// For the tests only (cargo feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub async fn check_spend_contract(store: &super::Store) {
    use super::ledger::{Claim, Use, UseState};
    let now = store.time().await.unwrap().now.timestamp_millis();
    let budget = |limit: i64, person: Option<&str>| Budget {
        currency: "EUR".into(),
        limit_cents: limit,
        from_ms: now - 3_600_000,
        until_ms: now + 3_600_000,
        person: person.map(str::to_owned),
    };
    let reservation = |cents: i64, person: &str| Reservation {
        cents: BTreeMap::from([("EUR".to_owned(), cents)]),
        person: person.to_owned(),
    };
    let posting = Use {
        state: UseState::Posting,
        content: "c".into(),
        expires: now + 600_000,
    };
    let claim = |id: &str, cents: i64, budgets: Vec<Budget>| {
        let (store, posting, id) = (store.clone(), posting.clone(), id.to_owned());
        let r = reservation(cents, "alice");
        async move {
            store
                .claim_within(&id, &posting, &r, &budgets)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        claim("s1", 600, vec![budget(1_000, None)]).await,
        Reserved::Won {
            spent_cents: vec![0]
        }
    );
    assert_eq!(store.spent(&budget(1_000, None)).await.unwrap(), 600);
    assert!(matches!(
        claim("s2", 500, vec![budget(1_000, None)]).await,
        Reserved::Over {
            budget: 0,
            spent_cents: 600
        }
    ));
    assert_eq!(store.token("s2").await.unwrap(), None, "nothing claimed");
    // Per person: another person's budget is their own.
    assert_eq!(
        claim(
            "s3",
            300,
            vec![budget(1_000, Some("alice")), budget(1_000, None)]
        )
        .await,
        Reserved::Won {
            spent_cents: vec![600, 600]
        }
    );
    assert_eq!(store.spent(&budget(1_000, Some("bob"))).await.unwrap(), 0);
    assert_eq!(
        store.spent(&budget(1_000, Some("alice"))).await.unwrap(),
        900
    );
    // A token already used reserves nothing.
    assert!(matches!(
        claim("s1", 50, vec![budget(1_000, None)]).await,
        Reserved::Taken(_)
    ));
    assert_eq!(store.spent(&budget(10_000, None)).await.unwrap(), 900);
    // Released amounts do not count; placed and unknown ones do.
    store
        .settle_spend("s3", SpendState::Released)
        .await
        .unwrap();
    store.settle_spend("s1", SpendState::Unknown).await.unwrap();
    assert_eq!(store.spent(&budget(1_000, None)).await.unwrap(), 600);
    // Outside the window, nothing counts.
    let later = Budget {
        from_ms: now + 3_600_000,
        until_ms: now + 7_200_000,
        ..budget(1_000, None)
    };
    assert_eq!(store.spent(&later).await.unwrap(), 0);
    // Twenty at once, 100 each, 1,000 left in a fresh currency's budget: exactly ten fit.
    let usd = |limit| Budget {
        currency: "USD".into(),
        ..budget(limit, None)
    };
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, posting) = (store.clone(), posting.clone());
            let budgets = vec![usd(1_000)];
            tokio::spawn(async move {
                let r = Reservation {
                    cents: BTreeMap::from([("USD".to_owned(), 100)]),
                    person: String::new(),
                };
                store
                    .claim_within(&format!("u{i}"), &posting, &r, &budgets)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Reserved::Won { .. }) {
            won += 1;
        }
    }
    assert_eq!(won, 10, "exactly as many as fit");
    assert_eq!(store.spent(&usd(1_000)).await.unwrap(), 1_000);
    let _ = Claim::Won;
}
