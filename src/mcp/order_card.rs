//! The order card: the person approves an order with a click in a view the server itself
//! renders, where the client shows MCP Apps (extension `io.modelcontextprotocol/ui`, SEP-1865).
//!
//! For a client that declares the extension (and unless the operator turned the card off),
//! `create_order` names the card in its `_meta.ui.resourceUri`, so the host renders the preview
//! in [`CARD_HTML`] (`ui/order-card.html`), a self-contained page that shows every line, the
//! totals, the address and the environment, with **Place order** and **Decline**. A click calls
//! [`ANSWER_TOOL`], a tool only the card may call (`visibility: ["app"]`: hosts never list it to
//! the model), carrying an approval nonce that exists only in the preview result's `_meta`,
//! which hosts keep out of the model's context. The preview's token then places the order only
//! from the card: `create_order` with the token alone is refused. Everything else of the order
//! path is the same [`crate::orders::Desk`] as every confirmation.
//!
//! Clients without the extension see nothing of this: no `_meta`, no extra tool or resource.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{MetaObject, ReadResourceResult, Resource, ResourceContents, Tool};
use rmcp::service::RequestContext;
use serde_json::json;

use super::OrderServer;
use crate::orders::Environment;

/// The MCP Apps extension, as clients declare it in `capabilities.extensions`.
pub const UI_EXTENSION: &str = "io.modelcontextprotocol/ui";
/// The one kind of view this server offers.
pub const CARD_MIME: &str = "text/html;profile=mcp-app";
/// Where the card is read from.
pub const CARD_URI: &str = "ui://1nce-mcp/order-card.html";
/// The card itself: one HTML document with its styles and script inline, kept in
/// `ui/order-card.html`.
pub const CARD_HTML: &str = include_str!("../../ui/order-card.html");
/// The tool only the card calls.
pub const ANSWER_TOOL: &str = "answer_order_card";
/// The key of the card's data in a preview result's `_meta` (a `_meta` key's prefix starts
/// with a letter, hence `onence` as in the resource URIs).
pub const META_KEY: &str = "onence/order-card";

/// Whether the client of this request renders MCP Apps views of our kind.
pub(super) fn renders_apps(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .and_then(|caps| caps.extensions)
        .and_then(|extensions| extensions.get(UI_EXTENSION).cloned())
        .and_then(|ui| ui.get("mimeTypes").cloned())
        .and_then(|types| types.as_array().cloned())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some(CARD_MIME)))
}

/// The card as `resources/list` shows it to a client that renders it.
pub(super) fn resource() -> Resource {
    Resource::new(CARD_URI, "order-card")
        .with_title("1NCE order card")
        .with_description(
            "The view in which the person approves an order: every line, the totals, the address and the account, with Place order and Decline.",
        )
        .with_mime_type(CARD_MIME)
}

/// The card as `resources/read` returns it: no network and nothing from elsewhere (an empty
/// CSP allow-list), in a border of the host's.
pub(super) fn contents() -> ReadResourceResult {
    let mut meta = MetaObject::new();
    meta.0.insert(
        "ui".to_owned(),
        json!({
            "csp": { "connectDomains": [], "resourceDomains": [] },
            "prefersBorder": true
        }),
    );
    ReadResourceResult::new(vec![
        ResourceContents::text(CARD_HTML, CARD_URI)
            .with_mime_type(CARD_MIME)
            .with_meta(meta),
    ])
}

/// `_meta.ui` of `create_order` (rendered in the card) and of the answer tool (the card's
/// only, never the model's), for a client that renders the card; and `create_order`'s output
/// schema with the approval only such a client is given.
pub(super) fn with_card(mut tool: Tool) -> Tool {
    let ui = if tool.name == ANSWER_TOOL {
        json!({ "resourceUri": CARD_URI, "visibility": ["app"] })
    } else {
        json!({ "resourceUri": CARD_URI })
    };
    let mut meta = tool.meta.take().unwrap_or_default();
    meta.0.insert("ui".to_owned(), ui);
    tool.meta = Some(meta);
    if tool.name == "create_order"
        && let Some(schema) = tool.output_schema.as_mut()
    {
        let schema = Arc::make_mut(schema);
        if let Some(kinds) = schema
            .get_mut("$defs")
            .and_then(|defs| defs.get_mut("Approval"))
            .and_then(|approval| approval.get_mut("oneOf"))
            .and_then(|kinds| kinds.as_array_mut())
        {
            kinds.insert(
                1,
                json!({
                    "const": "order_card",
                    "description": "The person approves or declines with a click in the order card shown with the preview; the agent cannot place the order.",
                    "type": "string"
                }),
            );
        }
    }
    tool
}

/// What the card shows besides the preview, and the nonce its click must carry: the preview
/// result's `_meta`, which hosts keep from the model.
pub(super) fn preview_meta(
    nonce: &str,
    environment: Environment,
    server: &OrderServer,
) -> MetaObject {
    let client = server.client();
    let (environment, api) = match environment {
        Environment::Sandbox => ("sandbox", "the built-in sandbox".to_owned()),
        Environment::Live => (
            "live",
            client
                .base_url()
                .host_str()
                .unwrap_or("the 1NCE API")
                .to_owned(),
        ),
    };
    let mut meta = MetaObject::new();
    meta.0.insert(
        META_KEY.to_owned(),
        json!({
            "approval_nonce": nonce,
            "environment": environment,
            "account": shortened(client.client_id()),
            "api": api,
        }),
    );
    meta
}

/// A client id as a person recognises it without it being spelt out: its first and last
/// characters.
fn shortened(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 10 {
        return id.to_owned();
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

impl OrderServer {
    /// Whether this request's client is shown the order card.
    pub(super) fn shows_card(&self, ctx: &RequestContext<RoleServer>) -> bool {
        self.order_card && renders_apps(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_shortened_for_the_badge() {
        assert_eq!(shortened("sandbox"), "sandbox");
        assert_eq!(shortened("1234567890abcdef"), "12345…cdef");
        assert_eq!(shortened("ääääääääääääää"), "äääää…ääää");
    }

    #[test]
    fn the_card_is_one_document_that_needs_nothing_from_elsewhere() {
        assert!(
            CARD_HTML
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("<!doctype html>")
        );
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "<link "] {
            assert!(!CARD_HTML.contains(external), "{external}");
        }
    }
}
