//! Confirmation tokens: the step between an order preview and a real, paid order.
//!
//! A token is self-contained and signed, so it survives the process that issued it: a preview
//! made by one `1nce-mcp call` (or before a server restart) can be confirmed by the next. It
//! carries a random id, its expiry, a hash of the session scope and the SHA-256 of the exact
//! validated order, signed with HMAC-SHA256 under a key kept in the state directory (owner-only
//! permissions). Any change to the token breaks the signature.
//!
//! Single use across processes rests on the file system: redeeming atomically creates a marker
//! file named after the token id (`create_new`, so of two concurrent redeemers exactly one wins).
//! The marker then records the outcome of the POST:
//! - placed: the token is spent for good and remembers the order number, so a second use is
//!   refused with that number;
//! - refused by 1NCE in a way that proves nothing was created (400, 401, 403, 429, no
//!   connection): the marker is removed and the token opens again until it expires, since the
//!   person approved exactly this content and nothing happened;
//! - anything else, including the call being dropped or the process dying mid-POST: the marker
//!   stays "posting" or becomes "unknown", and the token can never drive another POST.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::private_fs;
use crate::api::model::NewOrder;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every token, so a person can tell one from other strings.
const PREFIX: &str = "ct_";
/// Layout version of the signed payload.
const VERSION: u8 = 1;
/// version(1) + id(16) + expiry in Unix milliseconds(8) + scope hash(16) + order digest(32).
const PAYLOAD_LEN: usize = 1 + 16 + 8 + 16 + 32;
/// How long used-token markers are kept after their token expired. Past expiry a token is
/// refused anyway, so this only keeps the "already placed order N" answer precise for a while.
const REMEMBER_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Issues and redeems confirmation tokens.
pub struct Confirmations {
    ttl: Duration,
    key: [u8; 32],
    used_dir: PathBuf,
}

impl fmt::Debug for Confirmations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Confirmations")
            .field("ttl", &self.ttl)
            .field("used_dir", &self.used_dir)
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

/// Why a token cannot be used. The messages tell the agent exactly what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this confirmation_token is not valid (malformed, altered, or signed with another key): nothing was ordered. Call create_order without confirmation_token for a new preview and show it to the user"
    )]
    Invalid,
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
    #[error(
        "the use of this confirmation_token could not be recorded ({0}), so nothing was ordered. Check that the state directory is writable"
    )]
    Storage(String),
}

