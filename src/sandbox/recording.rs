//! What tests see of and do to the traffic: recorded requests and injected faults.

use std::time::Duration;

use super::faults::FaultAction;

/// A request as the sandbox received it, kept so tests can assert on what a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every header in arrival order; names are lower-case (HTTP/1 header names are case-insensitive).
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy for non-UTF-8); empty when it exceeded the size limit.
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// A canned answer for the next `times` requests whose method and path match, served
/// before authentication so it can imitate gateway errors (429, 503, …) for any caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Matched case-insensitively; `"*"` matches every method.
    pub method: String,
    /// Matched against the start of the request path, e.g. `/v1/orders`.
    pub path_prefix: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// How many matching requests this fault answers before it is used up.
    pub times: usize,
    /// When set, the request is first handled for real (a POST creates its order) and only its
    /// answer is replaced: the "answer lost after the order was created" case.
    pub after_handling: bool,
    /// What the fault does; [`FaultAction::Respond`] answers with `status`, `headers`, `body`.
    pub action: FaultAction,
    /// How long to wait before acting (and before handling, when `after_handling`).
    pub delay: Duration,
}

impl Fault {
    /// A one-shot fault answering `status` with an empty body.
    pub fn status(method: &str, path_prefix: &str, status: u16) -> Fault {
        Fault {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            status,
            headers: Vec::new(),
            body: String::new(),
            times: 1,
            after_handling: false,
            action: FaultAction::Respond,
            delay: Duration::ZERO,
        }
    }

    fn acting(method: &str, path_prefix: &str, action: FaultAction) -> Fault {
        Fault {
            action,
            ..Fault::status(method, path_prefix, 200)
        }
    }

    /// Handles the request normally, but only after `delay`: a slow 1NCE.
    pub fn delay(method: &str, path_prefix: &str, delay: Duration) -> Fault {
        Fault::acting(method, path_prefix, FaultAction::PassThrough).with_delay(delay)
    }

    /// Closes the connection without an answer. With [`Fault::after_handling`] the request is
    /// handled first (a POST creates its order), then the answer is lost.
    pub fn drop_connection(method: &str, path_prefix: &str) -> Fault {
        Fault::acting(method, path_prefix, FaultAction::DropConnection)
    }

    /// Answers 200 with half of `body`, then breaks the connection.
    pub fn truncated(method: &str, path_prefix: &str, body: &str) -> Fault {
        Fault::acting(method, path_prefix, FaultAction::Truncate).with_body(body)
    }

    /// Answers 200 with a complete body that is not JSON.
    pub fn malformed_json(method: &str, path_prefix: &str) -> Fault {
        Fault::status(method, path_prefix, 200)
            .with_header("content-type", "application/json")
            .with_body(r#"{"order_number": 2000000001, "order_status": "COMPLETED""#)
    }

    /// Answers 200 with a body of `bytes` bytes, streamed without a `Content-Length`.
    pub fn oversized(method: &str, path_prefix: &str, bytes: u64) -> Fault {
        Fault::acting(
            method,
            path_prefix,
            FaultAction::Stream { bytes: Some(bytes) },
        )
    }

    /// Answers 200 with a body that never ends.
    pub fn endless(method: &str, path_prefix: &str) -> Fault {
        Fault::acting(method, path_prefix, FaultAction::Stream { bytes: None })
    }

    /// Invalidates every token issued so far, then handles the request normally (which now
    /// gets 401): a token that expired early.
    pub fn expire_tokens(method: &str, path_prefix: &str) -> Fault {
        Fault::acting(method, path_prefix, FaultAction::ExpireTokens)
    }

    /// Waits `delay` before acting.
    pub fn with_delay(mut self, delay: Duration) -> Fault {
        self.delay = delay;
        self
    }

    /// Adds a response header, e.g. `Retry-After`.
    pub fn with_header(mut self, name: &str, value: &str) -> Fault {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the response body verbatim.
    pub fn with_body(mut self, body: &str) -> Fault {
        self.body = body.to_owned();
        self
    }

    /// Sets a JSON response body and its `Content-Type`.
    pub fn with_json(self, body: &serde_json::Value) -> Fault {
        self.with_header("content-type", "application/json")
            .with_body(&body.to_string())
    }

    /// Handles the request for real first and then answers with the fault instead, as when a
    /// gateway loses the answer to a request the API did process.
    pub fn after_handling(mut self) -> Fault {
        self.after_handling = true;
        self
    }

    /// Lets the fault answer `n` matching requests instead of one.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method))
            && path.starts_with(&self.path_prefix)
    }
}
