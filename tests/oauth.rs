//! OAuth end to end: a real authorization server (npm's oidc-provider, started by
//! `common::oidc`) issues JWT access tokens, and the built binary is their resource server
//! (`--oauth-issuer`, `--public-url`) in front of a sandbox. Clients are rmcp's Streamable HTTP
//! client and raw HTTP requests, as an MCP client's own OAuth code would send them, and the
//! official Python MCP SDK with its own OAuth support (`tests/interop/python_oauth_client.py`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use onence_mcp::sandbox::Sandbox;
use serde_json::{Value, json};

use crate::common;
use crate::common::net::{HttpServer, free_port, stateless_request_with};
use crate::common::oidc::{self, Metadata, Oidc, Options, REDIRECT_URI, SCOPES};
use crate::common::sse::LegacySession;

/// A resource server in front of a sandbox, trusting one running authorization server.
struct Setup {
    oidc: Oidc,
    server: HttpServer,
    sandbox: Sandbox,
    /// `--public-url`: the resource tokens are for.
    public: String,
    audit: std::path::PathBuf,
}

impl Setup {
    /// `None` when oidc-provider is not installed (and not required).
    async fn start() -> Option<Setup> {
        Setup::start_with(|o| o).await
    }

    /// [`Setup::start`] with the authorization server's options changed by `options`.
    async fn start_with(options: impl FnOnce(Options) -> Options) -> Option<Setup> {
        Setup::start_at("/mcp", options).await
    }

    /// [`Setup::start_with`] with `path` as the public URL's path.
    async fn start_at(path: &str, options: impl FnOnce(Options) -> Options) -> Option<Setup> {
        Setup::start_full(path, options, &[], &[]).await
    }

    /// [`Setup::start_at`] with more arguments and environment for the server.
    async fn start_full(
        path: &str,
        options: impl FnOnce(Options) -> Options,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Setup> {
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}{path}");
        let oidc = Oidc::start_with(options(Options::new(&public))).await?;
        let sandbox = Sandbox::start().await.expect("start the sandbox");
        let audit = common::temp_dir("oauth-audit").join("audit.jsonl");
        let issuer = oidc.issuer();
        let mut all_args = vec![
            "--oauth-issuer",
            &issuer,
            "--public-url",
            &public,
            "--audit-log",
            audit.to_str().unwrap(),
        ];
        all_args.extend_from_slice(args);
        let api_url = sandbox.base_url();
        let mut all_env = common::sandbox_env(&api_url).to_vec();
        all_env.extend_from_slice(env);
        let server = HttpServer::spawn_at(&format!("127.0.0.1:{port}"), &all_args, &all_env).await;
        Some(Setup {
            oidc,
            server,
            sandbox,
            public,
            audit,
        })
    }

    /// POSTs a JSON-RPC message to /mcp with `token` (if any), as a client's first request.
    async fn post(&self, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = http()
            .post(self.server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("POST /mcp")
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }
}

fn http() -> reqwest::Client {
    common::install_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(common::PATIENCE)
        .build()
        .unwrap()
}

/// GETs a JSON document.
async fn get_json(url: &str) -> Value {
    let response = http().get(url).send().await.expect("GET");
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.expect("a JSON document")
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "oauth-test", "version": "0"}}})
}

fn call(tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
}

fn order() -> Value {
    json!({"products": [{"product_id": 1001, "quantity": 3}], "customer_reference": "oauth"})
}

/// The `WWW-Authenticate` header of a response.
fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("a {} without WWW-Authenticate", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value of `name="…"` in a challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let end = challenge[start..].find('"')? + start;
    Some(challenge[start..end].to_owned())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_whole_client_journey_from_a_bare_initialize() {
    let Some(s) = Setup::start().await else {
        return;
    };
    // 1. A bare initialize: 401 pointing to the protected resource metadata.
    let refused = s.post(None, &initialize()).await;
    assert_eq!(refused.status(), 401);
    let www = challenge(&refused);
    assert!(www.starts_with("Bearer "), "{www}");
    assert_eq!(param(&www, "scope").as_deref(), Some(SCOPES), "{www}");
    assert_eq!(param(&www, "error"), None, "no token, no error: {www}");
    let metadata_url = param(&www, "resource_metadata").expect("resource_metadata");
    assert_eq!(
        metadata_url,
        s.server.url("/.well-known/oauth-protected-resource/mcp")
    );

    // 2. The protected resource metadata (RFC 9728), at the path-suffixed and the bare URL.
    let prm = get_json(&metadata_url).await;
    assert_eq!(prm["resource"], s.public);
    assert_eq!(prm["authorization_servers"], json!([s.oidc.issuer()]));
    assert_eq!(
        prm["scopes_supported"],
        json!(["orders:read", "orders:write"])
    );
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    let bare = http()
        .get(s.server.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.headers()["access-control-allow-origin"], "*");
    assert_eq!(bare.json::<Value>().await.unwrap(), prm);

    // 3. The authorization server's metadata, from the issuer the resource names.
    let issuer = prm["authorization_servers"][0].as_str().unwrap();
    let metadata = Metadata::discover(issuer).await;
    assert!(
        metadata
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256"),
        "PKCE S256 is offered"
    );

    // 4. Registration, 5. the authorization code with PKCE (login and consent driven here),
    // 6. the token for the resource.
    let client_id = oidc::register(&metadata, REDIRECT_URI).await;
    let resource = prm["resource"].as_str().unwrap();
    let code = oidc::authorize(
        &metadata,
        &client_id,
        REDIRECT_URI,
        SCOPES,
        Some(resource),
        "alice",
    )
    .await;
    let token = oidc::exchange(&metadata, &client_id, REDIRECT_URI, &code, Some(resource)).await;

    // 7. MCP calls succeed with it, the order path included.
    let session = s.server.client(Some(&token)).await;
    let tools = session.client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, common::ALL_TOOLS);
    let page = session.ok("list_orders", json!({"page_size": 2})).await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 2);
    session.place_order(&order()).await;
    assert_eq!(common::posts(&s.sandbox), 1);

    // Every record names alice, as her token does.
    let records = s.audit();
    assert!(records.len() >= 3, "{records:?}");
    for record in &records {
        assert_eq!(
            record["person"],
            json!({"sub": "alice", "email": "alice@example.test", "preferred_username": "alice"}),
            "{record}"
        );
    }
    // The same journey without the `resource` parameter gets an opaque token for the
    // authorization server's own use: refused here, never passed on.
    let code = oidc::authorize(&metadata, &client_id, REDIRECT_URI, SCOPES, None, "alice").await;
    let opaque = oidc::exchange(&metadata, &client_id, REDIRECT_URI, &code, None).await;
    let refused = s.post(Some(&opaque), &initialize()).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        param(&challenge(&refused), "error").as_deref(),
        Some("invalid_token")
    );

    let stderr = s.server.stderr();
    assert!(!stderr.contains(&token), "the access token was logged");
    assert!(!stderr.contains(&opaque), "the opaque token was logged");
    assert!(stderr.contains("OAuth access tokens of"), "{stderr}");
}

