//! Orders as 1NCE reports them (`GET /v1/orders`, `GET /v1/orders/{n}`), snake_case on the wire
//! and for agents alike.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::lenient::{lenient_string_opt, lenient_u64, lenient_u64_opt, null_as_default};

/// Detailed information about a 1NCE order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    /// Order number, a unique numerical identifier for an order.
    #[serde(default, deserialize_with = "lenient_u64_opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<u64>,
    /// Order type: FIRST_ORDER, ADDITIONAL_ORDER, TOPUP, BULK_TOPUP or TARIFF_CHANGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_type: Option<String>,
    /// Date and time the order was placed (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_date: Option<String>,
    /// Current status of the ordering process, e.g. COMPLETED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_status: Option<String>,
    /// Invoice number of the order's invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_number: Option<String>,
    /// Gross amount of the order as printed on the invoice, a decimal string such as "19.99".
    #[serde(default, deserialize_with = "lenient_string_opt")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_amount: Option<String>,
    /// ISO 4217 currency code of the invoice amount, e.g. EUR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Customer-specific reference given when the order was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_reference: Option<String>,
    /// Address the order was shipped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<DeliveryAddress>,
    /// SIMs included in or affected by this order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub sims: Vec<Sim>,
    /// Product ids and quantities ordered.
    #[serde(default, deserialize_with = "null_as_default")]
    pub products: Vec<OrderedProduct>,
}

impl Order {
    /// When the order was placed, from `order_date` (RFC 3339, as 1NCE sends it), in UTC.
    pub fn placed_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let date = self.order_date.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(date.trim())
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc))
    }
}

/// A product line of an existing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderedProduct {
    /// Id of the product ordered (see past orders or 1NCE's product list).
    #[serde(deserialize_with = "lenient_u64")]
    pub product_id: u64,
    /// Quantity ordered of this product.
    #[serde(deserialize_with = "lenient_u64")]
    pub quantity: u64,
}

/// A 1NCE SIM card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sim {
    /// ICCID of the SIM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iccid: Option<String>,
    /// Links to details about this SIM in the 1NCE API.
    #[serde(
        rename(deserialize = "_links"),
        default,
        deserialize_with = "null_as_default"
    )]
    pub links: Vec<Link>,
}

/// A link to a related 1NCE API resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Link {
    /// Relation of the link, e.g. "self".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel: Option<String>,
    /// URL of the linked resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

/// A shipping address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAddress {
    /// "1" for Mr, "2" for Ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["1", "2", null]))]
    pub salutation: Option<String>,
    // No doc comments from here to `city`: they would become schema descriptions that only
    // repeat the field names, which every agent reads on every turn for nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub house_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 code, e.g. DE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 2))]
    pub country: Option<String>,
    /// Phone number with international prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl fmt::Display for DeliveryAddress {
    /// One line, as on a parcel label: name, company, street and number, zip and city, country.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |parts: &[&Option<String>]| {
            parts
                .iter()
                .filter_map(|p| p.as_deref())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let lines = [
            join(&[&self.first_name, &self.last_name]),
            join(&[&self.company]),
            join(&[&self.street, &self.house_number]),
            join(&[&self.address_line2]),
            join(&[&self.zip, &self.city]),
            join(&[&self.country]),
        ];
        let text: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        f.write_str(&text.join(", "))
    }
}

/// What 1NCE told us after accepting a new order.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedOrder {
    /// The success status 1NCE answered with.
    pub status: u16,
    /// The new order's number, from the `Location` header or the response body. `None` when 1NCE
    /// accepted the order but named neither.
    pub order_number: Option<u64>,
    /// The order as 1NCE returned it in the body, when it did.
    pub order: Option<Order>,
}
