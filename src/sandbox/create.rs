//! Validation of a `POST /v1/orders` body (the document's `Additional_Order`).
//! The body is inspected as raw JSON rather than deserialised into a struct so each
//! rejection can say exactly what is wrong, the way 1NCE's 400 messages do.

use serde_json::{Map, Value};

use super::model::{DeliveryAddress, OrderedProduct, Product, invoice_amount};
use super::state::NewOrder;

/// Checks an order request against the catalogue and the account's address setup.
/// `Err` carries the message of the 400 answer.
pub(crate) fn validate_order(
    body: &[u8],
    catalogue: &[Product],
    default_delivery_addresses: usize,
) -> Result<NewOrder, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Request body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("Request body must be a JSON object with a non-empty 'products' array".into());
    };

    let products = match fields.get("products") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| validate_line(i, item, catalogue))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(
                "'products' is required and must be a non-empty array of {productId, quantity}"
                    .into(),
            );
        }
    };

    let delivery_address = match fields.get("delivery_address") {
        None | Some(Value::Null) if default_delivery_addresses == 1 => None,
        None | Some(Value::Null) => {
            return Err(format!(
                "'delivery_address' is required: the account has {default_delivery_addresses} default delivery addresses, not exactly one"
            ));
        }
        Some(Value::Object(address)) => Some(validate_address(address)?),
        Some(_) => return Err("'delivery_address' must be an object".into()),
    };

    let customer_reference = match fields.get("customer_reference") {
        None | Some(Value::Null) => None,
        Some(Value::String(reference)) => Some(reference.clone()),
        Some(_) => return Err("'customer_reference' must be a string".into()),
    };

    Ok(NewOrder {
        invoice_amount: invoice_amount(&products, catalogue),
        products,
        delivery_address,
        customer_reference,
    })
}

fn validate_line(
    index: usize,
    item: &Value,
    catalogue: &[Product],
) -> Result<OrderedProduct, String> {
    let known = || {
        catalogue
            .iter()
            .map(|p| p.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let product = match item.get("productId") {
        Some(Value::Number(n)) => {
            let id = n.as_u64();
            id.and_then(|id| catalogue.iter().find(|p| p.id == id))
                .ok_or_else(|| {
                    format!(
                        "Unknown productId {n} in products[{index}]; available product ids: {}",
                        known()
                    )
                })?
        }
        _ => {
            return Err(format!(
                "products[{index}].productId is required and must be an integer product id; available product ids: {}",
                known()
            ));
        }
    };
    let quantity = item
        .get("quantity")
        .and_then(Value::as_u64)
        .filter(|q| (product.min_quantity..=product.max_quantity).contains(q))
        .ok_or_else(|| {
            format!(
                "products[{index}].quantity for product {} ({}) must be an integer between {} and {}",
                product.id, product.product, product.min_quantity, product.max_quantity
            )
        })?;
    Ok(OrderedProduct {
        product_id: product.id,
        quantity,
    })
}

/// Reads the documented address fields, all optional strings; only the salutation and
/// the country code have a documented format to enforce.
fn validate_address(address: &Map<String, Value>) -> Result<DeliveryAddress, String> {
    let field = |name: &str| -> Result<Option<String>, String> {
        match address.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("'delivery_address.{name}' must be a string")),
        }
    };
    let parsed = DeliveryAddress {
        salutation: field("salutation")?,
        first_name: field("first_name")?,
        last_name: field("last_name")?,
        company: field("company")?,
        street: field("street")?,
        address_line2: field("address_line2")?,
        house_number: field("house_number")?,
        zip: field("zip")?,
        city: field("city")?,
        country: field("country")?,
        phone: field("phone")?,
    };
    if let Some(salutation) = &parsed.salutation
        && salutation != "1"
        && salutation != "2"
    {
        return Err(format!(
            "'delivery_address.salutation' must be '1' (Mr) or '2' (Ms), got '{salutation}'"
        ));
    }
    if let Some(country) = &parsed.country
        && !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(format!(
            "'delivery_address.country' must be an ISO 3166-1 alpha-2 code such as 'DE', got '{country}'"
        ));
    }
    Ok(parsed)
}
