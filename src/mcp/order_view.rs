//! How an order reads to an agent, in both forms a host may hand the model.
//!
//! Claude Code and VS Code give the model `structuredContent` and drop the text; Claude Desktop,
//! claude.ai and ChatGPT give it the text. So each answer says the same things both ways:
//! a list is lean by default ([`Detail::Summary`]: [`OrderSummary`] and one line per order) and
//! complete on request ([`Detail::Full`]: the whole [`Order`] and its [`write_order_details`]
//! lines); a single order is always complete.

use std::fmt::Write;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::model::{Order, OrderedProduct};

/// How much of each order a list answer carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Detail {
    // Per order what a list is for; nothing that grows with the number of SIMs.
    #[default]
    Summary,
    // Each order whole: every SIM, the full address, invoice number and reference.
    Full,
}

/// What the `detail` argument of a list does, as agents read it.
pub const DETAIL_DOC: &str = "\"full\": whole orders, with every ICCID and the full address.";

/// One order in a list: its summary, or the whole order when `detail` is "full".
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
#[expect(
    clippy::large_enum_variant,
    reason = "a list holds at most 50 orders, built once per answer: boxing saves nothing that counts"
)]
pub enum ListedOrder {
    Summary(OrderSummary),
    Full(Order),
}

impl ListedOrder {
    /// `order` at the level of `detail`.
    pub fn new(order: Order, detail: Detail) -> ListedOrder {
        match detail {
            Detail::Summary => ListedOrder::Summary(order.into()),
            Detail::Full => ListedOrder::Full(order),
        }
    }
}

/// An order in a list answer: what a list is for. get_order (or detail "full") has the rest:
/// ICCIDs, the full shipping address, the invoice number.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderSummary {
    /// Order number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<u64>,
    /// Order type, e.g. FIRST_ORDER or TOPUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_type: Option<String>,
    /// Status of the ordering process, e.g. COMPLETED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_status: Option<String>,
    /// Date and time the order was placed (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_date: Option<String>,
    /// Gross invoice amount, a decimal string such as "19.99".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_amount: Option<String>,
    /// ISO 4217 currency code of the invoice amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Customer reference given when the order was placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_reference: Option<String>,
    /// Product ids and quantities ordered.
    pub products: Vec<OrderedProduct>,
    /// Number of SIMs in or affected by the order.
    pub sim_count: usize,
    /// City and country the order shipped to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<ShipTo>,
}

/// Where an order shipped, as far as a list says.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShipTo {
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl From<Order> for OrderSummary {
    fn from(order: Order) -> Self {
        let ship_to = order
            .shipping_address
            .map(|a| ShipTo {
                city: a.city,
                country: a.country,
            })
            .filter(|s| s.city.is_some() || s.country.is_some());
        OrderSummary {
            order_number: order.order_number,
            order_type: order.order_type,
            order_status: order.order_status,
            order_date: order.order_date,
            invoice_amount: order.invoice_amount,
            currency: order.currency,
            customer_reference: order.customer_reference,
            products: order.products,
            sim_count: order.sims.len(),
            ship_to,
        }
    }
}

const SEPARATOR: &str = " · ";

/// Appends one order as one line: number, type, status, date, amount, product lines, SIM count,
/// and the city and country it shipped to; the parts that are present, joined by " · ".
pub fn write_order_line(out: &mut String, order: &ListedOrder) {
    match order {
        ListedOrder::Summary(s) => {
            write_head(
                out,
                s.order_number,
                [&s.order_type, &s.order_status, &s.order_date],
            );
            write_amount(out, &s.invoice_amount, &s.currency);
            write_products(out, SEPARATOR, &s.products, |_| None);
            if s.sim_count > 0 {
                let _ = write!(out, "{SEPARATOR}{} SIM(s)", s.sim_count);
            }
            if let Some(ship_to) = &s.ship_to {
                write_ship_to(out, &ship_to.city, &ship_to.country);
            }
            if let Some(reference) = &s.customer_reference {
                let _ = write!(out, "{SEPARATOR}ref {}", quoted(reference));
            }
        }
        ListedOrder::Full(order) => write_order_details(out, order, |_| None),
    }
}

