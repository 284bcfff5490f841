//! What can go wrong talking to 1NCE, in variants a caller can act on.
//!
//! Messages name what to check or do next; none ever contains a credential or token (the client
//! never puts one into an error, and reqwest errors are reduced to their kind before they get here).

use std::time::Duration;

/// An error from the 1NCE API or from reaching it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The token endpoint refused the client id and secret.
    #[error("1NCE refused the API credentials{}: {message}", code_suffix(.code))]
    Authentication {
        code: Option<String>,
        message: String,
    },
    /// 401 on an API call even with a freshly issued token.
    #[error(
        "1NCE answered 401 Unauthorized even with a fresh access token: the API user may have been disabled or lost API access"
    )]
    Unauthorized,
    /// 403: the API user may not do this.
    #[error(
        "1NCE answered 403 Forbidden: the API user lacks permission for this request (check its role in the 1NCE portal)"
    )]
    Forbidden,
    /// 404: the thing asked for does not exist.
    #[error("1NCE answered 404 Not Found")]
    NotFound,
    /// 429: too many requests.
    #[error("1NCE is rate limiting requests (429 Too Many Requests); {}", retry_hint(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// A 4xx other than the above, with 1NCE's own explanation.
    #[error("1NCE rejected the request ({status}{}): {message}", code_suffix(.code))]
    Rejected {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// 5xx: 1NCE failed.
    #[error("1NCE had an internal problem (HTTP {status}); try again in a minute")]
    Upstream { status: u16 },
    /// No answer: DNS, connect, TLS or timeout, before the request could have been processed.
    #[error("1NCE is unreachable: {reason}")]
    Unreachable { reason: String },
    /// 1NCE answered something this client cannot read.
    #[error("1NCE sent an unexpected answer: {reason}")]
    BadResponse { reason: String },
    /// A repeatable request failed on every attempt the retry policy allowed.
    #[error(
        "1NCE did not answer successfully after {attempts} attempts in {:.1} s (last: {}); this is usually temporary, try again in {} s",
        .elapsed.as_secs_f32(),
        .last.brief(),
        whole_secs(.retry_in)
    )]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        last: Box<ApiError>,
        retry_in: Duration,
    },
    /// The client-side rate limiter has no free slot soon enough; nothing was sent to 1NCE.
    #[error(
        "too many 1NCE requests in a short time: this server paces them to stay within 1NCE's rate limit ({limit}) and the next free slot is {} s away; nothing was sent, try again in {} s",
        whole_secs(.retry_in),
        whole_secs(.retry_in)
    )]
    Throttled { retry_in: Duration, limit: String },
    /// The rate limit shared by the replicas (in the state database) could not be consulted;
    /// nothing was sent to 1NCE, since no replica can tell whether the limit allows it.
    #[error(
        "the rate limit to 1NCE that this server's replicas share could not be consulted ({reason}); nothing was sent to 1NCE. The state database is unavailable: try again in a minute, and tell the operator if it persists"
    )]
    RateLimitUnavailable { reason: String },
}

impl ApiError {
    /// What went wrong, in a few words, for the log and the agent's note.
    pub(crate) fn brief(&self) -> String {
        match self {
            ApiError::RateLimited { .. } => "1NCE answered 429 Too Many Requests".to_owned(),
            ApiError::Upstream { status } => format!("1NCE answered {status}"),
            ApiError::Unreachable { reason } => reason.clone(),
            other => other.to_string(),
        }
    }

    /// The error with what to do about it, for an agent that must tell a person.
    pub fn advice(&self) -> String {
        match self {
            ApiError::Authentication { .. } => format!(
                "{self}. Check ONCE_CLIENT_ID and ONCE_CLIENT_SECRET: they must belong to a 1NCE API user (1NCE portal → Organisation → API access). The user must fix this; retrying will not help."
            ),
            ApiError::Unauthorized | ApiError::Forbidden => format!(
                "{self}. The user must fix this in the 1NCE portal; retrying will not help."
            ),
            _ => self.to_string(),
        }
    }
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref()
        .map(|c| format!(", {c}"))
        .unwrap_or_default()
}

/// Seconds rounded up, at least 1: "try again in 0 s" would invite a retry storm.
fn whole_secs(d: &Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("try again in {} s", d.as_secs().max(1)),
        None => "wait a minute before trying again".to_owned(),
    }
}

/// Describes a reqwest failure by kind only: its `Display` can include the URL, and a URL
/// could one day carry something secret, so it is never shown.
pub(crate) fn describe_transport(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        format!("no answer within {} s", timeout.as_secs_f32())
    } else if err.is_connect() {
        "could not connect (check the network, a proxy, or ONCE_API_URL)".to_owned()
    } else if err.is_body() || err.is_decode() {
        "the connection broke while reading the answer".to_owned()
    } else if err.is_request() {
        "the connection failed while the request was being sent".to_owned()
    } else {
        "the connection failed".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(e.to_string().contains("try again in 30 s"));
        let e = ApiError::Rejected {
            status: 400,
            code: Some("BadRequest".into()),
            message: "quantity too high".into(),
        };
        assert_eq!(
            e.to_string(),
            "1NCE rejected the request (400, BadRequest): quantity too high"
        );
    }
}
