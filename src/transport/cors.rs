//! CORS for the origins an operator listed with `--allowed-origin`, so a web client served from
//! one of them can call the server from a browser (MCP Inspector's *Direct* connection, a web
//! agent). A browser sends a JSON `POST` with an `Authorization` header only after a preflight
//! `OPTIONS` that carries no token, and lets the page read the answer (and the
//! `Mcp-Session-Id` header that names its session) only if the server says so.
//!
//! Only listed origins get these headers, including Chromium's Private Network Access consent
//! for a public site calling a server on loopback. Loopback origins pass the
//! [`Guard`](super::guard) but are not listed here: any page on the machine, from any local port,
//! would otherwise be able to drive the server from the browser. The preflight is answered before
//! the guard (it carries no token and no data); every real request still passes the guard.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, AllowPrivateNetwork, CorsLayer};

/// How long a browser may reuse a preflight answer (Chromium caps it at two hours).
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Response headers a web client of MCP needs to read.
const EXPOSED: [&str; 3] = ["mcp-session-id", "mcp-protocol-version", "www-authenticate"];

/// The CORS layer for `origins` (normalised `scheme://host[:port]`), or `None` when there are
/// none: then the server sends no CORS headers at all, as before.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let listed = origins.clone();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            // A page on a public site calling a server on loopback or a private address: Chromium
            // asks first (Private Network Access), and only a listed origin gets a yes.
            .allow_private_network(AllowPrivateNetwork::predicate(move |origin, _| {
                listed.contains(origin)
            }))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            // Whatever the client asks to send: the origin is trusted, the guard still checks the
            // token, and MCP clients add headers of their own (`Mcp-Protocol-Version`,
            // `Last-Event-ID`, ...).
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(EXPOSED.map(HeaderName::from_static))
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderMap, Request, StatusCode, header};
    use axum::routing::post;
    use tower::ServiceExt;

    /// Whether `headers` (of a response) let a browser page on `origin` read it.
    fn readable_by(headers: &HeaderMap, origin: &str) -> bool {
        headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_some_and(|v| v == origin)
    }

    const LISTED: &str = "https://agent.example.com";

    fn app() -> Router {
        Router::new()
            .route("/mcp", post(|| async { "answer" }))
            .layer(layer(&[LISTED.to_owned()]).unwrap())
    }

    const PRIVATE_NETWORK: &str = "access-control-allow-private-network";

    fn preflight(origin: &str) -> Request<Body> {
        Request::options("/mcp")
            .header(header::ORIGIN, origin)
            .header("access-control-request-private-network", "true")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type,mcp-session-id,mcp-protocol-version",
            )
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_listed_origin_may_send_and_read() {
        let answer = app().oneshot(preflight(LISTED)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let headers = answer.headers();
        assert!(readable_by(headers, LISTED), "{headers:?}");
        let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap();
        assert!(
            methods.contains("POST") && methods.contains("DELETE"),
            "{methods}"
        );
        let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap();
        assert!(allowed.contains("authorization") && allowed.contains("mcp-session-id"));
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "3600");
        assert_eq!(headers[PRIVATE_NETWORK], "true");

        let post = Request::post("/mcp")
            .header(header::ORIGIN, LISTED)
            .body(Body::empty())
            .unwrap();
        let answer = app().oneshot(post).await.unwrap();
        assert!(readable_by(answer.headers(), LISTED));
        let exposed = answer.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap();
        assert!(exposed.contains("mcp-session-id"), "{exposed}");
    }

    #[tokio::test]
    async fn other_origins_get_no_permission() {
        for origin in ["https://evil.example", "http://localhost:6274", "null"] {
            let answer = app().oneshot(preflight(origin)).await.unwrap();
            assert!(!readable_by(answer.headers(), origin), "{origin}");
            assert!(answer.headers().get(PRIVATE_NETWORK).is_none(), "{origin}");
            assert!(
                answer
                    .headers()
                    .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                    .is_none(),
                "{origin}"
            );
        }
    }

    #[test]
    fn no_listed_origin_means_no_cors() {
        assert!(layer(&[]).is_none());
    }
}
