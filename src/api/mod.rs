//! The 1NCE Management API client: HTTP and 1NCE, nothing of MCP.
//!
//! [`Client`] forwards each call to one HTTP request (plus, rarely, a token request), with:
//! - one shared, cached access token (see [`auth`]), renewed ahead of expiry and once after a 401;
//! - connect and total timeouts on every request, no redirects followed (a redirected POST
//!   could place an order twice), and answer bodies bounded in size;
//! - 1NCE's answers turned into [`ApiError`] variants a caller can act on;
//! - an optional client-side rate limit ([`rate_limit`]) and retries of reads after transient
//!   failures ([`retry`]), with the time waited reported on the side ([`pacing`]).
//!
//! The order POST is sent at most once per call, never repeated, not even after a 401: its
//! access token is renewed beforehand when it would not outlast the request. What became of it
//! is reported as plain facts ([`PostFailure`]: not sent, answered with a status, or no answer);
//! what those facts mean for the order is decided by `crate::orders`, not here.

pub mod auth;
pub mod error;
pub mod model;
pub mod pacing;
mod page_walk;
pub mod products;
pub mod retry;

pub use page_walk::PageWalk;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};

pub use auth::Credentials;
pub use error::ApiError;
use model::{CreatedOrder, ListOrdersQuery, NewOrder, Order, OrderPage};

/// How long an access token must stay valid beyond the request timeout before an order POST
/// uses it.
const POST_TOKEN_MARGIN: Duration = Duration::from_secs(10);
pub use crate::rate_limit::RateLimit;
pub use retry::RetryPolicy;

/// 1NCE's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.1nce.com/management-api";
/// Largest answer body read from 1NCE. A full page of orders with SIMs is a few tens of KiB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Where and how to reach 1NCE.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base, e.g. `https://api.1nce.com/management-api`; paths such as `/v1/orders` are appended.
    pub base_url: url::Url,
    pub credentials: Credentials,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for a whole request, from sending to the end of the answer.
    pub request_timeout: Duration,
    /// When to repeat a failed read; [`ClientConfig::new`] sets [`RetryPolicy::none`].
    pub retry: RetryPolicy,
    /// Client-side pacing of API requests; `None` (the default of [`ClientConfig::new`]) sends
    /// at once. The binary sets [`RateLimit::DEFAULT`] unless told otherwise.
    pub rate_limit: Option<RateLimit>,
    /// Where `rate_limit` is kept when several replicas share it; `None` keeps it in this
    /// process.
    pub shared_rate_limit: Option<std::sync::Arc<dyn crate::rate_limit::SharedBucket>>,
}

impl ClientConfig {
    pub fn new(base_url: url::Url, credentials: Credentials) -> Self {
        ClientConfig {
            base_url,
            credentials,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::none(),
            rate_limit: None,
            shared_rate_limit: None,
        }
    }
}

/// A cheap-to-clone handle; all clones share one connection pool and one token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: LazyHttp,
    /// The base URL with a trailing slash, so relative paths join beneath it.
    base: url::Url,
    tokens: auth::TokenCache,
    request_timeout: Duration,
    retry: RetryPolicy,
    limiter: Option<crate::rate_limit::RateLimiter>,
    shared_limiter: Option<Arc<dyn crate::rate_limit::SharedBucket>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("client_id", &self.inner.tokens.client_id())
            .finish_non_exhaustive()
    }
}

/// The HTTP client, built on first use. Building one that speaks TLS reads and parses the
/// system's CA roots, milliseconds that every start-up would pay, including the sandbox's and a
/// `tools` listing that never calls 1NCE. A plain-http base (loopback only: the sandbox, a test
/// double) gets a client that trusts no root at all, since it never does TLS; redirects are off,
/// so it cannot be led to an https URL.
struct LazyHttp {
    connect_timeout: Duration,
    request_timeout: Duration,
    plain_http: bool,
    built: OnceLock<Result<reqwest::Client, String>>,
}

