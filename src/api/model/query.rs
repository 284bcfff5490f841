//! A request for one page of the order list, and the page that comes back.

use super::new_order::ValidationError;
use super::order::Order;

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
