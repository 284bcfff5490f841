//! The kinds of standard stream clients spawn a stdio server with: pipes (Python, Rust) and Unix
//! socket pairs (Node.js, so Claude Desktop, Claude Code, VS Code and Cursor), separate or one
//! socket for both directions. Each is driven on the reactor; each serves a session and ends it
//! cleanly when the client closes its end.

use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::common;

/// A short MCP session over raw JSON-RPC lines: initialize, then one tool call.
async fn session(input: impl AsyncWrite + Unpin, output: impl AsyncRead + Unpin) {
    let mut input = input;
    let mut lines = BufReader::new(output).lines();
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "streams-test", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "get_order", "arguments": {"order_number": 2000000007u64}}}),
    ];
    for message in &messages {
        input
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    }
    input.flush().await.unwrap();
    let mut answered = 0;
    while answered < 2 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("the server still writing");
        let message: Value = serde_json::from_str(&line).expect("stdout is JSON-RPC only");
        match message["id"].as_u64() {
            Some(1) => assert!(message["result"]["serverInfo"].is_object(), "{message}"),
            Some(2) => {
                assert_eq!(message["result"]["isError"], false, "{message}");
                assert_eq!(
                    message["result"]["structuredContent"]["order_number"],
                    2000000007u64
                );
            }
            _ => continue,
        }
        answered += 1;
    }
}

/// The server with the given stdin and stdout, debug logs captured from stderr.
fn spawn(stdin: Stdio, stdout: Stdio) -> tokio::process::Child {
    common::command(&["--sandbox"], &[("RUST_LOG", "debug")])
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the server")
}

/// Waits for a clean exit and returns what the server logged.
async fn finish(mut child: tokio::process::Child) -> String {
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server exits once the client closes its end")
        .unwrap();
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut log)
        .await
        .unwrap();
    assert!(status.success(), "{status}: {log}");
    log
}

fn stream(end: UnixStream) -> tokio::net::UnixStream {
    end.set_nonblocking(true).unwrap();
    tokio::net::UnixStream::from_std(end).unwrap()
}

#[tokio::test]
async fn separate_socket_pairs_as_node_spawns_a_server() {
    let (ours_in, theirs_in) = UnixStream::pair().unwrap();
    let (ours_out, theirs_out) = UnixStream::pair().unwrap();
    let child = spawn(
        Stdio::from(std::os::fd::OwnedFd::from(theirs_in)),
        Stdio::from(std::os::fd::OwnedFd::from(theirs_out)),
    );
    let (input, output) = (stream(ours_in), stream(ours_out));
    session(input, output).await;
    // Closing our ends is the client going away.
    let log = finish(child).await;
    assert!(log.contains("mode=Sockets"), "{log}");
}

#[tokio::test]
async fn one_socket_for_both_directions() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let theirs_too = theirs.try_clone().unwrap();
    let child = spawn(
        Stdio::from(std::os::fd::OwnedFd::from(theirs)),
        Stdio::from(std::os::fd::OwnedFd::from(theirs_too)),
    );
    let (read, write) = stream(ours).into_split();
    session(write, read).await;
    let log = finish(child).await;
    assert!(log.contains("mode=Sockets"), "{log}");
}

#[tokio::test]
async fn pipes_as_python_and_rust_spawn_a_server() {
    let mut child = spawn(Stdio::piped(), Stdio::piped());
    let (input, output) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    session(input, output).await;
    let log = finish(child).await;
    assert!(log.contains("mode=Pipes"), "{log}");
}
