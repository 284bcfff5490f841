//! Log lines to stderr that never make the code logging them wait.
//!
//! Writing to stderr blocks once its pipe is full, and a pipe nobody reads fills after 64 KiB:
//! a server whose every request logs would then stop answering, `/health` included. So the HTTP
//! server hands each formatted line to a bounded queue ([`QUEUE_LINES`]) that one thread
//! writes to stderr; when the queue is full the line is dropped and counted, and the count is
//! written when stderr takes lines again. Losing log lines under a flood is the lesser evil.
//!
//! `tracing-subscriber` formats an event into one writer from [`MakeWriter`] and then drops it, so
//! one queued item is one whole line: lines never interleave. A line longer than
//! [`MAX_LINE_BYTES`] is cut there, whatever logged it (rmcp quotes some header values a client
//! chose), so no single request can make a long line.
//!
//! **Why not `tracing-appender`'s `NonBlocking`** (checked at 0.2.5). It has four of the
//! properties above: a bounded queue (`buffered_lines_limit`), lossy (`lossy(true)`), never
//! blocking (`try_send`), one queued item per event (the formatter writes each event whole). It
//! lacks the other three, and one of them it gets wrong for this server:
//! - lines are not capped in length: a wrapper writer would still have to cut them;
//! - dropped lines are only counted (`ErrorCounter::dropped_lines`), never written to the log:
//!   the reader of stderr would not learn that lines are missing;
//! - at exit its `WorkerGuard` waits a bounded time (100 ms to queue its shutdown, 1 s for the
//!   worker), but when the queue is full, the very case this module is for, it reports that with
//!   `println!`: on stdout, which this server writes only with protocol messages and the output
//!   of `call` and `tools`.
//!
//! It would also add crates to the build that nothing else uses (`time` with its formatting and
//! parsing, `crossbeam-channel`, `symlink`: its rolling file appender's dependencies are not
//! optional), where `std::sync::mpsc::sync_channel` and one thread do the queueing here.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for stderr before new ones are dropped.
pub const QUEUE_LINES: usize = 1024;
/// Longest line written; the rest is replaced by its length.
pub const MAX_LINE_BYTES: usize = 2048;
/// How long the process waits at exit for queued lines to be written.
const DRAIN_AT_EXIT: Duration = Duration::from_secs(1);

/// A [`MakeWriter`] that queues lines for stderr without ever blocking.
#[derive(Clone)]
pub struct NonBlockingStderr {
    queue: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// Writes what is queued when dropped, waiting at most a second: keep it until the end of `main`.
pub struct Drain {
    queue: Option<SyncSender<Vec<u8>>>,
    done: Receiver<()>,
}

impl NonBlockingStderr {
    /// The writer, and the guard that drains its queue at exit.
    pub fn start() -> (NonBlockingStderr, Drain) {
        Self::start_with(io::stderr(), QUEUE_LINES)
    }

    fn start_with(
        mut out: impl Write + Send + 'static,
        capacity: usize,
    ) -> (NonBlockingStderr, Drain) {
        let (queue, lines) = mpsc::sync_channel::<Vec<u8>>(capacity);
        let (finished, done) = mpsc::sync_channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        let spawned = std::thread::Builder::new()
            .name("stderr-log".into())
            .spawn(move || {
                for line in lines {
                    // The empty line is `Drain`'s question: is everything before it written?
                    if line.is_empty() {
                        let _ = out.flush();
                        let _ = finished.try_send(());
                        continue;
                    }
                    let lost = counted.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        let _ = writeln!(
                            out,
                            "1nce-mcp: {lost} log line(s) dropped: stderr was not being read fast enough"
                        );
                    }
                    let _ = out.write_all(&line);
                }
                let _ = out.flush();
            });
        if let Err(e) = spawned {
            eprintln!("1nce-mcp: could not start the log thread ({e}); logs are dropped");
        }
        (
            NonBlockingStderr {
                queue: queue.clone(),
                dropped,
            },
            Drain {
                queue: Some(queue),
                done,
            },
        )
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        // The subscriber's sender lives in a global, so the thread never sees the queue's end:
        // queue an empty line and wait (a bounded time: stderr may be blocked for good) until
        // the thread reaches it.
        let Some(queue) = self.queue.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + DRAIN_AT_EXIT;
        loop {
            match queue.try_send(Vec::new()) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(_)) if std::time::Instant::now() >= deadline => return,
                Err(TrySendError::Full(_)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = self.done.recv_timeout(left);
    }
}

/// One event's line, queued when dropped.
pub struct QueuedLine<'a> {
    line: Vec<u8>,
    to: &'a NonBlockingStderr,
}

