//! MCP resources: orders addressable as `onence://orders/{order_number}` and the product
//! catalogue as `onence://products`, for hosts that let a person attach them to a conversation
//! rather than have the agent call a tool.
//!
//! The scheme is `onence`, the name the crate already uses for the same reason: a URI scheme
//! must start with a letter (RFC 3986, section 3.1), so `1nce://…` is not a URI, and strict
//! clients (the official conformance suite among them) refuse it. `onence` says "1NCE" in
//! letters, is not a registered scheme, and cannot be mistaken for the English word a scheme
//! such as `once` would read as.

use rmcp::ErrorData;
use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

use super::OrderServer;
use super::get_order::LookupError;

/// The URI template of one order.
pub const ORDER_TEMPLATE: &str = "onence://orders/{order_number}";
const ORDER_PREFIX: &str = "onence://orders/";

/// The product catalogue.
pub const PRODUCTS: &str = "onence://products";

/// The fixed resources this server offers.
pub fn resources() -> Vec<Resource> {
    vec![
        Resource::new(PRODUCTS, "products")
            .with_title("1NCE products")
            .with_description(
                "Every product the account can order as JSON: id, name, package size, quantity limits and charges.",
            )
            .with_mime_type("application/json"),
    ]
}

/// The resource templates this server offers.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(ORDER_TEMPLATE, "order")
            .with_title("1NCE order")
            .with_description(
                "One order of the 1NCE account, in compact lines: type, status, date, invoice, products, shipping address and every SIM's ICCID.",
            )
            .with_mime_type("text/plain"),
    ]
}

impl OrderServer {
    /// Reads a resource by URI.
    pub(super) async fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        if uri == PRODUCTS {
            let products = self
                .desk
                .catalogue
                .products()
                .await
                .map_err(|e| ErrorData::internal_error(e.advice(), None))?;
            let info: Vec<super::list_products::ProductInfo> =
                products.iter().map(Into::into).collect();
            return json_contents(uri, &info);
        }
        let not_found = || {
            ErrorData::resource_not_found(
                format!(
                    "no such resource {uri:?}; orders are {ORDER_TEMPLATE}, products {PRODUCTS}"
                ),
                None,
            )
        };
        let number = uri.strip_prefix(ORDER_PREFIX).ok_or_else(not_found)?;
        let order = self.look_up(number).await.map_err(|e| match e {
            LookupError::Invalid(_) => not_found(),
            LookupError::Missing(_) => ErrorData::resource_not_found(e.to_string(), None),
            LookupError::Failed(_) => ErrorData::internal_error(e.to_string(), None),
        })?;
        let text = self.describe_order(&order).await;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type("text/plain"),
        ]))
    }
}

fn json_contents(
    uri: &str,
    value: &impl serde::Serialize,
) -> Result<ReadResourceResult, ErrorData> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(json, uri).with_mime_type("application/json"),
    ]))
}
