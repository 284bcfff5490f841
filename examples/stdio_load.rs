//! Load benchmark over stdio: many sequential tool calls through one MCP session to the release
//! binary, which talks HTTP to a sandbox in this process. Prints throughput, latency percentiles
//! and the server's memory (VmRSS now, VmHWM peak, from /proc/<pid>/status on Linux) after a
//! warm-up and at intervals, so growth shows.
//!
//! ```sh
//! cargo build --release && cargo run --release --example stdio_load -- 20000
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use onence_mcp::sandbox::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Sandbox};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};

/// The server binary next to this example's build directory (target/<profile>/1nce-mcp).
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let binary = dir.join("1nce-mcp");
    assert!(
        binary.exists(),
        "{} not found: run `cargo build --release` first",
        binary.display()
    );
    binary
}

/// (VmRSS, VmHWM) in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the number of calls"))
        .unwrap_or(20_000);
    let sandbox = Sandbox::start().await.expect("sandbox");
    let url = sandbox.base_url();
    let cmd = tokio::process::Command::new(server_binary()).configure(|c| {
        c.args(["--rate-limit", "off"])
            .env("ONCE_API_URL", &url)
            .env("ONCE_CLIENT_ID", SANDBOX_CLIENT_ID)
            .env("ONCE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET)
            .env_remove("RUST_LOG");
    });
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn the server");
    let pid = transport.id().expect("server pid");
    let client = ().serve(transport).await.expect("initialize");
    let report = |label: &str| match memory_kib(pid) {
        Some((rss, hwm)) => println!("{label:>14}: VmRSS {rss:>6} KiB, VmHWM {hwm:>6} KiB"),
        None => println!("{label:>14}: memory not available on this platform"),
    };
    report("after start");

    let mut latencies = Vec::with_capacity(calls);
    let mut errors = 0;
    let started = Instant::now();
    let checkpoint = (calls / 10).max(1);
    for i in 0..calls {
        let (tool, args) = match i % 3 {
            0 => (
                "list_orders",
                json!({"page": 1 + (i / 3) % 3, "page_size": 10}),
            ),
            1 => (
                "get_order",
                json!({"order_number": 2000000001 + (i % 25) as u64}),
            ),
            _ => (
                "create_order",
                json!({"products": [{"product_id": 1001, "quantity": 1 + i % 50}]}),
            ),
        };
        let Value::Object(args) = args else {
            unreachable!()
        };
        let t = Instant::now();
        let result = client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
            .await
            .expect("tools/call");
        latencies.push(t.elapsed());
        if result.is_error == Some(true) {
            errors += 1;
        }
        if (i + 1) % checkpoint == 0 {
            // The sandbox records every request; keep this process small too.
            sandbox.clear_requests();
            report(&format!("{} calls", i + 1));
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{calls} sequential calls in {:.2} s: {:.0} calls/s, {errors} errors; latency p50 {:?}, p99 {:?}, max {:?}",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    let _ = client.cancel().await;
    assert_eq!(errors, 0, "some calls failed");
}
