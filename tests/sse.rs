//! The legacy HTTP+SSE transport (2024-11-05) spoken by a raw client: open `/sse`, read the
//! `endpoint` event, POST JSON-RPC there, read the answers as `message` events.

use onence_mcp::sandbox::Sandbox;
use serde_json::json;

use crate::common;
use crate::common::net::{GatedProxy, HttpServer, TOKEN};
use crate::common::sse::LegacySession;

#[tokio::test]
async fn a_raw_legacy_client_lists_and_calls_tools_and_confirms_an_order() {
    let sandbox = Sandbox::start().await.unwrap();
    let server =
        HttpServer::against(&sandbox.base_url(), &[], &[("ONCE_MCP_HTTP_TOKEN", TOKEN)]).await;
    let mut session = LegacySession::open(&server, Some(TOKEN)).await;
    session.initialize().await;

    let tools = session.request(2, "tools/list", json!({})).await;
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, common::ALL_TOOLS);

    let listed = session
        .request(
            3,
            "tools/call",
            json!({"name": "list_orders", "arguments": {"page_size": 3, "detail": "full"}}),
        )
        .await;
    let orders = &listed["result"]["structuredContent"]["orders"];
    assert_eq!(orders.as_array().unwrap().len(), 3);
    let number = orders[1]["order_number"].as_u64().unwrap();
    let fetched = session
        .request(
            4,
            "tools/call",
            json!({"name": "get_order", "arguments": {"order_number": number}}),
        )
        .await;
    assert_eq!(fetched["result"]["structuredContent"], orders[1]);

    let args = json!({"products": [{"product_id": 1002, "quantity": 3}]});
    let preview = session
        .request(
            5,
            "tools/call",
            json!({"name": "create_order", "arguments": args}),
        )
        .await;
    let confirmed = common::confirming(&args, &preview["result"]["structuredContent"]);
    let placed = session
        .request(
            6,
            "tools/call",
            json!({"name": "create_order", "arguments": confirmed}),
        )
        .await;
    assert_eq!(
        placed["result"]["structuredContent"]["status"], "placed",
        "{placed}"
    );
    assert_eq!(common::posts(&sandbox), 1);

    // A POST without the token is refused even with a valid session id.
    let anonymous = reqwest::Client::new()
        .post(&session.post_url)
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn closing_the_stream_ends_the_session_and_cancels_its_upstream_call() {
    let sandbox = Sandbox::start().await.unwrap();
    let proxy = GatedProxy::start(&sandbox.base_url()).await;
    let server = HttpServer::against(&proxy.url, &[], &[]).await;
    let mut session = LegacySession::open(&server, None).await;
    session.initialize().await;
    let status = session
        .post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "list_orders", "arguments": {}}}))
        .await;
    assert_eq!(status, 202);
    proxy.wait_arrived(1).await;

    // The client goes away mid-call: its upstream request is abandoned, not left running.
    let LegacySession {
        http,
        events,
        post_url,
        ..
    } = session;
    drop(events);
    proxy.wait_abandoned(1).await;

    // And the session is gone.
    let after = http
        .post(&post_url)
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 404);
}

#[tokio::test]
async fn a_confirmation_token_cannot_cross_from_legacy_sse_to_streamable_http() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = HttpServer::against(&sandbox.base_url(), &[], &[]).await;
    let mut legacy = LegacySession::open(&server, None).await;
    legacy.initialize().await;
    let args = json!({"products": [{"product_id": 1001, "quantity": 1}]});
    let preview = legacy
        .request(
            2,
            "tools/call",
            json!({"name": "create_order", "arguments": args}),
        )
        .await;
    let confirmed = common::confirming(&args, &preview["result"]["structuredContent"]);
    let other = server.client(None).await;
    let refused = other.err("create_order", confirmed).await;
    assert!(refused.contains("another MCP session"), "{refused}");
    assert_eq!(common::posts(&sandbox), 0);
}
