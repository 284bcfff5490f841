//! The 1NCE order data, as read from and written to the Order Management API.
//!
//! Responses are snake_case on the wire and stay snake_case for agents, so one type serves both
//! (the lone exception, a SIM's `_links`, is renamed to `links` on the way out). The request body of
//! a new order is camelCase inside `products` (`productId`), so it has its own wire type,
//! [`WireNewOrder`], built only by the client. Doc comments here become the schema descriptions
//! agents read: they follow the 1NCE documents.
//!
//! Parsing is lenient where the documents are loose: `order_number` is declared a JSON `number`,
//! so integral floats and numeric strings are accepted; every response field is optional.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

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

/// Address where the products of an order are delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAddress {
    /// Salutation: "1" for Mr, "2" for Ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["1", "2", null]))]
    pub salutation: Option<String>,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Company name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Street name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// Second address line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    /// House number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub house_number: Option<String>,
    /// ZIP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. DE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 2))]
    pub country: Option<String>,
    /// Phone number with international prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl DeliveryAddress {
    /// Checks the fields 1NCE constrains and returns the address in canonical form: strings
    /// trimmed, empty strings dropped, the country upper-cased.
    pub fn validated(&self) -> Result<DeliveryAddress, ValidationError> {
        let clean = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let mut address = DeliveryAddress {
            salutation: clean(&self.salutation),
            first_name: clean(&self.first_name),
            last_name: clean(&self.last_name),
            company: clean(&self.company),
            street: clean(&self.street),
            address_line2: clean(&self.address_line2),
            house_number: clean(&self.house_number),
            zip: clean(&self.zip),
            city: clean(&self.city),
            country: clean(&self.country),
            phone: clean(&self.phone),
        };
        if let Some(s) = &address.salutation
            && s != "1"
            && s != "2"
        {
            return Err(ValidationError::new(format!(
                "delivery_address.salutation must be \"1\" (Mr) or \"2\" (Ms), not {s:?}"
            )));
        }
        if let Some(c) = &address.country {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ValidationError::new(format!(
                    "delivery_address.country must be a two-letter ISO 3166-1 code such as \"DE\", not {c:?}"
                )));
            }
            address.country = Some(c.to_ascii_uppercase());
        }
        for (name, value) in address.fields() {
            if value.chars().count() > MAX_ADDRESS_FIELD_CHARS {
                return Err(ValidationError::new(format!(
                    "delivery_address.{name} must be at most {MAX_ADDRESS_FIELD_CHARS} characters"
                )));
            }
            refuse_invisible(&format!("delivery_address.{name}"), value)?;
        }
        if address == DeliveryAddress::default() {
            return Err(ValidationError::new(
                "delivery_address is empty: give a full address or leave it out to use the account's default address",
            ));
        }
        Ok(address)
    }

    /// The set fields with their names, in document order.
    fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("salutation", &self.salutation),
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("company", &self.company),
            ("street", &self.street),
            ("address_line2", &self.address_line2),
            ("house_number", &self.house_number),
            ("zip", &self.zip),
            ("city", &self.city),
            ("country", &self.country),
            ("phone", &self.phone),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().map(|v| (name, v)))
    }
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

/// A product line of a new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductLine {
    /// Id of the product to order (see past orders or 1NCE's product list), e.g. 1001.
    #[serde(deserialize_with = "lenient_i64")]
    #[schemars(range(min = 1))]
    pub product_id: i64,
    /// Quantity of this product to order, at least 1.
    #[serde(deserialize_with = "lenient_i64")]
    #[schemars(range(min = 1))]
    pub quantity: i64,
}

/// A validated new order: what the client posts and what a confirmation token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewOrder {
    pub products: Vec<NewOrderProduct>,
    pub delivery_address: Option<DeliveryAddress>,
    pub customer_reference: Option<String>,
}

/// One validated product line of a [`NewOrder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NewOrderProduct {
    pub product_id: u64,
    pub quantity: u64,
}

/// Most product lines one order may carry. 1NCE publishes no limit; this keeps a runaway agent
/// from building a huge request, and no real catalogue has this many products.
pub const MAX_PRODUCT_LINES: usize = 50;
/// Longest customer reference accepted.
pub const MAX_REFERENCE_CHARS: usize = 100;
/// Longest value accepted in one field of a delivery address.
pub const MAX_ADDRESS_FIELD_CHARS: usize = 200;

