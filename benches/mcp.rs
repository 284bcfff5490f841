//! Speed and memory of 1nce-mcp against the floor, the upstream request itself.
//!
//! Run with `cargo bench --bench mcp` (a release build). It starts a sandbox in this process and
//! points the built binary at it over loopback, then reports:
//! - spawn-to-initialize-response time of fresh stdio server processes (median and spread);
//! - per-call latency p50/p99 of `get_order` and `list_orders` over stdio and over Streamable
//!   HTTP, next to the same 1NCE request made directly with reqwest on a warm connection (the
//!   floor);
//! - upstream requests per tool call in steady state;
//! - peak resident memory idle and after 10,000 calls, and the binary's size.
//!
//! Counts can be lowered for a quick look: `BENCH_CALLS=2000 BENCH_SPAWNS=10 cargo bench --bench mcp`.
//! The client side speaks raw JSON-RPC lines, so what is measured is the server, not a client SDK.

use std::process::Stdio;
use std::time::{Duration, Instant};

use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const BINARY: &str = env!("CARGO_BIN_EXE_1nce-mcp");

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release binary pointed at `sandbox` as if it were 1NCE, with nothing from this
/// environment leaking in.
fn server_command(sandbox: &Sandbox, state: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BINARY);
    cmd.env_clear()
        .env("ONCE_API_URL", sandbox.base_url())
        .env("ONCE_CLIENT_ID", SANDBOX_CLIENT_ID)
        .env("ONCE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET)
        .env("ONCE_STATE_DIR", state)
        // Measures the server, not the client-side pacing that keeps 1NCE from answering 429.
        .args(["--rate-limit", "off"]);
    cmd
}

/// A server process spoken to in raw JSON-RPC lines.
struct StdioServer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl StdioServer {
    fn spawn(sandbox: &Sandbox, state: &std::path::Path) -> StdioServer {
        let mut child = server_command(sandbox, state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the release binary");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        StdioServer {
            child,
            stdin,
            lines,
            next_id: 1,
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        loop {
            let line = self.lines.next_line().await.unwrap().expect("server alive");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                return message;
            }
        }
    }

    async fn initialize(&mut self) {
        let answer = self
            .request(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "bench", "version": "0"}}),
            )
            .await;
        assert!(answer["result"].is_object(), "{answer}");
        self.stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await
            .unwrap();
    }

    async fn call(&mut self, tool: &str, args: Value) {
        let answer = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }

    /// (current, peak) resident memory in KiB, from /proc.
    fn memory_kib(&self) -> (u64, u64) {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// A server process serving Streamable HTTP, spoken to with plain reqwest POSTs.
struct HttpServer {
    _child: Child,
    http: reqwest::Client,
    url: String,
    session: String,
    next_id: u64,
}

impl HttpServer {
    async fn spawn(sandbox: &Sandbox, state: &std::path::Path) -> HttpServer {
        let mut child = server_command(sandbox, state)
            .args(["--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the release binary");
        // The ready line names the bound address.
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = stderr.next_line().await.unwrap().expect("a ready line");
            if let Some(rest) = line.split("ready on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/mcp");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}});
        let response = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .unwrap();
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        response.bytes().await.unwrap();
        let server = HttpServer {
            _child: child,
            http,
            url,
            session,
            next_id: 1,
        };
        server
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        server
    }

    async fn post(&self, message: Value) -> String {
        self.http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&message)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn call(&mut self, tool: &str, args: Value) {
        let id = self.next_id;
        self.next_id += 1;
        let body = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": {"name": tool, "arguments": args}}))
            .await;
        // An SSE stream or a JSON body: find the answer either way.
        let answer: Value = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:").map(str::trim).or(Some(l)))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer in {body}"));
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: at(0.5),
        p99: at(0.99),
        min: samples[0],
        max: samples[samples.len() - 1],
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn time_calls(server: &mut StdioServer, tool: &str, args: &Value, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        server.call(tool, args.clone()).await;
        samples.push(started.elapsed());
    }
    samples
}

async fn time_http_calls(
    server: &mut HttpServer,
    tool: &str,
    args: &Value,
    n: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        server.call(tool, args.clone()).await;
        samples.push(started.elapsed());
    }
    samples
}

