//! A legitimate client while the server is attacked, and the log the attack writes (issue 14).
//!
//! The server requires a bearer token (as on a shared host) and runs with its defaults
//! (`--max-connections 512`). One legitimate session makes sequential `get_order` calls, first
//! undisturbed, then while
//! - `BENCH_SLOW_CONNECTIONS` (500) connections trickle a header line every 2 s, each opened again
//!   as soon as the server closes it (slowloris), and
//! - `BENCH_FLOOD_RATE` (200) unauthenticated requests per second arrive, a quarter each with no
//!   token, a wrong token, a foreign Origin and a 4 KB foreign Host.
//!
//! Then 10,000 refused requests of the same four kinds are sent at once and the bytes the server
//! writes to stderr for them are counted, up to its exit (which writes the last counts).
//! `BENCH_ATTACK_CALLS` (2,000) sets the legitimate client's calls per phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use onence_mcp::sandbox::Sandbox;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{HttpServer, count, mb, memory_kib, stats, us};

const TOKEN: &str = "bench-attack-token-5d1c8e7f2a9b4c36";

/// One refused request of kind `i % 4`.
fn refused(
    http: &reqwest::Client,
    url: &str,
    i: usize,
    long_host: &str,
) -> reqwest::RequestBuilder {
    let request = http
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    match i % 4 {
        0 => request,
        1 => request.bearer_auth("a-wrong-token-that-is-long-enough"),
        2 => request
            .bearer_auth(TOKEN)
            .header("origin", "https://evil.example"),
        _ => request.bearer_auth(TOKEN).header("host", long_host),
    }
}

pub async fn under_attack(sandbox: &Sandbox, state: &std::path::Path) {
    let calls = count("BENCH_ATTACK_CALLS", 2000);
    let slow = count("BENCH_SLOW_CONNECTIONS", 500);
    let rate = count("BENCH_FLOOD_RATE", 200);
    let server = HttpServer::spawn_with_token(sandbox, state, Some(TOKEN)).await;
    let pid = server.child.id().unwrap();
    let addr = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let long_host = format!("evil{}.example", "x".repeat(4096));

    let mut session = server.session().await.expect("a session");
    let args = json!({"order_number": 2000000007u64});
    for _ in 0..200 {
        session.call("get_order", args.clone()).await;
    }
    let mut quiet = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        session.call("get_order", args.clone()).await;
        quiet.push(started.elapsed());
    }
    let (rss_quiet, _) = memory_kib(pid);

    // The attack.
    let attacking = Arc::new(AtomicBool::new(true));
    let slow_opened = Arc::new(AtomicU64::new(0));
    let slow_closed = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for _ in 0..slow {
        let (attacking, opened, closed, addr) = (
            Arc::clone(&attacking),
            Arc::clone(&slow_opened),
            Arc::clone(&slow_closed),
            addr.clone(),
        );
        attackers.push(tokio::spawn(async move {
            while attacking.load(Ordering::Relaxed) {
                let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let mut line: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n";
                while attacking.load(Ordering::Relaxed) && tcp.write_all(line).await.is_ok() {
                    line = b"X-Slow: 1\r\n";
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let flood_statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    {
        let (attacking, statuses, url, long_host) = (
            Arc::clone(&attacking),
            Arc::clone(&flood_statuses),
            server.url.clone(),
            long_host.clone(),
        );
        attackers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate as u32);
            let mut i = 0;
            while attacking.load(Ordering::Relaxed) {
                ticks.tick().await;
                let request = refused(&http, &url, i, &long_host);
                let statuses = Arc::clone(&statuses);
                tokio::spawn(async move {
                    let status = match request.send().await {
                        Ok(response) => response.status().as_u16().to_string(),
                        Err(_) => "error".to_owned(),
                    };
                    *statuses.lock().unwrap().entry(status).or_insert(0u64) += 1;
                });
                i += 1;
            }
        }));
    }
    // Let the slow connections pile up before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attack_started = Instant::now();
    let mut attacked = Vec::with_capacity(calls);
    let mut errors = 0;
    let mut rss_peak_attack = 0;
    for i in 0..calls {
        let started = Instant::now();
        match session.try_call("get_order", args.clone()).await {
            Ok(()) => attacked.push(started.elapsed()),
            Err(_) => errors += 1,
        }
        if i % 100 == 0 {
            rss_peak_attack = rss_peak_attack.max(memory_kib(pid).0);
        }
    }
    // Keep attacking for at least 20 s, so the slow connections meet the header timeout.
    while attack_started.elapsed() < Duration::from_secs(20) {
        rss_peak_attack = rss_peak_attack.max(memory_kib(pid).0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let attack_time = attack_started.elapsed();
    let (rss_attack, _) = memory_kib(pid);
    rss_peak_attack = rss_peak_attack.max(rss_attack);
    // A new session still opens during the attack.
    let fresh = server.session().await.map(|_| "yes").unwrap_or("NO");
    attacking.store(false, Ordering::Relaxed);
    for attacker in attackers {
        attacker.abort();
    }
    let (rss_after, rss_hwm) = memory_kib(pid);

    // Log bytes for 10,000 refused requests. First let the flood's counted refusals be written
    // (one summary per 10 s), then count from a quiet start to the server's exit.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = server.log_bytes.load(Ordering::Relaxed);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let refusals: Vec<u16> = futures::stream::iter(0..10_000)
        .map(|i| {
            let request = refused(&http, &server.url, i, &long_host);
            async move {
                request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let refusing = started.elapsed();
    let refused_ok = refusals.iter().filter(|s| matches!(s, 401 | 403)).count();
    session.close().await;
    let HttpServer {
        child,
        log_bytes,
        log_reader,
        ..
    } = server;
    // SIGTERM: the server writes its last counts and exits; its stderr ends.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(60), log_reader).await;
    drop(child);
    let log = log_bytes.load(Ordering::Relaxed) - before;

    let quiet = stats(quiet);
    println!();
    println!(
        "under attack: {slow} slow connections (a header line every 2 s, reopened when closed) and {rate} unauthenticated requests/s; one legitimate session, {calls} sequential get_order calls per phase; --max-connections 512 (default)"
    );
    println!();
    println!("| phase | calls | errors | p50 | p99 | max | server RSS |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| quiet | {calls} | 0 | {} | {} | {} | {:.1} MB |",
        us(quiet.p50),
        us(quiet.p99),
        us(quiet.max),
        mb(rss_quiet)
    );
    if attacked.is_empty() {
        println!(
            "| under attack | {calls} | {errors} | | | | {:.1} MB |",
            mb(rss_attack)
        );
    } else {
        let attacked = stats(attacked);
        println!(
            "| under attack | {calls} | {errors} | {} | {} | {} | {:.1} MB (peak {:.1} MB) |",
            us(attacked.p50),
            us(attacked.p99),
            us(attacked.max),
            mb(rss_attack),
            mb(rss_peak_attack)
        );
    }
    println!();
    println!(
        "attack ran {:.0} s: slow connections opened {}, closed by the server {}; flood answers {:?}; a new session opened during the attack: {fresh}; RSS after {:.1} MB, peak (VmHWM) {:.1} MB",
        attack_time.as_secs_f64(),
        slow_opened.load(Ordering::Relaxed),
        slow_closed.load(Ordering::Relaxed),
        flood_statuses.lock().unwrap(),
        mb(rss_after),
        mb(rss_hwm)
    );
    println!(
        "log: {log} bytes on stderr for 10,000 refused requests ({refused_ok} answered 401/403, in {:.1} s; a quarter with a {}-byte Host)",
        refusing.as_secs_f64(),
        long_host.len()
    );
}