#[tokio::test]
async fn refused_tokens_get_401_with_the_reason_and_are_never_logged() {
    let Some(s) = Setup::start().await else {
        return;
    };
    let claims = |change: &dyn Fn(&mut Value)| {
        let mut c = s.oidc.claims("alice", SCOPES);
        change(&mut c);
        c
    };
    let valid = s.oidc.sign(&claims(&|_| {}));
    let t = now();
    let expired = s.oidc.sign(&claims(&|c| {
        c["iat"] = json!(t - 900);
        c["exp"] = json!(t - 120);
    }));
    let not_yet = s.oidc.sign(&claims(&|c| c["nbf"] = json!(t + 600)));
    let other_issuer = s.oidc.sign(&claims(&|c| {
        c["iss"] = json!("http://127.0.0.1:1/realms/other")
    }));
    let other_audience = s
        .oidc
        .sign(&claims(&|c| c["aud"] = json!("https://other.example/mcp")));
    let no_subject = s.oidc.sign(&claims(&|c| {
        c.as_object_mut().unwrap().remove("sub");
    }));
    let segment = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        segment(json!({"alg": "none", "typ": "at+jwt"})),
        segment(claims(&|_| {}))
    );
    // The same claims with `sub` changed after signing.
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            segment(claims(&|c| c["sub"] = json!("mallory"))),
            parts[2]
        )
    };
    // Signed with the provider's key, but naming a key id its JWKS does not have.
    let unknown_key = {
        let (kid, _) = s.oidc.signing_key();
        let token = s.oidc.sign(&claims(&|_| {}));
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], kid);
        let mut header = header;
        header["kid"] = json!("not-published");
        format!("{}.{}.{}", segment(header), parts[1], parts[2])
    };
    // HMAC "signed" with the public key (algorithm confusion).
    let hmac = {
        let (kid, _) = s.oidc.signing_key();
        let jwks = oidc::jwks(s.oidc.metadata()).await;
        let public = serde_json::to_vec(&jwks.keys[0]).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid);
        jsonwebtoken::encode(
            &header,
            &claims(&|_| {}),
            &jsonwebtoken::EncodingKey::from_secret(&public).unwrap(),
        )
        .unwrap()
    };

    let cases: [(&str, &str, &str); 10] = [
        ("expired", &expired, "has expired"),
        ("not yet valid", &not_yet, "not valid yet"),
        (
            "wrong issuer",
            &other_issuer,
            "another authorization server",
        ),
        ("wrong audience", &other_audience, "another resource"),
        ("no subject", &no_subject, "lacks the sub claim"),
        ("alg none", &unsigned, "algorithm is not accepted"),
        ("tampered", &tampered, "signature is invalid"),
        ("unknown key", &unknown_key, "does not publish"),
        (
            "HMAC with the public key",
            &hmac,
            "algorithm is not accepted",
        ),
        ("not a JWT", "opaque-token-0123456789", "not a JWT"),
    ];
    for (what, token, reason) in cases {
        let response = s.post(Some(token), &initialize()).await;
        assert_eq!(response.status(), 401, "{what}");
        let www = challenge(&response);
        assert_eq!(
            param(&www, "error").as_deref(),
            Some("invalid_token"),
            "{what}: {www}"
        );
        assert!(
            param(&www, "error_description").is_some_and(|d| d.contains(reason)),
            "{what}: {www}"
        );
        assert!(param(&www, "resource_metadata").is_some(), "{what}: {www}");
        let body = response.text().await.unwrap();
        assert!(body.contains(reason), "{what}: {body}");
    }
    // The public URL with a trailing slash names the same resource.
    let slash = s
        .oidc
        .sign(&claims(&|c| c["aud"] = json!(format!("{}/", s.public))));
    assert_eq!(s.post(Some(&slash), &initialize()).await.status(), 200);
    // The valid one passes. JWKS fetches: the server's at start-up, this test's own (for the
    // HMAC case) and at most one for the unknown key id.
    let ok = s.post(Some(&valid), &initialize()).await;
    assert_eq!(ok.status(), 200);
    assert!(s.oidc.jwks_fetches().await <= 3);
    let (issuer, public) = (s.oidc.issuer(), s.public.clone());
    // All of it, with the counted refusals summed up at shutdown.
    let stderr = s.server.stop().await;
    assert!(
        stderr.contains("refused a request with an invalid OAuth access token"),
        "{stderr}"
    );
    // A token of another issuer or audience, or of an unpublished key, is logged apart, with
    // what was expected and what the token named: the first as it happens, and the last one
    // (the unknown key), counted after it, in the summary.
    let foreign: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("refused an OAuth access token of another issuer or audience"))
        .collect();
    assert!(foreign.len() >= 2, "{stderr}");
    let last = foreign[foreign.len() - 1];
    let expected_aud = format!("aud: expected {public:?}, received {public:?}");
    for needle in [
        "another authorization server",
        &expected_aud,
        &format!("iss: expected {issuer:?}, received \"http://127.0.0.1:1/realms/other\""),
        "kid: \"test-key-1\"",
    ] {
        assert!(foreign[0].contains(needle), "{needle}: {}", foreign[0]);
    }
    for needle in [
        "does not publish",
        &expected_aud,
        &format!("iss: expected {issuer:?}, received {issuer:?}"),
        "kid: \"not-published\", published: \"test-key-1\"",
    ] {
        assert!(last.contains(needle), "{needle}: {last}");
    }
    for (what, token) in [
        ("expired", &expired),
        ("tampered", &tampered),
        ("valid", &valid),
    ] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!stderr.contains(signature), "the {what} token was logged");
    }
}

