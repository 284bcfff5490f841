//! The order mirror's records: every order read from 1NCE, kept with what searches filter on,
//! and the state of the sync that fills it. The rules (what is final, when to read again, how
//! fast to sync) are `crate::mirror`'s; this module keeps rows.
//!
//! In the state directory the mirror is one SQLite database, `mirror.sqlite3` (created on first
//! use, owner-only like everything there): searches by ICCID, reference and date need indexes
//! over years of orders, several processes share the directory (SQLite's write-ahead log and a
//! busy timeout let them), and nothing of it is loaded whole into memory. With `--state-url` the
//! same rows live in PostgreSQL (`crate::state::postgres`), shared by every replica.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::StateError;

/// One order as the mirror keeps it: its columns for searching, and the order itself.
#[derive(Debug, Clone, PartialEq)]
pub struct MirroredOrder {
    pub number: i64,
    pub status: Option<String>,
    pub order_type: Option<String>,
    /// When it was placed, in Unix milliseconds.
    pub placed_at: Option<i64>,
    pub reference: Option<String>,
    pub product_ids: Vec<i64>,
    pub iccids: Vec<String>,
    /// In a state 1NCE never leaves: never read again.
    pub final_state: bool,
    /// The order as 1NCE sent it.
    pub body: serde_json::Value,
}

/// A mirrored order and when it was read from 1NCE.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub order: MirroredOrder,
    pub read_at: DateTime<Utc>,
}

/// What a search asks of the mirror; every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct MirrorQuery {
    /// Exact, case-insensitive.
    pub status: Option<String>,
    /// Exact, case-insensitive.
    pub order_type: Option<String>,
    pub product_id: Option<i64>,
    pub iccid: Option<String>,
    /// A part of the customer reference, case-insensitive.
    pub reference: Option<String>,
    /// Placed at or after, Unix milliseconds.
    pub placed_from: Option<i64>,
    /// Placed before, Unix milliseconds.
    pub placed_until: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// How far the sync has come, as the store keeps it for every process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The order count 1NCE last reported.
    pub total_count: Option<u64>,
    /// The page count when the backfill started (pages are counted oldest first, so a page's
    /// orders stay where they are as new orders come).
    pub total_pages: Option<u64>,
    /// The next page the backfill reads (it walks down to page 1); `None` before it started.
    pub next_page: Option<u64>,
    /// The whole list has been read once.
    pub backfilled: bool,
    /// 1NCE gave no page count: the backfill walks forwards, oldest first.
    #[serde(default)]
    pub forward: bool,
    /// When the newest pages were last read again, Unix milliseconds.
    pub last_pass: Option<i64>,
}

/// The mirror in the state directory: a SQLite database.
pub(super) struct SqliteMirror {
    path: PathBuf,
    db: Connection,
}

impl std::fmt::Debug for SqliteMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SqliteMirror").field(&self.path).finish()
    }
}

fn failed(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |e| StateError::Files(format!("the order mirror {}: {e}", path.display()))
}

