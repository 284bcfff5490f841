//! End to end over stdio: rmcp's client spawns the built binary, which talks over real HTTP to a
//! sandbox started by the test (as it would to 1NCE), so every request it makes can be checked.

use std::collections::BTreeSet;
use std::time::Duration;

use onence_mcp::sandbox::{CreateResponse, Fault, Sandbox};
use serde_json::{Value, json};

use crate::common;
use crate::common::{api_requests, confirming, posts, spawn, spawn_against, with_token};

async fn sandbox() -> Sandbox {
    Sandbox::start().await.expect("start the sandbox")
}

#[tokio::test]
async fn lists_exactly_the_four_tools_with_annotations_and_object_output_schemas() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &[]).await;
    let tools = server.client.list_all_tools().await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "create_order",
            "find_orders",
            "get_order",
            "list_orders",
            "list_products"
        ])
    );
    for tool in &tools {
        let a = tool.annotations.as_ref().expect("annotations");
        let hints = (
            a.read_only_hint,
            a.destructive_hint,
            a.idempotent_hint,
            a.open_world_hint,
        );
        let expected = if tool.name == "create_order" {
            (Some(false), Some(true), Some(false), Some(true))
        } else {
            (Some(true), Some(false), Some(true), Some(true))
        };
        assert_eq!(hints, expected, "{}", tool.name);
        assert!(tool.title.is_some(), "{} has no title", tool.name);
        let output = tool.output_schema.as_ref().expect("output schema");
        assert_eq!(output.get("type"), Some(&json!("object")), "{}", tool.name);
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
    }
    let info = server.client.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().unwrap().name, "onence-mcp");
    assert!(
        info.instructions
            .as_deref()
            .unwrap()
            .contains("explicitly approves")
    );
    server.stop().await;
}

#[tokio::test]
async fn walks_every_page_and_the_totals_add_up() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &[]).await;
    let expected = sandbox.orders().len();
    let mut seen = BTreeSet::new();
    let mut page = 1;
    loop {
        let out = server
            .ok("list_orders", json!({"page": page, "page_size": 10}))
            .await;
        assert_eq!(out["page"], page);
        assert_eq!(out["total_count"], expected);
        assert_eq!(out["total_pages"], expected.div_ceil(10));
        for order in out["orders"].as_array().unwrap() {
            assert!(seen.insert(order["order_number"].as_u64().unwrap()));
        }
        if !out["has_more"].as_bool().unwrap() {
            break;
        }
        page += 1;
    }
    assert_eq!(page, 3, "25 seeded orders make three pages of 10");
    assert_eq!(seen.len(), expected);
    // Sorted by number by default; the query went out with 1NCE's own parameter names.
    let first = sandbox
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/orders")
        .unwrap();
    assert_eq!(first.query.as_deref(), Some("page=1&pageSize=10"));
    server.stop().await;
}

