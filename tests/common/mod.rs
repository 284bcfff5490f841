//! Shared helpers of the integration tests, one per job: the built binary as a child process
//! (a clean environment and a state directory of its own), its stderr captured whole, rmcp's
//! client over stdio, accessors for tool results, the crate's 1NCE client against a sandbox,
//! and waiting for a condition with a deadline. HTTP helpers are in [`net`] and [`sse`].

pub mod markdown;
pub mod net;
pub mod oidc;
#[cfg(unix)]
pub mod pg;
pub mod skip;
pub mod sse;

pub use skip::{installed, skip};

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onence_mcp::api::{Client, ClientConfig, Credentials};
use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub type McpClient = RunningService<RoleClient, ()>;

/// Every tool the server offers (without --read-only), sorted by name.
pub const ALL_TOOLS: [&str; 5] = [
    "create_order",
    "find_orders",
    "get_order",
    "list_orders",
    "list_products",
];

/// How long a test waits for something that should happen (a log line, a process exit, a
/// request) before it fails saying what it waited for. Generous: it only matters when the
/// thing never comes, and a loaded 2-core CI machine is slow.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// reqwest is built without a default TLS provider (`rustls-no-provider`) and insists on a
/// process-wide one even for plain http://; the crate uses ring. Every test in this binary
/// installs the same provider, so whichever comes first wins and the rest are refused harmlessly.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The built server binary, or the one `BENCH_BINARY` names (the measurements for
/// BENCHMARKS.md run an optimised build, as `cargo bench` does).
pub fn binary() -> PathBuf {
    std::env::var_os("BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_1nce-mcp")))
}

/// A fresh, empty directory of its own for one test, under Cargo's scratch space. It is kept
/// after the test: a server the test spawned may still be writing to it.
pub fn temp_dir(label: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("{label}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a temp dir")
        .keep()
}