impl LazyHttp {
    fn get(&self) -> Result<&reqwest::Client, ApiError> {
        self.built
            .get_or_init(|| {
                let mut builder = reqwest::Client::builder()
                    .connect_timeout(self.connect_timeout)
                    .timeout(self.request_timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("1nce-mcp/", env!("CARGO_PKG_VERSION")));
                if self.plain_http {
                    builder = builder.tls_certs_only([]);
                }
                builder
                    .build()
                    .map_err(|e| format!("could not set up HTTPS: {e}"))
            })
            .as_ref()
            .map_err(|reason| ApiError::Unreachable {
                reason: reason.clone(),
            })
    }
}

/// Whether a request may be repeated without effect, which decides how a lost answer is reported.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Read,
    PlacesOrder,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ApiError> {
        // reqwest is built without a bundled crypto provider; ring is the process-wide one. A
        // second call finds it installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut base = config.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let token_url = base
            .join("oauth/token")
            .map_err(|e| ApiError::BadResponse {
                reason: format!("invalid API base URL: {e}"),
            })?;
        let http = LazyHttp {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            plain_http: base.scheme() == "http",
            built: OnceLock::new(),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                tokens: auth::TokenCache::new(config.credentials, token_url),
                request_timeout: config.request_timeout,
                retry: config.retry,
                limiter: config.rate_limit.map(crate::rate_limit::RateLimiter::new),
                shared_limiter: config.shared_rate_limit,
            }),
        })
    }

    /// The API base this client talks to.
    pub fn base_url(&self) -> &url::Url {
        &self.inner.base
    }

    /// The 1NCE API user this client acts as.
    pub fn client_id(&self) -> &str {
        self.inner.tokens.client_id()
    }

    /// Makes sure a valid access token is at hand, fetching one if needed: proof that the
    /// credentials work.
    pub async fn authenticate(&self) -> Result<(), ApiError> {
        self.inner
            .tokens
            .token(self.inner.http.get()?, self.inner.request_timeout)
            .await
            .map(|_| ())
    }

    /// `GET /v1/orders`: one page of the account's orders.
    pub async fn list_orders(&self, query: &ListOrdersQuery) -> Result<OrderPage, ApiError> {
        let mut params = vec![
            ("page", query.page.to_string()),
            ("pageSize", query.page_size.to_string()),
        ];
        if let Some(sort) = query.sort_param() {
            params.push(("sort", sort));
        }
        let answer = self
            .send(Method::GET, "v1/orders", Effect::Read, |r| r.query(&params))
            .await?;
        let orders: Vec<Order> = answer.json()?;
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Ok(OrderPage {
            orders,
            page: query.page,
            page_size: query.page_size,
            total_pages: header("x-total-pages"),
            total_count: header("x-total-count"),
        })
    }

    /// `GET /v1/orders/{order_number}`.
    pub async fn get_order(&self, order_number: u64) -> Result<Order, ApiError> {
        self.send(
            Method::GET,
            &format!("v1/orders/{order_number}"),
            Effect::Read,
            |r| r,
        )
        .await?
        .json()
    }

    /// `POST /v1/orders`: places a real, paid order. Sent at most once; see the module docs.
    pub async fn create_order(&self, order: &NewOrder) -> Result<CreatedOrder, PostFailure> {
        let body = order.to_wire();
        let answer = self
            .send(Method::POST, "v1/orders", Effect::PlacesOrder, |r| {
                r.json(&body)
            })
            .await
            .map_err(Failure::into_post_failure)?;
        let from_location = answer
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(order_number_from_location);
        // A 200 answer may carry the order; a 201 usually has no body at all.
        let order: Option<Order> = serde_json::from_slice(&answer.body).ok();
        let order_number = from_location.or(order.as_ref().and_then(|o| o.order_number));
        tracing::info!(status = answer.status.as_u16(), order_number = ?order_number, "1NCE answered the order POST with a success status");
        Ok(CreatedOrder {
            status: answer.status.as_u16(),
            order_number,
            order: order.filter(|o| o.order_number.is_some()),
        })
    }

    /// Sends a request and, after a transient failure (429, 502, 503, 504, no connection, a
    /// timeout, a cut-off answer), repeats it as [`RetryPolicy`] allows, but only where that
    /// cannot duplicate anything: a read always, an order only while nothing has left this
    /// machine (its token request or the rate limiter failed). Every wait is reported through
    /// [`pacing`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        effect: Effect,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<HttpAnswer, Failure> {
        let url = self.inner.base.join(path).map_err(|e| {
            Failure::before_sending(ApiError::BadResponse {
                reason: format!("invalid request path: {e}"),
            })
        })?;
        let policy = self.inner.retry;
        let started = tokio::time::Instant::now();
        let mut waited = Duration::ZERO;
        let mut retries = 0;
        loop {
            let failure = match self
                .attempt(&method, &url, path, effect, &build, &mut waited)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            let repeatable = effect == Effect::Read || failure.stage == Stage::Preparing;
            if !repeatable || !retry::is_transient(&failure.error) {
                return Err(failure);
            }
            match policy.next(retries, waited, failure.retry_after) {
                Ok(delay) => {
                    let reason = failure.error.brief();
                    tracing::warn!(%method, path, reason, retry = retries + 1, delay_ms = delay.as_millis() as u64, "repeating a 1NCE request after a transient failure");
                    pacing::record_retry(reason, delay);
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    retries += 1;
                }
                // Not repeated at all: the error itself says what to do.
                Err(_) if retries == 0 => return Err(failure),
                Err(retry_in) => {
                    tracing::warn!(%method, path, attempts = retries + 1, "giving up on a 1NCE request");
                    return Err(Failure {
                        error: ApiError::GaveUp {
                            attempts: retries + 1,
                            elapsed: started.elapsed(),
                            last: Box::new(failure.error),
                            retry_in,
                        },
                        ..failure
                    });
                }
            }
        }
    }

    /// Waits for the rate limiter, then sends the request once with the shared bearer token.
    /// A read answered 401 is sent once more with a renewed token; an order never is (a 401
    /// proves 1NCE did nothing, and the person's one approval allows one POST).
    async fn attempt(
        &self,
        method: &Method,
        url: &url::Url,
        path: &str,
        effect: Effect,
        build: &impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        waited: &mut Duration,
    ) -> Result<HttpAnswer, Failure> {
        let timeout = self.inner.request_timeout;
        let must_last = match effect {
            Effect::Read => Duration::ZERO,
            Effect::PlacesOrder => timeout + POST_TOKEN_MARGIN,
        };
        let http = self.inner.http.get().map_err(Failure::before_sending)?;
        for attempt in 0..2 {
            let token = self
                .inner
                .tokens
                .token_lasting(http, timeout, must_last)
                .await
                .map_err(Failure::before_sending)?;
            self.pace(waited).await.map_err(Failure::before_sending)?;
            let started = tokio::time::Instant::now();
            let request = build(http.request(method.clone(), url.clone()))
                .bearer_auth(token.bearer())
                .header(reqwest::header::ACCEPT, "application/json");
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    let reason = error::describe_transport(&e, timeout);
                    tracing::warn!(%method, path, reason, "1NCE request failed");
                    return Err(Failure {
                        error: ApiError::Unreachable { reason },
                        // A connection that was never made carried nothing.
                        stage: if e.is_connect() {
                            Stage::Connecting
                        } else {
                            Stage::Sent
                        },
                        retry_after: None,
                        answer: None,
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let wait_hint = retry_after(&headers);
            tracing::debug!(%method, path, status = status.as_u16(), took_ms = started.elapsed().as_millis() as u64, "1NCE answered");
            if status == StatusCode::UNAUTHORIZED {
                // The token expired early or was revoked; 1NCE did nothing with this request.
                self.inner.tokens.invalidate(&token).await;
                if attempt == 0 && effect == Effect::Read {
                    continue;
                }
            }
            let body = match read_body(response, timeout).await {
                Ok(body) => body,
                // The order was accepted; only its echo was lost.
                Err(_) if effect == Effect::PlacesOrder && status.is_success() => Vec::new(),
                Err(e) => {
                    return Err(Failure {
                        error: e,
                        stage: Stage::Sent,
                        retry_after: wait_hint,
                        answer: None,
                    });
                }
            };
            if status.is_success() {
                return Ok(HttpAnswer {
                    status,
                    headers,
                    body,
                });
            }
            let error = status_error(status, &headers, &body);
            return Err(Failure {
                answer: Some(Answered {
                    status: status.as_u16(),
                    error_body: is_error_body(&body),
                }),
                error,
                stage: Stage::Sent,
                retry_after: wait_hint,
            });
        }
        Err(Failure {
            error: ApiError::Unauthorized,
            stage: Stage::Sent,
            retry_after: None,
            answer: Some(Answered {
                status: 401,
                error_body: false,
            }),
        })
    }

    /// Takes a slot from the rate limiter, sleeping until it is free, unless that would take
    /// longer than what is left of the retry budget.
    async fn pace(&self, waited: &mut Duration) -> Result<(), ApiError> {
        let Some(limiter) = &self.inner.limiter else {
            return Ok(());
        };
        let left = self.inner.retry.budget.saturating_sub(*waited);
        let reserved = match &self.inner.shared_limiter {
            None => limiter.reserve(left),
            Some(shared) => shared
                .reserve(self.client_id(), limiter.limit(), left)
                .await
                .map_err(|reason| {
                    tracing::warn!(%reason, "refusing a 1NCE request: the shared rate limit could not be consulted");
                    ApiError::RateLimitUnavailable { reason }
                })?,
        };
        match reserved {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "pacing a 1NCE request to stay within the rate limit"
                );
                pacing::record_rate_limited(wait);
                tokio::time::sleep(wait).await;
                *waited += wait;
                Ok(())
            }
            Err(retry_in) => {
                tracing::warn!(
                    retry_in_ms = retry_in.as_millis() as u64,
                    "refusing a 1NCE request: the rate limit has no free slot soon enough"
                );
                Err(ApiError::Throttled {
                    retry_in,
                    limit: limiter.limit().to_string(),
                })
            }
        }
    }
}

