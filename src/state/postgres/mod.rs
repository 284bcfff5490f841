//! State shared by replicas, in PostgreSQL (`--state-url`): the single use of confirmation
//! tokens (`used_tokens`, `sweep_mark`), the audit trail (`audit_trail`), the token signing key
//! (`signing_keys`), the rate limit to 1NCE (`rate_buckets`), the spend ledger
//! (`spend_ledger`), the order mirror (`order_mirror*`) and the 1NCE account all of it belongs
//! to (`store_account`); the schema is in [`migrations`].
//!
//! Every time in these tables is the database's, never a replica's. Operations run on the
//! process's runtime through a small pool, each bounded by [`OP_TIMEOUT`]: a database that does
//! not answer is an error within that bound, never a hang, and the pool makes fresh connections
//! when it comes back, so the server recovers by itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::future::BoxFuture;
use tokio_postgres::config::SslMode;
use tokio_postgres::{NoTls, Row};

pub mod migrations;

use super::account::Account;
use super::ledger::{Claim, NotApproved, RETAIN, Recorded, StoreTime, Swept, Use, UseState, never};
use super::mirror::{Kept, MirrorQuery, MirroredOrder, SyncState};
use super::spend::{Budget, Reservation, Reserved, SpendState};
use super::{AuditEntry, StateError};
use crate::rate_limit::{RateLimit, SharedBucket};

/// Longest wait for one database operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per replica: a confirmation needs one at a time, briefly.
const POOL_SIZE: usize = 8;

/// Where the database is, validated (see `crate::config`); its password never appears in
/// `Debug`, logs or errors.
#[derive(Clone)]
pub struct DbTarget {
    pub config: tokio_postgres::Config,
    /// The URL without its password, for messages.
    pub shown: String,
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DbTarget").field(&self.shown).finish()
    }
}

/// A pool of connections to the state database.
#[derive(Clone)]
pub(super) struct Postgres {
    pool: Pool,
    shown: Arc<str>,
    /// Which replica writes the audit rows (host and process id).
    replica: Arc<str>,
    /// Said when this process adopted a database an earlier version made (see
    /// [`super::account`]).
    adopted: Option<Arc<str>>,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Postgres").field(&self.shown).finish()
    }
}

/// An error from the database, reduced to what can be shown: the server's message and the
/// SQL state, or the kind of connection failure. Never a password.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let text = e.to_string();
            match std::error::Error::source(e) {
                Some(source) => format!("{text}: {source}"),
                None => text,
            }
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(&e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "no connection to the database within the time limit".to_owned()
        }
        other => other.to_string(),
    }
}

/// A pooled connection, or a message that says why there is none.
pub(super) async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object, String> {
    pool.get().await.map_err(pool_error)
}

/// The database's time in Unix milliseconds.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

/// The database's time in Unix milliseconds (as a float), read when the row is locked.
macro_rules! db_now {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::double precision"
    };
}

impl Postgres {
    /// Connects to `target`, checks that the database answers, applies the migrations and
    /// checks that the database is `account`'s (recording it on first use). Errors say what to
    /// check, and name the database without its password.
    pub(super) async fn open(target: &DbTarget, account: &Account) -> Result<Postgres, StateError> {
        let mut config = target.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(OP_TIMEOUT);
        }
        config.application_name("1nce-mcp");
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if matches!(config.get_ssl_mode(), SslMode::Disable) {
            Manager::from_config(config, NoTls, manager_config)
        } else {
            // `prefer` (the default) uses TLS when the server offers it, `require` insists; the
            // certificate is verified against the system's roots either way.
            Manager::from_config(config, tls()?, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(OP_TIMEOUT))
            .recycle_timeout(Some(OP_TIMEOUT))
            .build()
            .map_err(|e| {
                StateError::Database(format!("could not set up the database pool: {e}"))
            })?;
        let db = Postgres {
            pool,
            shown: target.shown.as_str().into(),
            replica: replica_name().into(),
            adopted: None,
        };
        let found = db
            .run(|pool| async move { migrations::apply(&pool, account).await })
            .await
            .map_err(|e| {
                StateError::Database(format!(
                    "the state database {} is not usable: {e}. Check that PostgreSQL runs there, that the user may connect and create tables (see docs/operations.md, \"Several replicas\"), and the password (PGPASSWORD or ONCE_STATE_PASSWORD_FILE)",
                    target.shown
                ))
            })?;
        let adopted = found.settle(&format!("the state database {}", target.shown), account)?;
        Ok(Postgres {
            adopted: adopted.map(Arc::from),
            ..db
        })
    }