/// Appends everything an agent may be asked about one order, in compact lines: the head line
/// (number, type, status, date, amount), the invoice and reference, each product line (with its
/// name where `name_of` knows it), the shipping address, and every SIM's ICCID.
pub fn write_order_details<'a>(
    out: &mut String,
    order: &'a Order,
    name_of: impl Fn(u64) -> Option<&'a str>,
) {
    write_head(
        out,
        order.order_number,
        [&order.order_type, &order.order_status, &order.order_date],
    );
    write_amount(out, &order.invoice_amount, &order.currency);
    if let Some(invoice) = &order.invoice_number {
        let _ = write!(out, "{SEPARATOR}invoice {}", one_line(invoice));
    }
    if let Some(reference) = &order.customer_reference {
        let _ = write!(out, "{SEPARATOR}ref {}", quoted(reference));
    }
    write_products(out, "\n  products: ", &order.products, name_of);
    if let Some(address) = &order.shipping_address {
        let _ = write!(out, "\n  ship to: {}", quoted(&address.to_string()));
        if let Some(phone) = &address.phone {
            let _ = write!(out, " (phone {})", one_line(phone));
        }
    }
    let iccids: Vec<&str> = order
        .sims
        .iter()
        .filter_map(|s| s.iccid.as_deref())
        .collect();
    if !order.sims.is_empty() {
        let _ = write!(
            out,
            "\n  SIMs ({}): {}",
            order.sims.len(),
            iccids.join(", ")
        );
        let unnamed = order.sims.len() - iccids.len();
        if unnamed > 0 {
            let _ = write!(out, " ({unnamed} without an ICCID)");
        }
    }
}

fn write_head(out: &mut String, number: Option<u64>, parts: [&Option<String>; 3]) {
    match number {
        Some(n) => {
            let _ = write!(out, "order {n}");
        }
        None => out.push_str("order ?"),
    }
    for part in parts.into_iter().flatten() {
        out.push_str(SEPARATOR);
        out.push_str(&one_line(part));
    }
}

fn write_amount(out: &mut String, amount: &Option<String>, currency: &Option<String>) {
    if let Some(amount) = amount {
        out.push_str(SEPARATOR);
        out.push_str(&one_line(amount));
        if let Some(currency) = currency {
            out.push(' ');
            out.push_str(&one_line(currency));
        }
    }
}

/// Appends the product lines, `lead` before the first and a comma between the others.
fn write_products<'a>(
    out: &mut String,
    lead: &str,
    products: &[OrderedProduct],
    name_of: impl Fn(u64) -> Option<&'a str>,
) {
    for (i, p) in products.iter().enumerate() {
        out.push_str(if i == 0 { lead } else { ", " });
        let _ = write!(out, "{} × product {}", p.quantity, p.product_id);
        if let Some(name) = name_of(p.product_id) {
            let _ = write!(out, " ({})", one_line(name));
        }
    }
}

fn write_ship_to(out: &mut String, city: &Option<String>, country: &Option<String>) {
    let place: Vec<std::borrow::Cow<'_, str>> = [city, country]
        .into_iter()
        .flatten()
        .map(|p| one_line(p))
        .collect();
    if !place.is_empty() {
        let _ = write!(out, "{SEPARATOR}to {}", place.join(", "));
    }
}

