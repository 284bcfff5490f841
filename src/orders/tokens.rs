//! Confirmation tokens: the signed step between an order preview and a real, paid order.
//!
//! A token is self-contained and signed with HMAC-SHA256 under the state store's key (the
//! state directory's owner-only key file, or the database's), so it survives the process that
//! issued it: a preview made by one `1nce-mcp call` can be confirmed by the next. Any change to a token breaks its signature.
//! A token binds, and [`Confirmations::check`] refuses any difference in:
//! - **the order**: SHA-256 of the exact validated order (products, address, reference). Beside
//!   it ride short tags of each part (the products, their quantities, the order of the lines,
//!   the address, the reference), keyed with the signing key so they give nothing away, so a
//!   refusal can say which part changed; the digest alone decides;
//! - **the price**: SHA-256 of every line's charges and the totals the person saw; the one-time totals
//!   ride along in the token so a refusal can name both prices;
//! - **the account and environment**: the 1NCE API base URL (or "the sandbox") and client id,
//!   hashed, so a sandbox preview never places a real order and one account's preview never
//!   orders on another;
//! - **the session**: one scope per HTTP session, one for a process a single user owns;
//! - **the person**: with OAuth, the issuer and subject of whoever previewed the order, so
//!   another person's access token cannot confirm it;
//! - **the approval**: a token whose preview promised the client's own approval form, or was
//!   made under `--require-human-approval`, places an order only after an approval in such a
//!   form, wherever it is redeemed;
//! - **its time**: when it was issued and when it expires, by the clock of the process that
//!   issued it. A token issued in the future, or expiring further ahead than [`LONGEST_TTL`], was
//!   made by a process whose clock is wrong, and is refused.
//!
//! Single use rests on the token ledger of the state store (`crate::state`): redeeming claims
//! the token's id, and the record
//! then says what became of it (see [`Redemption`]). A person's "no" is recorded there too, so
//! no process sharing the store can use the token after it.
//!
//! **Clocks.** No clock is trusted where a second POST could follow. A claim is judged again
//! once it is held: a token whose expiry is at or below the store's swept-through mark (a record
//! of its age may have been cleared) places nothing, whatever any clock says; a process whose
//! clock disagrees with the store's by more than [`CLOCK_SKEW`] places nothing; a token the
//! store's clock says has expired places nothing. In each case the claim is given back, since
//! nothing was sent. See `crate::state::ledger`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::checks::{PricedOrder, money};
use super::consent::{Approval, NotApproved};
use super::post_answer::{Created, NotProcessed, Unknown};
use crate::api::model::NewOrder;
use crate::clock::{Clock, SystemClock};
use crate::hex;
use crate::state::{
    Budget, Claim, Recorded, Reservation, Reserved, SWEEP_AT_MOST, SpendState, StateError, Store,
    StoreTime, Use, UseState,
};

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every token, so a person can tell one from other strings.
const PREFIX: &str = "ct_";
/// Layout version of the signed payload: 5 carries the part tags. Tokens of version 4 (the
/// layout before them, issued by an earlier release) are still accepted; their refusals name
/// no part.
const VERSION: u8 = 5;
const VERSION_WITHOUT_PARTS: u8 = 4;
/// version(1) + id(16) + issued ms(8) + expiry ms(8) + scope(16) + person(16) + account(16) +
/// flags(1) + order(32) + prices(32) + [parts(40), version 5] + totals length(1); the totals
/// text follows.
const FIXED_LEN: usize = 1 + 16 + 8 + 8 + 16 + 16 + 16 + 1 + 32 + 32 + PARTS_LEN + 1;
/// The part tags: one per [`Part`], [`TAG_LEN`] bytes each.
const PARTS_LEN: usize = Part::ALL.len() * TAG_LEN;
const TAG_LEN: usize = 8;

/// A part of an order a person approves, as a token tags it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Which products (the ids, in any order).
    Products,
    /// How many of each.
    Quantities,
    /// The order the products are listed in.
    LineOrder,
    DeliveryAddress,
    Reference,
}

impl Part {
    const ALL: [Part; 5] = [
        Part::Products,
        Part::Quantities,
        Part::LineOrder,
        Part::DeliveryAddress,
        Part::Reference,
    ];

    fn name(self) -> &'static str {
        match self {
            Part::Products => "the products",
            Part::Quantities => "the quantities",
            Part::LineOrder => "the order of the product lines",
            Part::DeliveryAddress => "the delivery address",
            Part::Reference => "the customer reference",
        }
    }

    /// What this part of `order` is, canonically: the text its tag is made from.
    fn content(self, order: &NewOrder) -> String {
        let mut sorted: Vec<(u64, u64)> = order
            .products
            .iter()
            .map(|l| (l.product_id, l.quantity))
            .collect();
        sorted.sort_unstable();
        let value = match self {
            Part::Products => serde_json::json!(sorted.iter().map(|l| l.0).collect::<Vec<_>>()),
            Part::Quantities => serde_json::json!(sorted),
            Part::LineOrder => serde_json::json!(
                order
                    .products
                    .iter()
                    .map(|l| l.product_id)
                    .collect::<Vec<_>>()
            ),
            Part::DeliveryAddress => serde_json::json!(order.delivery_address),
            Part::Reference => serde_json::json!(order.customer_reference),
        };
        value.to_string()
    }
}

/// What changed between the previewed order and the one presented: the parts whose tags
/// differ, or nothing known (a token without tags, or tags that all agree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed(pub Vec<Part>);

impl fmt::Display for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Other products make their quantities and line order moot.
        let shown: Vec<&str> = if self.0.contains(&Part::Products) {
            self.0
                .iter()
                .filter(|p| !matches!(p, Part::Quantities | Part::LineOrder))
                .map(|p| p.name())
                .collect()
        } else if self.0.contains(&Part::Quantities) {
            self.0
                .iter()
                .filter(|p| **p != Part::LineOrder)
                .map(|p| p.name())
                .collect()
        } else {
            self.0.iter().map(|p| p.name()).collect()
        };
        match shown.as_slice() {
            [] => f.write_str("its products, quantities, delivery address or reference changed"),
            [one] => write!(f, "{one} changed"),
            [init @ .., last] => write!(f, "{} and {last} changed", init.join(", ")),
        }
    }
}
/// Flag bit: only an approval in the client's form places this order.
const NEEDS_FORM: u8 = 1;
/// Flag bit: only a click in the order card places this order.
const NEEDS_CARD: u8 = 2;
/// The longest a token may live (the most `--confirmation-ttl` allows). A token that claims
/// to live longer, or to expire further ahead than this, comes from a process whose clock is
/// wrong.
pub const LONGEST_TTL: Duration = Duration::from_secs(24 * 3600);
/// How far a process's clock may be from the state store's before it places no order, and how
/// far in the future a token may say it was issued.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How long a POST may stay unrecorded before its outcome counts as unknown, unless told.
const DEFAULT_POSTING_GRACE: Duration = Duration::from_secs(120);

/// The 1NCE account and environment an order goes to, as a token binds it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Account([u8; 16]);

impl Account {
    /// The real API (or any API at `base_url`) as the API user `client_id`.
    pub fn live(base_url: &str, client_id: &str) -> Account {
        Account(hash16(&format!("live\n{base_url}\n{client_id}")))
    }

    /// The built-in sandbox, wherever it happens to listen.
    pub fn sandbox(client_id: &str) -> Account {
        Account(hash16(&format!("sandbox\n{client_id}")))
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Account({})", hex(&self.0[..4]))
    }
}