/// Entra ID writes the API's application (client) id into `aud`, Keycloak by default
/// `account`: such a token is for another resource unless the operator names its audience
/// with --oauth-audience (or ONCE_OAUTH_AUDIENCE); the public URL stays accepted. The refusal's
/// log line says what was expected and what the token named.
#[tokio::test]
async fn an_extra_audience_is_accepted_only_when_the_operator_names_it() {
    const APP_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
    let Some(s) = Setup::start_full(
        "/mcp",
        |o| o.audience(APP_ID),
        &["--oauth-audience", "account"],
        &[],
    )
    .await
    else {
        return;
    };
    let token = s.oidc.token_for("alice", SCOPES).await;
    assert_eq!(oidc::jwt_parts(&token).1["aud"], APP_ID);
    let refused = s.post(Some(&token), &initialize()).await;
    assert_eq!(refused.status(), 401);
    let www = challenge(&refused);
    assert!(www.contains("another resource"), "{www}");
    let (issuer, public) = (s.oidc.issuer(), &s.public);
    let logged = format!(
        "aud: expected {public:?} or \"account\", received \"{APP_ID}\"; iss: expected {issuer:?}, received {issuer:?}; kid: \"test-key-1\""
    );
    s.server.wait_for_stderr(&logged).await;
    let stderr = s.server.stderr();
    let line = stderr.lines().find(|l| l.contains(&logged)).unwrap();
    assert!(
        line.contains("WARN") && line.contains("its audience is not this server"),
        "{line}"
    );
    assert!(!stderr.contains(&token), "the token was logged");
    // The audience named, and the public URL, are accepted.
    for aud in [json!(["account"]), json!(public)] {
        let mut claims = s.oidc.claims("bob", SCOPES);
        claims["aud"] = aud.clone();
        let response = s.post(Some(&s.oidc.sign(&claims)), &initialize()).await;
        assert_eq!(response.status(), 200, "aud {aud}");
    }

    // Another server that names the application id, in the variable's list form, takes the
    // token from the same authorization server.
    let port = free_port();
    let other = format!("http://127.0.0.1:{port}/mcp");
    let api_url = s.sandbox.base_url();
    let mut env = common::sandbox_env(&api_url).to_vec();
    let list = format!("api://elsewhere, {APP_ID}");
    env.push(("ONCE_OAUTH_AUDIENCE", &list));
    let named = HttpServer::spawn_at(
        &format!("127.0.0.1:{port}"),
        &["--oauth-issuer", &issuer, "--public-url", &other],
        &env,
    )
    .await;
    let session = named.client(Some(&token)).await;
    session.ok("list_products", json!({})).await;
    let stderr = named.stop().await;
    assert!(
        stderr.contains(&format!(
            "for {other} (or audience \"api://elsewhere\", \"{APP_ID}\")"
        )),
        "the ready line names the audiences: {stderr}"
    );
}

