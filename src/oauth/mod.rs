//! Who calls, over HTTP: the scopes a request needs and a caller has ([`Needed`], [`Scopes`]),
//! and the [`Caller`] the MCP layer reads. With the cargo feature `oauth` (on by default), the
//! OAuth 2.1 resource server that finds them: the HTTP transport trusts the organisation's own
//! authorization server (Keycloak, Auth0, Okta, Entra ID…) and issues no tokens itself.
//!
//! - `discovery`: the authorization server's metadata (RFC 8414, or OpenID Connect
//!   discovery), read once at start-up, its `issuer` checked against the configured one.
//! - `keys`: its signing keys (JWKS), cached; refreshed when a token names a key not in the
//!   cache, at most once per `keys::REFRESH_FLOOR`, so a flood of made-up key ids costs the
//!   authorization server nothing.
//! - `ResourceServer::verify`: every request's JWT access token (RFC 9068): signature under an
//!   allowed algorithm (asymmetric only: never `none`, never HMAC, whose "secret" would be the
//!   public key), `iss`, `aud` naming this server's public URL (RFC 8707: a token for another
//!   resource is refused, never passed on) or an audience the operator added (`Audiences`),
//!   `exp` and `nbf` with `LEEWAY_SECS` of leeway. What passes becomes a [`Caller`]: the
//!   person and the scopes they granted. A token of another issuer or audience, or signed by a
//!   key the issuer does not publish, is refused with a `Mismatch` for the log: what was
//!   expected and what the token named, which is how a misconfiguration shows itself.
//! - The protected resource metadata (RFC 9728) clients discover the authorization server
//!   from, and the `WWW-Authenticate` challenges that point to it.
//! - `probe`: the same discovery for `1nce-mcp check`, one line per step.
//!
//! - `signatures`: the tokens' signatures, checked with ring as jsonwebtoken's crypto provider.
//! - `introspection`: opaque access tokens, when this server has a client of its own at the
//!   authorization server (`--oauth-client-id`): asked about (RFC 7662), held to the same
//!   rules, at a limited rate.
//!
//! Without the feature no request carries a [`Caller`], and `config` refuses the OAuth flags.
//! Knows HTTP and JWTs, never MCP or 1NCE.

#[cfg(feature = "oauth")]
pub mod discovery;
#[cfg(feature = "oauth")]
pub mod introspection;
#[cfg(feature = "oauth")]
pub mod keys;
#[cfg(feature = "oauth")]
mod signatures;

#[cfg(feature = "oauth")]
use std::collections::HashMap;
#[cfg(feature = "oauth")]
use std::fmt;
#[cfg(feature = "oauth")]
use std::time::Duration;

#[cfg(feature = "oauth")]
use jsonwebtoken::{Algorithm, Validation};
#[cfg(feature = "oauth")]
use secrecy::SecretString;
#[cfg(feature = "oauth")]
use serde::Deserialize;
#[cfg(feature = "oauth")]
use sha2::{Digest, Sha256};
#[cfg(feature = "oauth")]
use url::Url;

use crate::orders::Person;

/// Clock skew tolerated on `exp` and `nbf`.
#[cfg(feature = "oauth")]
pub const LEEWAY_SECS: u64 = 30;
/// The scope that reads: list, get, find, products, resources, prompts.
pub const READ_SCOPE: &str = "orders:read";
/// The scope that orders (`create_order`).
pub const WRITE_SCOPE: &str = "orders:write";
/// How long a verified token is taken as verified without a new check: never past its `exp`,
/// nor past a change of the authorization server's keys.
#[cfg(feature = "oauth")]
pub const REMEMBER_VERIFIED: Duration = Duration::from_secs(60);
/// Most tokens remembered as verified.
#[cfg(feature = "oauth")]
const MAX_REMEMBERED: usize = 10_000;
/// Longest claim value kept (names, subjects): an audit line is not a document.
#[cfg(feature = "oauth")]
const MAX_CLAIM_CHARS: usize = 256;
/// How long a request to the authorization server may take.
#[cfg(feature = "oauth")]
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest metadata or JWKS document read.
#[cfg(feature = "oauth")]
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Longest value a token named that a [`Mismatch`] quotes, and most audiences it lists.
#[cfg(feature = "oauth")]
const MAX_QUOTED_CHARS: usize = 100;
#[cfg(feature = "oauth")]
const MAX_QUOTED_VALUES: usize = 4;