/// How far a failed request got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Before anything left this machine: the token request, the rate limiter.
    Preparing,
    /// The connection to 1NCE was never established.
    Connecting,
    /// The request went out, in part or whole.
    Sent,
}

/// Why one attempt failed, and how far the request got (which forbids repeating an order).
struct Failure {
    error: ApiError,
    stage: Stage,
    /// 1NCE's `Retry-After`, whatever the status.
    retry_after: Option<Duration>,
    /// The status line, when an answer came.
    answer: Option<Answered>,
}

/// What an answer that was not a success said.
#[derive(Clone, Copy, Debug)]
struct Answered {
    status: u16,
    error_body: bool,
}

impl Failure {
    fn before_sending(error: ApiError) -> Failure {
        Failure {
            retry_after: match &error {
                ApiError::RateLimited { retry_after } => *retry_after,
                _ => None,
            },
            error,
            stage: Stage::Preparing,
            answer: None,
        }
    }

    fn into_post_failure(self) -> PostFailure {
        match (self.stage, self.answer) {
            (Stage::Preparing | Stage::Connecting, _) => PostFailure::NotSent(self.error),
            (Stage::Sent, Some(answered)) => PostFailure::Answered {
                status: answered.status,
                error_body: answered.error_body,
                error: self.error,
            },
            (Stage::Sent, None) => PostFailure::NoAnswer {
                reason: match self.error {
                    ApiError::Unreachable { reason } | ApiError::BadResponse { reason } => reason,
                    other => other.to_string(),
                },
            },
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> ApiError {
        failure.error
    }
}

/// What became of an order POST that did not come back with a success status: facts about the
/// exchange, for `crate::orders` to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostFailure {
    /// Nothing reached 1NCE: no access token, no rate-limit slot, or no connection.
    NotSent(ApiError),
    /// An answer came with this non-success status (from 1NCE, or from something in between).
    Answered {
        status: u16,
        /// Whether the body is 1NCE's JSON error (`message` and/or `errorCode`).
        error_body: bool,
        error: ApiError,
    },
    /// The request went out and no complete answer came back: a timeout, a reset, a cut-off body.
    NoAnswer { reason: String },
}

/// A successful answer, body read in full.
struct HttpAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl HttpAnswer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let bad = |e: &dyn std::fmt::Display| ApiError::BadResponse {
            reason: format!("the answer is not the documented JSON ({e})"),
        };
        // One UTF-8 check over the whole body, then a parse that trusts it: `from_slice` checks
        // each string on its own, which costs a sixth of the parse of a page of orders.
        let text = std::str::from_utf8(&self.body).map_err(|e| bad(&e))?;
        serde_json::from_str(text).map_err(|e| bad(&e))
    }
}

