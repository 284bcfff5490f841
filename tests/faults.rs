//! One fault at a time, injected into the sandbox and observed through an MCP client talking to
//! the built binary over stdio: each ends in a successful retry or the right tool error, the
//! server keeps serving afterwards, and the sandbox's record shows an order was never posted twice.
//!
//! Backoffs are 1 ms so the suite is quick on a loaded machine; nothing here asserts on time.

use std::time::Duration;

use onence_mcp::sandbox::{Fault, Sandbox};
use serde_json::{Value, json};

use crate::common::{Server, confirming, posts, sandbox_env, spawn, spawn_against, text};

/// Fast retries, no client-side rate limit (tested on its own below).
const FAST: &[&str] = &["--retry-backoff", "1ms", "--rate-limit", "off"];

async fn setup(extra: &[&str]) -> (Sandbox, Server) {
    let sandbox = Sandbox::start().await.expect("start the sandbox");
    let args: Vec<&str> = FAST.iter().chain(extra).copied().collect();
    let server = spawn_against(&sandbox, &args).await;
    (sandbox, server)
}

fn list_gets(sandbox: &Sandbox) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v1/orders")
        .count()
}

/// Calls `list_orders` expecting success; returns the result's text (summary plus any note).
async fn list_ok(server: &Server) -> String {
    let result = server.call("list_orders", json!({"page_size": 2})).await;
    let shown = text(&result);
    assert_ne!(result.is_error, Some(true), "list_orders failed: {shown}");
    assert_eq!(
        result.structured_content.as_ref().unwrap()["orders"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    shown
}

/// The server still answers a normal call, without waiting.
async fn still_serving(server: &Server) {
    let shown = list_ok(server).await;
    assert!(!shown.contains("Note:"), "{shown}");
}

fn order_args() -> Value {
    json!({"products": [{"product_id": 1001, "quantity": 3}], "customer_reference": "faults"})
}

/// Previews an order and returns the confirming arguments.
async fn approved(server: &Server) -> Value {
    let preview = server.ok("create_order", order_args()).await;
    confirming(&order_args(), &preview)
}

#[tokio::test]
async fn reads_are_retried_after_429_502_503_and_504_and_the_agent_is_told() {
    let (sandbox, server) = setup(&[]).await;
    for status in [429, 502, 503, 504] {
        let before = list_gets(&sandbox);
        sandbox.inject(Fault::status("GET", "/v1/orders", status).times(2));
        let shown = list_ok(&server).await;
        assert_eq!(
            list_gets(&sandbox),
            before + 3,
            "{status}: two failures, one success"
        );
        assert!(
            shown.contains("repeated a request to 1NCE 2 time(s)"),
            "{status}: {shown}"
        );
        let cause = if status == 429 {
            "1NCE answered 429 Too Many Requests".to_owned()
        } else {
            format!("1NCE answered {status}")
        };
        assert!(shown.contains(&cause), "{status}: {shown}");
    }
    // A 500 is not a gateway hiccup: reported at once.
    sandbox.inject(Fault::status("GET", "/v1/orders", 500));
    let before = list_gets(&sandbox);
    let err = server.err("list_orders", json!({})).await;
    assert!(err.contains("HTTP 500"), "{err}");
    assert_eq!(list_gets(&sandbox), before + 1);
    still_serving(&server).await;
    assert_eq!(sandbox.count("POST", "/oauth/token"), 1);
    server.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_one_beyond_the_budget_is_passed_on() {
    let (sandbox, server) = setup(&["--retry-budget", "10s"]).await;
    sandbox.inject(Fault::status("GET", "/v1/orders/", 429).with_header("Retry-After", "1"));
    let result = server
        .call("get_order", json!({"order_number": 2000000001}))
        .await;
    let shown = text(&result);
    assert_ne!(result.is_error, Some(true), "{shown}");
    assert!(shown.contains("(retried after 1.0 s)"), "{shown}");
    assert_eq!(sandbox.count("GET", "/v1/orders/"), 2);

    // Waiting two minutes would exceed the 10 s budget: the agent hears when to come back.
    let before = list_gets(&sandbox);
    sandbox.inject(Fault::status("GET", "/v1/orders", 429).with_header("Retry-After", "120"));
    let err = server.err("list_orders", json!({})).await;
    assert!(err.contains("try again in 120 s"), "{err}");
    assert_eq!(list_gets(&sandbox), before + 1, "not retried");
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn persistent_failures_end_in_an_error_that_says_when_to_try_again() {
    let (sandbox, server) = setup(&["--max-retries", "3"]).await;
    sandbox.inject(Fault::status("GET", "/v1/orders", 503).times(4));
    let err = server.err("list_orders", json!({})).await;
    assert!(err.contains("after 4 attempts"), "{err}");
    assert!(err.contains("last: 1NCE answered 503"), "{err}");
    assert!(err.contains("try again in 10 s"), "{err}");
    assert!(
        err.contains("repeated a request to 1NCE 3 time(s)"),
        "{err}"
    );
    assert_eq!(list_gets(&sandbox), 4);
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_1nce_is_retried_then_reported() {
    // A port that was listening a moment ago and is now closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut args = FAST.to_vec();
    args.extend(["--max-retries", "2"]);
    let server = spawn(&args, &sandbox_env(&url)).await;
    let err = server.err("list_orders", json!({})).await;
    assert!(err.contains("after 3 attempts"), "{err}");
    assert!(err.contains("could not connect"), "{err}");
    // Even a preview needs 1NCE (its product catalogue): it fails saying nothing was ordered.
    let err = server.err("create_order", order_args()).await;
    assert!(err.contains("product catalogue"), "{err}");
    assert!(err.contains("Nothing was ordered"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn dropped_connections_and_truncated_answers_to_reads_are_retried() {
    let (sandbox, server) = setup(&[]).await;
    sandbox.inject(Fault::drop_connection("GET", "/v1/orders"));
    let shown = list_ok(&server).await;
    assert!(
        shown.contains("repeated a request to 1NCE 1 time(s)"),
        "{shown}"
    );
    assert_eq!(list_gets(&sandbox), 2);

    sandbox.inject(Fault::truncated(
        "GET",
        "/v1/orders",
        r#"[{"order_number":2000000001,"order_status":"COMPLETED","products":[]}]"#,
    ));
    let shown = list_ok(&server).await;
    assert!(
        shown.contains("the connection broke while reading"),
        "{shown}"
    );
    assert_eq!(list_gets(&sandbox), 4);
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_slow_read_times_out_and_is_retried() {
    let (sandbox, server) = setup(&["--request-timeout", "300ms"]).await;
    sandbox.inject(Fault::delay("GET", "/v1/orders", Duration::from_secs(3)));
    let shown = list_ok(&server).await;
    assert!(shown.contains("no answer within 0.3 s"), "{shown}");
    assert_eq!(list_gets(&sandbox), 2);
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_is_reported_not_retried() {
    let (sandbox, server) = setup(&[]).await;
    sandbox.inject(Fault::malformed_json("GET", "/v1/orders"));
    let err = server.err("list_orders", json!({})).await;
    assert!(err.contains("not the documented JSON"), "{err}");
    assert_eq!(list_gets(&sandbox), 1);
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn huge_and_endless_answers_are_cut_off_at_the_size_limit() {
    let (sandbox, server) = setup(&[]).await;
    sandbox.inject(Fault::oversized("GET", "/v1/orders", 16 * 1024 * 1024));
    let err = server.err("list_orders", json!({})).await;
    assert!(err.contains("larger than 4 MiB"), "{err}");
    sandbox.inject(Fault::endless("GET", "/v1/orders/"));
    let err = server
        .err("get_order", json!({"order_number": 2000000001}))
        .await;
    assert!(err.contains("larger than 4 MiB"), "{err}");
    // Not retried: a body that is too big will be too big again.
    assert_eq!(list_gets(&sandbox), 1);
    assert_eq!(sandbox.count("GET", "/v1/orders/"), 1);
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_token_expired_early_is_renewed_once_for_reads_and_orders() {
    let (sandbox, server) = setup(&[]).await;
    list_ok(&server).await;
    sandbox.inject(Fault::expire_tokens("GET", "/v1/orders"));
    list_ok(&server).await;
    assert_eq!(sandbox.count("POST", "/oauth/token"), 2);

    let orders_before = sandbox.orders().len();
    let args = approved(&server).await;
    sandbox.inject(Fault::expire_tokens("POST", "/v1/orders"));
    // One approval, one POST: a 401 is reported, never answered by a second POST in the call.
    let refused = server.err("create_order", args.clone()).await;
    assert!(refused.contains("401"), "{refused}");
    assert!(refused.contains("stays valid"), "{refused}");
    assert_eq!(posts(&sandbox), 1);
    assert_eq!(sandbox.orders().len(), orders_before);
    // The 401 proved nothing was created, so the same token confirms it, with a new access token.
    let placed = server.ok("create_order", args).await;
    assert_eq!(placed["status"], "placed");
    assert_eq!(posts(&sandbox), 2);
    assert_eq!(sandbox.orders().len(), orders_before + 1);
    assert_eq!(sandbox.count("POST", "/oauth/token"), 3);
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retried_even_before_an_order_post() {
    let (sandbox, server) = setup(&[]).await;
    sandbox.inject(Fault::status("POST", "/oauth/token", 503));
    let shown = list_ok(&server).await;
    assert!(shown.contains("1NCE answered 503"), "{shown}");
    assert_eq!(sandbox.count("POST", "/oauth/token"), 2);

    // Access tokens that live 20 s from now on: less than the request timeout (30 s) plus a
    // margin, so every order POST first renews its token. The current one is revoked, so the
    // preview's catalogue read gets a short-lived one.
    sandbox.set_token_lifetime(Duration::from_secs(20));
    sandbox.expire_tokens();
    let args = approved(&server).await;
    let tokens_before = sandbox.count("POST", "/oauth/token");
    let orders_before = sandbox.orders().len();
    // The renewal before the POST fails once: nothing has been sent, so it is repeated, and
    // the order goes out once, with a token that outlasts it.
    sandbox.inject(Fault::status("POST", "/oauth/token", 502));
    let placed = server.ok("create_order", args).await;
    assert_eq!(placed["status"], "placed");
    assert_eq!(sandbox.orders().len(), orders_before + 1);
    assert_eq!(posts(&sandbox), 1, "one POST, never a 401");
    assert_eq!(
        sandbox.count("POST", "/oauth/token"),
        tokens_before + 2,
        "renewed before the POST: one 502, one new token"
    );
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn an_order_post_is_never_retried_whatever_goes_wrong() {
    let (sandbox, server) = setup(&["--max-retries", "5", "--request-timeout", "500ms"]).await;
    let faults = [
        (
            Fault::status("POST", "/v1/orders", 429),
            "Nothing was ordered",
        ),
        (
            Fault::status("POST", "/v1/orders", 502),
            "OUTCOME UNKNOWN: do not order again",
        ),
        (
            Fault::status("POST", "/v1/orders", 503),
            "OUTCOME UNKNOWN: do not order again",
        ),
        (
            Fault::status("POST", "/v1/orders", 504),
            "OUTCOME UNKNOWN: do not order again",
        ),
        (
            Fault::drop_connection("POST", "/v1/orders"),
            "OUTCOME UNKNOWN: do not order again",
        ),
        (
            Fault::truncated("POST", "/v1/orders", r#"{"statusCode":500,"message":"x"}"#)
                .with_delay(Duration::ZERO),
            "",
        ),
        (
            Fault::delay("POST", "/v1/orders", Duration::from_secs(2)),
            "OUTCOME UNKNOWN: do not order again",
        ),
    ];
    for (fault, needle) in faults {
        let args = approved(&server).await;
        let before = posts(&sandbox);
        sandbox.inject(fault.clone());
        let result = server.call("create_order", args).await;
        let shown = text(&result);
        assert_eq!(posts(&sandbox), before + 1, "{fault:?}: {shown}");
        assert!(
            !shown.contains("Note:"),
            "{fault:?} waited or repeated: {shown}"
        );
        if !needle.is_empty() {
            assert_eq!(result.is_error, Some(true), "{fault:?}: {shown}");
            assert!(shown.contains(needle), "{fault:?}: {shown}");
        }
    }
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn an_answer_lost_after_the_order_was_created_is_reported_and_never_reposted() {
    let (sandbox, server) = setup(&[]).await;
    for fault in [
        Fault::status("POST", "/v1/orders", 504).after_handling(),
        Fault::drop_connection("POST", "/v1/orders").after_handling(),
    ] {
        let orders_before = sandbox.orders().len();
        let posts_before = posts(&sandbox);
        let args = approved(&server).await;
        sandbox.inject(fault);
        let err = server.err("create_order", args.clone()).await;
        assert!(err.contains("OUTCOME UNKNOWN: do not order again"), "{err}");
        // The lookup finds it (within the same second it may also list the previous one).
        assert!(err.contains("Found"), "the created order is found: {err}");
        assert_eq!(posts(&sandbox), posts_before + 1);
        // 1NCE did create it.
        assert_eq!(sandbox.orders().len(), orders_before + 1);
        // The same approval can never post again.
        let err = server.err("create_order", args).await;
        assert!(err.contains("Do not order again"), "{err}");
        assert_eq!(posts(&sandbox), posts_before + 1);
    }
    // The agent can find the order it was told to look for.
    let newest = server
        .ok("list_orders", json!({"sort": "order_date", "page": 3}))
        .await;
    assert!(
        newest["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["customer_reference"] == "faults"),
        "{newest}"
    );
    still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn the_rate_limiter_spaces_bursts_and_says_when_a_call_waited() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(&sandbox, &["--rate-limit", "1/3s", "--rate-burst", "1"]).await;
    let first = list_ok(&server).await;
    assert!(!first.contains("Note:"), "{first}");
    let second = list_ok(&server).await;
    assert!(
        second.contains("for this server's rate limit"),
        "the second call had to wait: {second}"
    );
    server.stop().await;

    // A slot further away than the retry budget: refused at once, nothing sent.
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(
        &sandbox,
        &[
            "--rate-limit",
            "1/1h",
            "--rate-burst",
            "2",
            "--retry-budget",
            "5s",
        ],
    )
    .await;
    // Two slots: one page of orders, and the catalogue read by the preview.
    list_ok(&server).await;
    let args = approved(&server).await;
    let err = server
        .err("get_order", json!({"order_number": 2000000001}))
        .await;
    assert!(
        err.contains("nothing was sent, try again in 3600 s"),
        "{err}"
    );
    assert_eq!(sandbox.count("GET", "/v1/orders/"), 0);
    // An order is refused the same way (its fresh catalogue read finds no slot), and its
    // approval stays usable.
    let err = server.err("create_order", args).await;
    assert!(err.contains("Nothing was ordered"), "{err}");
    assert!(err.contains("stays valid"), "{err}");
    assert_eq!(posts(&sandbox), 0);
    server.stop().await;
}