/// The signature algorithms accepted: asymmetric ones only. A token's header names its
/// algorithm, and the key it names must be of that family.
#[cfg(feature = "oauth")]
const ALLOWED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes {
    pub read: bool,
    pub write: bool,
}

impl Scopes {
    /// Everything: a transport that does not use OAuth (stdio, a static bearer token).
    pub const ALL: Scopes = Scopes {
        read: true,
        write: true,
    };

    /// The scopes of a space-separated `scope` claim (RFC 9068), or of an `scp` claim as a
    /// list or a string (Okta, Entra ID).
    #[cfg(feature = "oauth")]
    fn from_claims(scope: Option<&str>, scp: Option<&ScopeList>) -> Scopes {
        let mut names: Vec<&str> = scope
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default();
        match scp {
            Some(ScopeList::Many(list)) => names.extend(list.iter().map(String::as_str)),
            Some(ScopeList::One(s)) => names.extend(s.split_whitespace()),
            None => {}
        }
        Scopes {
            read: names.contains(&READ_SCOPE),
            write: names.contains(&WRITE_SCOPE),
        }
    }

    /// Whether these scopes allow a request that needs `needed`.
    pub fn allow(&self, needed: Needed) -> bool {
        match needed {
            Needed::Nothing => true,
            Needed::Read => self.read,
            Needed::Write => self.write,
        }
    }
}

/// The scope a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Session housekeeping: initialize, ping, notifications, tools/list (filtered).
    Nothing,
    Read,
    Write,
}

impl Needed {
    pub fn scope(self) -> Option<&'static str> {
        match self {
            Needed::Nothing => None,
            Needed::Read => Some(READ_SCOPE),
            Needed::Write => Some(WRITE_SCOPE),
        }
    }
}

/// Who sent a request, as a valid access token says: put in the request's extensions by the
/// HTTP transport, read by the MCP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub person: Person,
    pub scopes: Scopes,
}

/// Why a token is refused. The description goes to the client in `error_description` and
/// to the log: it never quotes the token.
#[cfg(feature = "oauth")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is not a JWT; this server accepts JWT access tokens only")]
    Malformed,
    #[error(
        "the access token is not active (expired, revoked or unknown to the authorization server)"
    )]
    Inactive,
    #[error(
        "the access token could not be checked: the authorization server did not answer; try again shortly"
    )]
    Unavailable,
    #[error("too many unknown access tokens are being checked; try again in a second")]
    Busy,
    #[error("the access token's algorithm is not accepted (asymmetric signatures only)")]
    Algorithm,
    #[error("the access token is signed with a key the authorization server does not publish")]
    UnknownKey(Mismatch),
    #[error("the access token's signature is invalid")]
    Signature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was issued by another authorization server")]
    Issuer(Mismatch),
    #[error("the access token is for another resource (its audience is not this server)")]
    Audience(Mismatch),
    #[error("the access token lacks the {0} claim")]
    MissingClaim(&'static str),
}

#[cfg(feature = "oauth")]
impl TokenError {
    /// For the log, never the client: what was expected and what the token named, when the
    /// token is of another issuer or audience, or names a key that is not published.
    pub fn mismatch(&self) -> Option<&Mismatch> {
        match self {
            TokenError::UnknownKey(m) | TokenError::Issuer(m) | TokenError::Audience(m) => Some(m),
            _ => None,
        }
    }
}

/// What a refused token named against what this server expects: the audiences, the issuer and
/// the key id. None of it is secret (the token is not quoted), and it is what an operator needs
/// to see why every token of a new setup is refused. The token's values are quoted escaped and
/// cut short: a made-up token chooses them.
#[cfg(feature = "oauth")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(String);

