//! The order mirror: every order read from 1NCE is kept in the state store, so a question about
//! any order is answered in milliseconds, within 1NCE's limits (at most 10 orders a page, no
//! filters, about 100 requests per 5 minutes).
//!
//! - **What is kept, and when it is read again.** Orders in a final state ([`FINAL_STATUSES`])
//!   never change, and are never read again. Others are read again once older than the
//!   freshness window (`--mirror-max-age`).
//! - **The sync.** On first use a background task walks the list newest first (1NCE numbers its
//!   pages oldest first, so a page keeps its orders as new ones come, and a backfill killed half
//!   way resumes at its page); afterwards, on demand and at most once a window, a pass reads the
//!   newest pages again until a page holds only known orders in a final state. One process of
//!   all sharing the store syncs (a lease in the store), paced to a share of the rate limit
//!   (`--mirror-rate-share`, half by default) so an agent's own calls are never starved.
//! - **What it does not do.** The order path never trusts the mirror where freshness matters:
//!   prices come from the catalogue, and a lost answer after a POST is searched at 1NCE.
//!   Searches say how complete and how fresh their answer is, and never claim "no such order"
//!   while the mirror is incomplete.
//!
//! Knows the 1NCE client and the state store; nothing of MCP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::model::{ListOrdersQuery, MAX_PAGE_SIZE, Order, SortKey};
use crate::api::{ApiError, Client};
use crate::rate_limit::RateLimit;
use crate::state::{Kept, MirrorQuery, MirroredOrder, StateError, Store, SyncState};

/// The statuses 1NCE never moves an order out of. 1NCE documents only `COMPLETED`; its portal
/// shows cancelled orders as `CANCELLED`. Any other status (`IN_PROGRESS`, `SHIPPED`, one 1NCE
/// adds later) counts as one that may still change.
pub const FINAL_STATUSES: &[&str] = &["COMPLETED", "CANCELLED", "CANCELED"];

/// Whether an order in `status` can no longer change.
pub fn is_final(status: Option<&str>) -> bool {
    status.is_some_and(|s| {
        FINAL_STATUSES
            .iter()
            .any(|f| s.trim().eq_ignore_ascii_case(f))
    })
}

/// How long the sync's lease lasts without renewal, at least: a process that died mid-sync
/// hands over to another after this (or three of its paces, when those are longer).
const LEASE: Duration = Duration::from_secs(10);
/// Most pages one pass over the newest pages reads.
const PASS_PAGES: u64 = 10;

/// The mirror's settings.
#[derive(Debug, Clone, Copy)]
pub struct MirrorSettings {
    /// How long an order not in a final state is trusted before it is read again.
    pub max_age: Duration,
    /// The share of the rate limit the sync may use.
    pub rate_share: f64,
    /// The rate limit to 1NCE (`None`: `--rate-limit off`, and the sync is not paced either).
    pub rate_limit: Option<RateLimit>,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            max_age: Duration::from_secs(60),
            rate_share: 0.5,
            rate_limit: Some(RateLimit::DEFAULT),
        }
    }
}

/// The mirror of one account's orders; cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    client: Client,
    settings: MirrorSettings,
    /// Who this process is to the sync's lease.
    owner: String,
    /// A sync task of this process is running.
    syncing: AtomicBool,
    /// The last error the sync met, for `check` and the answers that depend on it.
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// How much of the account the mirror holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Orders kept.
    pub mirrored: u64,
    /// Orders in the account, as 1NCE last said.
    pub total: Option<u64>,
    /// The whole list has been read once.
    pub backfilled: bool,
    /// When the newest pages were last read again.
    pub last_pass: Option<DateTime<Utc>>,
    /// What stops the sync, if anything.
    pub error: Option<String>,
}

impl Coverage {
    /// Whether every order of the account is kept: the whole list was read once, and as many
    /// orders are kept as 1NCE last counted.
    pub fn complete(&self) -> bool {
        self.backfilled && self.total.is_none_or(|total| self.mirrored >= total)
    }

    /// "2,000 of 2,000 orders" / "1,240 of 2,000 orders" / "1,240 orders".
    pub fn describe(&self) -> String {
        match self.total {
            Some(total) => format!(
                "{} of {} orders",
                thousands(self.mirrored.min(total.max(self.mirrored))),
                thousands(total.max(self.mirrored))
            ),
            None => format!("{} orders", thousands(self.mirrored)),
        }
    }
}

