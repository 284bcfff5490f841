//! Confirmation tokens: the signed step between an order preview and a real, paid order.
//!
//! A token is self-contained and signed with HMAC-SHA256 under a key kept in the state
//! directory (owner-only), so it survives the process that issued it: a preview made by one
//! `1nce-mcp call` can be confirmed by the next. Any change to a token breaks its signature.
//! A token binds, and [`Confirmations::check`] refuses any difference in:
//! - **the order**: SHA-256 of the exact validated order (products, address, reference);
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
//! - **an expiry**.
//!
//! Single use rests on a [`SingleUse`] store: redeeming claims the token's id, and the record
//! then says what became of it (see [`Redemption`]). A person's "no" is recorded there too, so
//! no process sharing the store can use the token after it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::checks::{PricedOrder, money};
use super::clock::{Clock, SystemClock};
use super::consent::NotApproved;
use super::post_answer::{Created, NotProcessed, Unknown};
use super::private_fs;
use super::single_use::{MarkerFiles, SingleUse, Use, UseState};
use crate::api::model::NewOrder;
use crate::hex;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every token, so a person can tell one from other strings.
const PREFIX: &str = "ct_";
/// Layout version of the signed payload.
const VERSION: u8 = 3;
/// version(1) + id(16) + expiry ms(8) + scope(16) + person(16) + account(16) + flags(1) +
/// order(32) + prices(32) + totals length(1); the totals text follows.
const FIXED_LEN: usize = 1 + 16 + 8 + 16 + 16 + 16 + 1 + 32 + 32 + 1;
/// Flag bit: only an approval in the client's form places this order.
const NEEDS_FORM: u8 = 1;
/// How long token records are kept after their token expired. Past expiry a token is refused
/// anyway, so this keeps "already placed order N" precise and identical orders findable.
const REMEMBER_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
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
    store: Arc<dyn SingleUse>,
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
    expires: i64,
    scope: [u8; 16],
    person: [u8; 16],
    account: Account,
    /// Only an approval in the client's own form places this order.
    pub needs_form: bool,
    order: [u8; 32],
    prices: [u8; 32],
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
        "the order differs from the preview this confirmation_token approved (products, quantities, delivery address or reference changed): nothing was ordered. Call create_order without confirmation_token for a preview of the new order and get the user's approval for it"
    )]
    Mismatch,
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
    /// Opens the token store in `state_dir`, creating the directory (owner-only) and the
    /// signing key on first use.
    pub fn open(state_dir: &Path, ttl: Duration) -> io::Result<Confirmations> {
        private_fs::ensure_private_dir(state_dir)?;
        let used_dir = state_dir.join("used-tokens");
        private_fs::ensure_private_dir(&used_dir)?;
        let key_path = state_dir.join("confirmation.key");
        private_fs::check_private_file(&key_path)?;
        let key = load_or_create_key(&key_path)?;
        Ok(Confirmations {
            ttl,
            key,
            store: Arc::new(MarkerFiles::new(&used_dir)),
            clock: Arc::new(SystemClock),
            posting_grace: DEFAULT_POSTING_GRACE,
        })
    }

    /// Signs with `key` and records single use in `store`: the shared state of replicas.
    pub fn with_store(key: [u8; 32], store: Arc<dyn SingleUse>, ttl: Duration) -> Confirmations {
        Confirmations {
            ttl,
            key,
            store,
            clock: Arc::new(SystemClock),
            posting_grace: DEFAULT_POSTING_GRACE,
        }
    }

    /// Reads the time from `clock` instead of the system.
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

    /// Issues a token that confirms exactly `binding`, valid for the configured time.
    pub fn issue(&self, binding: &Binding<'_>, needs_form: bool) -> Issued {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let now = self.clock.now();
        let expires = now
            .timestamp_millis()
            .saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2));
        let prices = binding.priced.map(price_digest).unwrap_or_default();
        let totals = binding
            .priced
            .map(|p| truncate_utf8(&money(&p.totals_for_people(), "0.00"), 255))
            .unwrap_or_default();
        let mut payload = Vec::with_capacity(FIXED_LEN + totals.len());
        payload.push(VERSION);
        payload.extend_from_slice(&id);
        payload.extend_from_slice(&expires.to_be_bytes());
        payload.extend_from_slice(&hash16(binding.scope));
        payload.extend_from_slice(&hash16(binding.person));
        payload.extend_from_slice(&binding.account.0);
        payload.push(if needs_form { NEEDS_FORM } else { 0 });
        payload.extend_from_slice(&digest(binding.order));
        payload.extend_from_slice(&prices);
        payload.push(totals.len() as u8);
        payload.extend_from_slice(totals.as_bytes());
        let signature = self.mac(&payload).finalize().into_bytes();
        self.store.forget_before(
            now - chrono::Duration::from_std(self.ttl + REMEMBER_FOR)
                .unwrap_or(chrono::Duration::MAX),
        );
        Issued {
            token: format!(
                "{PREFIX}{}.{}",
                URL_SAFE_NO_PAD.encode(&payload),
                URL_SAFE_NO_PAD.encode(signature)
            ),
            expires_at: DateTime::from_timestamp_millis(expires)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Checks that `token` could place the order of `binding` right now, without claiming it.
    /// Signature, account and session come first, then what the store says of the token, its
    /// expiry, and last the order and its price.
    pub fn check(&self, token: &str, binding: &Binding<'_>) -> Result<Claims, Refusal> {
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
            .get(&claims.id())
            .map_err(|e| Refusal::Storage(e.to_string()))?;
        if let Some(record) = recorded {
            return Err(self.refusal(&record));
        }
        if self.clock.now().timestamp_millis() >= claims.expires {
            return Err(Refusal::Expired(
                DateTime::from_timestamp_millis(claims.expires)
                    .unwrap_or_default()
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
            ));
        }
        if claims.order != digest(binding.order) {
            return Err(Refusal::Mismatch);
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

    /// Claims `token` for posting the order of `binding`. Of any number of concurrent callers,
    /// in any number of processes sharing the store, at most one gets the claim.
    pub fn redeem(&self, token: &str, binding: &Binding<'_>) -> Result<Redemption, Refusal> {
        let claims = self.check(token, binding)?;
        let id = claims.id();
        let content = content_id(binding.order);
        let first = Use {
            state: UseState::Posting,
            at: self.clock.now().timestamp_millis(),
            content: content.clone(),
        };
        match self.store.claim(&id, &first) {
            Ok(Ok(())) => Ok(Redemption {
                store: Arc::clone(&self.store),
                clock: Arc::clone(&self.clock),
                id,
                content,
                settled: false,
            }),
            Ok(Err(existing)) => Err(self.refusal(&existing)),
            Err(e) => Err(Refusal::Storage(e.to_string())),
        }
    }

    /// Ends `claims`' token after the person did not approve, for every process sharing the
    /// store. A token already claimed keeps its record.
    pub fn end_unapproved(
        &self,
        claims: &Claims,
        order: &NewOrder,
        answer: NotApproved,
    ) -> io::Result<()> {
        let record = Use {
            state: UseState::NotApproved { answer },
            at: self.clock.now().timestamp_millis(),
            content: content_id(order),
        };
        self.store.claim(&claims.id(), &record).map(|_| ())
    }

    /// Orders with the same content placed (or of unknown outcome) from this store within
    /// `within`, oldest first.
    pub fn recent_identical(&self, order: &NewOrder, within: Duration) -> Vec<Use> {
        let since =
            self.clock.now() - chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        self.store
            .recent(&content_id(order), since)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !matches!(r.state, UseState::NotApproved { .. }))
            .collect()
    }

    fn refusal(&self, record: &Use) -> Refusal {
        match record.state {
            UseState::Posting => {
                let age = self.clock.now().timestamp_millis() - record.at;
                if age > i64::try_from(self.posting_grace.as_millis()).unwrap_or(i64::MAX) {
                    // The process that claimed it died mid-POST, or could not record the end.
                    Refusal::OutcomeUnknown { since: record.at() }
                } else {
                    Refusal::InFlight
                }
            }
            UseState::Placed { order_number } => Refusal::AlreadyPlaced(order_number),
            UseState::Unknown => Refusal::OutcomeUnknown { since: record.at() },
            UseState::NotApproved { answer } => Refusal::NotApproved(answer),
        }
    }

    /// A key for `purpose`, derived from the signing key (HMAC-SHA256 of the purpose), so every
    /// process sharing the signing key shares it, and the signing key itself stays here.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.mac(format!("1nce-mcp derived key\n{purpose}").as_bytes())
            .finalize()
            .into_bytes()
            .into()
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
        if payload.len() < FIXED_LEN || payload[0] != VERSION {
            return None;
        }
        let totals_len = usize::from(payload[FIXED_LEN - 1]);
        if payload.len() != FIXED_LEN + totals_len {
            return None;
        }
        let take = |from: usize, to: usize| &payload[from..to];
        Some(Claims {
            id: take(1, 17).try_into().ok()?,
            expires: i64::from_be_bytes(take(17, 25).try_into().ok()?),
            scope: take(25, 41).try_into().ok()?,
            person: take(41, 57).try_into().ok()?,
            account: Account(take(57, 73).try_into().ok()?),
            needs_form: payload[73] & NEEDS_FORM != 0,
            order: take(74, 106).try_into().ok()?,
            prices: take(106, 138).try_into().ok()?,
            totals: String::from_utf8(payload[FIXED_LEN..].to_vec()).ok()?,
        })
    }
}