#[cfg(feature = "oauth")]
impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token (or its introspection) named, unverified: for a [`Mismatch`] only.
#[cfg(feature = "oauth")]
#[derive(Debug, Default)]
struct Named {
    aud: Vec<String>,
    iss: Option<String>,
    kid: Option<String>,
}

#[cfg(feature = "oauth")]
impl Named {
    /// The `kid` of a JWT's header and the `iss` and `aud` of its payload, as far as they can
    /// be read, without any check.
    fn of_jwt(token: &str) -> Named {
        use base64::Engine as _;
        let decode = |part: Option<&str>| {
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part?.trim_end_matches('='))
                .ok()?;
            serde_json::from_slice::<serde_json::Value>(&json).ok()
        };
        let mut parts = token.split('.');
        let header = decode(parts.next());
        let payload = decode(parts.next());
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Named {
            kid: header.as_ref().and_then(|h| h.get("kid")).and_then(text),
            iss: payload.as_ref().and_then(|p| p.get("iss")).and_then(text),
            aud: match payload.as_ref().and_then(|p| p.get("aud")) {
                Some(serde_json::Value::String(a)) => vec![a.clone()],
                Some(serde_json::Value::Array(list)) => list.iter().filter_map(text).collect(),
                _ => Vec::new(),
            },
        }
    }
}

#[cfg(feature = "oauth")]
impl Mismatch {
    /// `aud: expected … , received …; iss: expected …, received …; kid: …`, with the key ids
    /// the issuer publishes when `published` is given (a key that was not found).
    fn new(
        audiences: &Audiences,
        issuer: &str,
        named: &Named,
        published: Option<&[String]>,
    ) -> Mismatch {
        let quote = |v: &str| {
            let cut: String = v.chars().take(MAX_QUOTED_CHARS).collect();
            if cut.len() < v.len() {
                format!("{cut:?}…")
            } else {
                format!("{cut:?}")
            }
        };
        let list = |values: &[String], joiner: &str| {
            if values.is_empty() {
                return "none".to_owned();
            }
            let mut shown: Vec<String> = values
                .iter()
                .take(MAX_QUOTED_VALUES)
                .map(|v| quote(v))
                .collect();
            if values.len() > MAX_QUOTED_VALUES {
                shown.push(format!("{} more", values.len() - MAX_QUOTED_VALUES));
            }
            shown.join(joiner)
        };
        let mut text = format!(
            "aud: expected {}, received {}; iss: expected {}, received {}; kid: {}",
            list(&audiences.expected(), " or "),
            list(&named.aud, ", "),
            quote(issuer),
            named
                .iss
                .as_deref()
                .map_or_else(|| "none".to_owned(), quote),
            named
                .kid
                .as_deref()
                .map_or_else(|| "none".to_owned(), quote),
        );
        if let Some(published) = published {
            text.push_str(&format!(", published: {}", list(published, ", ")));
        }
        Mismatch(text)
    }
}

/// The audiences an access token may name (any one of them): this server's resource URL, its
/// public URL, with or without a trailing slash (URL parsing adds one to a bare host, and
/// authorization servers store an audience as it was typed), and the operator's extra ones
/// (`--oauth-audience`) exactly as given, for authorization servers that name an API their own
/// way (Entra ID: the application's client id; Keycloak by default: `account`).
#[cfg(feature = "oauth")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audiences {
    resource: String,
    extra: Vec<String>,
}

#[cfg(feature = "oauth")]
impl Audiences {
    pub fn new(resource: &str, extra: &[String]) -> Audiences {
        let mut unique: Vec<String> = Vec::new();
        for a in extra {
            if !unique.contains(a) && a.trim_end_matches('/') != resource.trim_end_matches('/') {
                unique.push(a.clone());
            }
        }
        Audiences {
            resource: resource.to_owned(),
            extra: unique,
        }
    }