/// The environment that points the server at `api_url` (a sandbox, or a proxy in front of one)
/// as if it were the real 1NCE API, with the sandbox's credentials.
pub fn sandbox_env(api_url: &str) -> [(&'static str, &str); 3] {
    [
        ("ONCE_API_URL", api_url),
        ("ONCE_CLIENT_ID", SANDBOX_CLIENT_ID),
        ("ONCE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET),
    ]
}

/// A command for the server binary with a clean environment: no credentials or settings leak
/// in from the machine running the tests, and state (tokens, the audit log) goes to a temp dir
/// of its own, never the real home directory. The process is killed when its handle is dropped
/// (a test that fails or times out leaves no server behind).
pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.args(args).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("ONCE_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    // Each process gets its own state directory (which also holds the audit log by default)
    // unless the test shares one on purpose; XDG_STATE_HOME points into scratch space as well, so
    // nothing a test runs can write into the real home directory.
    let state = temp_dir("state");
    cmd.env("XDG_STATE_HOME", state.join("xdg"));
    cmd.env("ONCE_STATE_DIR", &state);
    // The order mirror syncs in the background and answers reads from what it keeps: the
    // requests a test counts, and the faults it injects, would race with its sync. Tests of
    // other things run without it; tests/mirror.rs (and any test that wants it) turn it on.
    cmd.env("ONCE_MIRROR", "off");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

/// How a one-shot run of the binary (`call`, `check`) ended, and what it printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` (the binary, however wrapped) to its end, with `input` written to its stdin and
    /// then closed, or with stdin closed from the start.
    pub async fn of(mut cmd: tokio::process::Command, input: Option<&str>) -> Run {
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().expect("run the 1nce-mcp binary");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin
                .write_all(input.as_bytes())
                .await
                .expect("write to the binary's stdin");
        }
        let out = child
            .wait_with_output()
            .await
            .expect("wait for the 1nce-mcp binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The `--args` that confirm this run's preview (a `call create_order` that printed one):
    /// `args` with its token.
    pub fn confirming(&self, args: &str) -> String {
        assert_eq!(self.code, 0, "the preview failed: {self:?}");
        let args: Value = serde_json::from_str(args).expect("the order is JSON");
        confirming(&args, &self.json()).to_string()
    }

    /// stdout as JSON (what `call` prints for a successful tool).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// `1nce-mcp <args>` with `env` on top of [`command`]'s clean environment, stdin closed; with
/// `clock` (`faketime`'s offset, such as `"+8d"`) under libfaketime, so the process alone
/// believes it is another time (the file system and the database keep the true time).
pub async fn run(clock: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = command(args, env);
    if let Some(offset) = clock {
        let faketime = skip::named(FAKETIME, FAKETIME_DEFAULT)
            .filter(|p| p.exists())
            .expect("a test that runs at another time asks faketime_installed() first");
        let std = cmd.as_std();
        let mut wrapped = tokio::process::Command::new(faketime);
        wrapped.args(["-f", offset]).arg(std.get_program());
        wrapped.args(std.get_args());
        wrapped.env_clear();
        for (key, value) in std.get_envs() {
            if let Some(value) = value {
                wrapped.env(key, value);
            }
        }
        for (key, value) in std::env::vars_os() {
            if std.get_envs().all(|(k, _)| k != key) {
                wrapped.env(key, value);
            }
        }
        // Timers keep the real monotonic clock; only the wall clock is off.
        wrapped.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        cmd = wrapped;
    }
    Run::of(cmd, None).await
}

/// libfaketime's `faketime`: `ONCE_FAKETIME`, else Debian's.
const FAKETIME: &str = "ONCE_FAKETIME";
const FAKETIME_DEFAULT: Option<&str> = Some("/usr/bin/faketime");

/// Whether the test machine can run programs at another time (libfaketime); when not, the
/// test [`skip`]s (a failure under `ONCE_INTEROP_REQUIRED=1`) and should return.
pub fn faketime_installed() -> bool {
    installed(
        FAKETIME,
        FAKETIME_DEFAULT,
        "install Debian's faketime package (apt-get install faketime)",
    )
    .is_some()
}

/// The crate's 1NCE client pointed at `sandbox`.
pub fn api_client(sandbox: &Sandbox) -> Client {
    install_crypto();
    Client::new(ClientConfig::new(
        sandbox.base_url().parse().unwrap(),
        Credentials::new(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
    ))
    .unwrap()
}

/// Waits until `done` holds, looking every few milliseconds, and fails the test saying `what`
/// it waited for if that takes longer than [`PATIENCE`]. For a condition that can only be
/// looked at (the sandbox's records, a closed port); where there is a signal, wait on that.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything a child process writes to stderr, read line by line in the background (a line is
/// decoded whole, so a character is never split between two reads).
pub struct Stderr {
    shared: Arc<StderrShared>,
    reader: JoinHandle<()>,
}

#[derive(Default)]
struct StderrShared {
    text: Mutex<String>,
    /// Set when the pipe reached its end: the process exited (or closed stderr).
    closed: Mutex<bool>,
    changed: Notify,
}

impl Stderr {
    /// Starts reading `pipe` in the background.
    pub fn capture(pipe: impl AsyncRead + Unpin + Send + 'static) -> Stderr {
        let shared = Arc::new(StderrShared::default());
        let sink = Arc::clone(&shared);
        let reader = tokio::spawn(async move {
            let mut pipe = BufReader::new(pipe);
            let mut line = Vec::new();
            while let Ok(n) = pipe.read_until(b'\n', &mut line).await {
                if n == 0 {
                    break;
                }
                sink.text
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
                sink.changed.notify_waiters();
            }
            *sink.closed.lock().unwrap() = true;
            sink.changed.notify_waiters();
        });
        Stderr { shared, reader }
    }

    /// What the process wrote so far.
    pub fn now(&self) -> String {
        self.shared.text.lock().unwrap().clone()
    }

    /// Waits until a line containing `needle` was written and returns that line. Fails the test
    /// if the process closes stderr (exits) first, or after [`PATIENCE`].
    pub async fn wait_for(&self, needle: &str) -> String {
        let wait = async {
            loop {
                // Registered before looking, so a line written in between still wakes us.
                let changed = self.shared.changed.notified();
                if let Some(line) = self.now().lines().find(|l| l.contains(needle)) {
                    return line.to_owned();
                }
                assert!(
                    !*self.shared.closed.lock().unwrap(),
                    "the process closed stderr (exited) without writing {needle:?}:\n{}",
                    self.now()
                );
                changed.await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "waited {PATIENCE:?} for {needle:?} on stderr:\n{}",
                    self.now()
                )
            })
    }

    /// Waits until the process closed stderr, which it does by exiting, and returns all it wrote.
    pub async fn until_closed(self) -> String {
        let Stderr { shared, reader } = self;
        tokio::time::timeout(PATIENCE, reader)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the process did not close stderr (exit) within {PATIENCE:?}:\n{}",
                    shared.text.lock().unwrap()
                )
            })
            .expect("the stderr reader does not panic");
        shared.text.lock().unwrap().clone()
    }
}

/// A child that leads a process group of its own, for a command that starts others (a shell
/// running a line that starts the server): killing the child alone would leave those running,
/// orphaned, after the tests end. [`Group::kill`], and dropping it (even in a panic), kill the
/// whole group.
#[cfg(unix)]
pub struct Group {
    pub child: tokio::process::Child,
}

#[cfg(unix)]
impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(mut cmd: tokio::process::Command) -> Group {
        let child = cmd
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn a process group");
        Group { child }
    }

    /// Sends SIGKILL to every process of the group.
    pub fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill has no memory preconditions; the group is the one `spawn` made (its
            // id is the leader's pid, not reaped while `child` holds it).
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
    }
}

