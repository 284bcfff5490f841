//! A real OAuth 2.1 authorization server for the tests, started by them: npm's `oidc-provider`
//! (a certified OpenID Provider), configured by `tests/oidc/provider.mjs`, on a free loopback port
//! with a signing key generated for the test, killed when the [`Oidc`] is dropped, even after a
//! panic. It issues RFC 9068 JWT access tokens for one resource (the server under test's public
//! URL) with the scopes `orders:read` and `orders:write`.
//!
//! The client side is here too, as separate steps so that a test can do discovery from the
//! server's own metadata and take each step itself: [`Metadata::discover`], [`register`],
//! [`authorize`] (PKCE S256, state, `resource`, and the provider's login and consent pages driven
//! over HTTP with a cookie jar) and [`exchange`]; [`Oidc::token_for`] does all of them.
//!
//! `scripts/oidc-setup` installs the package under `target/oidc/`; without it a test is skipped
//! ([`Oidc::start`] returns `None` after [`super::skip`]), except under `ONCE_INTEROP_REQUIRED=1`
//! (CI), where its absence fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

use super::{PATIENCE, Stderr, install_crypto, installed, temp_dir};

/// Every scope the provider knows for the resource, space-separated.
pub const SCOPES: &str = "orders:read orders:write";

/// The redirect URI [`Oidc::token_for`] registers: a loopback callback, as a native MCP client
/// uses. Nothing listens there; [`authorize`] stops at the redirect and reads the code from it.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

const SETUP: &str = "run `eval \"$(scripts/oidc-setup)\"`";

/// How the provider is started.
#[derive(Clone, Debug)]
pub struct Options {
    resource: String,
    path: String,
    ttl: u64,
    alg: Algorithm,
    /// Opaque access tokens, introspected by this client id and secret.
    opaque: Option<(String, String)>,
    /// The `aud` of the tokens, when not the resource.
    audience: Option<String>,
}

impl Options {
    /// Tokens for `resource` only, issuer `http://127.0.0.1:PORT`, a 600 s lifetime, RS256.
    pub fn new(resource: &str) -> Options {
        Options {
            resource: resource.to_owned(),
            path: String::new(),
            ttl: 600,
            alg: Algorithm::RS256,
            opaque: None,
            audience: None,
        }
    }

    /// Tokens for the resource carry `audience` as their `aud` instead of the resource URL, as
    /// Entra ID writes the API's application (client) id and Keycloak, by default, `account`.
    pub fn audience(mut self, audience: &str) -> Options {
        self.audience = Some(audience.to_owned());
        self
    }

    /// The issuer gets this path, as Keycloak's realms do (`/realms/test`).
    pub fn path(mut self, path: &str) -> Options {
        self.path = path.trim_end_matches('/').to_owned();
        self
    }

    /// Opaque access tokens instead of JWTs, which the confidential client `client_id` with
    /// `secret` may introspect (RFC 7662); revocation is on too.
    #[cfg(feature = "oauth")]
    pub fn opaque(mut self, client_id: &str, secret: &str) -> Options {
        self.opaque = Some((client_id.to_owned(), secret.to_owned()));
        self
    }

    /// Access tokens live this many seconds.
    pub fn ttl(mut self, seconds: u64) -> Options {
        self.ttl = seconds;
        self
    }

    /// The signing algorithm: RS256 or ES256.
    pub fn alg(mut self, alg: Algorithm) -> Options {
        assert!(
            matches!(alg, Algorithm::RS256 | Algorithm::ES256),
            "provider.mjs makes RS256 and ES256 keys, not {alg:?}"
        );
        self.alg = alg;
        self
    }
}

/// A running oidc-provider of one test.
pub struct Oidc {
    launch: Launch,
    port: u16,
    child: Child,
    stderr: Stderr,
    /// JWKS requests seen by the processes before this one (a key rotation restarts it).
    earlier_jwks_fetches: usize,
    /// How many keys were generated, so that each gets a kid of its own.
    keys: usize,
    kid: String,
    pem: String,
    metadata: Metadata,
}

/// What starting provider.mjs takes: the options, the programs and the test's directory (keys,
/// the JWKS file, registered clients).
struct Launch {
    options: Options,
    node: PathBuf,
    package: PathBuf,
    dir: PathBuf,
}

/// The script that configures and starts the provider.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs")
}

