//! Opaque access tokens, checked by asking the authorization server (RFC 7662 token
//! introspection) as this server's own client (`--oauth-client-id`, `ONCE_OAUTH_CLIENT_SECRET`).
//!
//! The answer is held to the same rules as a JWT: active, issued by the issuer, for this
//! resource (`aud` must name it or an `--oauth-audience`: a token for another resource is
//! refused), within `exp` and
//! `nbf`, with a subject, and not a refresh token. Anybody can send a made-up token, and each
//! would cost the authorization server a request: introspections are limited to
//! [`LIMIT`]; past it a token is answered 503 "try again" without asking.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{Audiences, LEEWAY_SECS, Mismatch, Named, ScopeList, TokenError};
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
    /// and `audiences` (see the module docs).
    pub async fn introspect(
        &self,
        token: &str,
        issuer: &str,
        audiences: &Audiences,
    ) -> Result<Answer, TokenError> {
        if self.limiter.reserve(Duration::ZERO).is_err() {
            return Err(TokenError::Busy);
        }
        let response = self.post(token).await.map_err(|e| {
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
        answer.check(issuer, audiences, jsonwebtoken::get_current_timestamp())?;
        Ok(answer)
    }

    /// For `check`: asks about a made-up token, which any introspection endpoint that takes
    /// this server's credentials answers `{"active": false}`. `Ok` says where; `Err` what to
    /// fix.
    pub async fn probe(&self) -> Result<String, String> {
        let endpoint = &self.endpoint;
        let response = self
            .post("1nce-mcp-check-made-up-token")
            .await
            .map_err(|e| format!("{endpoint} did not answer ({})", super::without_url(&e)))?;
        let status = response.status();
        if matches!(status.as_u16(), 400 | 401 | 403) {
            return Err(format!(
                "{endpoint} refused this server's client (HTTP {status}): check --oauth-client-id {:?} and its secret in ONCE_OAUTH_CLIENT_SECRET, and that the client may introspect tokens",
                self.client_id
            ));
        }
        if !status.is_success() {
            return Err(format!("{endpoint} answered HTTP {status}"));
        }
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| format!("{endpoint} answered no JSON ({})", super::without_url(&e)))?;
        if answer.active {
            return Err(format!(
                "{endpoint} called a made-up token active: it would vouch for any token"
            ));
        }
        Ok(format!(
            "{endpoint} takes --oauth-client-id {:?} and its secret",
            self.client_id
        ))
    }

    /// POSTs `token` to the endpoint with this server's credentials.
    async fn post(&self, token: &str) -> reqwest::Result<reqwest::Response> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        self.http
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
    }
}

impl Answer {
    fn check(&self, issuer: &str, audiences: &Audiences, now: u64) -> Result<(), TokenError> {
        if !self.active {
            return Err(TokenError::Inactive);
        }
        if self.token_type.as_deref() == Some("refresh_token") {
            return Err(TokenError::Inactive);
        }
        let aud: Vec<String> = match &self.aud {
            Some(Audience::One(a)) => vec![a.clone()],
            Some(Audience::Many(list)) => list.clone(),
            None => Vec::new(),
        };
        let mismatch = || {
            let named = Named {
                aud: aud.clone(),
                iss: self.iss.clone(),
                kid: None,
            };
            Mismatch::new(audiences, issuer, &named, None)
        };
        if self.iss.as_deref().is_some_and(|iss| iss != issuer) {
            return Err(TokenError::Issuer(mismatch()));
        }
        if !aud.iter().any(|a| audiences.accepts(a)) {
            return Err(TokenError::Audience(mismatch()));
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
        let res = Audiences::new(RES, &[]);
        let good = serde_json::json!({"active": true, "sub": "alice", "aud": RES, "iss": ISS,
            "exp": 2_000, "scope": "orders:read"});
        assert!(answer(good.clone()).check(ISS, &res, 1_000).is_ok());
        let with = |k: &str, v: serde_json::Value| {
            let mut a = good.clone();
            a[k] = v;
            answer(a).check(ISS, &res, 1_000).unwrap_err()
        };
        assert_eq!(with("active", false.into()), TokenError::Inactive);
        assert_eq!(
            with("token_type", "refresh_token".into()),
            TokenError::Inactive
        );
        let other = with("iss", "https://other".into());
        assert!(matches!(other, TokenError::Issuer(_)), "{other:?}");
        assert_eq!(
            other.mismatch().unwrap().to_string(),
            format!(
                "aud: expected \"{RES}\", received \"{RES}\"; iss: expected \"{ISS}\", received \"https://other\"; kid: none"
            )
        );
        let other = with("aud", "https://other/mcp".into());
        assert!(matches!(other, TokenError::Audience(_)), "{other:?}");
        assert!(
            other.mismatch().unwrap().to_string().starts_with(&format!(
                "aud: expected \"{RES}\", received \"https://other/mcp\";"
            )),
            "{other:?}"
        );
        let none = with("aud", serde_json::Value::Null);
        assert!(
            none.mismatch()
                .unwrap()
                .to_string()
                .contains("received none"),
            "{none:?}"
        );
        assert_eq!(with("exp", 900.into()), TokenError::Expired);
        assert_eq!(with("nbf", 1_100.into()), TokenError::NotYetValid);
        assert_eq!(with("sub", "".into()), TokenError::MissingClaim("sub"));
        let mut listed = good.clone();
        listed["aud"] = serde_json::json!(["https://other", format!("{RES}/")]);
        assert!(answer(listed).check(ISS, &res, 1_000).is_ok());
        assert!(
            answer(serde_json::json!({"active": false}))
                .check(ISS, &res, 0)
                .is_err()
        );
    }

    #[test]
    fn an_extra_audience_is_accepted_only_when_named() {
        let entra = "9f3c1c2e-5d1a-4b8e-8a36-2f7c0e1d4b55";
        let claims = serde_json::json!({"active": true, "sub": "alice", "aud": entra,
            "iss": ISS, "exp": 2_000});
        let only_resource = Audiences::new(RES, &[]);
        let err = answer(claims.clone())
            .check(ISS, &only_resource, 1_000)
            .unwrap_err();
        assert!(matches!(err, TokenError::Audience(_)), "{err:?}");
        let named = Audiences::new(RES, &["account".to_owned(), entra.to_owned()]);
        assert!(answer(claims).check(ISS, &named, 1_000).is_ok());
        // The resource stays accepted beside the extra audiences.
        let resource = serde_json::json!({"active": true, "sub": "alice", "aud": RES,
            "iss": ISS, "exp": 2_000});
        assert!(answer(resource).check(ISS, &named, 1_000).is_ok());
    }

    #[test]
    fn credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }
}
