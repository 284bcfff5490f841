//! The token ledger's records: one per used token id, kept for as long as any process could
//! still accept its token, and what a store promises about them ([`check_contract`]).
//!
//! **Time.** No process's clock decides what the store keeps. The store has a clock of its own
//! ([`super::Store::time`]): the time the file system stamps on a file just written in the
//! state directory, or the database's. Records carry the signed expiry of their token, and a
//! sweep removes only records whose token expired [`RETAIN`] before the store's time, never by
//! a record's age. And since any clock, the store's too, may be wrong, single use does not rest
//! on one: before a sweep removes anything it raises the store's *swept-through mark* to the
//! highest expiry among the records it removes, and a claim of a token whose expiry is at or
//! below the mark is refused (see `crate::orders::tokens`). Whatever any clock said when it was
//! swept, a token whose record is gone is refused everywhere; a clock that was wrong for a while
//! costs at most the tokens alive then (a day, the longest a token lives). The model in
//! `crate::orders::lifecycle_model` checks this over every interleaving of processes and clock
//! jumps.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "test-support"))]
use super::Store;

/// How long a token's record is kept after the token expired, by the store's clock. Past its
/// expiry a token is refused anyway; this keeps "already placed order N" precise for a week, and
/// is the margin the store's clock may go back before claims are refused.
pub const RETAIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most records one sweep removes: a sweep runs with every preview and must stay quick.
pub const SWEEP_AT_MOST: usize = 64;

/// What became of a token, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UseState {
    /// Claimed; the POST is under way, or its process died before recording an outcome.
    Posting,
    /// 1NCE created the order.
    Placed { order_number: Option<u64> },
    /// Whether 1NCE created the order is unknown.
    Unknown,
    /// The person did not approve.
    NotApproved { answer: NotApproved },
}

/// A token's record, as its user writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    #[serde(flatten)]
    pub state: UseState,
    /// The order's content id (a hash prefix), to find identical orders.
    pub content: String,
    /// The token's signed expiry, in Unix milliseconds. A record whose expiry is unknown (an
    /// unreadable one) is never swept.
    #[serde(default = "never")]
    pub expires: i64,
}

pub(super) fn never() -> i64 {
    i64::MAX
}

/// A record as the store holds it: with the store's time of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub record: Use,
    /// When the store recorded the current state, by the store's clock.
    pub at: DateTime<Utc>,
}

/// The store's clock and swept-through mark, read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTime {
    /// The store's time.
    pub now: DateTime<Utc>,
    /// The highest token expiry (Unix milliseconds) among the records any sweep removed: a
    /// token that expires at or before it may have been used, and cannot be told apart.
    pub swept_through: Option<i64>,
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the token.
    Won,
    /// A record exists already; here it is.
    Taken(Recorded),
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// The store's clock as the sweep read it, and the mark after the sweep.
    pub time: StoreTime,
    /// Records removed.
    pub removed: usize,
}

/// A token's end without the person's approval, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotApproved {
    Declined,
    Cancelled,
    NoAnswer,
}

/// The contract every store keeps, as a check its tests run on an empty store (the
/// marker files' unit test, the PostgreSQL table's integration test): twenty threads claiming one
/// id, one wins; settle, release, recent; the store's clock; a sweep that removes only records
/// whose token expired [`RETAIN`] before the store's time. Panics on the first difference.
/// For the tests only (cargo feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub async fn check_contract(store: &Store) {
    let before = store.time().await.unwrap();
    let now = before.now.timestamp_millis();
    let record = |state, content: &str, expires| Use {
        state,
        content: content.to_owned(),
        expires,
    };
    let posting = record(UseState::Posting, "c1", now + 60_000);
    let claims: Vec<_> = (0..20)
        .map(|_| {
            let (store, posting) = (store.clone(), posting.clone());
            tokio::spawn(async move { store.claim("a", &posting).await.unwrap() == Claim::Won })
        })
        .collect();
    let mut winners = 0;
    for claim in claims {
        winners += usize::from(claim.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one of twenty claims wins");
    match store.claim("a", &posting).await.unwrap() {
        Claim::Taken(recorded) => assert_eq!(recorded.record, posting),
        Claim::Won => panic!("a second claim won"),
    }
    let placed = record(
        UseState::Placed {
            order_number: Some(9),
        },
        "c1",
        now + 60_000,
    );
    store.settle("a", &placed).await.unwrap();
    let got = store.token("a").await.unwrap().unwrap();
    assert_eq!(got.record, placed);
    // Stamped by the store's clock, which these checks read a moment ago.
    let slack = chrono::Duration::seconds(5);
    assert!(
        got.at >= before.now - slack && got.at <= store.time().await.unwrap().now + slack,
        "{got:?} {before:?}"
    );
    assert_eq!(
        store
            .claim("b", &record(UseState::Posting, "c2", now + 60_000))
            .await
            .unwrap(),
        Claim::Won
    );
    store.release("b").await.unwrap();
    assert_eq!(store.token("b").await.unwrap(), None);
    let since = before.now - slack;
    let recent: Vec<Use> = store
        .recent("c1", since)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(recent, vec![placed.clone()]);
    assert!(store.recent("c2", since).await.unwrap().is_empty());
    assert!(store.recent("c1", got.at + slack).await.unwrap().is_empty());

    // Sweeping: only tokens that expired RETAIN before the store's time go, whatever their
    // records' age; a record whose expiry is unknown stays.
    let retain = RETAIN.as_millis() as i64;
    let old = record(UseState::Unknown, "c3", now - retain - 60_000);
    let recent_expiry = record(UseState::Unknown, "c3", now - retain + 600_000);
    let unknown_expiry = record(UseState::Unknown, "c3", i64::MAX);
    store.claim("old", &old).await.unwrap();
    store.claim("recent", &recent_expiry).await.unwrap();
    store.claim("unknown", &unknown_expiry).await.unwrap();
    let swept = store.sweep(SWEEP_AT_MOST).await.unwrap();
    assert_eq!(swept.removed, 1, "{swept:?}");
    assert_eq!(swept.time.swept_through, Some(old.expires));
    assert_eq!(store.token("old").await.unwrap(), None);
    for kept in ["a", "recent", "unknown"] {
        assert!(
            store.token(kept).await.unwrap().is_some(),
            "{kept} was swept"
        );
    }
    // The mark never goes down, and the store's time reads it back.
    let older = record(UseState::Unknown, "c3", old.expires - 60_000);
    store.claim("older", &older).await.unwrap();
    assert_eq!(store.sweep(SWEEP_AT_MOST).await.unwrap().removed, 1);
    assert_eq!(store.time().await.unwrap().swept_through, Some(old.expires));
    // At most `at_most` per sweep, and the mark covers what was removed.
    for i in 0..3 {
        let o = record(UseState::Unknown, "c3", old.expires + 1 + i);
        store.claim(&format!("old{i}"), &o).await.unwrap();
    }
    assert_eq!(store.sweep(2).await.unwrap().removed, 2);
    let after = store.sweep(2).await.unwrap();
    assert_eq!(after.removed, 1);
    assert_eq!(after.time.swept_through, Some(old.expires + 3));
    for id in ["a", "recent", "unknown"] {
        store.release(id).await.unwrap();
    }
}
