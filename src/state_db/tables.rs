//! The tables behind the shared contracts: `used_tokens` ([`UsedTokens`]), `audit_trail`
//! ([`AuditTable`]) and `rate_buckets` ([`RateBuckets`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use tokio_postgres::Row;

use super::{Params, StateDb, connection, describe};
use crate::api::RateLimit;
use crate::api::rate_limit::SharedBucket;
use crate::orders::AuditTrail;
use crate::orders::audit::Record;
use crate::orders::single_use::{
    Claim, RETAIN, Recorded, SingleUse, StoreTime, Swept, Use, UseState,
};

/// Single use of confirmation tokens: one row per token id. A claim is an insert that can
/// succeed once (`ON CONFLICT DO NOTHING`), so of any number of replicas exactly one gets it.
/// Every time in the table is the database's (`at_ms`), never a replica's; `expires_ms` is the
/// token's own signed expiry, which a sweep judges by the database's clock, and the highest it
/// removed is kept in `sweep_mark`.
#[derive(Debug, Clone)]
pub struct UsedTokens {
    db: Arc<StateDb>,
}

impl UsedTokens {
    pub fn new(db: Arc<StateDb>) -> UsedTokens {
        UsedTokens { db }
    }
}

/// The `state` column: what a person reading the table with SQL wants to see.
fn state_name(state: &UseState) -> &'static str {
    match state {
        UseState::Posting => "posting",
        UseState::Placed { .. } => "placed",
        UseState::Unknown => "unknown",
        UseState::NotApproved { answer } => match answer {
            crate::orders::consent::NotApproved::Declined => "declined",
            crate::orders::consent::NotApproved::Cancelled => "cancelled",
            crate::orders::consent::NotApproved::NoAnswer => "no_answer",
        },
    }
}

/// The database's time in Unix milliseconds.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

