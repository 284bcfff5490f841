//! Speed and memory of 1nce-mcp against the floor, the upstream request itself.
//!
//! Run with `cargo bench --bench mcp` (a release build). It starts a sandbox in this process and
//! points the built binary at it over loopback, then reports:
//! - spawn-to-initialize-response time of fresh stdio server processes (median and spread);
//! - per-call latency p50/p99 of `get_order` and `list_orders` over stdio and over Streamable
//!   HTTP, each call paired with the same 1NCE request made directly with reqwest on a warm
//!   connection (the floor), and the server's CPU time per call;
//! - the round trip of an MCP `ping` over stdio, the protocol's own share of the overhead;
//! - upstream requests per tool call in steady state;
//! - peak resident memory idle and after 10,000 calls, and the binary's size;
//! - a long session of sequential calls as an agent makes them (a third each `list_orders`,
//!   `get_order` and `create_order` previews) on a fresh server: throughput, latency and its memory
//!   every tenth of the way ([`weight`]; `BENCH_ONLY=weight` runs this part alone, with the
//!   binary's size and the start-up time);
//! - rounds of hundreds of concurrent Streamable HTTP clients: errors, throughput, latency,
//!   upstream requests per call and the server's memory after each round;
//! - a legitimate client's latency and the server's memory while hundreds of slow connections
//!   and a flood of unauthenticated requests attack, and the log written per 10,000 refused
//!   requests ([`attack`]; `BENCH_ONLY=attack` runs this part alone);
//! - the peak and lasting memory of one stdio line holding 400,000 requests as a batch
//!   ([`flood`]; `BENCH_ONLY=flood` runs this part alone, `BENCH_FLOOD_REQUESTS` sets the count).
//!
//! Counts can be lowered for a quick look: `BENCH_CALLS=2000 BENCH_SPAWNS=10 BENCH_ROUNDS=2 cargo bench --bench mcp`
//! (also `BENCH_SESSIONS`, `BENCH_SESSION_CALLS`; `BENCH_BINARY` measures another build).
//! The client side speaks raw JSON-RPC lines, so what is measured is the server, not a client SDK.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::process::Child;

// In a directory of its own: a file beside this one would be taken for a benchmark of its own.
#[path = "mcp/attack.rs"]
mod attack;
#[path = "mcp/flood.rs"]
mod flood;
#[path = "mcp/weight.rs"]
mod weight;

const BUILT_BINARY: &str = env!("CARGO_BIN_EXE_1nce-mcp");

/// The server under test: the release build, or `BENCH_BINARY` (e.g. the `profiling` build, which
/// keeps symbols for perf).
fn binary() -> String {
    std::env::var("BENCH_BINARY").unwrap_or_else(|_| BUILT_BINARY.to_owned())
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release binary pointed at `sandbox` as if it were 1NCE, with nothing from this
/// environment leaking in.
fn server_command(sandbox: &Sandbox, state: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary());
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
    stdin: Box<dyn AsyncWrite + Unpin + Send>,
    lines: Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
    next_id: u64,
}

