//! One HTTP listener for every network client:
//!
//! | path | what |
//! | --- | --- |
//! | `/mcp` | Streamable HTTP (rmcp's `StreamableHttpService`, one session per `initialize`) |
//! | `GET /sse`, `POST /message` | legacy HTTP+SSE (`super::sse`, cargo feature `legacy-sse`; without it `404` saying so) |
//! | `GET /health` | `{"status":"ok"}`, no token, nothing about the account |
//! | `GET /.well-known/oauth-protected-resource[/mcp]` | with OAuth (cargo feature `oauth`): the protected resource metadata (RFC 9728), no token |
//!
//! Connections are accepted by [`listener`](super::listener) (a cap, header and keep-alive
//! timeouts). Every request, whatever its path, names one host ([`guard::one_authority`]: one
//! `Host` header, and an absolute-form target only with the same authority; `400` otherwise).
//! Every MCP path passes the [`Guard`] first (after [`cors`], when origins are
//! listed); then the whole request body is read, at most [`MAX_BODY_BYTES`] within
//! [`BODY_READ_TIMEOUT`], and a JSON body with a key twice in one object is refused (`400` with
//! a JSON-RPC -32600, as stdio answers it). With OAuth, each JSON-RPC request is then held to
//! the scopes of its access token ([`scope_gate`]: 403 `insufficient_scope` beyond them), and a
//! session to the person who opened it. Sessions are counted against `--max-sessions`
//! ([`sessions`]) and closed when idle. Shutdown is one small idea in three steps: stop
//! accepting, wait (up to the grace period) for the calls in flight, then close the sessions so
//! their open streams end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
#[cfg(feature = "legacy-sse")]
use axum::routing::post;
use futures::StreamExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::cors;
use super::framing;
use super::guard::{self, Guard};
use super::listener;
use super::random_id;
use super::refusals::{Reason, Refusals};
use super::sessions::{self, CappedSessions, NEW_SESSION_SLOT, SESSION_OWNER, SessionSlots};
#[cfg(feature = "legacy-sse")]
use super::sse::{self, SseSessions};
use crate::config::HttpSettings;
use crate::mcp::{InFlight, OrderServer};
use crate::oauth::Caller;
#[cfg(feature = "oauth")]
use crate::oauth::{Needed, ResourceServer};

/// Largest request body accepted (JSON-RPC messages of this server are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a request body may take to arrive, whole. A client trickling a large body holds a
/// connection and a buffer; messages of this server arrive in milliseconds.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open streams get to end after the sessions are closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A bound, not yet serving, HTTP listener.
pub struct HttpServer {
    listener: TcpListener,
    settings: HttpSettings,
    #[cfg(feature = "oauth")]
    oauth: Option<Arc<ResourceServer>>,
}

/// Binds the listener, so the caller can report the real address (port 0 picks one).
pub async fn bind(settings: HttpSettings) -> Result<HttpServer, String> {
    let listener = TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", settings.addr))?;
    Ok(HttpServer {
        listener,
        settings,
        #[cfg(feature = "oauth")]
        oauth: None,
    })
}

