//! `list_orders`: one page of the account's orders, with 1NCE's totals.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use tokio_util::sync::CancellationToken;

use super::{Answer, OrderServer, ToolResult, tool_error};
use crate::api::model::{ListOrdersQuery, Order, lenient_i64_opt};

/// The answer to a read the client cancelled (or abandoned) before 1NCE replied.
pub(super) const CANCELLED: &str = "Cancelled before 1NCE answered; nothing was changed.";

/// Arguments of `list_orders`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOrdersArgs {
    /// Page of the order list to return, from 1 (default 1). The answer says whether more pages follow.
    #[serde(default, deserialize_with = "lenient_i64_opt")]
    #[schemars(range(min = 1))]
    pub page: Option<i64>,
    /// Orders per page, 1 to 10 (default 10).
    #[serde(default, deserialize_with = "lenient_i64_opt")]
    #[schemars(range(min = 1, max = 10))]
    pub page_size: Option<i64>,
    /// Comma-separated sort keys from order_number, order_status, order_date, e.g. "order_status,order_date" (default order_number).
    pub sort: Option<String>,
}

/// One page of the account's orders.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOrdersOutput {
    /// The orders on this page.
    pub orders: Vec<Order>,
    /// This page's number.
    pub page: u32,
    /// Orders per page requested.
    pub page_size: u32,
    /// Number of pages in total, when 1NCE reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
    /// Number of orders in total, when 1NCE reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u64>,
    /// Whether a later page may hold more orders (ask for page + 1).
    pub has_more: bool,
}

#[tool_router(router = list_orders_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "list_orders",
        title = "List 1NCE orders",
        description = "List the account's 1NCE orders, one page at a time (up to 10 per page), with number, type, status, date, invoice amount, products and SIMs. Read-only.",
        input_schema = super::schema::input::<ListOrdersArgs>(),
        output_schema = super::schema::output::<ListOrdersOutput>(),
        annotations(
            title = "List 1NCE orders",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn list_orders(
        &self,
        Parameters(args): Parameters<ListOrdersArgs>,
        cancelled: CancellationToken,
    ) -> ToolResult<ListOrdersOutput> {
        let query = ListOrdersQuery::new(args.page, args.page_size, args.sort.as_deref())
            .map_err(|e| format!("Invalid arguments: {e}."))?;
        // A client that cancels or goes away stops the 1NCE request too (reads only).
        let page = tokio::select! {
            page = self.client.list_orders(&query) => page.map_err(|e| tool_error(&e))?,
            () = cancelled.cancelled() => return Err(CANCELLED.to_owned()),
        };
        let has_more = page.has_more();
        let output = ListOrdersOutput {
            page: page.page,
            page_size: page.page_size,
            total_pages: page.total_pages,
            total_count: page.total_count,
            has_more,
            orders: page.orders,
        };
        let summary = summarize(&output);
        Ok(Answer {
            data: output,
            summary,
        })
    }
}

fn summarize(out: &ListOrdersOutput) -> String {
    let of_pages = out
        .total_pages
        .map(|t| format!(" of {t}"))
        .unwrap_or_default();
    let of_total = out
        .total_count
        .map(|t| format!(" ({t} orders in total)"))
        .unwrap_or_default();
    let mut text = format!(
        "Page {}{of_pages}: {} order(s){of_total}.",
        out.page,
        out.orders.len()
    );
    for order in &out.orders {
        text.push_str("\n- ");
        text.push_str(&order_line(order));
    }
    text.push_str(if out.has_more {
        "\nMore orders follow: ask for the next page."
    } else {
        "\nNo further pages."
    });
    text
}

/// One order in a line: number, type, status, date, amount and product lines.
pub(super) fn order_line(order: &Order) -> String {
    let number = order
        .order_number
        .map(|n| n.to_string())
        .unwrap_or_else(|| "?".to_owned());
    let mut parts = vec![format!("order {number}")];
    parts.extend(order.order_type.clone());
    parts.extend(order.order_status.clone());
    parts.extend(order.order_date.clone());
    if let Some(amount) = &order.invoice_amount {
        parts.push(format!(
            "{amount} {}",
            order.currency.as_deref().unwrap_or("")
        ));
    }
    let products: Vec<String> = order
        .products
        .iter()
        .map(|p| format!("{} × product {}", p.quantity, p.product_id))
        .collect();
    if !products.is_empty() {
        parts.push(products.join(", "));
    }
    if !order.sims.is_empty() {
        parts.push(format!("{} SIM(s)", order.sims.len()));
    }
    parts.join(" · ").trim_end().to_owned()
}