impl StdioServer {
    /// With pipes, as Python's and Rust's process APIs spawn a server.
    fn spawn(sandbox: &Sandbox, state: &std::path::Path) -> StdioServer {
        let mut child = server_command(sandbox, state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the release binary");
        let stdin = Box::new(child.stdin.take().unwrap());
        let stdout: Box<dyn AsyncRead + Unpin + Send> = Box::new(child.stdout.take().unwrap());
        StdioServer {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 1,
        }
    }

    /// With a Unix socket pair per stream, as Node.js (Claude Desktop, Claude Code, VS Code,
    /// Cursor) spawns a server.
    fn spawn_sockets(sandbox: &Sandbox, state: &std::path::Path) -> StdioServer {
        let (ours_in, theirs_in) = std::os::unix::net::UnixStream::pair().unwrap();
        let (ours_out, theirs_out) = std::os::unix::net::UnixStream::pair().unwrap();
        let child = server_command(sandbox, state)
            .stdin(std::os::fd::OwnedFd::from(theirs_in))
            .stdout(std::os::fd::OwnedFd::from(theirs_out))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the release binary");
        let tokio_stream = |s: std::os::unix::net::UnixStream| {
            s.set_nonblocking(true).unwrap();
            tokio::net::UnixStream::from_std(s).unwrap()
        };
        let stdout: Box<dyn AsyncRead + Unpin + Send> = Box::new(tokio_stream(ours_out));
        StdioServer {
            child,
            stdin: Box::new(tokio_stream(ours_in)),
            lines: BufReader::new(stdout).lines(),
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

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}

/// CPU time (user + system, all threads) process `pid` has used so far, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime, fields 14 and 15 of the whole line, in clock ticks (100 per second).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// (current, peak) resident memory of process `pid` in KiB, from /proc.
fn memory_kib(pid: u32) -> (u64, u64) {
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

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A server process serving Streamable HTTP.
struct HttpServer {
    child: Child,
    url: String,
    /// The bearer token clients send, when the server requires one.
    token: Option<String>,
    /// Bytes the server wrote to stderr after its ready line (read as they come).
    log_bytes: Arc<AtomicU64>,
    /// Reads stderr to its end.
    log_reader: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    async fn spawn(sandbox: &Sandbox, state: &std::path::Path) -> HttpServer {
        HttpServer::spawn_with_token(sandbox, state, None).await
    }

    /// With `token`, clients must send it (`ONCE_MCP_HTTP_TOKEN`).
    async fn spawn_with_token(
        sandbox: &Sandbox,
        state: &std::path::Path,
        token: Option<&str>,
    ) -> HttpServer {
        let mut command = server_command(sandbox, state);
        if let Some(token) = token {
            command.env("ONCE_MCP_HTTP_TOKEN", token);
        }
        let mut child = command
            .args(["--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the release binary");
        // The ready line names the bound address.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).await.unwrap() > 0,
                "a ready line"
            );
            if let Some(rest) = line.split("ready on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Everything after the ready line is log: counted, and drained so it never blocks.
        let log_bytes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&log_bytes);
        let log_reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stderr, &mut buf).await {
                if n == 0 {
                    break;
                }
                counted.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        HttpServer {
            child,
            url: format!("http://{addr}/mcp"),
            token: token.map(str::to_owned),
            log_bytes,
            log_reader,
        }
    }

    /// A new MCP session on its own connection, as a separate client would open it.
    async fn session(&self) -> Result<HttpSession, String> {
        let http = reqwest::Client::new();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}});
        let mut request = http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .json(&init)
            .send()
            .await
            .map_err(|e| format!("initialize: {e}"))?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("initialize: no session id (HTTP {})", response.status()))?
            .to_owned();
        response.bytes().await.map_err(|e| e.to_string())?;
        let session = HttpSession {
            http,
            url: self.url.clone(),
            session,
            token: self.token.clone(),
            next_id: 1,
        };
        session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(session)
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}

/// One Streamable HTTP session, spoken to with plain reqwest POSTs.
struct HttpSession {
    http: reqwest::Client,
    url: String,
    session: String,
    token: Option<String>,
    next_id: u64,
}

impl HttpSession {
    /// A request to the session's URL with the session id, and the token if there is one.
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, &self.url)
            .header("mcp-session-id", &self.session);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn post(&self, message: Value) -> Result<String, String> {
        let response = self
            .request(reqwest::Method::POST)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&message)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        response.text().await.map_err(|e| e.to_string())
    }

    /// One tool call; an error if it failed in any way, the tool's own errors included.
    async fn try_call(&mut self, tool: &str, args: Value) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": {"name": tool, "arguments": args}}))
            .await?;
        // An SSE stream or a JSON body: find the answer either way.
        let answer: Value = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:").map(str::trim).or(Some(l)))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|m| m["id"] == id)
            .ok_or_else(|| format!("no answer in {body}"))?;
        if answer["result"]["isError"] == false {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    }

    async fn call(&mut self, tool: &str, args: Value) {
        if let Err(e) = self.try_call(tool, args).await {
            panic!("{tool}: {e}");
        }
    }

    /// Ends the session, as a well-behaved client does.
    async fn close(self) {
        let _ = self.request(reqwest::Method::DELETE).send().await;
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The floor: the same 1NCE request straight from reqwest on a warm connection, its JSON body
/// parsed (as a client of the MCP server parses the answer).
struct Direct {
    http: reqwest::Client,
    bearer: String,
    base: String,
}

impl Direct {
    async fn new(sandbox: &Sandbox) -> Direct {
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
        Direct {
            http,
            bearer: token["access_token"].as_str().unwrap().to_owned(),
            base: sandbox.base_url(),
        }
    }

    async fn get(&self, path: &str) {
        let body = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.bearer)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let _: Value = serde_json::from_slice(&body).unwrap();
    }
}

