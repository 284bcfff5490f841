//! Shared helpers for the end-to-end tests: a sandbox per test, the built binary spawned as an
//! MCP server over stdio through rmcp's client, and small accessors for tool results.

pub mod net;

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncReadExt;

pub type McpClient = RunningService<RoleClient, ()>;

/// Every tool the server offers (without --read-only), sorted by name.
pub const ALL_TOOLS: [&str; 5] = [
    "create_order",
    "find_orders",
    "get_order",
    "list_orders",
    "list_products",
];

/// A running server process and everything it wrote to stderr so far.
pub struct Server {
    pub client: McpClient,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Calls a tool and returns the raw result (tool errors are results, not `Err`).
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        call_tool(&self.client, tool, args).await
    }

    /// Calls a tool that must succeed and returns its `structuredContent`.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        expect_ok(&self.client, tool, args).await
    }

    /// Calls a tool that must fail with a tool error and returns the error text.
    pub async fn err(&self, tool: &str, args: Value) -> String {
        expect_err(&self.client, tool, args).await
    }

    /// Ends the session and returns everything the server wrote to stderr.
    pub async fn stop(self) -> String {
        let stderr = self.stderr;
        let _ = self.client.cancel().await;
        // Give the process a moment to flush stderr after stdin closes.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stderr.lock().unwrap().clone()
    }
}

/// Calls a tool over any transport and returns the raw result (tool errors are results).
pub async fn call_tool(client: &McpClient, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(
        args.as_object()
            .cloned()
            .expect("tool arguments are a JSON object"),
    );
    client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool} failed at the protocol level: {e}"))
}

/// Calls a tool that must succeed and returns its `structuredContent`.
pub async fn expect_ok(client: &McpClient, tool: &str, args: Value) -> Value {
    let result = call_tool(client, tool, args.clone()).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} {args} failed: {}",
        text(&result)
    );
    result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool} returned no structuredContent"))
}

/// Calls a tool that must fail with a tool error and returns the error text.
pub async fn expect_err(client: &McpClient, tool: &str, args: Value) -> String {
    let result = call_tool(client, tool, args.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {args} should have failed but returned {}",
        text(&result)
    );
    text(&result)
}

/// All text content of a result, joined.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The built server binary.
pub fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_1nce-mcp"))
}

/// A fresh, empty directory of its own for one test, under Cargo's scratch space.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("{label}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a temp dir")
        .keep()
}

/// A command for the server binary with a clean environment: no credentials or settings leak
/// in from the machine running the tests, and state (tokens, the audit log) goes to a temp dir
/// of its own, never the real home directory.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("ONCE_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    // Each process gets its own state directory (which also holds the audit log by default)
    // unless the test shares one on purpose; XDG_STATE_HOME points into scratch space as well, so
    // nothing a test runs can write into the real home directory.
    let state = fresh_state_dir();
    cmd.env("XDG_STATE_HOME", state.join("xdg"));
    cmd.env("ONCE_STATE_DIR", &state);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

/// A new, empty directory under Cargo's scratch space for integration tests.
pub fn fresh_state_dir() -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix("state-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a state directory")
        .keep()
}

/// Spawns the server pointed at `sandbox` as if it were the real 1NCE API.
pub async fn spawn_against(sandbox: &Sandbox, extra_args: &[&str]) -> Server {
    let url = sandbox.base_url();
    spawn(
        extra_args,
        &[
            ("ONCE_API_URL", url.as_str()),
            ("ONCE_CLIENT_ID", SANDBOX_CLIENT_ID),
            ("ONCE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET),
        ],
    )
    .await
}

/// Spawns the server binary with these arguments and environment and completes `initialize`.
pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Server {
    let (transport, captured) = child(args, env);
    let client = ().serve(transport).await.expect("MCP initialize");
    Server {
        client,
        stderr: captured,
    }
}

/// The server binary as a child process transport, its stderr collected in the background.
pub fn child(args: &[&str], env: &[(&str, &str)]) -> (TokioChildProcess, Arc<Mutex<String>>) {
    let (transport, captured, _exited) = child_until_exit(args, env);
    (transport, captured)
}

/// Like [`child`], plus a task that ends when the server closes its stderr, that is when it
/// exits: await it to read all the server wrote, without guessing how long flushing takes.
pub fn child_until_exit(
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    TokioChildProcess,
    Arc<Mutex<String>>,
    tokio::task::JoinHandle<()>,
) {
    let cmd = command(args, env).configure(|_| {});
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the 1nce-mcp binary");
    let captured = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&captured);
    let exited = tokio::spawn(async move {
        let Some(mut stderr) = stderr else { return };
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (transport, captured, exited)
}

/// The environment that points the server at `sandbox` as if it were the real 1NCE API.
pub fn sandbox_env(sandbox: &Sandbox) -> Vec<(&'static str, String)> {
    vec![
        ("ONCE_API_URL", sandbox.base_url()),
        ("ONCE_CLIENT_ID", SANDBOX_CLIENT_ID.to_owned()),
        ("ONCE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET.to_owned()),
    ]
}

/// Number of order POSTs the sandbox received.
pub fn posts(sandbox: &Sandbox) -> usize {
    sandbox.count("POST", "/v1/orders")
}

/// Number of requests of any kind to the order and product routes.
pub fn api_requests(sandbox: &Sandbox) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .count()
}