/// Opaque tokens are held to the same audiences through introspection; `check` reads the
/// authorization server's metadata and keys and tries the introspection endpoint with this
/// server's client, as the start-up does, and fails with the fix when the secret is wrong.
#[tokio::test]
async fn introspected_audiences_and_check_against_the_live_authorization_server() {
    const APP_ID: &str = "api://1nce-mcp";
    let (id, secret) = ("1nce-mcp-introspector", "introspection-secret-for-check");
    let Some(s) = Setup::start_full(
        "/mcp",
        |o| o.opaque(id, secret).audience(APP_ID),
        &["--oauth-client-id", id, "--oauth-audience", APP_ID],
        &[("ONCE_OAUTH_CLIENT_SECRET", secret)],
    )
    .await
    else {
        return;
    };
    let token = s.oidc.token_for("alice", SCOPES).await;
    assert_eq!(token.split('.').count(), 1, "an opaque token: {token}");
    let session = s.server.client(Some(&token)).await;
    session.ok("list_products", json!({})).await;

    let issuer = s.oidc.issuer();
    let api_url = s.sandbox.base_url();
    let check = |secret: &'static str, client: bool| {
        let mut args = vec![
            "check",
            "--max-retries",
            "0",
            "--http",
            "127.0.0.1:0",
            "--oauth-issuer",
            &issuer,
            "--public-url",
            &s.public,
            "--oauth-audience",
            APP_ID,
        ];
        let mut env = common::sandbox_env(&api_url).to_vec();
        if client {
            args.extend(["--oauth-client-id", id]);
            env.push(("ONCE_OAUTH_CLIENT_SECRET", secret));
        }
        let mut command = common::command(&args, &env);
        async move {
            let out = tokio::time::timeout(common::PATIENCE, command.output())
                .await
                .expect("check finishes")
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, report, stderr) = check(secret, true).await;
    assert_eq!(code, Some(0), "{report}{stderr}");
    let jwks = &s.oidc.metadata().jwks_uri;
    for line in [
        format!("  ok    oauth issuer  {issuer} (metadata at "),
        format!("  ok    oauth keys    1 signing key(s) at {jwks}, kid test-key-1"),
        format!(
            "  ok    introspection {issuer}/token/introspection takes --oauth-client-id {id:?}"
        ),
        format!(
            "  ok    oauth audience access tokens must name {} (or audience {APP_ID:?})",
            s.public
        ),
        "verdict: ready".to_owned(),
    ] {
        assert!(report.contains(&line), "{line}\n{report}");
    }
    assert!(!report.contains(secret) && !stderr.contains(secret));

    // JWTs only: no introspection line.
    let (code, report, _) = check(secret, false).await;
    assert_eq!(code, Some(0), "{report}");
    assert!(!report.contains("introspection"), "{report}");

    let (code, report, stderr) = check("a-wrong-secret", true).await;
    assert_eq!(code, Some(3), "{report}{stderr}");
    assert!(
        report.contains("  FAIL  introspection")
            && report.contains("refused this server's client (HTTP 401")
            && report.contains("ONCE_OAUTH_CLIENT_SECRET"),
        "{report}"
    );
    assert!(report.contains("verdict: OAuth not usable"), "{report}");
    assert!(!report.contains("a-wrong-secret") && !stderr.contains("a-wrong-secret"));
}

#[tokio::test]
async fn key_rotation_is_picked_up_without_a_restart_and_made_up_keys_cost_nothing() {
    let Some(mut s) = Setup::start().await else {
        return;
    };
    let before = s.oidc.sign(&s.oidc.claims("alice", SCOPES));
    assert_eq!(s.post(Some(&before), &initialize()).await.status(), 200);
    let fetched = s.oidc.jwks_fetches().await;
    assert_eq!(fetched, 1, "the keys are fetched once, at start-up");

    // A flood of tokens naming made-up keys: each refused, the JWKS fetched at most once.
    let mut flood = Vec::new();
    for i in 0..60 {
        let mut token: Vec<String> = before.split('.').map(str::to_owned).collect();
        token[0] = URL_SAFE_NO_PAD.encode(
            json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("made-up-{i}")}).to_string(),
        );
        flood.push(token.join("."));
    }
    let answers = futures::future::join_all(
        flood
            .iter()
            .map(|t| async { s.post(Some(t), &initialize()).await.status() }),
    )
    .await;
    assert!(answers.iter().all(|a| *a == 401), "{answers:?}");
    assert!(s.oidc.jwks_fetches().await <= fetched + 1);

    // The authorization server rotates its key; the server's refresh floor passes.
    let (old_kid, _) = s.oidc.signing_key();
    s.oidc.rotate_keys().await;
    let (new_kid, _) = s.oidc.signing_key();
    assert_ne!(old_kid, new_kid);
    tokio::time::sleep(onence_mcp::oauth::keys::REFRESH_FLOOR + std::time::Duration::from_secs(1))
        .await;
    let after = s.oidc.sign(&s.oidc.claims("alice", SCOPES));
    assert_eq!(
        s.post(Some(&after), &initialize()).await.status(),
        200,
        "a token of the new key is accepted without a restart"
    );
    // A token from the real flow, signed by the rotated provider, works too.
    let issued = s.oidc.token_for("alice", SCOPES).await;
    let session = s.server.client(Some(&issued)).await;
    session.ok("list_products", json!({})).await;
    // The withdrawn key no longer counts.
    let withdrawn = s.post(Some(&before), &initialize()).await;
    assert_eq!(withdrawn.status(), 401);
    assert!(challenge(&withdrawn).contains("does not publish"));
}

#[tokio::test]
async fn a_read_only_token_sees_no_create_order_and_gets_403_insufficient_scope() {
    // An issuer with a path, as Keycloak's realms have, signing with ES256.
    let Some(s) =
        Setup::start_with(|o| o.path("/realms/acme").alg(jsonwebtoken::Algorithm::ES256)).await
    else {
        return;
    };
    let reader = s.oidc.token_for("reader", "orders:read").await;
    let session = s.server.client(Some(&reader)).await;
    let tools = session.client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    let readers: Vec<&str> = common::ALL_TOOLS
        .into_iter()
        .filter(|t| *t != "create_order")
        .collect();
    assert_eq!(names, readers);
    session.ok("list_orders", json!({"page_size": 1})).await;

    let refused = s.post(Some(&reader), &call("create_order", order())).await;
    assert_eq!(refused.status(), 403);
    let www = challenge(&refused);
    assert_eq!(
        param(&www, "error").as_deref(),
        Some("insufficient_scope"),
        "{www}"
    );
    assert_eq!(
        param(&www, "scope").as_deref(),
        Some("orders:write"),
        "{www}"
    );
    assert!(param(&www, "resource_metadata").is_some(), "{www}");
    // The same through rmcp's client: a transport error, nothing previewed or audited.
    let params = rmcp::model::CallToolRequestParams::new("create_order")
        .with_arguments(order().as_object().cloned().unwrap());
    assert!(session.client.call_tool(params).await.is_err());
    assert!(s.audit().is_empty(), "{:?}", s.audit());

    // A token with no scope of this server reads nothing, and lists no tool.
    let nothing = s.oidc.sign(&s.oidc.claims("nobody", "openid"));
    let refused = s
        .post(Some(&nothing), &call("list_orders", json!({})))
        .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        param(&challenge(&refused), "scope").as_deref(),
        Some("orders:read")
    );
    let resources = s
        .post(
            Some(&nothing),
            &json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                "params": {"uri": "onence://products"}}),
        )
        .await;
    assert_eq!(resources.status(), 403);
    let empty = s.server.client(Some(&nothing)).await;
    assert!(empty.client.list_all_tools().await.unwrap().is_empty());
    assert_eq!(common::posts(&s.sandbox), 0);
}

