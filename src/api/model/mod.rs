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
//!
//! - [`order`]: orders as 1NCE reports them;
//! - [`new_order`]: a new order, validated, and its wire body;
//! - [`query`]: a page of the order list, asked for and answered;
//! - [`lenient`]: the forgiving number and string parsers both sides use.

pub mod lenient;
pub mod new_order;
pub mod order;
pub mod query;

pub use lenient::{lenient_i64, lenient_i64_opt};
pub use new_order::*;
pub use order::*;
pub use query::*;

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
            company: Some("ACME".into()),
            street: Some("Ring 1".into()),
            zip: Some("50667".into()),
            city: Some(" Cologne ".into()),
            country: Some("de".into()),
            ..Default::default()
        };
        let order = NewOrder::new(&[line(1001, 5)], Some(&ok), Some("  ")).unwrap();
        let address = order.delivery_address.as_ref().unwrap();
        assert_eq!(address.country.as_deref(), Some("DE"));
        assert_eq!(address.to_string(), "ACME, Ring 1, 50667 Cologne, DE");
        assert_eq!(order.customer_reference, None);
        assert_eq!(
            serde_json::to_value(order.to_wire()).unwrap(),
            json!({"products": [{"productId": 1001, "quantity": 5}],
                   "delivery_address": {"company": "ACME", "street": "Ring 1", "zip": "50667",
                                        "city": "Cologne", "country": "DE"}})
        );
    }

    /// An address that is given must be one a parcel can reach: a recipient, street, postcode,
    /// city and country, each named when it is missing.
    #[test]
    fn an_address_that_cannot_ship_is_refused_naming_what_is_missing() {
        let one = [ProductLine {
            product_id: 1001,
            quantity: 1,
        }];
        let refused = |address: serde_json::Value| {
            let address: DeliveryAddress = serde_json::from_value(address).unwrap();
            NewOrder::new(&one, Some(&address), None)
                .unwrap_err()
                .to_string()
        };
        let err = refused(json!({"country": "DE"}));
        assert!(
            err.starts_with("delivery_address cannot ship: it has no recipient (first_name and last_name, or company), street, zip (postcode) and city."),
            "{err}"
        );
        let err = refused(
            json!({"first_name": "Erika", "street": "Ring", "zip": "50667",
                                  "city": "Köln", "country": "DE"}),
        );
        assert!(err.contains("it has no last_name (or a company)."), "{err}");
        let err = refused(
            json!({"last_name": "Muster", "street": "Ring", "zip": "50667",
                                  "city": "Köln", "country": "DE"}),
        );
        assert!(
            err.contains("it has no first_name (or a company)."),
            "{err}"
        );
        let err = refused(json!({"company": "ACME", "street": " ", "zip": "50667",
                                  "city": "Köln"}));
        assert!(err.contains("it has no street and country."), "{err}");
        for complete in [
            json!({"first_name": "Erika", "last_name": "Muster", "street": "Ring 1",
                   "zip": "50667", "city": "Köln", "country": "DE"}),
            json!({"company": "ACME", "street": "Ring", "house_number": "1", "zip": "50667",
                   "city": "Köln", "country": "DE"}),
        ] {
            let address: DeliveryAddress = serde_json::from_value(complete).unwrap();
            assert!(address.missing().is_empty());
            NewOrder::new(&one, Some(&address), None).unwrap();
        }
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
            // A complete address with this one field replaced.
            let mut address = DeliveryAddress {
                first_name: Some("Erika".into()),
                last_name: Some("Muster".into()),
                street: Some("Ring".into()),
                zip: Some("50667".into()),
                city: Some("Köln".into()),
                country: Some("DE".into()),
                ..Default::default()
            };
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
