//! # 1nce-mcp
//!
//! An MCP server that lets AI agents list, inspect and, only with a person's explicit approval,
//! place orders with 1NCE, the IoT connectivity provider.
//!
//! Data flows one way and back: **transport → MCP tools → (order rules →) 1NCE client → HTTP →
//! 1NCE (or the sandbox)**. Each layer knows only the ones below it, and no two modules use
//! each other (a test, `module_graph.rs`, keeps it so):
//!
//! - [`config`]: every setting. `config/cli.rs` is the command line as typed (clap),
//!   `config/http.rs` the HTTP transport's settings, `config/mod.rs` the validated [`config::Config`]
//!   they make. Nothing past `config` sees clap.
//! - [`transport`]: MCP over stdio (every line checked before rmcp sees it, so a malformed
//!   request is answered with its id) and over the network (Streamable HTTP, legacy HTTP+SSE) on
//!   one listener, behind `Host`/`Origin` checks and a bearer token, with caps on connections
//!   and sessions, timeouts for slow clients and a refusal log that floods cannot inflate; thin
//!   adapters around the same server, one `OrderServer::for_session` per HTTP session.
//! - [`mcp`]: the MCP face. One file per tool, the approval form (elicitation), resources and
//!   prompts, and the rendering of what agents read. Knows the 1NCE models and errors, never
//!   HTTP.
//! - [`orders`]: the order promise (nothing ordered without the person's approval, at the price
//!   they saw, never twice): confirmation tokens and their single use, the catalogue and limit
//!   checks, what an answer to the order POST means, the audit trail, the search for an order
//!   whose answer was lost. Knows nothing of MCP.
//! - [`api`]: the 1NCE Management API client. HTTP, OAuth2 client credentials, timeouts, error
//!   statuses, the 1NCE data models (`api/model/`); knows nothing of MCP or of agents.
//! - [`sandbox`]: a simulated 1NCE API served over real HTTP on loopback, seeded with realistic
//!   orders and products. `--sandbox` starts one inside the binary; the tests and benchmarks
//!   start their own and point the server at it exactly as they would at the real API.
//!
//! - [`state_db`]: with `--state-url`, the order state several replicas share in PostgreSQL
//!   (used tokens, audit trail, signing key, rate limit to 1NCE), behind the contracts `orders`
//!   and `api` define; neither of them knows it.
//!
//! Beside them: [`oneshot`] (`1nce-mcp call`, one tool call through an in-memory MCP session, so
//! scripts and Agent Skills get exactly the server's behaviour), [`setup_check`] (`1nce-mcp
//! check`, a verdict on credentials and reachability), [`exit_status`] (every exit status,
//! in one list) and [`stderr_log`] (log lines to stderr that never block the server).
//!
//! The binary (`src/main.rs`) wires these together and serves MCP on stdio, or over HTTP with
//! `--http`. stdout carries protocol messages only; every log line goes to stderr through
//! `tracing`.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod exit_status;
pub mod mcp;
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