/// Everything a token is bound to, as of the call that presents it.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub order: &'a NewOrder,
    /// The order priced now; `None` checks everything but the price.
    pub priced: Option<&'a PricedOrder>,
    pub scope: &'a str,
    /// Who acts ([`super::person::binding_key`]): empty when the transport knows nobody.
    pub person: &'a str,
    pub account: Account,
}

/// Issues, checks and redeems confirmation tokens.
pub struct Confirmations {
    ttl: Duration,
    key: [u8; 32],
    store: Store,
    clock: Arc<dyn Clock>,
    posting_grace: Duration,
}

impl fmt::Debug for Confirmations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Confirmations")
            .field("ttl", &self.ttl)
            .field("store", &self.store)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// The verified contents of a token.
#[derive(Debug, Clone)]
pub struct Claims {
    id: [u8; 16],
    issued: i64,
    expires: i64,
    scope: [u8; 16],
    person: [u8; 16],
    account: Account,
    /// How this order must be approved: in the client's form, in the order card, or (a token
    /// of the agent's) either way.
    pub approval: Approval,
    order: [u8; 32],
    prices: [u8; 32],
    /// Each [`Part`]'s tag, in [`Part::ALL`]'s order (none in a version 4 token).
    parts: Option<[u8; PARTS_LEN]>,
    /// The one-time net totals the person saw, as shown.
    pub totals: String,
}

impl Claims {
    /// The id the single-use store knows this token by.
    pub fn id(&self) -> String {
        hex(&self.id)
    }
}

/// Why a token cannot be used. The messages tell the agent exactly what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this confirmation_token is not valid (malformed, altered, or signed with another key): nothing was ordered. Call create_order without confirmation_token for a new preview and show it to the user"
    )]
    Invalid,
    #[error(
        "this confirmation_token was issued for another 1NCE account or environment (the sandbox and the real API never share tokens): nothing was ordered. Call create_order without confirmation_token for a preview here and get the user's approval for it"
    )]
    OtherAccount,
    #[error(
        "this confirmation_token was issued to another MCP session and cannot be used in this one: nothing was ordered. Call create_order without confirmation_token for a new preview in this session"
    )]
    OtherSession,
    #[error(
        "this confirmation_token was issued to another person (whoever previewed the order) and only they can confirm it: nothing was ordered. Call create_order without confirmation_token for a preview of your own and get your approval for it"
    )]
    OtherPerson,
    #[error(
        "this confirmation_token expired at {0}: nothing was ordered. Call create_order without confirmation_token for a new preview and get the user's approval again"
    )]
    Expired(String),
    #[error(
        "this confirmation_token says it was issued at {issued} and expires at {expires}, which cannot be right at this server's time ({now}): the clock of the server that issued it, or of this one, is wrong. Nothing was ordered. Tell the user the operator must set the clocks right; then call create_order without confirmation_token for a new preview"
    )]
    FromTheFuture {
        issued: String,
        expires: String,
        now: String,
    },
    #[error(
        "this server's clock ({local}) disagrees with the state store's ({store}) by {by}, more than the minute it allows, so it places no order: nothing was ordered. Tell the user the operator must set this machine's clock right (NTP); the confirmation_token stays valid until it expires"
    )]
    ClockSkew {
        local: String,
        store: String,
        by: String,
    },
    #[error("{0}")]
    OverSpendLimit(super::spend::OverLimit),
    #[error(
        "this confirmation_token is too old to be told apart from a used one: used tokens that expired when it does have been cleared from the state store (its expiry, {0}, is at or before theirs; a clock was wrong when they were cleared, or it is now). Nothing was ordered. Call create_order without confirmation_token for a new preview and get the user's approval again"
    )]
    Cleared(String),
    #[error(
        "the order differs from the preview this confirmation_token approved ({0}): nothing was ordered. Call create_order without confirmation_token for a preview of the new order and get the user's approval for it"
    )]
    Mismatch(Changed),
    #[error(
        "the price changed since the preview: the user approved a one-time total of {then} net, and the 1NCE catalogue now prices this order at {now} net{}. Nothing was ordered. Call create_order without confirmation_token for a preview at the current price and get the user's approval for it",
        if .then == .now { " (other charges of its products changed)" } else { "" }
    )]
    PriceChanged { then: String, now: String },
    #[error(
        "this confirmation_token was already used and placed order {}: nothing more was ordered{}",
        .0.map(|n| n.to_string()).unwrap_or_else(|| "(number not reported)".to_owned()),
        .0.map(|n| format!(". Look it up with get_order {n}")).unwrap_or_default()
    )]
    AlreadyPlaced(Option<u64>),
    #[error(
        "this confirmation_token is being used by another call right now: nothing more was ordered. Wait for that call's answer"
    )]
    InFlight,
    #[error(
        "this confirmation_token was already used at {}, and whether that order reached 1NCE is unknown. Do not order again",
        .since.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    OutcomeUnknown { since: DateTime<Utc> },
    #[error(
        "the person {}; this confirmation_token can never place it. Nothing was ordered. A new preview is needed, and only if the user asks for the order again",
        .0.what()
    )]
    NotApproved(NotApproved),
    #[error(
        "the use of this confirmation_token could not be recorded ({0}), so nothing was ordered. The operator must check the state store (the state directory, or the database of --state-url); try again once it works"
    )]
    Storage(String),
}

impl Confirmations {
    /// Signs with the store's key and records single use in the store.
    pub fn new(store: Store, ttl: Duration) -> Confirmations {
        Confirmations {
            ttl,
            key: store.signing_key(),
            store,
            clock: Arc::new(SystemClock),
            posting_grace: DEFAULT_POSTING_GRACE,
        }
    }

