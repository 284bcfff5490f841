//! Confirmation tokens: the step between an order preview and a real, paid order.
//!
//! A preview issues a token bound to the SHA-256 of the exact validated order. Redeeming it
//! checks, atomically: the token exists, has not expired, matches the order byte for byte, and has
//! not been used. A redeemed token is held by a [`Redemption`] while the POST runs; the POST's
//! outcome decides what happens to it:
//! - placed: the token is spent for good and remembers the order number, so a second use is
//!   refused with that number;
//! - refused by 1NCE in a way that proves nothing was created (400, 401, 403, 429, no connection):
//!   the token opens again, since the person approved exactly this content and nothing happened;
//! - anything else, including the call being dropped mid-POST: the outcome is unknown and the
//!   token can never drive another POST.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::model::NewOrder;

/// How long spent and expired tokens are remembered, so a late reuse gets a precise answer
/// rather than "unknown token".
const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);
/// Most tokens remembered at once; the oldest are forgotten first beyond this.
const MAX_ENTRIES: usize = 10_000;

/// All confirmation tokens issued by this server process.
#[derive(Debug)]
pub struct Confirmations {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    digest: [u8; 32],
    /// The session the token was issued to; it cannot be redeemed from another.
    scope: String,
    issued: Instant,
    expires: Instant,
    expires_at: DateTime<Utc>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Posting,
    Placed(Option<u64>),
    OutcomeUnknown,
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a token cannot be used. The messages tell the agent exactly what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this confirmation_token was not issued by this server (or the server restarted since): nothing was ordered. Call create_order without confirmation_token for a new preview and show it to the user"
    )]
    Unknown,
    #[error(
        "this confirmation_token was issued to another MCP session and cannot be used in this one: nothing was ordered. Call create_order without confirmation_token for a new preview in this session"
    )]
    OtherSession,
    #[error(
        "this confirmation_token expired at {0}: nothing was ordered. Call create_order without confirmation_token for a new preview and get the user's approval again"
    )]
    Expired(String),
    #[error(
        "the order differs from the preview this confirmation_token approved (products, quantities, delivery address or reference changed): nothing was ordered. Call create_order without confirmation_token for a preview of the new order and get the user's approval for it"
    )]
    Mismatch,
    #[error(
        "this confirmation_token was already used and placed order {}: nothing more was ordered.{}",
        .0.map(|n| n.to_string()).unwrap_or_else(|| "(number not reported)".to_owned()),
        .0.map(|n| format!(" Look it up with get_order {n}.")).unwrap_or_default()
    )]
    AlreadyPlaced(Option<u64>),
    #[error(
        "this confirmation_token is being used by another call right now: nothing more was ordered"
    )]
    InFlight,
    #[error(
        "this confirmation_token was already used, and whether that order reached 1NCE is unknown. Do not order again: look for it with list_orders (sort order_date) first"
    )]
    OutcomeUnknown,
}

impl Confirmations {
    pub fn new(ttl: Duration) -> Self {
        Confirmations {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Issues a token that confirms exactly `order` within the session `scope`, valid for the
    /// configured time.
    pub fn issue(&self, order: &NewOrder, scope: &str) -> Issued {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = std::iter::once("ct_".to_owned())
            .chain(bytes.iter().map(|b| format!("{b:02x}")))
            .collect();
        let now = Instant::now();
        let expires_at =
            Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX / 2);
        let mut entries = self.lock();
        entries.retain(|_, e| now.duration_since(e.expires) < REMEMBER_FOR);
        if entries.len() >= MAX_ENTRIES
            && let Some(oldest) = entries
                .iter()
                .filter(|(_, e)| e.state != State::Posting)
                .min_by_key(|(_, e)| e.issued)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            token.clone(),
            Entry {
                digest: digest(order),
                scope: scope.to_owned(),
                issued: now,
                expires: now + self.ttl,
                expires_at,
                state: State::Open,
            },
        );
        Issued { token, expires_at }
    }

