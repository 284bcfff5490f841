//! `list_orders`: one page of the account's orders, with 1NCE's totals.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::order_view::{Detail, ListedOrder, write_order_line};
use super::{OrderServer, ToolError, ToolOutput, ToolResult};
#[cfg(test)]
use crate::api::model::Order;
use crate::api::model::{ListOrdersQuery, lenient_i64_opt};

/// Arguments of `list_orders`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOrdersArgs {
    /// Page, from 1 (default 1).
    #[serde(default, deserialize_with = "lenient_i64_opt")]
    #[schemars(range(min = 1))]
    pub page: Option<i64>,
    /// Orders per page (default 10).
    #[serde(default, deserialize_with = "lenient_i64_opt")]
    #[schemars(range(min = 1, max = 10))]
    pub page_size: Option<i64>,
    /// Comma-separated sort keys: order_number (default), order_status, order_date.
    pub sort: Option<String>,
    #[serde(default)]
    #[schemars(description = super::order_view::DETAIL_DOC)]
    pub detail: Detail,
}

/// One page of the account's orders.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOrdersOutput {
    /// The orders on this page: summaries, or whole orders when detail is "full".
    pub orders: Vec<ListedOrder>,
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
    /// How much of each order this answer carries.
    pub detail: Detail,
}

#[tool_router(router = list_orders_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "list_orders",
        title = "List 1NCE orders",
        description = "List the account's 1NCE orders, up to 10 per page: number, type, status, date, amount, products, SIM count, ship-to city. Read-only.",
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
    ) -> ToolResult<ListOrdersOutput> {
        let query = ListOrdersQuery::new(args.page, args.page_size, args.sort.as_deref())
            .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let page = self.client.list_orders(&query).await?;
        // A page is what 1NCE says now; the mirror keeps it too.
        if let Some(mirror) = &self.mirror {
            mirror.remember(&page.orders).await;
            mirror.wake();
        }
        let has_more = page.has_more();
        let output = ListOrdersOutput {
            page: page.page,
            page_size: page.page_size,
            total_pages: page.total_pages,
            total_count: page.total_count,
            has_more,
            orders: page
                .orders
                .into_iter()
                .map(|o| ListedOrder::new(o, args.detail))
                .collect(),
            detail: args.detail,
        };
        let summary = summarize(&output);
        Ok(ToolOutput {
            data: output,
            summary,
        })
    }
}

fn summarize(out: &ListOrdersOutput) -> String {
    use std::fmt::Write;
    // One buffer for the whole page: this runs on every call, ten orders at a time.
    let mut text = String::with_capacity(64 + 160 * out.orders.len());
    let _ = write!(text, "Page {}", out.page);
    if let Some(total) = out.total_pages {
        let _ = write!(text, " of {total}");
    }
    let _ = write!(text, ": {} order(s)", out.orders.len());
    if let Some(total) = out.total_count {
        let _ = write!(text, " ({total} orders in total)");
    }
    text.push('.');
    for order in &out.orders {
        text.push_str("\n- ");
        write_order_line(&mut text, order);
    }
    text.push_str(if out.has_more {
        "\nMore orders follow: ask for the next page."
    } else {
        "\nNo further pages."
    });
    if out.detail == Detail::Summary && !out.orders.is_empty() {
        text.push_str(SUMMARY_NOTE);
    }
    text
}

/// Where a summary list says the rest is.
pub(super) const SUMMARY_NOTE: &str = "\nICCIDs and full addresses: get_order, or detail \"full\".";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_summary_has_totals_and_one_line_per_order() {
        let order = || {
            let order: Order = serde_json::from_value(serde_json::json!({
                "order_number": 2000000007u64, "order_status": "COMPLETED",
            }))
            .unwrap();
            ListedOrder::new(order, Detail::Summary)
        };
        let out = ListOrdersOutput {
            orders: vec![order(), order()],
            page: 2,
            page_size: 2,
            total_pages: Some(3),
            total_count: Some(6),
            has_more: true,
            detail: Detail::Summary,
        };
        let text = summarize(&out);
        assert_eq!(
            text,
            "Page 2 of 3: 2 order(s) (6 orders in total).\n- order 2000000007 · COMPLETED\n- order 2000000007 · COMPLETED\nMore orders follow: ask for the next page.\nICCIDs and full addresses: get_order, or detail \"full\"."
        );
    }
}