/// Maps a non-success status to the error a caller can act on.
fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    let code = status.as_u16();
    match code {
        401 => ApiError::Unauthorized,
        403 => ApiError::Forbidden,
        404 => ApiError::NotFound,
        429 => ApiError::RateLimited {
            retry_after: retry_after(headers),
        },
        500..=599 => ApiError::Upstream { status: code },
        _ => {
            let parsed: auth::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
            ApiError::Rejected {
                status: code,
                code: parsed.error_code,
                message: parsed
                    .message
                    .map(|m| snippet(&m))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| {
                        let text = snippet(&String::from_utf8_lossy(body));
                        if text.is_empty() {
                            status
                                .canonical_reason()
                                .unwrap_or("no reason given")
                                .to_owned()
                        } else {
                            text
                        }
                    }),
            }
        }
    }
}

/// At most 300 characters of upstream text, without control characters.
/// Whether `body` is 1NCE's JSON error: an object with a `message` or an `errorCode`.
fn is_error_body(body: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return false;
    };
    ["message", "errorCode", "error_code"]
        .iter()
        .any(|key| fields.get(*key).is_some_and(serde_json::Value::is_string))
}

fn snippet(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    cleaned.trim().to_owned()
}

/// Reads `Retry-After` as delay seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The order number at the end of a `Location` such as `…/v1/orders/2000000026`.
fn order_number_from_location(location: &str) -> Option<u64> {
    let path = location.split(['?', '#']).next()?;
    path.trim_end_matches('/').rsplit('/').next()?.parse().ok()
}