/// What one tool call is measured against: the tool, its arguments and the 1NCE request it makes.
struct Case {
    label: &'static str,
    tool: &'static str,
    args: Value,
    path: &'static str,
}

/// Latency of `n` calls through the MCP server and of `n` direct requests, interleaved call by
/// call (in alternating order) so both see the same machine: on a shared machine, two runs
/// minutes apart differ by more than the overhead being measured.
struct Paired {
    mcp: Vec<Duration>,
    direct: Vec<Duration>,
}

/// An MCP session a tool can be called through.
trait Session {
    async fn call(&mut self, tool: &str, args: Value);
}

impl Session for StdioServer {
    async fn call(&mut self, tool: &str, args: Value) {
        StdioServer::call(self, tool, args).await
    }
}

impl Session for HttpSession {
    async fn call(&mut self, tool: &str, args: Value) {
        HttpSession::call(self, tool, args).await
    }
}

async fn paired(direct: &Direct, case: &Case, n: usize, session: &mut impl Session) -> Paired {
    let mut out = Paired {
        mcp: Vec::with_capacity(n),
        direct: Vec::with_capacity(n),
    };
    for i in 0..n {
        for mcp_first in [i % 2 == 0, i % 2 == 1] {
            let started = Instant::now();
            if mcp_first {
                session.call(case.tool, case.args.clone()).await;
                out.mcp.push(started.elapsed());
            } else {
                direct.get(case.path).await;
                out.direct.push(started.elapsed());
            }
        }
    }
    out
}

