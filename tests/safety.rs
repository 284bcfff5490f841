//! The ordering safety model end to end: rmcp's client → the built binary over stdio → HTTP →
//! a sandbox the test controls. Catalogue checks and prices, operator limits, read-only mode,
//! lost answers, the audit trail, and --require-human-approval with a client that cannot ask.

use std::collections::BTreeSet;
use std::path::Path;

use onence_mcp::sandbox::{Fault, Sandbox};
use serde_json::{Value, json};

use crate::common;
use crate::common::{confirming, posts, spawn_against, temp_dir};

async fn sandbox() -> Sandbox {
    Sandbox::start().await.expect("start the sandbox")
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

#[tokio::test]
async fn list_products_shows_the_catalogue_with_limits_and_prices_and_caches_it() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &["--audit-log", "off"]).await;
    let out = server.ok("list_products", json!({})).await;
    let products = out["products"].as_array().unwrap();
    let ids: Vec<u64> = products.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1001, 1002, 1003, 1004]);
    let mff2 = &products[2];
    assert_eq!(mff2["name"], "1NCE IoT Chip SIM - MFF2");
    assert_eq!(mff2["package_size"], 10);
    assert_eq!(mff2["min_quantity"], 10);
    assert_eq!(mff2["max_quantity"], 1000);
    assert_eq!(
        mff2["one_time_charges"],
        json!([{"name": "provisionCharge", "amount_net": "12.00", "currency": "EUR"}])
    );
    assert_eq!(
        products[3]["recurring_charges"],
        json!([{"name": "autoTopupCharge", "amount_net": "10.00", "currency": "EUR"}])
    );
    assert!(out.get("operator_limits").is_none());

    // A preview and a second listing within a few minutes use the cached catalogue.
    server
        .ok(
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 1}]}),
        )
        .await;
    server.ok("list_products", json!({})).await;
    assert_eq!(sandbox.count("GET", "/v1/products"), 1);
    server.stop().await;
}

#[tokio::test]
async fn previews_are_checked_against_the_catalogue_before_any_token() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &["--audit-log", "off"]).await;
    let cases = [
        (
            json!([{"product_id": 9999, "quantity": 1}]),
            "product 9999 is not in the 1NCE product catalogue (it has 1001, 1002, 1003, 1004); list_products",
        ),
        (
            json!([{"product_id": 1003, "quantity": 5}]),
            "product 1003 (1NCE IoT Chip SIM - MFF2) can be ordered in quantities from 10 to 1000 per order, not 5",
        ),
        (
            json!([{"product_id": 1001, "quantity": 1}, {"product_id": 1004, "quantity": 101}]),
            "product 1004 (1NCE Auto Top-Up - 500 MB / 250 SMS) can be ordered in quantities from 1 to 100 per order, not 101",
        ),
    ];
    for (products, needle) in cases {
        let text = server
            .err("create_order", json!({ "products": products }))
            .await;
        assert!(text.contains(needle), "{needle}: {text}");
        assert!(text.contains("Nothing was ordered"), "{text}");
        assert!(
            !text.contains("ct_"),
            "no token for a refused order: {text}"
        );
    }

    // A valid preview names every line and prices it; the one-time total is exact.
    let preview = server
        .ok(
            "create_order",
            json!({"products": [{"product_id": 1002, "quantity": 3}, {"product_id": 1004, "quantity": 7}]}),
        )
        .await;
    let lines = &preview["preview"]["products"];
    assert_eq!(lines[0]["name"], "1NCE IoT FlexSIM - Industrial");
    assert_eq!(
        lines[0]["one_time_net"],
        json!([{"amount": "45.00", "currency": "EUR"}])
    );
    assert_eq!(
        lines[1]["recurring_net_per_unit"],
        json!([{"amount": "10.00", "currency": "EUR"}])
    );
    assert_eq!(
        preview["preview"]["one_time_net_total"],
        json!([{"amount": "115.00", "currency": "EUR"}])
    );
    assert_eq!(preview["approval"], "confirmation_token");
    assert_eq!(posts(&sandbox), 0);
    server.stop().await;
}

