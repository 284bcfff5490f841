//! `list_orders`: one page of the account's orders, with 1NCE's totals.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use tokio_util::sync::CancellationToken;

use super::{OrderServer, ToolOutput, ToolResult, tool_error};
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
    text
}

/// One order in a line: number, type, status, date, amount and product lines.
pub(super) fn order_line(order: &Order) -> String {
    let mut line = String::with_capacity(160);
    write_order_line(&mut line, order);
    line
}

/// Appends [`order_line`]'s line to `out`: the parts that are present, joined by " · ".
fn write_order_line(out: &mut String, order: &Order) {
    use std::fmt::Write;
    const SEPARATOR: &str = " · ";
    match order.order_number {
        Some(n) => {
            let _ = write!(out, "order {n}");
        }
        None => out.push_str("order ?"),
    }
    for part in [&order.order_type, &order.order_status, &order.order_date]
        .into_iter()
        .flatten()
    {
        out.push_str(SEPARATOR);
        out.push_str(part);
    }
    if let Some(amount) = &order.invoice_amount {
        out.push_str(SEPARATOR);
        out.push_str(amount);
        if let Some(currency) = &order.currency {
            out.push(' ');
            out.push_str(currency);
        }
    }
    for (i, p) in order.products.iter().enumerate() {
        out.push_str(if i == 0 { SEPARATOR } else { ", " });
        let _ = write!(out, "{} × product {}", p.quantity, p.product_id);
    }
    if !order.sims.is_empty() {
        let _ = write!(out, "{SEPARATOR}{} SIM(s)", order.sims.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{OrderedProduct, Sim};

    fn order() -> Order {
        serde_json::from_value(serde_json::json!({
            "order_number": 2000000007u64, "order_type": "ADDITIONAL_ORDER",
            "order_status": "COMPLETED", "order_date": "2024-08-23T11:12:00Z",
            "invoice_amount": "53.55", "currency": "EUR",
        }))
        .unwrap()
    }

    #[test]
    fn order_line_names_what_is_present() {
        let mut full = order();
        full.products = vec![
            OrderedProduct {
                product_id: 1002,
                quantity: 3,
            },
            OrderedProduct {
                product_id: 1001,
                quantity: 1,
            },
        ];
        full.sims = vec![
            Sim {
                iccid: None,
                links: vec![]
            };
            3
        ];
        assert_eq!(
            order_line(&full),
            "order 2000000007 · ADDITIONAL_ORDER · COMPLETED · 2024-08-23T11:12:00Z · 53.55 EUR · 3 × product 1002, 1 × product 1001 · 3 SIM(s)"
        );
        let mut sparse = order();
        sparse.order_number = None;
        sparse.order_type = None;
        sparse.currency = None;
        assert_eq!(
            order_line(&sparse),
            "order ? · COMPLETED · 2024-08-23T11:12:00Z · 53.55"
        );
    }

    #[test]
    fn page_summary_has_totals_and_one_line_per_order() {
        let out = ListOrdersOutput {
            orders: vec![order(), order()],
            page: 2,
            page_size: 2,
            total_pages: Some(3),
            total_count: Some(6),
            has_more: true,
        };
        let text = summarize(&out);
        assert!(
            text.starts_with("Page 2 of 3: 2 order(s) (6 orders in total).\n- order 2000000007 · "),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.ends_with("\nMore orders follow: ask for the next page."),
            "{text}"
        );
    }
}
