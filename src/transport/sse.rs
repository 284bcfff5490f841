//! The legacy HTTP+SSE transport (MCP 2024-11-05), still spoken by older clients.
//!
//! `GET /sse` opens an event stream whose first event, `endpoint`, names where to POST:
//! `/message?sessionId=…`. Each POSTed JSON-RPC message is answered `202 Accepted`; the server's
//! replies travel back on the event stream as `message` events. A body that is not one JSON-RPC
//! message is answered `400`, and so is one with a key twice in one object, refused before it
//! gets here with the JSON-RPC error stdio answers it with ([`super::http`]'s `read_body`).
//!
//! rmcp no longer ships this server transport, so each session is its own rmcp service on rmcp's
//! generic `(Sink, Stream)` transport: POSTs feed a channel the service reads, the service writes
//! into a channel the event stream drains. The service is spawned (the client can only send
//! `initialize` after it has read the `endpoint` event), the session is registered before the
//! stream is returned, and a guard inside the stream cancels the service and forgets the session
//! when the client goes away, which also cancels the session's calls in progress.
//!
//! Each session holds a slot of `--max-sessions` for as long as its stream is open, and is
//! closed when no message was POSTed to it for `--session-idle-timeout`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, RequestId, ServerJsonRpcMessage};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

use super::refusals::{Reason, Refusals};
use super::sessions::{SessionSlot, SessionSlots};
use crate::mcp::{InFlight, InFlightGuard, OrderServer};
use crate::oauth::Caller;

/// Messages buffered per direction and session before a sender waits.
const CHANNEL_CAPACITY: usize = 64;
/// Interval of the keep-alive comments that stop proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The legacy SSE sessions of one listener.
#[derive(Clone)]
pub struct SseSessions {
    server: OrderServer,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// Cancelled on shutdown: ends every session and its event stream.
    shutdown: CancellationToken,
    /// Requests received and not yet answered, across sessions (shutdown waits for them).
    calls: InFlight,
    /// `--max-sessions`, shared with Streamable HTTP.
    slots: SessionSlots,
    /// `--session-idle-timeout`.
    idle_timeout: Duration,
    refusals: Refusals,
}

struct Session {
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    /// With OAuth, the person whose access token opened the session: only their tokens may
    /// use it.
    owner: Option<String>,
    /// One guard per request awaiting its answer.
    pending: Arc<Mutex<HashMap<RequestId, InFlightGuard>>>,
    /// When the client last POSTed a message.
    last_seen: Arc<Mutex<Instant>>,
}

impl SseSessions {
    pub fn new(
        server: OrderServer,
        shutdown: CancellationToken,
        calls: InFlight,
        slots: SessionSlots,
        idle_timeout: Duration,
        refusals: Refusals,
    ) -> Self {
        SseSessions {
            server,
            sessions: Arc::default(),
            shutdown,
            calls,
            slots,
            idle_timeout,
            refusals,
        }
    }

    fn forget(&self, id: &str) {
        self.sessions.lock().expect("sessions lock").remove(id);
    }
}

/// `GET /sse`: opens a session and its event stream.
pub async fn open(
    State(state): State<SseSessions>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Response {
    if !accepts_event_stream(&headers) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: GET /sse answers with text/event-stream; send `Accept: text/event-stream`",
        )
            .into_response();
    }
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
            .into_response();
    }
    let Some(slot) = state.slots.try_take() else {
        state.refusals.note(Reason::TooManySessions, None);
        return super::sessions::too_many_sessions(serde_json::Value::Null);
    };
    let id = super::random_id();
    let last_seen = Arc::new(Mutex::new(Instant::now()));
    let (to_server, from_client) = mpsc::channel::<ClientJsonRpcMessage>(CHANNEL_CAPACITY);
    let (to_client, mut from_server) = mpsc::channel::<ServerJsonRpcMessage>(CHANNEL_CAPACITY);
    let pending = Arc::new(Mutex::new(HashMap::new()));
    let ct = state.shutdown.child_token();

    // Registered before the endpoint event can reach the client, so its first POST finds it.
    state.sessions.lock().expect("sessions lock").insert(
        id.clone(),
        Session {
            to_server,
            owner: caller.map(|Extension(c)| c.person.binding_key()),
            pending: Arc::clone(&pending),
            last_seen: Arc::clone(&last_seen),
        },
    );
    tokio::spawn(close_when_idle(last_seen, state.idle_timeout, ct.clone()));
    tracing::info!(session = %id, "legacy SSE session opened");

    let service = state.server.for_session(format!("sse-{id}"));
    let mut from_client = from_client;
    let incoming = futures::stream::poll_fn(move |cx| from_client.poll_recv(cx));
    let transport = (PollSender::new(to_client), incoming);
    {
        let ct = ct.clone();
        let state = state.clone();
        let id = id.clone();
        // Spawned, not awaited: `initialize` can only arrive after the endpoint event is sent.
        tokio::spawn(async move {
            match service.serve_with_ct(transport, ct).await {
                Ok(running) => {
                    let reason = running.waiting().await;
                    tracing::debug!(session = %id, ?reason, "legacy SSE session ended");
                }
                Err(error) => {
                    tracing::debug!(session = %id, %error, "legacy SSE session ended before initialize")
                }
            }
            state.forget(&id);
        });
    }

    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/message?sessionId={id}"));
    let closer = SessionCloser {
        ct: ct.clone(),
        state: state.clone(),
        id,
        _slot: slot,
    };
    let messages =
        futures::stream::poll_fn(move |cx| from_server.poll_recv(cx)).map(move |message| {
            // The answer is on its way: the call no longer counts as in flight.
            if let Some(id) = answered_request(&message) {
                pending.lock().expect("pending lock").remove(id);
            }
            let _keep = &closer;
            Ok::<_, Infallible>(match serde_json::to_string(&message) {
                Ok(json) => Event::default().event("message").data(json),
                Err(error) => Event::default().comment(format!("unserialisable message: {error}")),
            })
        });
    let events = futures::stream::once(async { Ok(endpoint) })
        .chain(messages)
        .take_until(ct.cancelled_owned());
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Query of `POST /message`.
#[derive(Deserialize)]
pub struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