    /// Whether a token naming `aud` is for this server.
    pub fn accepts(&self, aud: &str) -> bool {
        aud.trim_end_matches('/') == self.resource.trim_end_matches('/')
            || self.extra.iter().any(|a| a == aud)
    }

    /// Every value accepted, for the JWT validation.
    fn accepted(&self) -> Vec<String> {
        let bare = self.resource.trim_end_matches('/');
        let mut all = vec![bare.to_owned(), format!("{bare}/")];
        all.extend(self.extra.iter().cloned());
        all
    }

    /// The resource, then the extra audiences: what a log line says was expected.
    pub fn expected(&self) -> Vec<String> {
        std::iter::once(self.resource.clone())
            .chain(self.extra.iter().cloned())
            .collect()
    }
}

#[cfg(feature = "oauth")]
impl fmt::Display for Audiences {
    /// `https://mcp.example.com/mcp`, or `https://mcp.example.com/mcp (or audience "api://x")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource)?;
        if !self.extra.is_empty() {
            let extra: Vec<String> = self.extra.iter().map(|a| format!("{a:?}")).collect();
            write!(f, " (or audience {})", extra.join(", "))?;
        }
        Ok(())
    }
}

/// The claims read from a verified token.
#[cfg(feature = "oauth")]
#[derive(Deserialize)]
struct Claims {
    exp: Option<u64>,
    sub: Option<String>,
    scope: Option<String>,
    scp: Option<ScopeList>,
    email: Option<String>,
    preferred_username: Option<String>,
}

#[cfg(feature = "oauth")]
#[derive(Deserialize)]
#[serde(untagged)]
pub enum ScopeList {
    Many(Vec<String>),
    One(String),
}

/// The resource server: this server's identity as a protected resource, and the keys of the
/// authorization server it trusts.
#[cfg(feature = "oauth")]
pub struct ResourceServer {
    issuer: String,
    resource: String,
    audiences: Audiences,
    metadata_url: String,
    /// Where this server serves [`Self::metadata`].
    metadata_paths: Vec<String>,
    keys: keys::KeySet,
    /// Opaque tokens, when this server has a client for introspection.
    introspector: Option<introspection::Introspector>,
    /// Tokens verified lately, by SHA-256: a client sends the same token with every request,
    /// and checking its signature again costs more than the rest of a cached read.
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
    /// From the authorization server's metadata, for the start-up report.
    pub notes: Vec<String>,
}

#[cfg(feature = "oauth")]
impl fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServer")
            .field("issuer", &self.issuer)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "oauth")]
impl ResourceServer {
    /// Reads the authorization server's metadata and keys; `Err` says what to fix. Tokens
    /// must name `public_url` or one of `audiences` as their audience. With `introspection`
    /// (this server's client id and secret), opaque tokens are accepted too.
    pub async fn discover(
        issuer: &Url,
        public_url: &Url,
        audiences: &[String],
        introspection: Option<(String, SecretString)>,
    ) -> Result<ResourceServer, String> {
        // Signatures are checked with ring, before any token arrives.
        signatures::install();
        let http = http_client(issuer)?;
        let found = discovery::discover(&http, issuer).await?;
        let introspector = match introspection {
            None => None,
            Some((id, secret)) => Some(introspection::Introspector::new(
                http.clone(),
                introspection_endpoint(&found, issuer)?,
                id,
                secret,
            )),
        };
        let keys = keys::KeySet::new(http, found.jwks_uri.clone());
        keys.load().await.map_err(|e| keys_error(&found, &e))?;
        Ok(ResourceServer {
            issuer: found.issuer,
            resource: public_url.as_str().to_owned(),
            audiences: Audiences::new(public_url.as_str(), audiences),
            metadata_url: metadata_url(public_url),
            metadata_paths: metadata_paths(public_url),
            keys,
            introspector,
            verified: std::sync::Mutex::default(),
            notes: found.notes,
        })
    }

    /// The issuer, exactly as its metadata says.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// This server's resource identifier: the public URL, the audience tokens must carry.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The audiences accepted: the resource, and any the operator added.
    pub fn audiences(&self) -> &Audiences {
        &self.audiences
    }