impl Launch {
    fn jwks_file(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// Generates a signing key `kid` and makes it the only one in the JWKS file the provider
    /// reads when it starts; returns its PKCS#8 PEM.
    async fn new_key(&self, kid: &str) -> String {
        let jwk = self.dir.join(format!("{kid}.jwk"));
        let pem = self.dir.join(format!("{kid}.pem"));
        let alg = format!("{:?}", self.options.alg);
        let run = Command::new(&self.node)
            .arg(script())
            .args(["genkey", "--kid", kid, "--alg", &alg, "--out-jwk"])
            .arg(&jwk)
            .arg("--out-pem")
            .arg(&pem)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PATIENCE, run)
            .await
            .expect("provider.mjs genkey finishes")
            .unwrap_or_else(|e| panic!("run {}: {e}", self.node.display()));
        assert!(
            output.status.success(),
            "provider.mjs genkey failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let jwk: Value = serde_json::from_slice(&std::fs::read(&jwk).unwrap()).unwrap();
        std::fs::write(self.jwks_file(), json!({ "keys": [jwk] }).to_string()).unwrap();
        std::fs::read_to_string(&pem).unwrap()
    }

    /// Starts provider.mjs on `port` (0: any free port) and waits for its ready line. A port
    /// just released by the previous process may still be taken for a moment; that is retried.
    async fn spawn(&self, port: u16) -> (Child, Stderr, u16) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut command = Command::new(&self.node);
            command.arg(script());
            if let Some((id, secret)) = &self.options.opaque {
                command.args(["--opaque", "--introspector", &format!("{id}:{secret}")]);
            }
            if let Some(audience) = &self.options.audience {
                command.args(["--audience", audience]);
            }
            let mut child = command
                .arg("--provider")
                .arg(&self.package)
                .args(["--port", &port.to_string()])
                .args(["--path", &self.options.path])
                .args(["--resource", &self.options.resource])
                .args(["--ttl", &self.options.ttl.to_string()])
                .arg("--jwks")
                .arg(self.jwks_file())
                .arg("--clients")
                .arg(self.dir.join("clients.json"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.node.display()));
            let stderr = Stderr::capture(child.stderr.take().expect("stderr is piped"));
            let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
            let mut ready = String::new();
            let read = tokio::time::timeout_at(deadline, stdout.read_line(&mut ready)).await;
            // Keep reading stdout, so that a later line never meets a closed pipe.
            tokio::spawn(async move {
                let mut rest = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut rest).await;
            });
            let bound = ready
                .trim()
                .strip_prefix("listening http://127.0.0.1:")
                .and_then(|port| port.parse().ok());
            if let Some(bound) = bound {
                return (child, stderr, bound);
            }
            assert!(
                read.is_ok(),
                "provider.mjs was not ready within {PATIENCE:?}:\n{}",
                stderr.now()
            );
            let text = stderr.until_closed().await;
            if text.contains("EADDRINUSE") && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            panic!("provider.mjs exited before it was ready:\n{ready}{text}");
        }
    }
}

impl Oidc {
    /// Starts a provider that issues tokens for `resource`, or `None` after [`super::skip`] when
    /// oidc-provider is not installed.
    pub async fn start(resource: &str) -> Option<Oidc> {
        Oidc::start_with(Options::new(resource)).await
    }

    /// [`Oidc::start`] with other [`Options`].
    pub async fn start_with(options: Options) -> Option<Oidc> {
        install_crypto();
        let default = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/oidc/node_modules/oidc-provider"
        );
        let package = installed("ONCE_OIDC_PROVIDER", Some(default), SETUP)?;
        let node = std::env::var_os("ONCE_OIDC_NODE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("node"));
        let launch = Launch {
            options,
            node,
            package,
            dir: temp_dir("oidc"),
        };
        let kid = "test-key-1".to_owned();
        let pem = launch.new_key(&kid).await;
        let (child, stderr, port) = launch.spawn(0).await;
        let mut oidc = Oidc {
            launch,
            port,
            child,
            stderr,
            earlier_jwks_fetches: 0,
            keys: 1,
            kid,
            pem,
            metadata: Metadata::default(),
        };
        oidc.metadata = Metadata::discover(&oidc.issuer()).await;
        Some(oidc)
    }