impl HttpServer {
    /// With `oauth` (discovered from `settings.oauth`), access tokens of that authorization
    /// server are required instead of the static token.
    #[cfg(feature = "oauth")]
    pub fn with_oauth(mut self, oauth: Option<Arc<ResourceServer>>) -> Result<Self, String> {
        // Settings that ask for OAuth never serve without it.
        if self.settings.oauth.is_some() != oauth.is_some() {
            return Err(
                "the OAuth settings and the authorization server found do not match".into(),
            );
        }
        self.oauth = oauth;
        Ok(self)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, String> {
        self.listener
            .local_addr()
            .map_err(|e| format!("could not read the bound address: {e}"))
    }

    /// Whether clients must send a bearer token.
    pub fn requires_token(&self) -> bool {
        #[cfg(feature = "oauth")]
        if self.oauth.is_some() {
            return true;
        }
        self.settings.token.is_some()
    }

    /// Serves until `shutdown` resolves (to the name of what asked for it), then shuts down
    /// gracefully: see the module docs.
    pub async fn serve(
        self,
        server: OrderServer,
        shutdown: impl Future<Output = &'static str>,
    ) -> Result<(), String> {
        let settings = self.settings;
        let calls = InFlight::default();
        let stop_accepting = CancellationToken::new();
        let close_sessions = CancellationToken::new();
        let refusals = Refusals::default();
        #[cfg(feature = "oauth")]
        let app = router(
            &settings,
            self.oauth,
            server,
            calls.clone(),
            close_sessions.clone(),
            refusals.clone(),
        );
        #[cfg(not(feature = "oauth"))]
        let app = router(
            &settings,
            server,
            calls.clone(),
            close_sessions.clone(),
            refusals.clone(),
        );
        let flushing = tokio::spawn(
            refusals
                .clone()
                .flush_every_interval(close_sessions.clone()),
        );
        let mut serving = tokio::spawn(listener::serve(
            self.listener,
            app,
            settings.max_connections,
            refusals,
            stop_accepting.clone(),
        ));
        let signal = tokio::select! {
            signal = shutdown => signal,
            result = &mut serving => {
                return Err(match result {
                    Ok(()) => "the HTTP server stopped unexpectedly".to_owned(),
                    Err(e) => format!("the HTTP server task failed: {e}"),
                });
            }
        };
        tracing::info!("{signal}: shutting down, no longer accepting connections");
        stop_accepting.cancel();
        calls.close();
        if !calls.is_empty() {
            tracing::info!("waiting for {} call(s) in flight", calls.len());
        }
        if tokio::time::timeout(settings.shutdown_grace, calls.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} call(s) still running after {}; closing their sessions",
                calls.len(),
                humantime::format_duration(settings.shutdown_grace)
            );
        }
        tracing::debug!("closing the sessions");
        close_sessions.cancel();
        if tokio::time::timeout(CLOSE_GRACE, &mut serving)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the sessions closed; dropping them");
            serving.abort();
        }
        // The refusals counted since the last line are written before the process ends.
        let _ = flushing.await;
        tracing::debug!("HTTP server stopped");
        Ok(())
    }
}

/// The whole application: MCP endpoints behind the guard, health outside it.
fn router(
    settings: &HttpSettings,
    #[cfg(feature = "oauth")] oauth: Option<Arc<ResourceServer>>,
    server: OrderServer,
    calls: InFlight,
    close_sessions: CancellationToken,
    refusals: Refusals,
) -> Router {
    let guard = Guard::new(
        settings.token.as_ref(),
        &settings.allowed_hosts,
        &settings.allowed_origins,
        refusals.clone(),
    );
    #[cfg(feature = "oauth")]
    let guard = guard.with_oauth(oauth.clone());
    // rmcp checks Host on its own as well; give it the same list (empty means any).
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(close_sessions.child_token())
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    config = if settings.allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(settings.allowed_hosts.clone())
    };
    let slots = SessionSlots::new(settings.max_sessions);
    let mut local = LocalSessionManager::default();
    // rmcp closes a session whose worker saw nothing for this long (its default is 5 minutes).
    local.session_config.keep_alive = Some(settings.session_idle_timeout);
    let streamable_sessions = Arc::new(CappedSessions::new(local, slots.clone()));
    let sessions_server = server.clone();
    let streamable = StreamableHttpService::new(
        move || {
            let scope = CONFIRMATION_SCOPE
                .try_with(Clone::clone)
                .unwrap_or_else(|_| format!("http-{}", random_id()));
            Ok(sessions_server.for_session(scope))
        },
        Arc::clone(&streamable_sessions),
        config,
    );
    #[cfg(feature = "oauth")]
    let gate = ScopeGate {
        guard: guard.clone(),
        write_tools: Arc::new(
            server
                .callable_tools()
                .iter()
                .filter(|t| crate::mcp::needed(t) == Needed::Write)
                .map(|t| t.name.to_string())
                .collect(),
        ),
    };
    #[cfg(feature = "legacy-sse")]
    let sse = SseSessions::new(
        server,
        close_sessions.child_token(),
        calls.clone(),
        slots.clone(),
        settings.session_idle_timeout,
        refusals.clone(),
    );
    let mcp = McpState {
        calls,
        slots,
        sessions: streamable_sessions,
        refusals: refusals.clone(),
    };
    let authority_guard = guard.clone();

    let app = Router::new()
        .route_service("/mcp", streamable)
        .route_layer(middleware::from_fn_with_state(mcp, count_calls));
    #[cfg(feature = "legacy-sse")]
    let app = app.merge(
        Router::new()
            .route("/sse", get(sse::open))
            .route("/message", post(sse::message))
            .with_state(sse),
    );
    #[cfg(not(feature = "legacy-sse"))]
    let app = app
        .route("/sse", axum::routing::any(without_legacy_sse))
        .route("/message", axum::routing::any(without_legacy_sse));
    #[cfg(feature = "oauth")]
    let app = app.layer(middleware::from_fn_with_state(gate, scope_gate));
    let app = app
        .layer(middleware::from_fn_with_state(refusals, read_body))
        .layer(middleware::from_fn_with_state(guard, guard::middleware))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    #[cfg(feature = "oauth")]
    let app = match oauth {
        None => app,
        Some(oauth) => {
            let document = Arc::new(oauth.metadata());
            oauth.metadata_paths().iter().fold(app, |app, path| {
                let document = Arc::clone(&document);
                app.route(path, get(move || resource_metadata(Arc::clone(&document))))
            })
        }
    };
    // A browser's preflight carries no token, so it is answered before the guard.
    let app = match cors::layer(&settings.allowed_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    // Outermost, for every path: one Host, and a request target that agrees with it.
    app.layer(middleware::from_fn_with_state(
        authority_guard,
        guard::one_authority,
    ))
}

