//! The order card's rules, as an MCP client sees them (issue 25): a client that declares the
//! MCP Apps extension gets the card; the model's side of it cannot place an order; only the
//! card's click, with the nonce that travels in `_meta` alone, can, once. The card itself in a
//! real browser under the official host SDK is `order_card.rs`.

use onence_mcp::sandbox::Sandbox;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ReadResourceRequestParams, ResourceContents,
};
use rmcp::service::RunningService;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::common::{child, posts, sandbox_env, temp_dir, text};

const CARD_URI: &str = "ui://1nce-mcp/order-card.html";
const META_KEY: &str = "onence/order-card";

/// A host that renders MCP Apps (and, with `form`, shows approval forms too).
#[derive(Clone)]
struct CardHost {
    form: bool,
}

impl ClientHandler for CardHost {
    fn get_info(&self) -> ClientConfig {
        let mut extensions = rmcp::model::ExtensionCapabilities::new();
        extensions.insert(
            "io.modelcontextprotocol/ui".to_owned(),
            json!({"mimeTypes": ["text/html;profile=mcp-app"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        let mut capabilities = if self.form {
            ClientCapabilities::builder().enable_elicitation().build()
        } else {
            ClientCapabilities::default()
        };
        capabilities.extensions = Some(extensions);
        ClientConfig::new(capabilities, Implementation::new("card-host-test", "0.0.0"))
    }
}

struct Host {
    client: RunningService<RoleClient, CardHost>,
    state: std::path::PathBuf,
}

async fn host(sandbox: &Sandbox, args: &[&str]) -> Host {
    let state = temp_dir("state");
    let mut all = vec!["--state-dir", state.to_str().unwrap()];
    all.extend_from_slice(args);
    let (transport, _stderr) = child(&all, &sandbox_env(&sandbox.base_url()));
    let client = CardHost { form: false }
        .serve(transport)
        .await
        .expect("initialize");
    Host { client, state }
}

impl Host {
    async fn call(&self, tool: &str, args: &Value) -> CallToolResult {
        self.client
            .call_tool(
                CallToolRequestParams::new(tool.to_owned())
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .expect("tools/call at the protocol level")
    }

    /// A preview as the card receives it: the structured answer and the card's `_meta`.
    async fn preview(&self, order: &Value) -> (Value, Value, CallToolResult) {
        let result = self.call("create_order", order).await;
        assert_ne!(result.is_error, Some(true), "{}", text(&result));
        let structured = result.structured_content.clone().unwrap();
        let meta = result
            .meta
            .as_ref()
            .and_then(|m| m.0.get(META_KEY))
            .cloned()
            .unwrap_or_else(|| panic!("the preview carries the card's _meta: {result:?}"));
        (structured, meta, result)
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state.join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn order(reference: &str) -> Value {
    json!({
        "products": [{"product_id": 1001, "quantity": 2}],
        "delivery_address": {"first_name": "Max", "last_name": "Muster", "street": "Ring",
            "house_number": "1", "zip": "50667", "city": "Köln", "country": "DE"},
        "customer_reference": reference
    })
}

/// The card's click for `order`, as the card sends it.
fn answer(order: &Value, token: &str, nonce: &str, decision: &str) -> Value {
    let mut args = order.clone();
    args["confirmation_token"] = token.into();
    args["approval_nonce"] = nonce.into();
    args["decision"] = decision.into();
    args
}

#[tokio::test]
async fn a_card_host_is_shown_the_card_and_only_its_click_places_the_order_once() {
    let sandbox = Sandbox::start().await.unwrap();
    let host = host(&sandbox, &[]).await;

    // What the host lists: create_order rendered in the card; the card's own tool, for the
    // card only (hosts leave it out of the model's list); the card as a resource.
    let tools = host.client.list_all_tools().await.unwrap();
    let tool = |name: &str| tools.iter().find(|t| t.name == name).cloned();
    let create = serde_json::to_value(tool("create_order").unwrap()).unwrap();
    assert_eq!(create["_meta"]["ui"]["resourceUri"], CARD_URI);
    let card_tool = serde_json::to_value(tool("answer_order_card").unwrap()).unwrap();
    assert_eq!(card_tool["_meta"]["ui"]["visibility"], json!(["app"]));
    let schema = create["outputSchema"]["$defs"]["Approval"].to_string();
    assert!(schema.contains("order_card"), "{schema}");
    let resources = host.client.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == CARD_URI));
    let read = host
        .client
        .read_resource(ReadResourceRequestParams::new(CARD_URI))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents {
        mime_type,
        text: html,
        meta,
        ..
    } = &read.contents[0]
    else {
        panic!("the card is text");
    };
    assert_eq!(mime_type.as_deref(), Some("text/html;profile=mcp-app"));
    assert!(html.to_ascii_lowercase().contains("<!doctype html>"));
    let meta = serde_json::to_value(meta).unwrap();
    assert_eq!(meta["ui"]["csp"]["connectDomains"], json!([]));

    // The preview: the approval is the card's; the nonce is in `_meta` and nowhere else.
    let first = order("card-1");
    let (preview, card, result) = host.preview(&first).await;
    assert_eq!(preview["approval"], "order_card");
    assert_eq!(card["environment"], "live");
    let nonce = card["approval_nonce"].as_str().unwrap().to_owned();
    assert!(nonce.len() >= 32, "{nonce}");
    assert!(!text(&result).contains(&nonce));
    assert!(!preview.to_string().contains(&nonce));
    assert!(
        text(&result).contains("order card") && text(&result).contains("Do not ask them to type"),
        "{}",
        text(&result)
    );
    let token = preview["confirmation_token"].as_str().unwrap().to_owned();

    // The model's side cannot place it: the token alone is refused.
    let mut confirm = first.clone();
    confirm["confirmation_token"] = token.clone().into();
    let refused = host.call("create_order", &confirm).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("order card"), "{}", text(&refused));
    // Nor a forged nonce, a nonce of another preview, or another order with this token.
    let (_, other_card, _) = host.preview(&order("card-other")).await;
    let other_nonce = other_card["approval_nonce"].as_str().unwrap();
    for (args, why) in [
        (answer(&first, &token, "forged", "place"), "forged"),
        (
            answer(&first, &token, other_nonce, "place"),
            "another preview's",
        ),
        (
            answer(&order("card-changed"), &token, &nonce, "place"),
            "changed order",
        ),
    ] {
        let r = host.call("answer_order_card", &args).await;
        assert_eq!(r.is_error, Some(true), "{why}: {}", text(&r));
        assert_eq!(r.structured_content.unwrap()["outcome"], "refused", "{why}");
    }
    assert_eq!(posts(&sandbox), 0);

    // The click: one POST, the number in the answer.
    let placed = host
        .call(
            "answer_order_card",
            &answer(&first, &token, &nonce, "place"),
        )
        .await;
    assert_ne!(placed.is_error, Some(true), "{}", text(&placed));
    let placed = placed.structured_content.unwrap();
    assert_eq!(placed["outcome"], "placed");
    assert!(placed["order_number"].as_u64().is_some(), "{placed}");
    assert_eq!(posts(&sandbox), 1);
    // A second click, or the model with the token, orders nothing more.
    let again = host
        .call(
            "answer_order_card",
            &answer(&first, &token, &nonce, "place"),
        )
        .await;
    assert_eq!(again.is_error, Some(true));
    assert!(text(&again).contains("already used"), "{}", text(&again));
    let again = host.call("create_order", &confirm).await;
    assert_eq!(again.is_error, Some(true));
    assert_eq!(posts(&sandbox), 1);

    // The record says the card approved it.
    let trail = host.audit();
    let post = trail
        .iter()
        .find(|r| r["event"] == "post")
        .expect("a post record");
    assert_eq!(post["approval"], "order_card", "{post}");
    assert!(
        trail
            .iter()
            .any(|r| r["event"] == "approved" && r["approval"] == "order_card")
    );
}

#[tokio::test]
async fn a_decline_in_the_card_ends_the_token() {
    let sandbox = Sandbox::start().await.unwrap();
    let host = host(&sandbox, &["--require-human-approval"]).await;
    let declined = order("card-declined");
    let (preview, card, _) = host.preview(&declined).await;
    let token = preview["confirmation_token"].as_str().unwrap();
    let nonce = card["approval_nonce"].as_str().unwrap();
    let no = host
        .call(
            "answer_order_card",
            &answer(&declined, token, nonce, "decline"),
        )
        .await;
    assert_ne!(no.is_error, Some(true), "{}", text(&no));
    assert_eq!(no.structured_content.unwrap()["outcome"], "declined");
    let later = host
        .call(
            "answer_order_card",
            &answer(&declined, token, nonce, "place"),
        )
        .await;
    assert_eq!(later.is_error, Some(true));
    assert!(text(&later).contains("declined"), "{}", text(&later));
    assert_eq!(posts(&sandbox), 0);
    assert!(
        host.audit()
            .iter()
            .any(|r| r["event"] == "declined" && r["approval"] == "order_card")
    );
}

#[tokio::test]
async fn without_the_extension_or_with_the_card_turned_off_nothing_changes() {
    let sandbox = Sandbox::start().await.unwrap();
    // The card turned off: a card host gets what every other client gets.
    let off = host(&sandbox, &["--no-order-card"]).await;
    let tools = off.client.list_all_tools().await.unwrap();
    assert!(tools.iter().all(|t| t.name != "answer_order_card"));
    assert!(tools.iter().all(|t| t.meta.is_none()), "{tools:?}");
    let result = off.call("create_order", &order("off")).await;
    assert!(result.meta.is_none());
    assert_eq!(
        result.structured_content.unwrap()["approval"],
        "confirmation_token"
    );
    // A client without the extension cannot call the card's tool at all.
    let (transport, _stderr) = child(&[], &sandbox_env(&sandbox.base_url()));
    let plain = ().serve(transport).await.unwrap();
    let err = plain
        .call_tool(
            CallToolRequestParams::new("answer_order_card").with_arguments(
                answer(&order("plain"), "ct_x", "n", "place")
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await;
    let refused = match err {
        Ok(ref result) => result.is_error == Some(true),
        Err(_) => true,
    };
    assert!(refused, "{err:?}");
    assert_eq!(posts(&sandbox), 0);
}
