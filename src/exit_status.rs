//! Every exit status of the binary, in one list: `main`, `call`, `check`, `--help` and the table
//! of docs/operations.md all come from [`ExitStatus`] (a test keeps the manual in step).

use std::io::{self, Write};

/// Why the process ended, as a script reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// The tool reported an error (`call`).
    ToolError,
    /// Bad usage or configuration.
    Usage,
    /// Could not run: the runtime, the sandbox, the state directory or database, the OAuth
    /// authorization server, a broken session.
    Failure,
    /// `check`: 1NCE refused the credentials.
    CredentialsRefused,
    /// `check`: 1NCE could not be reached.
    Unreachable,
    /// `check`: 1NCE answered, but not as documented.
    UnexpectedAnswer,
}

impl ExitStatus {
    /// Every status, in order.
    pub const ALL: [ExitStatus; 7] = [
        ExitStatus::Success,
        ExitStatus::ToolError,
        ExitStatus::Usage,
        ExitStatus::Failure,
        ExitStatus::CredentialsRefused,
        ExitStatus::Unreachable,
        ExitStatus::UnexpectedAnswer,
    ];

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::ToolError => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Failure => 3,
            ExitStatus::CredentialsRefused => 4,
            ExitStatus::Unreachable => 5,
            ExitStatus::UnexpectedAnswer => 6,
        }
    }

    /// What it means, for a person.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Success => "success (check: ready)",
            ExitStatus::ToolError => "the tool reported an error (call)",
            ExitStatus::Usage => "bad usage or configuration",
            ExitStatus::Failure => {
                "could not run (the sandbox, the state directory or database, the OAuth authorization server, a broken session)"
            }
            ExitStatus::CredentialsRefused => "check: 1NCE refused the credentials",
            ExitStatus::Unreachable => {
                "check: 1NCE unreachable (network, timeout, 5xx, rate limit)"
            }
            ExitStatus::UnexpectedAnswer => "check: 1NCE answered other than it documents",
        }
    }

    /// The `EXIT STATUS` section of `--help`.
    pub fn help() -> String {
        let mut text = String::from("EXIT STATUS:\n");
        for status in ExitStatus::ALL {
            text.push_str(&format!("  {}  {}\n", status.code(), status.meaning()));
        }
        text
    }

    /// The statuses `call` ends with: success, the tool's error, bad usage, could not run.
    pub const CALL: [ExitStatus; 4] = [
        ExitStatus::Success,
        ExitStatus::ToolError,
        ExitStatus::Usage,
        ExitStatus::Failure,
    ];

    /// The `EXIT STATUS` section of `call --help`.
    pub fn call_help() -> String {
        let mut text = String::from("EXIT STATUS:\n");
        for status in ExitStatus::CALL {
            text.push_str(&format!("  {}  {}\n", status.code(), status.meaning()));
        }
        text
    }

    /// The table of docs/operations.md (a test holds the manual to it).
    #[cfg(test)]
    pub fn markdown_table() -> String {
        let mut text = String::from("| status | meaning |\n| --- | --- |\n");
        for status in ExitStatus::ALL {
            text.push_str(&format!("| {} | {} |\n", status.code(), status.meaning()));
        }
        text
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// A writer that treats a closed pipe (`1nce-mcp tools | head`) as the end of its reader's
/// interest, not as an error: what follows is dropped, and [`QuietPipe::closed`] says so.
/// Any other write error is passed on.
pub struct QuietPipe<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> QuietPipe<W> {
    pub fn new(inner: W) -> Self {
        QuietPipe {
            inner,
            closed: false,
        }
    }

    /// Whether the reader went away.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn quiet(&mut self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

impl<W: Write> Write for QuietPipe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.quiet(result)
    }
}

/// A reason to stop, with the exit status that says which kind, and the message for stderr
/// (none when the report already said it).
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub message: String,
}

impl Exit {
    /// Bad usage or configuration (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Exit {
            status: ExitStatus::Usage,
            message: message.into(),
        }
    }

    /// Could not run (exit status 3).
    pub fn failure(message: impl Into<String>) -> Self {
        Exit {
            status: ExitStatus::Failure,
            message: message.into(),
        }
    }

    /// Says why on stderr (as `1nce-mcp: …`) and gives the process's exit code.
    pub fn report(self) -> std::process::ExitCode {
        if !self.message.is_empty() {
            eprintln!("1nce-mcp: {}", self.message);
        }
        self.status.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_the_manual_shows_the_table() {
        let codes: std::collections::BTreeSet<u8> =
            ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes.len(), ExitStatus::ALL.len());
        let manual =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
                .unwrap();
        let table = ExitStatus::markdown_table();
        assert!(
            manual.contains(&table),
            "docs/operations.md must show the exit statuses exactly as:\n{table}"
        );
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_pipe_is_quiet_and_noticed() {
        let mut out = QuietPipe::new(Closed);
        writeln!(out, "a long answer").unwrap();
        out.flush().unwrap();
        assert!(out.closed());
    }
}