#[tokio::test]
async fn fetches_an_order_seen_in_the_list_and_explains_a_missing_one() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &[]).await;
    let list = server
        .ok(
            "list_orders",
            json!({"page": 2, "page_size": 5, "sort": "order_status,order_date", "detail": "full"}),
        )
        .await;
    let listed = &list["orders"][3];
    let number = listed["order_number"].as_u64().unwrap();
    let order = server
        .ok("get_order", json!({"order_number": number}))
        .await;
    assert_eq!(&order, listed);
    assert!(order["sims"][0]["iccid"].is_string() || order["sims"].as_array().unwrap().is_empty());
    let text = server.err("get_order", json!({"order_number": 1234})).await;
    assert!(
        text.contains("No order 1234 exists in this 1NCE account"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_any_request() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &[]).await;
    let cases = [
        (
            "list_orders",
            json!({"page": 0}),
            "page must be an integer from 1",
        ),
        (
            "list_orders",
            json!({"page_size": 11}),
            "page_size must be an integer from 1 to 10",
        ),
        (
            "list_orders",
            json!({"sort": "price"}),
            "order_number, order_status and order_date",
        ),
        ("list_orders", json!({"pageSize": 5}), "unknown field"),
        ("get_order", json!({"order_number": 0}), "positive integer"),
        ("get_order", json!({}), "missing field `order_number`"),
        ("create_order", json!({"products": []}), "at least one"),
        (
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 0}]}),
            "quantity must be an integer from 1",
        ),
        (
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 1}],
            "delivery_address": {"salutation": "3"}}),
            "\"1\" (Mr) or \"2\" (Ms)",
        ),
        (
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 1}],
            "delivery_address": {"country": "Germany"}}),
            "two-letter",
        ),
        (
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 1}],
            "delivery_address": {"country": "DE"}}),
            "delivery_address cannot ship: it has no recipient (first_name and last_name, or company), street, zip (postcode) and city",
        ),
        (
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 1}],
            "delivery_address": {"first_name": "Erika", "last_name": "Muster",
                                 "street": "Ring 1", "city": "Köln", "country": "DE"}}),
            "it has no zip (postcode)",
        ),
    ];
    for (tool, args, needle) in cases {
        let text = server.err(tool, args.clone()).await;
        assert!(text.contains(needle), "{tool} {args}: {text}");
    }
    assert!(
        sandbox.requests().is_empty(),
        "invalid input reached 1NCE: {:?}",
        sandbox.requests()
    );
    server.stop().await;
}

fn order_args() -> Value {
    json!({
        "products": [{"product_id": 1001, "quantity": 5}, {"product_id": 1003, "quantity": 20}],
        "customer_reference": "fleet-42"
    })
}

#[tokio::test]
async fn preview_then_confirm_places_exactly_one_order() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &[]).await;
    let before = sandbox.orders().len();

    let preview = server.ok("create_order", order_args()).await;
    assert_eq!(preview["status"], "confirmation_required");
    assert_eq!(
        preview["preview"]["products"][1],
        json!({"product_id": 1003, "name": "1NCE IoT Chip SIM - MFF2", "quantity": 20,
               "one_time_net": [{"amount": "240.00", "currency": "EUR"}],
               "recurring_net_per_unit": []})
    );
    assert_eq!(
        preview["preview"]["one_time_net_total"],
        json!([{"amount": "290.00", "currency": "EUR"}])
    );
    assert_eq!(
        preview["preview"]["ships_to"],
        "the account's default address"
    );
    assert_eq!(preview["preview"]["customer_reference"], "fleet-42");
    assert!(preview["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        preview["confirmation_token"]
            .as_str()
            .unwrap()
            .starts_with("ct_")
    );
    assert_eq!(posts(&sandbox), 0, "a preview posts nothing");

    let confirm = confirming(&order_args(), &preview);
    let placed = server.ok("create_order", confirm.clone()).await;
    assert_eq!(placed["status"], "placed");
    let number = placed["order_number"]
        .as_u64()
        .expect("order number from Location");
    assert_eq!(placed["order"]["order_number"], number);
    assert_eq!(posts(&sandbox), 1);
    assert_eq!(sandbox.orders().len(), before + 1);

    // The wire body uses 1NCE's own names.
    let post = sandbox
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/v1/orders")
        .unwrap();
    let body: Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(
        body,
        json!({"products": [{"productId": 1001, "quantity": 5}, {"productId": 1003, "quantity": 20}],
               "customer_reference": "fleet-42"})
    );

    let fetched = server
        .ok("get_order", json!({"order_number": number}))
        .await;
    assert_eq!(
        fetched["products"][0],
        json!({"product_id": 1001, "quantity": 5})
    );

    // Single use: a second confirmation names the order already placed and posts nothing.
    let text = server.err("create_order", confirm).await;
    assert!(text.contains(&format!("placed order {number}")), "{text}");
    assert_eq!(posts(&sandbox), 1);
    server.stop().await;
}

