//! The OAuth2 client-credentials token: fetched once, shared, renewed ahead of expiry.
//!
//! 1NCE has no refresh token: a new token is requested with the client id and secret whenever
//! the cached one is about to expire or was refused with a 401. The cache sits behind an async
//! mutex that is held across the token request, so any number of concurrent calls that find it
//! empty wait for one renewal instead of each starting their own; when 1NCE refuses the
//! credentials, that one refusal answers every call that was waiting for it (one request, one
//! log line, however many calls were waiting).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::ApiError;

/// The API user's client id and secret. `Debug` shows the id only.
#[derive(Clone)]
pub struct Credentials {
    client_id: String,
    client_secret: SecretString,
}

impl Credentials {
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Credentials {
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The `Authorization` header value for the token request.
    fn basic_header(&self) -> SecretString {
        let raw = format!("{}:{}", self.client_id, self.client_secret.expose_secret());
        SecretString::from(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct AccessToken {
    secret: SecretString,
    /// When to renew: somewhat before 1NCE's `expires_in`, so a token never expires in flight.
    renew_at: Instant,
    /// When 1NCE stops accepting it.
    expires_at: Instant,
}

impl AccessToken {
    pub(crate) fn bearer(&self) -> &str {
        self.secret.expose_secret()
    }

    fn same_as(&self, other: &AccessToken) -> bool {
        self.secret.expose_secret() == other.secret.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// The token endpoint's success body. 1NCE's own example spells some keys differently from its
/// schema (`user_id`/`userId`, `score`/`scope`), so only the two needed keys are read.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The token endpoint's error body.
#[derive(Deserialize, Default)]
pub(crate) struct ErrorBody {
    #[serde(default, alias = "errorCode")]
    pub(crate) error_code: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// How long a token lives when 1NCE's answer does not say (its documented default).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Renew this long before expiry at most; a tenth of the lifetime for short-lived tokens.
const MAX_RENEW_MARGIN: Duration = Duration::from_secs(60);

/// Cache of the one token all calls share.
pub(crate) struct TokenCache {
    credentials: Credentials,
    token_url: url::Url,
    current: Mutex<Slot>,
    /// Token requests answered so far (also in [`Slot::requests`]), readable without the lock:
    /// a call notes it before waiting, to tell whether a request was answered while it waited.
    requests: AtomicU64,
}

/// What the cache holds: the token, and how the last request for one ended.
#[derive(Default)]
struct Slot {
    token: Option<AccessToken>,
    /// Token requests answered so far.
    requests: u64,
    /// 1NCE's refusal of the credentials in answer to the last request, if it refused them.
    refused: Option<ApiError>,
}

impl TokenCache {
    pub(crate) fn new(credentials: Credentials, token_url: url::Url) -> Self {
        TokenCache {
            credentials,
            token_url,
            current: Mutex::new(Slot::default()),
            requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn client_id(&self) -> &str {
        self.credentials.client_id()
    }

    /// A token valid for a while yet: the cached one, or a fresh one if it is due for renewal.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<AccessToken, ApiError> {
        self.token_lasting(http, timeout, Duration::ZERO).await
    }

    /// Like [`TokenCache::token`], but renews now unless the token stays valid for at least
    /// `must_last`: the order POST is sent once and never again after a 401, so its token must
    /// not run out while the request is on its way.
    pub(crate) async fn token_lasting(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        must_last: Duration,
    ) -> Result<AccessToken, ApiError> {
        let before = self.requests.load(Ordering::Acquire);
        let mut slot = self.current.lock().await;
        let now = Instant::now();
        if let Some(token) = slot.token.as_ref()
            && now < token.renew_at
            && token.expires_at.saturating_duration_since(now) >= must_last
        {
            return Ok(token.clone());
        }
        // A request answered while this call waited for the lock refused the credentials:
        // that is this call's answer too (asking again at once would only be refused again).
        if slot.requests != before
            && let Some(refused) = &slot.refused
        {
            return Err(refused.clone());
        }
        let answer = self.fetch(http, timeout).await;
        slot.requests += 1;
        self.requests.store(slot.requests, Ordering::Release);
        match answer {
            Ok(fresh) => {
                slot.token = Some(fresh.clone());
                slot.refused = None;
                Ok(fresh)
            }
            Err(e) => {
                slot.refused = matches!(e, ApiError::Authentication { .. }).then(|| e.clone());
                Err(e)
            }
        }
    }

    /// Forgets `rejected` after 1NCE answered 401 to it, unless another call already replaced it.
    pub(crate) async fn invalidate(&self, rejected: &AccessToken) {
        let mut slot = self.current.lock().await;
        if slot.token.as_ref().is_some_and(|t| t.same_as(rejected)) {
            slot.token = None;
        }
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<AccessToken, ApiError> {
        tracing::debug!(client_id = %self.credentials.client_id, "requesting a 1NCE access token");
        let started = Instant::now();
        let response = http
            .post(self.token_url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                self.credentials.basic_header().expose_secret(),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&serde_json::json!({ "grant_type": "client_credentials" }))
            .send()
            .await
            .map_err(|e| ApiError::Unreachable {
                reason: super::error::describe_transport(&e, timeout),
            })?;
        let status = response.status();
        let retry_after = super::retry_after(response.headers());
        let body = super::read_body(response, timeout).await?;
        if status.is_success() {
            let parsed: TokenResponse =
                serde_json::from_slice(&body).map_err(|_| ApiError::BadResponse {
                    reason: "the token endpoint's answer has no access_token".to_owned(),
                })?;
            if parsed.access_token.is_empty() {
                return Err(ApiError::BadResponse {
                    reason: "the token endpoint returned an empty access_token".to_owned(),
                });
            }
            let lifetime = parsed
                .expires_in
                .as_ref()
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_LIFETIME);
            let margin = MAX_RENEW_MARGIN.min(lifetime / 10);
            tracing::info!(
                expires_in_s = lifetime.as_secs(),
                took_ms = started.elapsed().as_millis() as u64,
                "obtained a 1NCE access token"
            );
            return Ok(AccessToken {
                secret: SecretString::from(parsed.access_token),
                renew_at: started + lifetime.saturating_sub(margin),
                expires_at: started + lifetime,
            });
        }
        let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        tracing::warn!(status = status.as_u16(), code = ?error.error_code, "1NCE refused the token request");
        Err(match status.as_u16() {
            400 | 401 | 403 => ApiError::Authentication {
                code: error.error_code,
                message: error
                    .message
                    .unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
            },
            429 => ApiError::RateLimited { retry_after },
            s if s >= 500 => ApiError::Upstream { status: s },
            s => ApiError::Rejected {
                status: s,
                code: error.error_code,
                message: error
                    .message
                    .unwrap_or_else(|| "the token endpoint refused the request".to_owned()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials::new("id-123", "very-secret-value");
        let shown = format!("{c:?}");
        assert!(shown.contains("id-123"));
        assert!(!shown.contains("very-secret-value"));
        let t = AccessToken {
            secret: SecretString::from("tok-abc".to_owned()),
            renew_at: Instant::now(),
            expires_at: Instant::now(),
        };
        assert!(!format!("{t:?}").contains("tok-abc"));
    }
}
