//! The standard streams as an MCP transport, read and written on the I/O reactor whenever the
//! client made that possible.
//!
//! Clients spawn stdio servers with one of two kinds of stream:
//! - **pipes** (Python's `subprocess`, Rust's `std::process`): on Linux, rmcp's `stdio_pipes`
//!   reopens them through `/proc/self/fd`, so `O_NONBLOCK` stays on descriptions private to this
//!   process;
//! - **Unix socket pairs** (Node.js, so Claude Desktop, Claude Code, VS Code and Cursor): a socket
//!   cannot be reopened, so its descriptor is duplicated and made non-blocking. The description
//!   is shared with this process's own fd 0 and 1, which nothing else in stdio mode touches (logs
//!   go to stderr), and not with the client, which holds the other end of the pair.
//!
//! Anything else (a terminal, a file, stderr sharing a socket with stdout) gets tokio's blocking
//! stdio, which works everywhere but hands every read and write to a blocking thread: about 70 µs
//! more per call on a socket pair (BENCHMARKS.md).

use tokio::io::{AsyncRead, AsyncWrite};

/// The read half of the transport.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of the transport.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// How the standard streams are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pipes on the reactor (rmcp's `stdio_pipes`, Linux).
    Pipes,
    /// Unix sockets on the reactor.
    Sockets,
    /// tokio's blocking stdin and stdout.
    Blocking,
}

/// stdin and stdout as the best transport they allow; must run inside a tokio runtime.
pub fn streams() -> (Reader, Writer, Mode) {
    #[cfg(unix)]
    if let Some(found) = unix::streams() {
        return found;
    }
    let (reader, writer) = rmcp::transport::stdio();
    (Box::new(reader), Box::new(writer), Mode::Blocking)
}

#[cfg(unix)]
mod unix {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::{Mode, Reader, Writer};

    /// The reactor-driven transport, when stdin and stdout allow one.
    pub(super) fn streams() -> Option<(Reader, Writer, Mode)> {
        let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
        let kinds = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()].map(kind);
        match kinds {
            // rmcp reopens pipes through /proc, so only on Linux.
            #[cfg(target_os = "linux")]
            [Some(Kind::Fifo(_)), Some(Kind::Fifo(_)), _] => {
                let (reader, writer) = rmcp::transport::stdio_pipes();
                Some((Box::new(reader), Box::new(writer), Mode::Pipes))
            }
            [Some(Kind::Socket(input)), Some(Kind::Socket(output)), err]
                if err != Some(Kind::Socket(input)) && err != Some(Kind::Socket(output)) =>
            {
                match sockets(stdin.as_fd(), stdout.as_fd(), input == output) {
                    Ok((reader, writer)) => Some((reader, writer, Mode::Sockets)),
                    Err(e) => {
                        tracing::debug!("stdio sockets unusable ({e}); using blocking stdio");
                        None
                    }
                }
            }
            _ => None,
        }
    }

    /// What a standard stream is, with its identity (device and inode) to tell shared ones apart.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Fifo((u64, u64)),
        Socket((u64, u64)),
    }

    fn kind(fd: BorrowedFd<'_>) -> Option<Kind> {
        let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
        let meta = file.metadata().ok()?;
        let id = (meta.dev(), meta.ino());
        let file_type = meta.file_type();
        if file_type.is_fifo() {
            Some(Kind::Fifo(id))
        } else if file_type.is_socket() {
            Some(Kind::Socket(id))
        } else {
            None
        }
    }

    fn sockets(
        input: BorrowedFd<'_>,
        output: BorrowedFd<'_>,
        same: bool,
    ) -> std::io::Result<(Reader, Writer)> {
        let input = unix_stream(input.try_clone_to_owned()?)?;
        if same {
            // One socket both ways (a client that passes one end for stdin and stdout).
            let (reader, writer) = input.into_split();
            return Ok((Box::new(reader), Box::new(writer)));
        }
        let output = unix_stream(output.try_clone_to_owned()?)?;
        Ok((Box::new(input), Box::new(output)))
    }

    /// A duplicated descriptor as a non-blocking tokio stream, if it is a Unix socket.
    fn unix_stream(fd: OwnedFd) -> std::io::Result<tokio::net::UnixStream> {
        let stream = std::os::unix::net::UnixStream::from(fd);
        // Fails for a socket of another family (TCP, say): leave those to blocking stdio.
        stream.local_addr()?;
        stream.set_nonblocking(true)?;
        tokio::net::UnixStream::from_std(stream)
    }
}
