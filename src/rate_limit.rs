//! Rate limits: a token bucket that spaces out bursts of calls (to 1NCE, before it answers with
//! 429; to an authorization server's introspection), and the contract of a bucket that replicas
//! share ([`SharedBucket`], kept by `crate::state`). It knows nothing of what it paces.
//!
//! 1NCE documents two limits: 100 requests per IP per 5 minutes on `/orders` and `/products`,
//! and elsewhere 10 requests per second. The default here keeps within the stricter one: a burst
//! of 10, refilled at 90 per 5 minutes, so no 5-minute window ever holds more than 100 requests.
//!
//! A caller that finds the bucket empty reserves the next free slot and sleeps until then, so
//! concurrent callers are served in arrival order. A slot further away than the caller is willing
//! to wait is not reserved: the caller is told when to come back instead.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How many requests per period, and how many may go out back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per `per`, sustained.
    pub requests: u32,
    pub per: Duration,
    /// Requests that may go out at once after a quiet spell (the bucket's size), at least 1.
    pub burst: u32,
}

impl RateLimit {
    /// Within 1NCE's stricter documented limit of 100 requests per 5 minutes.
    pub const DEFAULT: RateLimit = RateLimit {
        requests: 90,
        per: Duration::from_secs(300),
        burst: 10,
    };

    /// Sustained requests per second.
    fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.per.as_secs_f64()
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests per {}, bursts of {}",
            self.requests,
            humantime::format_duration(self.per),
            self.burst
        )
    }
}

/// Parses `N/PERIOD` such as `90/5m`, `10/1s` or `100/300` (a bare period means seconds); the
/// burst is left at the default's and set separately.
impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<RateLimit, String> {
        let usage = "write the limit as REQUESTS/PERIOD, e.g. 90/5m or 10/1s, or \"off\"";
        let (requests, per) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} has no '/'; {usage}"))?;
        let requests: u32 = requests
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{requests:?} is not a whole number from 1; {usage}"))?;
        let per = per.trim();
        let per = match per.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                humantime::parse_duration(per).map_err(|e| format!("{per:?}: {e}; {usage}"))?
            }
        };
        if per < Duration::from_millis(1) || per > Duration::from_secs(24 * 3600) {
            return Err(format!("the period must be between 1ms and 24h; {usage}"));
        }
        Ok(RateLimit {
            requests,
            per,
            burst: RateLimit::DEFAULT.burst,
        })
    }
}

/// A rate limit kept outside this process and shared by every replica (`--state-url`): the
/// same contract as [`RateLimiter::reserve`], for the bucket named `bucket`. `Err` says the
/// shared limit could not be consulted; the request is then not sent.
pub trait SharedBucket: Send + Sync + fmt::Debug {
    fn reserve<'a>(
        &'a self,
        bucket: &'a str,
        limit: RateLimit,
        max_wait: Duration,
    ) -> futures::future::BoxFuture<'a, Result<Result<Duration, Duration>, String>>;
}

/// The shared bucket.
pub(crate) struct RateLimiter {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// Free slots; negative when callers have reserved slots that are not free yet.
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limit.burst.max(1)),
                updated: Instant::now(),
            }),
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a slot. `Ok(wait)`: the slot is reserved and frees after `wait` (zero when one
    /// was free). `Err(wait)`: the next slot is more than `max_wait` away; nothing was reserved.
    pub(crate) fn reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        self.reserve_at(Instant::now(), max_wait)
    }

    fn reserve_at(&self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = self.limit.per_second();
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(f64::from(self.limit.burst.max(1)));
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(Duration::ZERO);
        }
        let wait = Duration::from_secs_f64(((1.0 - bucket.tokens) / rate).min(1e9));
        if wait > max_wait {
            return Err(wait);
        }
        bucket.tokens -= 1.0;
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits_and_explains_mistakes() {
        let l: RateLimit = "90/5m".parse().unwrap();
        assert_eq!(
            (l.requests, l.per, l.burst),
            (90, Duration::from_secs(300), 10)
        );
        let l: RateLimit = " 10 / 1s ".parse().unwrap();
        assert_eq!((l.requests, l.per), (10, Duration::from_secs(1)));
        assert_eq!(
            "100/300".parse::<RateLimit>().unwrap().per,
            Duration::from_secs(300)
        );
        for bad in [
            "90", "0/5m", "-1/5m", "x/5m", "90/soon", "90/0s", "90/2days", "",
        ] {
            let err = bad.parse::<RateLimit>().unwrap_err();
            assert!(err.contains("REQUESTS/PERIOD"), "{bad}: {err}");
        }
        assert_eq!(
            RateLimit::DEFAULT.to_string(),
            "90 requests per 5m, bursts of 10"
        );
    }

    #[test]
    fn the_default_never_exceeds_100_requests_in_five_minutes() {
        let d = RateLimit::DEFAULT;
        let most_in_window = f64::from(d.burst) + d.per_second() * 300.0;
        assert!(most_in_window <= 100.0, "{most_in_window}");
    }

    #[test]
    fn a_burst_goes_through_then_callers_queue_in_order() {
        let limiter = RateLimiter::new(RateLimit {
            requests: 1,
            per: Duration::from_secs(2),
            burst: 3,
        });
        let mut now = limiter.bucket.lock().unwrap().updated;
        let max = Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(limiter.reserve_at(now, max), Ok(Duration::ZERO));
        }
        // Empty: each further caller reserves the slot after the one before.
        assert_eq!(limiter.reserve_at(now, max), Ok(Duration::from_secs(2)));
        assert_eq!(limiter.reserve_at(now, max), Ok(Duration::from_secs(4)));
        // Too far away: refused, and nothing reserved.
        assert_eq!(limiter.reserve_at(now, max), Err(Duration::from_secs(6)));
        assert_eq!(limiter.reserve_at(now, max), Err(Duration::from_secs(6)));
        now += Duration::from_secs(6);
        // The two reservations are used up, one new slot has refilled.
        assert_eq!(limiter.reserve_at(now, max), Ok(Duration::ZERO));
        now += Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.reserve_at(now, max), Ok(Duration::ZERO));
        }
        assert!(limiter.reserve_at(now, max).unwrap() > Duration::ZERO);
    }
}
