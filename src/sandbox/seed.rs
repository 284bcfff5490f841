//! The fixed account every sandbox starts with: a four-product catalogue, one German
//! default delivery address and 25 orders (three pages at the maximum page size).
//! Everything is derived from constant tables so runs and snapshots are reproducible.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::model::{
    Charge, DeliveryAddress, Order, OrderStatus, OrderType, OrderedProduct, Product, Sim,
    invoice_amount,
};

/// The first order number; later orders, seeded or created, count up from here.
pub(crate) const FIRST_ORDER_NUMBER: u64 = 2_000_000_001;
/// The first invoice number; it advances with every order.
pub(crate) const FIRST_INVOICE_NUMBER: u64 = 20_000_001;
/// SIM lists are capped so bulk orders stay readable; real 1NCE lists every card.
const MAX_SIMS_PER_ORDER: u64 = 5;

/// The catalogue served by `GET /v1/products`.
pub(crate) fn products() -> Vec<Product> {
    fn eur(name: &'static str, amount_net: u64) -> Charge {
        Charge {
            name,
            amount_net,
            currency: "EUR",
        }
    }
    vec![
        Product {
            id: 1001,
            product: "1NCE IoT FlexSIM - Standard",
            material: "1NCE FlexSIM",
            package_size: 1,
            min_quantity: 1,
            max_quantity: 1000,
            max_quantity_per_customer: 100_000,
            min_contract_duration: 120,
            one_time_charges: vec![eur("provisionCharge", 1000)],
            recurring_charges: vec![],
        },
        Product {
            id: 1002,
            product: "1NCE IoT FlexSIM - Industrial",
            material: "1NCE FlexSIM Industrial",
            package_size: 1,
            min_quantity: 1,
            max_quantity: 1000,
            max_quantity_per_customer: 100_000,
            min_contract_duration: 120,
            one_time_charges: vec![eur("provisionCharge", 1500)],
            recurring_charges: vec![],
        },
        Product {
            id: 1003,
            product: "1NCE IoT Chip SIM - MFF2",
            material: "1NCE Chip SIM MFF2",
            package_size: 10,
            min_quantity: 10,
            max_quantity: 1000,
            max_quantity_per_customer: 100_000,
            min_contract_duration: 120,
            one_time_charges: vec![eur("provisionCharge", 1200)],
            recurring_charges: vec![],
        },
        Product {
            id: 1004,
            product: "1NCE Auto Top-Up - 500 MB / 250 SMS",
            material: "1NCE Top-Up",
            package_size: 1,
            min_quantity: 1,
            max_quantity: 100,
            max_quantity_per_customer: 10_000,
            min_contract_duration: 12,
            one_time_charges: vec![eur("topupCharge", 1000)],
            recurring_charges: vec![eur("autoTopupCharge", 1000)],
        },
    ]
}

/// The account's single default delivery address, used when a POST names none.
pub(crate) fn default_address() -> DeliveryAddress {
    let s = |v: &str| Some(v.to_owned());
    DeliveryAddress {
        salutation: s("1"),
        first_name: s("Max"),
        last_name: s("Mustermann"),
        company: s("Sandbox IoT GmbH"),
        street: s("Musterstraße"),
        address_line2: None,
        house_number: s("12"),
        zip: s("10115"),
        city: s("Berlin"),
        country: s("DE"),
        phone: s("+49 30 123456789"),
    }
}

/// One seeded order: what was ordered and where it stands.
struct SeedOrder {
    order_type: OrderType,
    status: OrderStatus,
    product_id: u64,
    quantity: u64,
    customer_reference: Option<&'static str>,
}

const fn row(
    order_type: OrderType,
    status: OrderStatus,
    product_id: u64,
    quantity: u64,
    customer_reference: Option<&'static str>,
) -> SeedOrder {
    SeedOrder {
        order_type,
        status,
        product_id,
        quantity,
        customer_reference,
    }
}

