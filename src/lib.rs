//! # 1nce-mcp
//!
//! An MCP server that lets AI agents list, inspect and, only with a person's explicit approval,
//! place orders with 1NCE, the IoT connectivity provider.
//!
//! Data flows one way and back: **transport → MCP tools → the order promise → 1NCE client →
//! HTTP → 1NCE (or the sandbox)**, with stored state underneath. The modules stand in layers,
//! top first; each uses only layers below its own (a test, `module_graph.rs`, keeps it so, and
//! keeps this map naming every module):
//!
//! 1. [`app`]: the process, wiring only: the command line to an exit status. `main.rs` is one
//!    call to [`app::run`].
//! 2. The ways in: [`transport`] (MCP over stdio, every line checked before rmcp sees it; over
//!    Streamable HTTP and legacy HTTP+SSE on one listener, behind `Host`/`Origin` checks, a
//!    bearer token or OAuth, with caps and timeouts); [`oneshot`] (`1nce-mcp call`: one tool call
//!    through an in-memory MCP session, so scripts get exactly the server's behaviour);
//!    [`setup_check`] (`1nce-mcp check`).
//! 3. [`config`]: every setting, validated once. `config/cli.rs` is the command line as typed
//!    (clap), `config/http.rs` the HTTP transport's settings; nothing below sees clap.
//! 4. [`mcp`]: the MCP face: one file per tool, the approval form (elicitation), the order card
//!    (MCP Apps), resources and prompts, what agents read, and tool errors as one type. Knows
//!    the 1NCE models and errors, never HTTP.
//! 5. [`oauth`]: who calls, when the server is an OAuth resource server: access tokens checked
//!    against the issuer, scopes, the person.
//! 6. [`orders`] and [`mirror`]. [`mirror`]: every order read from 1NCE kept in the state store,
//!    synced in the background within a share of the rate limit, so searches answer from it.
//!    [`orders`]: the order promise (nothing ordered without the person's approval, at the price
//!    they saw, never twice): confirmation tokens and their single use, the catalogue and limit
//!    checks, what an answer to the order POST means, the audit records, the search for an
//!    order whose answer was lost. Knows nothing of MCP.
//! 7. [`api`]: the 1NCE Management API client: HTTP, OAuth2 client credentials, timeouts, retries,
//!    error statuses, the data models. Knows nothing of MCP or of agents.
//! 8. [`state`]: stored state behind one seam, chosen once: the state directory, or PostgreSQL
//!    shared by replicas (the token ledger, the audit trail, the signing key, the shared rate
//!    limit). Keeps records; decides nothing about orders.
//! 9. Below everything: [`clock`] (the time, injected), [`rate_limit`] (token buckets),
//!    [`exit_status`] (every exit status, in one list), [`stderr_log`] (log lines to stderr that
//!    never block the server), and [`sandbox`], a simulated 1NCE API served over real HTTP on
//!    loopback, which stands apart: `--sandbox` starts one inside the binary, and the tests and
//!    benchmarks start their own and point the server at it as at the real API.
//!
//! stdout carries protocol messages only (in stdio mode); every log line goes to stderr through
//! `tracing`. CONTRIBUTING.md walks through the source tree file by file.
//!
//! Cargo features, all on by default, for the parts a user may leave out: `postgres`
//! (`state::postgres`, `--state-url`), `oauth` (the resource server in [`oauth`], `--oauth-issuer`)
//! and `legacy-sse` (`transport::sse`, `/sse`). A build without one still parses its flags and
//! refuses them at start-up, naming the feature ([`config`]). `test-support`, off by default and
//! on for the tests through a dev-dependency on this crate, compiles what only tests use: the
//! sandbox's fault injection and request recording, `state::ledger::check_contract`.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod exit_status;
pub mod mcp;
pub mod mirror;
pub mod oauth;
pub mod oneshot;
pub mod orders;
pub mod rate_limit;
pub mod sandbox;
pub mod setup_check;
pub mod state;
pub mod stderr_log;
pub mod transport;

/// Whether `url` names this machine (`localhost` or a loopback IP): where plain http and
/// browser origins are as safe as a local process.
pub(crate) fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Lower-case hex of `bytes`: token ids, content hashes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod module_graph;