/// `n` with thousands separated by commas.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What a search of the mirror found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The matching orders, newest first, at most the query's limit.
    pub orders: Vec<Order>,
    /// How many kept orders match.
    pub matched: u64,
    /// How much the search covered.
    pub coverage: Coverage,
    /// The oldest reading among the matches that may still change, if any.
    pub oldest_changeable_read: Option<DateTime<Utc>>,
}

/// An order as the mirror keeps it.
pub fn mirrored(order: &Order) -> Option<MirroredOrder> {
    let number = i64::try_from(order.order_number?).ok()?;
    let mut product_ids: Vec<i64> = order
        .products
        .iter()
        .filter_map(|p| i64::try_from(p.product_id).ok())
        .collect();
    product_ids.sort_unstable();
    product_ids.dedup();
    let mut iccids: Vec<String> = order.sims.iter().filter_map(|s| s.iccid.clone()).collect();
    iccids.sort_unstable();
    iccids.dedup();
    Some(MirroredOrder {
        number,
        status: order.order_status.clone(),
        order_type: order.order_type.clone(),
        placed_at: order.placed_at().map(|t| t.timestamp_millis()),
        reference: order.customer_reference.clone(),
        product_ids,
        iccids,
        final_state: is_final(order.order_status.as_deref()),
        body: serde_json::to_value(order).ok()?,
    })
}

fn order_of(kept: &Kept) -> Option<Order> {
    serde_json::from_value(kept.order.body.clone()).ok()
}

impl Mirror {
    pub fn new(store: Store, client: Client, settings: MirrorSettings) -> Mirror {
        Mirror {
            inner: Arc::new(Inner {
                store,
                client,
                settings,
                owner: format!(
                    "{}:{}",
                    std::process::id(),
                    crate::hex(&rand::random::<[u8; 8]>())
                ),
                syncing: AtomicBool::new(false),
                last_error: Mutex::new(None),
            }),
        }
    }

    /// Keeps `orders`, as just read from 1NCE. Best effort: the mirror only makes answers
    /// faster, so a store that fails is logged and the orders are read again later.
    pub async fn remember(&self, orders: &[Order]) {
        let rows: Vec<MirroredOrder> = orders.iter().filter_map(mirrored).collect();
        if rows.is_empty() {
            return;
        }
        if let Err(e) = self.inner.store.mirror_put(&rows, Utc::now()).await {
            tracing::warn!(error = %e, "could not keep orders in the mirror");
        }
    }

    /// Order `number` from the mirror, when it is there and can be trusted without asking 1NCE:
    /// in a final state, or read within the freshness window. Starts the sync if need be.
    pub async fn order(&self, number: u64) -> Result<Option<Order>, StateError> {
        self.wake();
        let Ok(number) = i64::try_from(number) else {
            return Ok(None);
        };
        let Some(kept) = self.inner.store.mirror_get(number).await? else {
            return Ok(None);
        };
        let fresh = kept.order.final_state || self.is_fresh(kept.read_at);
        Ok(fresh.then(|| order_of(&kept)).flatten())
    }

    fn is_fresh(&self, read_at: DateTime<Utc>) -> bool {
        let age = Utc::now() - read_at;
        age <= chrono::Duration::from_std(self.inner.settings.max_age).unwrap_or_default()
    }

    /// The kept orders `query` matches, with how much of the account was searched and how fresh
    /// the matches that may still change are. Starts the sync if need be.
    pub async fn find(&self, query: &MirrorQuery) -> Result<Found, StateError> {
        self.wake();
        let (kept, matched) = self.inner.store.mirror_find(query).await?;
        let coverage = self.coverage().await?;
        let oldest_changeable_read = kept
            .iter()
            .filter(|k| !k.order.final_state)
            .map(|k| k.read_at)
            .min();
        Ok(Found {
            orders: kept.iter().filter_map(order_of).collect(),
            matched,
            coverage,
            oldest_changeable_read,
        })
    }

    /// How much of the account the mirror holds.
    pub async fn coverage(&self) -> Result<Coverage, StateError> {
        let sync = self.inner.store.mirror_sync().await?;
        let mirrored = self.inner.store.mirror_count().await?;
        Ok(Coverage {
            mirrored,
            total: sync.total_count,
            backfilled: sync.backfilled,
            last_pass: sync.last_pass.and_then(DateTime::from_timestamp_millis),
            error: self
                .inner
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        })
    }