/// Hundreds of Streamable HTTP sessions at once, each its own client and connection, calling
/// tools concurrently: round after round, to show whether memory stays flat.
async fn concurrent_http(sandbox: &Sandbox, state: &std::path::Path, cases: &[Case]) {
    let sessions = count("BENCH_SESSIONS", 200);
    let per_session = count("BENCH_SESSION_CALLS", 25);
    let rounds = count("BENCH_ROUNDS", 10);
    let server = HttpServer::spawn(sandbox, state).await;
    let pid = server.pid();
    let (idle, _) = memory_kib(pid);
    println!();
    println!(
        "concurrent Streamable HTTP: {rounds} rounds of {sessions} sessions at once, each a separate client making {per_session} calls (get_order and list_orders in turn); server RSS idle {:.1} MB",
        mb(idle)
    );
    println!();
    println!(
        "| round | calls | errors | wall time | calls/s | call p50 | call p99 | upstream requests per call | RSS after | peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let server = std::sync::Arc::new(server);
    let cases: std::sync::Arc<Vec<(&'static str, Value)>> =
        std::sync::Arc::new(cases.iter().map(|c| (c.tool, c.args.clone())).collect());
    let mut token_requests = 0;
    for round in 1..=rounds {
        sandbox.clear_requests();
        let started = Instant::now();
        let tasks: Vec<_> = (0..sessions)
            .map(|s| {
                let server = server.clone();
                let cases = cases.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_session);
                    let mut errors = Vec::new();
                    let mut session = match server.session().await {
                        Ok(session) => session,
                        Err(e) => return (latencies, vec![e; per_session]),
                    };
                    for i in 0..per_session {
                        let (tool, args) = &cases[(s + i) % cases.len()];
                        let t = Instant::now();
                        match session.try_call(tool, args.clone()).await {
                            Ok(()) => latencies.push(t.elapsed()),
                            Err(e) => errors.push(e),
                        }
                    }
                    session.close().await;
                    (latencies, errors)
                })
            })
            .collect();
        let mut latencies = Vec::new();
        let mut errors = Vec::new();
        for task in tasks {
            let (l, e) = task.await.expect("session task");
            latencies.extend(l);
            errors.extend(e);
        }
        let wall = started.elapsed();
        let requests = sandbox.requests();
        token_requests += requests
            .iter()
            .filter(|r| r.path.starts_with("/oauth"))
            .count();
        let calls = sessions * per_session;
        let (rss, peak) = memory_kib(pid);
        let latency = if latencies.is_empty() {
            None
        } else {
            Some(stats(latencies))
        };
        println!(
            "| {round} | {calls} | {} | {:.2} s | {:.0} | {} | {} | {:.3} | {:.1} MB | {:.1} MB |",
            errors.len(),
            wall.as_secs_f64(),
            calls as f64 / wall.as_secs_f64(),
            latency.as_ref().map(|l| us(l.p50)).unwrap_or_default(),
            latency.as_ref().map(|l| us(l.p99)).unwrap_or_default(),
            (requests.len() as f64) / calls as f64,
            mb(rss),
            mb(peak),
        );
        if let Some(first) = errors.first() {
            println!("first error: {first}");
        }
    }
    println!(
        "(token requests to 1NCE over all {rounds} rounds: {token_requests}; sessions are closed with DELETE at the end of each)"
    );
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let calls = count("BENCH_CALLS", 10_000);
    let spawns = count("BENCH_SPAWNS", 25);
    let sandbox = Sandbox::start().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("attack") => {
            attack::under_attack(&sandbox, state.path()).await;
            return;
        }
        Ok("flood") => {
            flood::one_line_batch(&sandbox, state.path()).await;
            return;
        }
        Ok("weight") => {
            weight::weigh(&sandbox, state.path()).await;
            return;
        }
        _ => {}
    }
    let cases = [
        Case {
            label: "get_order",
            tool: "get_order",
            args: json!({"order_number": 2000000007u64}),
            path: "/v1/orders/2000000007",
        },
        Case {
            label: "list_orders (10 orders, summary: the default)",
            tool: "list_orders",
            args: json!({"page": 2, "page_size": 10}),
            path: "/v1/orders?page=2&pageSize=10",
        },
        Case {
            label: "list_orders (10 orders, detail full)",
            tool: "list_orders",
            args: json!({"page": 2, "page_size": 10, "detail": "full"}),
            path: "/v1/orders?page=2&pageSize=10",
        },
    ];

    // Start-up: spawn to initialize response, fresh processes.
    let startup = stats(weight::startup(&sandbox, state.path(), spawns).await);

    let direct = Direct::new(&sandbox).await;
    let mut server = StdioServer::spawn(&sandbox, state.path());
    server.initialize().await;
    let pid = server.pid();
    let idle = memory_kib(pid);
    // Warm up: token, connections, allocators.
    for _ in 0..200 {
        server.call(cases[0].tool, cases[0].args.clone()).await;
        direct.get(cases[0].path).await;
    }

    let per_tool = calls / cases.len();
    let mut stdio = Vec::new();
    for case in &cases {
        sandbox.clear_requests();
        let cpu_before = cpu_time(pid);
        let samples = paired(&direct, case, per_tool, &mut server).await;
        let cpu = cpu_time(pid) - cpu_before;
        // Every request the sandbox saw, less the direct ones.
        let upstream = sandbox.requests().len() - per_tool;
        stdio.push((samples, cpu, upstream));
    }
    sandbox.clear_requests();
    let loaded = memory_kib(pid);
    // The protocol's own round trip, with no tool and no 1NCE request: the part of the overhead
    // that is two processes taking turns on a pipe and rmcp's request handling.
    let mut pings = Vec::with_capacity(per_tool);
    for _ in 0..per_tool {
        let started = Instant::now();
        let answer = server.request("ping", json!({})).await;
        pings.push(started.elapsed());
        assert!(answer["result"].is_object(), "{answer}");
    }
    let pings = stats(pings);
    drop(server);

    let mut server = StdioServer::spawn_sockets(&sandbox, state.path());
    server.initialize().await;
    for _ in 0..200 {
        server.call(cases[0].tool, cases[0].args.clone()).await;
    }
    let mut sockets = Vec::new();
    for case in &cases {
        sockets.push(paired(&direct, case, per_tool.min(5000), &mut server).await);
    }
    drop(server);
    sandbox.clear_requests();

    let http_calls = per_tool.min(5000);
    let http_server = HttpServer::spawn(&sandbox, state.path()).await;
    let mut session = http_server.session().await.expect("an HTTP session");
    for _ in 0..200 {
        session.call(cases[0].tool, cases[0].args.clone()).await;
    }
    let mut http = Vec::new();
    for case in &cases {
        http.push(paired(&direct, case, http_calls, &mut session).await);
    }
    session.close().await;
    drop(http_server);
    sandbox.clear_requests();

    let binary = binary();
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);

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
    for (case, ((stdio, _, _), http)) in cases.iter().zip(stdio.iter().zip(&http)) {
        let floor = stats(stdio.direct.clone());
        let over_stdio = stats(stdio.mcp.clone());
        let http_floor = stats(http.direct.clone());
        let over_http = stats(http.mcp.clone());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.label,
            us(floor.p50),
            us(floor.p99),
            us(over_stdio.p50),
            us(over_stdio.p99),
            us(over_stdio.p50.saturating_sub(floor.p50)),
            us(over_http.p50),
            us(over_http.p99),
            us(over_http.p50.saturating_sub(http_floor.p50)),
        );
    }
    println!(
        "({per_tool} stdio calls and {http_calls} HTTP calls per tool after 200 warm-up calls, each paired with a direct request)"
    );
    println!(
        "MCP ping over stdio (no tool, no 1NCE request): p50 {}, p99 {}",
        us(pings.p50),
        us(pings.p99)
    );
    println!();
    println!("stdio over Unix socket pairs, as Node.js hosts spawn a server:");
    println!();
    println!("| call | direct p50 | stdio p50 | stdio p99 | stdio overhead p50 |");
    println!("| --- | --- | --- | --- | --- |");
    for (case, run) in cases.iter().zip(&sockets) {
        let floor = stats(run.direct.clone());
        let over = stats(run.mcp.clone());
        println!(
            "| {} | {} | {} | {} | {} |",
            case.label,
            us(floor.p50),
            us(over.p50),
            us(over.p99),
            us(over.p50.saturating_sub(floor.p50)),
        );
    }
    println!();
    for (case, (_, cpu, upstream)) in cases.iter().zip(&stdio) {
        println!(
            "{}: {:.3} upstream requests per call, server CPU time {} per call",
            case.label,
            *upstream as f64 / per_tool as f64,
            us(*cpu / per_tool as u32),
        );
    }
    println!(
        "resident memory (stdio): idle {:.1} MB; after {} calls {:.1} MB (peak {:.1} MB)",
        mb(idle.0),
        per_tool * cases.len() + 200,
        mb(loaded.0),
        mb(loaded.1)
    );
    println!("binary size: {:.1} MB ({binary})", size as f64 / 1e6);

    weight::sequential(&sandbox, state.path(), calls).await;
    // The concurrent rounds keep to the first two cases, comparable with earlier runs.
    concurrent_http(&sandbox, state.path(), &cases[..2]).await;
    attack::under_attack(&sandbox, state.path()).await;
    flood::one_line_batch(&sandbox, state.path()).await;
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