    /// The state store the tokens' single use is recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the time from `clock` instead of the system (for the unit tests).
    #[cfg(test)]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a claimed token may stay without an outcome before that outcome counts as
    /// unknown: the longest a POST can take (the request timeout) plus a margin.
    pub fn with_posting_grace(mut self, grace: Duration) -> Self {
        self.posting_grace = grace;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Issues a token that confirms exactly `binding`, valid for the configured time. First
    /// sweeps the store (a bounded number of records, by the store's clock), and refuses when
    /// this process's clock disagrees with the store's: a token it made would carry a wrong
    /// expiry, and it could not place the order anyway.
    pub async fn issue(
        &self,
        binding: &Binding<'_>,
        approval: Approval,
    ) -> Result<Issued, Refusal> {
        let storage = |e: StateError| Refusal::Storage(e.to_string());
        let time = self.store.time().await.map_err(storage)?;
        let now = self.clock.now();
        skew(now, &time)?;
        // Only where the clocks agree: a sweep is safe by any clock, but one by a clock that
        // is wrong clears needlessly, and the tokens alive then can no longer be used.
        self.store.sweep(SWEEP_AT_MOST).await.map_err(storage)?;
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let issued = now.timestamp_millis();
        let expires = issued.saturating_add(millis(self.ttl));
        let prices = binding.priced.map(price_digest).unwrap_or_default();
        let totals = binding
            .priced
            .map(|p| truncate_utf8(&money(&p.totals_for_people(), "0.00"), 255))
            .unwrap_or_default();
        let mut payload = Vec::with_capacity(FIXED_LEN + totals.len());
        payload.push(VERSION);
        payload.extend_from_slice(&id);
        payload.extend_from_slice(&issued.to_be_bytes());
        payload.extend_from_slice(&expires.to_be_bytes());
        payload.extend_from_slice(&hash16(binding.scope));
        payload.extend_from_slice(&hash16(binding.person));
        payload.extend_from_slice(&binding.account.0);
        payload.push(match approval {
            Approval::ApprovalForm => NEEDS_FORM,
            Approval::OrderCard => NEEDS_CARD,
            Approval::ConfirmationToken => 0,
        });
        payload.extend_from_slice(&digest(binding.order));
        payload.extend_from_slice(&prices);
        payload.extend_from_slice(&self.part_tags(binding.order));
        payload.push(totals.len() as u8);
        payload.extend_from_slice(totals.as_bytes());
        let signature = self.mac(&payload).finalize().into_bytes();
        Ok(Issued {
            token: format!(
                "{PREFIX}{}.{}",
                URL_SAFE_NO_PAD.encode(&payload),
                URL_SAFE_NO_PAD.encode(signature)
            ),
            expires_at: DateTime::from_timestamp_millis(expires)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        })
    }

    /// Checks that `token` could place the order of `binding` right now, without claiming it.
    /// Signature, account and session come first, then what the store says of the token, its
    /// time, and last the order and its price.
    pub async fn check(&self, token: &str, binding: &Binding<'_>) -> Result<Claims, Refusal> {
        let claims = self.verify(token.trim()).ok_or(Refusal::Invalid)?;
        if claims.account != binding.account {
            return Err(Refusal::OtherAccount);
        }
        // The person before the session: when both differ, "another person" is the truth
        // that matters to whoever reads the refusal.
        if claims.person != hash16(binding.person) {
            return Err(Refusal::OtherPerson);
        }
        if claims.scope != hash16(binding.scope) {
            return Err(Refusal::OtherSession);
        }
        let recorded = self
            .store
            .token(&claims.id())
            .await
            .map_err(|e| Refusal::Storage(e.to_string()))?;
        if let Some(recorded) = recorded {
            return Err(self.refusal(&recorded));
        }
        claims.in_time(self.clock.now())?;
        if claims.order != digest(binding.order) {
            return Err(Refusal::Mismatch(self.changed(&claims, binding.order)));
        }
        if let Some(priced) = binding.priced
            && claims.prices != price_digest(priced)
        {
            return Err(Refusal::PriceChanged {
                then: claims.totals.clone(),
                now: money(&priced.totals_for_people(), "0.00"),
            });
        }
        Ok(claims)
    }

    /// [`Self::redeem_within`] without spend limits.
    #[cfg(test)]
    pub async fn redeem(&self, token: &str, binding: &Binding<'_>) -> Result<Redemption, Refusal> {
        self.redeem_within(token, binding, None).await
    }

    /// Claims `token` for posting the order of `binding`. Of any number of concurrent callers,
    /// in any number of processes sharing the store, at most one gets the claim; and it keeps it
    /// only if the store's clock, read once the claim is held, agrees that the token is in time
    /// (see the module's "Clocks").
    ///
    /// With `spend`, the operator's spend limits are checked again and the order's amount
    /// reserved in the same atomic step as the claim (see `crate::state::spend`).
    pub async fn redeem_within(
        &self,
        token: &str,
        binding: &Binding<'_>,
        spend: Option<&SpendCheck>,
    ) -> Result<Redemption, Refusal> {
        let claims = self.check(token, binding).await?;
        let id = claims.id();
        let content = content_id(binding.order);
        let first = Use {
            state: UseState::Posting,
            content: content.clone(),
            expires: claims.expires,
        };
        let mut spent_before = Vec::new();
        match spend {
            None => match self.store.claim(&id, &first).await {
                Ok(Claim::Won) => {}
                Ok(Claim::Taken(existing)) => return Err(self.refusal(&existing)),
                Err(e) => return Err(Refusal::Storage(e.to_string())),
            },
            Some(spend) => match self
                .store
                .claim_within(&id, &first, &spend.reservation, &spend.budgets)
                .await
            {
                Ok(Reserved::Won { spent_cents }) => spent_before = spent_cents,
                Ok(Reserved::Taken(existing)) => return Err(self.refusal(&existing)),
                Ok(Reserved::Over {
                    budget,
                    spent_cents,
                }) => return Err(Refusal::OverSpendLimit(spend.over(budget, spent_cents))),
                Err(e) => return Err(Refusal::Storage(e.to_string())),
            },
        }
        // Read after the claim: a sweep that removed an earlier record of this token raised the
        // mark before it did, so this reading sees it.
        let judged = self
            .store
            .time()
            .await
            .map_err(|e| Refusal::Storage(e.to_string()))
            .and_then(|time| {
                claims.not_cleared(&time)?;
                skew(self.clock.now(), &time)?;
                claims.in_time(time.now)
            });
        if let Err(refusal) = judged {
            // Nothing was sent: the token is given back, to be used where the clocks agree.
            if let Err(e) = self.store.release(&id).await {
                tracing::error!(error = %e, "could not give back a confirmation token that was refused before posting; it now counts as used");
            }
            if spend.is_some() {
                let _ = self.store.settle_spend(&id, SpendState::Released).await;
            }
            return Err(refusal);
        }
        Ok(Redemption {
            store: self.store.clone(),
            id,
            content,
            expires: claims.expires,
            spends: spend.is_some(),
            spent_before,
            settled: false,
        })
    }

    /// Ends `claims`' token after the person did not approve, for every process sharing the
    /// store. `Err` when that does not mean nothing was ordered with it: another call holds the
    /// token (it may be placing the order right now, approved elsewhere), or its record may have
    /// been cleared; or when the end could not be recorded.
    pub async fn end_unapproved(
        &self,
        claims: &Claims,
        order: &NewOrder,
        answer: NotApproved,
    ) -> Result<(), Refusal> {
        let record = Use {
            state: UseState::NotApproved { answer },
            content: content_id(order),
            expires: claims.expires,
        };
        let storage = |e: StateError| Refusal::Storage(e.to_string());
        match self
            .store
            .claim(&claims.id(), &record)
            .await
            .map_err(storage)?
        {
            Claim::Won => claims.not_cleared(&self.store.time().await.map_err(storage)?),
            Claim::Taken(existing) => match existing.record.state {
                UseState::NotApproved { .. } => Ok(()),
                _ => Err(self.refusal(&existing)),
            },
        }
    }

    /// Orders with the same content placed (or of unknown outcome) from this store within
    /// `within`, oldest first.
    pub async fn recent_identical(&self, order: &NewOrder, within: Duration) -> Vec<Recorded> {
        let since = self.clock.now() - chrono_duration(within);
        self.store
            .recent(&content_id(order), since)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !matches!(r.record.state, UseState::NotApproved { .. }))
            .collect()
    }

    /// This process's clock against the store's, for start-up and `1nce-mcp check`: `Err` says
    /// what is wrong and that no order is placed until it is fixed.
    pub async fn clock_check(&self) -> Result<ClockAgreement, String> {
        let time = self
            .store
            .time()
            .await
            .map_err(|e| format!("could not read the state store's clock: {e}"))?;
        let local = self.clock.now();
        skew(local, &time).map_err(|refusal| match refusal {
            Refusal::ClockSkew { local, store, by } => format!(
                "this machine's clock ({local}) disagrees with the state store's ({store}) by {by}; no order is placed until it is set right (NTP)"
            ),
            other => other.to_string(),
        })?;
        Ok(ClockAgreement {
            off_by: (local - time.now).abs(),
        })
    }