/// A claimed token. Settle it with what the POST's answer means; dropping it unsettled (the
/// call's task died mid-POST) records the outcome as unknown.
#[derive(Debug)]
pub struct Redemption {
    store: Arc<dyn SingleUse>,
    clock: Arc<dyn Clock>,
    id: String,
    content: String,
    settled: bool,
}

impl Redemption {
    /// 1NCE created the order: the token is spent for good and remembers the number.
    pub fn placed(mut self, created: &Created) {
        self.settle(UseState::Placed {
            order_number: created.order_number,
        });
    }

    /// 1NCE certainly processed nothing: the token may be used again until it expires. Only
    /// a [`NotProcessed`] opens it, and only [`super::post_answer`] makes one.
    pub fn release(mut self, _proof: &NotProcessed) {
        self.settled = true;
        if let Err(e) = self.store.release(&self.id) {
            // Fails closed: the token stays spent, which is safe, only less convenient.
            tracing::warn!(error = %e, "could not reopen a confirmation token");
        }
    }

    /// Whether 1NCE created the order is unknown: the token can never drive another POST.
    pub fn unknown(mut self, _why: &Unknown) {
        self.settle(UseState::Unknown);
    }

    fn settle(&mut self, state: UseState) {
        self.settled = true;
        let record = Use {
            state,
            at: self.clock.now().timestamp_millis(),
            content: self.content.clone(),
        };
        if let Err(e) = self.store.settle(&self.id, &record) {
            tracing::warn!(error = %e, "could not record a confirmation token's outcome");
        }
    }
}

