//! Resources and prompts over stdio: an order as `1nce://orders/{n}` and the `reorder` prompt.

use onence_mcp::sandbox::Sandbox;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
use serde_json::json;

use crate::common;
use crate::common::spawn_against;

#[tokio::test]
async fn orders_and_products_read_as_resources() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(&sandbox, &[]).await;
    let templates = server.client.list_all_resource_templates().await.unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].uri_template, "1nce://orders/{order_number}");

    let read = server
        .client
        .read_resource(ReadResourceRequestParams::new("1nce://orders/2000000004"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents {
        text, mime_type, ..
    } = &read.contents[0]
    else {
        panic!("expected text contents")
    };
    // The same complete lines as get_order's text: ICCIDs and the address included.
    assert_eq!(mime_type.as_deref(), Some("text/plain"));
    let via_tool = server
        .call("get_order", json!({"order_number": 2000000004u64}))
        .await;
    assert_eq!(text, &common::text(&via_tool));
    assert!(
        text.contains("SIMs (") && text.contains("ship to: "),
        "{text}"
    );

    for uri in [
        "1nce://orders/1",
        "1nce://orders/abc",
        "https://example.com/",
    ] {
        let err = server
            .client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("no "),
            "{uri}: {err}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_reorder_prompt_names_the_products_and_the_approval_rule() {
    let sandbox = Sandbox::start().await.unwrap();
    let server = spawn_against(&sandbox, &[]).await;
    let prompts = server.client.list_all_prompts().await.unwrap();
    let reorder = prompts
        .iter()
        .find(|p| p.name == "reorder")
        .expect("reorder prompt");
    let args = reorder.arguments.as_ref().unwrap();
    assert_eq!(args[0].name, "order_number");
    assert_eq!(args[0].required, Some(true));

    let order = server
        .ok("get_order", json!({"order_number": 2000000002u64}))
        .await;
    let result = server
        .client
        .get_prompt(
            GetPromptRequestParams::new("reorder").with_arguments(
                json!({"order_number": "2000000002"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    let text = serde_json::to_string(&result.messages).unwrap();
    for product in order["products"].as_array().unwrap() {
        let line = format!(
            "{{\\\"product_id\\\": {}, \\\"quantity\\\": {}}}",
            product["product_id"], product["quantity"]
        );
        assert!(text.contains(&line), "{line} missing from {text}");
    }
    assert!(text.contains("explicit approval"));
    assert_eq!(common::posts(&sandbox), 0, "a prompt orders nothing");

    let err = server
        .client
        .get_prompt(
            GetPromptRequestParams::new("reorder")
                .with_arguments(json!({"order_number": 5}).as_object().unwrap().clone()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No order 5"), "{err}");
    server.stop().await;
}
