//! Refused requests and connections, logged without letting the refused write the log.
//!
//! Whoever is refused chose the `Host`, the `Origin`, how many times to knock. So a refusal's log
//! line holds at most [`SAMPLE_CHARS`] characters of what they sent, escaped (no control
//! characters, no fake log lines), with its real length; and each kind of refusal logs at most one
//! line as it happens per [`INTERVAL`], the others of that interval counted and summed up in one
//! line by [`Refusals::flush`], which the server calls every [`INTERVAL`]. Ten thousand refused
//! requests in a burst make a few lines, not ten thousand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one line per kind of refusal as it happens in this time, and one summary line.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Characters of an attacker-supplied value kept in a log line.
const SAMPLE_CHARS: usize = 40;

/// Why a request or connection was turned away, as the log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// `Host` not one this server answers to.
    ForeignHost,
    /// No readable `Host`.
    MissingHost,
    /// More than one `Host` header, or a request target naming another host than `Host`.
    AmbiguousHost,
    /// A browser `Origin` neither loopback nor listed.
    ForeignOrigin,
    /// No bearer token.
    MissingToken,
    /// A bearer token that is not this server's (never logged).
    WrongToken,
    /// An OAuth access token refused (the reason is logged, never the token).
    InvalidToken,
    /// An OAuth access token of another issuer or audience, or signed by a key the issuer does
    /// not publish: logged apart from [`Reason::InvalidToken`] (expired tokens are common), with
    /// what was expected and what the token named, as a misconfiguration shows itself.
    ForeignToken,
    /// A valid OAuth access token without the scope the request needs.
    InsufficientScope,
    /// A session used with another person's access token.
    ForeignSession,
    /// `--max-connections` reached.
    TooManyConnections,
    /// `--max-sessions` reached.
    TooManySessions,
    /// A request body that did not arrive in time.
    SlowBody,
    /// A JSON-RPC body with a key twice in one object.
    DuplicateKey,
}

impl Reason {
    fn says(self) -> &'static str {
        match self {
            Reason::ForeignHost => "refused a request for a Host this server does not serve",
            Reason::MissingHost => "refused a request without a readable Host header",
            Reason::AmbiguousHost => {
                "refused a request naming two hosts (two Host headers, or a request target and a Host that differ)"
            }
            Reason::ForeignOrigin => "refused a request from a foreign Origin",
            Reason::MissingToken => "refused a request without a bearer token",
            Reason::WrongToken => "refused a request with a wrong bearer token",
            Reason::InvalidToken => "refused a request with an invalid OAuth access token",
            Reason::ForeignToken => {
                "refused an OAuth access token of another issuer or audience, or signed by a key the issuer does not publish"
            }
            Reason::InsufficientScope => {
                "refused a request beyond its access token's scopes (403 insufficient_scope)"
            }
            Reason::ForeignSession => {
                "refused a request for a session that another person's access token opened"
            }
            Reason::TooManyConnections => {
                "refused a connection: --max-connections reached (raise it if these are real clients)"
            }
            Reason::TooManySessions => {
                "refused a new session: --max-sessions reached (raise it if these are real clients)"
            }
            Reason::SlowBody => "closed a request whose body did not arrive in time",
            Reason::DuplicateKey => {
                "refused a JSON-RPC body with a key twice in one object (400, -32600)"
            }
        }
    }
}

/// The refusal log of one listener; clones share it.
#[derive(Clone, Default)]
pub struct Refusals {
    tallies: Arc<Mutex<BTreeMap<Reason, Tally>>>,
}

#[derive(Default)]
struct Tally {
    /// When the last line for this reason was written as it happened.
    logged_at: Option<Instant>,
    /// Refusals since then that were only counted.
    counted: u64,
    /// What the last counted one sent, as a sample.
    last: Option<String>,
}

impl Refusals {
    /// Notes one refusal, with what the client sent (if anything worth showing).
    pub fn note(&self, reason: Reason, value: Option<&[u8]>) {
        self.record(reason, value.map(sample));
    }

    /// Notes one refusal with the server's own account of it, logged whole: text this server
    /// wrote, which quotes what the client sent only escaped and cut short.
    pub fn explain(&self, reason: Reason, why: String) {
        self.record(reason, Some(why));
    }

    fn record(&self, reason: Reason, value: Option<String>) {
        let now = Instant::now();
        let mut tallies = self.tallies.lock().expect("refusals lock");
        let tally = tallies.entry(reason).or_default();
        let due = tally
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= INTERVAL);
        if due {
            tally.logged_at = Some(now);
            match value {
                Some(value) => tracing::warn!(value = %value, "{}", reason.says()),
                None => tracing::warn!("{}", reason.says()),
            }
        } else {
            tally.counted += 1;
            tally.last = value;
        }
    }

    /// Writes one line per reason with refusals that were only counted, and starts counting
    /// afresh.
    pub fn flush(&self) {
        let mut tallies = self.tallies.lock().expect("refusals lock");
        for (reason, tally) in tallies.iter_mut() {
            if tally.counted == 0 {
                continue;
            }
            let counted = std::mem::take(&mut tally.counted);
            match tally.last.take() {
                Some(last) => tracing::warn!(
                    count = counted,
                    last = %last,
                    "{} ({counted} more since the last line)",
                    reason.says()
                ),
                None => tracing::warn!(
                    count = counted,
                    "{} ({counted} more since the last line)",
                    reason.says()
                ),
            }
        }
    }

    /// Calls [`Refusals::flush`] every [`INTERVAL`] until `stop`, then once more.
    pub async fn flush_every_interval(self, stop: tokio_util::sync::CancellationToken) {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.flush(),
                () = stop.cancelled() => break,
            }
        }
        self.flush();
    }
}

/// At most [`SAMPLE_CHARS`] characters of `value`, escaped, and its length when cut.
pub fn sample(value: &[u8]) -> String {
    // Enough bytes for SAMPLE_CHARS characters of up to four bytes each.
    let head = &value[..value.len().min(SAMPLE_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(SAMPLE_CHARS) {
        out.extend(c.escape_debug());
    }
    if chars.next().is_some() || head.len() < value.len() {
        out.push_str(&format!("… ({} bytes)", value.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_short_and_escaped() {
        assert_eq!(sample(b"evil.example"), "evil.example");
        let long = "a".repeat(380_000);
        let s = sample(long.as_bytes());
        assert!(s.len() < 80, "{s}");
        assert!(s.ends_with("… (380000 bytes)"), "{s}");
        let s = sample(b"x\nINFO fake line\x1b[31m\"");
        assert!(!s.contains('\n') && !s.contains('\x1b'), "{s}");
        assert!(s.contains("\\n") && s.contains("\\u{1b}"), "{s}");
        assert_eq!(sample(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn a_burst_is_counted_not_logged_line_by_line() {
        let refusals = Refusals::default();
        for _ in 0..1000 {
            refusals.note(Reason::ForeignHost, Some(b"evil.example"));
        }
        let tallies = refusals.tallies.lock().unwrap();
        assert_eq!(tallies[&Reason::ForeignHost].counted, 999);
        drop(tallies);
        refusals.flush();
        assert_eq!(
            refusals.tallies.lock().unwrap()[&Reason::ForeignHost].counted,
            0
        );
    }
}