/// Refuses free text holding a character that is invisible or moves text around where a person
/// reads it: control characters (Cc), formatting characters such as bidi overrides, zero-width
/// characters and the BOM (Cf), and the line and paragraph separators U+2028 and U+2029 (Zl, Zp).
/// Any of them could make the approval form show the person something other than what is
/// ordered, e.g. a forged line. Every other character is allowed: letters of every script,
/// combining marks, emoji, ordinary spaces.
///
/// `field` is the argument's name as the agent spelled it, e.g. `delivery_address.city`.
pub fn refuse_invisible(field: &str, value: &str) -> Result<(), ValidationError> {
    match value
        .chars()
        .find_map(|c| invisible(c).map(|kind| (c, kind)))
    {
        Some((c, kind)) => Err(ValidationError::new(format!(
            "{field} contains U+{:04X} ({kind}), which could disguise what the person approves; remove it",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// What kind of invisible or line-breaking character `c` is (Unicode categories Cc, Cf, Zl,
/// Zp), or `None` for a character a person sees where it stands.
pub fn invisible(c: char) -> Option<&'static str> {
    use unicode_general_category::{GeneralCategory, get_general_category};
    match get_general_category(c) {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("an invisible formatting character"),
        GeneralCategory::LineSeparator => Some("a line separator"),
        GeneralCategory::ParagraphSeparator => Some("a paragraph separator"),
        _ => None,
    }
}

impl NewOrder {
    /// Validates an order as an agent gave it, before anything is sent anywhere.
    pub fn new(
        products: &[ProductLine],
        delivery_address: Option<&DeliveryAddress>,
        customer_reference: Option<&str>,
    ) -> Result<NewOrder, ValidationError> {
        if products.is_empty() {
            return Err(ValidationError::new(
                "products must list at least one {product_id, quantity}",
            ));
        }
        if products.len() > MAX_PRODUCT_LINES {
            return Err(ValidationError::new(format!(
                "products may list at most {MAX_PRODUCT_LINES} lines, not {}",
                products.len()
            )));
        }
        let mut lines = Vec::with_capacity(products.len());
        for (i, line) in products.iter().enumerate() {
            let product_id = u64::try_from(line.product_id)
                .ok()
                .filter(|&id| id >= 1)
                .ok_or_else(|| {
                    ValidationError::new(format!(
                        "products[{i}].product_id must be a positive integer, not {}",
                        line.product_id
                    ))
                })?;
            let quantity = u64::try_from(line.quantity)
                .ok()
                .filter(|&q| (1..=1_000_000).contains(&q))
                .ok_or_else(|| {
                    ValidationError::new(format!(
                        "products[{i}].quantity must be an integer from 1 to 1000000, not {}",
                        line.quantity
                    ))
                })?;
            if lines
                .iter()
                .any(|l: &NewOrderProduct| l.product_id == product_id)
            {
                return Err(ValidationError::new(format!(
                    "product {product_id} is listed twice: give each product once with the total quantity"
                )));
            }
            lines.push(NewOrderProduct {
                product_id,
                quantity,
            });
        }
        let delivery_address = delivery_address.map(|a| a.validated()).transpose()?;
        let customer_reference = match customer_reference.map(str::trim) {
            None | Some("") => None,
            Some(r) if r.chars().count() > MAX_REFERENCE_CHARS => {
                return Err(ValidationError::new(format!(
                    "customer_reference must be at most {MAX_REFERENCE_CHARS} characters"
                )));
            }
            Some(r) => {
                refuse_invisible("customer_reference", r)?;
                Some(r.to_owned())
            }
        };
        Ok(NewOrder {
            products: lines,
            delivery_address,
            customer_reference,
        })
    }

    /// The request body exactly as 1NCE's document spells it.
    pub fn to_wire(&self) -> WireNewOrder<'_> {
        WireNewOrder {
            products: self
                .products
                .iter()
                .map(|p| WireOrderLine {
                    product_id: p.product_id,
                    quantity: p.quantity,
                })
                .collect(),
            delivery_address: self.delivery_address.as_ref(),
            customer_reference: self.customer_reference.as_deref(),
        }
    }
}

/// `POST /v1/orders` body (`Additional_Order` in the 1NCE document).
#[derive(Debug, Serialize)]
pub struct WireNewOrder<'a> {
    pub products: Vec<WireOrderLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_address: Option<&'a DeliveryAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_reference: Option<&'a str>,
}

/// One product of a `POST /v1/orders` body (`Ordered_product`): camelCase `productId`.
#[derive(Debug, Serialize)]
pub struct WireOrderLine {
    #[serde(rename = "productId")]
    pub product_id: u64,
    pub quantity: u64,
}

/// Sort keys 1NCE accepts for the order list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    OrderNumber,
    OrderStatus,
    OrderDate,
}

impl SortKey {
    pub const ALL: [SortKey; 3] = [
        SortKey::OrderNumber,
        SortKey::OrderStatus,
        SortKey::OrderDate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::OrderNumber => "order_number",
            SortKey::OrderStatus => "order_status",
            SortKey::OrderDate => "order_date",
        }
    }
}

