//! The accept loop: every TCP connection, from before its first byte to its close.
//!
//! A client that opens a connection and then sends nothing, or a header line every few seconds,
//! or a body of a declared hundred gigabytes one byte at a time, holds a file descriptor and a
//! task for as long as it likes unless something ends it. So:
//!
//! - **at most `--max-connections` open at once**: past it a new connection gets a `503` written
//!   without waiting and is closed; the connections already admitted are never touched;
//! - **headers within [`HEADER_READ_TIMEOUT`]**, counted by hyper from the moment it starts
//!   waiting for a request: on a new connection, and again after each answer on a kept-alive one,
//!   so an idle keep-alive connection is closed after the same time;
//! - **headers of at most [`MAX_HEADER_BYTES`]**; the body is bounded in size and time by the
//!   router ([`super::http`]).
//!
//! An answer being streamed (an SSE stream of the legacy transport, a Streamable HTTP `GET`) is
//! not idle: hyper reads no next request while it writes one, and none of these limits apply.
//!
//! `axum::serve` sets no timer (so hyper's header timeout never fires) and admits every
//! connection, hence this loop of its own around hyper's HTTP/1 connection.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::refusals::{Reason, Refusals};

/// How long a client has to send a request's headers, and how long a kept-alive connection
/// may wait for its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long to wait before accepting again after an error such as running out of file
/// descriptors, which would otherwise repeat at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a connection past the cap is sent before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 62\r\nConnection: close\r\n\r\nToo many open connections to this server; try again shortly.\n";

/// Serves `app` on every connection `listener` accepts, at most `max_connections` at once, until
/// `stop` is cancelled; then lets each open connection finish its answer (hyper's graceful
/// shutdown) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    refusals: Refusals,
    stop: CancellationToken,
) {
    raise_open_files_limit(max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::debug!(error = %e, "accept failed; trying again shortly");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refusals.note(Reason::TooManyConnections, None);
            refuse(tcp);
            continue;
        };
        // Answers go out as several small writes (headers, then SSE events); with Nagle's
        // algorithm on, each later write waits for the client's delayed ACK, about 40 ms a call.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(tcp), service);
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                // Closed, timed out or failed: hyper has said all there is to say.
                _ = connection.as_mut() => return,
                () = stop.cancelled() => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Tells a connection past the cap why, if its socket takes the bytes at once, and closes it.
fn refuse(tcp: TcpStream) {
    let _ = tcp.try_write(BUSY);
}

/// Errors that concern one connection (it was reset before it was accepted), not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Each connection is a file descriptor: lifts the soft open-files limit to the hard one, and
/// warns when even that is below what `--max-connections` admits (the connections past it then
/// wait in the kernel's queue instead of getting a 503).
fn raise_open_files_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        /// Descriptors besides connections: the listener, stdio, 1NCE connections, state files.
        const SPARE: libc::rlim_t = 64;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the plain struct passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        let soft = limit.rlim_cur;
        if soft < max_connections as libc::rlim_t + SPARE {
            tracing::warn!(
                "the open-files limit ({soft}) is below --max-connections ({max_connections}) plus {SPARE}: connections past it wait in the kernel's queue; raise `ulimit -n` or lower --max-connections"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}