#[tokio::test]
async fn operator_limits_refuse_at_preview_time_naming_the_limit() {
    let sandbox = sandbox().await;
    let server = spawn_against(
        &sandbox,
        &[
            "--audit-log",
            "off",
            "--max-quantity",
            "20",
            "--max-order-value",
            "150 EUR",
            "--allowed-products",
            "1001,1003",
        ],
    )
    .await;
    let cases = [
        (
            json!([{"product_id": 1001, "quantity": 11}, {"product_id": 1003, "quantity": 10}]),
            "21 units in total, above this server's operator limit --max-quantity 20",
        ),
        (
            json!([{"product_id": 1001, "quantity": 16}]),
            "one-time net value is 160.00 EUR, above this server's operator limit --max-order-value 150.00 EUR",
        ),
        (
            json!([{"product_id": 1002, "quantity": 1}]),
            "product 1002 (1NCE IoT FlexSIM - Industrial) is not allowed by this server's operator limit --allowed-products (allowed: 1001, 1003)",
        ),
    ];
    for (products, needle) in cases {
        let text = server
            .err("create_order", json!({ "products": products }))
            .await;
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // Within every limit: previewed and placed.
    let args = json!({"products": [{"product_id": 1001, "quantity": 15}]});
    server.place_order(&args).await;
    assert_eq!(posts(&sandbox), 1);
    let listed = server.ok("list_products", json!({})).await;
    let limits = listed["operator_limits"].as_str().unwrap();
    assert!(limits.contains("at most 20 units per order"), "{limits}");
    let instructions = server.client.peer_info().unwrap().instructions.clone();
    assert!(instructions.unwrap().contains("150.00 EUR"));
    server.stop().await;
}

#[tokio::test]
async fn read_only_mode_does_not_offer_create_order_at_all() {
    let sandbox = sandbox().await;
    let server = spawn_against(&sandbox, &["--read-only"]).await;
    let tools = server.client.list_all_tools().await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["find_orders", "get_order", "list_orders", "list_products"])
    );
    for tool in &tools {
        assert_eq!(
            tool.annotations.as_ref().unwrap().read_only_hint,
            Some(true)
        );
    }
    let instructions = server
        .client
        .peer_info()
        .unwrap()
        .instructions
        .clone()
        .unwrap();
    assert!(instructions.contains("READ-ONLY"), "{instructions}");
    assert!(
        !instructions.contains("confirmation_token"),
        "{instructions}"
    );
    let prompts = server.client.list_all_prompts().await.unwrap();
    assert!(prompts.is_empty(), "no reorder prompt: {prompts:?}");
    // Calling it anyway is refused by the protocol: there is no such tool.
    let call = rmcp::model::CallToolRequestParams::new("create_order").with_arguments(
        json!({"products": [{"product_id": 1001, "quantity": 1}]})
            .as_object()
            .unwrap()
            .clone(),
    );
    let refused = match server.client.call_tool(call).await {
        Err(_) => true,
        Ok(result) => result.is_error == Some(true),
    };
    assert!(refused);
    server.ok("list_products", json!({})).await;
    assert_eq!(posts(&sandbox), 0);
    // The environment twin does the same.
    let url = sandbox.base_url();
    let mut env = common::sandbox_env(&url).to_vec();
    env.push(("ONCE_READ_ONLY", "1"));
    let twin = common::spawn(&[], &env).await;
    let tools = twin.client.list_all_tools().await.unwrap();
    assert!(tools.iter().all(|t| t.name != "create_order"));
    twin.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_lost_answer_is_found_when_1nce_sends_no_page_count() {
    // Without X-Total-Pages the lookup must read forward from the oldest page to the end.
    let sandbox = sandbox().await;
    sandbox.set_list_totals(false);
    let server = spawn_against(&sandbox, &[]).await;
    let args = json!({"products": [{"product_id": 1002, "quantity": 6}]});
    let preview = server.ok("create_order", args.clone()).await;
    sandbox.inject(Fault::status("POST", "/v1/orders", 502).after_handling());
    let before: BTreeSet<u64> = numbers(&sandbox);
    let text = server
        .err("create_order", confirming(&args, &preview))
        .await;
    let created: Vec<u64> = numbers(&sandbox).difference(&before).copied().collect();
    assert_eq!(created.len(), 1, "the sandbox created the order");
    assert!(
        text.contains(&format!("Found it: order {}", created[0])),
        "{text}"
    );
    assert_eq!(posts(&sandbox), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_lost_answer_is_reported_with_the_order_found_and_never_posted_again() {
    let sandbox = sandbox().await;
    let dir = temp_dir("lost");
    let log = dir.join("audit.jsonl");
    let server = spawn_against(&sandbox, &["--audit-log", log.to_str().unwrap()]).await;
    let args = json!({"products": [{"product_id": 1002, "quantity": 4}]});

    // The order is created, then the gateway loses the answer.
    let preview = server.ok("create_order", args.clone()).await;
    let confirm = confirming(&args, &preview);
    sandbox.inject(Fault::status("POST", "/v1/orders", 502).after_handling());
    let before: BTreeSet<u64> = numbers(&sandbox);
    let text = server.err("create_order", confirm.clone()).await;
    let created: Vec<u64> = numbers(&sandbox).difference(&before).copied().collect();
    assert_eq!(created.len(), 1, "the sandbox created the order");
    assert!(
        text.contains("OUTCOME UNKNOWN: do not order again"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Found it: order {}", created[0])),
        "{text}"
    );
    // The token can never drive a second POST.
    let again = server.err("create_order", confirm).await;
    assert!(again.contains("Do not order again"), "{again}");
    assert_eq!(posts(&sandbox), 1);

    // Lost before 1NCE created anything: nothing matching is found, and that is said.
    let args = json!({"products": [{"product_id": 1002, "quantity": 5}]});
    let preview = server.ok("create_order", args.clone()).await;
    sandbox.inject(Fault::status("POST", "/v1/orders", 503));
    let text = server
        .err("create_order", confirming(&args, &preview))
        .await;
    assert!(
        text.contains("OUTCOME UNKNOWN: do not order again"),
        "{text}"
    );
    assert!(
        text.contains("No order with these products and quantities has appeared at 1NCE"),
        "{text}"
    );
    // Never "most likely not placed": 1NCE may still be processing it.
    assert!(text.contains("look again after"), "{text}");
    assert!(!text.contains("not placed"), "{text}");
    assert_eq!(posts(&sandbox), 2);

    let lines = audit_lines(&log);
    let outcomes: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "outcome")
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    // The refused second use of the first token looks for its order again, without a POST.
    assert_eq!(
        outcomes,
        [
            "outcome_unknown",
            "lookup",
            "lookup",
            "outcome_unknown",
            "lookup"
        ]
    );
    let lookup = lines.iter().find(|l| l["outcome"] == "lookup").unwrap();
    assert_eq!(lookup["order_number"], created[0]);
    server.stop().await;
}

fn numbers(sandbox: &Sandbox) -> BTreeSet<u64> {
    sandbox
        .orders()
        .iter()
        .map(|o| o["order_number"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn every_step_is_audited_without_secrets_or_personal_details() {
    let sandbox = sandbox().await;
    let dir = temp_dir("audit");
    let log = dir.join("nested").join("audit.jsonl");
    let server = spawn_against(&sandbox, &["--audit-log", log.to_str().unwrap()]).await;
    let args = json!({
        "products": [{"product_id": 1001, "quantity": 2}],
        "delivery_address": {"salutation": "2", "first_name": "Erika", "last_name": "Mustermann",
            "street": "Hauptstraße", "house_number": "5", "zip": "50667", "city": "Köln",
            "country": "DE", "phone": "+49 221 555"},
        "customer_reference": "fleet-7"
    });
    let preview = server.ok("create_order", args.clone()).await;
    let token = preview["confirmation_token"].as_str().unwrap().to_owned();
    server
        .err(
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 5000}]}),
        )
        .await;
    let placed = server.ok("create_order", confirming(&args, &preview)).await;
    let number = placed["order_number"].as_u64().unwrap();

    let lines = audit_lines(&log);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["preview", "refused", "post", "outcome"]);
    for line in &lines {
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(line["content_hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(lines[0]["ships_to"], "Köln, DE");
    assert_eq!(
        lines[0]["products"],
        json!([{"product_id": 1001, "quantity": 2}])
    );
    assert_eq!(lines[0]["token_id"], lines[3]["token_id"]);
    assert_eq!(lines[0]["content_hash"], lines[2]["content_hash"]);
    assert_eq!(lines[0]["approval"], "confirmation_token");
    assert_eq!(lines[2]["approval"], "confirmation_token");
    assert_eq!(lines[3]["outcome"], "placed");
    assert_eq!(lines[3]["order_number"], number);
    let text = std::fs::read_to_string(&log).unwrap();
    for private in [
        token.as_str(),
        "Erika",
        "Mustermann",
        "Hauptstraße",
        "50667",
        "+49",
        "sandbox-client-secret",
    ] {
        assert!(!text.contains(private), "{private} in the audit log");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the audit log is private to its owner");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unwritable_audit_log_stops_the_order() {
    let sandbox = sandbox().await;
    let dir = temp_dir("unwritable");
    let log = dir.join("audit.jsonl");
    let server = spawn_against(&sandbox, &["--audit-log", log.to_str().unwrap()]).await;
    // A directory where the file should be, put there after start-up (which would refuse it):
    // every append fails.
    std::fs::create_dir(&log).unwrap();
    let args = json!({"products": [{"product_id": 1001, "quantity": 1}]});
    let text = server.err("create_order", args).await;
    assert!(text.contains("places no order it cannot audit"), "{text}");
    assert!(text.contains("Nothing was ordered"), "{text}");
    assert!(!text.contains("ct_"), "no token without a record: {text}");
    assert_eq!(posts(&sandbox), 0);
    // Reading still works.
    server.ok("list_products", json!({})).await;
    server.stop().await;
}

#[tokio::test]
async fn the_audit_log_defaults_to_the_state_directory_and_can_be_turned_off() {
    let sandbox = sandbox().await;
    let args = json!({"products": [{"product_id": 1001, "quantity": 1}]});
    let url = sandbox.base_url();
    let env = common::sandbox_env(&url);
    let state = temp_dir("state-default");
    let mut with_state = env.to_vec();
    with_state.push(("ONCE_STATE_DIR", state.to_str().unwrap()));

    let server = common::spawn(&[], &with_state).await;
    server.ok("create_order", args.clone()).await;
    server.stop().await;
    let lines = audit_lines(&state.join("audit.jsonl"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], "preview");

    // `off` (here through the environment twin) keeps no audit file at all.
    let off_state = temp_dir("state-off");
    let mut off = env.to_vec();
    off.push(("ONCE_STATE_DIR", off_state.to_str().unwrap()));
    off.push(("ONCE_AUDIT_LOG", "off"));
    let server = common::spawn(&[], &off).await;
    server.ok("create_order", args).await;
    server.stop().await;
    assert!(!off_state.join("audit.jsonl").exists());
    assert!(
        std::fs::read_dir(&off_state)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("audit")),
        "no audit file anywhere in the state directory"
    );
}

#[tokio::test]
async fn require_human_approval_refuses_clients_that_cannot_ask() {
    let sandbox = sandbox().await;
    let dir = temp_dir("fail-closed");
    let log = dir.join("audit.jsonl");
    let server = spawn_against(
        &sandbox,
        &[
            "--require-human-approval",
            "--audit-log",
            log.to_str().unwrap(),
        ],
    )
    .await;
    let text = server
        .err(
            "create_order",
            json!({"products": [{"product_id": 1001, "quantity": 1}]}),
        )
        .await;
    assert!(text.contains("--require-human-approval"), "{text}");
    assert!(text.contains("elicitation"), "{text}");
    assert!(text.contains("Nothing was ordered"), "{text}");
    assert_eq!(posts(&sandbox), 0);
    let lines = audit_lines(&log);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], "refused");
    let instructions = server.client.peer_info().unwrap().instructions.clone();
    assert!(instructions.unwrap().contains("approval form"));
    server.stop().await;
}

/// A reverse proxy in front of `sandbox` that passes everything through, except that it
/// forwards an order POST (so 1NCE creates the order) and then never answers it, as a gateway
/// that hangs after the order was placed.
async fn hanging_after_post(sandbox: &Sandbox) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    let upstream = sandbox.base_url();
    common::install_crypto();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let http = http.clone();
            let url = format!(
                "{upstream}{}",
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            async move {
                let mut request = http.request(method.clone(), url).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                let answer = request.send().await.expect("the sandbox answers the proxy");
                if method == Method::POST && uri.path() == "/v1/orders" {
                    std::future::pending::<()>().await;
                }
                let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
                let mut out = HeaderMap::new();
                for (name, value) in answer.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        out.insert(name, value.clone());
                    }
                }
                let body = answer.bytes().await.unwrap();
                (status, out, body).into_response()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test]