    /// Claims `token` for posting `order` from session `scope`. Only one caller can hold a token
    /// at a time.
    pub fn redeem(
        self: &Arc<Self>,
        token: &str,
        order: &NewOrder,
        scope: &str,
    ) -> Result<Redemption, Refusal> {
        let mut entries = self.lock();
        let entry = entries.get_mut(token.trim()).ok_or(Refusal::Unknown)?;
        if entry.scope != scope {
            return Err(Refusal::OtherSession);
        }
        match entry.state {
            State::Placed(n) => return Err(Refusal::AlreadyPlaced(n)),
            State::Posting => return Err(Refusal::InFlight),
            State::OutcomeUnknown => return Err(Refusal::OutcomeUnknown),
            State::Open => {}
        }
        if Instant::now() >= entry.expires {
            return Err(Refusal::Expired(
                entry
                    .expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ));
        }
        if entry.digest != digest(order) {
            return Err(Refusal::Mismatch);
        }
        entry.state = State::Posting;
        Ok(Redemption {
            store: Arc::clone(self),
            token: token.trim().to_owned(),
            settled: false,
        })
    }

    fn settle(&self, token: &str, state: State) {
        if let Some(entry) = self.lock().get_mut(token) {
            entry.state = state;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave an entry half-written (every update is a
        // single assignment), so a poisoned map is still sound to use.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A claimed token. Settle it with the POST's outcome; dropping it unsettled (the call was
/// cancelled mid-POST) records the outcome as unknown.
#[derive(Debug)]
pub struct Redemption {
    store: Arc<Confirmations>,
    token: String,
    settled: bool,
}

impl Redemption {
    /// 1NCE accepted the order.
    pub fn placed(mut self, order_number: Option<u64>) {
        self.finish(State::Placed(order_number));
    }

    /// 1NCE certainly created nothing: the token may be used again until it expires.
    pub fn nothing_placed(mut self) {
        self.finish(State::Open);
    }

    /// Whether 1NCE created the order is unknown: the token is never usable again.
    pub fn outcome_unknown(mut self) {
        self.finish(State::OutcomeUnknown);
    }

    fn finish(&mut self, state: State) {
        self.store.settle(&self.token, state);
        self.settled = true;
    }
}

impl Drop for Redemption {
    fn drop(&mut self) {
        if !self.settled {
            self.store.settle(&self.token, State::OutcomeUnknown);
        }
    }
}

/// SHA-256 of the validated order's canonical JSON (fixed field order, absent fields as null).
fn digest(order: &NewOrder) -> [u8; 32] {
    let bytes = serde_json::to_vec(order).unwrap_or_default();
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::ProductLine;

    fn order(quantity: i64) -> NewOrder {
        NewOrder::new(
            &[ProductLine {
                product_id: 1001,
                quantity,
            }],
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn token_is_single_use_and_bound_to_content() {
        let store = Arc::new(Confirmations::new(Duration::from_secs(60)));
        let issued = store.issue(&order(5), "s");
        assert!(issued.token.starts_with("ct_") && issued.token.len() == 35);
        assert_eq!(
            store.redeem(&issued.token, &order(6), "s").unwrap_err(),
            Refusal::Mismatch
        );
        let held = store.redeem(&issued.token, &order(5), "s").unwrap();
        assert_eq!(
            store.redeem(&issued.token, &order(5), "s").unwrap_err(),
            Refusal::InFlight
        );
        held.placed(Some(42));
        let err = store.redeem(&issued.token, &order(5), "s").unwrap_err();
        assert_eq!(err, Refusal::AlreadyPlaced(Some(42)));
        assert!(err.to_string().contains("get_order 42"));
        assert_eq!(
            store.redeem("ct_nope", &order(5), "s").unwrap_err(),
            Refusal::Unknown
        );
        let other = store.issue(&order(5), "s");
        assert_eq!(
            store.redeem(&other.token, &order(5), "t").unwrap_err(),
            Refusal::OtherSession
        );
    }

    #[test]
    fn failures_reopen_or_lock_the_token() {
        let store = Arc::new(Confirmations::new(Duration::from_secs(60)));
        let issued = store.issue(&order(1), "s");
        store
            .redeem(&issued.token, &order(1), "s")
            .unwrap()
            .nothing_placed();
        let dropped = store.redeem(&issued.token, &order(1), "s").unwrap();
        drop(dropped);
        assert_eq!(
            store.redeem(&issued.token, &order(1), "s").unwrap_err(),
            Refusal::OutcomeUnknown
        );
    }

    #[test]
    fn tokens_expire() {
        let store = Arc::new(Confirmations::new(Duration::ZERO));
        let issued = store.issue(&order(1), "s");
        assert!(matches!(
            store.redeem(&issued.token, &order(1), "s"),
            Err(Refusal::Expired(_))
        ));
    }
}
