//! Transports: thin adapters that carry MCP between clients and the
//! [`OrderServer`](crate::mcp::OrderServer).
//!
//! - [`stdio`]: stdin and stdout, driven by the I/O reactor when they are pipes or Unix sockets.
//! - [`framing`]: MCP's one-message-per-line framing over them, every line checked first, so
//!   that a malformed request is answered with its id instead of dropped.
//! - [`http`]: one axum listener with Streamable HTTP at `/mcp`, legacy HTTP+SSE at `/sse` and
//!   `/message`, and `/health`; graceful shutdown.
//! - [`sse`]: the 2024-11-05 HTTP+SSE transport built on rmcp's generic `(Sink, Stream)`
//!   transport, one pair per session.
//! - [`listener`]: the accept loop: `--max-connections`, header and keep-alive timeouts.
//! - [`guard`]: what every MCP request passes first: `Host` and `Origin` checks against DNS
//!   rebinding, and the bearer token, compared in constant time; and, for every request, one
//!   `Host` that an absolute-form target agrees with (RFC 9112 §3.2).
//! - [`refusals`]: refused requests logged short, escaped and counted, never line by line.
//! - [`sessions`]: `--max-sessions` over both HTTP transports, and rmcp's session store wrapped
//!   to keep the count.
//! - [`cors`]: CORS headers for the origins listed with `--allowed-origin`, so web clients on
//!   them can call the server from a browser.
//!
//! Transports receive plain validated settings ([`crate::config::HttpSettings`]) and never see
//! the command line.
//!
//! Each HTTP session gets `server.for_session(<random id>)`: all sessions share one 1NCE client
//! (one token cache, one connection pool) and one confirmation store, and a confirmation token
//! is bound to the session that previewed the order. Transports know MCP and HTTP, never 1NCE.

pub mod cors;
pub mod framing;
pub mod guard;
pub mod http;
pub mod listener;
pub mod refusals;
pub mod sessions;
pub mod sse;
pub mod stdio;

/// 128 random bits in hex: session ids and confirmation scopes nobody can guess.
pub(crate) fn random_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    crate::hex(&bytes)
}
