//! `GET /v1/products`: the catalogue that an order's product ids refer to, with each product's
//! quantity limits and prices, and a short-lived cache of it.
//!
//! Prices are parsed from the JSON number's own digits into integer cents ([`Cents`]), never
//! through `f64`, so totals shown to a person are exact.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Deserializer};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::model::lenient::number_to_u64;
use super::model::one_line;
use super::{ApiError, Client, Effect};

/// How long a fetched catalogue is used before it is read again.
pub const CATALOGUE_TTL: Duration = Duration::from_secs(300);

/// An amount of money in hundredths of its currency unit (cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Cents(pub i64);

impl Cents {
    /// Parses a decimal amount such as `10`, `10.0`, `9.99` or `-0.5` exactly. More than two
    /// decimals are accepted only when the extra digits are zeros: a sub-cent price is refused
    /// rather than rounded.
    pub fn parse(text: &str) -> Option<Cents> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if fraction.len() > 2 && fraction[2..].bytes().any(|b| b != b'0') {
            return None;
        }
        let mut cents_part = fraction.chars().take(2).collect::<String>();
        while cents_part.len() < 2 {
            cents_part.push('0');
        }
        let whole: i64 = whole.parse().ok()?;
        let cents: i64 = cents_part.parse().ok()?;
        let value = whole.checked_mul(100)?.checked_add(cents)?;
        Some(Cents(if negative { -value } else { value }))
    }

    pub fn checked_mul(self, factor: u64) -> Option<Cents> {
        i64::try_from(factor)
            .ok()
            .and_then(|f| self.0.checked_mul(f))
            .map(Cents)
    }

    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

/// Two decimals, e.g. `1234.50`.
impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// One price component of a product, as 1NCE lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// 1NCE's name of the charge, e.g. `provisionCharge`.
    pub name: String,
    /// Net amount per unit.
    pub amount_net: Cents,
    /// ISO currency code, upper case, e.g. `EUR`.
    pub currency: String,
}

/// A product of the catalogue, as far as ordering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: u64,
    /// Display name, e.g. "1NCE IoT FlexSIM - Standard".
    pub name: String,
    pub material: Option<String>,
    pub package_size: Option<u64>,
    /// Smallest quantity one order may carry (1 when 1NCE names none).
    pub min_quantity: u64,
    /// Largest quantity one order may carry, when 1NCE names one.
    pub max_quantity: Option<u64>,
    pub max_quantity_per_customer: Option<u64>,
    /// Minimum contract duration in months, when given.
    pub min_contract_duration: Option<u64>,
    pub one_time_charges: Vec<Charge>,
    pub recurring_charges: Vec<Charge>,
}

/// The wire shape of a product (`product-information.openapi.json`); lenient, as every field
/// but `id` may be missing in practice.
#[derive(Deserialize)]
struct WireCatalogueProduct {
    #[serde(deserialize_with = "number_from_any")]
    id: u64,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    material: Option<String>,
    #[serde(default, deserialize_with = "opt_number_from_any")]
    package_size: Option<u64>,
    #[serde(
        default,
        rename = "minQuantity",
        deserialize_with = "opt_number_from_any"
    )]
    min_quantity: Option<u64>,
    #[serde(
        default,
        rename = "maxQuantity",
        deserialize_with = "opt_number_from_any"
    )]
    max_quantity: Option<u64>,
    #[serde(
        default,
        rename = "maxQuantityPerCustomer",
        deserialize_with = "opt_number_from_any"
    )]
    max_quantity_per_customer: Option<u64>,
    #[serde(default, deserialize_with = "opt_number_from_any")]
    min_contract_duration: Option<u64>,
    #[serde(default)]
    one_time_charges: Option<Vec<WireCharge>>,
    #[serde(default)]
    recurring_charges: Option<Vec<WireCharge>>,
}

#[derive(Deserialize)]
struct WireCharge {
    #[serde(default)]
    name: Option<String>,
    amount_net: serde_json::Value,
    #[serde(default)]
    currency: Option<String>,
}

