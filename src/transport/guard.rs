//! The gate in front of every MCP endpoint: `Host` and `Origin` first (DNS-rebinding
//! protection: a web page must not reach a server on this machine through a name it controls;
//! the host checked is an absolute-form target's authority when the request has one), then the
//! bearer token: the server's static token, or (OAuth) an access token the
//! [`ResourceServer`] verifies, whose [`Caller`] goes into the request's extensions for the
//! layers behind. A request without a valid token gets 401 with a `WWW-Authenticate`
//! challenge that points OAuth clients to the protected resource metadata.
//!
//! In front of every path, MCP or not, [`one_authority`] holds requests to RFC 9112 §3.2: one
//! `Host` header, and an absolute-form target only with the same authority in `Host`; `400`
//! otherwise.
//!
//! Refusals are logged through [`Refusals`]: what the client sent, cut short and escaped, and
//! counted rather than written line by line.
//!
//! The token is kept only as its SHA-256 digest and compared digest to digest with
//! `subtle`'s constant-time equality: comparing equal-length digests leaks neither the token's
//! length nor how many leading bytes matched.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::refusals::{Reason, Refusals};
use crate::config::normalize_origin;
use crate::oauth::Caller;
#[cfg(feature = "oauth")]
use crate::oauth::{Needed, ResourceServer, TokenError};

/// Checks `Host`, `Origin` and `Authorization` of each request.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    token_digest: Option<[u8; 32]>,
    /// OAuth instead of the static token.
    #[cfg(feature = "oauth")]
    oauth: Option<Arc<ResourceServer>>,
    /// `(host, port)`; a `None` port matches any port. Empty: any host.
    allowed_hosts: Vec<(String, Option<u16>)>,
    /// Normalised origins allowed besides loopback ones.
    allowed_origins: Vec<String>,
    refusals: Refusals,
}

impl Guard {
    pub fn new(
        token: Option<&SecretString>,
        allowed_hosts: &[String],
        allowed_origins: &[String],
        refusals: Refusals,
    ) -> Guard {
        let allowed_hosts = allowed_hosts
            .iter()
            .filter_map(|h| parse_authority(h))
            .collect();
        Guard {
            inner: Arc::new(Inner {
                token_digest: token.map(|t| Sha256::digest(t.expose_secret().as_bytes()).into()),
                #[cfg(feature = "oauth")]
                oauth: None,
                allowed_hosts,
                allowed_origins: allowed_origins.to_vec(),
                refusals,
            }),
        }
    }

    /// The guard with OAuth instead of the static token, when `oauth` is given.
    #[cfg(feature = "oauth")]
    pub fn with_oauth(self, oauth: Option<Arc<ResourceServer>>) -> Guard {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.oauth = oauth;
        Guard {
            inner: Arc::new(inner),
        }
    }

    /// Whether a bearer token is required.
    pub fn requires_token(&self) -> bool {
        #[cfg(feature = "oauth")]
        if self.inner.oauth.is_some() {
            return true;
        }
        self.inner.token_digest.is_some()
    }