    /// The database, as shown in messages (no password).
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// What to tell the operator when this process adopted an earlier version's database.
    pub(super) fn adopted(&self) -> Option<&str> {
        self.adopted.as_deref()
    }

    /// Runs `op` with the pool, for at most [`OP_TIMEOUT`]; errors name the database.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StateError>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        tokio::time::timeout(OP_TIMEOUT, op(self.pool.clone()))
            .await
            .unwrap_or_else(|_| Err("the database did not answer in time".to_owned()))
            .map_err(|e| StateError::Database(format!("the state database {}: {e}", self.shown)))
    }

    /// One statement with `params`; the rows changed.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StateError> {
        self.run(|pool| async move {
            let client = connection(&pool).await?;
            client.execute(sql, params).await.map_err(|e| describe(&e))
        })
        .await
    }

    /// One query with `params`; its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StateError> {
        self.run(|pool| async move {
            let client = connection(&pool).await?;
            client.query(sql, params).await.map_err(|e| describe(&e))
        })
        .await
    }

    /// One round trip, for `1nce-mcp check`: the server version.
    pub(super) async fn version(&self) -> Result<String, StateError> {
        let rows = self.query("SHOW server_version", &[]).await?;
        rows.first()
            .map(|row| row.get::<_, String>(0))
            .ok_or_else(|| StateError::Database("the database did not say its version".into()))
    }

    /// The signing key for confirmation tokens: created once by whichever replica comes first,
    /// read by all the others. The key never leaves this function but as the return value.
    pub(super) async fn signing_key(&self) -> Result<[u8; 32], StateError> {
        use rand::Rng;
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let fail = |e: String| {
            StateError::Database(format!(
                "could not read or create the signing key in the state database {}: {e}",
                self.shown
            ))
        };
        // Insert-if-absent then read: of replicas starting at once, one key wins, all read it.
        self.execute(
            "INSERT INTO signing_keys (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&fresh.to_vec()],
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        let rows = self
            .query("SELECT key FROM signing_keys WHERE id = 1", &[])
            .await
            .map_err(|e| fail(e.to_string()))?;
        let key: Vec<u8> = rows
            .first()
            .map(|row| row.get(0))
            .ok_or_else(|| fail("the signing key vanished as it was written".into()))?;
        <[u8; 32]>::try_from(key.as_slice())
            .map_err(|_| fail("the signing key in the database is not 32 bytes".into()))
    }

    // --- used_tokens ---

    pub(super) async fn token(&self, id: &str) -> Result<Option<Recorded>, StateError> {
        let rows = self
            .query(
                "SELECT record, at_ms FROM used_tokens WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(rows.first().map(row_recorded))
    }

    pub(super) async fn claim(&self, id: &str, first: &Use) -> Result<Claim, StateError> {
        let json = record_json(first)?;
        let inserted = self
            .execute(
                concat!(
                    "INSERT INTO used_tokens (id, state, record, content, expires_ms, at_ms) VALUES ($1, $2, $3, $4, $5, ",
                    db_now_ms!(),
                    ") ON CONFLICT (id) DO NOTHING"
                ),
                &[&id, &state_name(&first.state), &json, &first.content, &first.expires],
            )
            .await?;
        if inserted == 1 {
            return Ok(Claim::Won);
        }
        Ok(Claim::Taken(match self.token(id).await? {
            Some(recorded) => recorded,
            // Released between the insert and the read: still not ours, and busy.
            None => Recorded {
                record: Use {
                    state: UseState::Posting,
                    ..first.clone()
                },
                at: Utc::now(),
            },
        }))
    }

    pub(super) async fn settle(&self, id: &str, record: &Use) -> Result<(), StateError> {
        let json = record_json(record)?;
        // An upsert: should the row be gone (a clock that was far wrong let a sweep take it),
        // the outcome is written all the same, as a marker file renamed over is.
        self.execute(
            concat!(
                "INSERT INTO used_tokens (id, state, record, content, expires_ms, at_ms) VALUES ($1, $2, $3, $4, $5, ",
                db_now_ms!(),
                ") ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record, content = excluded.content, expires_ms = excluded.expires_ms, at_ms = excluded.at_ms, updated_at = now()"
            ),
            &[&id, &state_name(&record.state), &json, &record.content, &record.expires],
        )
        .await
        .map(drop)
    }

    pub(super) async fn release(&self, id: &str) -> Result<(), StateError> {
        self.execute("DELETE FROM used_tokens WHERE id = $1", &[&id])
            .await
            .map(drop)
    }

    pub(super) async fn recent(
        &self,
        content: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StateError> {
        let rows = self
            .query(
                "SELECT record, at_ms FROM used_tokens WHERE content = $1 AND at_ms >= $2 ORDER BY at_ms",
                &[&content, &since.timestamp_millis()],
            )
            .await?;
        Ok(rows.iter().map(row_recorded).collect())
    }

    pub(super) async fn time(&self) -> Result<StoreTime, StateError> {
        let rows = self
            .query(
                concat!(
                    "SELECT ",
                    db_now_ms!(),
                    ", (SELECT expires_ms FROM sweep_mark WHERE id = 1)"
                ),
                &[],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StateError::Database("the database did not say its time".into()))?;
        // A mark row made by a sweep that removed nothing holds the lowest number: no mark.
        let mark: Option<i64> = row.get(1);
        Ok(store_time(row.get(0), mark.filter(|m| *m != i64::MIN)))
    }

    pub(super) async fn sweep(&self, at_most: usize) -> Result<Swept, StateError> {
        let retain = i64::try_from(RETAIN.as_millis()).unwrap_or(i64::MAX);
        let at_most = i64::try_from(at_most).unwrap_or(i64::MAX);
        self.run(|pool| async move {
            let mut client = connection(&pool).await?;
            let tx = client.transaction().await.map_err(|e| describe(&e))?;
            // Sweeps run one at a time: the mark's row is locked until the commit (created
            // first if missing, so there is a row to lock).
            tx.execute(
                "INSERT INTO sweep_mark (id, expires_ms) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&i64::MIN],
            )
            .await
            .map_err(|e| describe(&e))?;
            let row = tx
                .query_one(
                    concat!(
                        "SELECT expires_ms, ",
                        db_now_ms!(),
                        " FROM sweep_mark WHERE id = 1 FOR UPDATE"
                    ),
                    &[],
                )
                .await
                .map_err(|e| describe(&e))?;
            let (mark, now): (i64, i64) = (row.get(0), row.get(1));
            let doomed = tx
                .query(
                    "SELECT id, expires_ms FROM used_tokens WHERE expires_ms < $1 ORDER BY expires_ms LIMIT $2",
                    &[&now.saturating_sub(retain), &at_most],
                )
                .await
                .map_err(|e| describe(&e))?;
            let ids: Vec<String> = doomed.iter().map(|r| r.get(0)).collect();
            let highest: Option<i64> = doomed.iter().map(|r| r.get(1)).max();
            // The mark covers every record before it is removed; both commit together.
            let mark = match highest {
                Some(highest) if highest > mark => {
                    tx.execute(
                        "UPDATE sweep_mark SET expires_ms = $1 WHERE id = 1",
                        &[&highest],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                    highest
                }
                _ => mark,
            };
            let removed = tx
                .execute("DELETE FROM used_tokens WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(|e| describe(&e))?;
            tx.commit().await.map_err(|e| describe(&e))?;
            Ok(Swept {
                time: store_time(now, (mark != i64::MIN).then_some(mark)),
                removed: usize::try_from(removed).unwrap_or(usize::MAX),
            })
        })
        .await
    }

    // --- audit_trail ---

    /// One row per record, in `seq` order, the record itself as `jsonb` (the same object as a
    /// line of `audit.jsonl`).
    pub(super) async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO audit_trail (replica, event, token_id, record) VALUES ($1, $2, $3, $4)",
            &[&&*self.replica, &entry.event, &entry.token_id, &entry.body],
        )
        .await
        .map(drop)
        .map_err(|e| {
            tracing::error!(error = %e, "could not write the audit trail to the state database");
            StateError::Database(format!(
                "the audit trail in the state database could not be written ({e}), and this server places no order it cannot audit. The operator must check the database ({})",
                self.shown
            ))
        })
    }

    // --- the spend ledger ---

    /// Budgets, the claim and the reservation in one transaction, under an advisory lock that
    /// every replica's confirmations with spend limits take, with the database's time.
    pub(super) async fn claim_within(
        &self,
        id: &str,
        first: &Use,
        reservation: &Reservation,
        budgets: &[Budget],
    ) -> Result<Reserved, StateError> {
        let json = record_json(first)?;
        let taken = self
            .run(|pool| async move {
                let mut client = connection(&pool).await?;
                let tx = client.transaction().await.map_err(|e| describe(&e))?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SPEND_LOCK])
                    .await
                    .map_err(|e| describe(&e))?;
                let mut spent_cents = Vec::with_capacity(budgets.len());
                for (i, budget) in budgets.iter().enumerate() {
                    let spent: i64 = tx
                        .query_one(SPENT, &[&budget.currency, &budget.from_ms, &budget.until_ms, &budget.person])
                        .await
                        .map_err(|e| describe(&e))?
                        .get(0);
                    let this = reservation.cents.get(&budget.currency).copied().unwrap_or(0);
                    if spent.saturating_add(this) > budget.limit_cents {
                        return Ok(Some(Reserved::Over { budget: i, spent_cents: spent }));
                    }
                    spent_cents.push(spent);
                }
                let inserted = tx
                    .execute(
                        concat!(
                            "INSERT INTO used_tokens (id, state, record, content, expires_ms, at_ms) VALUES ($1, $2, $3, $4, $5, ",
                            db_now_ms!(),
                            ") ON CONFLICT (id) DO NOTHING"
                        ),
                        &[&id, &state_name(&first.state), &json, &first.content, &first.expires],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                if inserted != 1 {
                    return Ok(None);
                }
                let (lo, hi) = super::spend::admitted(budgets);
                for (currency, cents) in &reservation.cents {
                    tx.execute(
                        concat!(
                            "INSERT INTO spend_ledger (token_id, currency, cents, person, at_ms, state) VALUES ($1, $2, $3, $4, GREATEST($5::bigint, LEAST($6::bigint, ",
                            db_now_ms!(),
                            ")), 'reserved') ON CONFLICT (token_id, currency) DO UPDATE SET cents = excluded.cents, person = excluded.person, at_ms = excluded.at_ms, state = 'reserved'"
                        ),
                        &[&id, currency, cents, &reservation.person, &lo, &hi],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                }
                tx.commit().await.map_err(|e| describe(&e))?;
                Ok(Some(Reserved::Won { spent_cents }))
            })
            .await?;
        match taken {
            Some(outcome) => Ok(outcome),
            // The token has a record already: what it is, read after the transaction.
            None => Ok(match self.token(id).await? {
                Some(existing) => Reserved::Taken(existing),
                None => Reserved::Taken(Recorded {
                    record: Use {
                        state: UseState::Posting,
                        ..first.clone()
                    },
                    at: Utc::now(),
                }),
            }),
        }
    }

    pub(super) async fn settle_spend(&self, id: &str, state: SpendState) -> Result<(), StateError> {
        self.execute(
            "UPDATE spend_ledger SET state = $2 WHERE token_id = $1",
            &[&id, &state.as_str()],
        )
        .await
        .map(drop)
    }

    pub(super) async fn release_unknown(
        &self,
        id: &str,
        before_ms: i64,
    ) -> Result<bool, StateError> {
        self.execute(
            "UPDATE spend_ledger SET state = 'released' WHERE token_id = $1 AND state = 'unknown' AND at_ms <= $2",
            &[&id, &before_ms],
        )
        .await
        .map(|n| n > 0)
    }

    pub(super) async fn spent(&self, budget: &Budget) -> Result<i64, StateError> {
        let rows = self
            .query(
                SPENT,
                &[
                    &budget.currency,
                    &budget.from_ms,
                    &budget.until_ms,
                    &budget.person,
                ],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or(0))
    }

    // --- the order mirror ---

    pub(super) async fn mirror_put(
        &self,
        orders: &[MirroredOrder],
        read_at: i64,
    ) -> Result<(), StateError> {
        let orders = orders.to_vec();
        self.run(|pool| async move {
            let mut client = connection(&pool).await?;
            let tx = client.transaction().await.map_err(|e| describe(&e))?;
            // A copy of what 1NCE says, re-read when missing: its commits need not wait for the
            // write-ahead log to reach the disk (the ledgers of the promise do).
            tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
                .await
                .map_err(|e| describe(&e))?;
            for o in &orders {
                tx.execute(
                    "INSERT INTO order_mirror (order_number, status, order_type, placed_at_ms, reference, product_ids, final, body, read_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (order_number) DO UPDATE SET status = excluded.status,
                        order_type = excluded.order_type, placed_at_ms = excluded.placed_at_ms,
                        reference = excluded.reference, product_ids = excluded.product_ids,
                        final = excluded.final, body = excluded.body, read_at_ms = excluded.read_at_ms",
                    &[&o.number, &o.status, &o.order_type, &o.placed_at, &o.reference, &o.product_ids, &o.final_state, &o.body, &read_at],
                )
                .await
                .map_err(|e| describe(&e))?;
                tx.execute("DELETE FROM order_mirror_sims WHERE order_number = $1", &[&o.number])
                    .await
                    .map_err(|e| describe(&e))?;
                if !o.iccids.is_empty() {
                    tx.execute(
                        "INSERT INTO order_mirror_sims (iccid, order_number) SELECT DISTINCT unnest($1::text[]), $2::bigint ON CONFLICT DO NOTHING",
                        &[&o.iccids, &o.number],
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                }
            }
            tx.commit().await.map_err(|e| describe(&e))
        })
        .await
    }

    pub(super) async fn mirror_get(&self, number: i64) -> Result<Option<Kept>, StateError> {
        let rows = self
            .query(
                &format!("{MIRROR_SELECT} WHERE o.order_number = $1"),
                &[&number],
            )
            .await?;
        Ok(rows.first().map(row_kept))
    }

    pub(super) async fn mirror_find(
        &self,
        q: &MirrorQuery,
    ) -> Result<(Vec<Kept>, u64), StateError> {
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let filter = "WHERE ($1::text IS NULL OR upper(o.status) = upper($1))
            AND ($2::text IS NULL OR upper(o.order_type) = upper($2))
            AND ($3::bigint IS NULL OR $3 = ANY (o.product_ids))
            AND ($4::text IS NULL OR o.order_number IN (SELECT order_number FROM order_mirror_sims WHERE iccid = $4))
            AND ($5::text IS NULL OR strpos(lower(coalesce(o.reference, '')), lower($5)) > 0)
            AND ($6::bigint IS NULL OR o.placed_at_ms >= $6)
            AND ($7::bigint IS NULL OR o.placed_at_ms < $7)";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &q.status,
            &q.order_type,
            &q.product_id,
            &q.iccid,
            &q.reference,
            &q.placed_from,
            &q.placed_until,
        ];
        let matched = self
            .query(
                &format!("SELECT count(*) FROM order_mirror o {filter}"),
                &params,
            )
            .await?;
        let matched: i64 = matched.first().map(|r| r.get(0)).unwrap_or(0);
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.to_vec();
        all.push(&limit);
        let rows = self
            .query(
                &format!(
                    "{MIRROR_SELECT} {filter} ORDER BY o.placed_at_ms DESC NULLS LAST, o.order_number DESC LIMIT $8"
                ),
                &all,
            )
            .await?;
        Ok((
            rows.iter().map(row_kept).collect(),
            u64::try_from(matched).unwrap_or(0),
        ))
    }

    pub(super) async fn mirror_known(
        &self,
        numbers: &[i64],
    ) -> Result<Vec<(i64, bool)>, StateError> {
        let rows = self
            .query(
                "SELECT order_number, final FROM order_mirror WHERE order_number = ANY($1)",
                &[&numbers],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(super) async fn mirror_count(&self) -> Result<u64, StateError> {
        let rows = self.query("SELECT count(*) FROM order_mirror", &[]).await?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) async fn mirror_sync(&self) -> Result<SyncState, StateError> {
        let rows = self
            .query("SELECT state FROM order_mirror_sync WHERE id = 1", &[])
            .await?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_value(r.get(0)).ok())
            .unwrap_or_default())
    }

    pub(super) async fn mirror_set_sync(&self, state: &SyncState) -> Result<(), StateError> {
        let json = serde_json::to_value(state).unwrap_or_default();
        self.execute(
            "INSERT INTO order_mirror_sync (id, state) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            &[&json],
        )
        .await
        .map(drop)
    }

    pub(super) async fn mirror_lease(
        &self,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StateError> {
        let changed = self
            .execute(
                "INSERT INTO order_mirror_sync AS s (id, state, lease_owner, lease_until) VALUES (1, '{}', $1, $2)
                 ON CONFLICT (id) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
                 WHERE s.lease_owner IS NULL OR s.lease_owner = $1 OR s.lease_until < $3",
                &[&owner, &until, &now],
            )
            .await?;
        Ok(changed == 1)
    }

    pub(super) async fn mirror_drop(&self) -> Result<(), StateError> {
        // DELETE, not TRUNCATE: the serving role needs no privilege beyond its grants.
        for table in ["order_mirror_sims", "order_mirror", "order_mirror_sync"] {
            self.execute(&format!("DELETE FROM {table}"), &[]).await?;
        }
        Ok(())
    }

    // --- rate_buckets ---

    /// The rate limit to 1NCE that every replica shares.
    pub(super) fn rate_buckets(&self) -> RateBuckets {
        RateBuckets { db: self.clone() }
    }
}

/// The advisory lock of confirmations with spend limits: "spnd" in ASCII.
const SPEND_LOCK: i64 = 0x7370_6e64;

/// What is reserved and not released: `$1` currency, `$2`..`$3` the window, `$4` a person or null.
const SPENT: &str = "SELECT coalesce(sum(cents), 0)::bigint FROM spend_ledger WHERE currency = $1 AND at_ms >= $2 AND at_ms < $3 AND state <> 'released' AND ($4::text IS NULL OR person = $4)";

const MIRROR_SELECT: &str = "SELECT o.order_number, o.status, o.order_type, o.placed_at_ms, o.reference, o.final, o.body, o.read_at_ms, o.product_ids,
    coalesce((SELECT array_agg(iccid ORDER BY iccid) FROM order_mirror_sims s WHERE s.order_number = o.order_number), '{}')
    FROM order_mirror o";

fn row_kept(row: &Row) -> Kept {
    Kept {
        order: MirroredOrder {
            number: row.get(0),
            status: row.get(1),
            order_type: row.get(2),
            placed_at: row.get(3),
            reference: row.get(4),
            final_state: row.get(5),
            body: row.get(6),
            product_ids: row.get(8),
            iccids: row.get(9),
        },
        read_at: millis_time(row.get(7)),
    }
}

/// The `state` column: what a person reading the table with SQL wants to see.
fn state_name(state: &UseState) -> &'static str {
    match state {
        UseState::Posting => "posting",
        UseState::Placed { .. } => "placed",
        UseState::Unknown => "unknown",
        UseState::NotApproved { answer } => match answer {
            NotApproved::Declined => "declined",
            NotApproved::Cancelled => "cancelled",
            NotApproved::NoAnswer => "no_answer",
        },
    }
}

fn record_json(record: &Use) -> Result<serde_json::Value, StateError> {
    serde_json::to_value(record)
        .map_err(|e| StateError::Database(format!("could not encode a token record: {e}")))
}

fn millis_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A row of `SELECT record, at_ms`.
fn row_recorded(row: &Row) -> Recorded {
    // A row that cannot be read counts as a POST under way that is never swept: it refuses
    // reuse, like a marker file written by hand.
    let record = serde_json::from_value(row.get(0)).unwrap_or(Use {
        state: UseState::Posting,
        content: String::new(),
        expires: never(),
    });
    Recorded {
        record,
        at: millis_time(row.get(1)),
    }
}

fn store_time(now: i64, swept_through: Option<i64>) -> StoreTime {
    StoreTime {
        now: millis_time(now),
        swept_through,
    }
}

/// How this process signs its rows in the shared audit trail: host and process id.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}:{}", std::process::id())
}

/// rustls with ring (as for 1NCE) and the platform's certificate verifier.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StateError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| StateError::Database(format!("could not set up TLS to the database: {e}")))?
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The rate limit to 1NCE shared by every replica: one GCRA row per bucket (1NCE client id),
/// its theoretical arrival time advanced by one statement (an upsert whose condition is the
/// limit), so the row is locked for that statement only, on the database's clock, so replicas
/// with skewed clocks still share one schedule.
#[derive(Debug, Clone)]
pub(super) struct RateBuckets {
    db: Postgres,
}

/// Takes a slot if one frees within `$4` ms: `$2` is the interval between requests, `$3` the
/// burst's tolerance, both in ms. Returns the new arrival time and the time; nothing when the
/// slot is too far away.
const TAKE_SLOT: &str = concat!(
    "INSERT INTO rate_buckets AS b (bucket, tat_ms) VALUES ($1, ",
    db_now!(),
    " + $2) ON CONFLICT (bucket) DO UPDATE SET tat_ms = greatest(b.tat_ms, ",
    db_now!(),
    ") + $2 WHERE greatest(b.tat_ms, ",
    db_now!(),
    ") - $3 - ",
    db_now!(),
    " <= $4 RETURNING tat_ms, ",
    db_now!()
);

/// How far away the next slot is (`$2`: the tolerance), when [`TAKE_SLOT`] took none.
const NEXT_SLOT: &str = concat!(
    "SELECT greatest(tat_ms, ",
    db_now!(),
    ") - $2 - ",
    db_now!(),
    " FROM rate_buckets WHERE bucket = $1"
);

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(1e9))
}