/// Largest page 1NCE serves.
pub const MAX_PAGE_SIZE: u32 = 10;
/// Highest page number accepted; far past any real account, low enough to stay a sane integer.
pub const MAX_PAGE: u32 = 1_000_000;

/// A validated request for one page of the order list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOrdersQuery {
    pub page: u32,
    pub page_size: u32,
    pub sort: Vec<SortKey>,
}

impl ListOrdersQuery {
    /// Validates page (≥ 1), page size (1 to 10) and a comma-separated sort list.
    pub fn new(
        page: Option<i64>,
        page_size: Option<i64>,
        sort: Option<&str>,
    ) -> Result<ListOrdersQuery, ValidationError> {
        let page = match page {
            None => 1,
            Some(p) => u32::try_from(p)
                .ok()
                .filter(|p| (1..=MAX_PAGE).contains(p))
                .ok_or_else(|| {
                    ValidationError::new(format!(
                        "page must be an integer from 1 to {MAX_PAGE}, not {p}"
                    ))
                })?,
        };
        let page_size = match page_size {
            None => MAX_PAGE_SIZE,
            Some(s) => u32::try_from(s)
                .ok()
                .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
                .ok_or_else(|| {
                    ValidationError::new(format!(
                        "page_size must be an integer from 1 to {MAX_PAGE_SIZE}, not {s}"
                    ))
                })?,
        };
        let mut keys = Vec::new();
        if let Some(sort) = sort.map(str::trim).filter(|s| !s.is_empty()) {
            for raw in sort.split(',') {
                let name = raw.trim();
                let key = SortKey::ALL
                    .into_iter()
                    .find(|k| k.as_str() == name)
                    .ok_or_else(|| {
                        ValidationError::new(format!(
                            "sort must be a comma-separated list of order_number, order_status and order_date; {name:?} is not one of them"
                        ))
                    })?;
                if keys.contains(&key) {
                    return Err(ValidationError::new(format!(
                        "sort names {name} twice; name each key at most once"
                    )));
                }
                keys.push(key);
            }
        }
        Ok(ListOrdersQuery {
            page,
            page_size,
            sort: keys,
        })
    }

    /// The `sort` query value, or `None` to leave 1NCE's default (order_number).
    pub fn sort_param(&self) -> Option<String> {
        (!self.sort.is_empty()).then(|| {
            self.sort
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
    }
}

/// One page of the order list, with the totals 1NCE reported in its `X-Total-*` headers.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub page: u32,
    pub page_size: u32,
    pub total_pages: Option<u64>,
    pub total_count: Option<u64>,
}

impl OrderPage {
    /// Whether a later page may hold more orders. With the page count known this is exact;
    /// without it, a full page means there may be more and a short one means the end.
    pub fn has_more(&self) -> bool {
        match self.total_pages {
            Some(total) => u64::from(self.page) < total,
            None => self.orders.len() >= self.page_size as usize,
        }
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

/// Input that breaks a rule of the 1NCE API, caught before any request is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(String);

impl ValidationError {
    pub fn new(message: impl Into<String>) -> Self {
        ValidationError(message.into())
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a non-negative integer given as a JSON integer, an integral float or a numeric string.
fn number_to_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(53))
                .map(|f| f as u64)
        }),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    number_to_u64(&value)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {value}")))
}

fn lenient_u64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value => number_to_u64(&value).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a whole number, got {value}"))
        }),
    }
}

/// Reads an integer argument given as a JSON integer, an integral float or a numeric string:
/// some MCP clients send every argument a person typed as a string.
fn integer_arg(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 2f64.powi(53))
                .map(|f| f as i64)
        }),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Deserializes a tool's integer argument leniently (see [`integer_arg`]).