    /// Where clients find [`Self::metadata`].
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The paths [`Self::metadata`] is served at: the path-suffixed form and the bare one.
    pub fn metadata_paths(&self) -> &[String] {
        &self.metadata_paths
    }

    /// The protected resource metadata (RFC 9728).
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": [READ_SCOPE, WRITE_SCOPE],
            "bearer_methods_supported": ["header"],
            "resource_name": "1NCE orders (1nce-mcp)",
        })
    }

    /// The `WWW-Authenticate` value of a 401: where the metadata is and which scopes to ask
    /// for; with the reason when a token was sent.
    pub fn challenge(&self, refused: Option<&TokenError>) -> String {
        let mut value = format!(
            "Bearer resource_metadata=\"{}\", scope=\"{READ_SCOPE} {WRITE_SCOPE}\"",
            self.metadata_url
        );
        if let Some(error) = refused {
            value.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{error}\""
            ));
        }
        value
    }

    /// The `WWW-Authenticate` value of a 403 for a request that needs `scope` (RFC 6750 §3.1),
    /// so the client can ask the person for it (step-up).
    pub fn insufficient_scope(&self, scope: &str) -> String {
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{}\", error_description=\"this request needs the {scope} scope\"",
            self.metadata_url
        )
    }

    /// Verifies a JWT access token; see the module docs for every check. A token verified in
    /// the last [`REMEMBER_VERIFIED`] is taken as verified again until its `exp` (plus the
    /// leeway), as a new check would: its signature and claims cannot have changed.
    pub async fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        let keys = self.keys.generation();
        if let Some(known) = self.verified.lock().expect("verified lock").get(&digest)
            && known.usable(now, keys)
        {
            return Ok(known.caller.clone());
        }
        let (caller, exp) = match &self.introspector {
            // Not a JWT: an opaque token, for the authorization server to vouch for.
            Some(introspector) if header_algorithm(token).is_none() => {
                let answer = introspector
                    .introspect(token, &self.issuer, &self.audiences)
                    .await?;
                let exp = answer.exp.unwrap_or(u64::MAX);
                let caller = self.caller(
                    answer.sub.unwrap_or_default(),
                    answer.email,
                    answer.preferred_username,
                    Scopes::from_claims(answer.scope.as_deref(), answer.scp.as_ref()),
                );
                (caller, exp)
            }
            _ => self.check(token).await?,
        };
        // The keys it was checked with (a refresh during the check may have replaced them).
        let keys = self.keys.generation();
        let mut verified = self.verified.lock().expect("verified lock");
        if verified.len() >= MAX_REMEMBERED {
            verified.retain(|_, v| v.usable(now, keys));
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(
            digest,
            Verified {
                caller: caller.clone(),
                exp,
                keys,
                at: std::time::Instant::now(),
            },
        );
        Ok(caller)
    }

    /// The checks themselves: the caller, and the token's `exp`.
    async fn check(&self, token: &str) -> Result<(Caller, u64), TokenError> {
        // The algorithm is read first, by name: `none` (or any name jsonwebtoken does not
        // know) is refused as an algorithm, not mistaken for a broken token.
        if let Some(alg) = header_algorithm(token)
            && !ALLOWED_ALGORITHMS.iter().any(|a| format!("{a:?}") == alg)
        {
            return Err(TokenError::Algorithm);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName
            | jsonwebtoken::errors::ErrorKind::UnsupportedAlgorithm => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let mismatch = |published: Option<&[String]>| {
            Mismatch::new(
                &self.audiences,
                &self.issuer,
                &Named::of_jwt(token),
                published,
            )
        };
        let Some(key) = self.keys.find(header.kid.as_deref(), header.alg).await else {
            return Err(TokenError::UnknownKey(mismatch(Some(&self.keys.kids()))));
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences.accepted());
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidIssuer => TokenError::Issuer(mismatch(None)),
                K::InvalidAudience => TokenError::Audience(mismatch(None)),
                K::InvalidAlgorithm => TokenError::Algorithm,
                K::MissingRequiredClaim(c) => TokenError::MissingClaim(match c.as_str() {
                    "exp" => "exp",
                    "iss" => "iss",
                    "aud" => "aud",
                    _ => "sub",
                }),
                K::InvalidSignature => TokenError::Signature,
                _ => TokenError::Malformed,
            }
        })?;
        let claims = data.claims;
        let sub = claims
            .sub
            .filter(|s| !s.trim().is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?;
        let scopes = Scopes::from_claims(claims.scope.as_deref(), claims.scp.as_ref());
        let caller = self.caller(sub, claims.email, claims.preferred_username, scopes);
        Ok((caller, claims.exp.unwrap_or_default()))
    }

    fn caller(
        &self,
        sub: String,
        email: Option<String>,
        preferred_username: Option<String>,
        scopes: Scopes,
    ) -> Caller {
        Caller {
            person: Person {
                issuer: self.issuer.clone(),
                sub: short(sub),
                email: email.map(short),
                preferred_username: preferred_username.map(short),
            },
            scopes,
        }
    }
}