/// The floor: the same 1NCE request straight from reqwest on a warm connection.
async fn time_direct(sandbox: &Sandbox, path: &str, n: usize) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/oauth/token", sandbox.base_url()))
        .basic_auth(SANDBOX_CLIENT_ID, Some(SANDBOX_CLIENT_SECRET))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_owned();
    let url = format!("{}{path}", sandbox.base_url());
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let started = Instant::now();
        let body = http
            .get(&url)
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        // Parse it, as the server must.
        let _: Value = serde_json::from_slice(&body).unwrap();
        if i >= 100 {
            samples.push(started.elapsed());
        }
    }
    samples
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let calls = count("BENCH_CALLS", 10_000);
    let spawns = count("BENCH_SPAWNS", 25);
    let sandbox = Sandbox::start().await.unwrap();
    let state = tempfile::tempdir().unwrap();

    // Start-up: spawn to initialize response, fresh processes.
    let mut startup = Vec::new();
    for _ in 0..spawns {
        let started = Instant::now();
        let mut server = StdioServer::spawn(&sandbox, state.path());
        server.initialize().await;
        startup.push(started.elapsed());
    }
    let startup = stats(startup);

    let mut server = StdioServer::spawn(&sandbox, state.path());
    server.initialize().await;
    let idle = server.memory_kib();
    let get = json!({"order_number": 2000000007u64});
    let list = json!({"page": 2, "page_size": 10});
    // Warm up: token, connection, allocator.
    time_calls(&mut server, "get_order", &get, 200).await;
    sandbox.clear_requests();

    let per_tool = calls / 2;
    let get_stdio = stats(time_calls(&mut server, "get_order", &get, per_tool).await);
    let upstream_get = sandbox.requests().len();
    sandbox.clear_requests();
    let list_stdio = stats(time_calls(&mut server, "list_orders", &list, per_tool).await);
    let upstream_list = sandbox.requests().len();
    sandbox.clear_requests();
    let loaded = server.memory_kib();

    let http_calls = per_tool.min(5000);
    let mut http = HttpServer::spawn(&sandbox, state.path()).await;
    time_http_calls(&mut http, "get_order", &get, 200).await;
    let get_http = stats(time_http_calls(&mut http, "get_order", &get, http_calls).await);
    let list_http = stats(time_http_calls(&mut http, "list_orders", &list, http_calls).await);
    sandbox.clear_requests();

    let get_floor = stats(time_direct(&sandbox, "/v1/orders/2000000007", per_tool.min(5000)).await);
    let list_floor = stats(
        time_direct(
            &sandbox,
            "/v1/orders?page=2&pageSize=10",
            per_tool.min(5000),
        )
        .await,
    );
    let size = std::fs::metadata(BINARY).map(|m| m.len()).unwrap_or(0);

    println!(
        "1nce-mcp benchmark ({} CPUs, release build, sandbox over loopback)",
        num_cpus()
    );
    println!();
    println!(
        "start to initialize response ({spawns} processes): median {:.1} ms, min {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(startup.p50),
        ms(startup.min),
        ms(startup.p99),
        ms(startup.max)
    );
    println!();
    println!(
        "| call | direct p50 | direct p99 | stdio p50 | stdio p99 | stdio overhead p50 | HTTP p50 | HTTP p99 | HTTP overhead p50 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, stdio, http, floor) in [
        ("get_order", &get_stdio, &get_http, &get_floor),
        (
            "list_orders (10 orders)",
            &list_stdio,
            &list_http,
            &list_floor,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            us(floor.p50),
            us(floor.p99),
            us(stdio.p50),
            us(stdio.p99),
            us(stdio.p50.saturating_sub(floor.p50)),
            us(http.p50),
            us(http.p99),
            us(http.p50.saturating_sub(floor.p50)),
        );
    }
    println!(
        "({per_tool} stdio calls and {http_calls} HTTP calls per tool, after 200 warm-up calls)"
    );
    println!();
    println!(
        "upstream requests per tool call: get_order {:.3}, list_orders {:.3}",
        upstream_get as f64 / per_tool as f64,
        upstream_list as f64 / per_tool as f64
    );
    println!(
        "resident memory: idle {:.1} MB; after {} calls {:.1} MB (peak {:.1} MB)",
        idle.0 as f64 / 1024.0,
        per_tool * 2 + 200,
        loaded.0 as f64 / 1024.0,
        loaded.1 as f64 / 1024.0
    );
    println!("binary size: {:.1} MB ({BINARY})", size as f64 / 1e6);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
