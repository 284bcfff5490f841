//! The order promise: nothing is ordered that a person did not approve, at the price they saw,
//! and nothing is ever ordered twice.
//!
//! This module holds every rule behind that promise and knows nothing of MCP: the confirmation
//! tokens ([`tokens`]), the audit trail ([`audit`]), the catalogue and limit checks ([`checks`]),
//! the search for an order whose answer was lost ([`lost_answer`]) and the file-system rules that
//! keep the state directory and the audit log private ([`private_fs`]). The `create_order` tool
//! is a thin face over it.

pub mod audit;
pub mod checks;
pub mod lost_answer;
pub mod private_fs;
pub mod tokens;

pub use audit::AuditLog;
pub use checks::{Money, OrderLimits, PricedLine, PricedOrder};
pub use tokens::{Confirmations, Refusal};