/// The decoded, verified contents of a token.
struct Claims {
    id: [u8; 16],
    expires: u64,
    scope: [u8; 16],
    digest: [u8; 32],
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
        Ok(Confirmations { ttl, key, used_dir })
    }

    /// Issues a token that confirms exactly `order` within the session `scope`, valid for the
    /// configured time.
    pub fn issue(&self, order: &NewOrder, scope: &str) -> Issued {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let now = unix_millis();
        let expires = now.saturating_add(self.ttl.as_millis().try_into().unwrap_or(u64::MAX));
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.push(VERSION);
        payload.extend_from_slice(&id);
        payload.extend_from_slice(&expires.to_be_bytes());
        payload.extend_from_slice(&scope_hash(scope));
        payload.extend_from_slice(&digest(order));
        let signature = self.mac(&payload).finalize().into_bytes();
        self.forget_old_markers(now);
        Issued {
            token: format!(
                "{PREFIX}{}.{}",
                URL_SAFE_NO_PAD.encode(&payload),
                URL_SAFE_NO_PAD.encode(signature)
            ),
            expires_at: to_datetime(expires),
        }
    }

    /// Checks that `token` could place `order` from session `scope` right now, without
    /// claiming it: for refusing a bad token before any other work.
    pub fn check(&self, token: &str, order: &NewOrder, scope: &str) -> Result<(), Refusal> {
        self.usable(token, order, scope).map(|_| ())
    }

    /// Claims `token` for posting `order` from session `scope`. Of any number of concurrent
    /// callers, in any number of processes, at most one gets the claim.
    pub fn redeem(
        self: &Arc<Self>,
        token: &str,
        order: &NewOrder,
        scope: &str,
    ) -> Result<Redemption, Refusal> {
        let marker = self.usable(token, order, scope)?;
        match private_fs::create_new_private(&marker) {
            Ok(mut file) => {
                file.write_all(Marker::Posting.line().as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Refusal::Storage(e.to_string()))?;
            }
            // Another caller claimed it between our check and now.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(read_marker(&marker)
                    .map(Marker::refusal)
                    .unwrap_or(Refusal::InFlight));
            }
            Err(e) => return Err(Refusal::Storage(e.to_string())),
        }
        Ok(Redemption {
            marker,
            settled: false,
        })
    }

    /// Every check but the claim; returns the token's marker path.
    fn usable(&self, token: &str, order: &NewOrder, scope: &str) -> Result<PathBuf, Refusal> {
        let claims = self.verify(token.trim()).ok_or(Refusal::Invalid)?;
        if claims.scope != scope_hash(scope) {
            return Err(Refusal::OtherSession);
        }
        let marker = self.used_dir.join(hex(&claims.id));
        if let Some(state) = read_marker(&marker) {
            return Err(state.refusal());
        }
        if unix_millis() >= claims.expires {
            return Err(Refusal::Expired(
                to_datetime(claims.expires).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ));
        }
        if claims.digest != digest(order) {
            return Err(Refusal::Mismatch);
        }
        Ok(marker)
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
        if payload.len() != PAYLOAD_LEN || payload[0] != VERSION {
            return None;
        }
        let mut claims = Claims {
            id: [0; 16],
            expires: 0,
            scope: [0; 16],
            digest: [0; 32],
        };
        claims.id.copy_from_slice(&payload[1..17]);
        claims.expires = u64::from_be_bytes(payload[17..25].try_into().ok()?);
        claims.scope.copy_from_slice(&payload[25..41]);
        claims.digest.copy_from_slice(&payload[41..73]);
        Some(claims)
    }

    /// Removes markers old enough that their tokens expired long ago. Best effort.
    fn forget_old_markers(&self, now_millis: u64) {
        let now = now_millis / 1000;
        let Ok(entries) = fs::read_dir(&self.used_dir) else {
            return;
        };
        let horizon = self.ttl + REMEMBER_FOR;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|t| now.saturating_sub(t.as_secs()) > horizon.as_secs());
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// A claimed token. Settle it with the POST's outcome; dropping it unsettled (the call was
/// cancelled mid-POST) records the outcome as unknown.
#[derive(Debug)]
pub struct Redemption {
    marker: PathBuf,
    settled: bool,
}

impl Redemption {
    /// 1NCE accepted the order.
    pub fn placed(mut self, order_number: Option<u64>) {
        self.settle(Marker::Placed(order_number));
    }

    /// 1NCE certainly created nothing: the token may be used again until it expires.
    pub fn nothing_placed(mut self) {
        self.settled = true;
        if let Err(e) = fs::remove_file(&self.marker) {
            // Fails closed: the token stays spent, which is safe, only less convenient.
            tracing::warn!(error = %e, "could not reopen a confirmation token");
        }
    }

    /// Whether 1NCE created the order is unknown: the token is never usable again.
    pub fn outcome_unknown(mut self) {
        self.settle(Marker::Unknown);
    }

    fn settle(&mut self, marker: Marker) {
        self.settled = true;
        // Written beside and renamed over, so a reader never sees half a line. If this fails
        // the marker still says "posting", which refuses reuse just the same.
        if let Err(e) = private_fs::replace_private(&self.marker, marker.line().as_bytes()) {
            tracing::warn!(error = %e, "could not record a confirmation token's outcome");
        }
    }
}

impl Drop for Redemption {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(Marker::Unknown);
        }
    }
}

