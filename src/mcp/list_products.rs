//! `list_products`: what can be ordered, with quantity limits and prices.

use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use rmcp::RoleServer;
use rmcp::service::RequestContext;

use super::{OrderServer, ToolError, ToolOutput, ToolResult};
use crate::api::products::{Charge, Product};
use crate::orders::spend::Standing;

/// The 1NCE product catalogue.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListProductsOutput {
    /// Every product the account can order.
    pub products: Vec<ProductInfo>,
    /// This server's own limits on orders, when the operator set any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_limits: Option<String>,
    /// The operator's spend limits now: spent and left in the current period (when set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spend_limits: Vec<Standing>,
}

/// A product as agents see it in `list_products`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProductInfo {
    /// Product id, the product_id to use in create_order.
    pub id: u64,
    /// Product name.
    pub name: String,
    /// Material, e.g. the SIM form factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
    /// Units per package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_size: Option<u64>,
    /// Smallest quantity one order may carry.
    pub min_quantity: u64,
    /// Largest quantity one order may carry, when limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_quantity: Option<u64>,
    /// Largest quantity one customer may hold in total, when limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_quantity_per_customer: Option<u64>,
    /// Minimum contract duration in months.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_contract_duration: Option<u64>,
    /// Charges paid once per unit ordered.
    pub one_time_charges: Vec<ChargeInfo>,
    /// Charges that recur per unit.
    pub recurring_charges: Vec<ChargeInfo>,
}

/// One charge as agents see it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChargeInfo {
    /// 1NCE's name of the charge.
    pub name: String,
    /// Net amount per unit, as a decimal string with two decimals, e.g. "10.00".
    pub amount_net: String,
    /// ISO currency code, e.g. "EUR".
    pub currency: String,
}

impl From<&Charge> for ChargeInfo {
    fn from(c: &Charge) -> Self {
        ChargeInfo {
            name: c.name.clone(),
            amount_net: c.amount_net.to_string(),
            currency: c.currency.clone(),
        }
    }
}

impl From<&Product> for ProductInfo {
    fn from(p: &Product) -> Self {
        ProductInfo {
            id: p.id,
            name: p.name.clone(),
            material: p.material.clone(),
            package_size: p.package_size,
            min_quantity: p.min_quantity,
            max_quantity: p.max_quantity,
            max_quantity_per_customer: p.max_quantity_per_customer,
            min_contract_duration: p.min_contract_duration,
            one_time_charges: p.one_time_charges.iter().map(ChargeInfo::from).collect(),
            recurring_charges: p.recurring_charges.iter().map(ChargeInfo::from).collect(),
        }
    }
}

#[tool_router(router = list_products_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "list_products",
        title = "List 1NCE products",
        description = "List the 1NCE products that can be ordered: id (create_order's product_id), name, package size, quantity limits per order, one-time and recurring net prices. Read-only.",
        output_schema = super::schema::output::<ListProductsOutput>(),
        annotations(
            title = "List 1NCE products",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn list_products(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult<ListProductsOutput> {
        let products = self.desk.catalogue.products().await?;
        let spend_limits = self
            .desk
            .spend_standing(super::caller(&ctx).map(|c| &c.person))
            .await
            .map_err(|e| {
                ToolError::Other(format!(
                    "The operator's spend limits could not be read from the state store ({e}), and without them nothing can be ordered either. Try again in a moment; if it persists, the operator should run `1nce-mcp check`."
                ))
            })?;
        let output = ListProductsOutput {
            products: products.iter().map(ProductInfo::from).collect(),
            operator_limits: self.limits.describe(),
            spend_limits,
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
        for s in &output.spend_limits {
            summary.push_str(&format!(
                "\nSpend limit {}: {} spent, {} left {}{} (resets {}).",
                s.limit,
                s.spent,
                s.left,
                s.period.this(),
                if s.per_person { " for you" } else { "" },
                s.resets_at
            ));
        }
        Ok(ToolOutput {
            data: output,
            summary,
        })
    }
}
