//! Resources and prompts over stdio: an order as `onence://orders/{n}` and the `reorder` prompt.

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
    assert_eq!(templates[0].uri_template, "onence://orders/{order_number}");
    let resources = server.client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, ["onence://products"]);
    for uri in uris
        .iter()
        .copied()
        .chain([templates[0].uri_template.as_str()])
    {
        assert!(
            is_rfc3986_scheme(uri.split_once(':').unwrap().0),
            "{uri} does not start with a valid URI scheme"
        );
    }

    let read = server
        .client
        .read_resource(ReadResourceRequestParams::new("onence://orders/2000000004"))
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

    // The scheme of early builds (`1nce://`, not a valid URI) is not read: such a URI is no
    // resource of this server.
    for uri in [
        "onence://orders/1",
        "onence://orders/abc",
        "1nce://orders/2000000004",
        "1nce://products",
        "1nce://nothing",
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

/// RFC 3986, section 3.1: `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_rfc3986_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
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
