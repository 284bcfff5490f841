//! A new order: the agent's arguments, validated into [`NewOrder`] before anything is sent, and
//! the camelCase body `POST /v1/orders` takes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::lenient::lenient_i64;
use super::order::DeliveryAddress;

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
        let missing = address.missing();
        if !missing.is_empty() {
            return Err(ValidationError::new(format!(
                "delivery_address cannot ship: it has no {}. A parcel needs a recipient (first_name and last_name, or company), street, zip, city and country; give them, or leave delivery_address out to use the account's default address",
                list(&missing)
            )));
        }
        Ok(address)
    }

    /// What a parcel label needs that this address lacks: a recipient (a person's first and
    /// last name, or a company), a street, a postcode, a city and a country. 1NCE's document
    /// marks no field of an address required (it may be left out altogether, for the account's
    /// default address); an address that is given is where SIM cards are sent, and one without
    /// these cannot be delivered.
    pub fn missing(&self) -> Vec<&'static str> {
        let has = |field: &Option<String>| field.is_some();
        let recipient = match (has(&self.first_name), has(&self.last_name)) {
            _ if has(&self.company) => None,
            (true, true) => None,
            (true, false) => Some("last_name (or a company)"),
            (false, true) => Some("first_name (or a company)"),
            (false, false) => Some("recipient (first_name and last_name, or company)"),
        };
        [
            recipient,
            (!has(&self.street)).then_some("street"),
            (!has(&self.zip)).then_some("zip (postcode)"),
            (!has(&self.city)).then_some("city"),
            (!has(&self.country)).then_some("country"),
        ]
        .into_iter()
        .flatten()
        .collect()
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

/// "a", "a and b", "a, b and c".
fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

// A product line of a new order (a plain comment: a doc comment would be schema text that
// every agent reads on every turn, saying what the field names already say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductLine {
    /// Product id from list_products, e.g. 1001.
    #[serde(deserialize_with = "lenient_i64")]
    #[schemars(range(min = 1))]
    pub product_id: i64,
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

/// `text` with every invisible or line-breaking character replaced by U+FFFD, so a value read
/// from 1NCE or given by an agent stays on its line and hides nothing.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| invisible(c).is_some()) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if invisible(c).is_some() {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect::<String>()
        .into()
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

/// Input that breaks a rule of the 1NCE API, caught before any request is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(String);

impl ValidationError {
    pub fn new(message: impl Into<String>) -> Self {
        ValidationError(message.into())
    }
}
