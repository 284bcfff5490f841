//! What many calls cost 1NCE: a thousand sequential tool calls through one stdio session, every
//! one successful, make one request per read and none for a preview, on a single access token,
//! with the catalogue read once. (Behaviour, not speed: throughput and memory over a long session
//! are `cargo bench --bench mcp`'s, see BENCHMARKS.md.)

use onence_mcp::sandbox::Sandbox;
use serde_json::json;

use crate::common::spawn_against;

const CALLS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_calls_succeed_on_one_token() {
    let sandbox = Sandbox::start().await.unwrap();
    // The rate limit is a separate concern (tests/faults.rs); here it would only add waiting.
    let server = spawn_against(&sandbox, &["--rate-limit", "off"]).await;
    let numbers: Vec<u64> = server.ok("list_orders", json!({"page_size": 10})).await["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_number"].as_u64().unwrap())
        .collect();
    let mut upstream_calls = 1;
    for i in 1..CALLS {
        match i % 3 {
            0 => {
                let page = 1 + (i / 3) % 3;
                let out = server
                    .ok("list_orders", json!({"page": page, "page_size": 10}))
                    .await;
                assert_eq!(out["page"], page);
                upstream_calls += 1;
            }
            1 => {
                let number = numbers[i % numbers.len()];
                let order = server
                    .ok("get_order", json!({"order_number": number}))
                    .await;
                assert_eq!(order["order_number"], number);
                upstream_calls += 1;
            }
            _ => {
                // A preview: checked against the product catalogue, read once and cached.
                let preview = server
                    .ok(
                        "create_order",
                        json!({"products": [{"product_id": 1001, "quantity": 1 + i % 50}]}),
                    )
                    .await;
                assert_eq!(preview["status"], "confirmation_required");
            }
        }
    }
    assert_eq!(
        sandbox.count("POST", "/oauth/token"),
        1,
        "one token for all"
    );
    let api = sandbox
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .count();
    assert_eq!(
        sandbox.count("GET", "/v1/products"),
        1,
        "the catalogue is read once"
    );
    assert_eq!(
        api,
        upstream_calls + 1,
        "one request per read and one catalogue read, none repeated"
    );
    assert_eq!(sandbox.count("POST", "/v1/orders"), 0);
    server.stop().await;
}
