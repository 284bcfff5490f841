//! A local flood on stdio (issue 24): one line holding `BENCH_FLOOD_REQUESTS` (400,000) JSON-RPC
//! requests as a batch, `[{"jsonrpc":"2.0","id":1,"method":"ping"},…]`, 15.6 MiB, just under the
//! 16 MiB line limit. MCP has no batches, so every request in it is refused; what is measured is
//! what that costs the server: its peak resident memory (`VmHWM`) and what it still holds once
//! it has answered (`VmRSS`), from `/proc/<pid>/status`, and the answers it writes for the line.
//!
//! The server is the release binary on pipes, initialised as a client would; after the line, a
//! `ping` on a line of its own is answered once everything before it was, and memory is read
//! then, and again a second later.

use std::time::{Duration, Instant};

use onence_mcp::sandbox::Sandbox;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{StdioServer, count, memory_kib};

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub async fn one_line_batch(sandbox: &Sandbox, state: &std::path::Path) {
    let requests = count("BENCH_FLOOD_REQUESTS", 400_000);
    const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut line = Vec::with_capacity(requests * (REQUEST.len() + 1) + 2);
    line.push(b'[');
    for i in 0..requests {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(REQUEST);
    }
    line.extend_from_slice(b"]\n");

    let mut server = StdioServer::spawn(sandbox, state);
    server.initialize().await;
    let pid = server.pid();
    let (idle, _) = memory_kib(pid);

    let started = Instant::now();
    server.stdin.write_all(&line).await.unwrap();
    drop(line);
    server
        .stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"after-the-flood\",\"method\":\"ping\"}\n")
        .await
        .unwrap();
    let (mut answers, mut bytes) = (0usize, 0usize);
    loop {
        let line = server
            .lines
            .next_line()
            .await
            .unwrap()
            .expect("server alive");
        let message: Value = serde_json::from_str(&line).unwrap();
        if message["id"] == "after-the-flood" {
            break;
        }
        answers += 1;
        bytes += line.len() + 1;
    }
    let answered = started.elapsed();
    let (after, peak) = memory_kib(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (settled, _) = memory_kib(pid);
    // Still serving.
    let pong = server.request("ping", serde_json::json!({})).await;
    assert!(pong["result"].is_object(), "{pong}");

    println!();
    println!(
        "one stdio line of {requests} requests as a batch ({:.1} MiB):",
        (requests * (REQUEST.len() + 1) + 1) as f64 / 1048576.0
    );
    println!("| what | value |");
    println!("| --- | --- |");
    println!("| answers written for the line | {answers} ({bytes} bytes) |");
    println!(
        "| all answered after | {:.0} ms |",
        answered.as_secs_f64() * 1e3
    );
    println!(
        "| resident memory before the line (VmRSS) | {} |",
        mib(idle)
    );
    println!("| peak resident memory (VmHWM) | {} |", mib(peak));
    println!("| resident memory once answered (VmRSS) | {} |", mib(after));
    println!(
        "| resident memory a second later (VmRSS) | {} |",
        mib(settled)
    );
}