/// The parameters `$1`…`$5` of a row: id, state, record, content, expires_ms.
fn row_params(id: &str, record: &Use) -> io::Result<Params> {
    let json = serde_json::to_value(record).map_err(io::Error::other)?;
    Ok(vec![
        Box::new(id.to_owned()),
        Box::new(state_name(&record.state).to_owned()),
        Box::new(json),
        Box::new(record.content.clone()),
        Box::new(record.expires),
    ])
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
        expires: i64::MAX,
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

impl SingleUse for UsedTokens {
    fn get(&self, id: &str) -> io::Result<Option<Recorded>> {
        let rows = self
            .db
            .query(
                "SELECT record, at_ms FROM used_tokens WHERE id = $1",
                vec![Box::new(id.to_owned())],
            )
            .map_err(io::Error::other)?;
        Ok(rows.first().map(row_recorded))
    }

    fn claim(&self, id: &str, first: &Use) -> io::Result<Claim> {
        let inserted = self
            .db
            .execute(
                concat!(
                    "INSERT INTO used_tokens (id, state, record, content, expires_ms, at_ms) VALUES ($1, $2, $3, $4, $5, ",
                    db_now_ms!(),
                    ") ON CONFLICT (id) DO NOTHING"
                ),
                row_params(id, first)?,
            )
            .map_err(io::Error::other)?;
        if inserted == 1 {
            return Ok(Claim::Won);
        }
        Ok(Claim::Taken(match self.get(id)? {
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

    fn settle(&self, id: &str, record: &Use) -> io::Result<()> {
        // An upsert: should the row be gone (a clock that was far wrong let a sweep take it),
        // the outcome is written all the same, as a marker file renamed over is.
        self.db
            .execute(
                concat!(
                    "INSERT INTO used_tokens (id, state, record, content, expires_ms, at_ms) VALUES ($1, $2, $3, $4, $5, ",
                    db_now_ms!(),
                    ") ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record, content = excluded.content, expires_ms = excluded.expires_ms, at_ms = excluded.at_ms, updated_at = now()"
                ),
                row_params(id, record)?,
            )
            .map(drop)
            .map_err(io::Error::other)
    }

    fn release(&self, id: &str) -> io::Result<()> {
        self.db
            .execute(
                "DELETE FROM used_tokens WHERE id = $1",
                vec![Box::new(id.to_owned())],
            )
            .map(drop)
            .map_err(io::Error::other)
    }

    fn recent(&self, content: &str, since: DateTime<Utc>) -> io::Result<Vec<Recorded>> {
        let rows = self
            .db
            .query(
                "SELECT record, at_ms FROM used_tokens WHERE content = $1 AND at_ms >= $2 ORDER BY at_ms",
                vec![Box::new(content.to_owned()), Box::new(since.timestamp_millis())],
            )
            .map_err(io::Error::other)?;
        Ok(rows.iter().map(row_recorded).collect())
    }

    fn time(&self) -> io::Result<StoreTime> {
        let rows = self
            .db
            .query(
                concat!(
                    "SELECT ",
                    db_now_ms!(),
                    ", (SELECT expires_ms FROM sweep_mark WHERE id = 1)"
                ),
                Vec::new(),
            )
            .map_err(io::Error::other)?;
        let row = rows
            .first()
            .ok_or_else(|| io::Error::other("the database did not say its time"))?;
        // A mark row made by a sweep that removed nothing holds the lowest number: no mark.
        let mark: Option<i64> = row.get(1);
        Ok(store_time(row.get(0), mark.filter(|m| *m != i64::MIN)))
    }

    fn sweep(&self, at_most: usize) -> io::Result<Swept> {
        let retain = i64::try_from(RETAIN.as_millis()).unwrap_or(i64::MAX);
        let at_most = i64::try_from(at_most).unwrap_or(i64::MAX);
        self.db
            .run(move |pool| async move {
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
            .map_err(io::Error::other)
    }
}

/// The audit trail as an append-only table: one row per record, in `seq` order, the record
/// itself as `jsonb` (the same object as a line of `audit.jsonl`).
#[derive(Debug, Clone)]
pub struct AuditTable {
    db: Arc<StateDb>,
    /// Which replica wrote the row (host and process id).
    replica: String,
}

impl AuditTable {
    pub fn new(db: Arc<StateDb>, replica: impl Into<String>) -> AuditTable {
        AuditTable {
            db,
            replica: replica.into(),
        }
    }
}

impl AuditTrail for AuditTable {
    fn append(&self, record: &Record) -> Result<(), String> {
        let json = serde_json::to_value(record)
            .map_err(|e| format!("could not encode the audit record: {e}"))?;
        let event = json["event"].as_str().unwrap_or_default().to_owned();
        self.db
            .execute(
                "INSERT INTO audit_trail (replica, event, token_id, record) VALUES ($1, $2, $3, $4)",
                vec![
                    Box::new(self.replica.clone()),
                    Box::new(event),
                    Box::new(record.token_id.clone()),
                    Box::new(json),
                ],
            )
            .map(drop)
            .map_err(|e| {
                tracing::error!(error = %e, "could not write the audit trail to the state database");
                format!(
                    "the audit trail in the state database could not be written ({e}), and this server places no order it cannot audit. The operator must check the database ({})",
                    self.db.shown()
                )
            })
    }
}

/// The rate limit to 1NCE shared by every replica: one GCRA row per bucket (1NCE client id),
/// its theoretical arrival time advanced by one statement (an upsert whose condition is the
/// limit), so the row is locked for that statement only, on the database's clock, so replicas
/// with skewed clocks still share one schedule.
#[derive(Debug, Clone)]
pub struct RateBuckets {
    db: Arc<StateDb>,
}

impl RateBuckets {
    pub fn new(db: Arc<StateDb>) -> RateBuckets {
        RateBuckets { db }
    }
}

/// The database's time in Unix milliseconds (as a float), read when the row is locked.
macro_rules! db_now {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::double precision"
    };
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
        let bucket = bucket.to_owned();
        Box::pin(self.db.run_async(move |pool| async move {
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
        }))
    }
}
