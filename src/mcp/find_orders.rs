//! `find_orders`: search every order of the account, newest first.
//!
//! It searches the order mirror (`crate::mirror`): every order this server has read, kept with
//! indexes, so a search costs no request to 1NCE. The answer says how much of the account the
//! mirror holds and how fresh the matches that may still change are, and never claims "no such
//! order" while the mirror is incomplete; when the client sent a progress token, the sync's
//! progress is reported.
//!
//! Without the mirror (`--mirror off`, a store that cannot be read, or one that holds nothing
//! yet) it reads 1NCE itself: 1NCE filters nothing server-side and sorts ascending only, so the
//! search reads page 1 (by date) for the page count, then walks from the last page backwards,
//! newest first, at most [`MAX_PAGES`] pages, saying whether the whole list was searched.

use chrono::NaiveDate;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ProgressNotificationParam, RequestMetaObject};
use rmcp::{Peer, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::list_orders::SUMMARY_NOTE;
use super::order_view::{Detail, ListedOrder, write_order_line};
use super::{OrderServer, ToolError, ToolOutput, ToolResult};
use crate::api::PageWalk;
use crate::api::model::{Order, SortKey, lenient_i64_opt};

/// Most pages one search reads (10 orders each).
pub const MAX_PAGES: u32 = 30;
/// Most matches one search returns.
const MAX_LIMIT: i64 = 50;

/// Arguments of `find_orders`. Every filter given must match.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindOrdersArgs {
    /// Only orders with this status, e.g. COMPLETED or IN_PROGRESS.
    pub status: Option<String>,
    /// Only orders of this type: FIRST_ORDER, ADDITIONAL_ORDER, TOPUP, BULK_TOPUP or TARIFF_CHANGE.
    pub order_type: Option<String>,
    /// Only orders with this product.
    #[serde(default, deserialize_with = "lenient_i64_opt")]
    #[schemars(range(min = 1))]
    pub product_id: Option<i64>,
    /// Only orders with this SIM (the one that shipped it, and top-ups).
    pub iccid: Option<String>,
    /// Only orders whose reference contains this text (case-insensitive).
    pub reference: Option<String>,
    /// Placed on or after this day, YYYY-MM-DD (UTC).
    pub placed_from: Option<String>,
    /// Placed on or before this day, YYYY-MM-DD (UTC).
    pub placed_until: Option<String>,
    /// Most orders to return (default 20).
    #[serde(default, deserialize_with = "lenient_i64_opt")]
    #[schemars(range(min = 1, max = 50))]
    pub limit: Option<i64>,
    #[serde(default)]
    #[schemars(description = super::order_view::DETAIL_DOC)]
    pub detail: Detail,
}

/// Where a search's answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The orders this server keeps (no request to 1NCE).
    Mirror,
    /// Pages read from 1NCE now.
    Live,
}

/// Orders that matched, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FindOrdersOutput {
    /// Matching orders, newest first: summaries, or whole orders when detail is "full".
    pub orders: Vec<ListedOrder>,
    pub source: Source,
    /// Orders searched.
    pub searched: u64,
    /// Pages of 10 orders read from 1NCE (one request each).
    pub pages_read: u32,
    /// Orders in the account, when 1NCE reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u64>,
    /// Whether every order was searched (false: stopped at the limit or the page cap, or the mirror holds only part of the account yet).
    pub complete: bool,
    /// When the oldest-read match that may still change was read (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<String>,
    /// How much of each order this answer carries.
    pub detail: Detail,
}

/// The validated filters.
struct Filter {
    status: Option<String>,
    order_type: Option<String>,
    product_id: Option<u64>,
    iccid: Option<String>,
    reference: Option<String>,
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
    limit: usize,
    detail: Detail,
}