/// What a used-token marker file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Posting,
    Placed(Option<u64>),
    Unknown,
}

impl Marker {
    fn line(self) -> String {
        match self {
            Marker::Posting => "posting\n".to_owned(),
            Marker::Placed(Some(n)) => format!("placed {n}\n"),
            Marker::Placed(None) => "placed\n".to_owned(),
            Marker::Unknown => "unknown\n".to_owned(),
        }
    }

    fn parse(text: &str) -> Marker {
        let mut words = text.split_whitespace();
        match words.next() {
            Some("placed") => Marker::Placed(words.next().and_then(|n| n.parse().ok())),
            Some("unknown") => Marker::Unknown,
            // "posting", or a marker cut short by a crash: either way a POST may be under way
            // or may have happened.
            _ => Marker::Posting,
        }
    }

    fn refusal(self) -> Refusal {
        match self {
            Marker::Posting => Refusal::InFlight,
            Marker::Placed(n) => Refusal::AlreadyPlaced(n),
            Marker::Unknown => Refusal::OutcomeUnknown,
        }
    }
}

fn read_marker(path: &Path) -> Option<Marker> {
    fs::read_to_string(path).ok().map(|t| Marker::parse(&t))
}

/// SHA-256 of the validated order's canonical JSON (fixed field order, absent fields as null).
pub fn digest(order: &NewOrder) -> [u8; 32] {
    let bytes = serde_json::to_vec(order).unwrap_or_default();
    Sha256::digest(bytes).into()
}

fn scope_hash(scope: &str) -> [u8; 16] {
    let full = Sha256::digest(scope.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().try_into().unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_datetime(millis: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(millis).unwrap_or(i64::MAX / 2))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
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

    fn store(dir: &Path, ttl: Duration) -> Arc<Confirmations> {
        Arc::new(Confirmations::open(dir, ttl).unwrap())
    }

    #[test]
    fn token_is_single_use_and_bound_to_content_and_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
        let issued = store.issue(&order(5), "s");
        assert!(issued.token.starts_with("ct_"));
        assert_eq!(
            store.redeem(&issued.token, &order(6), "s").unwrap_err(),
            Refusal::Mismatch
        );
        assert_eq!(
            store.redeem(&issued.token, &order(5), "t").unwrap_err(),
            Refusal::OtherSession
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
    }

    #[test]
    fn tokens_survive_a_restart_and_tampering_breaks_them() {
        let dir = tempfile::tempdir().unwrap();
        let issued = store(dir.path(), Duration::from_secs(60)).issue(&order(1), "s");
        // A new process opens the same state directory.
        let again = store(dir.path(), Duration::from_secs(60));
        let mut tampered = issued.token.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [tampered.as_str(), "ct_", "nonsense", ""] {
            assert_eq!(
                again.redeem(bad, &order(1), "s").unwrap_err(),
                Refusal::Invalid
            );
        }
        // Another key (another state directory) does not accept it either.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            store(other.path(), Duration::from_secs(60))
                .redeem(&issued.token, &order(1), "s")
                .unwrap_err(),
            Refusal::Invalid
        );
        again
            .redeem(&issued.token, &order(1), "s")
            .unwrap()
            .placed(None);
    }

    #[test]
    fn failures_reopen_or_lock_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
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
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(1));
        let issued = store.issue(&order(1), "s");
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(
            store.redeem(&issued.token, &order(1), "s"),
            Err(Refusal::Expired(_))
        ));
    }

    #[test]
    fn concurrent_redeemers_get_one_claim() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Duration::from_secs(60));
        let issued = store.issue(&order(3), "s");
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let store = Arc::clone(&store);
                    let token = issued.token.clone();
                    s.spawn(move || {
                        store
                            .redeem(&token, &order(3), "s")
                            .map(|r| r.placed(Some(7)))
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
        store(&state, Duration::from_secs(60));
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