impl Drop for Redemption {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(UseState::Unknown);
        }
    }
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

/// Reads the signing key, creating it atomically if it does not exist yet: the key is written
/// to a private temporary file and hard-linked into place, so two processes starting at once
/// end up with the same key and neither reads a half-written one.
fn load_or_create_key(path: &Path) -> io::Result<[u8; 32]> {
    for _ in 0..3 {
        match fs::read(path) {
            Ok(bytes) => {
                check_private(path)?;
                return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    io::Error::other(format!(
                        "{} is not a 32-byte key; delete it to create a new one (outstanding confirmation tokens become invalid)",
                        path.display()
                    ))
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let mut options = fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&tmp)?;
                file.write_all(&key)?;
                file.sync_all()?;
                let linked = fs::hard_link(&tmp, path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => return Ok(key),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "could not read or create {}",
        path.display()
    )))
}

/// Refuses a key file that others can read, as ssh does with private keys.
fn check_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "{} is accessible to other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::ProductLine;
    use crate::orders::checks::tests::product;
    use crate::orders::checks::{OrderLimits, check_order};
    use crate::orders::clock::ManualClock;

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

    fn fixture(ttl: Duration) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let store = Confirmations::open(dir.path(), ttl)
            .unwrap()
            .with_clock(clock.clone())
            .with_posting_grace(Duration::from_secs(90));
        Fixture {
            _dir: dir,
            clock,
            store,
        }
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

    #[test]
    fn a_token_is_single_use_and_bound_to_order_session_person_and_account() {
        let f = fixture(Duration::from_secs(60));
        let (five, six) = (order(5), order(6));
        let (p5, p6) = (priced(&five, 100), priced(&six, 100));
        let issued = f.store.issue(&binding(&five, &p5, "s"), false);
        assert!(issued.token.starts_with("ct_"));
        let t = issued.token.as_str();
        assert_eq!(
            f.store.redeem(t, &binding(&six, &p6, "s")).unwrap_err(),
            Refusal::Mismatch
        );
        assert_eq!(
            f.store.redeem(t, &binding(&five, &p5, "t")).unwrap_err(),
            Refusal::OtherSession
        );
        let alice = "https://idp.example\nalice";
        let by_alice = f.store.issue(
            &Binding {
                person: alice,
                ..binding(&five, &p5, "s")
            },
            false,
        );
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
                f.store.check(&by_alice.token, &other).unwrap_err(),
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
                .unwrap_err(),
            Refusal::OtherPerson,
            "a token of nobody in particular is not anybody's"
        );
        let mine = Binding {
            person: alice,
            ..binding(&five, &p5, "s")
        };
        assert!(f.store.check(&by_alice.token, &mine).is_ok());
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
                f.store.redeem(t, &elsewhere).unwrap_err(),
                Refusal::OtherAccount
            );
        }
        let held = f.store.redeem(t, &binding(&five, &p5, "s")).unwrap();
        assert_eq!(
            f.store.redeem(t, &binding(&five, &p5, "s")).unwrap_err(),
            Refusal::InFlight
        );
        held.placed(&created(42));
        let err = f.store.redeem(t, &binding(&five, &p5, "s")).unwrap_err();
        assert_eq!(err, Refusal::AlreadyPlaced(Some(42)));
        assert!(err.to_string().contains("get_order 42"));
    }

    #[test]
    fn a_changed_price_is_refused_naming_both_prices() {
        let f = fixture(Duration::from_secs(60));
        let o = order(10);
        let issued = f.store.issue(&binding(&o, &priced(&o, 10_000), "s"), false);
        let now = priced(&o, 45_000);
        let err = f
            .store
            .check(&issued.token, &binding(&o, &now, "s"))
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
                .is_ok()
        );
        // Without a price (before the catalogue is read) everything else still checks.
        let unpriced = Binding {
            priced: None,
            ..binding(&o, &now, "s")
        };
        assert!(f.store.check(&issued.token, &unpriced).is_ok());
    }

    #[test]
    fn the_approval_the_preview_promised_is_carried() {
        let f = fixture(Duration::from_secs(60));
        let o = order(1);
        let p = priced(&o, 100);
        let form = f.store.issue(&binding(&o, &p, "s"), true);
        let plain = f.store.issue(&binding(&o, &p, "s"), false);
        assert!(
            f.store
                .check(&form.token, &binding(&o, &p, "s"))
                .unwrap()
                .needs_form
        );
        assert!(
            !f.store
                .check(&plain.token, &binding(&o, &p, "s"))
                .unwrap()
                .needs_form
        );
    }

    #[test]
    fn expiry_follows_the_injected_clock() {
        let f = fixture(Duration::from_secs(60));
        let o = order(1);
        let p = priced(&o, 100);
        let issued = f.store.issue(&binding(&o, &p, "s"), false);
        f.clock.advance(Duration::from_secs(59));
        assert!(f.store.check(&issued.token, &binding(&o, &p, "s")).is_ok());
        f.clock.advance(Duration::from_secs(1));
        assert!(matches!(
            f.store.redeem(&issued.token, &binding(&o, &p, "s")),
            Err(Refusal::Expired(_))
        ));
    }

    #[test]
    fn tokens_survive_a_restart_and_tampering_breaks_them() {
        let dir = tempfile::tempdir().unwrap();
        let o = order(1);
        let p = priced(&o, 100);
        let ttl = Duration::from_secs(60);
        let issued = Confirmations::open(dir.path(), ttl)
            .unwrap()
            .issue(&binding(&o, &p, "s"), false);
        // A new process opens the same state directory.
        let again = Confirmations::open(dir.path(), ttl).unwrap();
        let mut tampered = issued.token.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [tampered.as_str(), "ct_", "nonsense", ""] {
            assert_eq!(
                again.redeem(bad, &binding(&o, &p, "s")).unwrap_err(),
                Refusal::Invalid
            );
        }
        // Another key (another state directory) does not accept it either.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            Confirmations::open(other.path(), ttl)
                .unwrap()
                .redeem(&issued.token, &binding(&o, &p, "s"))
                .unwrap_err(),
            Refusal::Invalid
        );
        again
            .redeem(&issued.token, &binding(&o, &p, "s"))
            .unwrap()
            .placed(&created(1));
    }

    #[test]
    fn only_proof_of_nothing_processed_reopens_a_token() {
        let f = fixture(Duration::from_secs(60));
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let issued = f.store.issue(&b, false);
        let proof = NotProcessed::never_sent(crate::api::ApiError::Forbidden);
        f.store.redeem(&issued.token, &b).unwrap().release(&proof);
        f.store
            .redeem(&issued.token, &b)
            .unwrap()
            .unknown(&Unknown {
                reason: "HTTP 409".into(),
            });
        assert!(matches!(
            f.store.redeem(&issued.token, &b).unwrap_err(),
            Refusal::OutcomeUnknown { .. }
        ));
        // A call dropped mid-POST is an unknown outcome too.
        let second = f.store.issue(&b, false);
        drop(f.store.redeem(&second.token, &b).unwrap());
        assert!(matches!(
            f.store.redeem(&second.token, &b).unwrap_err(),
            Refusal::OutcomeUnknown { .. }
        ));
    }

    #[test]
    fn a_posting_record_older_than_the_grace_is_an_unknown_outcome() {
        let f = fixture(Duration::from_secs(600));
        let o = order(1);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let issued = f.store.issue(&b, false);
        // The process dies mid-POST: the claim is never settled.
        std::mem::forget(f.store.redeem(&issued.token, &b).unwrap());
        assert_eq!(
            f.store.check(&issued.token, &b).unwrap_err(),
            Refusal::InFlight
        );
        f.clock.advance(Duration::from_secs(91));
        let err = f.store.check(&issued.token, &b).unwrap_err();
        assert!(matches!(err, Refusal::OutcomeUnknown { .. }), "{err:?}");
        assert!(err.to_string().contains("Do not order again"), "{err}");
    }

    #[test]
    fn a_person_s_no_ends_the_token_and_identical_orders_are_found() {
        let f = fixture(Duration::from_secs(60));
        let o = order(3);
        let p = priced(&o, 100);
        let b = binding(&o, &p, "s");
        let declined = f.store.issue(&b, true);
        let claims = f.store.check(&declined.token, &b).unwrap();
        f.store
            .end_unapproved(&claims, &o, NotApproved::Declined)
            .unwrap();
        let err = f.store.redeem(&declined.token, &b).unwrap_err();
        assert_eq!(err, Refusal::NotApproved(NotApproved::Declined));
        assert!(err.to_string().contains("new preview"), "{err}");
        // Declined orders are not "identical orders placed".
        assert!(
            f.store
                .recent_identical(&o, Duration::from_secs(3600))
                .is_empty()
        );
        let placed = f.store.issue(&b, false);
        f.store
            .redeem(&placed.token, &b)
            .unwrap()
            .placed(&created(77));
        let recent = f.store.recent_identical(&o, Duration::from_secs(3600));
        assert_eq!(recent.len(), 1);
        assert_eq!(
            recent[0].state,
            UseState::Placed {
                order_number: Some(77)
            }
        );
        assert!(
            f.store
                .recent_identical(&order(4), Duration::from_secs(3600))
                .is_empty()
        );
        f.clock.advance(Duration::from_secs(3601));
        assert!(
            f.store
                .recent_identical(&o, Duration::from_secs(3600))
                .is_empty()
        );
    }

    #[test]
    fn concurrent_redeemers_get_one_claim() {
        let f = fixture(Duration::from_secs(60));
        let o = order(3);
        let p = priced(&o, 100);
        let issued = f.store.issue(&binding(&o, &p, "s"), false);
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        f.store
                            .redeem(&issued.token, &binding(&o, &p, "s"))
                            .map(|r| r.placed(&created(7)))
                            .is_ok() as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1);
    }

    #[cfg(unix)]
    #[test]
    fn key_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Confirmations::open(&state, Duration::from_secs(60)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("confirmation.key")), 0o600);
        fs::set_permissions(
            state.join("confirmation.key"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = Confirmations::open(&state, Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