    /// The issuer, `http://127.0.0.1:PORT` plus the configured path.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.launch.options.path)
    }

    /// The one resource tokens are issued for (their `aud`, unless [`Options::audience`]).
    pub fn resource(&self) -> &str {
        &self.launch.options.resource
    }

    /// The `aud` the provider writes into its tokens.
    pub fn audience(&self) -> &str {
        let options = &self.launch.options;
        options.audience.as_deref().unwrap_or(&options.resource)
    }

    /// The access token lifetime in seconds (`exp - iat`).
    pub fn ttl(&self) -> u64 {
        self.launch.options.ttl
    }

    /// The provider's metadata, as discovered when it started.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Everything the provider wrote to stderr since it last started: one `request METHOD PATH`
    /// line per HTTP request, and its warnings.
    pub fn stderr(&self) -> String {
        self.stderr.now()
    }

    /// How many times the JWKS was fetched, across restarts. Exact: it first makes a request of
    /// its own and waits until that is logged, so every earlier request has been read too.
    pub async fn jwks_fetches(&self) -> usize {
        let log = self.log_so_far().await;
        self.earlier_jwks_fetches + jwks_requests(&log, &self.metadata.jwks_uri)
    }

    /// How many requests for a path ending in `suffix` (e.g. `/token/introspection`) the
    /// provider has seen since it last started; exact, as [`Oidc::jwks_fetches`] is.
    #[cfg(feature = "oauth")]
    pub async fn requests_to(&self, suffix: &str) -> usize {
        let log = self.log_so_far().await;
        log.lines()
            .filter(|l| l.starts_with("request ") && l.ends_with(suffix))
            .count()
    }

    /// The provider's stderr, once every request made before this call is in it: a request
    /// of its own is sent first and waited for.
    async fn log_so_far(&self) -> String {
        static BARRIER: AtomicUsize = AtomicUsize::new(0);
        // Ends in a word of its own, so that no marker is a prefix of a later one.
        let marker = format!("/barrier-{}-end", BARRIER.fetch_add(1, Ordering::Relaxed));
        let _ = http()
            .get(format!("http://127.0.0.1:{}{marker}", self.port))
            .send()
            .await
            .expect("the provider answers");
        self.stderr.wait_for(&format!("request GET {marker}")).await;
        self.stderr.now()
    }

    /// The kid and PKCS#8 PEM of the key the provider signs with, to sign tokens a test crafts
    /// (`EncodingKey::from_rsa_pem`, or `from_ec_pem` with ES256).
    pub fn signing_key(&self) -> (String, String) {
        (self.kid.clone(), self.pem.clone())
    }

    /// Signs `claims` as the provider would: its signing key, kid and algorithm, and the
    /// `at+jwt` type of RFC 9068.
    pub fn sign(&self, claims: &Value) -> String {
        let key = match self.launch.options.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(self.pem.as_bytes()),
        }
        .expect("provider.mjs writes a PKCS#8 PEM");
        let mut header = Header::new(self.launch.options.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, claims, &key).expect("sign the claims")
    }

    /// The claims of a valid access token for `subject` with `scope`, issued now, as the
    /// provider writes them; change one and [`Oidc::sign`] it to craft an invalid token.
    pub fn claims(&self, subject: &str, scope: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({
            "iss": self.issuer(),
            "aud": self.audience(),
            "sub": subject,
            "scope": scope,
            "iat": now,
            "exp": now + self.launch.options.ttl,
            "jti": random(16),
            "client_id": "crafted-by-the-test",
            "email": format!("{subject}@example.test"),
            "preferred_username": subject,
        })
    }

    /// Restarts the provider on the same port with a new signing key, the old one dropped from
    /// its JWKS: a token signed before no longer verifies, and a resource server must fetch the
    /// JWKS again to verify new ones. Registered clients survive the restart; sessions and
    /// codes do not.
    pub async fn rotate_keys(&mut self) {
        self.keys += 1;
        let kid = format!("test-key-{}", self.keys);
        self.pem = self.launch.new_key(&kid).await;
        self.kid = kid;
        let _ = self.child.start_kill();
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("provider.mjs exits when killed")
            .expect("wait for provider.mjs");
        let (child, stderr, port) = self.launch.spawn(self.port).await;
        assert_eq!(port, self.port, "the provider restarts on its port");
        self.child = child;
        let old = std::mem::replace(&mut self.stderr, stderr);
        let log = old.until_closed().await;
        self.earlier_jwks_fetches += jwks_requests(&log, &self.metadata.jwks_uri);
    }

    /// A token for `subject` with `scope` (space-separated) for the resource: registers a client,
    /// logs in as `subject`, consents, and exchanges the code.
    pub async fn token_for(&self, subject: &str, scope: &str) -> String {
        let client_id = register(&self.metadata, REDIRECT_URI).await;
        let authorization = authorize(
            &self.metadata,
            &client_id,
            REDIRECT_URI,
            scope,
            Some(self.resource()),
            subject,
        )
        .await;
        exchange(
            &self.metadata,
            &client_id,
            REDIRECT_URI,
            &authorization,
            Some(self.resource()),
        )
        .await
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.launch.dir);
    }
}