    /// `Err` with the response to send when the request must not go further: the host it is
    /// for, `Origin`, and the static token if there is one (OAuth tokens are checked by
    /// [`Guard::authenticate`]). The host is the authority of an absolute-form target
    /// (`POST http://127.0.0.1:8080/mcp`), which RFC 9112 §3.2.2 puts before `Host`, and
    /// `Host` otherwise; [`Guard::check_authority`] has made sure before that they agree.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        self.check_host(uri, headers)?;
        self.check_origin(headers)?;
        self.check_token(headers)
    }

    /// RFC 9112 §3.2 for every request, whatever its path: `400` for more than one `Host`
    /// header (the first is not the one every reader takes), and for an absolute-form target
    /// whose authority is not the `Host` header's (the two name different servers, and which one
    /// wins differs between an origin server and whatever stands in front of it).
    pub fn check_authority(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            let all: Vec<&[u8]> = headers
                .get_all(header::HOST)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            self.inner
                .refusals
                .note(Reason::AmbiguousHost, Some(&all.join(&b", "[..])));
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Bad Request: more than one Host header; send exactly one (RFC 9112 section 3.2)",
            ));
        }
        let Some(target) = uri.authority() else {
            return Ok(());
        };
        // A port left out is the scheme's default, in the target and in Host alike.
        let default_port = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
            Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
            _ => None,
        };
        let named = |authority: &str| {
            parse_authority(authority).map(|(name, port)| (name, port.or(default_port)))
        };
        let same = host
            .and_then(|h| h.to_str().ok())
            .and_then(named)
            .is_some_and(|host| named(target.as_str()) == Some(host));
        if same {
            return Ok(());
        }
        let sent = format!(
            "{target} (Host: {})",
            host.map(|h| String::from_utf8_lossy(h.as_bytes()))
                .unwrap_or_default()
        );
        self.inner
            .refusals
            .note(Reason::AmbiguousHost, Some(sent.as_bytes()));
        Err(refuse(
            StatusCode::BAD_REQUEST,
            "Bad Request: the request target names another host than the Host header; send the path alone (`POST /mcp`) with the server's name in Host (RFC 9112 section 3.2)",
        ))
    }

    /// Without OAuth (a build without the cargo feature `oauth`) no request has a caller.
    #[cfg(not(feature = "oauth"))]
    pub async fn authenticate(&self, _headers: &HeaderMap) -> Result<Option<Caller>, Response> {
        Ok(None)
    }

    /// With OAuth, verifies the request's access token: `Ok(Some(caller))` for a valid one,
    /// `Err` with the 401 to send otherwise. Without OAuth, `Ok(None)`.
    #[cfg(feature = "oauth")]
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, Response> {
        let Some(oauth) = &self.inner.oauth else {
            return Ok(None);
        };
        let Some(token) = bearer(headers) else {
            self.inner.refusals.note(Reason::MissingToken, None);
            return Err(oauth_unauthorized(
                oauth,
                None,
                "Unauthorized: this server takes OAuth access tokens. Discover the authorization server from the resource_metadata URL in WWW-Authenticate, sign in there, and send the access token as `Authorization: Bearer <token>`",
            ));
        };
        match oauth.verify(token).await {
            Ok(caller) => Ok(Some(caller)),
            // Not the token's fault: a new token would not help, a moment's wait may.
            Err(error @ (TokenError::Unavailable | TokenError::Busy)) => {
                let why = error.to_string();
                self.inner
                    .refusals
                    .explain(Reason::InvalidToken, why.clone());
                Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    format!("Service Unavailable: {why}"),
                )
                    .into_response())
            }
            Err(error) => {
                let why = error.to_string();
                // The client is told the reason; the log also what was expected and named.
                match error.mismatch() {
                    Some(mismatch) => self
                        .inner
                        .refusals
                        .explain(Reason::ForeignToken, format!("{why}; {mismatch}")),
                    None => self
                        .inner
                        .refusals
                        .explain(Reason::InvalidToken, why.clone()),
                }
                Err(oauth_unauthorized(
                    oauth,
                    Some(&error),
                    &format!(
                        "Unauthorized: {why}; get a new access token from the authorization server"
                    ),
                ))
            }
        }
    }

    /// With OAuth, the 403 for a caller whose token lacks what a request needs, with the
    /// `WWW-Authenticate` challenge a client steps up with.
    #[cfg(feature = "oauth")]
    pub fn insufficient_scope(&self, needed: Needed) -> Response {
        let scope = needed.scope().unwrap_or_default();
        self.inner
            .refusals
            .note(Reason::InsufficientScope, Some(scope.as_bytes()));
        let mut response = (
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden: this request needs the {scope} scope, which your access token does not carry; ask the authorization server for a token with it"
            ),
        )
            .into_response();
        if let Some(oauth) = &self.inner.oauth
            && let Ok(value) = HeaderValue::from_str(&oauth.insufficient_scope(scope))
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    fn check_host(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        if self.inner.allowed_hosts.is_empty() {
            return Ok(());
        }
        let target = uri.authority().map(|a| a.as_str());
        let raw = headers.get(header::HOST);
        let Some(host) = target.or_else(|| raw.and_then(|h| h.to_str().ok())) else {
            self.inner
                .refusals
                .note(Reason::MissingHost, raw.map(HeaderValue::as_bytes));
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Bad Request: missing or unreadable Host header",
            ));
        };
        let allowed = parse_authority(host).is_some_and(|(name, port)| {
            self.inner
                .allowed_hosts
                .iter()
                .any(|(a, p)| *a == name && p.is_none_or(|p| Some(p) == port))
        });
        if allowed {
            Ok(())
        } else {
            self.inner
                .refusals
                .note(Reason::ForeignHost, Some(host.as_bytes()));
            Err(refuse(
                StatusCode::FORBIDDEN,
                "Forbidden: this server does not answer to that Host name (DNS-rebinding protection). If clients reach it under this name, start it with --allowed-host NAME",
            ))
        }
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        // No Origin: not a browser (or a same-origin GET), so no cross-site request.
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let allowed = origin
            .to_str()
            .ok()
            .and_then(|o| normalize_origin(o).ok())
            .is_some_and(|o| is_loopback_origin(&o) || self.inner.allowed_origins.contains(&o));
        if allowed {
            Ok(())
        } else {
            self.inner
                .refusals
                .note(Reason::ForeignOrigin, Some(origin.as_bytes()));
            Err(refuse(
                StatusCode::FORBIDDEN,
                "Forbidden: requests from this Origin are not allowed. To let a web client on that origin connect, start the server with --allowed-origin ORIGIN",
            ))
        }
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(expected) = &self.inner.token_digest else {
            return Ok(());
        };
        let Some(presented) = bearer(headers) else {
            self.inner.refusals.note(Reason::MissingToken, None);
            return Err(unauthorized(
                "Bearer realm=\"1nce-mcp\"",
                "Unauthorized: send the server's token as `Authorization: Bearer <token>` (set on the server through ONCE_MCP_HTTP_TOKEN or --http-token-file)",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(expected)) {
            Ok(())
        } else {
            self.inner.refusals.note(Reason::WrongToken, None);
            Err(unauthorized(
                "Bearer realm=\"1nce-mcp\", error=\"invalid_token\"",
                "Unauthorized: the bearer token is not this server's token",
            ))
        }
    }
}

