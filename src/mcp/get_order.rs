//! `get_order`: one order by its number.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use tokio_util::sync::CancellationToken;

use super::list_orders::{CANCELLED, order_line};
use super::{ToolOutput, OrderServer, ToolResult, tool_error};
use crate::api::ApiError;
use crate::api::model::{Order, lenient_i64};

/// Arguments of `get_order`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOrderArgs {
    /// Order number identifying one order, e.g. 2000000001 (see list_orders).
    #[serde(deserialize_with = "lenient_i64")]
    #[schemars(range(min = 1))]
    pub order_number: i64,
}

#[tool_router(router = get_order_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "get_order",
        title = "Get a 1NCE order",
        description = "Get one 1NCE order by its order number: type, status, date, invoice, shipping address, products and SIMs (ICCIDs). Read-only.",
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
    pub async fn get_order(
        &self,
        Parameters(args): Parameters<GetOrderArgs>,
        cancelled: CancellationToken,
    ) -> ToolResult<Order> {
        let number = u64::try_from(args.order_number)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                format!(
                    "Invalid arguments: order_number must be a positive integer, not {}.",
                    args.order_number
                )
            })?;
        // A client that cancels or goes away stops the 1NCE request too (reads only).
        let fetched = tokio::select! {
            fetched = self.client.get_order(number) => fetched,
            () = cancelled.cancelled() => return Err(CANCELLED.to_owned()),
        };
        let order = fetched.map_err(|e| match e {
                ApiError::NotFound => format!(
                    "No order {number} exists in this 1NCE account. list_orders shows the account's order numbers."
                ),
                e => tool_error(&e),
            })?;
        let summary = order_line(&order);
        Ok(ToolOutput {
            data: order,
            summary,
        })
    }
}
