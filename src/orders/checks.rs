//! What an order must pass before a person is asked to approve it: the 1NCE catalogue (every
//! product exists, every quantity within that product's limits) and the operator's limits
//! (`--max-quantity`, `--max-order-value`, `--allowed-products`). A passing order comes back
//! priced: each line's name and charges, and the one-time net total per currency, in exact cents.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Serialize;

use crate::api::model::NewOrder;
use crate::api::products::{Cents, Product};

/// Limits the operator sets on every order this server may place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderLimits {
    /// Most units (summed over all lines) one order may carry.
    pub max_quantity: Option<u64>,
    /// Highest one-time net value of one order, per currency. When set, an order in a currency
    /// without an entry is refused.
    pub max_order_value: Option<BTreeMap<String, Cents>>,
    /// The only product ids that may be ordered.
    pub allowed_products: Option<BTreeSet<u64>>,
    /// Most spent per day, week or month, across every order (`crate::orders::spend`).
    pub spend: Vec<super::spend::SpendLimit>,
}

impl OrderLimits {
    /// Parses `--max-order-value`: `500 EUR`, `EUR 500`, `EUR:500` or a comma list such as
    /// `EUR:500,USD:300`.
    pub fn parse_order_value(text: &str) -> Result<BTreeMap<String, Cents>, String> {
        let mut map = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let tokens: Vec<&str> = part
                .split(|c: char| c == ':' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .collect();
            let parsed = match tokens.as_slice() {
                [a, b] if is_currency(a) => Cents::parse(b).map(|c| (a.to_ascii_uppercase(), c)),
                [a, b] if is_currency(b) => Cents::parse(a).map(|c| (b.to_ascii_uppercase(), c)),
                _ => None,
            };
            match parsed {
                Some((currency, cents)) if cents.0 >= 0 => {
                    if map.insert(currency.clone(), cents).is_some() {
                        return Err(format!("{currency} is given twice"));
                    }
                }
                _ => {
                    return Err(format!(
                        "{part:?} is not an amount with a currency; write e.g. \"500 EUR\" or \"EUR:500,USD:300\""
                    ));
                }
            }
        }
        if map.is_empty() {
            return Err(
                "no amount given; write e.g. \"500 EUR\" or \"EUR:500,USD:300\"".to_owned(),
            );
        }
        Ok(map)
    }