    fn refusal(&self, recorded: &Recorded) -> Refusal {
        match recorded.record.state {
            UseState::Posting => {
                let age = self.clock.now() - recorded.at;
                if age > chrono_duration(self.posting_grace) {
                    // The process that claimed it died mid-POST, or could not record the end.
                    Refusal::OutcomeUnknown { since: recorded.at }
                } else {
                    Refusal::InFlight
                }
            }
            UseState::Placed { order_number } => Refusal::AlreadyPlaced(order_number),
            UseState::Unknown => Refusal::OutcomeUnknown { since: recorded.at },
            UseState::NotApproved { answer } => Refusal::NotApproved(answer),
        }
    }

    /// The approval nonce of a token made for the order card: a MAC of the token's id under a
    /// key derived from the signing key, so only this server (and its replicas) can make one, it
    /// belongs to exactly one token, and it is as single-use as that token. It travels only to
    /// the card (in the preview result's `_meta`), never to the agent.
    pub fn card_nonce(&self, claims: &Claims) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.derived_key("order-card approval nonce"))
            .expect("HMAC takes any key length");
        mac.update(&claims.id);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `nonce` is the card nonce of `claims`' token (in constant time).
    pub fn card_nonce_fits(&self, claims: &Claims, nonce: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(nonce.trim()) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(&self.derived_key("order-card approval nonce"))
            .expect("HMAC takes any key length");
        mac.update(&claims.id);
        mac.verify_slice(&given).is_ok()
    }

    /// The claims of a well-formed token signed by this key, whatever else is true of it.
    pub fn claims_of(&self, token: &str) -> Option<Claims> {
        self.verify(token.trim())
    }

    /// A key for `purpose`, derived from the signing key (HMAC-SHA256 of the purpose), so every
    /// process sharing the signing key shares it, and the signing key itself stays here.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.mac(format!("1nce-mcp derived key\n{purpose}").as_bytes())
            .finalize()
            .into_bytes()
            .into()
    }

    /// The tag of every [`Part`] of `order`: HMAC-SHA256 under the signing key, cut short. A
    /// tag only tells two orders' parts apart; keyed, it says nothing of an address or a
    /// reference to whoever reads a token without the key.
    fn part_tags(&self, order: &NewOrder) -> [u8; PARTS_LEN] {
        let mut tags = [0u8; PARTS_LEN];
        for (part, tag) in Part::ALL.iter().zip(tags.chunks_exact_mut(TAG_LEN)) {
            let text = format!("1nce-mcp order part\n{part:?}\n{}", part.content(order));
            tag.copy_from_slice(&self.mac(text.as_bytes()).finalize().into_bytes()[..TAG_LEN]);
        }
        tags
    }

    /// Which parts of `order` differ from those the token `claims` was issued for.
    fn changed(&self, claims: &Claims, order: &NewOrder) -> Changed {
        let Some(then) = claims.parts else {
            return Changed(Vec::new());
        };
        let now = self.part_tags(order);
        Changed(
            Part::ALL
                .iter()
                .zip(then.chunks_exact(TAG_LEN).zip(now.chunks_exact(TAG_LEN)))
                .filter(|(_, (a, b))| a != b)
                .map(|(part, _)| *part)
                .collect(),
        )
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    /// Decodes a token and checks its signature (in constant time).
    fn verify(&self, token: &str) -> Option<Claims> {
        let (payload, signature) = token.strip_prefix(PREFIX)?.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.mac(&payload).verify_slice(&signature).ok()?;
        let fixed_len = match payload.first() {
            Some(&VERSION) => FIXED_LEN,
            Some(&VERSION_WITHOUT_PARTS) => FIXED_LEN - PARTS_LEN,
            _ => return None,
        };
        if payload.len() < fixed_len {
            return None;
        }
        let totals_len = usize::from(payload[fixed_len - 1]);
        if payload.len() != fixed_len + totals_len {
            return None;
        }
        let take = |from: usize, to: usize| &payload[from..to];
        let claims = Claims {
            id: take(1, 17).try_into().ok()?,
            issued: i64::from_be_bytes(take(17, 25).try_into().ok()?),
            expires: i64::from_be_bytes(take(25, 33).try_into().ok()?),
            scope: take(33, 49).try_into().ok()?,
            person: take(49, 65).try_into().ok()?,
            account: Account(take(65, 81).try_into().ok()?),
            approval: match payload[81] {
                0 => Approval::ConfirmationToken,
                NEEDS_FORM => Approval::ApprovalForm,
                NEEDS_CARD => Approval::OrderCard,
                _ => return None,
            },
            order: take(82, 114).try_into().ok()?,
            prices: take(114, 146).try_into().ok()?,
            parts: match fixed_len == FIXED_LEN {
                true => Some(take(146, 146 + PARTS_LEN).try_into().ok()?),
                false => None,
            },
            totals: String::from_utf8(payload[fixed_len..].to_vec()).ok()?,
        };
        // Signed by this key, so made by a process sharing it; a lifetime no process could
        // have set is a broken token.
        let lifetime = claims.expires.checked_sub(claims.issued)?;
        (lifetime > 0 && lifetime <= millis(LONGEST_TTL)).then_some(claims)
    }
}

/// A claimed token. Settle it with what the POST's answer means; dropping it unsettled (the
/// call's task died mid-POST) records the outcome as unknown.
#[derive(Debug)]
pub struct Redemption {
    store: Store,
    id: String,
    content: String,
    expires: i64,
    /// An amount was reserved against the spend limits with the claim.
    spends: bool,
    /// What each budget had reserved before this one, in the claim's atomic step.
    pub spent_before: Vec<i64>,
    settled: bool,
}

impl Redemption {
    /// 1NCE created the order: the token is spent for good and remembers the number.
    pub async fn placed(mut self, created: &Created) {
        self.settle(UseState::Placed {
            order_number: created.order_number,
        })
        .await;
    }

    /// 1NCE certainly processed nothing: the token may be used again until it expires. Only
    /// a [`NotProcessed`] opens it, and only [`super::post_answer`] makes one.
    pub async fn release(mut self, _proof: &NotProcessed) {
        self.settled = true;
        if let Err(e) = self.store.release(&self.id).await {
            // Fails closed: the token stays spent, which is safe, only less convenient.
            tracing::warn!(error = %e, "could not reopen a confirmation token");
        }
        self.settle_spend(SpendState::Released).await;
    }

    /// Whether 1NCE created the order is unknown: the token can never drive another POST.
    pub async fn unknown(mut self, _why: &Unknown) {
        self.settle(UseState::Unknown).await;
    }

    fn record(&self, state: UseState) -> Use {
        Use {
            state,
            content: self.content.clone(),
            expires: self.expires,
        }
    }

    async fn settle(&mut self, state: UseState) {
        self.settled = true;
        let spend = match state {
            UseState::Placed { .. } => SpendState::Placed,
            _ => SpendState::Unknown,
        };
        if let Err(e) = self.store.settle(&self.id, &self.record(state)).await {
            tracing::warn!(error = %e, "could not record a confirmation token's outcome");
        }
        self.settle_spend(spend).await;
    }

    /// What became of the amount reserved with the claim. One that cannot be recorded stays
    /// `reserved`, which counts as spent: safe, only less convenient.
    async fn settle_spend(&self, state: SpendState) {
        if self.spends
            && let Err(e) = self.store.settle_spend(&self.id, state).await
        {
            tracing::warn!(error = %e, "could not record what became of an order's reserved amount");
        }
    }
}

