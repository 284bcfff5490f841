//! Opaque access tokens, checked by asking the authorization server (RFC 7662 token
//! introspection) as this server's own client (`--oauth-client-id`, `ONCE_OAUTH_CLIENT_SECRET`).
//!
//! The answer is held to the same rules as a JWT: active, issued by the issuer, for this
//! resource (`aud` must name it: a token for another resource is refused), within `exp` and
//! `nbf`, with a subject, and not a refresh token. Anybody can send a made-up token, and each
//! would cost the authorization server a request: introspections are limited to
//! [`LIMIT`]; past it a token is answered 503 "try again" without asking.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{LEEWAY_SECS, ScopeList, TokenError};
use crate::rate_limit::{RateLimit, RateLimiter};

/// Most introspections: 50 a second, in bursts of 50.
pub const LIMIT: RateLimit = RateLimit {
    requests: 50,
    per: Duration::from_secs(1),
    burst: 50,
};

/// The introspection endpoint and this server's credentials for it.
pub struct Introspector {
    http: reqwest::Client,
    endpoint: Url,
    client_id: String,
    secret: SecretString,
    limiter: RateLimiter,
}

/// What an introspection answer says of a token (RFC 7662 §2.2).
#[derive(Deserialize)]
pub struct Answer {
    #[serde(default)]
    active: bool,
    pub scope: Option<String>,
    pub scp: Option<ScopeList>,
    pub sub: Option<String>,
    pub email: Option<String>,
    pub preferred_username: Option<String>,
    pub exp: Option<u64>,
    nbf: Option<u64>,
    iss: Option<String>,
    aud: Option<Audience>,
    token_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Introspector {
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        client_id: String,
        secret: SecretString,
    ) -> Introspector {
        Introspector {
            http,
            endpoint,
            client_id,
            secret,
            limiter: RateLimiter::new(LIMIT),
        }
    }

    /// Asks the authorization server about `token` and checks its answer against `issuer`
    /// and `resource` (see the module docs).
    pub async fn introspect(
        &self,
        token: &str,
        issuer: &str,
        resource: &str,
    ) -> Result<Answer, TokenError> {
        if self.limiter.reserve(Duration::ZERO).is_err() {
            return Err(TokenError::Busy);
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let response = self
            .http
            .post(self.endpoint.clone())
            .basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(self.secret.expose_secret())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(
                    "token introspection at {} failed: {}",
                    self.endpoint,
                    super::without_url(&e)
                );
                TokenError::Unavailable
            })?;
        let status = response.status();
        if !status.is_success() {
            tracing::warn!(
                "token introspection at {} answered HTTP {status}{}",
                self.endpoint,
                if status == reqwest::StatusCode::UNAUTHORIZED {
                    ": check --oauth-client-id and ONCE_OAUTH_CLIENT_SECRET"
                } else {
                    ""
                }
            );
            return Err(TokenError::Unavailable);
        }
        let answer: Answer = response.json().await.map_err(|e| {
            tracing::warn!(
                "token introspection at {} answered no JSON: {}",
                self.endpoint,
                super::without_url(&e)
            );
            TokenError::Unavailable
        })?;
        answer.check(issuer, resource, jsonwebtoken::get_current_timestamp())?;
        Ok(answer)
    }
}

impl Answer {
    fn check(&self, issuer: &str, resource: &str, now: u64) -> Result<(), TokenError> {
        if !self.active {
            return Err(TokenError::Inactive);
        }
        if self.token_type.as_deref() == Some("refresh_token") {
            return Err(TokenError::Inactive);
        }
        if self.iss.as_deref().is_some_and(|iss| iss != issuer) {
            return Err(TokenError::Issuer);
        }
        let bare = resource.trim_end_matches('/');
        let ours = |a: &String| a.trim_end_matches('/') == bare;
        let for_us = match &self.aud {
            Some(Audience::One(a)) => ours(a),
            Some(Audience::Many(list)) => list.iter().any(ours),
            None => false,
        };
        if !for_us {
            return Err(TokenError::Audience);
        }
        if self
            .exp
            .is_some_and(|exp| now >= exp.saturating_add(LEEWAY_SECS))
        {
            return Err(TokenError::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf)
        {
            return Err(TokenError::NotYetValid);
        }
        if self.sub.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(TokenError::MissingClaim("sub"));
        }
        Ok(())
    }
}

/// `application/x-www-form-urlencoded` of a client id or secret, as RFC 6749 §2.3.1 wants
/// them in HTTP Basic.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: serde_json::Value) -> Answer {
        serde_json::from_value(json).unwrap()
    }

    const ISS: &str = "https://idp.example";
    const RES: &str = "https://mcp.example.com/mcp";

    #[test]
    fn answers_are_held_to_the_rules_of_a_jwt() {
        let good = serde_json::json!({"active": true, "sub": "alice", "aud": RES, "iss": ISS,
            "exp": 2_000, "scope": "orders:read"});
        assert!(answer(good.clone()).check(ISS, RES, 1_000).is_ok());
        let with = |k: &str, v: serde_json::Value| {
            let mut a = good.clone();
            a[k] = v;
            answer(a).check(ISS, RES, 1_000).unwrap_err()
        };
        assert_eq!(with("active", false.into()), TokenError::Inactive);
        assert_eq!(
            with("token_type", "refresh_token".into()),
            TokenError::Inactive
        );
        assert_eq!(with("iss", "https://other".into()), TokenError::Issuer);
        assert_eq!(
            with("aud", "https://other/mcp".into()),
            TokenError::Audience
        );
        assert_eq!(with("aud", serde_json::Value::Null), TokenError::Audience);
        assert_eq!(with("exp", 900.into()), TokenError::Expired);
        assert_eq!(with("nbf", 1_100.into()), TokenError::NotYetValid);
        assert_eq!(with("sub", "".into()), TokenError::MissingClaim("sub"));
        let mut listed = good.clone();
        listed["aud"] = serde_json::json!(["https://other", format!("{RES}/")]);
        assert!(answer(listed).check(ISS, RES, 1_000).is_ok());
        assert!(
            answer(serde_json::json!({"active": false}))
                .check(ISS, RES, 0)
                .is_err()
        );
    }

    #[test]
    fn credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }
}