    /// Parses `--allowed-products`, a comma list of product ids such as `1001,1002`.
    pub fn parse_allowed_products(text: &str) -> Result<BTreeSet<u64>, String> {
        let set =
            text.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<u64>().ok().filter(|id| *id >= 1).ok_or_else(|| {
                        format!("{p:?} is not a product id; write e.g. \"1001,1002\"")
                    })
                })
                .collect::<Result<BTreeSet<u64>, String>>()?;
        if set.is_empty() {
            return Err("no product id given; write e.g. \"1001,1002\"".to_owned());
        }
        Ok(set)
    }

    /// The limits in one line, for the server's instructions and the preview.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(q) = self.max_quantity {
            parts.push(format!("at most {q} units per order"));
        }
        if let Some(values) = &self.max_order_value {
            let list: Vec<String> = values.iter().map(|(c, v)| format!("{v} {c}")).collect();
            parts.push(format!(
                "a one-time net value of at most {} per order",
                list.join(" / ")
            ));
        }
        if let Some(ids) = &self.allowed_products {
            parts.push(format!("only products {}", join_ids(ids)));
        }
        for limit in &self.spend {
            parts.push(format!("at most {limit} over all orders"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

fn is_currency(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|b| b.is_ascii_alphabetic())
}

fn join_ids(ids: &BTreeSet<u64>) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An amount of money as agents and people read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Money {
    /// Decimal amount with two decimals, e.g. "120.00".
    pub amount: String,
    /// ISO currency code, e.g. "EUR".
    pub currency: String,
}

/// One checked and priced line of an order.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PricedLine {
    /// Product id.
    pub product_id: u64,
    /// Product name from the 1NCE catalogue.
    pub name: String,
    /// Quantity ordered.
    pub quantity: u64,
    /// One-time net charges of this line (unit charges × quantity), per currency.
    pub one_time_net: Vec<Money>,
    /// Recurring net charges per unit, per currency, as 1NCE lists them.
    pub recurring_net_per_unit: Vec<Money>,
}

/// An order that passed every check, with its prices.
#[derive(Debug, Clone)]
pub struct PricedOrder {
    pub lines: Vec<PricedLine>,
    /// One-time net total per currency.
    pub totals: BTreeMap<String, Cents>,
}

impl PricedOrder {
    pub fn totals_for_people(&self) -> Vec<Money> {
        money_list(&self.totals)
    }
}

/// Amounts for people: "120.00 EUR + 5.00 USD", or `none` when there are none.
pub fn money(list: &[Money], none: &str) -> String {
    if list.is_empty() {
        return none.to_owned();
    }
    list.iter()
        .map(|m| format!("{} {}", m.amount, m.currency))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn money_list(map: &BTreeMap<String, Cents>) -> Vec<Money> {
    map.iter()
        .map(|(currency, cents)| Money {
            amount: cents.to_string(),
            currency: currency.clone(),
        })
        .collect()
}

/// Adds `cents` in `currency` to `map`, refusing overflow.
fn add(map: &mut BTreeMap<String, Cents>, currency: &str, cents: Cents) -> Result<(), String> {
    let entry = map.entry(currency.to_owned()).or_default();
    *entry = entry
        .checked_add(cents)
        .ok_or_else(|| "the order's value is too large to compute".to_owned())?;
    Ok(())
}

/// Checks `order` against the catalogue and the operator's limits and prices it. `Err` is the
/// message for the agent: what is wrong, the allowed range or the limit, and that nothing was
/// ordered.
pub fn check_order(
    order: &NewOrder,
    catalogue: &[Product],
    limits: &OrderLimits,
) -> Result<PricedOrder, String> {
    let refuse = |why: String| format!("Refused: {why}. Nothing was ordered.");
    let mut lines = Vec::with_capacity(order.products.len());
    let mut totals = BTreeMap::new();
    for line in &order.products {
        let Some(product) = catalogue.iter().find(|p| p.id == line.product_id) else {
            let known: BTreeSet<u64> = catalogue.iter().map(|p| p.id).collect();
            return Err(refuse(format!(
                "product {} is not in the 1NCE product catalogue (it has {}); list_products shows what can be ordered",
                line.product_id,
                if known.is_empty() {
                    "no products".to_owned()
                } else {
                    join_ids(&known)
                }
            )));
        };
        if let Some(allowed) = &limits.allowed_products
            && !allowed.contains(&product.id)
        {
            return Err(refuse(format!(
                "product {} ({}) is not allowed by this server's operator limit --allowed-products (allowed: {})",
                product.id,
                product.name,
                join_ids(allowed)
            )));
        }
        let too_many = product.max_quantity.is_some_and(|max| line.quantity > max);
        if line.quantity < product.min_quantity || too_many {
            let range = match product.max_quantity {
                Some(max) => format!("from {} to {max}", product.min_quantity),
                None => format!("of at least {}", product.min_quantity),
            };
            return Err(refuse(format!(
                "product {} ({}) can be ordered in quantities {range} per order, not {}",
                product.id, product.name, line.quantity
            )));
        }
        let mut line_totals = BTreeMap::new();
        for charge in &product.one_time_charges {
            let cost = charge
                .amount_net
                .checked_mul(line.quantity)
                .ok_or_else(|| refuse("the order's value is too large to compute".to_owned()))?;
            add(&mut line_totals, &charge.currency, cost).map_err(&refuse)?;
            add(&mut totals, &charge.currency, cost).map_err(&refuse)?;
        }
        let mut recurring = BTreeMap::new();
        for charge in &product.recurring_charges {
            add(&mut recurring, &charge.currency, charge.amount_net).map_err(&refuse)?;
        }
        lines.push(PricedLine {
            product_id: product.id,
            name: product.name.clone(),
            quantity: line.quantity,
            one_time_net: money_list(&line_totals),
            recurring_net_per_unit: money_list(&recurring),
        });
    }
    if let Some(max) = limits.max_quantity {
        let units: u64 = order.products.iter().map(|p| p.quantity).sum();
        if units > max {
            return Err(refuse(format!(
                "the order has {units} units in total, above this server's operator limit --max-quantity {max}"
            )));
        }
    }
    if let Some(max_values) = &limits.max_order_value {
        for (currency, total) in &totals {
            match max_values.get(currency) {
                Some(max) if total > max => {
                    return Err(refuse(format!(
                        "the order's one-time net value is {total} {currency}, above this server's operator limit --max-order-value {max} {currency}"
                    )));
                }
                Some(_) => {}
                None => {
                    return Err(refuse(format!(
                        "the order costs {total} {currency}, and this server's operator limit --max-order-value names no limit for {currency} (it covers {})",
                        max_values.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
    }
    Ok(PricedOrder { lines, totals })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::model::ProductLine;
    use crate::api::products::Charge;

    /// A catalogue product with one one-time charge of `cents` EUR per unit.
    pub(crate) fn product(id: u64, min: u64, max: u64, cents: i64) -> Product {
        Product {
            id,
            name: format!("P{id}"),
            material: None,
            package_size: Some(1),
            min_quantity: min,
            max_quantity: Some(max),
            max_quantity_per_customer: None,
            min_contract_duration: None,
            one_time_charges: vec![Charge {
                name: "provisionCharge".into(),
                amount_net: Cents(cents),
                currency: "EUR".into(),
            }],
            recurring_charges: vec![],
        }
    }

    fn order(lines: &[(i64, i64)]) -> NewOrder {
        let lines: Vec<ProductLine> = lines
            .iter()
            .map(|&(product_id, quantity)| ProductLine {
                product_id,
                quantity,
            })
            .collect();
        NewOrder::new(&lines, None, None).unwrap()
    }

    #[test]
    fn prices_and_totals_in_exact_cents() {
        let catalogue = [product(1, 1, 100, 999), product(2, 10, 50, 1)];
        let priced = check_order(
            &order(&[(1, 3), (2, 10)]),
            &catalogue,
            &OrderLimits::default(),
        )
        .unwrap();
        assert_eq!(priced.lines[0].one_time_net[0].amount, "29.97");
        assert_eq!(priced.totals["EUR"], Cents(2997 + 10));
    }

    #[test]
    fn catalogue_and_limits_name_the_problem() {
        let catalogue = [product(1, 1, 100, 1000), product(2, 10, 50, 100)];
        let none = OrderLimits::default();
        let err = check_order(&order(&[(9, 1)]), &catalogue, &none).unwrap_err();
        assert!(err.contains("product 9 is not in the 1NCE product catalogue (it has 1, 2)"));
        let err = check_order(&order(&[(2, 5)]), &catalogue, &none).unwrap_err();
        assert!(
            err.contains(
                "product 2 (P2) can be ordered in quantities from 10 to 50 per order, not 5"
            ),
            "{err}"
        );
        let limits = OrderLimits {
            max_quantity: Some(4),
            ..Default::default()
        };
        let err = check_order(&order(&[(1, 5)]), &catalogue, &limits).unwrap_err();
        assert!(err.contains("--max-quantity 4"), "{err}");
        let limits = OrderLimits {
            max_order_value: Some(OrderLimits::parse_order_value("EUR:40").unwrap()),
            ..Default::default()
        };
        assert!(check_order(&order(&[(1, 4)]), &catalogue, &limits).is_ok());
        let err = check_order(&order(&[(1, 5)]), &catalogue, &limits).unwrap_err();
        assert!(
            err.contains(
                "50.00 EUR, above this server's operator limit --max-order-value 40.00 EUR"
            ),
            "{err}"
        );
        let limits = OrderLimits {
            max_order_value: Some(OrderLimits::parse_order_value("USD:40").unwrap()),
            ..Default::default()
        };
        let err = check_order(&order(&[(1, 1)]), &catalogue, &limits).unwrap_err();
        assert!(err.contains("names no limit for EUR"), "{err}");
        let limits = OrderLimits {
            allowed_products: Some(OrderLimits::parse_allowed_products("2").unwrap()),
            ..Default::default()
        };
        let err = check_order(&order(&[(1, 1)]), &catalogue, &limits).unwrap_err();
        assert!(err.contains("--allowed-products (allowed: 2)"), "{err}");
    }

    #[test]
    fn limit_syntax() {
        let one = OrderLimits::parse_order_value("500 EUR").unwrap();
        assert_eq!(one["EUR"], Cents(50000));
        let two = OrderLimits::parse_order_value("EUR:500, usd:300.50").unwrap();
        assert_eq!(two["USD"], Cents(30050));
        assert_eq!(
            OrderLimits::parse_order_value("EUR 12.5").unwrap()["EUR"],
            Cents(1250)
        );
        assert!(OrderLimits::parse_order_value("500").is_err());
        assert!(OrderLimits::parse_order_value("EUR:5,EUR:6").is_err());
        assert!(OrderLimits::parse_order_value("EUR:-5").is_err());
        assert_eq!(
            OrderLimits::parse_allowed_products("1001, 1002").unwrap(),
            BTreeSet::from([1001, 1002])
        );
        assert!(OrderLimits::parse_allowed_products("10x").is_err());
    }
}
