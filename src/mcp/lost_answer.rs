//! After an order POST whose answer was lost: look, without posting again, for an order that
//! matches (same products and quantities) and was created after the POST was sent.

use chrono::{DateTime, SubsecRound, Utc};

use crate::api::model::{ListOrdersQuery, NewOrder, Order};
use crate::api::{ApiError, Client};

/// Most order pages read while looking; the newest orders are on the last pages.
const MAX_PAGES: u32 = 5;
const PAGE_SIZE: i64 = 10;

/// What the search found.
#[derive(Debug)]
pub(super) struct Found {
    /// Orders that match and were created after the POST was sent.
    pub orders: Vec<Order>,
    /// Whether every order created since then was looked at.
    pub complete: bool,
}

/// Whether `order` has exactly the products and quantities of `new`.
fn same_lines(order: &Order, new: &NewOrder) -> bool {
    let mut a: Vec<(u64, u64)> = order
        .products
        .iter()
        .map(|p| (p.product_id, p.quantity))
        .collect();
    let mut b: Vec<(u64, u64)> = new
        .products
        .iter()
        .map(|p| (p.product_id, p.quantity))
        .collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

fn created(order: &Order) -> Option<DateTime<Utc>> {
    let date = order.order_date.as_deref()?;
    DateTime::parse_from_rfc3339(date)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Reads the newest orders (sorted by date, last pages first) and returns those matching
/// `new` that were created at or after `sent_at` (to the second, as 1NCE dates are; an equal
/// order placed earlier within the same second cannot be told apart).
pub(super) async fn find(
    client: &Client,
    new: &NewOrder,
    sent_at: DateTime<Utc>,
) -> Result<Found, ApiError> {
    // 1NCE dates have whole seconds: an order created after `sent_at` is dated no earlier than
    // the start of that second.
    let since = sent_at.trunc_subsecs(0);
    let query = |page: i64| {
        ListOrdersQuery::new(Some(page), Some(PAGE_SIZE), Some("order_date,order_number")).map_err(
            |e| ApiError::BadResponse {
                reason: e.to_string(),
            },
        )
    };
    let first = client.list_orders(&query(1)?).await?;
    let mut orders = Vec::new();
    let mut complete = false;
    match first.total_pages {
        Some(total) if total > 1 => {
            // Walk back from the last page while every order on it is recent.
            let mut page = total as i64;
            let mut read = 0;
            loop {
                let listed = client.list_orders(&query(page)?).await?;
                read += 1;
                let reached_older = listed
                    .orders
                    .iter()
                    .any(|o| created(o).is_none_or(|d| d < since));
                orders.extend(listed.orders);
                if reached_older || page == 1 {
                    complete = true;
                    break;
                }
                if read >= MAX_PAGES {
                    break;
                }
                page -= 1;
            }
        }
        Some(_) => {
            orders.extend(first.orders);
            complete = true;
        }
        None => {
            // No totals: walk forward; the newest orders come last.
            let mut has_more = first.has_more();
            orders.extend(first.orders);
            let mut page = 1;
            while has_more && page < MAX_PAGES as i64 * 4 {
                page += 1;
                let listed = client.list_orders(&query(page)?).await?;
                has_more = listed.has_more();
                orders.extend(listed.orders);
            }
            complete = !has_more;
        }
    }
    let mut matching: Vec<Order> = orders
        .into_iter()
        .filter(|o| created(o).is_some_and(|d| d >= since) && same_lines(o, new))
        .collect();
    matching.sort_by_key(|o| o.order_number);
    matching.dedup_by_key(|o| o.order_number);
    Ok(Found {
        orders: matching,
        complete,
    })
}