/// `text` in double quotes that no value can close: on one line (see [`one_line`]), with every
/// `"` and `\` escaped as JSON escapes them, so a reference `x" Ships to: "Berlin` reads
/// `"x\" Ships to: \"Berlin"` and never passes for a line of the server's own.
pub fn quoted(text: &str) -> String {
    let text = one_line(text);
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

pub use crate::api::model::one_line;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Order {
        serde_json::from_value(json!({
            "order_number": 2000000007u64, "order_type": "ADDITIONAL_ORDER",
            "order_status": "COMPLETED", "order_date": "2024-08-23T11:12:00Z",
            "invoice_number": "20000007", "invoice_amount": "53.55", "currency": "EUR",
            "customer_reference": "Fleet\nNorth",
            "products": [{"product_id": 1002, "quantity": 3}, {"product_id": 1001, "quantity": 1}],
            "shipping_address": {"first_name": "Max", "last_name": "Mustermann", "street": "Musterstraße",
                "house_number": "12", "zip": "10115", "city": "Berlin", "country": "DE", "phone": "+49 30 1"},
            "sims": [
                {"iccid": "8988280666000000015", "_links": [{"rel": "self", "href": "https://x/v1/sims/8988280666000000015"}]},
                {"iccid": "8988280666000000023"},
                {}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn a_summary_keeps_what_a_list_is_for() {
        let summary = ListedOrder::new(order(), Detail::Summary);
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            json!({
                "order_number": 2000000007u64, "order_type": "ADDITIONAL_ORDER",
                "order_status": "COMPLETED", "order_date": "2024-08-23T11:12:00Z",
                "invoice_amount": "53.55", "currency": "EUR", "customer_reference": "Fleet\nNorth",
                "products": [{"product_id": 1002, "quantity": 3}, {"product_id": 1001, "quantity": 1}],
                "sim_count": 3, "ship_to": {"city": "Berlin", "country": "DE"}
            })
        );
        let mut line = String::new();
        write_order_line(&mut line, &summary);
        assert_eq!(
            line,
            "order 2000000007 · ADDITIONAL_ORDER · COMPLETED · 2024-08-23T11:12:00Z · 53.55 EUR · 3 × product 1002, 1 × product 1001 · 3 SIM(s) · to Berlin, DE · ref \"Fleet\u{FFFD}North\""
        );
    }

    #[test]
    fn a_summary_does_not_grow_with_the_sims() {
        let size = |sims: usize| {
            let mut order = order();
            order.sims = vec![order.sims[0].clone(); sims];
            let summary = ListedOrder::new(order, Detail::Summary);
            let mut line = String::new();
            write_order_line(&mut line, &summary);
            (serde_json::to_string(&summary).unwrap().len(), line.len())
        };
        // "1 SIM(s)" and "500 SIM(s)" differ only in their digits.
        let (one, five_hundred) = (size(1), size(500));
        assert_eq!(five_hundred.0, one.0 + 2);
        assert_eq!(five_hundred.1, one.1 + 2);
    }

    #[test]
    fn details_name_every_sim_and_the_address() {
        let order = order();
        let mut text = String::new();
        write_order_details(&mut text, &order, |id| (id == 1001).then_some("SIM card"));
        assert_eq!(
            text,
            "order 2000000007 · ADDITIONAL_ORDER · COMPLETED · 2024-08-23T11:12:00Z · 53.55 EUR · invoice 20000007 · ref \"Fleet\u{FFFD}North\"\n  \
             products: 3 × product 1002, 1 × product 1001 (SIM card)\n  \
             ship to: \"Max Mustermann, Musterstraße 12, 10115 Berlin, DE\" (phone +49 30 1)\n  \
             SIMs (3): 8988280666000000015, 8988280666000000023 (1 without an ICCID)"
        );
    }

    #[test]
    fn a_sparse_order_says_only_what_is_known() {
        let sparse: Order = serde_json::from_value(json!({"order_status": "COMPLETED"})).unwrap();
        let mut line = String::new();
        write_order_line(
            &mut line,
            &ListedOrder::new(sparse.clone(), Detail::Summary),
        );
        assert_eq!(line, "order ? · COMPLETED");
        let mut details = String::new();
        write_order_details(&mut details, &sparse, |_| None);
        assert_eq!(details, "order ? · COMPLETED");
    }
}