/// axum middleware running [`Guard::check`], then [`Guard::authenticate`]; a verified caller
/// goes into the request's extensions.
pub async fn middleware(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    if let Err(refusal) = guard.check(request.uri(), request.headers()) {
        return refusal.into_response();
    }
    match guard.authenticate(request.headers()).await {
        Ok(Some(caller)) => {
            request.extensions_mut().insert(caller);
        }
        Ok(None) => {}
        Err(response) => return response,
    }
    next.run(request).await
}

/// axum middleware running [`Guard::check_authority`], in front of every path.
pub async fn one_authority(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if let Err(refusal) = guard.check_authority(request.uri(), request.headers()) {
        return refusal.into_response();
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
}

/// A 401 with the OAuth challenge (RFC 9728 §5.1, RFC 6750 §3).
#[cfg(feature = "oauth")]
fn oauth_unauthorized(
    oauth: &ResourceServer,
    error: Option<&TokenError>,
    message: &str,
) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, message.to_owned()).into_response();
    if let Ok(value) = HeaderValue::from_str(&oauth.challenge(error)) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Why a request is turned away, and the response that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: &'static str,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<&'static str>,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.message).into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

fn refuse(status: StatusCode, message: &'static str) -> Rejection {
    Rejection {
        status,
        message,
        challenge: None,
    }
}

fn unauthorized(challenge: &'static str, message: &'static str) -> Rejection {
    Rejection {
        status: StatusCode::UNAUTHORIZED,
        message,
        challenge: Some(challenge),
    }
}

/// `host[:port]` as lower-case host (IPv6 without brackets) and optional port.
fn parse_authority(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    // A bare IPv6 address (`::1`) is not an authority, but is a fine allowed host.
    if let Ok(std::net::IpAddr::V6(ip)) = s.parse() {
        return Some((ip.to_string(), None));
    }
    let authority: axum::http::uri::Authority = s.parse().ok()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((host, authority.port_u16()))
}