#[cfg(unix)]
impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One MCP client session, over any transport.
pub struct Session {
    pub client: McpClient,
}

impl Session {
    /// Calls a tool and returns the raw result (tool errors are results, not `Err`).
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        call_tool(&self.client, tool, args).await
    }

    /// Calls a tool that must succeed and returns its `structuredContent`.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        let result = self.call(tool, args.clone()).await;
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

    /// Previews `args` with create_order (the preview must succeed), then confirms the preview
    /// with its token: the confirmation's raw result (1NCE may refuse or lose the order).
    pub async fn preview_and_confirm(&self, args: &Value) -> CallToolResult {
        let preview = self.ok("create_order", args.clone()).await;
        self.call("create_order", confirming(args, &preview)).await
    }

    /// [`Session::preview_and_confirm`] that must place the order: the placed answer's
    /// `structuredContent`.
    pub async fn place_order(&self, args: &Value) -> Value {
        let placed = self.preview_and_confirm(args).await;
        let structured = placed.structured_content.clone().unwrap_or_default();
        assert_eq!(structured["status"], "placed", "{}", text(&placed));
        structured
    }

    /// Calls a tool that must fail with a tool error and returns the error text.
    pub async fn err(&self, tool: &str, args: Value) -> String {
        let result = self.call(tool, args.clone()).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "{tool} {args} should have failed but returned {}",
            text(&result)
        );
        text(&result)
    }
}

/// `args` with `token` as their `confirmation_token`: what create_order is called with to
/// confirm a preview, or to try a token that is not the preview's.
pub fn with_token(mut args: Value, token: &Value) -> Value {
    args["confirmation_token"] = token.clone();
    args
}

/// The arguments that confirm `preview` (create_order's answer asking for confirmation, its
/// `structuredContent`): `args` with the preview's token. Fails the test if there is none.
pub fn confirming(args: &Value, preview: &Value) -> Value {
    let token = &preview["confirmation_token"];
    assert!(
        token.is_string(),
        "not a preview with a confirmation_token: {preview}"
    );
    with_token(args.clone(), token)
}

/// Calls a tool through any client and returns the raw result (tool errors are results).
async fn call_tool(client: &McpClient, tool: &str, args: Value) -> CallToolResult {
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

/// All text content of a result, joined.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A server process serving MCP over stdio, with an rmcp client session to it (`client`, `call`,
/// `ok` and `err` come from [`Session`]) and its stderr.
pub struct Server {
    session: Session,
    stderr: Stderr,
    /// The server's process id.
    pub pid: Option<u32>,
}

impl std::ops::Deref for Server {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Server {
    /// Ends the session and returns everything the server wrote to stderr: closing its stdin
    /// makes the server exit, and its stderr is read to the end.
    pub async fn stop(self) -> String {
        let _ = self.session.client.cancel().await;
        self.stderr.until_closed().await
    }
}

/// Spawns the server pointed at `sandbox` as if it were the real 1NCE API.
pub async fn spawn_against(sandbox: &Sandbox, extra_args: &[&str]) -> Server {
    spawn(extra_args, &sandbox_env(&sandbox.base_url())).await
}

/// Spawns the server binary with these arguments and environment and completes `initialize`.
pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Server {
    spawn_command(command(args, env)).await
}

/// Spawns `cmd`, a server serving MCP on stdio however it was launched, and completes
/// `initialize`.
pub async fn spawn_command(cmd: tokio::process::Command) -> Server {
    let (transport, stderr) = child_of(cmd);
    let pid = transport.id();
    let client = ().serve(transport).await.expect("MCP initialize");
    Server {
        session: Session { client },
        stderr,
        pid,
    }
}

/// The server binary as a child process transport, for a client of the test's own, and its
/// stderr.
pub fn child(args: &[&str], env: &[(&str, &str)]) -> (TokioChildProcess, Stderr) {
    child_of(command(args, env))
}

fn child_of(mut cmd: tokio::process::Command) -> (TokioChildProcess, Stderr) {
    // rmcp kills the child on drop from a task of its own, which never runs if the runtime
    // ends first; this kill does not wait for one.
    cmd.kill_on_drop(true);
    let cmd = cmd.configure(|_| {});
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the 1nce-mcp binary");
    let stderr = Stderr::capture(stderr.expect("stderr is piped"));
    (transport, stderr)
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
