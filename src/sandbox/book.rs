//! The orders placed in a sandbox kept in a SQLite file, so that every process using the same
//! file sees them: one `1nce-mcp --sandbox call` finds the order the one before it placed, and
//! new orders are numbered one after another across processes. (A sandbox without a file keeps
//! them in memory, in [`super::state::State`].)
//!
//! A number is taken and its order written in one immediate transaction (SQLite's write lock,
//! which every process sharing the file takes in turn), so no two processes ever number two
//! orders alike. Rows belong to an account: the seeded one, or a generated one of N orders
//! (`--sandbox-orders`), whose numbering starts after its own seeded orders.
//!
//! The file is opened where it is named; the caller makes it private first (`--sandbox` puts it
//! in the sandbox's state directory, created owner-only).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::model::{DeliveryAddress, Order, OrderStatus, OrderType, OrderedProduct};

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS placed_orders (
        account         TEXT NOT NULL,
        number          INTEGER NOT NULL,
        invoice_number  INTEGER NOT NULL,
        placed_at       INTEGER NOT NULL,
        status          TEXT NOT NULL,
        invoice_amount  TEXT NOT NULL,
        products        TEXT NOT NULL,
        address         TEXT NOT NULL,
        reference       TEXT,
        PRIMARY KEY (account, number)
    );
";

/// What a new order is, before it has a number.
pub(crate) struct Unnumbered {
    pub placed_at: DateTime<Utc>,
    pub invoice_amount: String,
    pub products: Vec<OrderedProduct>,
    pub address: DeliveryAddress,
    pub reference: Option<String>,
}

/// The placed orders of one account in one file.
pub(crate) struct OrderFile {
    path: PathBuf,
    account: String,
    db: Connection,
}

impl std::fmt::Debug for OrderFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderFile")
            .field("path", &self.path)
            .field("account", &self.account)
            .finish()
    }
}

impl OrderFile {
    /// Opens (creating if need be) the file at `path` for `account`'s orders.
    pub(crate) fn open(path: &Path, account: &str) -> Result<OrderFile, String> {
        let failed = |e: rusqlite::Error| format!("the sandbox's orders {}: {e}", path.display());
        let db = Connection::open(path).map_err(failed)?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(failed)?;
        db.execute_batch(SCHEMA).map_err(failed)?;
        Ok(OrderFile {
            path: path.to_owned(),
            account: account.to_owned(),
            db,
        })
    }

    fn failed(&self) -> impl Fn(rusqlite::Error) -> String + '_ {
        move |e| format!("the sandbox's orders {}: {e}", self.path.display())
    }

    /// Every placed order of the account, by number.
    pub(crate) fn all(&self) -> Result<Vec<Order>, String> {
        let mut query = self
            .db
            .prepare_cached(
                "SELECT number, invoice_number, placed_at, status, invoice_amount, products, address, reference
                 FROM placed_orders WHERE account = ?1 ORDER BY number",
            )
            .map_err(self.failed())?;
        let rows = query
            .query_map(params![self.account], row)
            .map_err(self.failed())?;
        rows.map(|r| r.map_err(self.failed()).and_then(|r| r))
            .collect()
    }

    /// Placed order `number`, if the account has it.
    pub(crate) fn get(&self, number: u64) -> Result<Option<Order>, String> {
        let Ok(number) = i64::try_from(number) else {
            return Ok(None);
        };
        self.db
            .query_row(
                "SELECT number, invoice_number, placed_at, status, invoice_amount, products, address, reference
                 FROM placed_orders WHERE account = ?1 AND number = ?2",
                params![self.account, number],
                row,
            )
            .optional()
            .map_err(self.failed())?
            .transpose()
    }

    /// Numbers `new` (the next order and invoice number of the account, at least `first_number`
    /// and `first_invoice`) and keeps it, in one transaction no other process can interleave.
    pub(crate) fn place(
        &mut self,
        new: Unnumbered,
        first_number: u64,
        first_invoice: u64,
    ) -> Result<Order, String> {
        let path = self.path.clone();
        let failed = |e: rusqlite::Error| format!("the sandbox's orders {}: {e}", path.display());
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let (top_number, top_invoice): (Option<i64>, Option<i64>) = tx
            .query_row(
                "SELECT max(number), max(invoice_number) FROM placed_orders WHERE account = ?1",
                params![self.account],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(failed)?;
        let next = |top: Option<i64>, first: u64| {
            top.and_then(|n| u64::try_from(n).ok())
                .map_or(first, |n| (n + 1).max(first))
        };
        let order = Order {
            order_number: next(top_number, first_number),
            order_type: OrderType::AdditionalOrder,
            order_date: new.placed_at,
            order_status: OrderStatus::InProgress,
            invoice_number: next(top_invoice, first_invoice).to_string(),
            invoice_amount: new.invoice_amount,
            currency: "EUR",
            shipping_address: new.address,
            sims: Vec::new(),
            products: new.products,
            customer_reference: new.reference,
        };
        tx.execute(
            "INSERT INTO placed_orders
                 (account, number, invoice_number, placed_at, status, invoice_amount, products, address, reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                self.account,
                order.order_number as i64,
                next(top_invoice, first_invoice) as i64,
                order.order_date.timestamp(),
                order.order_status.as_str(),
                order.invoice_amount,
                json(&order.products),
                json(&order.shipping_address),
                order.customer_reference,
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(order)
    }

    /// Moves placed order `number` to `status`; `false` when the account has no such order.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn set_status(&self, number: u64, status: OrderStatus) -> Result<bool, String> {
        let Ok(number) = i64::try_from(number) else {
            return Ok(false);
        };
        let changed = self
            .db
            .execute(
                "UPDATE placed_orders SET status = ?3 WHERE account = ?1 AND number = ?2",
                params![self.account, number, status.as_str()],
            )
            .map_err(self.failed())?;
        Ok(changed > 0)
    }
}

/// A JSON column's text (plain data, which always serialises).
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// One row as an order; a row this code did not write is an error, not a guess.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Order, String>> {
    let number: i64 = r.get(0)?;
    let invoice: i64 = r.get(1)?;
    let placed_at: i64 = r.get(2)?;
    let status: String = r.get(3)?;
    let invoice_amount: String = r.get(4)?;
    let products: String = r.get(5)?;
    let address: String = r.get(6)?;
    let reference: Option<String> = r.get(7)?;
    let broken = |what: &str| Err(format!("placed order {number} has a broken {what}"));
    let Some(order_status) = OrderStatus::parse(&status) else {
        return Ok(broken("status"));
    };
    let Some(order_date) = DateTime::from_timestamp(placed_at, 0) else {
        return Ok(broken("date"));
    };
    let Ok(products) = serde_json::from_str(&products) else {
        return Ok(broken("product list"));
    };
    let Ok(shipping_address) = serde_json::from_str(&address) else {
        return Ok(broken("address"));
    };
    let (Ok(order_number), Ok(invoice)) = (u64::try_from(number), u64::try_from(invoice)) else {
        return Ok(broken("number"));
    };
    Ok(Ok(Order {
        order_number,
        order_type: OrderType::AdditionalOrder,
        order_date,
        order_status,
        invoice_number: invoice.to_string(),
        invoice_amount,
        currency: "EUR",
        shipping_address,
        sims: Vec::new(),
        products,
        customer_reference: reference,
    }))
}
