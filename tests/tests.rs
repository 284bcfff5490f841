//! The integration tests: one test binary, one module per area (the layout ripgrep uses).
//!
//! Every file here used to link a binary of its own; each was a full debug link of the crate
//! and its dependencies. As modules of one binary they share one link and one process, so a test
//! that changes process-wide state must leave it as every other test expects (the only such state
//! is rustls's crypto provider, installed once and identically by whichever test comes first,
//! and `common::skip`'s list of tests that could not run, which only grows).
//! `Cargo.toml` sets `autotests = false` and names this file as the only integration test, so a
//! new file in `tests/` does nothing until it is declared here.
//!
//! The modules are grouped by one rule: **what drives the code under test**. The library and
//! the tests' harness in this process; an MCP client over the binary's stdio; clients over its
//! HTTP listener; the binary run once as a command; programs of others (independent clients, a
//! browser, an MCP Apps web host, the extension host). A new file goes in the group of what its tests drive, in
//! alphabetical order there. (A test that needs a component this machine may lack skips through
//! `common::skip`: CI fails it, a local run names it at the end.)
//!
//! The areas of a part a build may leave out (cargo features `oauth`, `postgres`,
//! `legacy-sse`) are compiled only with it; the README's `cargo test` has them all.

mod common;

// The library and the tests' own harness, in this process: no server binary.
mod client;
mod harness;
mod oauth_provider;
mod products;
mod sandbox;

// An MCP client (rmcp's, or raw lines) speaking to the built binary over its stdin and stdout.
mod elicitation;
mod faults;
mod find_orders;
mod hostile_input;
mod hygiene;
mod log_privacy;
mod mirror;
mod model_reads;
mod order_card_rules;
mod post_answers;
mod resources_prompts;
mod safety;
mod spend;
mod stdio;
mod stdio_fuzz;
#[cfg(unix)]
mod stdio_streams;
mod tools_snapshot;
mod upstream_requests;

// Clients (rmcp's Streamable HTTP, raw HTTP and SSE) speaking to the built binary's `--http`
// listener.
mod hostile_http;
mod http;
#[cfg(feature = "oauth")]
mod oauth;
#[cfg(all(unix, feature = "postgres"))]
mod replicas;
#[cfg(feature = "legacy-sse")]
mod sse;

// The built binary run once as a command, as a shell or a script runs it (`call`, `check`,
// `tools`, `--help`, refusals at start-up).
mod check;
mod cli;
mod clocks;
mod docs;
#[cfg(unix)]
mod docs_recipes;
#[cfg(unix)]
mod state_dir;

// Programs of others driving the built binary: independent MCP clients, the conformance suite,
// a real browser, an MCP Apps web host, the extension host.
mod browser;
mod conformance;
mod interop;
mod order_card;
#[cfg(unix)]
mod packaging;
