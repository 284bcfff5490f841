//! How many MCP sessions may be open at once, over Streamable HTTP and legacy SSE together
//! (`--max-sessions`), and rmcp's session store wrapped to keep that count.
//!
//! A session costs memory for as long as it is open (tens of kilobytes, more with calls in
//! flight), so each one holds a [`SessionSlot`] from the moment it is admitted until it ends:
//! closed by its client (`DELETE`, the SSE stream dropped), idle past `--session-idle-timeout`,
//! or shut down. A new session past the limit is refused with `503` and `Retry-After` before any
//! of it exists (see `http::count_calls` and `sse::open`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};

/// Seconds a client refused for `--max-sessions` is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 5;

/// The open sessions of one listener, at most `max`; clones share the count.
#[derive(Clone, Debug)]
pub struct SessionSlots {
    open: Arc<AtomicUsize>,
    max: usize,
}

impl SessionSlots {
    pub fn new(max: usize) -> SessionSlots {
        SessionSlots {
            open: Arc::default(),
            max,
        }
    }

    /// A slot for one more session, or `None` when `max` are open.
    pub fn try_take(&self) -> Option<SessionSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| SessionSlot(Arc::clone(&self.open)))
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One open session's place in the count, given back when dropped.
#[derive(Debug)]
pub struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

tokio::task_local! {
    /// The slot `count_calls` took for the `initialize` being handled, for the session rmcp
    /// creates while handling it.
    pub static NEW_SESSION_SLOT: Mutex<Option<SessionSlot>>;
}

tokio::task_local! {
    /// With OAuth, the person (binding key) whose `initialize` creates a session, for
    /// [`CappedSessions::create_session`] to record.
    pub static SESSION_OWNER: Option<String>;
}

/// What an open session holds: its `--max-sessions` slot, and its owner.
struct Held {
    _slot: SessionSlot,
    owner: Option<String>,
}

/// Refused: `--max-sessions` sessions are open.
#[derive(Debug, thiserror::Error)]
pub enum CappedSessionsError {
    #[error("too many open sessions (--max-sessions)")]
    Full,
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

/// rmcp's in-memory session store, where every session holds a [`SessionSlot`].
pub struct CappedSessions {
    local: LocalSessionManager,
    held: Mutex<HashMap<SessionId, Held>>,
    slots: SessionSlots,
}

impl CappedSessions {
    /// `local` closes sessions idle past its `session_config.keep_alive`.
    pub fn new(local: LocalSessionManager, slots: SessionSlots) -> CappedSessions {
        CappedSessions {
            local,
            held: Mutex::default(),
            slots,
        }
    }

    /// Whether a session with this id is open.
    /// Whether the session `id` is open and `person` (a [`crate::orders::Person`] binding key,
    /// `None` without OAuth) may use it: only the person whose access token opened a session
    /// may use it. `None` when there is no such session.
    pub fn belongs_to(&self, id: &str, person: Option<&str>) -> Option<bool> {
        self.held
            .lock()
            .expect("held lock")
            .get(&SessionId::from(id))
            .map(|held| held.owner.as_deref() == person)
    }

    pub async fn exists(&self, id: &str) -> bool {
        self.local
            .has_session(&SessionId::from(id))
            .await
            .unwrap_or(false)
    }
}

impl SessionManager for CappedSessions {
    type Error = CappedSessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        // The slot taken for this request's `initialize`; any other way here takes its own.
        let reserved = NEW_SESSION_SLOT
            .try_with(|slot| slot.lock().expect("slot lock").take())
            .ok()
            .flatten();
        let slot = reserved
            .or_else(|| self.slots.try_take())
            .ok_or(CappedSessionsError::Full)?;
        let owner = SESSION_OWNER.try_with(|owner| owner.clone()).ok().flatten();
        let (id, transport) = self.local.create_session().await?;
        self.held
            .lock()
            .expect("held lock")
            .insert(id.clone(), Held { _slot: slot, owner });
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(self.local.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.local.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.local.close_session(id).await;
        self.held.lock().expect("held lock").remove(id);
        Ok(closed?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        Ok(self.local.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.local.resume(id, last_event_id).await?)
    }
}

/// `503` with `Retry-After` and a JSON-RPC error carrying the request's id: the client can tell
/// the server is full from a server that is down.
pub fn too_many_sessions(id: serde_json::Value) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32000,
            "message": format!(
                "Server busy: the most MCP sessions this server keeps open at once (--max-sessions) are open; try again in {} s, or close sessions you no longer use",
                RETRY_AFTER_SECS
            ),
        },
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let slots = SessionSlots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert_eq!(slots.open(), 2);
        drop(a);
        let c = slots.try_take().unwrap();
        drop((b, c));
        assert_eq!(slots.open(), 0);
    }
}