async fn a_post_that_times_out_is_outcome_unknown_and_the_order_is_found() {
    let sandbox = sandbox().await;
    let proxy = hanging_after_post(&sandbox).await;
    let log = temp_dir("timeout").join("audit.jsonl");
    let server = common::spawn(
        &[
            "--request-timeout",
            "1s",
            "--audit-log",
            log.to_str().unwrap(),
        ],
        &common::sandbox_env(&proxy),
    )
    .await;
    let args = json!({"products": [{"product_id": 1003, "quantity": 30}]});
    let preview = server.ok("create_order", args.clone()).await;
    let confirm = confirming(&args, &preview);
    let before = numbers(&sandbox);
    let text = server.err("create_order", confirm.clone()).await;
    let created: Vec<u64> = numbers(&sandbox).difference(&before).copied().collect();
    assert_eq!(created.len(), 1);
    assert!(
        text.contains("OUTCOME UNKNOWN: do not order again"),
        "{text}"
    );
    assert!(text.contains("no answer within"), "{text}");
    assert!(
        text.contains(&format!("Found it: order {}", created[0])),
        "{text}"
    );
    let again = server.err("create_order", confirm).await;
    assert!(again.contains("Do not order again"), "{again}");
    assert_eq!(posts(&sandbox), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_rejection_is_audited_without_1nces_message_which_may_quote_the_address() {
    let sandbox = sandbox().await;
    let log = temp_dir("rejected").join("audit.jsonl");
    let server = spawn_against(&sandbox, &["--audit-log", log.to_str().unwrap()]).await;
    let args = json!({"products": [{"product_id": 1001, "quantity": 1}],
                      "delivery_address": {"company": "ACME", "street": "Geheimweg",
                                           "house_number": "7", "zip": "50667",
                                           "city": "Köln", "country": "DE"}});
    let preview = server.ok("create_order", args.clone()).await;
    sandbox.inject(Fault::status("POST", "/v1/orders", 400).with_body(
        r#"{"statusCode":400,"errorCode":"BadRequest","message":"street Geheimweg 7 is not deliverable"}"#,
    ));
    let text = server
        .err("create_order", confirming(&args, &preview))
        .await;
    // The agent is told exactly what 1NCE said; the audit trail keeps only status and code.
    assert!(text.contains("Geheimweg 7 is not deliverable"), "{text}");
    let lines = audit_lines(&log);
    let outcome = lines.iter().find(|l| l["event"] == "outcome").unwrap();
    assert_eq!(outcome["outcome"], "not_placed");
    assert_eq!(
        outcome["detail"],
        "1NCE rejected the order (HTTP 400, BadRequest)"
    );
    assert!(!std::fs::read_to_string(&log).unwrap().contains("Geheimweg"));
    server.stop().await;
}
