//! Logs carry no capabilities and no personal data, at any level a user can enable: the built
//! binary runs a whole order (preview, the person approves in the form, placement) against a
//! sandbox with trace logging on, and its stderr must hold neither the confirmation token nor
//! any field of the delivery address. rmcp logs whole MCP messages below warn; the server caps
//! it, and no RUST_LOG directive may lift the cap.

use onence_mcp::sandbox::Sandbox;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::common::{child, confirming, posts, sandbox_env, text};
use crate::elicitation::{AskingClient, Person};

/// Address values no log line could hold by accident.
const FIRST_NAME: &str = "Quirinaldo";
const LAST_NAME: &str = "Zwetschgenbaumer";
const STREET: &str = "Xylophonstrasse";
const ZIP: &str = "98761";
const PHONE: &str = "+49 555 8642097";

fn order() -> Value {
    json!({
        "products": [{"product_id": 1001, "quantity": 1}],
        "delivery_address": {
            "salutation": "1", "first_name": FIRST_NAME, "last_name": LAST_NAME,
            "street": STREET, "house_number": "7", "zip": ZIP, "city": "Koeln",
            "country": "DE", "phone": PHONE,
        },
    })
}

async fn create_order(
    client: &rmcp::service::RunningService<RoleClient, AskingClient>,
    args: &Value,
) -> CallToolResult {
    let params = CallToolRequestParams::new("create_order")
        .with_arguments(args.as_object().unwrap().clone());
    client
        .call_tool(params)
        .await
        .expect("tools/call at the protocol level")
}

/// Runs preview → approval in the form → placement with `RUST_LOG=rust_log`, stops the server,
/// waits for it to exit and returns the confirmation token and all it wrote to stderr.
async fn place_an_order_logging(rust_log: &str) -> (String, String) {
    let sandbox = Sandbox::start().await.unwrap();
    let url = sandbox.base_url();
    let mut env = sandbox_env(&url).to_vec();
    env.push(("RUST_LOG", rust_log));
    let (transport, stderr) = child(&[], &env);
    let client = AskingClient::new(Person::Approves)
        .serve(transport)
        .await
        .expect("initialize");

    let preview = create_order(&client, &order()).await;
    assert_ne!(preview.is_error, Some(true), "{}", text(&preview));
    let preview = preview.structured_content.unwrap();
    assert_eq!(preview["approval"], "approval_form");
    let token = preview["confirmation_token"].as_str().unwrap().to_owned();
    let placed = create_order(&client, &confirming(&order(), &preview)).await;
    assert_ne!(placed.is_error, Some(true), "{}", text(&placed));
    assert_eq!(placed.structured_content.unwrap()["status"], "placed");
    assert_eq!(posts(&sandbox), 1);

    // The server exits once its client is gone; its stderr is then complete.
    client.cancel().await.unwrap();
    (token, stderr.until_closed().await)
}

/// Asserts that trace logging really was on and that `stderr` holds no part of the token and
/// no address value.
fn assert_private(rust_log: &str, token: &str, stderr: &str) {
    // Our own debug line for the order POST, and trace lines from the HTTP client.
    assert!(
        stderr.contains("1NCE answered method=POST path=\"v1/orders\""),
        "RUST_LOG={rust_log}: debug logging was off:\n{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.contains(" TRACE ")),
        "RUST_LOG={rust_log}: trace logging was off:\n{stderr}"
    );
    let mut secrets = vec![token];
    // Either half of the token (`ct_<sealed order>.<MAC>`) is as telling as the whole.
    secrets.extend(token.split('.').filter(|part| part.len() >= 16));
    secrets.extend([FIRST_NAME, LAST_NAME, STREET, ZIP, PHONE]);
    for secret in secrets {
        let line = stderr.lines().find(|l| l.contains(secret));
        assert!(
            line.is_none(),
            "RUST_LOG={rust_log}: stderr holds {secret:?}: {}",
            line.unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn trace_logging_shows_no_confirmation_token_and_no_address() {
    let (token, stderr) = place_an_order_logging("trace").await;
    assert_private("trace", &token, &stderr);
}

/// A directive for rmcp's target, a narrower target, or rmcp's message-loop span, on top of
/// trace for everything: the cap holds against each.
#[tokio::test]
async fn no_log_directive_reopens_message_logging() {
    for rust_log in [
        "rmcp=trace,trace",
        "trace,rmcp::service=trace",
        "trace,[serve_inner]=trace",
    ] {
        let (token, stderr) = place_an_order_logging(rust_log).await;
        assert_private(rust_log, &token, &stderr);
    }
}
