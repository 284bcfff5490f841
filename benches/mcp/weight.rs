//! What the server weighs (issue 27): the binary's size on disk, the time from spawn to its first
//! answer, and its resident memory over a long stdio session of sequential calls as an agent
//! makes them, a third each `list_orders`, `get_order` and `create_order` previews, read from
//! `/proc/<pid>/status` every tenth of the way so that growth shows. `BENCH_ONLY=weight` runs
//! this part alone; `BENCH_CALLS` (10,000) sets the calls, `BENCH_SPAWNS` (25) the start-ups.
//!
//! Measure the shipped binary: `cargo bench` builds `target/release/1nce-mcp` with the tests'
//! hooks (the cargo feature `test-support`), so point `BENCH_BINARY` at a copy of what
//! `cargo build --release` made (BENCHMARKS.md has the commands).

use std::time::{Duration, Instant};

use onence_mcp::sandbox::Sandbox;
use serde_json::json;

use super::{StdioServer, binary, count, memory_kib, ms, stats};

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Spawn to `initialize` answered, for `spawns` fresh stdio processes.
pub async fn startup(sandbox: &Sandbox, state: &std::path::Path, spawns: usize) -> Vec<Duration> {
    let mut startup = Vec::with_capacity(spawns);
    for _ in 0..spawns {
        let started = Instant::now();
        let mut server = StdioServer::spawn(sandbox, state);
        server.initialize().await;
        startup.push(started.elapsed());
    }
    startup
}

/// `calls` sequential tool calls on one fresh stdio server: throughput, latency, and the
/// server's memory at the start and every tenth of the way.
pub async fn sequential(sandbox: &Sandbox, state: &std::path::Path, calls: usize) {
    let mut server = StdioServer::spawn(sandbox, state);
    server.initialize().await;
    let pid = server.pid();
    let (start, _) = memory_kib(pid);
    println!();
    println!(
        "sequential stdio calls on one fresh server (a third each list_orders, get_order, create_order preview):"
    );
    println!();
    println!("| calls | VmRSS | VmHWM (peak) |");
    println!("| --- | --- | --- |");
    println!("| 0 (after initialize) | {} | |", mib(start));
    let checkpoint = (calls / 10).max(1);
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
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
        let t = Instant::now();
        server.call(tool, args).await;
        latencies.push(t.elapsed());
        if (i + 1) % checkpoint == 0 || i + 1 == calls {
            // The sandbox records every request; this process stays small too.
            sandbox.clear_requests();
            let (rss, peak) = memory_kib(pid);
            println!("| {} | {} | {} |", i + 1, mib(rss), mib(peak));
        }
    }
    let elapsed = started.elapsed();
    let latency = stats(latencies);
    println!();
    println!(
        "{calls} calls in {:.2} s: {:.0} calls/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        ms(latency.p50),
        ms(latency.p99),
        ms(latency.max),
    );
}

/// The three numbers of issue 27, and the memory on the way.
pub async fn weigh(sandbox: &Sandbox, state: &std::path::Path) {
    let binary = binary();
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!(
        "binary: {binary}, {size} bytes ({:.2} MiB)",
        size as f64 / (1024.0 * 1024.0)
    );
    if std::env::var_os("BENCH_BINARY").is_none() {
        println!(
            "(the build cargo bench made, with the tests' hooks: set BENCH_BINARY to a copy of `cargo build --release`'s binary to weigh the shipped one)"
        );
    }
    let spawns = count("BENCH_SPAWNS", 25);
    let startup = stats(startup(sandbox, state, spawns).await);
    println!(
        "spawn to initialize answered ({spawns} processes): median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(startup.p50),
        ms(startup.min),
        ms(startup.max)
    );
    sequential(sandbox, state, count("BENCH_CALLS", 10_000)).await;
}
