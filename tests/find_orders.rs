//! `find_orders` over stdio: newest first, filters, early stops, and progress notifications to
//! a client that asked for them.

use std::sync::Arc;

use onence_mcp::sandbox::Sandbox;
use rmcp::model::{CallToolRequestParams, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::common;
use crate::common::{PATIENCE, Server, command, sandbox_env, text};

async fn server(sandbox: &Sandbox) -> Server {
    common::spawn_against(sandbox, &[]).await
}

fn page_requests(sandbox: &Sandbox) -> usize {
    sandbox.count("GET", "/v1/orders")
}

#[tokio::test]
async fn newest_first_and_stops_as_soon_as_it_can() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = server(&sandbox).await;
    let all = sandbox.orders();
    let newest: Vec<&Value> = all
        .iter()
        .rev()
        .take(4)
        .map(|o| &o["order_number"])
        .collect();

    let out = server.ok("find_orders", json!({"limit": 4})).await;
    let numbers: Vec<&Value> = out["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["order_number"])
        .collect();
    assert_eq!(numbers, newest);
    assert_eq!(out["complete"], false);
    assert_eq!(
        out["pages_read"], 2,
        "page 1 for the count, then the last page"
    );
    assert_eq!(page_requests(&sandbox), 2);
    let query = sandbox.requests().last().unwrap().query.clone().unwrap();
    assert!(
        query.contains("sort=order_date") && query.contains("page=3"),
        "{query}"
    );

    // A status search reads the whole list.
    let cancelled = server
        .ok("find_orders", json!({"status": "cancelled"}))
        .await;
    assert_eq!(cancelled["complete"], true);
    assert_eq!(cancelled["pages_read"], 3);
    let expected: Vec<&Value> = all
        .iter()
        .rev()
        .filter(|o| o["order_status"] == "CANCELLED")
        .map(|o| &o["order_number"])
        .collect();
    let got: Vec<&Value> = cancelled["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["order_number"])
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    server.stop().await;
}

fn numbers(out: &Value) -> Vec<Value> {
    out["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_number"].clone())
        .collect()
}

#[tokio::test]
async fn without_page_counts_it_reads_forward_to_the_end_and_still_finds_the_newest() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = server(&sandbox).await;
    let with_totals = server.ok("find_orders", json!({"limit": 4})).await;
    let recent = server
        .ok("find_orders", json!({"placed_from": "2025-01-01"}))
        .await;
    sandbox.clear_requests();

    sandbox.set_list_totals(false);
    let out = server.ok("find_orders", json!({"limit": 4})).await;
    // Page 1 holds the oldest orders: only the whole list (3 pages, the last one short) says
    // which are the newest, so nothing stops the walk early.
    assert_eq!(numbers(&out), numbers(&with_totals));
    assert_eq!(out["complete"], true);
    assert_eq!(out["pages_read"], 3);
    assert!(out.get("total_count").is_none(), "{out}");
    assert_eq!(page_requests(&sandbox), 3);

    // A date filter cannot stop it early either.
    let forward = server
        .ok("find_orders", json!({"placed_from": "2025-01-01"}))
        .await;
    assert_eq!(numbers(&forward), numbers(&recent));
    assert_eq!(forward["complete"], true);
    server.stop().await;
}

#[tokio::test]
async fn finds_the_order_of_a_sim_and_by_date_range() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = server(&sandbox).await;
    let first = server
        .ok("get_order", json!({"order_number": 2000000001u64}))
        .await;
    let iccid = first["sims"][0]["iccid"].as_str().unwrap();
    let found = server
        .ok("find_orders", json!({"iccid": iccid, "detail": "full"}))
        .await;
    // The order that shipped the SIM, and any later order that topped it up.
    let orders = found["orders"].as_array().unwrap();
    assert_eq!(orders.last().unwrap()["order_number"], 2000000001u64);
    assert!(orders.iter().all(|o| {
        o["sims"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["iccid"] == iccid)
    }));

    // From the date of the 21st order on: the walk stops once a page starts before that date.
    let all = sandbox.orders();
    let from = &all[20]["order_date"].as_str().unwrap()[..10];
    sandbox.clear_requests();
    let recent = server.ok("find_orders", json!({"placed_from": from})).await;
    assert_eq!(recent["orders"].as_array().unwrap().len(), 5);
    assert_eq!(recent["complete"], true);
    assert_eq!(page_requests(&sandbox), 3, "page 1, then pages 3 and 2");

    let text = server
        .err("find_orders", json!({"placed_until": "31.12.2025"}))
        .await;
    assert!(text.contains("like 2026-01-31"), "{text}");
    server.stop().await;
}

/// A client that records the progress notifications it receives, and tells whoever watches.
#[derive(Clone)]
struct ProgressRecorder(Arc<watch::Sender<Vec<ProgressNotificationParam>>>);

impl Default for ProgressRecorder {
    fn default() -> Self {
        ProgressRecorder(Arc::new(watch::channel(Vec::new()).0))
    }
}

impl ClientHandler for ProgressRecorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.send_modify(|seen| seen.push(params));
    }
}

#[tokio::test]
async fn reports_progress_page_by_page_when_asked() {
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    // Its stderr captured, not inherited: the ready line would land in cargo test's output.
    let (transport, _stderr) = common::child(&[], &sandbox_env(&url));
    let recorder = ProgressRecorder::default();
    let client: RunningService<RoleClient, ProgressRecorder> =
        recorder.clone().serve(transport).await.unwrap();
    // rmcp's client puts a progress token on every request.
    let params = CallToolRequestParams::new("find_orders")
        .with_arguments(json!({"status": "COMPLETED"}).as_object().unwrap().clone());
    let result = client.call_tool(params).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    // Notifications may trail the result: wait for the third.
    let mut updates = recorder.0.subscribe();
    let seen = tokio::time::timeout(PATIENCE, updates.wait_for(|seen| seen.len() >= 3))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "three progress notifications within {PATIENCE:?}, got {:?}",
                *recorder.0.borrow()
            )
        })
        .expect("the recorder lives as long as the client")
        .clone();
    assert_eq!(seen.len(), 3, "one notification per page: {seen:?}");
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(p.progress_token, seen[0].progress_token);
        assert_eq!(p.progress, (i + 1) as f64);
        assert_eq!(p.total, Some(3.0));
        assert!(p.message.as_deref().unwrap().starts_with("read page"));
    }
    let _ = client.cancel().await;
}

/// A client that sends no progress token gets no progress notifications: raw JSON-RPC lines,
/// since rmcp's client always sends a token.
#[tokio::test]
async fn no_progress_token_no_notifications() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let mut child = command(&[], &sandbox_env(&url))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"find_orders","arguments":{"status":"COMPLETED"}}}),
    ] {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut before_result = Vec::new();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let message: Value = serde_json::from_str(&line).unwrap();
        if message["id"] == 2 {
            assert_eq!(message["result"]["structuredContent"]["complete"], true);
            break;
        }
        before_result.push(message);
    }
    assert!(
        before_result
            .iter()
            .all(|m| m["method"] != "notifications/progress"),
        "{before_result:?}"
    );
}
