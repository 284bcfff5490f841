//! How injected faults misbehave on the wire: connections that drop without an answer, bodies
//! cut off halfway, bodies too big or without end.
//!
//! Dropping a connection needs a hold on the connection itself, which a handler does not have.
//! So the sandbox listens through [`FaultListener`], whose connections carry a kill switch, and
//! hands each request that switch as connect info ([`Connection`]). Flipping it makes every
//! further read see end-of-file and every write fail, so the HTTP server gives up on the
//! connection and closes it without having sent a byte of the answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use futures_util::StreamExt as _;
use futures_util::stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What an injected fault does instead of (or besides) answering normally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with the fault's status, headers and body.
    #[default]
    Respond,
    /// Handle the request normally (after the fault's delay).
    PassThrough,
    /// Invalidate every issued token, then handle the request normally: as if the token had
    /// expired early or been revoked.
    ExpireTokens,
    /// Close the connection without answering.
    DropConnection,
    /// Send the status and headers and the first half of the body, then break the connection.
    Truncate,
    /// Answer 200 with a JSON-looking body of this many bytes, streamed without a
    /// `Content-Length`; `None` streams forever.
    Stream { bytes: Option<u64> },
}

/// A connection's kill switch, available to handlers as connect info.
#[derive(Clone, Debug, Default)]
pub(crate) struct Connection {
    killed: Arc<AtomicBool>,
}

impl Connection {
    /// Makes the connection fail from now on; the answer being prepared is never sent.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

/// A TCP listener whose connections can be killed from a handler.
pub(crate) struct FaultListener(pub(crate) TcpListener);

impl Listener for FaultListener {
    type Io = KillableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (KillableStream, std::net::SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        (
            KillableStream {
                inner: stream,
                connection: Connection::default(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        Listener::local_addr(&self.0)
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Connection {
        stream.io().connection.clone()
    }
}

/// A TCP stream that reads end-of-file and fails writes once its connection is killed.
pub(crate) struct KillableStream {
    inner: TcpStream,
    connection: Connection,
}

impl KillableStream {
    fn killed(&self) -> bool {
        self.connection.killed.load(Ordering::SeqCst)
    }
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection dropped by an injected fault",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `status` with the first half of `body`, then a broken connection. The break comes a moment
/// later so the half is on the wire first.
pub(crate) fn truncated(status: StatusCode, body: &str) -> Response {
    let half = Bytes::copy_from_slice(&body.as_bytes()[..body.len() / 2]);
    let chunks = stream::iter([Ok::<Bytes, io::Error>(half)]).chain(stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(io::Error::other("answer truncated by an injected fault"))
    }));
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// 200 with `bytes` bytes of a JSON array of orders (never closed), or without end.
pub(crate) fn streamed(bytes: Option<u64>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let record = br#"{"order_number":2000000001,"order_status":"COMPLETED"},"#;
    let chunk: Bytes = std::iter::once(b'[')
        .chain(record.iter().copied().cycle())
        .take(CHUNK)
        .collect::<Vec<u8>>()
        .into();
    let body = match bytes {
        None => Body::from_stream(stream::repeat(chunk).map(Ok::<Bytes, io::Error>)),
        Some(total) => {
            let mut left = total;
            let chunks = stream::iter(std::iter::from_fn(move || {
                if left == 0 {
                    return None;
                }
                let n = left.min(CHUNK as u64);
                left -= n;
                Some(Ok::<Bytes, io::Error>(chunk.slice(..n as usize)))
            }));
            Body::from_stream(chunks)
        }
    };
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
}