#[tokio::test]
async fn wrong_mismatched_and_expired_tokens_post_nothing() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &["--confirmation-ttl", "1s"]).await;

    let text = server
        .err(
            "create_order",
            with_token(order_args(), &json!("ct_00000000000000000000000000000000")),
        )
        .await;
    assert!(text.contains("is not valid"), "{text}");

    let preview = server.ok("create_order", order_args()).await;
    let mut changed = order_args();
    changed["products"][0]["quantity"] = json!(50);
    let text = server
        .err("create_order", confirming(&changed, &preview))
        .await;
    assert!(
        text.contains(
            "differs from the preview this confirmation_token approved (the quantities changed)"
        ),
        "{text}"
    );
    let mut readdressed = order_args();
    readdressed["delivery_address"] = json!({"company": "ACME", "street": "Unter den Linden 1",
        "zip": "10117", "city": "Berlin", "country": "DE"});
    let text = server
        .err("create_order", confirming(&readdressed, &preview))
        .await;
    assert!(
        text.contains("differs from the preview this confirmation_token approved (the delivery address changed)"),
        "{text}"
    );

    // Not waiting for a signal: outliving the token's 1 s lifetime is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = server
        .err("create_order", confirming(&order_args(), &preview))
        .await;
    assert!(text.contains("expired at"), "{text}");
    assert_eq!(posts(&sandbox), 0);
    server.stop().await;
}

#[tokio::test]
async fn delivery_address_and_a_200_answer_with_the_order() {
    let sandbox = sandbox().await;
    sandbox.set_create_response(CreateResponse::Ok200WithOrder);
    let server = spawn_against(&sandbox, &[]).await;
    let args = json!({
        "products": [{"product_id": 1002, "quantity": 2}],
        "delivery_address": {"salutation": "2", "first_name": "Erika", "last_name": "Mustermann",
            "company": "Acme IoT GmbH", "street": "Hauptstraße", "house_number": "5",
            "zip": "50667", "city": "Köln", "country": "de"}
    });
    let preview = server.ok("create_order", args.clone()).await;
    assert_eq!(
        preview["preview"]["ships_to"],
        "Erika Mustermann, Acme IoT GmbH, Hauptstraße 5, 50667 Köln, DE"
    );
    let placed = server.ok("create_order", confirming(&args, &preview)).await;
    assert_eq!(placed["status"], "placed");
    let number = placed["order_number"]
        .as_u64()
        .expect("order number from the 200 body");
    assert_eq!(placed["order"]["shipping_address"]["city"], "Köln");
    let post = sandbox
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/v1/orders")
        .unwrap();
    let body: Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(body["delivery_address"]["country"], "DE");
    assert_eq!(body["delivery_address"]["salutation"], "2");
    assert!(sandbox.orders().iter().any(|o| o["order_number"] == number));
    server.stop().await;
}

#[tokio::test]
async fn upstream_errors_become_actionable_tool_errors_and_the_server_keeps_serving() {
    let sandbox = sandbox().await;
    // Without retries, each error reaches the agent as is (tests/faults.rs covers retrying).
    let server = spawn_against(&sandbox, &["--max-retries", "0"]).await;
    let cases = [
        (
            Fault::status("GET", "/v1/orders", 429).with_header("Retry-After", "30"),
            "try again in 30 s",
        ),
        (Fault::status("GET", "/v1/orders", 403), "403 Forbidden"),
        (Fault::status("GET", "/v1/orders", 503), "HTTP 503"),
        (
            Fault::status("GET", "/v1/orders", 400).with_body(
                r#"{"statusCode":400,"errorCode":"BadRequest","message":"page out of range"}"#,
            ),
            "page out of range",
        ),
    ];
    for (fault, needle) in cases {
        sandbox.inject(fault);
        let text = server.err("list_orders", json!({})).await;
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // Still serving, with the same token throughout.
    server.ok("list_orders", json!({})).await;
    assert_eq!(sandbox.count("POST", "/oauth/token"), 1);
    server.stop().await;
}

#[tokio::test]
async fn rejected_orders_keep_the_token_and_lost_answers_lock_it() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &[]).await;

    // 1NCE refuses the order: nothing was created, so the approved token may be used again.
    let preview = server.ok("create_order", order_args()).await;
    let confirm = confirming(&order_args(), &preview);
    sandbox.inject(Fault::status("POST", "/v1/orders", 400).with_body(
        r#"{"statusCode":400,"errorCode":"BadRequest","message":"delivery address required"}"#,
    ));
    let text = server.err("create_order", confirm.clone()).await;
    assert!(text.contains("delivery address required"), "{text}");
    assert!(text.contains("Nothing was ordered"), "{text}");
    let placed = server.ok("create_order", confirm).await;
    assert_eq!(placed["status"], "placed");
    assert_eq!(posts(&sandbox), 2);

    // The answer to a POST is lost: the outcome is unknown and the token never posts again.
    let preview = server.ok("create_order", order_args()).await;
    let confirm = confirming(&order_args(), &preview);
    sandbox.inject(Fault::status("POST", "/v1/orders", 502));
    let text = server.err("create_order", confirm.clone()).await;
    assert!(
        text.contains("OUTCOME UNKNOWN: do not order again"),
        "{text}"
    );
    let text = server.err("create_order", confirm).await;
    assert!(text.contains("Do not order again"), "{text}");
    assert_eq!(posts(&sandbox), 3);
    assert!(api_requests(&sandbox) >= 3);
    server.stop().await;
}

