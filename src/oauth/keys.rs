//! The authorization server's signing keys (its JWKS), cached.
//!
//! A token naming a key the cache lacks (the authorization server rotated its keys) triggers
//! one refresh, shared by every request waiting on it, and at most one per [`REFRESH_FLOOR`]:
//! tokens with made-up key ids are refused without another request to the authorization
//! server. Keys older than [`MAX_AGE`] are refreshed on use, so a key the authorization server
//! withdrew stops working within that time; while a refresh fails the cached keys stay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::get_json;

/// Least time between two fetches of the JWKS.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again when next used.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// The cached keys and how to fetch them again.
pub struct KeySet {
    http: reqwest::Client,
    uri: Url,
    cached: RwLock<Arc<Cached>>,
    /// Counts the key sets stored: tokens checked under an older one are checked again.
    generation: AtomicU64,
    /// When the last fetch started; held while one runs, so concurrent misses share it.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Cached {
    keys: Vec<Key>,
    fetched: Option<Instant>,
}

/// One usable signing key.
struct Key {
    /// SHA-256 of the JWK as published.
    fingerprint: [u8; 32],
    kid: Option<String>,
    /// The one algorithm the JWK pins, if it does.
    alg: Option<Algorithm>,
    curve: Option<EllipticCurve>,
    key: DecodingKey,
}

impl Key {
    /// The same key, as far as a token's check goes.
    fn same(&self, other: &Key) -> bool {
        self.fingerprint == other.fingerprint
    }

    /// Whether this key may check a token signed with `alg`: the same family (jsonwebtoken
    /// checks that too), the algorithm the JWK pins, the curve the algorithm needs.
    fn fits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family()
            && self.alg.is_none_or(|a| a == alg)
            && match (alg, &self.curve) {
                (Algorithm::ES256, Some(c)) => *c == EllipticCurve::P256,
                (Algorithm::ES384, Some(c)) => *c == EllipticCurve::P384,
                (Algorithm::EdDSA, Some(c)) => *c == EllipticCurve::Ed25519,
                _ => true,
            }
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    pub fn new(http: reqwest::Client, uri: Url) -> KeySet {
        KeySet {
            http,
            uri,
            cached: RwLock::default(),
            generation: AtomicU64::new(0),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// Fetches the keys now (start-up); `Err` says why none can be used.
    pub async fn load(&self) -> Result<usize, String> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        let keys = self.fetch().await?;
        if keys.is_empty() {
            return Err(
                "it holds no signing key this server can use (RSA, EC P-256/P-384 or Ed25519)"
                    .to_owned(),
            );
        }
        let n = keys.len();
        self.store(keys);
        Ok(n)
    }

    /// The key for a token whose header names `kid` and `alg`: from the cache, or after a
    /// refresh when the cache lacks it or is old (see the module docs).
    pub async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let (found, fresh) = self.lookup(kid, alg);
        if found.is_some() && fresh {
            return found;
        }
        let mut last = self.last_fetch.lock().await;
        // Another request may have refreshed while this one waited.
        let (found_now, fresh_now) = self.lookup(kid, alg);
        if found_now.is_some() && fresh_now {
            return found_now;
        }
        if last.is_some_and(|at| at.elapsed() < REFRESH_FLOOR) {
            return found_now;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) if !keys.is_empty() => {
                tracing::info!(
                    keys = keys.len(),
                    "fetched the authorization server's signing keys"
                );
                self.store(keys);
            }
            Ok(_) => tracing::warn!(
                "the authorization server's JWKS holds no usable signing key; keeping the cached keys"
            ),
            Err(e) => tracing::warn!(
                "could not refresh the authorization server's signing keys from {}: {e}; keeping the cached keys",
                self.uri
            ),
        }
        drop(last);
        self.lookup(kid, alg).0
    }

    /// The matching key in the cache, and whether the cache is younger than [`MAX_AGE`].
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> (Option<DecodingKey>, bool) {
        let cached = Arc::clone(&self.cached.read().expect("key cache lock"));
        let fresh = cached.fetched.is_some_and(|at| at.elapsed() < MAX_AGE);
        let mut fitting = cached.keys.iter().filter(|k| k.fits(alg));
        let found = match kid {
            Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)),
            // Without a kid only an unambiguous key will do.
            None => match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            },
        };
        (found.map(|k| k.key.clone()), fresh)
    }

    fn store(&self, keys: Vec<Key>) {
        let mut cached = self.cached.write().expect("key cache lock");
        let same = cached.keys.len() == keys.len()
            && cached.keys.iter().zip(&keys).all(|(a, b)| a.same(b));
        *cached = Arc::new(Cached {
            keys,
            fetched: Some(Instant::now()),
        });
        if !same {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The key ids of the cached keys, as published (a key without one is left out).
    pub fn kids(&self) -> Vec<String> {
        let cached = Arc::clone(&self.cached.read().expect("key cache lock"));
        cached.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }

    /// Which key set is current; it changes when the authorization server's keys do.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let set: JwkSet = get_json(&self.http, &self.uri).await?;
        Ok(usable(set.keys))
    }
}

/// The signing keys among `keys`; encryption keys, symmetric keys and keys of kinds this
/// server cannot check are left out, each without failing the others.
fn usable(keys: Vec<serde_json::Value>) -> Vec<Key> {
    keys.into_iter()
        .filter_map(|value| {
            let fingerprint: [u8; 32] = Sha256::digest(value.to_string().as_bytes()).into();
            Some((fingerprint, serde_json::from_value::<Jwk>(value).ok()?))
        })
        .filter(|(_, jwk)| {
            !matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            )
        })
        .filter_map(|(fingerprint, jwk)| {
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(a) => Some(signing_algorithm(a)?),
            };
            let curve = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(p) => Some(p.curve.clone()),
                AlgorithmParameters::OctetKeyPair(p) => Some(p.curve.clone()),
                AlgorithmParameters::RSA(_) => None,
                // A symmetric key in a public JWKS would let anyone who read it sign.
                _ => return None,
            };
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Key {
                fingerprint,
                kid: jwk.common.key_id,
                alg,
                curve,
                key,
            })
        })
        .collect()
}

/// The asymmetric signature algorithm a JWK's `alg` names; `None` for anything else.
fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn jwk(extra: serde_json::Value) -> serde_json::Value {
        let mut base = serde_json::json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    }

    #[test]
    fn only_signing_keys_of_known_kinds_are_kept() {
        let keys = usable(vec![
            jwk(serde_json::json!({"kid": "sig", "use": "sig", "alg": "RS256"})),
            jwk(serde_json::json!({"kid": "enc", "use": "enc", "alg": "RSA-OAEP"})),
            jwk(serde_json::json!({"kid": "oaep", "alg": "RSA-OAEP-256"})),
            serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            serde_json::json!({"kty": "weird", "kid": "x"}),
            jwk(serde_json::json!({"kid": "any"})),
        ]);
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["sig", "any"]);
        assert!(keys[0].fits(Algorithm::RS256));
        assert!(!keys[0].fits(Algorithm::PS256), "the JWK pins RS256");
        assert!(keys[1].fits(Algorithm::PS512));
        assert!(!keys[1].fits(Algorithm::ES256));
        assert!(!keys[1].fits(Algorithm::HS256));
    }
}
