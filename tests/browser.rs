//! CORS in a real browser: headless Chromium loads a page that calls the server with `fetch`,
//! as a web client (MCP Inspector's *Direct* connection, a web agent) does. The unit tests in
//! `src/transport/cors.rs` check the headers; only a browser decides what a page may read.
//!
//! One page server answers on `127.0.0.1` and on `localhost`: the server lists the first origin
//! with `--allowed-origin`, so the same page works from one and fails from the other, which also
//! shows why README's Inspector example names `http://127.0.0.1:6274`, the origin the Inspector
//! really has.
//!
//! Chromium is Debian's `chromium` (`.ci/run` installs it); `ONCE_INTEROP_CHROMIUM` may name
//! another. Without it the test skips (listed at the end of the run, see `common::skip`), unless
//! `ONCE_INTEROP_REQUIRED=1`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::common::installed;
use crate::common::net::{HttpServer, TOKEN};
use crate::common::{Stderr, temp_dir};

/// Chromium starts, loads the page and runs three requests in well under this.
const BROWSER_PATIENCE: Duration = Duration::from_secs(60);

/// The page: `initialize`, `notifications/initialized` and `tools/call list_orders` with
/// `fetch` against the URL in its `?mcp=` query, then a report of what it could read, posted
/// back to where it came from.
fn page() -> String {
    format!(
        r#"<!doctype html><html><body><script>
const MCP = new URLSearchParams(location.search).get("mcp");
const headers = (extra) => Object.assign({{
  "content-type": "application/json",
  "accept": "application/json, text/event-stream",
  "authorization": "Bearer {TOKEN}",
}}, extra);
async function rpc(body, extra) {{
  const answer = await fetch(MCP, {{ method: "POST", headers: headers(extra), body: JSON.stringify(body) }});
  return {{ status: answer.status, session: answer.headers.get("mcp-session-id"), text: await answer.text() }};
}}
async function run() {{
  try {{
    const init = await rpc({{ jsonrpc: "2.0", id: 1, method: "initialize", params: {{
      protocolVersion: "2025-06-18", capabilities: {{}}, clientInfo: {{ name: "chromium", version: "0" }} }} }});
    const session = {{ "mcp-session-id": init.session, "mcp-protocol-version": "2025-06-18" }};
    await rpc({{ jsonrpc: "2.0", method: "notifications/initialized" }}, session);
    const call = await rpc({{ jsonrpc: "2.0", id: 2, method: "tools/call", params: {{
      name: "list_orders", arguments: {{ page_size: 1 }} }} }}, session);
    return {{ ok: true, origin: location.origin, init, call }};
  }} catch (e) {{
    return {{ ok: false, origin: location.origin, error: String(e) }};
  }}
}}
run().then((report) => fetch("/report", {{ method: "POST", body: JSON.stringify(report) }}));
</script></body></html>"#
    )
}

/// Serves the page on 127.0.0.1 (so also as `localhost`) and passes each report on; returns the
/// port.
async fn page_server(reports: mpsc::Sender<Value>) -> u16 {
    let app = Router::new()
        .route("/", get(|| async { Html(page()) }))
        .route(
            "/report",
            post(
                |State(reports): State<mpsc::Sender<Value>>, body: String| async move {
                    let report = serde_json::from_str(&body).unwrap_or(Value::String(body));
                    let _ = reports.send(report).await;
                },
            ),
        )
        .with_state(reports);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// Opens `url` in a fresh headless Chromium and returns the page's report.
async fn report_from(chromium: &Path, url: &str, reports: &mut mpsc::Receiver<Value>) -> Value {
    let profile = temp_dir("chromium-profile");
    let mut browser = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let stderr = Stderr::capture(browser.stderr.take().unwrap());
    let report = tokio::time::timeout(BROWSER_PATIENCE, reports.recv()).await;
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
    match report {
        Ok(Some(report)) => report,
        _ => panic!(
            "no report from {url} within {BROWSER_PATIENCE:?}; chromium said:\n{}",
            stderr.now()
        ),
    }
}

/// The JSON-RPC message in an answer's body, plain JSON or the SSE event that carries it (after
/// the empty event that primes the stream).
fn message(body: &Value) -> Value {
    let text = body.as_str().unwrap_or_default();
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|data| !data.trim().is_empty())
        .unwrap_or(text);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn a_page_on_a_listed_origin_can_call_the_server_and_one_on_another_cannot() {
    let Some(chromium) = installed(
        "ONCE_INTEROP_CHROMIUM",
        Some("/usr/bin/chromium"),
        "install Debian's chromium (`apt-get install chromium`), as .ci/run does",
    ) else {
        return;
    };
    let (report_tx, mut reports) = mpsc::channel(4);
    let page_port = page_server(report_tx).await;
    let listed = format!("http://127.0.0.1:{page_port}");
    let server = HttpServer::spawn(
        &["--sandbox", "--allowed-origin", &listed],
        &[("ONCE_MCP_HTTP_TOKEN", TOKEN)],
    )
    .await;
    let query = format!("/?mcp={}", server.url("/mcp"));

    let report = report_from(&chromium, &format!("{listed}{query}"), &mut reports).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["origin"], listed.as_str());
    assert_eq!(report["init"]["status"], 200, "{report}");
    assert!(
        report["init"]["session"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "the page cannot read Mcp-Session-Id: {report}"
    );
    let init = message(&report["init"]["text"]);
    assert!(init["result"]["protocolVersion"].is_string(), "{init}");
    let call = message(&report["call"]["text"]);
    assert_eq!(call["id"], 2, "{call}");
    assert_eq!(call["result"]["isError"], false, "{call}");
    assert_eq!(
        call["result"]["structuredContent"]["orders"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{call}"
    );

    // The same page, the same port, another name: another origin, not listed. The browser
    // refuses after the preflight, so the page sees a network error and nothing else.
    let unlisted = format!("http://localhost:{page_port}");
    let report = report_from(&chromium, &format!("{unlisted}{query}"), &mut reports).await;
    assert_eq!(report["origin"], unlisted.as_str(), "{report}");
    assert_eq!(
        report["ok"], false,
        "an unlisted origin read an answer: {report}"
    );
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("TypeError") && e.contains("fetch")),
        "{report}"
    );
    server.stop().await;
}