impl Filter {
    /// The filter as a query of the mirror.
    fn query(&self) -> crate::state::MirrorQuery {
        let midnight = |day: NaiveDate| {
            day.and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis())
        };
        crate::state::MirrorQuery {
            status: self.status.clone(),
            order_type: self.order_type.clone(),
            product_id: self.product_id.and_then(|id| i64::try_from(id).ok()),
            iccid: self.iccid.clone(),
            reference: self.reference.clone(),
            placed_from: self.from.and_then(midnight),
            placed_until: self.until.and_then(|d| d.succ_opt()).and_then(midnight),
            limit: self.limit,
        }
    }

    fn new(args: FindOrdersArgs) -> Result<Filter, String> {
        let text = |name: &str, value: Option<String>| -> Result<Option<String>, String> {
            match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                Some(v) if v.chars().count() > 100 => {
                    Err(format!("{name} must be at most 100 characters"))
                }
                v => Ok(v),
            }
        };
        let date = |name: &str, value: Option<String>| -> Result<Option<NaiveDate>, String> {
            value
                .map(|v| {
                    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                        .map_err(|_| format!("{name} must be a date like 2026-01-31, not {v:?}"))
                })
                .transpose()
        };
        let product_id = args
            .product_id
            .map(|id| {
                u64::try_from(id)
                    .ok()
                    .filter(|id| *id >= 1)
                    .ok_or(format!("product_id must be a positive integer, not {id}"))
            })
            .transpose()?;
        let limit = match args.limit {
            None => 20,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n as usize,
            Some(n) => return Err(format!("limit must be from 1 to {MAX_LIMIT}, not {n}")),
        };
        let filter = Filter {
            status: text("status", args.status)?,
            order_type: text("order_type", args.order_type)?,
            product_id,
            iccid: text("iccid", args.iccid)?,
            reference: text("reference", args.reference)?.map(|r| r.to_lowercase()),
            from: date("placed_from", args.placed_from)?,
            until: date("placed_until", args.placed_until)?,
            limit,
            detail: args.detail,
        };
        if let (Some(from), Some(until)) = (filter.from, filter.until)
            && from > until
        {
            return Err(format!(
                "placed_from ({from}) is after placed_until ({until})"
            ));
        }
        Ok(filter)
    }

    fn matches(&self, order: &Order) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        let placed = order.placed_at().map(|d| d.date_naive());
        let in_range = match (self.from.is_some() || self.until.is_some(), placed) {
            (false, _) => true,
            (true, None) => false,
            (true, Some(day)) => {
                self.from.is_none_or(|f| day >= f) && self.until.is_none_or(|u| day <= u)
            }
        };
        same(&self.status, &order.order_status)
            && same(&self.order_type, &order.order_type)
            && self
                .product_id
                .is_none_or(|id| order.products.iter().any(|p| p.product_id == id))
            && self.iccid.as_ref().is_none_or(|iccid| {
                order
                    .sims
                    .iter()
                    .any(|s| s.iccid.as_deref() == Some(iccid.as_str()))
            })
            && self.reference.as_ref().is_none_or(|r| {
                order
                    .customer_reference
                    .as_ref()
                    .is_some_and(|c| c.to_lowercase().contains(r))
            })
            && in_range
    }

    /// Whether an older page can still match: not once every order is before `placed_from`.
    fn older_can_match(&self, oldest_on_page: Option<NaiveDate>) -> bool {
        match (self.from, oldest_on_page) {
            (Some(from), Some(day)) => day >= from,
            _ => true,
        }
    }
}