impl Write for QueuedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        if line.len() > MAX_LINE_BYTES {
            let total = line.len();
            // Cut on a character boundary: the bytes are UTF-8 text from the formatter.
            let mut cut = MAX_LINE_BYTES;
            while cut > 0 && (line[cut] & 0b1100_0000) == 0b1000_0000 {
                cut -= 1;
            }
            line.truncate(cut);
            line.extend_from_slice(format!("… (line of {total} bytes cut)\n").as_bytes());
        }
        match self.to.queue.try_send(line) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.to.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for NonBlockingStderr {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> QueuedLine<'a> {
        QueuedLine {
            line: Vec::new(),
            to: self,
        }
    }
}

/// Sets up logging for the process: serving HTTP, through the queue that never blocks (keep the
/// returned [`Drain`] until the end); otherwise straight to stderr, in order with the process's
/// other messages there.
pub fn start(queued: bool, default_level: &str) -> Option<Drain> {
    if queued {
        let (writer, drain) = NonBlockingStderr::start();
        init(writer, default_level);
        Some(drain)
    } else {
        init(std::io::stderr, default_level);
        None
    }
}

/// Log targets that write whole MCP messages, and the most verbose level each may log at.
/// rmcp logs every request with its arguments and every result at debug and trace, and client
/// notifications at info: confirmation tokens (capabilities to spend money) and delivery
/// addresses (personal data). At warn and error it names failures, and quotes only the JSON-RPC
/// errors this server answers with, whose texts hold neither.
/// hyper, hyper-util, reqwest and axum were checked at trace: they log connections and
/// frame kinds, never bodies or header values.
/// tokio-postgres (through the `log` bridge) logs every statement's parameters at debug: the
/// signing key as it is stored, token ids, audit records. Its notices at info are kept.
const MESSAGE_LOGGERS: [(&str, LevelFilter); 2] = [
    ("rmcp", LevelFilter::WARN),
    ("tokio_postgres", LevelFilter::INFO),
];

/// Logs go to stderr only: in stdio mode stdout belongs to the MCP protocol.
///
/// `RUST_LOG` picks what is logged (`default_level` when it is not set), within
/// [`MESSAGE_LOGGERS`]' caps. The caps are a second
/// filter that every event must pass as well, not directives added to the user's: a directive
/// is overruled by a narrower one (`rmcp::service=trace`) or by a span directive
/// (`[serve_inner]=trace`), a second filter by nothing.
pub fn init<W>(writer: W, default_level: &str)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let caps = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(MESSAGE_LOGGERS);
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::{FilterExt, Targets};
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter.and(caps)),
        )
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// A stderr that blocks every write until opened, like a pipe nobody reads.
    #[derive(Clone, Default)]
    struct Blocked {
        shared: Arc<Shared>,
    }

    #[derive(Default)]
    struct Shared {
        /// Whether writes go through, and what was written.
        state: Mutex<(bool, Vec<u8>)>,
        opened: Condvar,
    }

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let shared = &*self.shared;
            let mut state = shared
                .opened
                .wait_while(shared.state.lock().unwrap(), |s| !s.0)
                .unwrap();
            state.1.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn long_lines_are_cut() {
        let out = Blocked::default();
        out.shared.state.lock().unwrap().0 = true;
        let (writer, drain) = NonBlockingStderr::start_with(out.clone(), 4);
        writeln!(writer.make_writer(), "{}", "é".repeat(5000)).unwrap();
        drop(drain);
        let text = String::from_utf8(out.shared.state.lock().unwrap().1.clone()).unwrap();
        assert!(text.len() < MAX_LINE_BYTES + 64, "{}", text.len());
        assert!(text.ends_with("… (line of 10001 bytes cut)\n"), "{text}");
    }

    #[test]
    fn a_blocked_stderr_drops_lines_instead_of_blocking_and_says_how_many() {
        let out = Blocked::default();
        let (writer, drain) = NonBlockingStderr::start_with(out.clone(), 4);
        let counted = Arc::clone(&writer.dropped);
        // Every write returns at once, though stderr is blocked.
        for i in 0..100 {
            writeln!(writer.make_writer(), "line {i}").unwrap();
        }
        out.shared.state.lock().unwrap().0 = true;
        out.shared.opened.notify_all();
        drop(writer);
        drop(drain);
        let text = String::from_utf8(out.shared.state.lock().unwrap().1.clone()).unwrap();
        // Written: what the queue held and the line stderr blocked on. The log thread reports
        // (and resets) the count before each line it writes, so every line is either written,
        // reported as dropped, or still counted.
        let written = text.lines().filter(|l| l.starts_with("line ")).count() as u64;
        let reported: u64 = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("1nce-mcp: ")?
                    .split_once(' ')?
                    .0
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert!(written <= 6, "{text}");
        assert_eq!(
            written + reported + counted.load(Ordering::Relaxed),
            100,
            "{text}"
        );
        assert!(
            text.contains("line 0\n") && text.contains("log line(s) dropped"),
            "{text}"
        );
    }
}