#[tokio::test]
async fn two_people_one_previews_and_the_other_cannot_confirm_or_use_the_session() {
    let Some(s) = Setup::start().await else {
        return;
    };
    let alice = s.oidc.token_for("alice", SCOPES).await;
    let bob = s.oidc.token_for("bob", SCOPES).await;

    let alice_session = s.server.client(Some(&alice)).await;
    let bob_session = s.server.client(Some(&bob)).await;
    let preview = alice_session.ok("create_order", order()).await;
    let confirm = common::confirming(&order(), &preview);
    let refused = bob_session.err("create_order", confirm.clone()).await;
    assert!(
        refused.contains("issued to another person") && refused.contains("nothing was ordered"),
        "{refused}"
    );
    // Not through a stateless request either, where no session stands between them.
    let as_bob = {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {bob}").parse().expect("a header value"),
        );
        reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let stateless = stateless_request_with(
        &as_bob,
        &s.server,
        json!({"name": "create_order", "arguments": confirm.clone()}),
        json!({}),
    )
    .await;
    assert_eq!(stateless["isError"], true, "{stateless}");
    assert!(
        stateless.to_string().contains("issued to another person"),
        "{stateless}"
    );
    assert_eq!(common::posts(&s.sandbox), 0);

    // Bob cannot use Alice's session either: it does not exist for him.
    let opened = s.post(Some(&alice), &initialize()).await;
    assert_eq!(opened.status(), 200);
    let id = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let in_session = |token: &str, body: Value| {
        http()
            .post(s.server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", "2025-06-18")
            .bearer_auth(token.to_owned())
            .json(&body)
            .send()
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(in_session(&alice, initialized).await.unwrap().status(), 202);
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    assert_eq!(in_session(&bob, list.clone()).await.unwrap().status(), 404);
    assert_eq!(in_session(&alice, list).await.unwrap().status(), 200);

    // Alice confirms her own preview.
    let placed = alice_session.ok("create_order", confirm).await;
    assert_eq!(placed["status"], "placed", "{placed}");
    assert_eq!(common::posts(&s.sandbox), 1);

    // The audit trail says who did what.
    let who = |r: &Value| r["person"]["sub"].as_str().unwrap_or_default().to_owned();
    let steps: Vec<(String, String)> = s
        .audit()
        .iter()
        .map(|r| (r["event"].as_str().unwrap().to_owned(), who(r)))
        .collect();
    let expect = |event: &str, person: &str| {
        assert!(
            steps.iter().any(|(e, p)| e == event && p == person),
            "no {event} by {person} in {steps:?}"
        );
    };
    expect("preview", "alice");
    expect("refused", "bob");
    expect("post", "alice");
    assert!(
        !steps
            .iter()
            .any(|(e, p)| p == "bob" && (e == "post" || e == "outcome")),
        "{steps:?}"
    );
}

#[tokio::test]
async fn each_person_has_a_spend_limit_of_their_own_beside_the_shared_one() {
    let Some(s) = Setup::start_full(
        "/mcp",
        |o| o,
        &[
            "--spend-limit-per-person",
            "20EUR/day",
            "--spend-limit",
            "35EUR/month",
        ],
        &[],
    )
    .await
    else {
        return;
    };
    let session = |who: &'static str| {
        let s = &s;
        async move {
            s.server
                .client(Some(&s.oidc.token_for(who, SCOPES).await))
                .await
        }
    };
    let (alice, bob) = (session("alice").await, session("bob").await);
    let two = json!({"products": [{"product_id": 1001, "quantity": 2}]});
    let one = json!({"products": [{"product_id": 1001, "quantity": 1}]});
    alice.place_order(&two).await;
    let refused = alice.err("create_order", one.clone()).await;
    assert!(
        refused.contains("spend limit of 20.00 EUR per day per person")
            && refused.contains("left today for this person: 0.00 EUR of 20.00 EUR"),
        "{refused}"
    );
    // Bob's day is his own; the month is everyone's: 20 + 10 of 35.
    let preview = bob.ok("create_order", one.clone()).await;
    let after = &preview["preview"]["spend_limits_after"];
    assert_eq!(
        (&after[0]["left"], &after[1]["left"]),
        (&json!("5.00 EUR"), &json!("10.00 EUR")),
        "{preview}"
    );
    bob.place_order(&one).await;
    let refused = bob.err("create_order", one.clone()).await;
    assert!(refused.contains("35.00 EUR per month"), "{refused}");
    let products = bob.ok("list_products", json!({})).await;
    assert_eq!(
        products["spend_limits"][0]["spent"], "30.00 EUR",
        "{products}"
    );
    assert_eq!(
        products["spend_limits"][1]["spent"], "10.00 EUR",
        "{products}"
    );
    assert_eq!(common::posts(&s.sandbox), 2);
}

#[tokio::test]
async fn legacy_sse_sessions_carry_the_person_and_the_scopes_too() {
    // The server's root as the resource, which covers /sse as well as /mcp.
    let Some(s) = Setup::start_at("/", |o| o).await else {
        return;
    };
    let refused = http()
        .get(s.server.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let metadata_url = param(&challenge(&refused), "resource_metadata").unwrap();
    assert_eq!(
        metadata_url,
        s.server.url("/.well-known/oauth-protected-resource")
    );
    let prm = get_json(&metadata_url).await;
    assert_eq!(prm["resource"], s.public);
    // LegacySession keeps its token for the whole test run.
    let reader: &'static str = Box::leak(s.oidc.token_for("reader", "orders:read").await.into());
    let bob = s.oidc.token_for("bob", SCOPES).await;
    let mut session = LegacySession::open(&s.server, Some(reader)).await;
    session.initialize().await;
    let tools = session.request(2, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"create_order"), "{names:?}");
    assert_eq!(names.len(), common::ALL_TOOLS.len() - 1, "{names:?}");
    let listed = session
        .request(
            3,
            "tools/call",
            json!({"name": "list_orders", "arguments": {"page_size": 1}}),
        )
        .await;
    assert_ne!(listed["result"]["isError"], json!(true), "{listed}");
    // Beyond the scopes: 403 before anything reaches the session.
    let post = |token: &str, message: Value| {
        session
            .http
            .post(&session.post_url)
            .bearer_auth(token.to_owned())
            .json(&message)
            .send()
    };
    let write = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "create_order", "arguments": order()}});
    let refused = post(reader, write.clone()).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(challenge(&refused).contains("insufficient_scope"));
    // Another person's token finds no such session.
    assert_eq!(post(&bob, write).await.unwrap().status(), 404);
    assert_eq!(common::posts(&s.sandbox), 0);
}

