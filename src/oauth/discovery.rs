//! The authorization server's metadata, found the ways MCP clients find it: RFC 8414
//! (`/.well-known/oauth-authorization-server`, inserted before the issuer's path), then
//! OpenID Connect discovery (`/.well-known/openid-configuration`, inserted and appended).

use serde::Deserialize;
use url::Url;

use super::{FetchError, get_json};

/// What the resource server takes from the metadata.
#[derive(Debug)]
pub struct Discovered {
    /// The issuer exactly as the metadata says it: the `iss` tokens carry.
    pub issuer: String,
    pub jwks_uri: Url,
    /// Where opaque tokens are introspected (RFC 7662), when the metadata says.
    pub introspection_endpoint: Option<Url>,
    /// What MCP clients will miss, for the start-up log.
    pub notes: Vec<String>,
    /// Where the metadata was read.
    pub from: Url,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    client_id_metadata_document_supported: bool,
}

/// The metadata URLs to try for `issuer`, in order.
pub fn candidates(issuer: &Url) -> Vec<Url> {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    let mut urls = vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
    ];
    if !path.is_empty() {
        urls.push(format!("{origin}{path}/.well-known/openid-configuration"));
    }
    urls.iter().filter_map(|u| Url::parse(u).ok()).collect()
}

/// Reads the first metadata document found and checks it is the issuer's own. When nothing
/// answers at all, the other places (on the same host) are not tried: they would not answer
/// either, each after its own timeout.
pub async fn discover(http: &reqwest::Client, issuer: &Url) -> Result<Discovered, String> {
    let mut tried = Vec::new();
    for url in candidates(issuer) {
        let metadata: Metadata = match get_json(http, &url).await {
            Ok(m) => m,
            Err(FetchError::NoAnswer(why)) if tried.is_empty() => {
                return Err(format!(
                    "could not read the authorization server's metadata for --oauth-issuer {issuer}: nothing answers at {} ({why}). Check the issuer URL (the `iss` of its tokens, e.g. https://keycloak.example.com/realms/acme) and that this machine reaches it (firewall, proxy, DNS)",
                    issuer.origin().ascii_serialization()
                ));
            }
            Err(e) => {
                tried.push(format!("{url}: {e}"));
                continue;
            }
        };
        return check(metadata, issuer, &url);
    }
    Err(format!(
        "could not read the authorization server's metadata for --oauth-issuer {issuer} (tried {}). Check the issuer URL: it is the `iss` of its tokens, e.g. https://keycloak.example.com/realms/acme",
        tried.join("; ")
    ))
}

fn check(metadata: Metadata, issuer: &Url, from: &Url) -> Result<Discovered, String> {
    // RFC 8414 §3.3: the metadata must name the issuer it was asked for (a trailing slash
    // aside, which URL parsing adds to a bare host).
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if !same(&metadata.issuer, issuer.as_str()) {
        return Err(format!(
            "the metadata at {from} is for issuer {:?}, not {issuer}; set --oauth-issuer to the issuer exactly as the authorization server names it",
            metadata.issuer
        ));
    }
    let jwks_uri = metadata
        .jwks_uri
        .as_deref()
        .ok_or_else(|| format!("the metadata at {from} has no jwks_uri: this server needs the authorization server's signing keys to check JWT access tokens"))?;
    let jwks_uri = Url::parse(jwks_uri)
        .map_err(|e| format!("the metadata at {from} has an invalid jwks_uri: {e}"))?;
    if jwks_uri.scheme() != "https" && !crate::is_loopback_url(&jwks_uri) {
        return Err(format!(
            "the authorization server's jwks_uri {jwks_uri} is not https: keys fetched in the clear could be replaced on the way"
        ));
    }
    let mut notes = Vec::new();
    if !metadata
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        notes.push("its metadata does not list PKCE S256 in code_challenge_methods_supported; MCP clients (claude.ai, ChatGPT, the SDKs) refuse to authorize against it".to_owned());
    }
    if metadata.registration_endpoint.is_none() && !metadata.client_id_metadata_document_supported {
        notes.push("it offers neither dynamic client registration (registration_endpoint) nor client ID metadata documents; claude.ai and ChatGPT connectors need one of them, other clients need a client registered by hand".to_owned());
    }
    let introspection_endpoint = metadata
        .introspection_endpoint
        .as_deref()
        .and_then(|u| Url::parse(u).ok())
        .filter(|u| u.scheme() == "https" || crate::is_loopback_url(u));
    Ok(Discovered {
        issuer: metadata.issuer,
        jwks_uri,
        introspection_endpoint,
        notes,
        from: from.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(issuer: &str) -> Vec<String> {
        candidates(&Url::parse(issuer).unwrap())
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn metadata_is_looked_for_where_rfc_8414_and_openid_put_it() {
        assert_eq!(
            urls("https://kc.example.com/realms/acme"),
            [
                "https://kc.example.com/.well-known/oauth-authorization-server/realms/acme",
                "https://kc.example.com/.well-known/openid-configuration/realms/acme",
                "https://kc.example.com/realms/acme/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("https://acme.auth0.com/"),
            [
                "https://acme.auth0.com/.well-known/oauth-authorization-server",
                "https://acme.auth0.com/.well-known/openid-configuration",
            ]
        );
    }

    fn metadata(issuer: &str, jwks: Option<&str>) -> Metadata {
        Metadata {
            issuer: issuer.to_owned(),
            jwks_uri: jwks.map(str::to_owned),
            introspection_endpoint: None,
            registration_endpoint: None,
            code_challenge_methods_supported: vec!["S256".into()],
            client_id_metadata_document_supported: true,
        }
    }

    #[test]
    fn metadata_must_be_the_issuers_own_with_https_keys() {
        let issuer = Url::parse("https://acme.auth0.com/").unwrap();
        let from = issuer.clone();
        let ok = check(
            metadata(
                "https://acme.auth0.com/",
                Some("https://acme.auth0.com/jwks"),
            ),
            &issuer,
            &from,
        )
        .unwrap();
        assert_eq!(ok.issuer, "https://acme.auth0.com/");
        assert!(ok.notes.is_empty());
        let err = check(
            metadata("https://evil.example/", Some("https://evil.example/jwks")),
            &issuer,
            &from,
        )
        .unwrap_err();
        assert!(err.contains("not https://acme.auth0.com/"), "{err}");
        let err = check(metadata("https://acme.auth0.com", None), &issuer, &from).unwrap_err();
        assert!(err.contains("no jwks_uri"), "{err}");
        let err = check(
            metadata("https://acme.auth0.com", Some("http://acme.auth0.com/jwks")),
            &issuer,
            &from,
        )
        .unwrap_err();
        assert!(err.contains("not https"), "{err}");
        let mut bare = metadata("https://acme.auth0.com", Some("https://acme.auth0.com/k"));
        bare.code_challenge_methods_supported.clear();
        bare.client_id_metadata_document_supported = false;
        assert_eq!(check(bare, &issuer, &from).unwrap().notes.len(), 2);
    }
}
