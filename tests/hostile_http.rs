//! Hostile and broken clients against the built binary's HTTP listener, before and after they
//! authenticate: floods of refused requests and a stderr nobody reads (the log), connections that
//! trickle or idle (slowloris), more connections and sessions than the server admits. Each test
//! checks that legitimate clients are still served. Loopback only; counts and waits are bounded,
//! and nothing is timed tighter than the server's own limits plus [`PATIENCE`].

use std::time::Duration;

use futures::StreamExt;

use onence_mcp::sandbox::Sandbox;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::PATIENCE;
use crate::common::net::{HttpServer, TOKEN};
use crate::common::sse::LegacySession;

async fn sandbox() -> Sandbox {
    Sandbox::start().await.expect("start the sandbox")
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "hostile-test", "version": "0"}}})
}

/// A raw connection to the server.
async fn connect(server: &HttpServer) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (or resets it) and returns what it sent; fails
/// the test if it is still open after `within`.
async fn closed_by_server(mut tcp: TcpStream, within: Duration, what: &str) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await
        .unwrap_or_else(|_| panic!("{what}: still open after {within:?}"));
    String::from_utf8_lossy(&got).into_owned()
}

/// The attacker-chosen values must not reach the log whole, and refusals must be counted, not
/// written one line each: 2,000 refused requests, some with a 4 KB Host, make a few lines.
#[tokio::test]
async fn refused_requests_are_logged_short_and_counted_not_line_by_line() {
    let sandbox = sandbox().await;
    let server =
        HttpServer::against(&sandbox.base_url(), &[], &[("ONCE_MCP_HTTP_TOKEN", TOKEN)]).await;
    let before = server.stderr().len();
    let http = reqwest::Client::new();
    let long_host = format!("evil{}.example", "x".repeat(4096));
    let attempts = (0..2000).map(|i| {
        let http = &http;
        let long_host = &long_host;
        let server = &server;
        async move {
            let request = http.post(server.url("/mcp")).json(&initialize(1));
            let request = match i % 4 {
                0 => request.header("host", long_host.as_str()),
                1 => request
                    .bearer_auth(TOKEN)
                    .header("origin", "https://evil.example\"\\"),
                2 => request.bearer_auth("not-the-token-but-long-enough"),
                _ => request,
            };
            request.send().await.expect("an answer").status().as_u16()
        }
    });
    // 16 at a time: more connections at once than --max-connections would be refused.
    let statuses: Vec<u16> = futures::stream::iter(attempts)
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 403),
        "{statuses:?}"
    );
    // Still serving the right client.
    let session = server.client(Some(TOKEN)).await;
    session.ok("list_products", json!({})).await;
    session.client.cancel().await.unwrap();

    let stderr = server.stop().await;
    let log = &stderr[before..];
    assert!(
        log.len() < 8 * 1024,
        "2,000 refusals wrote {} bytes of log:\n{log}",
        log.len()
    );
    assert!(
        !log.contains(&"x".repeat(100)),
        "the long Host reached the log:\n{log}"
    );
    assert!(
        log.contains(&format!("({} bytes)", long_host.len())),
        "{log}"
    );
    assert!(log.contains("more since the last line"), "{log}");
    assert!(
        log.contains(r#"evil.example\"\\"#),
        "quotes and backslashes are escaped:\n{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains("not-the-token"),
        "{log}"
    );
    // Every refusal is accounted for: one logged as it happened per kind, the rest counted.
    let counted: u64 = log
        .lines()
        .filter_map(|l| l.split("count=").nth(1))
        .filter_map(|c| c.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let logged = log
        .lines()
        .filter(|l| l.contains("refused a request"))
        .count() as u64;
    assert_eq!(
        counted + logged - log.matches("count=").count() as u64,
        2000,
        "{log}"
    );
}

/// stderr is a pipe nobody reads and it is full: the server must go on answering, refusals
/// (which log) included.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_stderr_pipe_does_not_stop_the_server() {
    use std::io::{BufRead, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    crate::common::install_crypto();
    let sandbox = sandbox().await;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The smallest pipe there is, so the test fills it with one page.
    // SAFETY: fcntl on a descriptor owned here.
    let size = unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size >= 4096, "F_SETPIPE_SZ");
    let url = sandbox.base_url();
    let mut env = crate::common::sandbox_env(&url).to_vec();
    env.push(("RUST_LOG", "info"));
    let mut child = crate::common::command(&["--http", "127.0.0.1:0"], &env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write_end.try_clone().unwrap()))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the 1nce-mcp binary");
    // Read up to the ready line, then never again.
    let mut reader = std::io::BufReader::new(std::fs::File::from(read_end));
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while !line.contains(" ready on http://") {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "stderr closed");
        }
        (line, reader)
    });
    let (line, _unread) = tokio::time::timeout(PATIENCE, ready)
        .await
        .expect("the ready line")
        .unwrap();
    let addr = line
        .split(" ready on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    // Fill the pipe: the next write anyone makes to it blocks. From a thread of its own, as
    // this write blocks too if the server wrote something since; it ends (EPIPE) when the test
    // drops the read end.
    let mut filler = std::fs::File::from(write_end);
    std::thread::spawn(move || filler.write_all(&[b'.'; 4096]));

    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let work = async {
        for round in 0..50 {
            // Each kind of refusal logs (the first of each at once), and /health answers.
            let foreign = http
                .post(format!("{base}/mcp"))
                .header("origin", "https://evil.example")
                .json(&initialize(round))
                .send()
                .await
                .unwrap();
            assert_eq!(foreign.status(), 403);
            let host = http
                .get(format!("{base}/sse"))
                .header("host", format!("evil{round}.example"))
                .send()
                .await
                .unwrap();
            assert_eq!(host.status(), 403);
            let health = http.get(format!("{base}/health")).send().await.unwrap();
            assert_eq!(health.status(), 200);
        }
        // Sessions open and close (logged at info) and tools answer.
        for _ in 0..5 {
            let mut legacy = LegacySession::open_url(&format!("{base}/sse"), None).await;
            legacy.initialize().await;
        }
    };
    tokio::time::timeout(PATIENCE, work)
        .await
        .expect("the server kept answering with stderr blocked");
    child.kill().await.unwrap();
}