    /// Forgets every kept order (`1nce-mcp mirror drop`).
    pub async fn drop_all(&self) -> Result<(), StateError> {
        self.inner.store.mirror_drop().await
    }

    /// Starts the sync in the background unless it runs already in this process. It does what
    /// is due (the backfill, or a pass over the newest pages when the last is older than the
    /// freshness window) and ends.
    pub fn wake(&self) {
        if self.inner.syncing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.syncing.store(false, Ordering::Release);
            return;
        };
        let mirror = self.clone();
        runtime.spawn(async move {
            let outcome = mirror.sync().await;
            let mut last = mirror
                .inner
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *last = outcome.err();
            if let Some(e) = last.as_ref() {
                tracing::warn!(error = %e, "the order mirror's sync stopped; it tries again on next use");
            }
            drop(last);
            mirror.inner.syncing.store(false, Ordering::Release);
        });
    }

    /// Runs the sync to the end of what is due, if this process holds the lease.
    pub async fn sync(&self) -> Result<(), String> {
        let store = &self.inner.store;
        let mut pace = Pace::new(&self.inner.settings);
        let lease = pace.interval.map_or(LEASE, |i| (i * 3).max(LEASE));
        loop {
            let leased = store
                .mirror_lease(&self.inner.owner, Utc::now(), lease)
                .await
                .map_err(|e| e.to_string())?;
            if !leased {
                // Another process syncs, or died syncing: look again once its lease may have
                // run out, and stop once nothing is due.
                let state = store.mirror_sync().await.map_err(|e| e.to_string())?;
                let due = !state.backfilled
                    || state
                        .last_pass
                        .and_then(DateTime::from_timestamp_millis)
                        .is_none_or(|at| !self.is_fresh(at));
                if !due {
                    return Ok(());
                }
                tokio::time::sleep(lease).await;
                continue;
            }
            let mut state = store.mirror_sync().await.map_err(|e| e.to_string())?;
            if state.backfilled {
                let due = state
                    .last_pass
                    .and_then(DateTime::from_timestamp_millis)
                    .is_none_or(|at| !self.is_fresh(at));
                if due {
                    self.pass(&mut state, &mut pace).await?;
                }
                return Ok(());
            }
            if !self.backfill_page(&mut state, &mut pace).await? {
                continue;
            }
        }
    }

    /// Reads one page of the backfill and records how far it came. `false` while pages remain.
    async fn backfill_page(&self, state: &mut SyncState, pace: &mut Pace) -> Result<bool, String> {
        let page = match state.next_page {
            Some(page) => page,
            None => {
                // The first page: its headers say how many pages there are.
                let first = self.read_page(1, pace).await?;
                state.total_count = first.total_count.or(state.total_count);
                match first.total_pages {
                    Some(total) if total > 1 => {
                        state.total_pages = Some(total);
                        state.next_page = Some(total);
                    }
                    Some(_) => {
                        state.total_pages = Some(1);
                        state.backfilled = true;
                        state.last_pass = Some(Utc::now().timestamp_millis());
                    }
                    // No page count: forwards, oldest first, until a short page.
                    None => {
                        state.next_page = Some(2);
                        state.backfilled = first.orders.len() < MAX_PAGE_SIZE as usize;
                        state.forward = true;
                    }
                }
                self.save(state).await?;
                return Ok(state.backfilled);
            }
        };
        let read = self.read_page(page, pace).await?;
        state.total_count = read.total_count.or(state.total_count);
        if state.forward {
            state.next_page = Some(page + 1);
            state.backfilled = read.orders.len() < MAX_PAGE_SIZE as usize;
        } else if page <= 2 {
            // Page 1 was read first of all.
            state.backfilled = true;
        } else {
            state.next_page = Some(page - 1);
        }
        if state.backfilled {
            state.last_pass = Some(Utc::now().timestamp_millis());
        }
        self.save(state).await?;
        Ok(state.backfilled)
    }

    /// Reads the newest pages again until one holds only known orders in a final state: new
    /// orders, and orders whose status may have changed, are kept afresh.
    async fn pass(&self, state: &mut SyncState, pace: &mut Pace) -> Result<(), String> {
        let Some(mut page) = state.total_pages.filter(|_| !state.forward) else {
            // Without a page count the newest orders are on the last page, which only reading
            // the whole list finds: read it again from the start, one page per pass.
            state.backfilled = false;
            state.next_page = None;
            state.forward = false;
            return self.save(state).await;
        };
        let mut newest_total = page;
        let mut read = 0;
        while page >= 1 && read < PASS_PAGES {
            let listed = self.read_page_raw(page, pace).await?;
            read += 1;
            state.total_count = listed.total_count.or(state.total_count);
            if let Some(total) = listed.total_pages
                && total > newest_total
            {
                // New pages since: read them first, newest first.
                newest_total = total;
                page = total;
                continue;
            }
            // A full page of orders all kept already, all final: nothing older changed.
            let numbers: Vec<i64> = listed
                .orders
                .iter()
                .filter_map(|o| o.order_number.and_then(|n| i64::try_from(n).ok()))
                .collect();
            let known = self
                .inner
                .store
                .mirror_known(&numbers)
                .await
                .map_err(|e| e.to_string())?;
            let settled = listed.orders.len() == MAX_PAGE_SIZE as usize
                && known.len() == numbers.len()
                && numbers.len() == listed.orders.len()
                && known.iter().all(|(_, is_final)| *is_final);
            self.keep(&listed.orders).await?;
            if settled {
                break;
            }
            page -= 1;
        }
        state.total_pages = Some(newest_total);
        state.last_pass = Some(Utc::now().timestamp_millis());
        self.save(state).await
    }

    async fn save(&self, state: &SyncState) -> Result<(), String> {
        self.inner
            .store
            .mirror_set_sync(state)
            .await
            .map_err(|e| e.to_string())
    }

    /// Reads page `page` (paced) and keeps its orders; a page that cannot be kept stops the sync
    /// before its progress is recorded, so it is read again.
    async fn read_page(
        &self,
        page: u64,
        pace: &mut Pace,
    ) -> Result<crate::api::model::OrderPage, String> {
        let listed = self.read_page_raw(page, pace).await?;
        self.keep(&listed.orders).await?;
        Ok(listed)
    }

    async fn keep(&self, orders: &[Order]) -> Result<(), String> {
        let rows: Vec<MirroredOrder> = orders.iter().filter_map(mirrored).collect();
        self.inner
            .store
            .mirror_put(&rows, Utc::now())
            .await
            .map_err(|e| format!("could not keep orders: {e}"))
    }

    async fn read_page_raw(
        &self,
        page: u64,
        pace: &mut Pace,
    ) -> Result<crate::api::model::OrderPage, String> {
        pace.wait().await;
        let query = ListOrdersQuery {
            page: u32::try_from(page).unwrap_or(u32::MAX),
            page_size: MAX_PAGE_SIZE,
            sort: vec![SortKey::OrderDate],
        };
        self.inner
            .client
            .list_orders(&query)
            .await
            .map_err(|e: ApiError| {
                format!("1NCE could not list orders for the mirror: {}", e.advice())
            })
    }
}