/// The `request GET {path of jwks_uri}` lines in `log`.
fn jwks_requests(log: &str, jwks_uri: &str) -> usize {
    let path = Url::parse(jwks_uri)
        .expect("jwks_uri is a URL")
        .path()
        .to_owned();
    let line = format!("request GET {path}");
    log.lines().filter(|l| *l == line).count()
}

/// What the tests read of an authorization server's metadata (RFC 8414 / OpenID Discovery).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

impl Metadata {
    /// Fetches `{issuer}/.well-known/openid-configuration` (the form Keycloak and oidc-provider
    /// serve) and checks that it names `issuer`.
    pub async fn discover(issuer: &str) -> Metadata {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let metadata = Metadata::fetch(&url).await;
        assert_eq!(metadata.issuer, issuer, "the issuer in {url}");
        metadata
    }

    /// Fetches and parses the metadata document at `url`.
    pub async fn fetch(url: &str) -> Metadata {
        let response = http().get(url).send().await.expect("GET the metadata");
        assert_eq!(response.status(), StatusCode::OK, "GET {url}");
        response.json().await.expect("metadata is JSON")
    }
}

/// An HTTP client for the provider: no redirects followed (each step reads its own), no proxy
/// from the environment (everything is on loopback), and a deadline on every request.
fn http() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client")
}

fn random(bytes: usize) -> String {
    let mut buf = vec![0; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Registers a public client (no secret, `token_endpoint_auth_method: none`) with one redirect
/// URI and the resource's scopes at the registration endpoint, as an MCP client does; returns
/// its client_id.
pub async fn register(metadata: &Metadata, redirect_uri: &str) -> String {
    let endpoint = metadata
        .registration_endpoint
        .as_deref()
        .expect("the metadata names a registration_endpoint");
    let response = http()
        .post(endpoint)
        .json(&json!({
            "client_name": "1nce-mcp tests",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": SCOPES,
        }))
        .send()
        .await
        .expect("POST the registration");
    let status = response.status();
    let body: Value = response.json().await.expect("registration answers JSON");
    assert_eq!(status, StatusCode::CREATED, "registration: {body}");
    body["client_id"].as_str().expect("a client_id").to_owned()
}

/// An authorization code and the PKCE verifier its request was made with.
#[derive(Clone, Debug)]
pub struct Authorization {
    pub code: String,
    pub verifier: String,
}

/// Runs the authorization code flow up to the code and fails the test if it does not get one;
/// see [`try_authorize`].
pub async fn authorize(
    metadata: &Metadata,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    resource: Option<&str>,
    subject: &str,
) -> Authorization {
    try_authorize(metadata, client_id, redirect_uri, scope, resource, subject)
        .await
        .unwrap_or_else(|e| panic!("authorization for {resource:?} refused: {e}"))
}

/// The authorization request with PKCE S256, a state and `resource` (if any), then the provider's login
/// page (as `subject`) and consent page, each a form posted back with a cookie jar of its own,
/// until the redirect to `redirect_uri`. Returns the code, or the error the provider sent there
/// (`invalid_target: …`), or the status and text of an error page it showed instead.
pub async fn try_authorize(
    metadata: &Metadata,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    resource: Option<&str>,
    subject: &str,
) -> Result<Authorization, String> {
    let verifier = random(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random(16);
    let mut url = Url::parse(&metadata.authorization_endpoint).expect("a URL");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", scope)
        .extend_pairs(resource.map(|resource| ("resource", resource)))
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let target = Url::parse(redirect_uri).expect("redirect_uri is a URL");
    install_crypto();
    // A new jar per authorization: no login carries over from another subject's.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("an HTTP client");
    let mut request = client.get(url.clone());
    // Login, consent and the redirects between them take about six steps; more is a loop.
    for _ in 0..12 {
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("a {status} from {url} without a Location"))?;
            let next = url.join(location).map_err(|e| format!("{location}: {e}"))?;
            if next.origin() == target.origin() && next.path() == target.path() {
                return callback(&next, &state, &metadata.issuer)
                    .map(|code| Authorization { code, verifier });
            }
            url = next;
            request = client.get(url.clone());
            continue;
        }
        let page = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{status} from {url}: {page}"));
        }
        let (action, mut fields) =
            form(&page).ok_or_else(|| format!("no form at {url}: {page}"))?;
        if fields.iter().any(|(k, v)| k == "prompt" && v == "login") {
            fields.retain(|(k, _)| k == "prompt");
            fields.push(("login".into(), subject.into()));
            // devInteractions accepts any password.
            fields.push(("password".into(), "any".into()));
        }
        url = url.join(&action).map_err(|e| format!("{action}: {e}"))?;
        request = client.post(url.clone()).form(&fields);
    }
    Err(format!(
        "no redirect to {redirect_uri} after 12 steps, at {url}"
    ))
}

