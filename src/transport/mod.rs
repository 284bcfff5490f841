//! Transports: thin adapters that carry MCP between clients and the
//! [`OrderServer`](crate::mcp::OrderServer).
//!
//! - [`stdio`]: stdin and stdout, driven by the I/O reactor when they are pipes or Unix sockets.
//! - [`framing`]: MCP's one-message-per-line framing over them, every line checked first, so
//!   that a malformed request is answered with its id instead of dropped.
//! - [`http`]: one axum listener with Streamable HTTP at `/mcp`, legacy HTTP+SSE at `/sse` and
//!   `/message` (cargo feature `legacy-sse`), and `/health`; graceful shutdown.
//! - `sse` (cargo feature `legacy-sse`, on by default): the 2024-11-05 HTTP+SSE transport built
//!   on rmcp's generic `(Sink, Stream)` transport, one pair per session.
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
#[cfg(feature = "legacy-sse")]
pub mod sse;
pub mod stdio;

/// 128 random bits in hex: session ids and confirmation scopes nobody can guess.
pub(crate) fn random_id() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    crate::hex(&bytes)
}

use crate::mcp::OrderServer;
use rmcp::ServiceExt;

/// Serves MCP on stdin and stdout until the client closes stdin or a signal comes, after
/// saying on stderr that it is ready and `against` what.
pub async fn serve_stdio(server: OrderServer, against: &str) -> Result<(), String> {
    eprintln!(
        "1nce-mcp {} ready on stdio against {against}",
        env!("CARGO_PKG_VERSION")
    );
    let session = async {
        // Pipes and socket pairs (how clients spawn stdio servers) are read and written on the
        // I/O reactor, not through a blocking thread per message.
        let (stdin, stdout, mode) = stdio::streams();
        tracing::debug!(?mode, "stdio transport");
        // Every line is checked before rmcp sees it, and a malformed request is answered.
        let transport = framing::LineTransport::new(stdin, stdout);
        // A notification sent before `initialize` would otherwise end the session.
        let service = server
            .serve(crate::mcp::IgnoreBeforeInitialize::new(transport))
            .await
            .map_err(|e| format!("MCP session failed to start: {e}"))?;
        let reason = service
            .waiting()
            .await
            .map_err(|e| format!("MCP session failed: {e}"))?;
        tracing::info!(?reason, "MCP session ended");
        Ok(())
    };
    tokio::select! {
        served = session => served,
        signal = shutdown_signal() => {
            tracing::info!("{signal}: shutting down");
            Ok(())
        }
    }
}

/// Serves MCP over HTTP with `settings` until a signal comes, after saying on stderr where,
/// how clients authenticate, and `against` what. With OAuth, the authorization server is asked
/// for its metadata and keys before the port opens: a server that cannot check tokens must not
/// look ready.
pub async fn serve_http(
    server: OrderServer,
    settings: crate::config::HttpSettings,
    against: &str,
) -> Result<(), String> {
    #[cfg(feature = "oauth")]
    let oauth = match &settings.oauth {
        None => None,
        Some(o) => {
            let resource = crate::oauth::ResourceServer::discover(
                &o.issuer,
                &o.public_url,
                &o.audiences,
                o.introspection.clone(),
            )
            .await
            .map_err(|e| format!("OAuth: {e}"))?;
            for note in &resource.notes {
                tracing::warn!("the authorization server {}: {note}", resource.issuer());
            }
            Some(std::sync::Arc::new(resource))
        }
    };
    #[cfg(feature = "oauth")]
    let oauth_line = oauth.as_ref().map(|o| {
        format!(
            "OAuth access tokens of {} for {} required; metadata at {}",
            o.issuer(),
            o.audiences(),
            o.metadata_url()
        )
    });
    if let Some(warning) = settings.cleartext_token_warning() {
        tracing::warn!("{warning}");
    }
    #[cfg(not(feature = "oauth"))]
    let oauth_line: Option<String> = None;
    let http = http::bind(settings).await?;
    #[cfg(feature = "oauth")]
    let http = http.with_oauth(oauth)?;
    let addr = http.local_addr()?;
    let auth = match (&oauth_line, http.requires_token()) {
        (Some(line), _) => line.as_str(),
        (None, true) => "bearer token required",
        (None, false) => "no token (loopback only)",
    };
    let sse = if cfg!(feature = "legacy-sse") {
        "legacy SSE at /sse, "
    } else {
        ""
    };
    eprintln!(
        "1nce-mcp {} ready on http://{addr} (Streamable HTTP at /mcp, {sse}health at /health; {auth}) against {against}",
        env!("CARGO_PKG_VERSION")
    );
    http.serve(server, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