impl SharedBucket for RateBuckets {
    fn reserve<'a>(
        &'a self,
        bucket: &'a str,
        limit: RateLimit,
        max_wait: Duration,
    ) -> BoxFuture<'a, Result<Result<Duration, Duration>, String>> {
        Box::pin(async move {
            self.db
                .run(|pool| async move {
                    let client = connection(&pool).await?;
                    let interval = limit.per.as_secs_f64() * 1000.0 / f64::from(limit.requests);
                    let tolerance = interval * f64::from(limit.burst.max(1) - 1);
                    let max_wait = max_wait.as_secs_f64() * 1000.0;
                    let taken = client
                        .query_opt(TAKE_SLOT, &[&bucket, &interval, &tolerance, &max_wait])
                        .await
                        .map_err(|e| describe(&e))?;
                    if let Some(row) = taken {
                        let (tat, now): (f64, f64) = (row.get(0), row.get(1));
                        return Ok(Ok(millis(tat - interval - tolerance - now)));
                    }
                    let row = client
                        .query_one(NEXT_SLOT, &[&bucket, &tolerance])
                        .await
                        .map_err(|e| describe(&e))?;
                    Ok(Err(millis(row.get(0))))
                })
                .await
                .map_err(|e| e.to_string())
        })
    }
}
