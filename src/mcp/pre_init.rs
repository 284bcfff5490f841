//! Keeps stray messages that arrive before `initialize` from ending the session.
//!
//! Until a session starts, rmcp's server accepts only requests (it answers `ping` and refuses
//! others with an error) and treats anything else, a notification, a response or an error
//! object, as a fatal handshake failure: the session ends and the process with it. A client
//! that sends `notifications/initialized` or a stray `notifications/cancelled` too early would
//! kill the server. None of those messages asks for an answer, so until the session starts
//! this transport wrapper drops them (with a debug log) instead of passing them on.

use std::future::Future;

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, GetMeta, JsonRpcMessage};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

/// Wraps a server transport; see the module docs.
pub struct IgnoreBeforeInitialize<T> {
    inner: T,
    started: bool,
}

impl<T> IgnoreBeforeInitialize<T> {
    pub fn new(inner: T) -> Self {
        IgnoreBeforeInitialize {
            inner,
            started: false,
        }
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for IgnoreBeforeInitialize<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let message = self.inner.receive().await?;
            if self.started {
                return Some(message);
            }
            match &message {
                JsonRpcMessage::Request(request) => {
                    // `initialize`, or a request that carries its protocol version inline
                    // (the stateless revision), starts the session.
                    self.started = matches!(request.request, ClientRequest::InitializeRequest(_))
                        || request.request.get_meta().protocol_version().is_some();
                    return Some(message);
                }
                JsonRpcMessage::Notification(_) => {
                    tracing::debug!("ignoring a notification sent before initialize");
                }
                JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) => {
                    tracing::debug!("ignoring a response sent before initialize");
                }
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