impl WireCharge {
    fn parse(self, product: u64) -> Result<Charge, ApiError> {
        let text = match &self.amount_net {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => String::new(),
        };
        let amount_net = Cents::parse(&text).ok_or_else(|| ApiError::BadResponse {
            reason: format!(
                "product {product} has a charge whose amount_net {text:?} is not an amount of money"
            ),
        })?;
        if amount_net.0 < 0 {
            return Err(ApiError::BadResponse {
                reason: format!(
                    "product {product} has a negative charge ({text}); an order is never priced below zero"
                ),
            });
        }
        let currency = self
            .currency
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::BadResponse {
                reason: format!("product {product} has a charge without a currency"),
            })?;
        // What a person reads beside every price: an ISO 4217 code, nothing else.
        if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(ApiError::BadResponse {
                reason: format!(
                    "product {product} has a charge in currency {:?}, not a three-letter currency code",
                    one_line(&currency)
                ),
            });
        }
        Ok(Charge {
            name: one_line(&self.name.unwrap_or_default()).into_owned(),
            amount_net,
            currency,
        })
    }
}

impl WireCatalogueProduct {
    fn parse(self) -> Result<Product, ApiError> {
        let id = self.id;
        let charges = |list: Option<Vec<WireCharge>>| -> Result<Vec<Charge>, ApiError> {
            list.unwrap_or_default()
                .into_iter()
                .map(|c| c.parse(id))
                .collect()
        };
        Ok(Product {
            id,
            // Cleaned here, once: a name is shown beside prices in previews and approval forms,
            // and no line break or invisible character from upstream may reach those.
            name: self
                .product
                .filter(|p| !p.trim().is_empty())
                .map(|p| one_line(&p).into_owned())
                .unwrap_or_else(|| format!("product {id}")),
            material: self.material.map(|m| one_line(&m).into_owned()),
            package_size: self.package_size,
            min_quantity: self.min_quantity.unwrap_or(1).max(1),
            max_quantity: self.max_quantity,
            max_quantity_per_customer: self.max_quantity_per_customer,
            min_contract_duration: self.min_contract_duration,
            one_time_charges: charges(self.one_time_charges)?,
            recurring_charges: charges(self.recurring_charges)?,
        })
    }
}

fn number_from_any<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    number_to_u64(&value)
        .ok_or_else(|| serde::de::Error::custom(format!("not a product id: {value}")))
}

fn opt_number_from_any<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.as_ref().and_then(number_to_u64))
}

/// Parses the body of `GET /v1/products`, a bare JSON array.
pub fn parse_products(body: &[u8]) -> Result<Vec<Product>, ApiError> {
    let wire: Vec<WireCatalogueProduct> =
        serde_json::from_slice(body).map_err(|e| ApiError::BadResponse {
            reason: format!("the product list is not the documented JSON ({e})"),
        })?;
    wire.into_iter().map(WireCatalogueProduct::parse).collect()
}

impl Client {
    /// `GET /v1/products`: every product the account can order. Uncached; see [`Catalogue`].
    pub async fn list_products(&self) -> Result<Vec<Product>, ApiError> {
        let answer = self
            .send(Method::GET, "v1/products", Effect::Read, |r| r)
            .await?;
        parse_products(&answer.body)
    }
}

/// A fetched catalogue and when it was fetched.
type Fetched = (Instant, Arc<Vec<Product>>);

/// The product catalogue, read from 1NCE at most once per [`CATALOGUE_TTL`] and shared by all
/// clones. Concurrent callers wait for one fetch rather than sending one each.
#[derive(Clone)]
pub struct Catalogue {
    client: Client,
    ttl: Duration,
    cached: Arc<Mutex<Option<Fetched>>>,
}