/// One raw request, `Connection: close`, and all the server answers before it closes.
async fn raw_exchange(
    server: &HttpServer,
    request_line: &str,
    headers: &[String],
    body: &str,
) -> String {
    let mut tcp = connect(server).await;
    let mut head = format!("{request_line}\r\n");
    for header in headers {
        head.push_str(&format!("{header}\r\n"));
    }
    head.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    tcp.write_all(head.as_bytes()).await.unwrap();
    closed_by_server(tcp, PATIENCE, request_line).await
}

/// The status line's start: `HTTP/1.1 400`.
fn status_of(answer: &str) -> &str {
    answer.get(..12).unwrap_or(answer)
}

/// RFC 9112 §3.2: a request with two `Host` headers is 400 in either order and on every path
/// (it was 200 with the allowed name first, 403 with it second), and an absolute-form target
/// (`POST http://evil.example/mcp`) is held to the allowed hosts as `Host` is, and must name the
/// same host as `Host` (400 otherwise). Each refusal is logged as the others are.
#[tokio::test]
async fn two_hosts_or_a_target_naming_another_host_are_refused() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(&sandbox.base_url(), &[], &[]).await;
    let here = server.base.trim_start_matches("http://").to_owned();
    let init = initialize(1).to_string();
    let headers = |hosts: &[&str]| {
        let mut all: Vec<String> = hosts.iter().map(|h| format!("Host: {h}")).collect();
        all.push("Accept: application/json, text/event-stream".into());
        all.push("Content-Type: application/json".into());
        all
    };

    for hosts in [
        [here.as_str(), "evil.example"],
        ["evil.example", here.as_str()],
    ] {
        let answer = raw_exchange(&server, "POST /mcp HTTP/1.1", &headers(&hosts), &init).await;
        assert_eq!(status_of(&answer), "HTTP/1.1 400", "{hosts:?}: {answer}");
        assert!(answer.contains("more than one Host header"), "{answer}");
        // Every path: the legacy transport, and health outside the guard.
        for line in ["GET /sse HTTP/1.1", "GET /health HTTP/1.1"] {
            let answer = raw_exchange(&server, line, &headers(&hosts), "").await;
            assert_eq!(
                status_of(&answer),
                "HTTP/1.1 400",
                "{line} {hosts:?}: {answer}"
            );
        }
    }

    // The target's authority against Host, then against the allowed hosts.
    let answer = raw_exchange(
        &server,
        "POST http://evil.example/mcp HTTP/1.1",
        &headers(&[&here]),
        &init,
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 400", "{answer}");
    assert!(
        answer.contains("another host than the Host header"),
        "{answer}"
    );
    let answer = raw_exchange(
        &server,
        "POST http://evil.example/mcp HTTP/1.1",
        &headers(&["evil.example"]),
        &init,
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 403", "{answer}");
    let answer = raw_exchange(
        &server,
        "GET http://evil.example/health HTTP/1.1",
        &headers(&[&here]),
        "",
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 400", "{answer}");
    // An absolute-form target naming this server is served (HTTP/1.1 servers accept the form),
    // and so is one Host naming it, as ever.
    for line in [
        format!("POST http://{here}/mcp HTTP/1.1"),
        "POST /mcp HTTP/1.1".into(),
    ] {
        let answer = raw_exchange(&server, &line, &headers(&[&here]), &init).await;
        assert_eq!(status_of(&answer), "HTTP/1.1 200", "{line}: {answer}");
        assert!(answer.contains("serverInfo"), "{line}: {answer}");
    }

    let stderr = server.stop().await;
    assert!(stderr.contains("naming two hosts"), "{stderr}");
    assert!(
        stderr.contains("for a Host this server does not serve"),
        "{stderr}"
    );
}

/// Slowloris: connections that trickle headers, send nothing, or trickle a body are closed by
/// the server; past --max-connections new connections get 503 at once; a legitimate client and
/// a long-lived SSE stream are served throughout.
#[tokio::test]
async fn slow_and_idle_connections_are_closed_and_capped() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(&sandbox.base_url(), &["--max-connections", "30"], &[]).await;
    // 10 trickling headers, 5 saying nothing, 5 declaring a body they never finish.
    let mut trickling = Vec::new();
    for _ in 0..10 {
        let mut tcp = connect(&server).await;
        tcp.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        trickling.push(tcp);
    }
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect(&server).await);
    }
    let mut slow_bodies = Vec::new();
    for _ in 0..5 {
        let mut tcp = connect(&server).await;
        tcp.write_all(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
        slow_bodies.push(tcp);
    }
    // A declared body past the limit is refused before any of it is read.
    let mut huge = connect(&server).await;
    huge.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{")
        .await
        .unwrap();
    let answer = closed_by_server(huge, PATIENCE, "an oversized declared body").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // So are headers past 64 KiB.
    let mut big_head = connect(&server).await;
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "x".repeat(70_000)
    );
    big_head.write_all(head.as_bytes()).await.unwrap();
    let answer = closed_by_server(big_head, PATIENCE, "oversized headers").await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A legitimate client and a legacy SSE stream work during the attack.
    let session = server.client(None).await;
    session.ok("list_orders", json!({"page_size": 2})).await;
    let mut stream = LegacySession::open(&server, None).await;

    // More connections than the cap: the ones past it are told so at once.
    let mut extra = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let mut tcp = connect(&server).await;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                refused = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
            _ => extra.push(tcp),
        }
    }
    let refused = refused.expect("a connection past --max-connections is refused");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Retry-After"), "{refused}");
    drop(extra);

    // Trickling one more header line now and then does not keep a connection open past the
    // header timeout (10 s), and neither does silence.
    let trickle = async {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            for tcp in &mut trickling {
                let _ = tcp.write_all(b"X-Slow: 1\r\n").await;
            }
        }
    };
    trickle.await;
    let within = Duration::from_secs(10) + PATIENCE;
    let closing = trickling
        .into_iter()
        .chain(idle)
        .map(|tcp| closed_by_server(tcp, within, "a slow or idle connection"));
    futures::future::join_all(closing).await;

    // The SSE stream outlived the header timeout and still carries answers.
    stream.initialize().await;

    // A body that does not arrive within 30 s is answered 408 and the connection closed; an
    // idle keep-alive connection is closed after the header timeout (10 s). Waited for together.
    let within = Duration::from_secs(30) + PATIENCE;
    let slow = futures::future::join_all(
        slow_bodies
            .into_iter()
            .map(|tcp| closed_by_server(tcp, within, "a slow body")),
    );
    let mut kept = connect(&server).await;
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let kept = closed_by_server(
        kept,
        Duration::from_secs(10) + PATIENCE,
        "an idle keep-alive connection",
    );
    let (answers, kept) = tokio::join!(slow, kept);
    for answer in answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert!(kept.starts_with("HTTP/1.1 200"), "{kept}");

    // And the legitimate client is still served (its pooled connection may have been closed
    // as idle; it opens another).
    session.ok("list_orders", json!({"page_size": 1})).await;
}