#[tokio::test]
async fn sandbox_flag_serves_the_built_in_simulation_without_credentials() {
    let server = spawn(&["--sandbox"], &[]).await;
    let out = server.ok("list_orders", json!({"page_size": 3})).await;
    assert_eq!(out["orders"].as_array().unwrap().len(), 3);
    server
        .place_order(&json!({"products": [{"product_id": 1001, "quantity": 1}]}))
        .await;
    let info = server.client.peer_info().unwrap();
    assert!(info.instructions.as_deref().unwrap().contains("sandbox"));
    let stderr = server.stop().await;
    let ready: Vec<&str> = stderr.lines().filter(|l| l.contains("ready")).collect();
    assert_eq!(ready.len(), 1, "{stderr}");
    assert!(
        ready[0].contains("SANDBOX") && ready[0].contains("simulated"),
        "{stderr}"
    );
}

#[tokio::test]
async fn missing_credentials_exit_non_zero_naming_the_variables() {
    let output = common::command(&[], &[])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in ["ONCE_CLIENT_ID", "ONCE_CLIENT_SECRET", "--sandbox"] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
}

#[tokio::test]
async fn a_preview_survives_a_server_restart() {
    let sandbox = sandbox().await;
    let state = common::temp_dir("state");
    let url = sandbox.base_url();
    let mut env = common::sandbox_env(&url).to_vec();
    env.push(("ONCE_STATE_DIR", state.to_str().unwrap()));
    let first = spawn(&[], &env).await;
    let preview = first.ok("create_order", order_args()).await;
    first.stop().await;

    let second = spawn(&[], &env).await;
    let confirm = confirming(&order_args(), &preview);
    let placed = second.ok("create_order", confirm.clone()).await;
    assert_eq!(placed["status"], "placed");
    let text = second.err("create_order", confirm).await;
    assert!(text.contains("already used"), "{text}");
    assert_eq!(posts(&sandbox), 1);
    second.stop().await;
}

#[tokio::test]
async fn integers_sent_as_strings_are_accepted() {
    // Some clients (the MCP Inspector's CLI among them) send typed-in numbers as strings.
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &[]).await;
    let out = server
        .ok("list_orders", json!({"page": "2", "page_size": "3"}))
        .await;
    assert_eq!(
        (
            out["page"].as_u64(),
            out["orders"].as_array().unwrap().len()
        ),
        (Some(2), 3)
    );
    let order = server
        .ok("get_order", json!({"order_number": "2000000002"}))
        .await;
    assert_eq!(order["order_number"], 2000000002u64);
    let text = server
        .err("get_order", json!({"order_number": "two"}))
        .await;
    assert!(text.contains("expected an integer"), "{text}");
    server.stop().await;
}
