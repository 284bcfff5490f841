//! The integration tests: one test binary, one module per area (the layout ripgrep uses).
//!
//! Every file here used to link a binary of its own; each was a full debug link of the crate
//! and its dependencies. As modules of one binary they share one link and one process, so a test
//! that changes process-wide state must leave it as every other test expects (the only such state
//! is rustls's crypto provider, installed once and identically by whichever test comes first).
//! `Cargo.toml` sets `autotests = false` and names this file as the only integration test, so a
//! new file in `tests/` does nothing until it is declared here.
//!
//! The areas of a part a build may leave out (cargo features `oauth`, `postgres`,
//! `legacy-sse`) are compiled only with it; the README's `cargo test` has them all.

mod common;

mod browser;
mod check;
mod cli;
mod client;
mod clocks;
mod conformance;
mod docs;
mod elicitation;
mod faults;
mod find_orders;
mod hostile_http;
mod hostile_input;
mod http;
mod hygiene;
mod interop;
mod log_privacy;
mod model_reads;
#[cfg(feature = "oauth")]
mod oauth;
mod oauth_provider;
mod order_card;
mod order_card_rules;
#[cfg(unix)]
mod packaging;
mod post_answers;
mod products;
#[cfg(all(unix, feature = "postgres"))]
mod replicas;
mod resources_prompts;
mod safety;
mod sandbox;
#[cfg(feature = "legacy-sse")]
mod sse;
#[cfg(unix)]
mod state_dir;
mod stdio;
mod stdio_fuzz;
#[cfg(unix)]
mod stdio_streams;
mod tools_snapshot;
mod upstream_requests;