/// The 25 seeded orders, oldest first. Card orders (first/additional) bring new SIMs;
/// top-ups and tariff changes act on SIMs shipped earlier.
const SEED_ORDERS: [SeedOrder; 25] = {
    use OrderStatus::{Cancelled, Completed, InProgress, Shipped};
    use OrderType::{AdditionalOrder, BulkTopup, FirstOrder, TariffChange, Topup};
    [
        row(FirstOrder, Completed, 1001, 10, None),
        row(AdditionalOrder, Completed, 1001, 5, Some("PO-2024-0112")),
        row(Topup, Completed, 1004, 1, None),
        row(AdditionalOrder, Completed, 1003, 20, None),
        row(BulkTopup, Completed, 1004, 4, None),
        row(TariffChange, Completed, 1001, 2, None),
        row(AdditionalOrder, Completed, 1002, 3, Some("PO-2024-0587")),
        row(Topup, Completed, 1004, 1, None),
        row(AdditionalOrder, Cancelled, 1001, 100, None),
        row(BulkTopup, Completed, 1004, 6, None),
        row(AdditionalOrder, Completed, 1002, 2, None),
        row(Topup, Completed, 1004, 1, None),
        row(AdditionalOrder, Completed, 1003, 10, Some("PO-2025-0031")),
        row(TariffChange, Completed, 1002, 3, None),
        row(Topup, Completed, 1004, 1, None),
        row(AdditionalOrder, Completed, 1001, 25, None),
        row(BulkTopup, Cancelled, 1004, 3, None),
        row(AdditionalOrder, Completed, 1002, 4, None),
        row(Topup, Completed, 1004, 1, None),
        row(AdditionalOrder, Completed, 1001, 1, Some("PO-2025-0944")),
        row(BulkTopup, Completed, 1004, 8, None),
        row(TariffChange, Completed, 1001, 2, None),
        row(AdditionalOrder, Shipped, 1003, 10, None),
        row(Topup, InProgress, 1004, 1, None),
        row(AdditionalOrder, InProgress, 1001, 5, Some("PO-2026-0215")),
    ]
};

/// An account of `n` orders, oldest first, placed from January 2020 to November 2026 at even
/// intervals: the seed table's types, products and quantities in turn, about one in twenty
/// cancelled, the newest few still in progress or shipped, one in seven with a reference, and
/// SIMs shipped by card orders (each ICCID once) and acted on by later ones. For trying searches
/// on a real-sized account (`--sandbox-orders`).
pub(crate) fn many_orders(n: usize, base_url: &str, catalogue: &[Product]) -> Vec<Order> {
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2020, 1, 6, 8, 0, 0)
        .single()
        .expect("a valid UTC time");
    let end: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 11, 30, 17, 0, 0)
        .single()
        .expect("a valid UTC time");
    let step = (end - start).num_minutes() / (n.max(2) as i64 - 1).max(1);
    let mut shipped: Vec<String> = Vec::new();
    let mut next_sim: u64 = 1;
    let mut orders = Vec::with_capacity(n);
    for i in 0..n {
        let seed = &SEED_ORDERS[i % SEED_ORDERS.len()];
        let from_end = n - 1 - i;
        let status = match (from_end, i % 20) {
            (0..=2, _) => OrderStatus::InProgress,
            (3..=5, _) => OrderStatus::Shipped,
            (_, 7) => OrderStatus::Cancelled,
            _ => OrderStatus::Completed,
        };
        let products = vec![OrderedProduct {
            product_id: seed.product_id,
            quantity: seed.quantity,
        }];
        let delivered = matches!(status, OrderStatus::Completed | OrderStatus::Shipped);
        let shown = seed.quantity.min(MAX_SIMS_PER_ORDER);
        let iccids: Vec<String> = match (delivered, seed.order_type) {
            (false, _) => Vec::new(),
            (true, OrderType::FirstOrder | OrderType::AdditionalOrder) => (0..shown)
                .map(|_| {
                    let id = iccid(next_sim);
                    next_sim += 1;
                    shipped.push(id.clone());
                    id
                })
                .collect(),
            (true, _) => (0..shown)
                .filter_map(|k| {
                    let at = (i as u64 * 7 + k) as usize % shipped.len().max(1);
                    shipped.get(at).cloned()
                })
                .collect(),
        };
        let order_date = start + Duration::minutes(step * i as i64 + (i as i64 * 37) % 240);
        let year = order_date.format("%Y");
        orders.push(Order {
            order_number: FIRST_ORDER_NUMBER + i as u64,
            order_type: seed.order_type,
            order_date,
            order_status: status,
            invoice_number: (FIRST_INVOICE_NUMBER + i as u64).to_string(),
            invoice_amount: invoice_amount(&products, catalogue),
            currency: "EUR",
            shipping_address: default_address(),
            sims: iccids
                .into_iter()
                .map(|id| Sim::new(base_url, id))
                .collect(),
            products,
            customer_reference: (i % 7 == 3).then(|| format!("PO-{year}-{i:04}")),
        });
    }
    orders
}