/// What checking an access token costs a call: stateless `list_products` (answered from the
/// catalogue cache) over HTTP with a static bearer token, and with RS256 and ES256 JWTs of a
/// real authorization server; then a flood of tokens naming made-up keys, against the JWKS
/// fetches it causes. `BENCH_BINARY=target/profiling/1nce-mcp cargo test --test integration
/// oauth::measure -- --ignored --nocapture` (BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand for BENCHMARKS.md"]
async fn measure_token_checks() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let percentile = |sorted: &[std::time::Duration], p: f64| {
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    };
    let measure = |server: &HttpServer, token: String| {
        let url = server.url("/mcp");
        async move {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
            let http = reqwest::Client::builder()
                .no_proxy()
                .default_headers(headers)
                .build()
                .unwrap();
            let server_url = url;
            let mut took = Vec::with_capacity(rounds);
            for i in 0..rounds + 100 {
                let started = std::time::Instant::now();
                let response = http
                    .post(&server_url)
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "list_products")
                    .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                        "name": "list_products", "arguments": {},
                        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                            "io.modelcontextprotocol/clientCapabilities": {},
                            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"}}}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                if i >= 100 {
                    took.push(started.elapsed());
                }
            }
            took.sort();
            took
        }
    };
    let sandbox = Sandbox::start().await.unwrap();
    let api_url = sandbox.base_url();
    let env = common::sandbox_env(&api_url);
    let mut with_token = env.to_vec();
    with_token.push(("ONCE_MCP_HTTP_TOKEN", common::net::TOKEN));
    let plain = HttpServer::spawn(&["--rate-limit", "off"], &with_token).await;
    let took = measure(&plain, common::net::TOKEN.to_owned()).await;
    println!(
        "static token: p50 {:?} p90 {:?} p99 {:?} ({rounds} calls)",
        percentile(&took, 0.5),
        percentile(&took, 0.9),
        percentile(&took, 0.99)
    );
    plain.stop().await;
    for alg in [
        jsonwebtoken::Algorithm::RS256,
        jsonwebtoken::Algorithm::ES256,
    ] {
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}/mcp");
        let Some(oidc) = Oidc::start_with(Options::new(&public).alg(alg)).await else {
            return;
        };
        let server = HttpServer::spawn_at(
            &format!("127.0.0.1:{port}"),
            &[
                "--rate-limit",
                "off",
                "--oauth-issuer",
                &oidc.issuer(),
                "--public-url",
                &public,
            ],
            &env,
        )
        .await;
        let token = oidc.token_for("bench", SCOPES).await;
        let took = measure(&server, token.clone()).await;
        println!(
            "OAuth {alg:?}: p50 {:?} p90 {:?} p99 {:?} ({rounds} calls)",
            percentile(&took, 0.5),
            percentile(&took, 0.9),
            percentile(&took, 0.99)
        );
        let before = oidc.jwks_fetches().await;
        let started = std::time::Instant::now();
        let http = http();
        let mut refused = 0;
        for i in 0..1000 {
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[0] = URL_SAFE_NO_PAD.encode(
                json!({"alg": format!("{alg:?}"), "typ": "at+jwt", "kid": format!("flood-{i}")})
                    .to_string(),
            );
            let status = http
                .post(server.url("/mcp"))
                .bearer_auth(parts.join("."))
                .json(&initialize())
                .send()
                .await
                .unwrap()
                .status();
            refused += usize::from(status == 401);
        }
        let fetches = oidc.jwks_fetches().await - before;
        println!(
            "OAuth {alg:?}: 1000 tokens naming made-up keys in {:?}: {refused} refused, {fetches} JWKS fetch(es)",
            started.elapsed()
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn opaque_tokens_are_introspected_under_the_same_rules_and_a_flood_is_limited() {
    let (id, secret) = (
        "1nce-mcp-resource-server",
        "introspection-secret-for-the-test",
    );
    let Some(s) = Setup::start_full(
        "/mcp",
        |o| o.opaque(id, secret),
        &["--oauth-client-id", id],
        &[("ONCE_OAUTH_CLIENT_SECRET", secret)],
    )
    .await
    else {
        return;
    };
    // A real-flow token is opaque now, and vouched for by the authorization server.
    let reader = s.oidc.token_for("reader", "orders:read").await;
    assert_eq!(reader.split('.').count(), 1, "an opaque token: {reader}");
    let session = s.server.client(Some(&reader)).await;
    let tools = session.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), common::ALL_TOOLS.len() - 1, "{tools:?}");
    session.ok("list_orders", json!({"page_size": 1})).await;
    let refused = s.post(Some(&reader), &call("create_order", order())).await;
    assert_eq!(refused.status(), 403);

    let alice = s.oidc.token_for("alice", SCOPES).await;
    let writer = s.server.client(Some(&alice)).await;
    writer.ok("create_order", order()).await;
    assert_eq!(s.audit()[0]["person"]["sub"], "alice", "{:?}", s.audit());

    // Introspected once per token: later calls use the remembered answer.
    let introspections = || s.oidc.requests_to("/token/introspection");
    let before = introspections().await;
    for _ in 0..5 {
        writer.ok("list_products", json!({})).await;
    }
    assert_eq!(introspections().await, before);

    // Unknown to the authorization server: 401, not active. JWTs are still checked locally.
    let unknown = s
        .post(Some("made-up-opaque-token-1234567890"), &initialize())
        .await;
    assert_eq!(unknown.status(), 401);
    assert!(
        challenge(&unknown).contains("not active"),
        "{}",
        challenge(&unknown)
    );
    let jwt = s.oidc.sign(&s.oidc.claims("carol", SCOPES));
    assert_eq!(s.post(Some(&jwt), &initialize()).await.status(), 200);

    // A flood of made-up tokens costs the authorization server at most the introspection
    // limit: the rest are answered 503 "try again" without asking it.
    let before = introspections().await;
    let started = std::time::Instant::now();
    let flood: Vec<String> = (0..300)
        .map(|i| format!("flood-token-{i:04}-padding"))
        .collect();
    // One kept-alive connection, as fast as the server answers.
    let client = http();
    let mut answers = Vec::new();
    for token in &flood {
        let response = client
            .post(s.server.url("/mcp"))
            .bearer_auth(token)
            .json(&initialize())
            .send()
            .await
            .unwrap();
        answers.push(response.status().as_u16());
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        answers.iter().all(|a| *a == 401 || *a == 503),
        "{answers:?}"
    );
    let asked = introspections().await - before;
    let limit = onence_mcp::oauth::introspection::LIMIT;
    let allowed = f64::from(limit.burst) + f64::from(limit.requests) * elapsed + 1.0;
    assert!(
        (asked as f64) <= allowed,
        "{asked} introspections in {elapsed:.2} s (limit {allowed:.0})"
    );
    assert_eq!(answers.iter().filter(|a| **a == 401).count(), asked);
    eprintln!("flood: {asked} of 300 introspected in {elapsed:.2} s, the rest answered 503");
    let stderr = s.server.stderr();
    assert!(!stderr.contains(secret), "the client secret was logged");
    assert!(!stderr.contains(&alice), "an access token was logged");
}

