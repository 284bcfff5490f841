//! The schema, embedded: numbered steps applied in order at start-up, each once; then the
//! check that the database belongs to this process's 1NCE account.
//!
//! Replicas starting together serialise on a transaction-scoped advisory lock, so exactly one
//! applies a step and the others find it applied; `CREATE TABLE IF NOT EXISTS` alone is not
//! safe under concurrency (two creators collide in the catalogue). The account is recorded in
//! the same transaction as the step that creates its table, by the role that may create tables:
//! the serving role only ever reads it.

use deadpool_postgres::Pool;

use super::{connection, describe};
use crate::state::account::{Account, Found};

/// The advisory lock key: "1nce" in ASCII, so it is recognisable in `pg_locks`.
const LOCK: i64 = 0x316e_6365;

/// `(version, SQL)`, in order. Never edit a step that shipped: add one.
pub const STEPS: &[(i32, &str)] = &[
    (
        1,
        "
    CREATE TABLE used_tokens (
        id          text PRIMARY KEY,
        state       text NOT NULL,
        record      jsonb NOT NULL,
        content     text NOT NULL,
        at_ms       bigint NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX used_tokens_content ON used_tokens (content, at_ms);
    CREATE INDEX used_tokens_at ON used_tokens (at_ms);
    CREATE TABLE audit_trail (
        seq          bigserial PRIMARY KEY,
        recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        replica      text NOT NULL,
        event        text NOT NULL,
        token_id     text,
        record       jsonb NOT NULL
    );
    CREATE INDEX audit_trail_token ON audit_trail (token_id);
    CREATE TABLE signing_keys (
        id          integer PRIMARY KEY,
        key         bytea NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE rate_buckets (
        bucket  text PRIMARY KEY,
        tat_ms  double precision NOT NULL
    );
    ",
    ),
    (
        2,
        "
    ALTER TABLE used_tokens ADD COLUMN expires_ms bigint;
    CREATE INDEX used_tokens_expires ON used_tokens (expires_ms);
    DROP INDEX used_tokens_at;
    CREATE TABLE sweep_mark (
        id          integer PRIMARY KEY,
        expires_ms  bigint NOT NULL
    );
    ",
    ),
    (
        3,
        "
    CREATE TABLE order_mirror (
        order_number  bigint PRIMARY KEY,
        status        text,
        order_type    text,
        placed_at_ms  bigint,
        reference     text,
        product_ids   bigint[] NOT NULL,
        final         boolean NOT NULL,
        body          jsonb NOT NULL,
        read_at_ms    bigint NOT NULL
    );
    CREATE INDEX order_mirror_placed ON order_mirror (placed_at_ms);
    CREATE INDEX order_mirror_products ON order_mirror USING gin (product_ids);
    CREATE TABLE order_mirror_sims (
        iccid         text NOT NULL,
        order_number  bigint NOT NULL REFERENCES order_mirror ON DELETE CASCADE,
        PRIMARY KEY (iccid, order_number)
    );
    CREATE TABLE order_mirror_sync (
        id           integer PRIMARY KEY,
        state        jsonb NOT NULL,
        lease_owner  text,
        lease_until  bigint
    );
    ",
    ),
    (
        4,
        "
    CREATE TABLE spend_ledger (
        token_id  text NOT NULL,
        currency  text NOT NULL,
        cents     bigint NOT NULL,
        person    text NOT NULL,
        at_ms     bigint NOT NULL,
        state     text NOT NULL,
        PRIMARY KEY (token_id, currency)
    );
    CREATE INDEX spend_ledger_at ON spend_ledger (currency, at_ms);
    ",
    ),
    (
        5,
        "
    CREATE TABLE store_account (
        id           integer PRIMARY KEY CHECK (id = 1),
        kind         text NOT NULL,
        api_url      text,
        client_id    text,
        recorded_at  timestamptz NOT NULL DEFAULT now()
    );
    ",
    ),
];

/// Applies the steps not applied yet, under the lock, then reads the account the database
/// belongs to, recording `account` if none is (a new database, or one an earlier version made).
/// A database of another account is left exactly as found: the transaction is rolled back.
pub(in crate::state) async fn apply(pool: &Pool, account: &Account) -> Result<Found, String> {
    let mut client = connection(pool).await?;
    let tx = client.transaction().await.map_err(|e| describe(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(|e| describe(&e))?;
    // Created only when missing: a serving role without CREATE on the schema (README,
    // "Privileges") is refused even `CREATE TABLE IF NOT EXISTS` of a table that exists.
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(|e| describe(&e))?
        .get(0);
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_migrations (
                version     integer PRIMARY KEY,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|e| describe(&e))?;
    }
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(|e| describe(&e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, sql) in STEPS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| format!("migration {version}: {}", describe(&e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(|e| describe(&e))?;
        tracing::info!(version, "applied a state database migration");
    }
    if let Some(newest) = applied.iter().max()
        && STEPS.iter().all(|(v, _)| v < newest)
    {
        return Err(format!(
            "the database has schema version {newest}, newer than this binary knows; upgrade 1nce-mcp"
        ));
    }
    let row = tx
        .query_opt(
            "SELECT kind, api_url, client_id FROM store_account WHERE id = 1",
            &[],
        )
        .await
        .map_err(|e| describe(&e))?;
    let found = match row {
        Some(row) => {
            let (kind, url, id): (String, Option<String>, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            match Account::from_fields(&kind, url.as_deref(), id.as_deref()) {
                Ok(recorded) if recorded == *account => Found::Same,
                // Dropped uncommitted: rolled back, whatever this transaction applied.
                Ok(recorded) => return Ok(Found::Other(recorded)),
                Err(why) => {
                    return Ok(Found::Unreadable(format!(
                        "the row of the table store_account: {why}"
                    )));
                }
            }
        }
        None => {
            let (kind, url, id) = account.fields();
            tx.execute(
                "INSERT INTO store_account (id, kind, api_url, client_id) VALUES (1, $1, $2, $3)",
                &[&kind, &url, &id],
            )
            .await
            .map_err(|e| {
                format!(
                    "could not record the 1NCE account it belongs to in the table store_account ({}); start once as the role that owns the tables (README, \"Privileges\")",
                    describe(&e)
                )
            })?;
            if applied.is_empty() {
                Found::New
            } else {
                Found::Adopted
            }
        }
    };
    tx.commit().await.map_err(|e| describe(&e))?;
    Ok(found)
}
