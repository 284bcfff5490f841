//! The sandbox's data shapes, serialised exactly as 1NCE's documents spell them:
//! snake_case orders, mixed camelCase/snake_case products.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

/// Money is kept in euro cents so totals never pick up floating-point noise.
pub(crate) type Cents = u64;

/// German VAT applied to every invoice, as a percentage.
const VAT_PERCENT: u64 = 19;

/// A catalogue entry of `GET /v1/products`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Product {
    pub id: u64,
    pub product: &'static str,
    pub material: &'static str,
    pub package_size: u64,
    #[serde(rename = "minQuantity")]
    pub min_quantity: u64,
    #[serde(rename = "maxQuantity")]
    pub max_quantity: u64,
    #[serde(rename = "maxQuantityPerCustomer")]
    pub max_quantity_per_customer: u64,
    pub min_contract_duration: u64,
    pub one_time_charges: Vec<Charge>,
    pub recurring_charges: Vec<Charge>,
}

impl Product {
    /// Net one-time price of one unit, the basis of an order's invoice.
    fn one_time_net(&self) -> Cents {
        self.one_time_charges.iter().map(|c| c.amount_net).sum()
    }
}

/// One price component of a product.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Charge {
    pub name: &'static str,
    /// Serialised as a JSON number of euros (`10.0`), as the document's example shows.
    #[serde(serialize_with = "cents_as_euros")]
    pub amount_net: Cents,
    pub currency: &'static str,
}

fn cents_as_euros<S: Serializer>(cents: &Cents, s: S) -> Result<S::Ok, S::Error> {
    // Catalogue prices are small, so the conversion to f64 is exact enough for display.
    s.serialize_f64(*cents as f64 / 100.0)
}

/// A delivery address. Every field is optional because a POSTed address is stored as given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeliveryAddress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salutation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub house_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// The order types the Order schema enumerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum OrderType {
    FirstOrder,
    AdditionalOrder,
    Topup,
    BulkTopup,
    TariffChange,
}

/// Order states. 1NCE only documents `COMPLETED`; the others are plausible extras.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum OrderStatus {
    InProgress,
    Shipped,
    Completed,
    Cancelled,
}

impl OrderStatus {
    /// The wire spelling, which is also what `sort=order_status` compares.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OrderStatus::InProgress => "IN_PROGRESS",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    /// The status spelled `text` on the wire.
    pub(crate) fn parse(text: &str) -> Option<OrderStatus> {
        [
            OrderStatus::InProgress,
            OrderStatus::Shipped,
            OrderStatus::Completed,
            OrderStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One line of an order, in the snake_case spelling responses use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderedProduct {
    pub product_id: u64,
    pub quantity: u64,
}

/// A SIM card shipped with, or affected by, an order.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Sim {
    pub iccid: String,
    #[serde(rename = "_links")]
    pub links: Vec<Link>,
}

impl Sim {
    /// A SIM with its `self` link pointing at the sandbox's (unserved) SIM resource.
    pub(crate) fn new(base_url: &str, iccid: String) -> Sim {
        let href = format!("{base_url}/v1/sims/{iccid}");
        Sim {
            iccid,
            links: vec![Link { rel: "self", href }],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Link {
    pub rel: &'static str,
    pub href: String,
}

/// An order as `GET /v1/orders` returns it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Order {
    pub order_number: u64,
    pub order_type: OrderType,
    #[serde(serialize_with = "rfc3339_seconds")]
    pub order_date: DateTime<Utc>,
    pub order_status: OrderStatus,
    pub invoice_number: String,
    pub invoice_amount: String,
    pub currency: &'static str,
    pub shipping_address: DeliveryAddress,
    pub sims: Vec<Sim>,
    pub products: Vec<OrderedProduct>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_reference: Option<String>,
}

fn rfc3339_seconds<S: Serializer>(date: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&date.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The invoice total of some order lines: one-time net charges × quantity, plus VAT,
/// rounded half up to cents and printed with two decimals (`"19.99"`).
/// Lines naming no known product add nothing; callers validate ids beforehand.
pub(crate) fn invoice_amount(lines: &[OrderedProduct], catalogue: &[Product]) -> String {
    let net: Cents = lines
        .iter()
        .filter_map(|line| {
            let product = catalogue.iter().find(|p| p.id == line.product_id)?;
            Some(product.one_time_net().saturating_mul(line.quantity))
        })
        .fold(0, Cents::saturating_add);
    let gross = net.saturating_mul(100 + VAT_PERCENT).saturating_add(50) / 100;
    format!("{}.{:02}", gross / 100, gross % 100)
}