/// `synchronous = NORMAL`: in WAL mode a commit is not synced to disk, only checkpoints are. The
/// mirror is a copy of what 1NCE says, re-read when missing, so a power cut may cost it the last
/// pages read, never an order or a wrong answer; syncing every page of orders cost each list_orders
/// and get_order an fsync (BENCHMARKS.md, "What the server weighs"). The spend ledger and the token
/// markers, which hold the promise, stay fully synced.
const SCHEMA: &str = "
    PRAGMA foreign_keys = ON;
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS orders (
        number      INTEGER PRIMARY KEY,
        status      TEXT,
        order_type  TEXT,
        placed_at   INTEGER,
        reference   TEXT,
        final       INTEGER NOT NULL,
        body        TEXT NOT NULL,
        read_at     INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS orders_placed ON orders (placed_at);
    CREATE TABLE IF NOT EXISTS order_products (
        number      INTEGER NOT NULL REFERENCES orders (number) ON DELETE CASCADE,
        product_id  INTEGER NOT NULL,
        PRIMARY KEY (product_id, number)
    );
    CREATE TABLE IF NOT EXISTS sims (
        iccid   TEXT NOT NULL,
        number  INTEGER NOT NULL REFERENCES orders (number) ON DELETE CASCADE,
        PRIMARY KEY (iccid, number)
    );
    CREATE TABLE IF NOT EXISTS sync (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        state        TEXT NOT NULL,
        lease_owner  TEXT,
        lease_until  INTEGER
    );
";

impl SqliteMirror {
    /// Opens (creating, owner-only) the mirror at `path`.
    pub(super) fn open(path: &Path) -> Result<SqliteMirror, StateError> {
        let db = super::private::open_sqlite(path, "the order mirror", SCHEMA)?;
        Ok(SqliteMirror {
            path: path.to_owned(),
            db,
        })
    }

    /// A mirror in memory (for tests of the rules above the store).
    #[cfg(test)]
    pub(super) fn in_memory() -> SqliteMirror {
        let db = Connection::open_in_memory().expect("an in-memory database");
        db.execute_batch(SCHEMA).expect("the mirror's schema");
        SqliteMirror {
            path: PathBuf::from(":memory:"),
            db,
        }
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        failed(&self.path)
    }

    pub(super) fn put(&mut self, orders: &[MirroredOrder], read_at: i64) -> Result<(), StateError> {
        let fail = failed(&self.path);
        let tx = self.db.transaction().map_err(&fail)?;
        for o in orders {
            tx.execute(
                "INSERT INTO orders (number, status, order_type, placed_at, reference, final, body, read_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (number) DO UPDATE SET status = excluded.status,
                    order_type = excluded.order_type, placed_at = excluded.placed_at,
                    reference = excluded.reference, final = excluded.final, body = excluded.body,
                    read_at = excluded.read_at",
                params![
                    o.number,
                    o.status,
                    o.order_type,
                    o.placed_at,
                    o.reference,
                    o.final_state,
                    o.body.to_string(),
                    read_at
                ],
            )
            .map_err(&fail)?;
            tx.execute("DELETE FROM order_products WHERE number = ?1", [o.number])
                .map_err(&fail)?;
            tx.execute("DELETE FROM sims WHERE number = ?1", [o.number])
                .map_err(&fail)?;
            for id in &o.product_ids {
                tx.execute(
                    "INSERT OR IGNORE INTO order_products (number, product_id) VALUES (?1, ?2)",
                    params![o.number, id],
                )
                .map_err(&fail)?;
            }
            for iccid in &o.iccids {
                tx.execute(
                    "INSERT OR IGNORE INTO sims (iccid, number) VALUES (?1, ?2)",
                    params![iccid, o.number],
                )
                .map_err(&fail)?;
            }
        }
        tx.commit().map_err(&fail)
    }

    pub(super) fn get(&self, number: i64) -> Result<Option<Kept>, StateError> {
        self.db
            .query_row(&format!("{SELECT} WHERE o.number = ?1"), [number], row_kept)
            .optional()
            .map_err(self.fail())
    }

    pub(super) fn find(&self, q: &MirrorQuery) -> Result<(Vec<Kept>, u64), StateError> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |v: rusqlite::types::Value| {
            values.push(v);
            format!("?{}", values.len())
        };
        if let Some(status) = &q.status {
            conditions.push(format!(
                "upper(o.status) = upper({})",
                arg(status.clone().into())
            ));
        }
        if let Some(kind) = &q.order_type {
            conditions.push(format!(
                "upper(o.order_type) = upper({})",
                arg(kind.clone().into())
            ));
        }
        if let Some(id) = q.product_id {
            conditions.push(format!(
                "o.number IN (SELECT number FROM order_products WHERE product_id = {})",
                arg(id.into())
            ));
        }
        if let Some(iccid) = &q.iccid {
            conditions.push(format!(
                "o.number IN (SELECT number FROM sims WHERE iccid = {})",
                arg(iccid.clone().into())
            ));
        }
        if let Some(reference) = &q.reference {
            conditions.push(format!(
                "instr(lower(coalesce(o.reference, '')), lower({})) > 0",
                arg(reference.clone().into())
            ));
        }
        if let Some(from) = q.placed_from {
            conditions.push(format!("o.placed_at >= {}", arg(from.into())));
        }
        if let Some(until) = q.placed_until {
            conditions.push(format!("o.placed_at < {}", arg(until.into())));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let matched: i64 = self
            .db
            .query_row(
                &format!("SELECT count(*) FROM orders o{filter}"),
                rusqlite::params_from_iter(values.iter()),
                |row| row.get(0),
            )
            .map_err(self.fail())?;
        values.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
        let limit = format!("?{}", values.len());
        let mut statement = self
            .db
            .prepare(&format!(
                "{SELECT}{filter} ORDER BY o.placed_at DESC, o.number DESC LIMIT {limit}"
            ))
            .map_err(self.fail())?;
        let found = statement
            .query_map(rusqlite::params_from_iter(values.iter()), row_kept)
            .map_err(self.fail())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.fail())?;
        Ok((found, u64::try_from(matched).unwrap_or(0)))
    }

    pub(super) fn known(&self, numbers: &[i64]) -> Result<Vec<(i64, bool)>, StateError> {
        let mut statement = self
            .db
            .prepare("SELECT number, final FROM orders WHERE number = ?1")
            .map_err(self.fail())?;
        let mut out = Vec::new();
        for n in numbers {
            if let Some(row) = statement
                .query_row([n], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)))
                .optional()
                .map_err(self.fail())?
            {
                out.push(row);
            }
        }
        Ok(out)
    }

    pub(super) fn count(&self) -> Result<u64, StateError> {
        let n: i64 = self
            .db
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .map_err(self.fail())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) fn sync(&self) -> Result<SyncState, StateError> {
        let text: Option<String> = self
            .db
            .query_row("SELECT state FROM sync WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(self.fail())?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    pub(super) fn set_sync(&self, state: &SyncState) -> Result<(), StateError> {
        let text = serde_json::to_string(state).unwrap_or_default();
        self.db
            .execute(
                "INSERT INTO sync (id, state) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                [text],
            )
            .map(drop)
            .map_err(self.fail())
    }

    /// Takes or renews the sync's lease for `owner` until `until` (ms), unless another owner
    /// holds one that has not run out at `now`.
    pub(super) fn lease(&self, owner: &str, now: i64, until: i64) -> Result<bool, StateError> {
        let changed = self
            .db
            .execute(
                "INSERT INTO sync (id, state, lease_owner, lease_until) VALUES (1, '{}', ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET lease_owner = excluded.lease_owner,
                    lease_until = excluded.lease_until
                 WHERE sync.lease_owner IS NULL OR sync.lease_owner = ?1 OR sync.lease_until < ?3",
                params![owner, until, now],
            )
            .map_err(self.fail())?;
        Ok(changed == 1)
    }
}

