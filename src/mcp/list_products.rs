//! `list_products`: what can be ordered, with quantity limits and prices.

use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use super::{OrderServer, ToolOutput, ToolResult, tool_error};
use crate::api::products::ProductInfo;

/// The 1NCE product catalogue.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListProductsOutput {
    /// Every product the account can order.
    pub products: Vec<ProductInfo>,
    /// This server's own limits on orders, when the operator set any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_limits: Option<String>,
}

#[tool_router(router = list_products_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "list_products",
        title = "List 1NCE products",
        description = "List the 1NCE products that can be ordered: id (the product_id for create_order), name, package size, minimum and maximum quantity per order, one-time and recurring net charges. Read-only.",
        output_schema = super::schema::output::<ListProductsOutput>(),
        annotations(
            title = "List 1NCE products",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn list_products(&self) -> ToolResult<ListProductsOutput> {
        let products = self
            .desk
            .catalogue
            .products()
            .await
            .map_err(|e| tool_error(&e))?;
        let output = ListProductsOutput {
            products: products.iter().map(ProductInfo::from).collect(),
            operator_limits: self.limits.describe(),
        };
        let mut summary = format!("{} product(s) can be ordered:", output.products.len());
        for p in &output.products {
            let max = p
                .max_quantity
                .map(|m| format!(" to {m}"))
                .unwrap_or_else(|| " or more".to_owned());
            let prices: Vec<String> = p
                .one_time_charges
                .iter()
                .map(|c| format!("{} {} once", c.amount_net, c.currency))
                .chain(
                    p.recurring_charges
                        .iter()
                        .map(|c| format!("{} {} recurring", c.amount_net, c.currency)),
                )
                .collect();
            summary.push_str(&format!(
                "\n- {} {}: quantity {}{max}; {} net per unit",
                p.id,
                p.name,
                p.min_quantity,
                if prices.is_empty() {
                    "no charges listed".to_owned()
                } else {
                    prices.join(", ")
                }
            ));
        }
        if let Some(limits) = &output.operator_limits {
            summary.push_str(&format!("\nThis server's operator allows {limits}."));
        }
        Ok(ToolOutput {
            data: output,
            summary,
        })
    }
}