/// The code from the redirect to the client, after checking its state and issuer (RFC 9207).
fn callback(redirect: &Url, state: &str, issuer: &str) -> Result<String, String> {
    let param = |name: &str| {
        redirect
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("state").as_deref(),
        Some(state),
        "state in {redirect}"
    );
    if let Some(iss) = param("iss") {
        assert_eq!(iss, issuer, "iss in {redirect}");
    }
    if let Some(error) = param("error") {
        return Err(format!(
            "{error}: {}",
            param("error_description").unwrap_or_default()
        ));
    }
    param("code").ok_or_else(|| format!("no code in {redirect}"))
}

/// The first form of an HTML page: its action and its inputs that have a name and a value.
/// Only as much HTML as oidc-provider's own pages use (attributes in double quotes).
fn form(page: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = page.find("<form")?;
    let end = start + page[start..].find("</form>")?;
    let form = &page[start..end];
    let action = attribute(&form[..form.find('>')?], "action")?;
    let fields = form
        .split("<input")
        .skip(1)
        .filter_map(|input| {
            let tag = &input[..input.find('>')?];
            Some((attribute(tag, "name")?, attribute(tag, "value")?))
        })
        .collect();
    Some((action, fields))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let value = &tag[start..start + tag[start..].find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Exchanges the code for an access token and fails the test if that is refused; see
/// [`try_exchange`].
pub async fn exchange(
    metadata: &Metadata,
    client_id: &str,
    redirect_uri: &str,
    authorization: &Authorization,
    resource: Option<&str>,
) -> String {
    let body = try_exchange(metadata, client_id, redirect_uri, authorization, resource)
        .await
        .unwrap_or_else(|(status, body)| panic!("token request refused: {status} {body}"));
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_owned()
}

/// The token request of a public client: the code, its PKCE verifier and (optionally) the
/// resource. The token response, or the status and error body.
pub async fn try_exchange(
    metadata: &Metadata,
    client_id: &str,
    redirect_uri: &str,
    authorization: &Authorization,
    resource: Option<&str>,
) -> Result<Value, (StatusCode, Value)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", &authorization.code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", &authorization.verifier),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    let response = http()
        .post(&metadata.token_endpoint)
        .form(&form)
        .send()
        .await
        .expect("POST the token request");
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .expect("the token endpoint answers JSON");
    if status == StatusCode::OK {
        Ok(body)
    } else {
        Err((status, body))
    }
}

/// The header and payload of a JWT, not verified.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || {
        let b64 = parts.next().expect("a JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).expect("base64url"))
            .expect("JSON in a JWT")
    };
    (part(), part())
}

/// The JWKS the provider serves at `metadata.jwks_uri` (one more fetch for
/// [`Oidc::jwks_fetches`]).
pub async fn jwks(metadata: &Metadata) -> jsonwebtoken::jwk::JwkSet {
    let response = http()
        .get(&metadata.jwks_uri)
        .send()
        .await
        .expect("GET the JWKS");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("a JWKS")
}
