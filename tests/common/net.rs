//! Helpers for the HTTP tests: the built binary serving `--http 127.0.0.1:0` (its address read
//! from the ready line on stderr), rmcp's Streamable HTTP client, and a gated proxy in front of
//! the sandbox that holds 1NCE calls until the test lets them through.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use tokio::sync::{Notify, watch};

use serde_json::{Value, json};

use super::sse::SseReader;
use super::{PATIENCE, Session, Stderr, command, install_crypto, sandbox_env};

pub const TOKEN: &str = "test-bearer-token-7f3a9c2e5b1d4860";

/// A loopback port that was free a moment ago, for a server whose URL must be known before it
/// starts (its OAuth public URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// The binary serving HTTP, and its stderr.
pub struct HttpServer {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stderr: Stderr,
}

impl HttpServer {
    /// Spawns the binary against `api_url` (a sandbox or proxy) with the sandbox credentials.
    pub async fn against(api_url: &str, args: &[&str], env: &[(&str, &str)]) -> HttpServer {
        let mut all_env = sandbox_env(api_url).to_vec();
        all_env.extend_from_slice(env);
        HttpServer::spawn(args, &all_env).await
    }

    /// Spawns the binary with `--http 127.0.0.1:0` plus `args` and waits for its ready line.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> HttpServer {
        HttpServer::spawn_at("127.0.0.1:0", args, env).await
    }

    /// [`HttpServer::spawn`] listening on `addr`.
    pub async fn spawn_at(addr: &str, args: &[&str], env: &[(&str, &str)]) -> HttpServer {
        install_crypto();
        let mut all_args = vec!["--http", addr];
        all_args.extend_from_slice(args);
        let mut child = command(&all_args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the 1nce-mcp binary");
        let stderr = Stderr::capture(child.stderr.take().expect("stderr is piped"));
        let ready = stderr.wait_for(" ready on http://").await;
        let addr = ready
            .split(" ready on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address in the ready line");
        HttpServer {
            child,
            base: format!("http://{addr}"),
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.now()
    }

    /// Waits until stderr has a line containing `needle`.
    pub async fn wait_for_stderr(&self, needle: &str) {
        self.stderr.wait_for(needle).await;
    }

    /// An rmcp Streamable HTTP client session, initialised.
    pub async fn client(&self, token: Option<&str>) -> Session {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url("/mcp"));
        if let Some(token) = token {
            config = config.auth_header(token);
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        Session {
            client: ().serve(transport).await.expect("MCP initialize over HTTP"),
        }
    }

    /// Sends SIGTERM, as a service manager would.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the server is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit within {PATIENCE:?}"))
            .unwrap()
            .code()
    }

    /// Shuts the server down (SIGTERM), waits for it to exit and returns all it wrote to stderr.
    pub async fn stop(mut self) -> String {
        self.terminate();
        self.exit_code().await;
        self.stderr.until_closed().await
    }
}

/// A proxy in front of the sandbox that holds every request under `/v1/` until opened, and
/// counts the held requests that arrived and that their client abandoned.
pub struct GatedProxy {
    pub url: String,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    target: String,
    http: reqwest::Client,
    open: watch::Sender<bool>,
    arrived: AtomicUsize,
    abandoned: AtomicUsize,
    changed: Notify,
}

impl GatedProxy {
    pub async fn start(target: &str) -> GatedProxy {
        install_crypto();
        let shared = Arc::new(ProxyShared {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            open: watch::channel(false).0,
            arrived: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GatedProxy { url, shared }
    }

    /// Lets every held and future request through.
    pub fn open(&self) {
        self.shared.open.send_replace(true);
    }

    /// Holds requests again from now on (those already let through go on).
    pub fn close(&self) {
        self.shared.open.send_replace(false);
    }

    /// How many requests have arrived at the gate so far, held or let through.
    pub fn arrived(&self) -> usize {
        self.shared.arrived.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests have arrived at the gate.
    pub async fn wait_arrived(&self, n: usize) {
        self.wait(|s| s.arrived.load(Ordering::SeqCst) >= n).await
    }

    /// Waits until `n` held requests were abandoned by their client.
    pub async fn wait_abandoned(&self, n: usize) {
        self.wait(|s| s.abandoned.load(Ordering::SeqCst) >= n).await
    }

    async fn wait(&self, done: impl Fn(&ProxyShared) -> bool) {
        let wait = async {
            loop {
                let changed = self.shared.changed.notified();
                if done(&self.shared) {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!("the proxy did not see the expected requests within {PATIENCE:?}")
            });
    }
}

/// Counts a held request as abandoned if it is dropped before the gate opens.
struct HeldRequest<'a> {
    shared: &'a ProxyShared,
    released: bool,
}

impl Drop for HeldRequest<'_> {
    fn drop(&mut self) {
        if !self.released {
            self.shared.abandoned.fetch_add(1, Ordering::SeqCst);
            self.shared.changed.notify_waiters();
        }
    }
}

async fn forward(State(shared): State<Arc<ProxyShared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if parts.uri.path().starts_with("/v1/") {
        let mut held = HeldRequest {
            shared: &shared,
            released: false,
        };
        shared.arrived.fetch_add(1, Ordering::SeqCst);
        shared.changed.notify_waiters();
        let mut open = shared.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        held.released = true;
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", shared.target))
        .body(body);
    for name in ["authorization", "content-type", "accept"] {
        if let Some(value) = parts.headers.get(name) {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::empty())
            .unwrap();
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "content-length" && name != "connection" {
            headers.insert(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A 2026-07-28 stateless `tools/call`: no session, per-request metadata; the JSON-RPC result.
pub async fn stateless_call(server: &HttpServer, tool: &str, arguments: Value) -> Value {
    stateless_request(
        server,
        json!({"name": tool, "arguments": arguments}),
        json!({}),
    )
    .await
}

/// A 2026-07-28 stateless `tools/call` with `params` (name, arguments and perhaps
/// `inputResponses`/`requestState`) from a client declaring `capabilities`; the JSON-RPC result.
pub async fn stateless_request(server: &HttpServer, params: Value, capabilities: Value) -> Value {
    stateless_request_with(&reqwest::Client::new(), server, params, capabilities).await
}

/// [`stateless_request`] through `http`, whose connections are kept between calls (building a
/// client loads the system's CA roots: milliseconds that would dominate a measurement).
pub async fn stateless_request_with(
    http: &reqwest::Client,
    server: &HttpServer,
    mut params: Value,
    capabilities: Value,
) -> Value {
    let tool = params["name"].as_str().unwrap_or_default().to_owned();
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "stateless", "version": "0"}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let response = http
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());
    let streamed = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    let message: Value = if streamed {
        let mut events = SseReader::new(response);
        loop {
            let event = events.next().await.expect("the answer to the call");
            if let Ok(message) = serde_json::from_str::<Value>(&event.data) {
                break message;
            }
        }
    } else {
        response.json().await.unwrap()
    };
    message["result"].clone()
}