/// Pages served from this machine's loopback addresses are as trusted as local processes.
fn is_loopback_origin(origin: &str) -> bool {
    url::Url::parse(origin).is_ok_and(|url| crate::is_loopback_url(&url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn loopback_guard(token: Option<&str>, origins: &[&str]) -> Guard {
        let token = token.map(|t| SecretString::from(t.to_owned()));
        let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        Guard::new(token.as_ref(), &hosts, &origins, Refusals::default())
    }

    fn mcp() -> Uri {
        Uri::from_static("/mcp")
    }

    fn status(result: Result<(), Rejection>) -> Option<StatusCode> {
        result.err().map(|r| r.status)
    }

    #[test]
    fn hosts_are_matched_by_name_with_any_port() {
        let g = loopback_guard(None, &[]);
        for host in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:9"] {
            assert_eq!(
                status(g.check(&mcp(), &headers(&[("host", host)]))),
                None,
                "{host}"
            );
        }
        for host in [
            "evil.example:8080",
            "127.0.0.2:8080",
            "localhost.evil.example",
        ] {
            assert_eq!(
                status(g.check(&mcp(), &headers(&[("host", host)]))),
                Some(StatusCode::FORBIDDEN),
                "{host}"
            );
        }
        assert_eq!(
            status(g.check(&mcp(), &headers(&[]))),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn origins_must_be_loopback_or_listed() {
        let g = loopback_guard(None, &["https://app.example.com"]);
        let with = |o: &str| headers(&[("host", "127.0.0.1:1"), ("origin", o)]);
        for ok in [
            "http://localhost:6274",
            "http://127.0.0.1:3000",
            "https://app.example.com",
            "https://APP.example.com:443",
        ] {
            assert_eq!(status(g.check(&mcp(), &with(ok))), None, "{ok}");
        }
        for bad in [
            "https://evil.example",
            "null",
            "http://app.example.com",
            "garbage",
        ] {
            assert_eq!(
                status(g.check(&mcp(), &with(bad))),
                Some(StatusCode::FORBIDDEN),
                "{bad}"
            );
        }
    }

    #[test]
    fn bearer_tokens_are_required_when_configured() {
        let token = "a-long-enough-test-token-1234";
        let g = loopback_guard(Some(token), &[]);
        let with = |auth: Option<&str>| {
            let mut h = headers(&[("host", "localhost")]);
            if let Some(a) = auth {
                h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
            }
            h
        };
        assert_eq!(
            status(g.check(&mcp(), &with(Some(&format!("Bearer {token}"))))),
            None
        );
        assert_eq!(
            status(g.check(&mcp(), &with(Some(&format!("bearer {token}"))))),
            None
        );
        for bad in [None, Some("Bearer nope"), Some(token), Some("Basic abc")] {
            let refusal = g.check(&mcp(), &with(bad)).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNAUTHORIZED, "{bad:?}");
            let response = refusal.into_response();
            assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        assert!(!loopback_guard(None, &[]).requires_token());
    }

    #[test]
    fn two_host_headers_are_a_bad_request_in_either_order() {
        let g = loopback_guard(None, &[]);
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("127.0.0.1"));
        h.append(header::HOST, HeaderValue::from_static("evil.example"));
        assert_eq!(
            status(g.check_authority(&mcp(), &h)),
            Some(StatusCode::BAD_REQUEST)
        );
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("evil.example"));
        h.append(header::HOST, HeaderValue::from_static("127.0.0.1"));
        assert_eq!(
            status(g.check_authority(&mcp(), &h)),
            Some(StatusCode::BAD_REQUEST)
        );
        // Also when any host is allowed: the rule is HTTP's, not the allow list's.
        let any = Guard::new(None, &[], &[], Refusals::default());
        assert_eq!(
            status(any.check_authority(&mcp(), &h)),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(g.check_authority(&mcp(), &headers(&[("host", "127.0.0.1")]))),
            None
        );
    }

    #[test]
    fn an_absolute_target_must_name_the_host_of_the_host_header_and_is_checked() {
        let g = loopback_guard(None, &[]);
        let target = |t: &'static str| Uri::from_static(t);
        let host = |h: &str| headers(&[("host", h)]);
        for (uri, h) in [
            ("http://127.0.0.1:8080/mcp", "127.0.0.1:8080"),
            ("http://LOCALHOST/mcp", "localhost:80"),
            ("https://localhost/mcp", "localhost:443"),
            ("http://[::1]:9/mcp", "[::1]:9"),
        ] {
            assert_eq!(
                status(g.check_authority(&target(uri), &host(h))),
                None,
                "{uri} {h}"
            );
            assert_eq!(status(g.check(&target(uri), &host(h))), None, "{uri} {h}");
        }
        for (uri, h) in [
            ("http://evil.example/mcp", "127.0.0.1"),
            ("http://127.0.0.1/mcp", "evil.example"),
            ("http://127.0.0.1:8080/mcp", "127.0.0.1:8081"),
            ("http://127.0.0.1/mcp", "127.0.0.1:8080"),
        ] {
            assert_eq!(
                status(g.check_authority(&target(uri), &host(h))),
                Some(StatusCode::BAD_REQUEST),
                "{uri} {h}"
            );
        }
        assert_eq!(
            status(g.check_authority(&target("http://127.0.0.1/mcp"), &headers(&[]))),
            Some(StatusCode::BAD_REQUEST)
        );
        // The target's authority, not Host, is what the allow list is held to.
        assert_eq!(
            status(g.check(&target("http://evil.example/mcp"), &host("127.0.0.1"))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(g.check(&target("http://evil.example/mcp"), &host("evil.example"))),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