/// The sync's own pace: at most its share of the rate limit, on top of the client's own limiter
/// (which every request goes through as well).
struct Pace {
    interval: Option<Duration>,
    next: Option<tokio::time::Instant>,
}

impl Pace {
    fn new(settings: &MirrorSettings) -> Pace {
        let share = settings.rate_share.clamp(0.01, 1.0);
        Pace {
            interval: settings.rate_limit.map(|limit| {
                Duration::from_secs_f64(
                    limit.per.as_secs_f64() / f64::from(limit.requests.max(1)) / share,
                )
            }),
            next: None,
        }
    }

    async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = tokio::time::Instant::now();
        if let Some(next) = self.next
            && next > now
        {
            tokio::time::sleep_until(next).await;
        }
        self.next = Some(tokio::time::Instant::now() + interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_are_one_list_read_without_case() {
        assert!(is_final(Some("COMPLETED")));
        assert!(is_final(Some(" cancelled ")));
        assert!(!is_final(Some("IN_PROGRESS")));
        assert!(!is_final(Some("SHIPPED")));
        assert!(!is_final(None));
    }

    #[test]
    fn counts_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_240), "1,240");
        assert_eq!(thousands(2_000_000), "2,000,000");
    }

    #[test]
    fn the_sync_uses_its_share_of_the_limit() {
        let pace = Pace::new(&MirrorSettings::default());
        // The default limit is 90 per 5 minutes: half of it is one request every 6.7 s.
        let interval = pace.interval.unwrap().as_secs_f64();
        assert!((interval - 6.67).abs() < 0.01, "{interval}");
        let unlimited = Pace::new(&MirrorSettings {
            rate_limit: None,
            ..MirrorSettings::default()
        });
        assert!(unlimited.interval.is_none());
    }
}
