//! `get_order`: one order by its number.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::order_view::write_order_details;
use super::{OrderServer, ToolError, ToolOutput, ToolResult};
use crate::api::ApiError;
use crate::api::model::{Order, lenient_i64};

/// Arguments of `get_order`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOrderArgs {
    /// Order number, e.g. 2000000001.
    #[serde(deserialize_with = "lenient_i64")]
    #[schemars(range(min = 1))]
    pub order_number: i64,
}

#[tool_router(router = get_order_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "get_order",
        title = "Get a 1NCE order",
        description = "Get one 1NCE order whole: type, status, date, invoice, products, shipping address and every SIM's ICCID. Read-only.",
        input_schema = super::schema::input::<GetOrderArgs>(),
        output_schema = super::schema::output::<Order>(),
        annotations(
            title = "Get a 1NCE order",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn get_order(&self, Parameters(args): Parameters<GetOrderArgs>) -> ToolResult<Order> {
        let order = self.look_up(args.order_number).await.map_err(|e| match e {
            LookupError::Invalid(what) => ToolError::InvalidArguments(format!(
                "order_number must be a positive integer, not {what}"
            )),
            LookupError::Missing(_) => ToolError::Other(format!(
                "{e}. list_orders shows the account's order numbers."
            )),
            LookupError::Failed(e) => ToolError::Upstream(e),
        })?;
        let summary = self.describe_order(&order).await;
        Ok(ToolOutput {
            data: order,
            summary,
        })
    }
}

/// The longest an order's description waits for product names.
const NAMES_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why an order could not be looked up.
#[derive(Debug)]
pub(super) enum LookupError {
    /// Not an order number.
    Invalid(String),
    /// No such order in this account.
    Missing(u64),
    /// 1NCE could not answer.
    Failed(ApiError),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Invalid(what) => write!(
                f,
                "{}",
                ToolError::InvalidArguments(format!(
                    "order_number must be a positive integer, not {what}"
                ))
            ),
            LookupError::Missing(number) => {
                write!(f, "No order {number} exists in this 1NCE account")
            }
            LookupError::Failed(e) => f.write_str(&e.advice()),
        }
    }
}

impl OrderServer {
    /// Everything about `order` in compact lines, with product names from the catalogue (cached
    /// for minutes). A catalogue 1NCE cannot send within [`NAMES_WAIT`] only costs the names:
    /// the order itself is never held up for long by them.
    pub(super) async fn describe_order(&self, order: &Order) -> String {
        let catalogue = tokio::time::timeout(NAMES_WAIT, self.desk.catalogue.products())
            .await
            .ok()
            .and_then(Result::ok);
        let mut text = String::with_capacity(256 + 24 * order.sims.len());
        write_order_details(&mut text, order, |id| {
            catalogue
                .as_ref()
                .and_then(|products| products.iter().find(|p| p.id == id))
                .map(|p| p.name.as_str())
        });
        text
    }

    /// Order `number`, as an agent gave it: the one lookup `get_order`, the `reorder` prompt
    /// and the `onence://orders/{n}` resource share.
    pub(super) async fn look_up(&self, number: impl ToString) -> Result<Order, LookupError> {
        let given = number.to_string();
        let number = given
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(LookupError::Invalid(given))?;
        // A final order (or one read within the freshness window) comes from the mirror, with
        // no request; a mirror that cannot be read only costs the request.
        if let Some(mirror) = &self.mirror {
            match mirror.order(number).await {
                Ok(Some(order)) => return Ok(order),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the order mirror could not be read; asking 1NCE")
                }
            }
        }
        let order = self.client.get_order(number).await.map_err(|e| match e {
            ApiError::NotFound => LookupError::Missing(number),
            e => LookupError::Failed(e),
        })?;
        if let Some(mirror) = &self.mirror {
            mirror.remember(std::slice::from_ref(&order)).await;
        }
        Ok(order)
    }
}