/// `POST /message?sessionId=…`: one JSON-RPC message for a session; the answer comes as an event.
pub async fn message(
    State(state): State<SseSessions>,
    Query(query): Query<MessageQuery>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    let Some(id) = query.session_id.filter(|s| !s.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "Bad Request: the sessionId query parameter is missing; POST to the URL of the endpoint event sent on GET /sse",
        )
            .into_response();
    };
    let caller = caller.map(|Extension(c)| c);
    let mut message: ClientJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("Bad Request: the body is not a JSON-RPC message: {error}"),
            )
                .into_response();
        }
    };
    let session = {
        let sessions = state.sessions.lock().expect("sessions lock");
        sessions.get(&id).map(|s| {
            *s.last_seen.lock().expect("last seen lock") = Instant::now();
            (s.to_server.clone(), Arc::clone(&s.pending), s.owner.clone())
        })
    };
    // Another person's session is answered as if it did not exist: its id says nothing.
    let session = session.filter(|(_, _, owner)| {
        let same = *owner == caller.as_ref().map(|c| c.person.binding_key());
        if !same {
            state.refusals.note(Reason::ForeignSession, None);
        }
        same
    });
    let Some((to_server, pending, _)) = session else {
        return (
            StatusCode::NOT_FOUND,
            "Not Found: no such session (it ended or never existed); open a new one with GET /sse",
        )
            .into_response();
    };
    // What Streamable HTTP gets from rmcp (the request's parts), this transport hands over
    // itself: the caller, for the tools' scopes and the audit trail.
    if let (ClientJsonRpcMessage::Request(request), Some(caller)) = (&mut message, caller) {
        request.request.extensions_mut().insert(caller);
    }
    if let ClientJsonRpcMessage::Request(request) = &message {
        pending
            .lock()
            .expect("pending lock")
            .insert(request.id.clone(), state.calls.token());
    }
    let request_id = match &message {
        ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    };
    if to_server.send(message).await.is_err() {
        if let Some(id) = request_id {
            pending.lock().expect("pending lock").remove(&id);
        }
        return (
            StatusCode::NOT_FOUND,
            "Not Found: the session has ended; open a new one with GET /sse",
        )
            .into_response();
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

/// Ends the session when the event stream is dropped: the client went away or shutdown.
struct SessionCloser {
    ct: CancellationToken,
    state: SseSessions,
    id: String,
    /// Given back to `--max-sessions` when the stream ends.
    _slot: SessionSlot,
}

/// Cancels the session once no message arrived for `idle` (or returns when it ends otherwise).
async fn close_when_idle(last_seen: Arc<Mutex<Instant>>, idle: Duration, ct: CancellationToken) {
    loop {
        let deadline = *last_seen.lock().expect("last seen lock") + idle;
        if Instant::now() >= deadline {
            tracing::info!(
                "closing a legacy SSE session idle for {}",
                humantime::format_duration(idle)
            );
            ct.cancel();
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = ct.cancelled() => return,
        }
    }
}

impl Drop for SessionCloser {
    fn drop(&mut self) {
        self.ct.cancel();
        self.state.forget(&self.id);
        tracing::info!(session = %self.id, "legacy SSE session closed");
    }
}

fn answered_request(message: &ServerJsonRpcMessage) -> Option<&RequestId> {
    match message {
        ServerJsonRpcMessage::Response(response) => Some(&response.id),
        ServerJsonRpcMessage::Error(error) => error.id.as_ref(),
        _ => None,
    }
}

/// No `Accept` header, or one naming `text/event-stream` or a wildcard.
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    values.is_empty()
        || values.iter().flat_map(|v| v.split(',')).any(|entry| {
            let essence = entry.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("text/event-stream")
                || essence == "*/*"
                || essence.eq_ignore_ascii_case("text/*")
        })
}