/// --max-sessions counts Streamable HTTP and legacy SSE sessions together; past it a new session
/// gets 503 with Retry-After and a JSON-RPC error; a closed or idle session frees its place;
/// DELETE of a session is 204, of an unknown one 404.
#[tokio::test]
async fn sessions_are_capped_expire_when_idle_and_unknown_ones_are_404() {
    let sandbox = sandbox().await;
    let server = HttpServer::against(
        &sandbox.base_url(),
        &["--max-sessions", "3", "--session-idle-timeout", "3s"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let post_initialize = |id: u64| {
        http.post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize(id))
            .send()
    };
    let session_id = |response: &reqwest::Response| {
        response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };

    let first = post_initialize(1).await.unwrap();
    assert_eq!(first.status(), 200);
    let first_id = session_id(&first);
    let second = server.client(None).await;
    let _legacy = LegacySession::open(&server, None).await;

    let refused = post_initialize(7).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["id"], 7, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--max-sessions"), "{message}");
    let sse = http
        .get(server.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 503);

    // Closing one frees its place; closing it again, or one never opened, is 404.
    let delete = |id: String| {
        http.delete(server.url("/mcp"))
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    assert_eq!(delete(first_id.clone()).await.unwrap().status(), 204);
    assert_eq!(delete(first_id).await.unwrap().status(), 404);
    assert_eq!(
        delete("no-such-session".into()).await.unwrap().status(),
        404
    );
    let again = post_initialize(2).await.unwrap();
    assert_eq!(again.status(), 200);

    // Idle sessions expire (3 s here) and free their places, the legacy one included: three
    // new ones fit at once (those opened by a try that did not fit are closed again).
    second.client.cancel().await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut opened = Vec::new();
        for id in 0..3 {
            let response = post_initialize(10 + id).await.unwrap();
            opened.push((
                response.status().as_u16(),
                response.headers().get("mcp-session-id").cloned(),
            ));
        }
        if opened.iter().all(|(status, _)| *status == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle sessions were not closed: {opened:?}"
        );
        for id in opened.into_iter().filter_map(|(_, id)| id) {
            delete(id.to_str().unwrap().to_owned()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