/// The introspection endpoint of `found`, which `--oauth-client-id` needs.
#[cfg(feature = "oauth")]
fn introspection_endpoint(found: &discovery::Discovered, issuer: &Url) -> Result<Url, String> {
    found.introspection_endpoint.clone().ok_or_else(|| format!(
        "--oauth-client-id is set to introspect opaque access tokens, but the metadata of {issuer} names no introspection_endpoint (RFC 7662); drop --oauth-client-id to accept JWT access tokens only"
    ))
}

#[cfg(feature = "oauth")]
fn keys_error(found: &discovery::Discovered, error: &str) -> String {
    format!(
        "could not read the signing keys at {} (the jwks_uri of {}): {error}",
        found.jwks_uri, found.issuer
    )
}

/// One step of [`probe`]: what it found, or what to fix; and remarks that are no failure.
#[cfg(feature = "oauth")]
#[derive(Debug)]
pub struct Step {
    pub name: &'static str,
    pub outcome: Result<String, String>,
    pub notes: Vec<String>,
}

#[cfg(feature = "oauth")]
impl Step {
    fn new(name: &'static str, outcome: Result<String, String>) -> Step {
        Step {
            name,
            outcome,
            notes: Vec::new(),
        }
    }
}

/// `1nce-mcp check` of an OAuth setup: the authorization server's metadata, its signing keys
/// and, with `introspection`, whether its introspection endpoint takes this server's client
/// credentials; then the audiences tokens must name. The same requests as the start-up
/// ([`ResourceServer::discover`]), so a setup that passes here starts. Stops at the first step
/// that fails: the rest depend on it.
#[cfg(feature = "oauth")]
pub async fn probe(
    issuer: &Url,
    public_url: &Url,
    audiences: &[String],
    introspection: Option<&(String, SecretString)>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let http = match http_client(issuer) {
        Ok(http) => http,
        Err(e) => {
            steps.push(Step::new("oauth issuer", Err(e)));
            return steps;
        }
    };
    let found = match discovery::discover(&http, issuer).await {
        Ok(found) => found,
        Err(e) => {
            steps.push(Step::new("oauth issuer", Err(e)));
            return steps;
        }
    };
    let mut step = Step::new(
        "oauth issuer",
        Ok(format!("{} (metadata at {})", found.issuer, found.from)),
    );
    step.notes = found.notes.clone();
    steps.push(step);

    let keys = keys::KeySet::new(http.clone(), found.jwks_uri.clone());
    let loaded = keys.load().await.map_err(|e| keys_error(&found, &e));
    let kids = keys.kids();
    let listed = if kids.is_empty() {
        String::new()
    } else {
        format!(", kid {}", kids.join(", "))
    };
    let failed = loaded.is_err();
    steps.push(Step::new(
        "oauth keys",
        loaded.map(|n| format!("{n} signing key(s) at {}{listed}", found.jwks_uri)),
    ));
    if failed {
        return steps;
    }

    if let Some((id, secret)) = introspection {
        let outcome = match introspection_endpoint(&found, issuer) {
            Ok(endpoint) => {
                introspection::Introspector::new(http, endpoint, id.clone(), secret.clone())
                    .probe()
                    .await
            }
            Err(e) => Err(e),
        };
        let failed = outcome.is_err();
        steps.push(Step::new("introspection", outcome));
        if failed {
            return steps;
        }
    }
    steps.push(Step::new(
        "oauth audience",
        Ok(format!(
            "access tokens must name {}",
            Audiences::new(public_url.as_str(), audiences)
        )),
    ));
    steps
}

