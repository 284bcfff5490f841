//! MCP prompts: guided workflows a person can pick in their host.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{PromptMessage, Role};
use rmcp::{ErrorData, prompt, prompt_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::OrderServer;
use super::get_order::LookupError;
use crate::api::model::lenient_i64;

/// Arguments of the `reorder` prompt.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReorderArgs {
    /// Number of the order whose products to order again, e.g. 2000000001.
    #[serde(deserialize_with = "lenient_i64")]
    pub order_number: i64,
}

#[prompt_router(vis = "pub(super)")]
impl OrderServer {
    /// Order again what an earlier order contained: preview first, then confirm only after the
    /// user approves.
    #[prompt(
        name = "reorder",
        description = "Order again the products of an earlier 1NCE order: preview first, confirm only after the user approves."
    )]
    pub async fn reorder(
        &self,
        Parameters(args): Parameters<ReorderArgs>,
    ) -> Result<Vec<PromptMessage>, ErrorData> {
        let number = args.order_number;
        let order = self.look_up(number).await.map_err(|e| match e {
            LookupError::Failed(_) => ErrorData::internal_error(e.to_string(), None),
            e => ErrorData::invalid_params(e.to_string(), None),
        })?;
        let lines: Vec<String> = order
            .products
            .iter()
            .map(|p| {
                format!(
                    "{{\"product_id\": {}, \"quantity\": {}}}",
                    p.product_id, p.quantity
                )
            })
            .collect();
        if lines.is_empty() {
            return Err(ErrorData::invalid_params(
                format!("order {number} lists no products to order again"),
                None,
            ));
        }
        let ships_to = order
            .shipping_address
            .as_ref()
            .map(|a| a.to_string())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "the account's default address".to_owned());
        let text = format!(
            "I want to order again what 1NCE order {number} contained: products [{}]. It was shipped to {ships_to}.\n\
             1. Call create_order with exactly these products and no confirmation_token. Ask me first whether to ship to the same address (then pass it as delivery_address) or to the account's default address. This only previews; nothing is ordered.\n\
             2. Show me the preview: every product and quantity, where it ships and the reference.\n\
             3. Wait for my explicit approval. If I change anything, preview again.\n\
             4. Only after I approve, call create_order again with the same arguments plus the confirmation_token, and tell me the new order number.",
            lines.join(", ")
        );
        Ok(vec![PromptMessage::new_text(Role::User, text)])
    }
}