/// The seeded orders, with SIM links rooted at `base_url`.
pub(crate) fn orders(base_url: &str, catalogue: &[Product]) -> Vec<Order> {
    let first_date: DateTime<Utc> = Utc
        .with_ymd_and_hms(2024, 1, 8, 9, 30, 0)
        .single()
        .expect("the first seed date is a valid UTC time");
    let mut shipped_iccids: Vec<String> = Vec::new();
    let mut next_sim: u64 = 1;
    let mut next_existing: usize = 0;

    let mut orders = Vec::with_capacity(SEED_ORDERS.len());
    for (i, seed) in (0u64..).zip(SEED_ORDERS.iter()) {
        let products = vec![OrderedProduct {
            product_id: seed.product_id,
            quantity: seed.quantity,
        }];
        let shown = seed.quantity.min(MAX_SIMS_PER_ORDER);
        let delivered = matches!(seed.status, OrderStatus::Completed | OrderStatus::Shipped);
        let iccids: Vec<String> = match (delivered, seed.order_type) {
            (false, _) => Vec::new(),
            (true, OrderType::FirstOrder | OrderType::AdditionalOrder) => (0..shown)
                .map(|_| {
                    let iccid = iccid(next_sim);
                    next_sim += 1;
                    shipped_iccids.push(iccid.clone());
                    iccid
                })
                .collect(),
            // Top-ups and tariff changes cycle through the SIMs shipped so far.
            (true, _) => (0..shown)
                .filter_map(|_| {
                    let existing =
                        shipped_iccids.get(next_existing % shipped_iccids.len().max(1))?;
                    next_existing += 1;
                    Some(existing.clone())
                })
                .collect(),
        };
        // Roughly every five weeks, at varying times of day, from January 2024 into 2026.
        let order_date =
            first_date + Duration::days(38 * i as i64) + Duration::minutes((i as i64 * 97) % 480);
        orders.push(Order {
            order_number: FIRST_ORDER_NUMBER + i,
            order_type: seed.order_type,
            order_date,
            order_status: seed.status,
            invoice_number: (FIRST_INVOICE_NUMBER + i).to_string(),
            invoice_amount: invoice_amount(&products, catalogue),
            currency: "EUR",
            shipping_address: default_address(),
            sims: iccids
                .into_iter()
                .map(|id| Sim::new(base_url, id))
                .collect(),
            products,
            customer_reference: seed.customer_reference.map(str::to_owned),
        });
    }
    orders
}

/// The `n`th sandbox ICCID: 1NCE's `89882806` prefix, a 10-digit serial and a Luhn
/// check digit, 19 digits in all.
fn iccid(n: u64) -> String {
    let body = format!("89882806{:010}", 6_600_000_000 + n);
    format!("{body}{}", luhn_check_digit(&body))
}

/// The digit that makes `digits` followed by it pass the Luhn check.
fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}