impl Drop for Redemption {
    /// The call's task died between the claim and its outcome: the record says "unknown" as
    /// soon as a task can write it. Should even that never happen, the claim's "posting" counts
    /// as unknown after the posting grace anyway, so nothing rests on this write.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, id, record, spends) = (
            self.store.clone(),
            self.id.clone(),
            self.record(UseState::Unknown),
            self.spends,
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = store.settle(&id, &record).await {
                        tracing::warn!(error = %e, "could not record a confirmation token's outcome");
                    }
                    if spends {
                        let _ = store.settle_spend(&id, SpendState::Unknown).await;
                    }
                });
            }
            Err(_) => tracing::warn!(
                "a confirmation token was dropped mid-POST outside a runtime; it counts as unknown after the posting grace"
            ),
        }
    }
}

/// What a confirmation reserves against the spend limits, and the budgets it must fit.
#[derive(Debug, Clone)]
pub struct SpendCheck {
    pub reservation: Reservation,
    pub budgets: Vec<Budget>,
    /// The limit behind each budget, for the refusal.
    pub limits: Vec<super::spend::SpendLimit>,
}

impl SpendCheck {
    fn over(&self, budget: usize, spent_cents: i64) -> super::spend::OverLimit {
        let limit = self.limits[budget].clone();
        let this_order = self
            .reservation
            .cents
            .get(&limit.currency)
            .copied()
            .unwrap_or(0);
        super::spend::OverLimit {
            this_order: crate::api::products::Cents(this_order),
            left: crate::api::products::Cents((limit.amount.0 - spent_cents).max(0)),
            limit,
        }
    }
}

/// This process's clock agrees with the state store's.
#[derive(Debug, Clone, Copy)]
pub struct ClockAgreement {
    /// How far apart the two clocks are.
    pub off_by: chrono::Duration,
}

impl Claims {
    /// Refuses a token whose expiry is at or below the store's swept-through mark: a record of
    /// it may have been cleared, so it cannot be told apart from a used one.
    fn not_cleared(&self, time: &StoreTime) -> Result<(), Refusal> {
        match time.swept_through {
            Some(mark) if self.expires <= mark => Err(Refusal::Cleared(rfc3339_ms(self.expires))),
            _ => Ok(()),
        }
    }

    /// Refuses a token that, at `now`, has expired, or that no process with a right clock could
    /// have made: issued in the future, or expiring further ahead than the longest lifetime.
    fn in_time(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        let now_ms = now.timestamp_millis();
        let skew = millis(CLOCK_SKEW);
        if self.issued > now_ms.saturating_add(skew)
            || self.expires > now_ms.saturating_add(millis(LONGEST_TTL) + skew)
        {
            return Err(Refusal::FromTheFuture {
                issued: rfc3339_ms(self.issued),
                expires: rfc3339_ms(self.expires),
                now: rfc3339(now),
            });
        }
        if now_ms >= self.expires {
            return Err(Refusal::Expired(rfc3339_ms(self.expires)));
        }
        Ok(())
    }
}

/// Refuses when `local` and the store's time are more than [`CLOCK_SKEW`] apart.
fn skew(local: DateTime<Utc>, store: &StoreTime) -> Result<(), Refusal> {
    let by = (local - store.now).abs();
    if by > chrono_duration(CLOCK_SKEW) {
        return Err(Refusal::ClockSkew {
            local: rfc3339(local),
            store: rfc3339(store.now),
            by: human(by),
        });
    }
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(rfc3339)
        .unwrap_or_else(|| format!("{ms} ms after 1970"))
}

/// A duration as a person reads it: "8 days 2 hours", "3 minutes 4 seconds".
fn human(d: chrono::Duration) -> String {
    let secs = d.num_seconds().unsigned_abs();
    humantime::format_duration(Duration::from_secs(if secs >= 3600 {
        secs / 60 * 60
    } else {
        secs
    }))
    .to_string()
}

/// SHA-256 of the validated order's canonical JSON (fixed field order, absent fields as null).
/// The one definition of "the same order": tokens, the audit trail and the search for
/// identical orders all use it.
pub fn digest(order: &NewOrder) -> [u8; 32] {
    let bytes = serde_json::to_vec(order).unwrap_or_default();
    Sha256::digest(bytes).into()
}

/// The order's content id for the single-use store: the digest's first 16 bytes in hex.
fn content_id(order: &NewOrder) -> String {
    hex(&digest(order)[..16])
}

/// SHA-256 of every charge of every line and the totals: what the person saw the order cost.
/// Product names are left out: a product renamed in the catalogue costs what it did.
fn price_digest(priced: &PricedOrder) -> [u8; 32] {
    let charges: Vec<_> = priced
        .lines
        .iter()
        .map(|l| {
            (
                l.product_id,
                l.quantity,
                &l.one_time_net,
                &l.recurring_net_per_unit,
            )
        })
        .collect();
    let bytes = serde_json::to_vec(&(charges, priced.totals_for_people())).unwrap_or_default();
    Sha256::digest(bytes).into()
}

