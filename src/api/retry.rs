//! When a failed request is repeated, and how long to wait first.
//!
//! Only requests that cannot change anything are repeated: reads, and the token request. An
//! order POST that was sent is never repeated (see [`super::Client::send`]). A repeatable
//! request is tried again after 429, 502, 503, 504 and transport failures (no connection,
//! timeout, an answer cut off), waiting as long as 1NCE's `Retry-After` asks or else an
//! exponential backoff with jitter, at most `max_retries` times and never past `budget`, the
//! time one call may spend waiting in all. Then the caller gets an error that says when to
//! try again.

use std::time::Duration;

use rand::RngExt as _;

use super::error::ApiError;

/// How hard to try before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Repeats after the first attempt; 0 turns retrying off.
    pub max_retries: u32,
    /// Backoff before the first repeat; it doubles with each further one.
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts (a longer `Retry-After` is still honoured).
    pub max_backoff: Duration,
    /// The most one call may spend waiting, for the rate limiter and between attempts together.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    /// Three repeats starting at half a second, within 30 seconds.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never repeats a request; still waits up to the default budget for the rate limiter.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The backoff before repeat number `retry` (0-based): `initial · 2^retry`, capped, with
    /// "equal jitter" (a random point in its upper half) so that many clients that failed
    /// together do not come back together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let half = ceiling / 2;
        let jitter_ns = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rand::rng().random_range(0..=jitter_ns))
    }

    /// After a failed attempt: `Ok(delay)` to repeat after `delay`, or `Err(retry_in)` to give
    /// up, `retry_in` being when a new try makes sense. `retries` repeats have been made,
    /// `waited` spent waiting so far, and 1NCE asked for `retry_after` if it said so.
    pub(crate) fn next(
        &self,
        retries: u32,
        waited: Duration,
        retry_after: Option<Duration>,
    ) -> Result<Duration, Duration> {
        let delay = retry_after.unwrap_or_else(|| self.backoff(retries));
        let retry_in = retry_after.unwrap_or_else(|| delay.max(Duration::from_secs(10)));
        if retries >= self.max_retries || waited.saturating_add(delay) > self.budget {
            Err(retry_in)
        } else {
            Ok(delay)
        }
    }
}

/// Whether a failed attempt is worth repeating (when the request may be repeated at all).
pub(crate) fn is_transient(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::RateLimited { .. }
            | ApiError::Upstream { status: 502..=504 }
            | ApiError::Unreachable { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let d = p.backoff(0);
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
            let d = p.backoff(2);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
            let d = p.backoff(40);
            assert!(
                d >= Duration::from_millis(350) && d <= Duration::from_millis(700),
                "{d:?}"
            );
        }
    }

    #[test]
    fn gives_up_after_max_retries_or_past_the_budget() {
        let p = RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            budget: Duration::from_secs(5),
        };
        assert!(p.next(0, Duration::ZERO, None).unwrap() <= Duration::from_millis(10));
        assert!(p.next(1, Duration::ZERO, None).is_ok());
        assert_eq!(
            p.next(2, Duration::ZERO, None),
            Err(Duration::from_secs(10))
        );
        // Retry-After is honoured, and when it is beyond the budget it is what the caller hears.
        assert_eq!(
            p.next(0, Duration::ZERO, Some(Duration::from_secs(2))),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            p.next(0, Duration::from_secs(4), Some(Duration::from_secs(2))),
            Err(Duration::from_secs(2))
        );
        assert_eq!(
            p.next(0, Duration::ZERO, Some(Duration::from_secs(120))),
            Err(Duration::from_secs(120))
        );
        assert!(RetryPolicy::none().next(0, Duration::ZERO, None).is_err());
    }

    #[test]
    fn only_transient_failures_are_repeated() {
        assert!(is_transient(&ApiError::RateLimited { retry_after: None }));
        for status in [502, 503, 504] {
            assert!(is_transient(&ApiError::Upstream { status }));
        }
        assert!(!is_transient(&ApiError::Upstream { status: 500 }));
        assert!(is_transient(&ApiError::Unreachable { reason: "x".into() }));
        assert!(!is_transient(&ApiError::NotFound));
        assert!(!is_transient(&ApiError::BadResponse { reason: "x".into() }));
    }
}
