//! After an order POST whose answer was lost: look, without posting again, for an order that
//! matches (same products and quantities) and was created after the POST was sent.

use chrono::{DateTime, SubsecRound, Utc};

use crate::api::model::{NewOrder, Order, SortKey};
use crate::api::{ApiError, Client, PageWalk};

/// Most order pages read while looking: ten orders each, newest first.
const MAX_PAGES: u32 = 20;

/// What the search found.
#[derive(Debug)]
pub struct Found {
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

/// Reads the newest orders (sorted by date, newest page first when 1NCE reports the page count)
/// and returns those matching `new` that were created at or after `sent_at` (to the second, as
/// 1NCE dates are; an equal order placed earlier within the same second cannot be told apart).
pub async fn find(
    client: &Client,
    new: &NewOrder,
    sent_at: DateTime<Utc>,
) -> Result<Found, ApiError> {
    // 1NCE dates have whole seconds: an order created after `sent_at` is dated no earlier than
    // the start of that second.
    let since = sent_at.trunc_subsecs(0);
    let sort = vec![SortKey::OrderDate, SortKey::OrderNumber];
    let mut walk = PageWalk::start(client, sort, MAX_PAGES).await?;
    let mut orders = Vec::new();
    let mut complete = false;
    let newest_first = walk.newest_first();
    while let Some(page) = walk.next().await {
        let page = page?;
        // Newest first, once a page holds an order from before the POST, so do all later ones.
        // Oldest first, only the end of the list is the end of the search.
        let reached_older = newest_first
            && page
                .orders
                .iter()
                .any(|o| o.placed_at().is_none_or(|d| d < since));
        orders.extend(page.orders);
        if reached_older || walk.ended() {
            complete = true;
            break;
        }
    }
    let mut matching: Vec<Order> = orders
        .into_iter()
        .filter(|o| o.placed_at().is_some_and(|d| d >= since) && same_lines(o, new))
        .collect();
    matching.sort_by_key(|o| o.order_number);
    matching.dedup_by_key(|o| o.order_number);
    Ok(Found {
        orders: matching,
        complete,
    })
}