fn hash16(text: &str) -> [u8; 16] {
    let full = Sha256::digest(text.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn truncate_utf8(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::ProductLine;
    use crate::clock::ManualClock;
    use crate::orders::checks::tests::product;
    use crate::orders::checks::{OrderLimits, check_order};
    use crate::orders::consent::Approval;
    use crate::state::{Location, Store};

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

    /// `order` priced at `cents` per unit.
    fn priced(order: &NewOrder, cents: i64) -> PricedOrder {
        let product = product(1001, 1, 1000, cents);
        check_order(order, &[product], &OrderLimits::default()).unwrap()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        store: Confirmations,
    }

    /// Confirmations whose process clock and store clock are one manual clock (moved by hand),
    /// over an in-memory store.
    fn fixture(ttl: Duration) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let store = Confirmations::new(Store::memory(clock.clone(), [7; 32]), ttl)
            .with_clock(clock.clone())
            .with_posting_grace(Duration::from_secs(90));
        Fixture {
            _dir: dir,
            clock,
            store,
        }
    }

    /// Confirmations over a state directory, as a process opens it.
    async fn in_dir(dir: &std::path::Path, ttl: Duration) -> Confirmations {
        let location = Location::Directory {
            dir: dir.to_owned(),
            audit_log: None,
            inside: None,
        };
        Confirmations::new(
            Store::open(&location, &crate::state::Account::BuiltInSandbox)
                .await
                .unwrap(),
            ttl,
        )
    }

    fn live() -> Account {
        Account::live("https://api.1nce.com/management-api/", "id")
    }

    fn binding<'a>(order: &'a NewOrder, priced: &'a PricedOrder, scope: &'a str) -> Binding<'a> {
        Binding {
            order,
            priced: Some(priced),
            scope,
            person: "",
            account: live(),
        }
    }

    fn created(n: u64) -> Created {
        Created {
            order_number: Some(n),
            order: None,
        }
    }

    #[tokio::test]
    async fn a_token_is_single_use_and_bound_to_order_session_person_and_account() {
        let f = fixture(Duration::from_secs(60));
        let (five, six) = (order(5), order(6));
        let (p5, p6) = (priced(&five, 100), priced(&six, 100));
        let issued = f
            .store
            .issue(&binding(&five, &p5, "s"), Approval::ConfirmationToken)
            .await
            .unwrap();
        assert!(issued.token.starts_with("ct_"));
        let t = issued.token.as_str();
        assert_eq!(
            f.store
                .redeem(t, &binding(&six, &p6, "s"))
                .await
                .unwrap_err(),
            Refusal::Mismatch(Changed(vec![Part::Quantities]))
        );
        assert_eq!(
            f.store
                .redeem(t, &binding(&five, &p5, "t"))
                .await
                .unwrap_err(),
            Refusal::OtherSession
        );
        let alice = "https://idp.example\nalice";
        let by_alice = f
            .store
            .issue(
                &Binding {
                    person: alice,
                    ..binding(&five, &p5, "s")
                },
                Approval::ConfirmationToken,
            )
            .await
            .unwrap();
        for (person, scope) in [
            ("https://idp.example\nbob", "s"),
            ("", "s"),
            ("https://idp.example\nbob", "t"),
        ] {
            let other = Binding {
                person,
                ..binding(&five, &p5, scope)
            };
            assert_eq!(
                f.store.check(&by_alice.token, &other).await.unwrap_err(),
                Refusal::OtherPerson,
                "{person:?} in {scope}"
            );
        }
        assert_eq!(
            f.store
                .redeem(
                    t,
                    &Binding {
                        person: alice,
                        ..binding(&five, &p5, "s")
                    }
                )
                .await
                .unwrap_err(),
            Refusal::OtherPerson,
            "a token of nobody in particular is not anybody's"
        );
        let mine = Binding {
            person: alice,
            ..binding(&five, &p5, "s")
        };
        assert!(f.store.check(&by_alice.token, &mine).await.is_ok());
        for account in [
            Account::sandbox("id"),
            Account::live("https://other.example/", "id"),
            Account::live("https://api.1nce.com/management-api/", "other"),
        ] {
            let elsewhere = Binding {
                account,
                ..binding(&five, &p5, "s")
            };
            assert_eq!(
                f.store.redeem(t, &elsewhere).await.unwrap_err(),
                Refusal::OtherAccount
            );
        }
        let held = f.store.redeem(t, &binding(&five, &p5, "s")).await.unwrap();
        assert_eq!(
            f.store
                .redeem(t, &binding(&five, &p5, "s"))
                .await
                .unwrap_err(),
            Refusal::InFlight
        );
        held.placed(&created(42)).await;
        let err = f
            .store
            .redeem(t, &binding(&five, &p5, "s"))
            .await
            .unwrap_err();
        assert_eq!(err, Refusal::AlreadyPlaced(Some(42)));
        assert!(err.to_string().contains("get_order 42"));
    }

    /// A refusal names the part that changed, told by the token's keyed tags, and refuses all
    /// the same; a token of the layout before the tags is still accepted and refused plainly.
    #[tokio::test]
    async fn a_mismatch_names_what_changed() {
        let f = fixture(Duration::from_secs(60));
        let line = |product_id, quantity| ProductLine {
            product_id,
            quantity,
        };
        let address: crate::api::model::DeliveryAddress =
            serde_json::from_value(serde_json::json!({
                "first_name": "Erika", "last_name": "Muster", "street": "Ring", "house_number": "1",
                "zip": "50667", "city": "Köln", "country": "DE"
            }))
            .unwrap();
        let mut moved = address.clone();
        moved.city = Some("Bonn".into());
        let new =
            |lines: &[ProductLine], address: &crate::api::model::DeliveryAddress, reference| {
                NewOrder::new(lines, Some(address), Some(reference)).unwrap()
            };
        let approved = new(&[line(1001, 5), line(1002, 1)], &address, "fleet-7");
        let same = Binding {
            order: &approved,
            priced: None,
            scope: "s",
            person: "",
            account: live(),
        };
        let token = f
            .store
            .issue(&same, Approval::ConfirmationToken)
            .await
            .unwrap()
            .token;
        let refusal = |order: NewOrder| {
            let f = &f;
            let token = token.clone();
            async move {
                let binding = Binding {
                    order: &order,
                    priced: None,
                    scope: "s",
                    person: "",
                    account: live(),
                };
                f.store.check(&token, &binding).await.unwrap_err()
            }
        };
        for (order, changed, says) in [
            (
                new(&[line(1001, 6), line(1002, 1)], &address, "fleet-7"),
                vec![Part::Quantities],
                "(the quantities changed)",
            ),
            (
                new(&[line(1001, 5), line(1003, 1)], &address, "fleet-7"),
                vec![Part::Products, Part::Quantities, Part::LineOrder],
                "(the products changed)",
            ),
            (
                new(&[line(1002, 1), line(1001, 5)], &address, "fleet-7"),
                vec![Part::LineOrder],
                "(the order of the product lines changed)",
            ),
            (
                new(&[line(1001, 5), line(1002, 1)], &moved, "fleet-8"),
                vec![Part::DeliveryAddress, Part::Reference],
                "(the delivery address and the customer reference changed)",
            ),
        ] {
            let refused = refusal(order).await;
            assert_eq!(refused, Refusal::Mismatch(Changed(changed)));
            assert!(refused.to_string().contains(says), "{refused}");
            assert!(
                refused.to_string().contains("nothing was ordered"),
                "{refused}"
            );
        }
        assert!(f.store.check(&token, &same).await.is_ok());

        // The same token in the layout before the tags (version 4: no tags), signed alike.
        let (payload, _) = token.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let mut payload = URL_SAFE_NO_PAD.decode(payload).unwrap();
        payload.drain(146..146 + PARTS_LEN);
        payload[0] = VERSION_WITHOUT_PARTS;
        let signature = f.store.mac(&payload).finalize().into_bytes();
        let old = format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(signature)
        );
        let changed = new(&[line(1001, 6), line(1002, 1)], &address, "fleet-7");
        let binding = Binding {
            order: &changed,
            priced: None,
            scope: "s",
            person: "",
            account: live(),
        };
        let refused = f.store.check(&old, &binding).await.unwrap_err();
        assert_eq!(refused, Refusal::Mismatch(Changed(Vec::new())));
        assert!(
            refused
                .to_string()
                .contains("(its products, quantities, delivery address or reference changed)"),
            "{refused}"
        );
        let binding = Binding {
            order: &approved,
            ..binding
        };
        assert!(f.store.check(&old, &binding).await.is_ok());
    }

    #[tokio::test]
    async fn a_changed_price_is_refused_naming_both_prices() {
        let f = fixture(Duration::from_secs(60));
        let o = order(10);
        let issued = f
            .store
            .issue(
                &binding(&o, &priced(&o, 10_000), "s"),
                Approval::ConfirmationToken,
            )
            .await
            .unwrap();
        let now = priced(&o, 45_000);
        let err = f
            .store
            .check(&issued.token, &binding(&o, &now, "s"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Refusal::PriceChanged {
                then: "1000.00 EUR".into(),
                now: "4500.00 EUR".into()
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("1000.00 EUR") && text.contains("4500.00 EUR"),
            "{text}"
        );
        // A product renamed in the catalogue costs what it did.
        let mut renamed = product(1001, 1, 1000, 10_000);
        renamed.name = "SIM, renamed".into();
        let renamed = check_order(&o, &[renamed], &OrderLimits::default()).unwrap();
        assert!(
            f.store
                .check(&issued.token, &binding(&o, &renamed, "s"))
                .await
                .is_ok()
        );
        // Without a price (before the catalogue is read) everything else still checks.
        let unpriced = Binding {
            priced: None,
            ..binding(&o, &now, "s")
        };
        assert!(f.store.check(&issued.token, &unpriced).await.is_ok());
    }

    #[tokio::test]
    async fn the_approval_the_preview_promised_is_carried() {
        let f = fixture(Duration::from_secs(60));
        let o = order(1);
        let p = priced(&o, 100);
        for approval in [
            Approval::ApprovalForm,
            Approval::OrderCard,
            Approval::ConfirmationToken,
        ] {
            let issued = f
                .store
                .issue(&binding(&o, &p, "s"), approval)
                .await
                .unwrap();
            let claims = f
                .store
                .check(&issued.token, &binding(&o, &p, "s"))
                .await
                .unwrap();
            assert_eq!(claims.approval, approval);
        }
    }

    #[tokio::test]
    async fn a_card_nonce_belongs_to_one_token_and_this_key() {
        let f = fixture(Duration::from_secs(60));
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let one = f.store.issue(&b, Approval::OrderCard).await.unwrap();
        let other = f.store.issue(&b, Approval::OrderCard).await.unwrap();
        let (one, other) = (
            f.store.claims_of(&one.token).unwrap(),
            f.store.claims_of(&other.token).unwrap(),
        );
        let nonce = f.store.card_nonce(&one);
        assert!(f.store.card_nonce_fits(&one, &nonce));
        assert!(!f.store.card_nonce_fits(&other, &nonce));
        for forged in ["", "nonce", &f.store.card_nonce(&other), &nonce[1..]] {
            assert!(!f.store.card_nonce_fits(&one, forged), "{forged:?}");
        }
        let elsewhere = Confirmations::new(
            Store::memory(f.clock.clone(), [8; 32]),
            Duration::from_secs(60),
        );
        assert!(!elsewhere.card_nonce_fits(&one, &nonce));
    }

    #[tokio::test]
    async fn expiry_follows_the_injected_clock() {
        let f = fixture(Duration::from_secs(60));
        let o = order(1);
        let p = priced(&o, 100);
        let issued = f
            .store
            .issue(&binding(&o, &p, "s"), Approval::ConfirmationToken)
            .await
            .unwrap();
        f.clock.advance(Duration::from_secs(59));
        assert!(
            f.store
                .check(&issued.token, &binding(&o, &p, "s"))
                .await
                .is_ok()
        );
        f.clock.advance(Duration::from_secs(1));
        assert!(matches!(
            f.store.redeem(&issued.token, &binding(&o, &p, "s")).await,
            Err(Refusal::Expired(_))
        ));
    }

    #[tokio::test]
    async fn tokens_survive_a_restart_and_tampering_breaks_them() {
        let dir = tempfile::tempdir().unwrap();
        let o = order(1);
        let p = priced(&o, 100);
        let ttl = Duration::from_secs(60);
        let issued = in_dir(dir.path(), ttl)
            .await
            .issue(&binding(&o, &p, "s"), Approval::ConfirmationToken)
            .await
            .unwrap();
        // A new process opens the same state directory.
        let again = in_dir(dir.path(), ttl).await;
        let mut tampered = issued.token.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [tampered.as_str(), "ct_", "nonsense", ""] {
            assert_eq!(
                again.redeem(bad, &binding(&o, &p, "s")).await.unwrap_err(),
                Refusal::Invalid
            );
        }
        // Another key (another state directory) does not accept it either.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            in_dir(other.path(), ttl)
                .await
                .redeem(&issued.token, &binding(&o, &p, "s"))
                .await
                .unwrap_err(),
            Refusal::Invalid
        );
        again
            .redeem(&issued.token, &binding(&o, &p, "s"))
            .await
            .unwrap()
            .placed(&created(1))
            .await;
    }

    #[tokio::test]
    async fn only_proof_of_nothing_processed_reopens_a_token() {
        let f = fixture(Duration::from_secs(60));
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let issued = f
            .store
            .issue(&b, Approval::ConfirmationToken)
            .await
            .unwrap();
        let proof = NotProcessed::never_sent(crate::api::ApiError::Forbidden);
        f.store
            .redeem(&issued.token, &b)
            .await
            .unwrap()
            .release(&proof)
            .await;
        f.store
            .redeem(&issued.token, &b)
            .await
            .unwrap()
            .unknown(&Unknown {
                reason: "HTTP 409".into(),
            })
            .await;
        assert!(matches!(
            f.store.redeem(&issued.token, &b).await.unwrap_err(),
            Refusal::OutcomeUnknown { .. }
        ));
        // A call dropped mid-POST is an unknown outcome too.
        let second = f
            .store
            .issue(&b, Approval::ConfirmationToken)
            .await
            .unwrap();
        drop(f.store.redeem(&second.token, &b).await.unwrap());
        // The record is written by a task of its own (a drop cannot wait): let it run.
        tokio::task::yield_now().await;
        assert!(matches!(
            f.store.redeem(&second.token, &b).await.unwrap_err(),
            Refusal::OutcomeUnknown { .. }
        ));
    }

    #[tokio::test]
    async fn a_posting_record_older_than_the_grace_is_an_unknown_outcome() {
        let f = fixture(Duration::from_secs(600));
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let issued = f
            .store
            .issue(&b, Approval::ConfirmationToken)
            .await
            .unwrap();
        // The process dies mid-POST: the claim is never settled.
        std::mem::forget(f.store.redeem(&issued.token, &b).await.unwrap());
        assert_eq!(
            f.store.check(&issued.token, &b).await.unwrap_err(),
            Refusal::InFlight
        );
        f.clock.advance(Duration::from_secs(91));
        let err = f.store.check(&issued.token, &b).await.unwrap_err();
        assert!(matches!(err, Refusal::OutcomeUnknown { .. }), "{err:?}");
        assert!(err.to_string().contains("Do not order again"), "{err}");
    }

    #[tokio::test]
    async fn a_person_s_no_ends_the_token_and_identical_orders_are_found() {
        let f = fixture(Duration::from_secs(60));
        let o = order(3);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let declined = f.store.issue(&b, Approval::ApprovalForm).await.unwrap();
        let claims = f.store.check(&declined.token, &b).await.unwrap();
        f.store
            .end_unapproved(&claims, &o, NotApproved::Declined)
            .await
            .unwrap();
        let err = f.store.redeem(&declined.token, &b).await.unwrap_err();
        assert_eq!(err, Refusal::NotApproved(NotApproved::Declined));
        assert!(err.to_string().contains("new preview"), "{err}");
        // Declined orders are not "identical orders placed".
        assert!(
            f.store
                .recent_identical(&o, Duration::from_secs(3600))
                .await
                .is_empty()
        );
        let placed = f
            .store
            .issue(&b, Approval::ConfirmationToken)
            .await
            .unwrap();
        f.store
            .redeem(&placed.token, &b)
            .await
            .unwrap()
            .placed(&created(77))
            .await;
        let recent = f
            .store
            .recent_identical(&o, Duration::from_secs(3600))
            .await;
        assert_eq!(recent.len(), 1);
        assert_eq!(
            recent[0].record.state,
            UseState::Placed {
                order_number: Some(77)
            }
        );
        assert!(
            f.store
                .recent_identical(&order(4), Duration::from_secs(3600))
                .await
                .is_empty()
        );
        f.clock.advance(Duration::from_secs(3601));
        assert!(
            f.store
                .recent_identical(&o, Duration::from_secs(3600))
                .await
                .is_empty()
        );
        // A no that comes while another call holds the token says so.
        let busy = f.store.issue(&b, Approval::ApprovalForm).await.unwrap();
        let held = f.store.redeem(&busy.token, &b).await.unwrap();
        let busy_claims = f.store.claims_of(&busy.token).unwrap();
        assert_eq!(
            f.store
                .end_unapproved(&busy_claims, &o, NotApproved::Declined)
                .await
                .unwrap_err(),
            Refusal::InFlight
        );
        held.placed(&created(78)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_redeemers_get_one_claim() {
        let f = fixture(Duration::from_secs(60));
        let o = order(3);
        let p = priced(&o, 100);
        let issued = f
            .store
            .issue(&binding(&o, &p, "s"), Approval::ConfirmationToken)
            .await
            .unwrap();
        let f = Arc::new(f);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (f, o, p, token) = (Arc::clone(&f), o.clone(), p.clone(), issued.token.clone());
                tokio::spawn(async move {
                    match f.store.redeem(&token, &binding(&o, &p, "s")).await {
                        Ok(held) => {
                            held.placed(&created(7)).await;
                            1
                        }
                        Err(_) => 0,
                    }
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += task.await.unwrap();
        }
        assert_eq!(winners, 1);
    }

    /// A process clock and a store clock that are moved apart by hand, over one in-memory
    /// store, with the fixture's key.
    fn two_clocks(
        process_ahead: chrono::Duration,
    ) -> (Arc<ManualClock>, Arc<ManualClock>, Confirmations) {
        let now = Utc::now();
        let store_clock = Arc::new(ManualClock::new(now));
        let process_clock = Arc::new(ManualClock::new(now + process_ahead));
        let c = Confirmations::new(
            Store::memory(store_clock.clone(), [7; 32]),
            Duration::from_secs(600),
        )
        .with_clock(process_clock.clone());
        (process_clock, store_clock, c)
    }

    #[tokio::test]
    async fn a_process_whose_clock_is_days_ahead_neither_previews_nor_frees_a_used_token() {
        // The attack of issue 24 on the state directory: a token is placed; a process 8 days
        // ahead makes a preview (which sweeps); the token must stay spent.
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(600);
        let right = in_dir(dir.path(), ttl).await;
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let issued = right.issue(&b, Approval::ConfirmationToken).await.unwrap();
        right
            .redeem(&issued.token, &b)
            .await
            .unwrap()
            .placed(&created(38))
            .await;
        let ahead = in_dir(dir.path(), ttl)
            .await
            .with_clock(Arc::new(ManualClock::new(
                Utc::now() + chrono::Duration::days(8),
            )));
        let refused = ahead
            .issue(&b, Approval::ConfirmationToken)
            .await
            .unwrap_err();
        assert!(matches!(refused, Refusal::ClockSkew { .. }), "{refused:?}");
        assert!(ahead.clock_check().await.unwrap_err().contains("disagrees"));
        assert_eq!(
            right.redeem(&issued.token, &b).await.unwrap_err(),
            Refusal::AlreadyPlaced(Some(38))
        );
        assert!(right.clock_check().await.is_ok());
    }

    #[tokio::test]
    async fn a_token_from_a_clock_ahead_is_refused_wherever_it_is_presented() {
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let (_, _, right) = two_clocks(chrono::Duration::zero());
        for (ahead, refused) in [
            (chrono::Duration::days(30), true),
            (chrono::Duration::minutes(2), true),
            (chrono::Duration::seconds(30), false),
        ] {
            // A process whose store agrees with its wrong clock (its own, or the key copied).
            let (_, _, wrong) = two_clocks(chrono::Duration::zero());
            let wrong = wrong.with_clock(Arc::new(ManualClock::new(Utc::now() + ahead)));
            let wrong = Confirmations {
                store: Store::memory(Arc::new(ManualClock::new(Utc::now() + ahead)), [7; 32]),
                ..wrong
            };
            let token = wrong
                .issue(&b, Approval::ConfirmationToken)
                .await
                .unwrap()
                .token;
            let got = right.check(&token, &b).await;
            assert_eq!(
                matches!(got, Err(Refusal::FromTheFuture { .. })),
                refused,
                "{ahead}: {got:?}"
            );
            if refused {
                let text = got.unwrap_err().to_string();
                assert!(text.contains("is wrong") && text.contains("Nothing was ordered"));
            }
        }
    }

    #[tokio::test]
    async fn a_claim_is_judged_by_the_store_s_clock_and_given_back_when_the_clocks_disagree() {
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let (process, store, c) = two_clocks(chrono::Duration::zero());
        let issued = c.issue(&b, Approval::ConfirmationToken).await.unwrap();
        // The process's clock jumps two minutes ahead after the preview. (One that jumps back
        // sees the token as issued in the future, refused before any claim.)
        let ahead = Arc::new(ManualClock::new(
            process.now() + chrono::Duration::minutes(2),
        ));
        let jumped = Confirmations { clock: ahead, ..c };
        let err = jumped.redeem(&issued.token, &b).await.unwrap_err();
        assert!(matches!(err, Refusal::ClockSkew { .. }), "{err:?}");
        assert!(err.to_string().contains("stays valid"), "{err}");
        // Given back: the same token places the order once the clocks agree.
        let id = jumped.verify(&issued.token).unwrap().id();
        assert_eq!(jumped.store.token(&id).await.unwrap(), None);
        let fixed = Confirmations {
            clock: store.clone(),
            ..jumped
        };
        fixed
            .redeem(&issued.token, &b)
            .await
            .unwrap()
            .placed(&created(1))
            .await;
        // Expiry by the store's clock: a token the process thinks is still good (its clock 30 s
        // behind, within the skew) is refused once the store says it has expired.
        let second = fixed.issue(&b, Approval::ConfirmationToken).await.unwrap();
        store.advance(Duration::from_secs(610));
        let late = Confirmations {
            clock: Arc::new(ManualClock::new(
                store.now() - chrono::Duration::seconds(30),
            )),
            ..fixed
        };
        assert!(late.check(&second.token, &b).await.is_ok());
        assert!(matches!(
            late.redeem(&second.token, &b).await.unwrap_err(),
            Refusal::Expired(_)
        ));
    }

    #[tokio::test]
    async fn a_token_whose_record_was_cleared_is_refused_whatever_the_clocks_say() {
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let (process, store, c) = two_clocks(chrono::Duration::zero());
        let placed = c.issue(&b, Approval::ConfirmationToken).await.unwrap();
        let alive = c.issue(&b, Approval::ConfirmationToken).await.unwrap();
        c.redeem(&placed.token, &b)
            .await
            .unwrap()
            .placed(&created(5))
            .await;
        // Both clocks run 30 days ahead for a while, and a preview sweeps by them: the placed
        // token's record goes, its token long expired by that time.
        store.advance(Duration::from_secs(30 * 24 * 3600));
        process.advance(Duration::from_secs(30 * 24 * 3600));
        c.issue(&b, Approval::ConfirmationToken).await.unwrap();
        let id = c.verify(&placed.token).unwrap().id();
        assert_eq!(c.store.token(&id).await.unwrap(), None, "swept");
        // Then both are set right again. The swept token is not placed a second time, and
        // neither is any token alive when the clocks were wrong; a new preview is.
        let right = Arc::new(ManualClock::new(Utc::now()));
        c.store
            .as_memory()
            .unwrap()
            .shift(-chrono::Duration::days(30));
        let c = Confirmations {
            clock: right.clone(),
            ..c
        };
        for token in [&placed.token, &alive.token] {
            let err = c.redeem(token, &b).await.unwrap_err();
            assert!(matches!(err, Refusal::Cleared(_)), "{err:?}");
            assert!(err.to_string().contains("Nothing was ordered"), "{err}");
        }
        assert!(c.clock_check().await.is_ok());
        right.advance(Duration::from_secs(1));
        let fresh = c.issue(&b, Approval::ConfirmationToken).await.unwrap();
        c.redeem(&fresh.token, &b)
            .await
            .unwrap()
            .placed(&created(6))
            .await;
    }
}
