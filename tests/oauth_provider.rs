//! The OAuth test harness itself (tests/common/oidc.rs and tests/oidc/provider.mjs), before any
//! test of the server leans on it: the real authorization server issues JWT access tokens with
//! the audience, scopes and claims the server will check, refuses other resources, serves the
//! keys that verify them, and rotates them; a token the harness crafts verifies like a real one.
//!
//! Skipped (listed at the end of the run, see `common::skip`) unless oidc-provider is installed
//! (`eval "$(scripts/oidc-setup)"`); under `ONCE_INTEROP_REQUIRED=1`, as in CI, its absence
//! fails.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::common::oidc::{
    self, Metadata, Oidc, Options, REDIRECT_URI, SCOPES, jwt_parts, try_authorize, try_exchange,
};

/// Stands in for the server's public URL; nothing needs to listen there.
const RESOURCE: &str = "http://127.0.0.1:9/mcp";

/// Verifies `token` against `jwks` as a resource server would: the key its kid names, the
/// signature, the issuer, the audience and the expiry. The claims, or why not.
fn verify(token: &str, jwks: &JwkSet, issuer: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or(format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[RESOURCE]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_journey_yields_a_jwt_for_the_resource_with_what_was_granted() {
    let Some(oidc) = Oidc::start_with(Options::new(RESOURCE).ttl(321)).await else {
        return;
    };
    let jwks = oidc::jwks(oidc.metadata()).await;
    let mut subs = Vec::new();
    for (subject, scope) in [
        ("alice", "orders:read"),
        ("bob", "orders:read orders:write"),
    ] {
        let token = oidc.token_for(subject, scope).await;
        let (header, payload) = jwt_parts(&token);
        assert_eq!(header["typ"], "at+jwt", "{header}");
        assert_eq!(header["alg"], "RS256", "{header}");
        assert_eq!(header["kid"], oidc.signing_key().0.as_str(), "{header}");
        let claims = verify(&token, &jwks, &oidc.issuer()).unwrap();
        assert_eq!(claims, payload);
        assert_eq!(payload["iss"], oidc.issuer().as_str());
        assert_eq!(payload["aud"], RESOURCE);
        assert_eq!(payload["scope"], scope);
        assert_eq!(payload["sub"], subject);
        assert_eq!(payload["email"], format!("{subject}@example.test").as_str());
        assert_eq!(payload["preferred_username"], subject);
        let (iat, exp) = (payload["iat"].as_u64(), payload["exp"].as_u64());
        assert_eq!(exp.unwrap() - iat.unwrap(), oidc.ttl(), "{payload}");
        subs.push(payload["sub"].clone());
    }
    assert_ne!(subs[0], subs[1]);
}

#[tokio::test]
async fn another_resource_or_a_wrong_verifier_gets_no_token() {
    let Some(oidc) = Oidc::start(RESOURCE).await else {
        return;
    };
    let metadata = oidc.metadata();
    let client = oidc::register(metadata, REDIRECT_URI).await;

    let other = "http://127.0.0.1:9/other";
    let refused = try_authorize(
        metadata,
        &client,
        REDIRECT_URI,
        SCOPES,
        Some(other),
        "alice",
    )
    .await;
    let error = refused.expect_err("a code for another resource");
    assert!(error.starts_with("invalid_target"), "{error}");

    // A code for the resource, exchanged for another one.
    let code = oidc::authorize(
        metadata,
        &client,
        REDIRECT_URI,
        SCOPES,
        Some(RESOURCE),
        "alice",
    )
    .await;
    let (status, body) = try_exchange(metadata, &client, REDIRECT_URI, &code, Some(other))
        .await
        .expect_err("a token for another resource");
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    // PKCE: the verifier must match the challenge the code was requested with.
    let code = oidc::authorize(
        metadata,
        &client,
        REDIRECT_URI,
        SCOPES,
        Some(RESOURCE),
        "alice",
    )
    .await;
    let mut wrong = code.clone();
    wrong.verifier = format!("{}x", code.verifier);
    let (status, body) = try_exchange(metadata, &client, REDIRECT_URI, &wrong, Some(RESOURCE))
        .await
        .expect_err("a token for a wrong verifier");
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Without a resource indicator the code is good for an opaque token only (RFC 8707 leaves
    // the audience to the server; this one names none): no JWT a resource server could accept.
    let code = oidc::authorize(metadata, &client, REDIRECT_URI, SCOPES, None, "alice").await;
    let token = oidc::exchange(metadata, &client, REDIRECT_URI, &code, None).await;
    assert_eq!(token.split('.').count(), 1, "{token}");

    // A scope the resource does not define is not in the token.
    let token = oidc.token_for("alice", "orders:read orders:delete").await;
    assert_eq!(jwt_parts(&token).1["scope"], "orders:read");
}

#[tokio::test]
async fn a_realm_path_issuer_serves_discovery_signs_crafted_tokens_and_rotates_keys() {
    let options = Options::new(RESOURCE)
        .path("/realms/test")
        .alg(Algorithm::ES256);
    let Some(mut oidc) = Oidc::start_with(options).await else {
        return;
    };
    let issuer = oidc.issuer();
    assert!(issuer.ends_with("/realms/test"), "{issuer}");
    // Keycloak's form, RFC 8414's path-inserted form, and the OpenID form with the path inserted
    // (the three an MCP client tries) all answer with this issuer's metadata.
    let origin = issuer.trim_end_matches("/realms/test");
    for url in [
        format!("{issuer}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server/realms/test"),
        format!("{origin}/.well-known/openid-configuration/realms/test"),
    ] {
        let metadata = Metadata::fetch(&url).await;
        assert_eq!(metadata.issuer, issuer, "{url}");
        assert_eq!(metadata.jwks_uri, format!("{issuer}/jwks"), "{url}");
        assert_eq!(metadata.code_challenge_methods_supported, ["S256"]);
    }
    // Every request is logged, in order, whichever form it came in.
    let log = oidc.stderr();
    assert!(
        log.contains("request GET /.well-known/oauth-authorization-server/realms/test\n"),
        "{log}"
    );
    assert_eq!(oidc.jwks_fetches().await, 0);

    let jwks = oidc::jwks(oidc.metadata()).await;
    assert_eq!(oidc.jwks_fetches().await, 1);
    let (kid, _pem) = oidc.signing_key();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some(kid.as_str()));

    // The provider's own token, and one the test signs with its key, verify alike.
    let real = oidc.token_for("alice", "orders:read").await;
    assert_eq!(jwt_parts(&real).0["alg"], "ES256");
    verify(&real, &jwks, &issuer).unwrap();
    let crafted = oidc.sign(&oidc.claims("carol", "orders:write"));
    let claims = verify(&crafted, &jwks, &issuer).unwrap();
    assert_eq!(claims["sub"], "carol");
    let mut expired = oidc.claims("carol", "orders:write");
    expired["exp"] = (expired["iat"].as_u64().unwrap() - 3600).into();
    let error = verify(&oidc.sign(&expired), &jwks, &issuer).unwrap_err();
    assert!(error.contains("Expired"), "{error}");

    // A client registered before the rotation is still known after it.
    let client = oidc::register(oidc.metadata(), REDIRECT_URI).await;
    oidc.rotate_keys().await;
    let (new_kid, _) = oidc.signing_key();
    assert_ne!(new_kid, kid);
    let rotated = oidc::jwks(oidc.metadata()).await;
    assert_eq!(oidc.jwks_fetches().await, 2, "counted across the restart");
    let kids: Vec<_> = rotated
        .keys
        .iter()
        .map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, [Some(new_kid.clone())]);
    let error = verify(&real, &rotated, &issuer).unwrap_err();
    assert!(error.contains("not in the JWKS"), "{error}");

    let metadata = oidc.metadata();
    let code = oidc::authorize(
        metadata,
        &client,
        REDIRECT_URI,
        SCOPES,
        Some(RESOURCE),
        "bob",
    )
    .await;
    let token = oidc::exchange(metadata, &client, REDIRECT_URI, &code, None).await;
    let (header, payload) = jwt_parts(&token);
    assert_eq!(header["kid"], new_kid.as_str());
    assert_eq!(
        payload["aud"], RESOURCE,
        "the granted resource, without asking again"
    );
    assert_eq!(payload["scope"], SCOPES);
    verify(&token, &rotated, &issuer).unwrap();
}

/// Told to, the provider writes another `aud` into the resource's tokens, as Entra ID writes the
/// API's application id and Keycloak, by default, `account`; the claims the harness crafts
/// follow it. A resource server that insists on the resource URL refuses such a token.
#[tokio::test]
async fn tokens_can_carry_another_audience_as_entra_id_and_keycloak_write_it() {
    let Some(oidc) = Oidc::start_with(Options::new(RESOURCE).audience("account")).await else {
        return;
    };
    assert_eq!(oidc.audience(), "account");
    let token = oidc.token_for("alice", "orders:read").await;
    let (_, payload) = jwt_parts(&token);
    assert_eq!(payload["aud"], "account");
    assert_eq!(payload["scope"], "orders:read");
    assert_eq!(oidc.claims("bob", SCOPES)["aud"], "account");
    let jwks = oidc::jwks(oidc.metadata()).await;
    let error = verify(&token, &jwks, &oidc.issuer()).unwrap_err();
    assert!(error.contains("InvalidAudience"), "{error}");
}
