//! The order promise: nothing is ordered that a person did not approve, at the price they saw,
//! and nothing is ever ordered twice.
//!
//! This module holds every rule behind that promise and knows nothing of MCP:
//! - [`desk`]: the path from a tool's arguments to a placed order, and every way it stops;
//! - [`tokens`]: confirmation tokens bound to the order, its price, the account, the session
//!   and the approval the preview promised;
//! - the token ledger (`crate::state`) lets each token drive at most one POST, across
//!   processes: this module decides what is recorded and what a record means;
//! - [`post_answer`]: what an answer to the order POST proves, the one rule that may reopen a
//!   token;
//! - [`audit`]: a record of every step, written before the step is taken;
//! - [`checks`]: the 1NCE catalogue and the operator's limits, prices in cents;
//! - [`lost_answer`]: the search for an order whose answer was lost;
//! - [`consent`]: how a person approves, and what they answered;
//! - [`spend`]: the operator's spend limits over days, weeks and months;
//! - [`person`]: who acts, when the transport knows (OAuth): in every record, bound to tokens;
//!
//! The `create_order` tool (`crate::mcp`) is a thin face over [`desk::Desk`].

pub mod audit;
pub mod checks;
pub mod consent;
pub mod desk;
#[cfg(test)]
mod lifecycle_model;
pub mod lost_answer;
pub mod person;
pub mod post_answer;
pub mod spend;
pub mod tokens;

pub use audit::Environment;
pub use checks::{Money, OrderLimits, PricedLine, PricedOrder};
pub use consent::{Approval, CanShow, PersonAnswer};
pub use desk::{Desk, OrderError, Stop};
pub use person::Person;
pub use tokens::{Account, Confirmations, Refusal};