/// `/sse` and `/message` in a build without the legacy HTTP+SSE transport: said, not a bare 404.
#[cfg(not(feature = "legacy-sse"))]
async fn without_legacy_sse() -> Response {
    (
        StatusCode::NOT_FOUND,
        "Not Found: this 1nce-mcp was built without the legacy HTTP+SSE transport (cargo feature `legacy-sse`); use Streamable HTTP at /mcp",
    )
        .into_response()
}

/// `GET /health`: the process serves. Says nothing about 1NCE or the account.
async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /.well-known/oauth-protected-resource`: public, cacheable, readable by any web page
/// (browser-based clients discover the authorization server from it).
#[cfg(feature = "oauth")]
async fn resource_metadata(document: Arc<serde_json::Value>) -> Response {
    (
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        axum::Json(document.as_ref().clone()),
    )
        .into_response()
}

/// What [`scope_gate`] needs: the guard (for its 403), and the tools that need
/// `orders:write`.
#[cfg(feature = "oauth")]
#[derive(Clone)]
struct ScopeGate {
    guard: Guard,
    write_tools: Arc<std::collections::HashSet<String>>,
}

/// With OAuth, refuses a POSTed JSON-RPC request (or batch) beyond the scopes of the caller's
/// access token: 403 with `WWW-Authenticate: Bearer error="insufficient_scope", scope=…`, so
/// the client can ask the person for more (step-up). Without a caller (no OAuth) it passes
/// everything. `tools/list` passes and is filtered by the MCP layer.
#[cfg(feature = "oauth")]
async fn scope_gate(State(gate): State<ScopeGate>, request: Request, next: Next) -> Response {
    let Some(scopes) = request.extensions().get::<Caller>().map(|c| c.scopes) else {
        return next.run(request).await;
    };
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // The body was read whole by `read_body`; this only takes it.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let needed = needed_by(&body, &gate.write_tools);
    if !scopes.allow(needed) {
        return gate.guard.insufficient_scope(needed);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The scope a JSON-RPC message (or the most a batch) needs; see [`crate::oauth::Needed`].
#[cfg(feature = "oauth")]
fn needed_by(body: &[u8], write_tools: &std::collections::HashSet<String>) -> Needed {
    #[derive(serde::Deserialize)]
    struct Message {
        method: Option<String>,
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        name: Option<serde_json::Value>,
    }
    let one = |m: &Message| match m.method.as_deref() {
        Some("tools/call") => {
            let name = m.params.as_ref().and_then(|p| p.name.as_ref());
            match name.and_then(|n| n.as_str()) {
                Some(name) if write_tools.contains(name) => Needed::Write,
                _ => Needed::Read,
            }
        }
        Some(method) if method.starts_with("resources/") || method.starts_with("prompts/") => {
            Needed::Read
        }
        Some("completion/complete") => Needed::Read,
        _ => Needed::Nothing,
    };
    let rank = |n: Needed| match n {
        Needed::Nothing => 0,
        Needed::Read => 1,
        Needed::Write => 2,
    };
    let messages: Vec<Message> = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        Ok(value) => serde_json::from_value(value).into_iter().collect(),
        // Not JSON: rmcp answers it as such; nothing is read or ordered.
        Err(_) => Vec::new(),
    };
    messages
        .iter()
        .map(one)
        .max_by_key(|n| rank(*n))
        .unwrap_or(Needed::Nothing)
}

tokio::task_local! {
    /// The confirmation scope for a server rmcp creates while handling this request.
    static CONFIRMATION_SCOPE: String;
}

/// The scope shared by 2026-07-28 stateless requests: they have no session to bind a token to,
/// so, as on stdio, the token itself (unguessable, bound to the exact order, single-use,
/// expiring) is the capability. Sessions never share it.
const STATELESS_SCOPE: &str = "http-stateless";

/// What `/mcp`'s middleware needs: the calls in flight, the session count and store.
#[derive(Clone)]
struct McpState {
    calls: InFlight,
    slots: SessionSlots,
    sessions: Arc<CappedSessions>,
    refusals: Refusals,
}

/// Reads the whole request body before the handlers see it: at most [`MAX_BODY_BYTES`]
/// (a larger `Content-Length` is refused before a byte is read) within [`BODY_READ_TIMEOUT`].
/// Runs after the guard, so nobody unauthenticated gets a body read at all. A POSTed body with a
/// key twice in one object, at any depth, is refused here for both transports, as stdio refuses
/// the line ([`framing::duplicate_key`]): `{"quantity":1,"quantity":900}` is 1 to one parser and
/// 900 to another, so it is never guessed at.
async fn read_body(State(refusals): State<Refusals>, request: Request, next: Next) -> Response {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            "Payload Too Large: request bodies are limited to 1 MiB",
        )
            .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    );
    let body = match read.await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            refusals.note(Reason::SlowBody, None);
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                "Request Timeout: the request body did not arrive in time",
            )
                .into_response();
        }
    };
    if parts.method == Method::POST
        && let Some(refusal) = framing::duplicate_key(&body)
    {
        refusals.note(Reason::DuplicateKey, None);
        return invalid_message(&refusal);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// `400 Bad Request` with the JSON-RPC error in the body, as the Streamable HTTP transport
/// answers a message the server cannot accept (and rmcp answers an invalid request).
fn invalid_message(refusal: &framing::ErrorResponse) -> Response {
    match serde_json::to_vec(refusal) {
        Ok(body) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// Counts a Streamable HTTP POST as a call in flight until its response body is finished (the
/// answer to a request is the end of that POST's response stream), and decides the confirmation
/// scope of the server rmcp may create for it: a new random one for an `initialize` (a new
/// session), the shared stateless one for a request outside any session. An `initialize` past
/// `--max-sessions` is refused here, before rmcp creates anything; `DELETE` of a session that
/// does not exist is answered 404, of one that does 204.
async fn count_calls(State(mcp): State<McpState>, request: Request, next: Next) -> Response {
    let person = request
        .extensions()
        .get::<Caller>()
        .map(|c| c.person.binding_key());
    // With OAuth a session is its opener's: another person's request for it is answered as if
    // it did not exist (its id says nothing).
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    if let Some(id) = session
        && mcp.sessions.belongs_to(id, person.as_deref()) == Some(false)
    {
        mcp.refusals.note(Reason::ForeignSession, None);
        return (
            StatusCode::NOT_FOUND,
            "Not Found: no such session (it ended, expired or never existed)",
        )
            .into_response();
    }
    if request.method() == Method::DELETE {
        let id = request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok());
        if let Some(id) = id
            && !mcp.sessions.exists(id).await
        {
            return (
                StatusCode::NOT_FOUND,
                "Not Found: no such session (it ended, expired or never existed)",
            )
                .into_response();
        }
        // rmcp answers a closed session 202; clients expect 200 or 204 (the Python SDK logs
        // "Session termination failed: 202" on every close), and nothing is left to accept.
        let mut response = next.run(request).await;
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
            *response.body_mut() = Body::empty();
        }
        return response;
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let guard = mcp.calls.token();
    let (parts, body) = request.into_parts();
    // The body was read whole by `read_body`; this only takes it.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let (scope, slot) = match initialize_id(&body) {
        Some(id) => {
            let Some(slot) = mcp.slots.try_take() else {
                mcp.refusals.note(Reason::TooManySessions, None);
                return sessions::too_many_sessions(id);
            };
            (format!("http-{}", random_id()), Some(slot))
        }
        None => (STATELESS_SCOPE.to_owned(), None),
    };
    let request = Request::from_parts(parts, Body::from(body));
    let response = NEW_SESSION_SLOT
        .scope(
            std::sync::Mutex::new(slot),
            SESSION_OWNER.scope(person, CONFIRMATION_SCOPE.scope(scope, next.run(request))),
        )
        .await;
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held_until_the_body_ends = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// The id of an `initialize` request (`Null` when it has none), `None` for anything else.
fn initialize_id(body: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        id: serde_json::Value,
    }
    serde_json::from_slice::<Message>(body)
        .ok()
        .filter(|m| m.method.as_deref() == Some("initialize"))
        .map(|m| m.id)
}