pub fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    integer_arg(&value)
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {value}")))
}

/// Like [`lenient_i64`] for an optional argument; null counts as absent.
pub fn lenient_i64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value => integer_arg(&value)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {value}"))),
    }
}

/// Accepts a string or a number (1NCE documents `invoice_amount` as a string, but a number
/// would carry the same meaning).
fn lenient_string_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_parses_documented_example_leniently() {
        let order: Order = serde_json::from_value(json!({
            "order_number": 2000000001.0,
            "order_type": "FIRST_ORDER",
            "invoice_amount": 19.99,
            "sims": [{"iccid": "8988280666000000000", "_links": [{"rel": "self", "href": "https://x/v1/sims/1"}]}],
            "products": [{"product_id": "1001", "quantity": 1}],
            "unknown_field": true
        }))
        .unwrap();
        assert_eq!(order.order_number, Some(2000000001));
        assert_eq!(order.invoice_amount.as_deref(), Some("19.99"));
        assert_eq!(order.products[0].product_id, 1001);
        let out = serde_json::to_value(&order).unwrap();
        assert_eq!(out["sims"][0]["links"][0]["rel"], "self");
        assert!(out["sims"][0].get("_links").is_none());
    }

    #[test]
    fn list_query_validation_names_what_is_allowed() {
        let q = ListOrdersQuery::new(None, None, None).unwrap();
        assert_eq!((q.page, q.page_size, q.sort_param()), (1, 10, None));
        let q = ListOrdersQuery::new(Some(3), Some(5), Some("order_status, order_date")).unwrap();
        assert_eq!(q.sort_param().as_deref(), Some("order_status,order_date"));
        for (page, size, sort, needle) in [
            (Some(0), None, None, "page must be an integer from 1"),
            (Some(-4), None, None, "page must be"),
            (
                None,
                Some(11),
                None,
                "page_size must be an integer from 1 to 10",
            ),
            (None, Some(0), None, "page_size"),
            (
                None,
                None,
                Some("price"),
                "order_number, order_status and order_date",
            ),
            (None, None, Some("order_date,order_date"), "twice"),
        ] {
            let err = ListOrdersQuery::new(page, size, sort).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn new_order_validation() {
        let line = |product_id, quantity| ProductLine {
            product_id,
            quantity,
        };
        assert!(
            NewOrder::new(&[], None, None)
                .unwrap_err()
                .to_string()
                .contains("at least one")
        );
        assert!(
            NewOrder::new(&[line(1001, 0)], None, None)
                .unwrap_err()
                .to_string()
                .contains("quantity must be")
        );
        assert!(
            NewOrder::new(&[line(1001, 1), line(1001, 2)], None, None)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let bad_salutation = DeliveryAddress {
            salutation: Some("3".into()),
            ..Default::default()
        };
        assert!(
            NewOrder::new(&[line(1001, 1)], Some(&bad_salutation), None)
                .unwrap_err()
                .to_string()
                .contains("\"1\" (Mr) or \"2\" (Ms)")
        );
        let bad_country = DeliveryAddress {
            country: Some("DEU".into()),
            ..Default::default()
        };
        assert!(
            NewOrder::new(&[line(1001, 1)], Some(&bad_country), None)
                .unwrap_err()
                .to_string()
                .contains("two-letter")
        );
        let ok = DeliveryAddress {
            city: Some(" Cologne ".into()),
            country: Some("de".into()),
            ..Default::default()
        };
        let order = NewOrder::new(&[line(1001, 5)], Some(&ok), Some("  ")).unwrap();
        let address = order.delivery_address.as_ref().unwrap();
        assert_eq!(address.country.as_deref(), Some("DE"));
        assert_eq!(address.to_string(), "Cologne, DE");
        assert_eq!(order.customer_reference, None);
        assert_eq!(
            serde_json::to_value(order.to_wire()).unwrap(),
            json!({"products": [{"productId": 1001, "quantity": 5}],
                   "delivery_address": {"city": "Cologne", "country": "DE"}})
        );
    }

    /// Every free-text field of an order, each holding `value`, through [`NewOrder::new`].
    fn order_with_everywhere(value: &str) -> Vec<(String, Result<NewOrder, ValidationError>)> {
        let line = [ProductLine {
            product_id: 1001,
            quantity: 1,
        }];
        let text = Some(value.to_owned());
        let mut results = Vec::new();
        for field in [
            "first_name",
            "last_name",
            "company",
            "street",
            "address_line2",
            "house_number",
            "zip",
            "city",
            "phone",
        ] {
            let mut address = DeliveryAddress::default();
            *match field {
                "first_name" => &mut address.first_name,
                "last_name" => &mut address.last_name,
                "company" => &mut address.company,
                "street" => &mut address.street,
                "address_line2" => &mut address.address_line2,
                "house_number" => &mut address.house_number,
                "zip" => &mut address.zip,
                "city" => &mut address.city,
                _ => &mut address.phone,
            } = text.clone();
            results.push((
                format!("delivery_address.{field}"),
                NewOrder::new(&line, Some(&address), None),
            ));
        }
        results.push((
            "customer_reference".to_owned(),
            NewOrder::new(&line, None, Some(value)),
        ));
        results
    }

    #[test]
    fn invisible_characters_are_refused_in_every_free_text_field() {
        for (c, category, kind) in [
            ('\u{0}', "Cc", "a control character"),
            ('\u{1b}', "Cc", "a control character"),
            ('\n', "Cc", "a control character"),
            ('\u{7f}', "Cc", "a control character"),
            ('\u{85}', "Cc", "a control character"),
            ('\u{200b}', "Cf", "an invisible formatting character"),
            ('\u{200d}', "Cf", "an invisible formatting character"),
            ('\u{202e}', "Cf", "an invisible formatting character"),
            ('\u{2066}', "Cf", "an invisible formatting character"),
            ('\u{feff}', "Cf", "an invisible formatting character"),
            ('\u{e0041}', "Cf", "an invisible formatting character"),
            ('\u{2028}', "Zl", "a line separator"),
            ('\u{2029}', "Zp", "a paragraph separator"),
        ] {
            assert_eq!(
                unicode_general_category::get_general_category(c).abbreviation(),
                category
            );
            let code = format!("U+{:04X}", u32::from(c));
            for (field, result) in order_with_everywhere(&format!("Haupt{c}straße")) {
                let err = result.expect_err(&format!("{code} accepted in {field}"));
                assert_eq!(
                    err.to_string(),
                    format!(
                        "{field} contains {code} ({kind}), which could disguise what the person approves; remove it"
                    )
                );
            }
        }
        let err = refuse_invisible("x", "\u{e0041}").unwrap_err();
        assert!(err.to_string().contains("U+E0041"), "{err}");
    }

    #[test]
    fn visible_text_of_any_script_is_kept_as_given() {
        for value in [
            "Müller",
            "Straße",
            "北京市朝阳区",
            "📦 Lager 🦀",
            "شارع الملك فهد",
            "e\u{301}cole", // e + COMBINING ACUTE ACCENT (Mn)
            "क्षत्रिय",
            "+49 (0) 221 123-456",
            "Apt.\u{a0}5", // NO-BREAK SPACE is a space separator (Zs), visible as a space
        ] {
            for (field, result) in order_with_everywhere(value) {
                let order = result.unwrap_or_else(|e| panic!("{value:?} in {field}: {e}"));
                let wire = serde_json::to_value(order.to_wire()).unwrap();
                let shown = wire.to_string();
                assert!(shown.contains(value), "{field}: {shown}");
            }
        }
    }

    #[test]
    fn length_limits_still_apply() {
        for (field, result) in order_with_everywhere(&"a".repeat(201)) {
            let err = result.unwrap_err().to_string();
            if field == "customer_reference" {
                assert_eq!(err, "customer_reference must be at most 100 characters");
            } else {
                assert_eq!(err, format!("{field} must be at most 200 characters"));
            }
        }
        // Characters are counted, not bytes.
        for (field, result) in order_with_everywhere(&"ü".repeat(100)) {
            assert!(result.is_ok(), "{field}");
        }
    }

    #[test]
    fn has_more_with_and_without_totals() {
        let page = |n: usize, total_pages| OrderPage {
            orders: vec![serde_json::from_value(json!({})).unwrap(); n],
            page: 2,
            page_size: 10,
            total_pages,
            total_count: None,
        };
        assert!(page(10, Some(3)).has_more());
        assert!(!page(10, Some(2)).has_more());
        assert!(page(10, None).has_more());
        assert!(!page(4, None).has_more());
    }
}
