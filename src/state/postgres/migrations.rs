//! The schema, embedded: numbered steps applied in order at start-up, each once.
//!
//! Replicas starting together serialise on a transaction-scoped advisory lock, so exactly one
//! applies a step and the others find it applied; `CREATE TABLE IF NOT EXISTS` alone is not
//! safe under concurrency (two creators collide in the catalogue).

use deadpool_postgres::Pool;

use super::{connection, describe};

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
];

/// Applies the steps not applied yet, under the lock.
pub async fn apply(pool: &Pool) -> Result<(), String> {
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
    tx.commit().await.map_err(|e| describe(&e))
}
