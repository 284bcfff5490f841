//! Order state shared by replicas, in PostgreSQL (`--state-url`): the single use of
//! confirmation tokens, the audit trail, the token signing key and the rate limit to 1NCE.
//!
//! It implements the contracts of the layers it serves and adds no rule of its own:
//! [`crate::orders::single_use::SingleUse`] ([`tables::UsedTokens`]),
//! [`crate::orders::AuditTrail`] ([`tables::AuditTable`]) and
//! [`crate::api::rate_limit::SharedBucket`] ([`tables::RateBuckets`]). Neither `orders` nor
//! `api` knows it exists; the binary wires it in. Without `--state-url` nothing here runs.
//!
//! The order path's contracts are synchronous (a marker file is a system call), while the
//! database client is asynchronous. [`StateDb`] therefore owns a small runtime of its own on
//! one thread: a synchronous caller hands it a query and waits for the answer, bounded by
//! [`OP_TIMEOUT`], whatever runtime (or none) the caller runs on. A database that does not
//! answer is an error within that bound, never a hang; the pool makes fresh connections when
//! it comes back, so the server recovers by itself.

use std::fmt;
use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub mod migrations;
pub mod tables;

/// Longest wait for one database operation, including getting a connection.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per replica: a confirmation needs one at a time, briefly.
const POOL_SIZE: usize = 8;

/// Where the database is, validated (see [`crate::config`]); its password never appears in
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

/// A pool of connections to the state database, with the runtime that drives them.
pub struct StateDb {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    shown: String,
}

impl fmt::Debug for StateDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StateDb").field(&self.shown).finish()
    }
}

impl Drop for StateDb {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is refused inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
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

impl StateDb {
    /// Connects to `target`, checks that the database answers and applies the migrations.
    /// Errors say what to check, and name the database without its password.
    pub fn open(target: &DbTarget) -> Result<StateDb, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("1nce-state-db")
            .enable_all()
            .build()
            .map_err(|e| format!("could not start the database runtime: {e}"))?;
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
            .map_err(|e| format!("could not set up the database pool: {e}"))?;
        let db = StateDb {
            pool,
            runtime: Some(runtime),
            shown: target.shown.clone(),
        };
        db.run(|pool| async move { migrations::apply(&pool).await })
            .map_err(|e| {
                format!(
                    "the state database {} is not usable: {e}. Check that PostgreSQL runs there, that the user may connect and create tables (see README, \"Several replicas\"), and the password (PGPASSWORD or ONCE_STATE_PASSWORD_FILE)",
                    target.shown
                )
            })?;
        Ok(db)
    }

    /// The database, as shown in messages (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the StateDb")
            .handle()
    }

    /// Runs `op` with a pooled connection on the database runtime and waits for it, from
    /// synchronous code anywhere, for at most [`OP_TIMEOUT`] (plus the pool's own wait).
    pub fn run<T, F, Fut>(&self, op: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let pool = self.pool.clone();
        self.handle().spawn(async move {
            let result = tokio::time::timeout(OP_TIMEOUT, op(pool))
                .await
                .unwrap_or_else(|_| Err("the database did not answer in time".to_owned()));
            let _ = tx.send(result);
        });
        let wait = || {
            rx.recv_timeout(OP_TIMEOUT * 2)
                .unwrap_or_else(|_| Err("the database did not answer in time".to_owned()))
        };
        // On a multi-threaded runtime, tell it this thread blocks so its other tasks move on.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }

    /// Runs `op` like [`StateDb::run`], for async callers: awaits instead of blocking.
    pub async fn run_async<T, F, Fut>(&self, op: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let task = self.handle().spawn(async move {
            tokio::time::timeout(OP_TIMEOUT, op(pool))
                .await
                .unwrap_or_else(|_| Err("the database did not answer in time".to_owned()))
        });
        task.await
            .unwrap_or_else(|e| Err(format!("the database task failed: {e}")))
    }

    /// Runs one statement with `params` and returns the rows changed.
    pub fn execute(&self, sql: &'static str, params: Params) -> Result<u64, String> {
        self.run(move |pool| async move {
            let client = connection(&pool).await?;
            client
                .execute(sql, &borrowed(&params))
                .await
                .map_err(|e| describe(&e))
        })
    }

    /// Runs one query with `params` and returns its rows.
    pub fn query(&self, sql: &'static str, params: Params) -> Result<Vec<Row>, String> {
        self.run(move |pool| async move {
            let client = connection(&pool).await?;
            client
                .query(sql, &borrowed(&params))
                .await
                .map_err(|e| describe(&e))
        })
    }

    /// Starts `op` on the database runtime without waiting for it (best-effort housekeeping).
    pub fn spawn<F, Fut>(&self, op: F)
    where
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.handle().spawn(async move {
            if let Ok(Err(e)) = tokio::time::timeout(OP_TIMEOUT, op(pool)).await {
                tracing::debug!(error = %e, "state database housekeeping failed");
            }
        });
    }

    /// One round trip, for `1nce-mcp check`: the server version.
    pub fn version(&self) -> Result<String, String> {
        let rows = self.query("SHOW server_version", Vec::new())?;
        rows.first()
            .map(|row| row.get::<_, String>(0))
            .ok_or_else(|| "the database did not say its version".to_owned())
    }
}

/// Statement parameters that can travel to the database runtime.
pub type Params = Vec<Box<dyn ToSql + Send + Sync>>;

fn borrowed(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// rustls with ring (as for 1NCE) and the platform's certificate verifier.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("could not set up TLS to the database: {e}"))?
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A pooled connection, or a message that says why there is none.
pub(crate) async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object, String> {
    pool.get().await.map_err(pool_error)
}

/// The signing key for confirmation tokens: created once by whichever replica comes first,
/// read by all the others. The key never leaves this function but as the return value.
pub fn signing_key(db: &StateDb) -> Result<[u8; 32], String> {
    use rand::RngCore;
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    // Insert-if-absent then read: of replicas starting at once, one key wins, all read it.
    db.execute(
        "INSERT INTO signing_keys (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        vec![Box::new(fresh.to_vec())],
    )?;
    let rows = db.query("SELECT key FROM signing_keys WHERE id = 1", Vec::new())?;
    let key: Vec<u8> = rows
        .first()
        .map(|row| row.get(0))
        .ok_or_else(|| "the signing key vanished as it was written".to_owned())?;
    <[u8; 32]>::try_from(key.as_slice())
        .map_err(|_| "the signing key in the database is not 32 bytes".to_owned())
}