/// The `alg` a JWT's header names, if its header can be read at all.
#[cfg(feature = "oauth")]
fn header_algorithm(token: &str) -> Option<String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let (header, _) = token.split_once('.')?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Header>(&json).ok().map(|h| h.alg)
}

/// A token verified lately.
#[cfg(feature = "oauth")]
struct Verified {
    caller: Caller,
    exp: u64,
    /// The generation of the key set it was checked against: new keys (a rotation, a key
    /// withdrawn) forget every token checked before.
    keys: u64,
    at: std::time::Instant,
}

#[cfg(feature = "oauth")]
impl Verified {
    fn usable(&self, now: u64, keys: u64) -> bool {
        self.keys == keys
            && now < self.exp.saturating_add(LEEWAY_SECS)
            && self.at.elapsed() < REMEMBER_VERIFIED
    }
}

/// `https://host/.well-known/oauth-protected-resource{path}` for a public URL with a path
/// (RFC 9728 §3.1), without `{path}` for one without.
#[cfg(feature = "oauth")]
pub fn metadata_url(public_url: &Url) -> String {
    let path = public_url.path().trim_end_matches('/');
    format!(
        "{}/.well-known/oauth-protected-resource{path}",
        public_url.origin().ascii_serialization()
    )
}

/// The paths the metadata is served at for `public_url`.
#[cfg(feature = "oauth")]
fn metadata_paths(public_url: &Url) -> Vec<String> {
    let bare = "/.well-known/oauth-protected-resource".to_owned();
    let path = public_url.path().trim_end_matches('/');
    let mut paths = vec![bare.clone()];
    if !path.is_empty() {
        paths.push(format!("{bare}{path}"));
    }
    paths
}

/// A claim value as kept: at most [`MAX_CLAIM_CHARS`], control characters dropped.
#[cfg(feature = "oauth")]
fn short(value: String) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_CLAIM_CHARS)
        .collect()
}

/// The HTTP client for the authorization server: no redirects (metadata and keys are where
/// the metadata says), bounded time; the system's roots for https, none for a loopback http
/// issuer (tests).
#[cfg(feature = "oauth")]
fn http_client(issuer: &Url) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("1nce-mcp/", env!("CARGO_PKG_VERSION")));
    if issuer.scheme() == "http" {
        builder = builder.tls_certs_only([]);
    }
    builder
        .build()
        .map_err(|e| format!("could not set up HTTPS for the authorization server: {e}"))
}

/// Why [`get_json`] got no document.
#[cfg(feature = "oauth")]
#[derive(Debug)]
enum FetchError {
    /// Nothing answered: no connection, or no answer in time.
    NoAnswer(String),
    /// An answer that is not the document.
    Answer(String),
}

#[cfg(feature = "oauth")]
impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NoAnswer(why) => write!(f, "no answer ({why})"),
            FetchError::Answer(why) => f.write_str(why),
        }
    }
}

#[cfg(feature = "oauth")]
impl From<FetchError> for String {
    fn from(error: FetchError) -> String {
        error.to_string()
    }
}