#[tokio::test]
async fn misconfigurations_exit_with_the_fix() {
    let run = |args: Vec<&'static str>, env: Vec<(&'static str, &'static str)>| async move {
        let mut all = vec!["--sandbox"];
        all.extend(args);
        let out = tokio::time::timeout(common::PATIENCE, common::command(&all, &env).output())
            .await
            .expect("the server exits")
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let issuer = ["--oauth-issuer", "http://127.0.0.1:9/realms/acme"];
    let public = ["--public-url", "http://127.0.0.1:8080/mcp"];
    let http = ["--http", "127.0.0.1:0"];
    // (arguments, environment, exit status, what stderr says)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            [&http[..], &issuer[..]].concat(),
            vec![],
            2,
            "--oauth-issuer needs --public-url",
        ),
        (
            [&http[..], &public[..]].concat(),
            vec![],
            2,
            "--public-url only applies with --oauth-issuer",
        ),
        (
            [&http[..], &issuer[..], &public[..]].concat(),
            vec![("ONCE_MCP_HTTP_TOKEN", common::net::TOKEN)],
            2,
            "use one",
        ),
        (
            [&issuer[..], &public[..]].concat(),
            vec![],
            2,
            "only apply with --http",
        ),
        (
            [
                &http[..],
                &["--oauth-issuer", "http://idp.example.com/"][..],
                &public[..],
            ]
            .concat(),
            vec![],
            2,
            "plain http",
        ),
        (
            [&http[..], &issuer[..], &public[..]].concat(),
            vec![],
            3,
            "could not read the authorization server's metadata",
        ),
    ];
    for (args, env, code, says) in cases {
        let (status, stderr) = run(args.clone(), env).await;
        assert_eq!(status, Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains(common::net::TOKEN), "{stderr}");
    }
}