#[tool_router(router = find_orders_router, vis = "pub(super)")]
impl OrderServer {
    #[tool(
        name = "find_orders",
        title = "Find 1NCE orders",
        description = "Search all 1NCE orders, newest first; every filter given must match. Answers from the orders this server keeps. Read-only.",
        input_schema = super::schema::input::<FindOrdersArgs>(),
        output_schema = super::schema::output::<FindOrdersOutput>(),
        annotations(
            title = "Find 1NCE orders",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn find_orders(
        &self,
        Parameters(args): Parameters<FindOrdersArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> ToolResult<FindOrdersOutput> {
        let filter = Filter::new(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let progress = meta.get_progress_token();
        let mut fell_back = None;
        if let Some(mirror) = &self.mirror {
            match mirror.find(&filter.query()).await {
                Ok(found) if found.coverage.mirrored > 0 => {
                    if let (Some(token), false) = (&progress, found.coverage.complete()) {
                        let mut note = ProgressNotificationParam::new(
                            token.clone(),
                            found.coverage.mirrored as f64,
                        )
                        .with_message(format!(
                            "the mirror holds {}; the rest are being read",
                            found.coverage.describe()
                        ));
                        if let Some(total) = found.coverage.total {
                            note = note.with_total(total as f64);
                        }
                        let _ = peer.notify_progress(note).await;
                    }
                    return Ok(from_mirror(found, filter.detail));
                }
                Ok(_) => {}
                Err(e) => fell_back = Some(e.to_string()),
            }
        }
        let started = PageWalk::start(&self.client, vec![SortKey::OrderDate], MAX_PAGES);
        let mut walk = started.await?;
        let to_read = walk.planned();
        let mut found: Vec<Order> = Vec::new();
        let mut searched = 0;
        let mut complete = false;
        loop {
            let Some(page) = walk.next().await else { break };
            let page = page?;
            searched += 1;
            if let Some(token) = &progress {
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(searched))
                            .with_total(f64::from(to_read))
                            .with_message(format!(
                                "read page {} of the order list ({} match so far)",
                                page.page,
                                found.len()
                            )),
                    )
                    .await;
            }
            let oldest = page
                .orders
                .iter()
                .filter_map(|o| o.placed_at())
                .map(|d| d.date_naive())
                .min();
            let mut matching: Vec<Order> = page
                .orders
                .into_iter()
                .filter(|o| filter.matches(o))
                .collect();
            matching.reverse(); // each page is oldest first
            if !walk.newest_first() {
                // Oldest pages first (1NCE sent no page count): this page is newer than all
                // before it, and only the end of the list says which orders are the newest.
                matching.append(&mut found);
                found = matching;
                if walk.ended() {
                    complete = true;
                    break;
                }
                continue;
            }
            found.extend(matching);
            if found.len() >= filter.limit {
                found.truncate(filter.limit);
                complete = walk.ended();
                break;
            }
            if walk.ended() || !filter.older_can_match(oldest) {
                complete = true;
                break;
            }
        }
        found.truncate(filter.limit);
        let pages_read = walk.requests();
        let total_count = walk.total_count();
        if let Some(mirror) = &self.mirror {
            mirror.remember(&found).await;
        }
        let output = FindOrdersOutput {
            orders: found
                .into_iter()
                .map(|o| ListedOrder::new(o, filter.detail))
                .collect(),
            source: Source::Live,
            searched: u64::from(walk.handed_out()) * u64::from(crate::api::model::MAX_PAGE_SIZE),
            detail: filter.detail,
            pages_read,
            total_count,
            complete,
            read_at: None,
        };
        let mut summary = format!(
            "{} matching order(s), newest first ({} page(s) read from 1NCE{}).",
            output.orders.len(),
            output.pages_read,
            if output.complete {
                ", whole list searched"
            } else {
                "; the list was not searched to the end: narrow the filters or use list_orders"
            }
        );
        if let Some(why) = fell_back {
            summary.push_str(&format!(
                " The order mirror could not be read ({why}), so this search read 1NCE directly."
            ));
        }
        for order in &output.orders {
            summary.push_str("\n- ");
            write_order_line(&mut summary, order);
        }
        if output.detail == Detail::Summary && !output.orders.is_empty() {
            summary.push_str(SUMMARY_NOTE);
        }
        Ok(ToolOutput {
            data: output,
            summary,
        })
    }
}

/// The answer from the mirror: the matches, how much of the account was searched, and how fresh
/// the matches that may still change are.
fn from_mirror(found: crate::mirror::Found, detail: Detail) -> ToolOutput<FindOrdersOutput> {
    use crate::mirror::thousands;
    let coverage = &found.coverage;
    let complete = coverage.complete();
    let read_at = found
        .oldest_changeable_read
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let output = FindOrdersOutput {
        orders: found
            .orders
            .into_iter()
            .map(|o| ListedOrder::new(o, detail))
            .collect(),
        source: Source::Mirror,
        searched: coverage.mirrored,
        pages_read: 0,
        total_count: coverage.total,
        complete,
        read_at: read_at.clone(),
        detail,
    };
    let shown = output.orders.len() as u64;
    let mut summary = if found.matched > shown {
        format!(
            "{} matching order(s), the newest {shown} shown",
            thousands(found.matched)
        )
    } else {
        format!("{shown} matching order(s), newest first")
    };
    summary.push_str(&format!(
        ", searched among {} this server keeps (no request to 1NCE).",
        coverage.describe()
    ));
    if !complete {
        let rest = coverage
            .total
            .map(|t| t.saturating_sub(coverage.mirrored))
            .filter(|rest| *rest > 0)
            .map(|rest| format!("the {} oldest", thousands(rest)))
            .unwrap_or_else(|| "the oldest orders".to_owned());
        summary.push_str(&format!(
            " Not the whole account yet: {rest} are being read in the background; a match among them is not excluded, so search again later before saying none exists."
        ));
    }
    if let Some(at) = &read_at {
        summary.push_str(&format!(
            " Matches that may still change (not COMPLETED or CANCELLED) show their state as read at {at}; get_order reads one afresh."
        ));
    }
    for order in &output.orders {
        summary.push_str("\n- ");
        write_order_line(&mut summary, order);
    }
    if output.detail == Detail::Summary && !output.orders.is_empty() {
        summary.push_str(SUMMARY_NOTE);
    }
    ToolOutput {
        data: output,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(value: serde_json::Value) -> Order {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn filters_combine() {
        let o = order(json!({
            "order_number": 5, "order_status": "COMPLETED", "order_type": "TOPUP",
            "order_date": "2025-03-04T10:00:00Z", "customer_reference": "Fleet-North",
            "products": [{"product_id": 1004, "quantity": 1}],
            "sims": [{"iccid": "8988280666000000031"}]
        }));
        let filter =
            |args: serde_json::Value| Filter::new(serde_json::from_value(args).unwrap()).unwrap();
        assert!(filter(json!({})).matches(&o));
        assert!(filter(json!({"status": "completed", "reference": "north"})).matches(&o));
        assert!(
            filter(json!({"placed_from": "2025-03-04", "placed_until": "2025-03-04"})).matches(&o)
        );
        assert!(!filter(json!({"placed_from": "2025-03-05"})).matches(&o));
        assert!(filter(json!({"iccid": "8988280666000000031", "product_id": 1004})).matches(&o));
        assert!(!filter(json!({"product_id": 1001})).matches(&o));
        assert!(!filter(json!({"order_type": "FIRST_ORDER"})).matches(&o));
    }

    #[test]
    fn bad_filters_say_what_is_allowed() {
        let err = |args: serde_json::Value| {
            Filter::new(serde_json::from_value(args).unwrap())
                .err()
                .unwrap()
        };
        assert!(err(json!({"placed_from": "yesterday"})).contains("like 2026-01-31"));
        assert!(err(json!({"limit": 0})).contains("from 1 to 50"));
        assert!(
            err(json!({"placed_from": "2026-02-01", "placed_until": "2026-01-01"}))
                .contains("after")
        );
        assert!(err(json!({"product_id": -3})).contains("positive"));
    }
}
