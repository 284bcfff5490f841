//! The order list, one page at a time, newest pages first when 1NCE makes that possible.
//!
//! Sorted by date, 1NCE puts the newest orders on the last pages. When it reports the page count
//! (`X-Total-Pages`) the walk goes from the last page backwards, newest first; without it, from
//! page 1 forwards (oldest first) until a short page, which is the end of the list, and
//! [`PageWalk::newest_first`] says so, because stopping early is then wrong. Page 1 is read first
//! either way, for the totals, and handed out in its turn without a second request.

use super::model::{ListOrdersQuery, MAX_PAGE_SIZE, OrderPage, SortKey};
use super::{ApiError, Client};

/// A walk over the order list, reading at most a given number of pages.
pub struct PageWalk {
    client: Client,
    sort: Vec<SortKey>,
    /// Page 1, read to learn the totals, until its turn comes.
    first: Option<OrderPage>,
    /// The page numbers still to visit, in order; `None` when walking forward without a count.
    backward: Option<std::ops::RangeInclusive<u32>>,
    next_forward: u32,
    /// Whether the list ended (the last page was handed out).
    ended: bool,
    max_pages: u32,
    handed_out: u32,
    requests: u32,
    total_pages: Option<u64>,
    total_count: Option<u64>,
}

impl PageWalk {
    /// Reads page 1 (full pages, sorted by `sort`, which should start with the order date) and
    /// prepares to hand out at most `max_pages` pages.
    pub async fn start(
        client: &Client,
        sort: Vec<SortKey>,
        max_pages: u32,
    ) -> Result<PageWalk, ApiError> {
        let query = ListOrdersQuery {
            page: 1,
            page_size: MAX_PAGE_SIZE,
            sort: sort.clone(),
        };
        let first = client.list_orders(&query).await?;
        let backward = first.total_pages.map(|total| {
            let total = u32::try_from(total).unwrap_or(u32::MAX).max(1);
            // Walked as (1..=total).rev(); kept as a range to avoid a Vec of page numbers.
            1..=total
        });
        Ok(PageWalk {
            client: client.clone(),
            sort,
            total_pages: first.total_pages,
            total_count: first.total_count,
            first: Some(first),
            backward,
            next_forward: 1,
            ended: false,
            max_pages: max_pages.max(1),
            handed_out: 0,
            requests: 1,
        })
    }

    /// The next page, or `None` once the list ended or `max_pages` were handed out.
    pub async fn next(&mut self) -> Option<Result<OrderPage, ApiError>> {
        if self.ended || self.handed_out >= self.max_pages {
            return None;
        }
        let number = match &mut self.backward {
            Some(range) => range.next_back()?,
            None => {
                let n = self.next_forward;
                self.next_forward += 1;
                n
            }
        };
        let page = match self.first.take_if(|p| p.page == number) {
            Some(page) => page,
            None => {
                self.requests += 1;
                let query = ListOrdersQuery {
                    page: number,
                    page_size: MAX_PAGE_SIZE,
                    sort: self.sort.clone(),
                };
                match self.client.list_orders(&query).await {
                    Ok(page) => page,
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        self.handed_out += 1;
        self.ended = match &self.backward {
            Some(range) => range.is_empty(),
            // Without a page count, a short page is the end of the list.
            None => page.orders.len() < MAX_PAGE_SIZE as usize,
        };
        Some(Ok(page))
    }

    /// Whether pages come newest first (the page count is known). If not, they come oldest first
    /// and only the whole list says which orders are the newest.
    pub fn newest_first(&self) -> bool {
        self.backward.is_some()
    }

    /// Whether every page of the list has been handed out.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// How many pages this walk hands out at most: the list's page count when known, capped.
    pub fn planned(&self) -> u32 {
        let pages = self
            .total_pages
            .map_or(self.max_pages, |t| u32::try_from(t).unwrap_or(u32::MAX));
        pages.clamp(1, self.max_pages)
    }

    /// Pages handed out so far.
    pub fn handed_out(&self) -> u32 {
        self.handed_out
    }

    /// Requests made to 1NCE so far, page 1 included.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The number of orders in the account, when 1NCE reported it.
    pub fn total_count(&self) -> Option<u64> {
        self.total_count
    }
}