/// The official Python MCP SDK as the client, with its own OAuth support
/// (`OAuthClientProvider`): from the bare 401 it discovers the protected resource and the
/// authorization server, registers itself and runs the authorization code flow with PKCE.
/// `tests/interop/python_oauth_client.py` plays only the person (login and consent, granting
/// read access the first time) and the redirect URI's listener. A read-only person sees no
/// create_order and can list orders; create_order then meets 403 insufficient_scope, which the
/// SDK answers by re-authorizing with the challenged scope (step-up) and retrying: a preview.
/// Once with the initialize handshake (a session) and once with server/discover (stateless).
#[tokio::test]
async fn python_sdk_does_the_whole_oauth_journey_by_itself() {
    let Some(python) = crate::interop::client("ONCE_INTEROP_PYTHON") else {
        return;
    };
    let Some(s) = Setup::start().await else {
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_oauth_client.py"
    );
    let readers: Vec<&str> = common::ALL_TOOLS
        .into_iter()
        .filter(|t| *t != "create_order")
        .collect();
    for (mode, subject) in [("legacy", "rita"), ("auto", "ravi")] {
        let args = [script, mode, &s.public, subject].map(str::to_owned);
        let (ok, stdout, stderr) = crate::interop::run(&python, &args).await;
        assert!(
            ok,
            "the python SDK's OAuth journey ({mode}) failed:\n{stdout}\n{stderr}\n\
             server:\n{}\nprovider:\n{}",
            s.server.stderr(),
            s.oidc.stderr()
        );
        let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");

        // Read-only: no create_order, and list_orders works.
        assert_eq!(report["read_tools"], json!(readers), "{report}");
        assert_eq!(report["list_orders"], 2, "{report}");
        let read = &report["read_token"]["claims"];
        assert_eq!(read["sub"], subject, "{report}");
        assert_eq!(read["aud"], s.public, "{report}");
        assert_eq!(read["iss"], s.oidc.issuer(), "{report}");
        let scopes = |claims: &Value| -> Vec<String> {
            claims["scope"]
                .as_str()
                .unwrap_or_default()
                .split(' ')
                .map(str::to_owned)
                .collect()
        };
        assert!(scopes(read).contains(&"orders:read".into()), "{report}");
        assert!(!scopes(read).contains(&"orders:write".into()), "{report}");

        // The SDK found everything from the 401: the metadata URL the challenge named first,
        // then the issuer's metadata, registration, and `resource` on every authorization and
        // token request.
        let requests = report["requests"].as_array().unwrap();
        let first_get = |prefix: &str| {
            requests.iter().position(|r| {
                r["method"] == "GET" && r["url"].as_str().unwrap().starts_with(prefix)
            })
        };
        let prm = first_get(&s.server.url("/.well-known/oauth-protected-resource"))
            .expect("the SDK fetched the protected resource metadata");
        assert_eq!(
            requests[prm]["url"],
            s.server.url("/.well-known/oauth-protected-resource/mcp"),
            "{report}"
        );
        assert_eq!(requests[prm]["status"], 200, "{report}");
        assert_eq!(
            requests[prm.saturating_sub(1)]["status"],
            401,
            "the metadata was fetched after a 401: {report}"
        );
        let asm = first_get(&format!("{}/.well-known/", s.oidc.issuer()))
            .expect("the SDK fetched the authorization server's metadata");
        assert!(asm > prm, "{report}");
        let metadata = s.oidc.metadata();
        let registration = metadata.registration_endpoint.as_deref().unwrap();
        assert!(
            requests
                .iter()
                .any(|r| r["method"] == "POST" && r["url"] == registration && r["status"] == 201),
            "{report}"
        );
        let authorizations = report["authorizations"].as_array().unwrap();
        assert_eq!(
            authorizations.len(),
            2,
            "one authorization, one step-up: {report}"
        );
        for a in authorizations {
            assert_eq!(a["endpoint"], metadata.authorization_endpoint, "{report}");
            assert_eq!(a["resource"], s.public, "{report}");
            assert_eq!(a["code_challenge_method"], "S256", "{report}");
        }
        let exchanges: Vec<&Value> = requests
            .iter()
            .filter(|r| r["url"] == metadata.token_endpoint)
            .collect();
        assert_eq!(exchanges.len(), 2, "{report}");
        for exchange in &exchanges {
            assert_eq!(exchange["grant_type"], "authorization_code", "{report}");
            assert_eq!(exchange["resource"], s.public, "{report}");
            assert_eq!(exchange["status"], 200, "{report}");
        }

        // The step-up: 403 insufficient_scope naming orders:write, a second authorization that
        // asks for it on top of orders:read, and the retried call is a preview.
        let refused = requests
            .iter()
            .find(|r| r["status"] == 403)
            .expect("the server refused create_order with 403");
        let www = refused["www_authenticate"].as_str().unwrap();
        assert_eq!(param(www, "error").as_deref(), Some("insufficient_scope"));
        assert_eq!(param(www, "scope").as_deref(), Some("orders:write"));
        let step_up = authorizations[1]["scope_asked"].as_str().unwrap();
        assert!(
            step_up.contains("orders:read") && step_up.contains("orders:write"),
            "{report}"
        );
        assert_eq!(
            report["step_up"]["preview_status"], "confirmation_required",
            "{report}"
        );
        let write = &report["step_up"]["token"]["claims"];
        assert_eq!(write["sub"], subject, "{report}");
        assert!(scopes(write).contains(&"orders:write".into()), "{report}");
        assert_eq!(report["tools_after_step_up"], json!(common::ALL_TOOLS));

        // The audit log names the person for the preview.
        let previews: Vec<Value> = s
            .audit()
            .into_iter()
            .filter(|r| r["event"] == "preview" && r["person"]["sub"] == subject)
            .collect();
        assert_eq!(previews.len(), 1, "{:?}", s.audit());
    }
    for record in s.audit() {
        assert!(
            ["rita", "ravi"].contains(&record["person"]["sub"].as_str().unwrap_or_default()),
            "{record}"
        );
    }
    assert_eq!(common::posts(&s.sandbox), 0, "previews only");
}