/// Reads an answer body, refusing more than [`MAX_BODY_BYTES`] so a huge or endless answer
/// cannot exhaust memory.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| ApiError::Unreachable {
        reason: error::describe_transport(&e, timeout),
    })? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large() -> ApiError {
    ApiError::BadResponse {
        reason: format!("the answer is larger than {} MiB", MAX_BODY_BYTES >> 20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &[u8]) -> HttpAnswer {
        HttpAnswer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn answers_parse_once_checked_as_utf8() {
        let order: Order =
            answer("{\"order_number\": 7, \"customer_reference\": \"Straße\"}".as_bytes())
                .json()
                .unwrap();
        assert_eq!(order.order_number, Some(7));
        assert_eq!(order.customer_reference.as_deref(), Some("Straße"));
        // A byte that is not UTF-8 is a bad answer, not a panic and not a lossy string.
        let err = answer(b"{\"customer_reference\": \"Stra\xdfe\"}")
            .json::<Order>()
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::BadResponse { reason } if reason.contains("not the documented JSON")),
            "{err:?}"
        );
    }

    #[test]
    fn location_parsing() {
        assert_eq!(
            order_number_from_location("https://api.1nce.com/management-api/v1/orders/2000000026"),
            Some(2000000026)
        );
        assert_eq!(order_number_from_location("/v1/orders/17/"), Some(17));
        assert_eq!(order_number_from_location("/v1/orders/abc"), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn status_mapping() {
        let h = HeaderMap::new();
        let body = br#"{"statusCode":400,"errorCode":"BadRequest","message":"quantity\ntoo high"}"#;
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, &h, body),
            ApiError::Rejected {
                status: 400,
                code: Some("BadRequest".into()),
                message: "quantity too high".into()
            }
        );
        assert!(is_error_body(body));
        assert!(!is_error_body(b"<html>Bad Request</html>"));
        assert!(!is_error_body(b"{}"));
        assert!(!is_error_body(b"[\"message\"]"));
        assert_eq!(
            status_error(StatusCode::BAD_GATEWAY, &h, b""),
            ApiError::Upstream { status: 502 }
        );
        assert_eq!(
            status_error(StatusCode::NOT_FOUND, &h, b""),
            ApiError::NotFound
        );
    }
}