/// GETs `url` as JSON, at most [`MAX_DOCUMENT_BYTES`]; `Err` says what went wrong.
#[cfg(feature = "oauth")]
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<T, FetchError> {
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::NoAnswer(without_url(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Answer(format!("HTTP {status}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Answer(format!("the answer broke off ({})", without_url(&e))))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::Answer(format!(
                "the answer is larger than {} KiB",
                MAX_DOCUMENT_BYTES / 1024
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| FetchError::Answer(format!("the answer is not the expected JSON: {e}")))
}

#[cfg(feature = "oauth")]
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(feature = "oauth")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_follow_rfc_9728() {
        let url = Url::parse("https://mcp.example.com/mcp").unwrap();
        assert_eq!(
            metadata_url(&url),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_paths(&url),
            [
                "/.well-known/oauth-protected-resource",
                "/.well-known/oauth-protected-resource/mcp"
            ]
        );
        let root = Url::parse("https://mcp.example.com:8443/").unwrap();
        assert_eq!(
            metadata_url(&root),
            "https://mcp.example.com:8443/.well-known/oauth-protected-resource"
        );
        assert_eq!(metadata_paths(&root).len(), 1);
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let s = Scopes::from_claims(Some("openid orders:read"), None);
        assert_eq!((s.read, s.write), (true, false));
        let s = Scopes::from_claims(
            None,
            Some(&ScopeList::Many(vec![
                "orders:write".into(),
                "orders:read".into(),
            ])),
        );
        assert_eq!((s.read, s.write), (true, true));
        let s = Scopes::from_claims(None, Some(&ScopeList::One("orders:write".into())));
        assert_eq!((s.read, s.write), (false, true));
        let s = Scopes::from_claims(Some("orders:reader orders"), None);
        assert_eq!(s, Scopes::default());
        assert!(s.allow(Needed::Nothing));
        assert!(!s.allow(Needed::Read));
    }

    #[test]
    fn a_mismatch_says_what_was_expected_and_named_escaped_and_cut_short() {
        use base64::Engine as _;
        let segment = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let audiences = Audiences::new(
            "https://mcp.example.com/mcp",
            &[
                "account".to_owned(),
                "https://mcp.example.com/mcp/".to_owned(),
            ],
        );
        assert_eq!(
            audiences.expected(),
            ["https://mcp.example.com/mcp", "account"]
        );
        assert!(audiences.accepts("https://mcp.example.com/mcp/") && audiences.accepts("account"));
        assert!(!audiences.accepts("Account") && !audiences.accepts("https://other/mcp"));
        let token = format!(
            "{}.{}.sig",
            segment(serde_json::json!({"alg": "RS256", "kid": "k\n1"})),
            segment(
                serde_json::json!({"iss": "https://evil.example", "aud": ["a", "b", "c", "d", "e", "x".repeat(500)]})
            )
        );
        let text = Mismatch::new(
            &audiences,
            "https://idp.example",
            &Named::of_jwt(&token),
            Some(&["key-1".to_owned()]),
        )
        .to_string();
        assert_eq!(
            text,
            "aud: expected \"https://mcp.example.com/mcp\" or \"account\", received \"a\", \"b\", \"c\", \"d\", 2 more; iss: expected \"https://idp.example\", received \"https://evil.example\"; kid: \"k\\n1\", published: \"key-1\""
        );
        let long = format!(
            "{}.{}.sig",
            segment(serde_json::json!({"alg": "RS256"})),
            segment(serde_json::json!({"aud": "y".repeat(500)}))
        );
        let text = Mismatch::new(
            &audiences,
            "https://idp.example",
            &Named::of_jwt(&long),
            None,
        )
        .to_string();
        assert!(
            text.contains(&format!("received \"{}\"…;", "y".repeat(MAX_QUOTED_CHARS))),
            "{text}"
        );
        assert!(text.ends_with("received none; kid: none"), "{text}");
        let garbage = Mismatch::new(
            &audiences,
            "https://idp.example",
            &Named::of_jwt("not a jwt"),
            None,
        );
        assert!(garbage.to_string().contains("received none;"), "{garbage}");
    }

    #[test]
    fn claims_are_kept_short_and_printable() {
        assert_eq!(short("a\u{7}b\nc".into()), "abc");
        assert_eq!(short("x".repeat(1000)).len(), MAX_CLAIM_CHARS);
    }
}