impl fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalogue")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Catalogue {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Catalogue {
            client,
            ttl,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// The catalogue, from the cache while it is fresh. A failed fetch is not cached.
    pub async fn products(&self) -> Result<Arc<Vec<Product>>, ApiError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, products)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(Arc::clone(products));
        }
        let products = Arc::new(self.client.list_products().await?);
        *cached = Some((Instant::now(), Arc::clone(&products)));
        Ok(products)
    }

    /// The catalogue read now, whatever the cache holds (which it then replaces): for the
    /// moment an order is confirmed, so a price changed since the preview is seen.
    pub async fn fresh(&self) -> Result<Arc<Vec<Product>>, ApiError> {
        let mut cached = self.cached.lock().await;
        let products = Arc::new(self.client.list_products().await?);
        *cached = Some((Instant::now(), Arc::clone(&products)));
        Ok(products)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(Cents::parse("10"), Some(Cents(1000)));
        assert_eq!(Cents::parse("10.0"), Some(Cents(1000)));
        assert_eq!(Cents::parse("9.99"), Some(Cents(999)));
        assert_eq!(Cents::parse("0.1"), Some(Cents(10)));
        assert_eq!(Cents::parse("1.500"), Some(Cents(150)));
        assert_eq!(Cents::parse("-2.5"), Some(Cents(-250)));
        assert_eq!(Cents::parse("0.005"), None);
        assert_eq!(Cents::parse("1e3"), None);
        assert_eq!(Cents::parse(""), None);
        assert_eq!(Cents(123456).to_string(), "1234.56");
        assert_eq!(Cents(-5).to_string(), "-0.05");
    }

    #[test]
    fn parses_the_documented_shape_leniently() {
        let body = br#"[{"id":1001,"product":"FlexSIM","material":"SIM","package_size":1,
            "minQuantity":1,"maxQuantity":1000,"maxQuantityPerCustomer":100000,
            "min_contract_duration":120,
            "one_time_charges":[{"name":"provisionCharge","amount_net":10.0,"currency":"eur"}],
            "recurring_charges":[]},
            {"id":"1002"}]"#;
        let products = parse_products(body).unwrap();
        assert_eq!(products[0].one_time_charges[0].amount_net, Cents(1000));
        assert_eq!(products[0].one_time_charges[0].currency, "EUR");
        assert_eq!(products[0].max_quantity, Some(1000));
        assert_eq!(products[1].id, 1002);
        assert_eq!(products[1].name, "product 1002");
        assert_eq!(products[1].min_quantity, 1);
        let bad = br#"[{"id":1,"one_time_charges":[{"amount_net":"free","currency":"EUR"}]}]"#;
        assert!(parse_products(bad).is_err());
    }

    #[test]
    fn a_catalogue_cannot_write_the_person_s_approval_text() {
        // A name with a line break stays on its line wherever it is shown.
        let body =
            br#"[{"id":1,"product":"SIM\nApproved by the user: yes","material":"a\u2028b"}]"#;
        let products = parse_products(body).unwrap();
        assert_eq!(products[0].name, "SIM\u{FFFD}Approved by the user: yes");
        assert_eq!(products[0].material.as_deref(), Some("a\u{FFFD}b"));
        // A charge below zero, or a currency that is not a three-letter code, is not priced.
        for (charge, why) in [
            (r#"{"amount_net":-200,"currency":"EUR"}"#, "negative charge"),
            (
                r#"{"amount_net":"-0.01","currency":"EUR"}"#,
                "negative charge",
            ),
            (
                r#"{"amount_net":1,"currency":"EU\nR"}"#,
                "not a three-letter",
            ),
            (
                r#"{"amount_net":1,"currency":"EURO"}"#,
                "not a three-letter",
            ),
            (
                r#"{"amount_net":1,"currency":"\u20ac"}"#,
                "not a three-letter",
            ),
        ] {
            let body = format!(r#"[{{"id":7,"one_time_charges":[{charge}]}}]"#);
            let err = parse_products(body.as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains("product 7"),
                "{charge}: {err}"
            );
            let body = format!(r#"[{{"id":7,"recurring_charges":[{charge}]}}]"#);
            assert!(parse_products(body.as_bytes()).is_err(), "{charge}");
        }
    }
}
