//! What made a call slow: time spent waiting for the client-side rate limit and for retries.
//!
//! The client's methods return 1NCE's data; how long they waited on the way is reported on the
//! side, so callers that care (the MCP layer tells the agent) can look without every signature
//! carrying it. [`observe`] runs a future with a fresh [`Waits`] record in a task-local slot;
//! the client adds to whichever record is in scope, and nothing when none is. [`inherit`] carries
//! the record into a task spawned from inside `observe`.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

tokio::task_local! {
    static CURRENT: Arc<Mutex<Waits>>;
}

/// Delays one call went through before it finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waits {
    /// Time spent waiting for the client-side rate limiter.
    pub rate_limited: Duration,
    /// Each retry of a request, in order.
    pub retries: Vec<Retry>,
}

/// One repeated request: why, and how long the client waited before repeating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// What went wrong with the previous attempt, e.g. "1NCE answered 503".
    pub reason: String,
    /// The pause before the next attempt.
    pub delay: Duration,
}

impl Waits {
    /// True when the call neither waited for the rate limiter nor repeated a request.
    pub fn is_empty(&self) -> bool {
        self.rate_limited.is_zero() && self.retries.is_empty()
    }

    /// Total time spent waiting, limiter and backoff together.
    pub fn total(&self) -> Duration {
        self.rate_limited + self.retries.iter().map(|r| r.delay).sum::<Duration>()
    }
}

/// Runs `future`, recording the waits of every client call made inside it.
pub async fn observe<F: Future>(future: F) -> (F::Output, Waits) {
    let record = Arc::new(Mutex::new(Waits::default()));
    let output = CURRENT.scope(Arc::clone(&record), future).await;
    let waits = record
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    (output, waits)
}

/// Wraps `future` so that, spawned as its own task, it still reports to the record of the
/// [`observe`] call that is current here (if any).
pub fn inherit<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let record = CURRENT.try_with(Arc::clone).ok();
    async move {
        match record {
            Some(record) => CURRENT.scope(record, future).await,
            None => future.await,
        }
    }
}

fn update(change: impl FnOnce(&mut Waits)) {
    let _ = CURRENT
        .try_with(|record| change(&mut record.lock().unwrap_or_else(PoisonError::into_inner)));
}

pub(crate) fn record_rate_limited(waited: Duration) {
    if !waited.is_zero() {
        update(|w| w.rate_limited += waited);
    }
}

pub(crate) fn record_retry(reason: String, delay: Duration) {
    update(|w| w.retries.push(Retry { reason, delay }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_only_inside_observe_and_follows_spawned_tasks() {
        record_retry("outside".into(), Duration::from_secs(1));
        let ((), waits) = observe(async {
            record_rate_limited(Duration::from_millis(300));
            record_rate_limited(Duration::ZERO);
            tokio::spawn(inherit(async {
                record_retry("1NCE answered 503".into(), Duration::from_millis(200));
            }))
            .await
            .unwrap();
            // A task spawned without `inherit` reports nowhere.
            tokio::spawn(async { record_retry("lost".into(), Duration::from_secs(9)) })
                .await
                .unwrap();
        })
        .await;
        assert_eq!(waits.rate_limited, Duration::from_millis(300));
        assert_eq!(waits.retries.len(), 1);
        assert_eq!(waits.retries[0].reason, "1NCE answered 503");
        assert_eq!(waits.total(), Duration::from_millis(500));
        let ((), none) = observe(async {}).await;
        assert!(none.is_empty());
    }
}