const SELECT: &str =
    "SELECT o.number, o.status, o.order_type, o.placed_at, o.reference, o.final, o.body, o.read_at,
    (SELECT group_concat(product_id) FROM order_products p WHERE p.number = o.number),
    (SELECT group_concat(iccid) FROM sims s WHERE s.number = o.number)
    FROM orders o";

fn row_kept(row: &rusqlite::Row<'_>) -> rusqlite::Result<Kept> {
    let body: String = row.get(6)?;
    let products: Option<String> = row.get(8)?;
    let iccids: Option<String> = row.get(9)?;
    Ok(Kept {
        order: MirroredOrder {
            number: row.get(0)?,
            status: row.get(1)?,
            order_type: row.get(2)?,
            placed_at: row.get(3)?,
            reference: row.get(4)?,
            final_state: row.get(5)?,
            body: serde_json::from_str(&body).unwrap_or_default(),
            product_ids: products
                .map(|p| p.split(',').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_default(),
            iccids: iccids
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        },
        read_at: DateTime::from_timestamp_millis(row.get(7)?).unwrap_or_default(),
    })
}

/// The contract every store keeps for the mirror, run on an empty one (the state directory's
/// unit test, the PostgreSQL table's integration test): orders kept and found by what searches
/// ask, an order read again replacing what was kept, the sync's state, and its lease. Panics on
/// the first difference.
#[doc(hidden)]
pub async fn check_mirror_contract(store: &super::Store) {
    let order = |number: i64, status: &str, placed_at: i64, iccids: &[&str]| MirroredOrder {
        number,
        status: Some(status.to_owned()),
        order_type: Some("ADDITIONAL_ORDER".to_owned()),
        placed_at: Some(placed_at),
        reference: Some(format!("PO-{number}")),
        product_ids: vec![1001],
        iccids: iccids.iter().map(|s| s.to_string()).collect(),
        final_state: status == "COMPLETED",
        body: serde_json::json!({"order_number": number}),
    };
    let at = DateTime::from_timestamp_millis(5).unwrap();
    store
        .mirror_put(
            &[
                order(1, "COMPLETED", 1_000, &["8988", "8989"]),
                order(2, "IN_PROGRESS", 2_000, &[]),
                order(3, "COMPLETED", 3_000, &["8990"]),
            ],
            at,
        )
        .await
        .unwrap();
    let got = store.mirror_get(1).await.unwrap().unwrap();
    assert_eq!(got.order.iccids, ["8988", "8989"]);
    assert_eq!(got.order.body, serde_json::json!({"order_number": 1}));
    assert_eq!(got.read_at, at);
    assert!(got.order.final_state);
    let find = |q: MirrorQuery| async move {
        let (found, matched) = store
            .mirror_find(&MirrorQuery { limit: 10, ..q })
            .await
            .unwrap();
        (
            found.iter().map(|k| k.order.number).collect::<Vec<_>>(),
            matched,
        )
    };
    assert_eq!(
        find(MirrorQuery {
            iccid: Some("8989".into()),
            ..Default::default()
        })
        .await,
        (vec![1], 1)
    );
    assert_eq!(find(MirrorQuery::default()).await, (vec![3, 2, 1], 3));
    let (newest, matched) = store
        .mirror_find(&MirrorQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((newest.len(), newest[0].order.number, matched), (1, 3, 3));
    assert_eq!(
        find(MirrorQuery {
            status: Some("in_progress".into()),
            ..Default::default()
        })
        .await,
        (vec![2], 1)
    );
    assert_eq!(
        find(MirrorQuery {
            placed_from: Some(1_500),
            placed_until: Some(3_000),
            ..Default::default()
        })
        .await,
        (vec![2], 1)
    );
    assert_eq!(
        find(MirrorQuery {
            reference: Some("po-3".into()),
            ..Default::default()
        })
        .await,
        (vec![3], 1)
    );
    assert_eq!(
        find(MirrorQuery {
            product_id: Some(1002),
            ..Default::default()
        })
        .await,
        (vec![], 0)
    );
    // An order read again replaces what was kept, its SIMs too.
    store
        .mirror_put(&[order(2, "COMPLETED", 2_000, &["8991"])], at)
        .await
        .unwrap();
    let again = store.mirror_get(2).await.unwrap().unwrap();
    assert!(again.order.final_state && again.order.iccids == ["8991"]);
    let mut known = store.mirror_known(&[1, 2, 9]).await.unwrap();
    known.sort_unstable();
    assert_eq!(known, [(1, true), (2, true)]);
    assert_eq!(store.mirror_count().await.unwrap(), 3);
    // The sync's state and lease.
    let state = SyncState {
        total_count: Some(3),
        next_page: Some(1),
        ..Default::default()
    };
    store.mirror_set_sync(&state).await.unwrap();
    assert_eq!(store.mirror_sync().await.unwrap(), state);
    let t = |ms| DateTime::from_timestamp_millis(ms).unwrap();
    let ttl = std::time::Duration::from_millis(100);
    assert!(store.mirror_lease("a", t(100), ttl).await.unwrap());
    assert!(
        !store.mirror_lease("b", t(150), ttl).await.unwrap(),
        "held by a until 200"
    );
    assert!(
        store.mirror_lease("a", t(150), ttl).await.unwrap(),
        "renewed"
    );
    assert!(
        store.mirror_lease("b", t(301), ttl).await.unwrap(),
        "ran out"
    );
    assert_eq!(
        store.mirror_sync().await.unwrap(),
        state,
        "the lease leaves the state alone"
    );
    store.mirror_drop().await.unwrap();
    assert_eq!(store.mirror_count().await.unwrap(), 0);
    assert_eq!(store.mirror_sync().await.unwrap(), SyncState::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_keeps_the_mirror_contract() {
        let store =
            super::super::Store::memory(std::sync::Arc::new(crate::clock::SystemClock), [1; 32]);
        check_mirror_contract(&store).await;
    }
}
